"""Diffusion (EDM, Karras et al. 2022): a small EDM on the embedded procedural dataset, 16×16.

  python -m jaxgen.main --config=configs/diffusion.py --workdir=/tmp/diffusion

Needs no download. EDM's recipe — EDM preconditioning and loss (log-normal σ, P_std 1.2, σ_data
0.5; P_mean −0.6 here, the paper's −1.2 in the presets), Adam with learning-rate warm-up, EMA
with ramp-up, the deterministic Heun sampler with 18 steps (35 network evaluations per image) —
with EDM2's network (Karras et al. 2024): the magnitude-preserving U-Net with forced weight
normalisation, its loss weighted by the learned uncertainty, Adam β2 0.99, here narrow and
shallow for a 2-core CPU (16, 32 and 32 channels at 16², 8² and 4², one block each, 299 k
parameters). The default is class-conditional on the five shapes of the embedded data (disc,
square, stripes, rings, cross; `data.classes`) drawn upright (`data.rotation=0`: squares and
crosses axis-aligned, stripes vertical), trained with label dropout 0.1 and sampled with
classifier-free guidance 3; 10,000 steps of 32 (320 kimg), lr 0.03 after a 2 kimg warm-up,
decayed linearly to 0 over the last 30 % (`optimizer.lr_cooldown`, not in EDM), EMA half-life 1
kimg, the host split into two XLA devices (`train.cpu_devices`). Until 2026-12-05 the default
was EDM's own SongUNet (DDPM++ with a residual encoder and skip decoder, 182 k parameters, lr
0.004, Adam β2 0.999) on the shapes at any angle: `--config=configs/diffusion.py:songunet_cpu`.

Measured on 2026-12-05 on a 2-core Xeon without AMX (JAX 0.10.2; a shared VM running 230–560
images/s): 14.5, 13.3 and 12.3 minutes with start-up and two evaluations over three training
seeds; the same network, batch and steps ran in 9.1 minutes on 2026-12-04's 2-core AMD EPYC (on
shapes at any angle, which cost the same to draw). SWD ×10³ 71.1 → 57.4 (seed 0), 62.5 → 48.8
(seed 1), 65.4 → 55.5 (seed 2) from step 5,000 to 10,000. The final grid
(`samples/00010000.png`, ten columns: disc, square, stripes, rings, cross, twice) has every
shape: upright squares with straight edges, plus-shaped crosses, concentric rings, vertical
stripes (in several colours where the data has two), and discs, some of them octagonal. Class
accuracy (`python tools/class_accuracy.py --workdir=RUN`: the share of a label's samples that a
CNN trained on other embedded images, of every orientation, assigns to that label; right about
99.3–100 % of real images of each class), 128 samples per label, seeds 0, 1 and 2: disc 0.695 /
0.789 / 0.805, square 0.984 / 1.000 / 0.992, stripes 1.000 (all three), rings 1.000 (all three),
cross 0.961 / 0.961 / 1.000 (mean 0.928 / 0.950 / 0.959); the discs that miss are judged
squares. Intra-class Fréchet distance in that CNN's features (against 1.3–13.3 between two sets
of real images): disc 110.6 / 79.0 / 190.6, square 55.6 / 57.3 / 124.6, stripes 715.1 / 746.4 /
282.6 (the colours), rings 46.3 / 80.3 / 75.2, cross 41.3 / 57.2 / 78.7.

On the shapes at any angle (`--config.data.rotation=1`, the dataset as the GAN configs see it)
the same config does NOT draw squares in this budget: round or angular blobs for the square
label (judged square 0.797, 0.570, 0.523 over three seeds; mean 0.948, 0.903, 0.895; SWD 58.1 →
50.4 at seed 0, 9.1 minutes on the EPYC), while discs, rings, stripes and crosses come out. The
mean of a square's orientations is a round blob, and the denoiser has to break that symmetry
where the outline is laid out; trained on rotated squares alone for the 64 kimg a five-class run
gives each label it draws blobs, on upright squares alone clean squares. Trained 4× as long
(`--config.data.rotation=1 --config.train.num_steps=40000`, 34–35 minutes on the EPYC) it draws
angular polygons and a few clear rotated squares (square 0.938 and 0.906 over two seeds). The
previous default (`:songunet_cpu`) scores square 0.391, 0.203 and 0.430 there (mean 0.841,
0.784, 0.838) and does not learn the squares with more images (0.586 at 40,000 steps). How this
default was chosen, and every attempt at the squares with its figures:
docs/diffusion_cpu_default.md.
On 2-core machines the SongUNet trains ~1.6× faster split over two XLA devices (264 against 162
images/s in `jaxgen.bench` on an earlier machine); DCGAN's quickstart does not gain (203
against 213), so only this config sets `train.cpu_devices`.
On your own images: `--config.data.source=folder:PATH --config.data.classes=()` and, for a
folder without class sub-folders, `--config.data.use_labels=False --config.sampling.guidance=1`.

Presets (`--config=configs/diffusion.py:NAME`); data through `--config.data.source=...`:
  cifar10  EDM's CIFAR-10 DDPM++ (`train.py --arch=ddpmpp --precond=edm`, the defaults): 55.7 M
           parameters, batch 512, lr 1e-3 with a 10 Mimg warm-up, dropout 0.13, augment 0.12,
           EMA half-life 0.5 Mimg with ramp-up 0.05, 200 Mimg. FID 1.97 unconditional, 1.79
           conditional (`--config.data.use_labels=True`) in the paper (Table 2, config F, 35
           evaluations; 8 V100s, ~2 days).
  ncsnpp   the same with EDM's NCSN++ (`--arch=ncsnpp`): Fourier noise embedding, residual
           encoder, resample filter [1,3,3,1], 56.4 M parameters. FID 1.98 / 1.79.
  ffhq64   EDM's FFHQ 64×64 (`--arch=ddpmpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.05
           --augment=0.15`), 61.8 M parameters, sampled with 40 steps (79 evaluations).
           FID 2.39 in the paper. Point data.source at FFHQ (a folder of 64×64 images).
  vp       the DDPM baseline (`--precond=vp`): the VP preconditioning and loss (β_d 19.9,
           β_min 0.1, ε_t 1e-5) on the CIFAR-10 DDPM++ network; sample it with EDM's Heun
           (the default) or `--sampler=ddim` / `--sampler=ddpm`.
  ve       the score-SDE baseline (`--precond=ve`): VE preconditioning and loss (σ 0.02–100) on
           NCSN++.
  edm2_img64  EDM2's ImageNet 64×64 S (Karras et al. 2024; `train_edm2.py
           --preset=edm2-img64-s`): the magnitude-preserving U-Net (`model.arch='edm2'`, 192
           channels, [1,2,3,4], 3 blocks, attention at 16² and 8²) with its learned uncertainty
           (`objective.name='edm2'`, P_mean −0.8, P_std 1.6), forced weight normalisation, Adam
           (0.9, 0.99) at lr 0.01 with a 10 Mimg ramp-up and lr/√t decay after 35,000 batches of
           2048, 1 Gimg, bf16; 280,209,381 parameters with 1000 classes, as the official Precond.
           FID 1.58 in the paper's release (EMA σ_rel 0.075, 32 Heun steps = 63 evaluations,
           no guidance): EDM2's power-function EMAs of σ_rel 0.05 and 0.10 are snapshotted
           every 8 Mi images (`train.ema_std`, `train.ema_snapshot_kimg`), and `python -m
           jaxgen.phema --workdir=RUN --std=0.075` reconstructs that EMA post hoc. Evaluations
           during training (EDM2 has none) sample EDM's EMA with a half-life of 5 % of the
           images so far.
           Point data.source at ImageNet's train folder (one sub-folder per class).
  bench    the benchmark of `python -m jaxgen.bench` (`cifar10` on the embedded data at 32×32,
           bf16 compute): training images/s and sampling images/s at 35 evaluations.
  songunet_cpu  the CPU default until 2026-12-05: the same run with EDM's SongUNet (16 and 32
           channels, residual encoder, skip decoder; 182 k parameters), EDM's loss, lr 0.004,
           Adam β2 0.999. 8.0–12.1 minutes on 2-core CPUs, SWD 41.7 / 38.2, square 0.391, mean
           class accuracy 0.841 (seed 0).
"""

import ml_collections


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Parameter init, data order, noise levels, latents.

  # Data: every source yields uint8 [R, R, C] images (and int labels) at data.resolution.
  config.data = ml_collections.ConfigDict()
  config.data.source = 'embedded'  # 'embedded' | 'folder:PATH' | 'tfds:NAME[:SPLIT]'
  # 16×16: at 32×32 this CPU budget shows fewer than a quarter of the images (see above).
  config.data.resolution = 16  # Divisible by 2 ** (len(model.channel_mult) - 1).
  config.data.channels = 3
  config.data.num_images = 20000  # Size of the embedded dataset (it is procedural).
  # The five shapes of the embedded data (disc, square, stripes, rings, cross): the ten, with
  # their pixel-scale textures at 16², show no shapes in this budget (see above).
  config.data.classes = (0, 1, 3, 4, 8)  # Embedded data: keep only these classes; () = all ten.
  config.data.rotation = 0.0  # Embedded data: shapes rotated over [0, rotation·180°); 0 upright.
  config.data.seed = 0  # Which embedded images; not the data order (that is config.seed).
  config.data.xflip = False  # Dataset x-flips (EDM's `--xflip`); the augmentation flips too.
  config.data.use_labels = True  # Class-conditional (EDM's `--cond=1`); False: unconditional.
  config.data.cache_dir = ''  # folder: sources' decoded cache; '' = $JAXGEN_CACHE or ~/.cache.
  config.data.tfds_data_dir = ''  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets.
  config.data.tfds_download = True  # Try to download and prepare missing tfds data.
  config.data.num_threads = 4  # Host threads decoding examples.

  # Model (jaxgen/models/edm2unet.py, jaxgen/models/songunet.py, jaxgen/models/precond.py): the
  # denoiser D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise). Here F is EDM2's magnitude-preserving
  # U-Net, narrow and shallow: 299 k parameters, 16, 32 and 32 channels at 16², 8² and 4², one
  # block each, no attention (a 32-channel level has no 64-channel head), a 64-wide embedding.
  # EDM's DDPM++ (the presets' SongUNet) is 128 channels, channel_mult (2, 2, 2), 4 blocks per
  # resolution, attention at 16²; `:songunet_cpu` is the narrow SongUNet of the previous default.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'diffusion'
  # 'songunet' (EDM's DDPM++/NCSN++, jaxgen/models/songunet.py) | 'edm2' (EDM2's
  # magnitude-preserving U-Net, jaxgen/models/edm2unet.py; embedding_type, channel_mult_noise
  # and the encoder/decoder types are SongUNet's only).
  config.model.arch = 'edm2'
  # EDM2's learned uncertainty u(σ) (used by objective.name='edm2'): Fourier features feeding it.
  config.model.logvar_channels = 128
  config.model.precond = 'edm'  # 'edm' | 'vp' (DDPM) | 've' (score SDE): c_skip, c_out, c_in, c_noise.
  config.model.sigma_data = 0.5  # EDM's σ_data: the data's standard deviation.
  config.model.model_channels = 16
  config.model.channel_mult = (1, 2, 2)
  config.model.channel_mult_emb = 4
  config.model.num_blocks = 1
  config.model.attn_resolutions = ()
  # EDM2's U-Net: attention heads of this many channels (EDM2: 64). A level narrower than that
  # has no heads; attention asked there is an error (EDM2's own bottom-level attention, always
  # on, is skipped silently in such a level, as in the official code).
  config.model.channels_per_head = 64
  config.model.dropout = 0.0  # 0.13 for CIFAR-10; off in this short run.
  config.model.label_dropout = 0.1  # > 0 trains the unconditional branch for guidance.
  config.model.embedding_type = 'positional'  # 'positional' (DDPM++) | 'fourier' (NCSN++)
  config.model.channel_mult_noise = 1  # 2 with Fourier embeddings (NCSN++).
  # NCSN++'s progressive input (the image down-sampled into every level) and score-SDE's
  # progressive output (every level adds to the output): rings come out as rings instead of
  # labyrinths at no measurable cost (DDPM++: 'standard' and 'standard').
  config.model.encoder_type = 'residual'  # 'standard' | 'skip' | 'residual'
  config.model.decoder_type = 'skip'  # 'standard' | 'skip'
  config.model.resample_filter = (1, 1)  # (1, 3, 3, 1) for NCSN++.
  config.model.dtype = 'float32'  # 'bfloat16' on GPU/TPU: matmuls and convolutions in bf16.

  # Objective (jaxgen/objectives/diffusion.py): the loss of `model.precond`'s paper.
  config.objective = ml_collections.ConfigDict()
  # 'edm' | 'vp' | 've' | 'edm2' (EDM's, weighted by EDM2's learned uncertainty; needs
  # model.logvar_channels > 0). The presets but edm2_img64 use their paper's own.
  config.objective.name = 'edm2'
  # EDM: ln σ ~ N(P_mean, P_std²), −1.2 in the paper. −0.6 trains more at the noise levels where
  # layout forms: SWD 45.2 against 51.7 after 1,000 steps (with lr 0.004 against 0.002).
  config.objective.P_mean = -0.6
  config.objective.P_std = 1.2
  config.objective.vp_beta_d = 19.9  # VP: σ(t) = sqrt(exp(β_d t²/2 + β_min t) − 1), ...
  config.objective.vp_beta_min = 0.1
  config.objective.vp_epsilon_t = 1e-5  # ... t ~ U(ε_t, 1).
  config.objective.ve_sigma_min = 0.02  # VE: σ log-uniform in [σ_min, σ_max].
  config.objective.ve_sigma_max = 100.0

  # EDM's non-leaking augmentation (jaxgen/augment/edm.py): each transform fires with
  # probability p and the network is told which (augment labels, 9 numbers); 0 = off.
  config.augment = ml_collections.ConfigDict()
  config.augment.p = 0.0  # 0.12 for CIFAR-10, 0.15 for FFHQ.

  # Optimizer: Adam (0.9, 0.99, 1e-8) as EDM2 (EDM: β2 0.999); lr ramps linearly over
  # lr_rampup_kimg. EDM2's forced weight normalisation makes the lr a relative step per update:
  # 0.03 here (0.01 for EDM2's ImageNet nets; EDM's SongUNet: 1e-3 at batch 512 for 56 M
  # parameters, 0.004 for `:songunet_cpu`).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.lr = 0.03
  config.optimizer.lr_rampup_kimg = 2.0  # 10,000 in EDM's 200 Mimg runs.
  # Linear decay to 0 over this last fraction of the run (EDM: 0, constant): a short run's
  # weights settle into flat colours instead of the EMA averaging a moving net.
  config.optimizer.lr_cooldown = 0.3
  # EDM2's decay lr/√(kimg/lr_decay_kimg) once past lr_decay_kimg (its ref_batches · batch,
  # e.g. 70,000 · 2048 images); 0 = none, as EDM.
  config.optimizer.lr_decay_kimg = 0.0
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.99
  config.optimizer.eps = 1e-8

  # Schedule.
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32  # Global, over all devices and processes.
  # A CPU-only host split into this many XLA devices (jaxgen/parallel.py): 1.6× the images/s on
  # two cores. 0 = JAX's default (one); ignored on GPU/TPU and when XLA_FLAGS sets the count.
  config.train.cpu_devices = 2
  config.train.num_steps = 10000  # 320 kimg.
  config.train.ema_kimg = 1.0  # EMA half-life (thousands of images); EDM: 500.
  config.train.ema_rampup = 0.05  # Half-life ≤ 5 % of the images shown so far; 0 = none.
  # EDM2's power-function EMAs (jaxgen/posthoc_ema.py), each σ_rel in (0, 0.2887); () = none.
  # Snapshots of them every ema_snapshot_kimg (0 = none) go to WORKDIR/snapshots/, from which
  # `python -m jaxgen.phema --workdir=RUN --std=S` reconstructs the EMA of any σ_rel post hoc.
  config.train.ema_std = ()
  config.train.ema_snapshot_kimg = 0.0

  # Sampling: what evaluations, sample grids and `jaxgen.generate` use (its flags override).
  config.sampling = ml_collections.ConfigDict()
  config.sampling.sampler = 'heun'  # 'heun' | 'euler' | 'ddim' | 'ddpm' (jaxgen/samplers)
  config.sampling.num_steps = 18  # Heun: 2·18 − 1 = 35 evaluations per image.
  # Noise range; 0 = the sampler's own (heun/euler: EDM's 0.002–80; ddim/ddpm: the VP SDE's
  # σ(1e-3)–σ(1), 0.0105–152), clamped to what model.precond supports (VP: 0.0064–152).
  config.sampling.sigma_min = 0.0
  config.sampling.sigma_max = 0.0
  config.sampling.rho = 7.0  # Time-step exponent of EDM's discretisation.
  config.sampling.S_churn = 0.0  # > 0: EDM's stochastic sampler (with S_min, S_max, S_noise).
  config.sampling.S_min = 0.0
  config.sampling.S_max = float('inf')
  config.sampling.S_noise = 1.0
  config.sampling.eta = 0.0  # DDIM's η (0 = deterministic); DDPM is η = 1.
  config.sampling.guidance = 3.0  # Classifier-free guidance scale (conditional runs); 1 = none.

  # Evaluation of the EMA denoiser through the sampler above.
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('swd',)
  config.eval.num_images = 256  # Real and generated images compared by SWD (35 evaluations each).
  config.eval.batch_size = 256
  config.eval.every_steps = 5000
  config.eval.at_start = False  # The untrained denoiser's samples are noise.
  config.eval.fid_resize = 'tf'  # As EDM's fid.py: TensorFlow's bilinear resize to 299².

  # Checkpointing: the last `keep`, plus the best by `best_metric` (lower is better).
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 1000
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'swd/avg'
  config.checkpoint.best_mode = 'min'

  # Logging: TensorBoard scalars every `every_steps`, sample grids at every evaluation.
  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  config.log.num_samples = 64

  if preset in ('cifar10', 'ncsnpp', 'ffhq64', 'vp', 've', 'bench'):
    _edm_cifar10(config)
  if preset in ('ncsnpp', 've'):
    _ncsnpp(config)
  if preset == 'ffhq64':
    config.data.source = 'folder:/path/to/ffhq-64x64'
    config.data.resolution = 64
    config.model.channel_mult = (1, 2, 2, 2)
    config.model.dropout = 0.05
    config.augment.p = 0.15
    config.optimizer.lr = 2e-4
    config.train.batch_size = 256
    config.train.num_steps = 200_000_000 // 256
    config.sampling.num_steps = 40  # 79 evaluations, as EDM recommends at 64².
  elif preset in ('vp', 've'):
    config.model.precond = config.objective.name = preset
  elif preset == 'bench':
    config.data.source = 'embedded'
    config.data.num_images = 2048
    config.model.dtype = 'bfloat16'
  elif preset == 'edm2_img64':
    _edm2_img64(config)
  elif preset == 'songunet_cpu':
    _songunet_cpu(config)
  elif preset and preset not in ('cifar10', 'ncsnpp'):
    raise ValueError(f'unknown preset {preset!r}: use cifar10, ncsnpp, ffhq64, vp, ve, '
                     'edm2_img64, songunet_cpu or bench')
  return config


def _edm_cifar10(config):
  """EDM's `train.py` defaults for CIFAR-10 (DDPM++, EDM preconditioning and loss)."""
  _edm_network_and_loss(config)
  config.data.source = 'tfds:cifar10:train'
  config.data.resolution = 32
  config.data.classes = ()
  config.data.rotation = 1.0
  config.data.use_labels = False  # True: the conditional model (label_dropout 0.1 for guidance).
  config.model.label_dropout = 0.0
  config.sampling.guidance = 1.0
  config.optimizer.lr_cooldown = 0.0
  config.objective.P_mean = -1.2
  config.model.model_channels = 128
  config.model.channel_mult = (2, 2, 2)
  config.model.encoder_type = 'standard'  # DDPM++ (the default's are NCSN++'s and score-SDE's).
  config.model.decoder_type = 'standard'
  config.model.num_blocks = 4
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.13
  config.augment.p = 0.12
  config.optimizer.lr = 1e-3
  config.optimizer.lr_rampup_kimg = 10_000.0
  config.train.batch_size = 512
  config.train.num_steps = 200_000_000 // 512  # 200 Mimg.
  config.train.ema_kimg = 500.0
  config.train.ema_rampup = 0.05
  # FID during training on 10k samples (35 evaluations each); the paper's figure is
  # `python -m jaxgen.evaluate --workdir=RUN --metrics=fid50k` at the end. Needs the FID
  # Inception weights (README); EDM's fid.py resizes as TensorFlow does (eval.fid_resize).
  config.eval.metrics = ('fid10k',)
  config.eval.every_steps = 10_000
  config.eval.batch_size = 512
  config.checkpoint.every_steps = 2000
  config.checkpoint.best_metric = 'fid10k'
  config.log.every_steps = 100


def _edm2_img64(config):
  """EDM2's `train_edm2.py --preset=edm2-img64-s`: ImageNet 64×64 in pixel space, 1000 classes."""
  config.data.source = 'folder:/path/to/imagenet/train'  # One sub-folder per class.
  config.data.resolution = 64
  config.data.classes = ()
  config.data.rotation = 1.0
  config.data.use_labels = True
  config.model.arch = 'edm2'
  config.model.model_channels = 192
  config.model.channel_mult = (1, 2, 3, 4)
  config.model.num_blocks = 3
  config.model.attn_resolutions = (16, 8)
  config.model.dropout = 0.0
  config.model.label_dropout = 0.0  # EDM2 guides with a second network, not label dropout.
  config.model.logvar_channels = 128
  config.model.channel_mult_emb = 4  # 768, the widest level's width: EDM2's default.
  config.model.dtype = 'bfloat16'  # EDM2 trains in fp16 (use_fp16=True).
  config.objective.name = 'edm2'
  config.objective.P_mean = -0.8
  config.objective.P_std = 1.6
  config.augment.p = 0.0
  config.optimizer.lr = 0.01
  config.optimizer.b2 = 0.99
  config.optimizer.lr_rampup_kimg = 10_000.0
  config.optimizer.lr_decay_kimg = 35_000 * 2048 / 1000  # ref_batches 35,000 of 2048.
  config.optimizer.lr_cooldown = 0.0
  config.train.batch_size = 2048
  config.train.num_steps = (1024 << 20) // 2048  # 1 Gimg (2³⁰ images).
  # EDM2's power-function EMAs, snapshotted every 8 Mi images, for post-hoc EMA: the released
  # edm2-img64-s-fid is `python -m jaxgen.phema --workdir=RUN --std=0.075` at the last one.
  config.train.ema_std = (0.050, 0.100)
  config.train.ema_snapshot_kimg = (8 << 20) / 1000  # 4,096 batches.
  # What evaluations during training sample (EDM2 has none): EDM's EMA with a half-life of 5 %
  # of the images so far, the nearest exponential one to a power-function EMA.
  config.train.ema_kimg = (1024 << 20) / 1000
  config.train.ema_rampup = 0.05
  config.sampling.num_steps = 32  # 63 evaluations, as EDM2's generate_images.py at 64².
  config.sampling.guidance = 1.0
  config.eval.metrics = ('fid10k',)
  config.eval.every_steps = 5_000
  config.eval.batch_size = 512
  config.checkpoint.every_steps = 1_000
  config.checkpoint.best_metric = 'fid10k'


def _edm_network_and_loss(config):
  """EDM's own choices where the CPU default takes EDM2's: SongUNet, EDM's loss, Adam β2 0.999."""
  config.model.arch = 'songunet'
  config.objective.name = 'edm'
  config.optimizer.b2 = 0.999


def _songunet_cpu(config):
  """The CPU default until 2026-12-05: EDM's recipe with a narrow SongUNet (182 k parameters)."""
  _edm_network_and_loss(config)
  config.data.rotation = 1.0
  config.model.channel_mult = (1, 2)
  config.optimizer.lr = 4e-3


def _ncsnpp(config):
  """EDM's `--arch=ncsnpp`: Fourier embedding, residual encoder, [1,3,3,1] resampling."""
  config.model.embedding_type = 'fourier'
  config.model.channel_mult_noise = 2
  config.model.encoder_type = 'residual'
  config.model.decoder_type = 'standard'
  config.model.resample_filter = (1, 3, 3, 1)
