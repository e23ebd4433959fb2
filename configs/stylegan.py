"""StyleGAN2-ADA (Karras et al. 2020): a small StyleGAN2 on the embedded procedural dataset, 32×32.

  python -m jaxgen.main --config=configs/stylegan.py --workdir=/tmp/stylegan

Needs no download. The official recipe for 32×32 data (StyleGAN2-ADA's `cifar` config: no
path-length regularisation, no style mixing) — modulated convolutions with noise, the resnet D
with minibatch stddev, lazy R1 every 16 steps, the generator EMA with ramp-up, ADA — with a
narrow network (32 channels), batch 16 and twice the official lr, so that a 2-core CPU
finishes in 8–9 minutes (7,000 steps, 112 kimg). Measured: SWD 193 → 45 (×10³); README has the
curve and what the samples look like. On a GPU, `:cifar10` or the 64×64 run of
tools/gpu_check.sh.

Presets (`--config=configs/stylegan.py:NAME`); data through `--config.data.source=...`
(`tfds:NAME[:SPLIT]` or `folder:PATH`) at `--config.data.resolution=...`:
  stylegan2  StyleGAN2-ADA's `--cfg=stylegan2` (the StyleGAN2 paper's config F): channel_base
             32768, batch 32, mbstd group 4, lr 0.002, γ 10, EMA 10 kimg; for 256² and up, e.g.
             FFHQ. 25,000 kimg on 8 V100s in the paper (~2 weeks at 1024²).
  paper256   StyleGAN2-ADA's `paper256` (the ADA paper's 256² runs): channel_base 16384, batch 64,
             mbstd group 8, lr 0.0025, γ 1, EMA 20 kimg. FFHQ-256 + ADA reached FID 4.3 (box
             downscaling) / 5.3 (Lanczos) at 25,000 kimg.
  cifar10    StyleGAN2-ADA's `cifar`: 32×32 conditional (CIFAR-10 through tfds), 512 channels at
             every resolution, 2 mapping layers, D `orig`, batch 64, mbstd 32, γ 0.01, EMA 500
             kimg with ramp-up 0.05, no path length, no style mixing. FID 2.42 in the ADA paper
             (100,000 kimg on 2 V100s). `--config.data.use_labels=False` for unconditional.
  bench256   the benchmark of `python -m jaxgen.bench`: `stylegan2` at 256², batch 32, γ 1, no
             augmentation, bf16 in the 4 highest resolutions (the official speed reference).
  bench64    the same at 64², batch 64, γ 0.05.
"""

import ml_collections


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Parameter init, data order, latents.

  # Data: every source yields uint8 [R, R, C] images (and int labels) at data.resolution.
  config.data = ml_collections.ConfigDict()
  config.data.source = 'embedded'  # 'embedded' | 'folder:PATH' | 'tfds:NAME[:SPLIT]'
  config.data.resolution = 32  # A power of two ≥ 8.
  config.data.channels = 3
  config.data.num_images = 20000  # Size of the embedded dataset (it is procedural).
  config.data.classes = ()  # Embedded data: keep only these classes (e.g. (0, 1)); () = all.
  config.data.rotation = 1.0  # Embedded data: shapes rotated over [0, rotation·180°); 0 upright.
  config.data.seed = 0  # Which embedded images; not the data order (that is config.seed).
  config.data.xflip = False  # Dataset x-flips (`--mirror` in the official code).
  config.data.use_labels = False  # True: conditional G (label embedding) and D (projection).
  config.data.cache_dir = ''  # folder: sources' decoded cache; '' = $JAXGEN_CACHE or ~/.cache.
  config.data.tfds_data_dir = ''  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets.
  config.data.tfds_download = True  # Try to download and prepare missing tfds data.
  config.data.num_threads = 4  # Host threads decoding examples.

  # Model (jaxgen/models/stylegan2.py). Feature maps at resolution r: min(channel_base / r,
  # channel_max). The official configs use 512-d z and w; this one is narrow for a CPU.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'stylegan2'
  config.model.z_dim = 128
  config.model.w_dim = 128
  config.model.num_mapping_layers = 2  # 8 in the paper; 2 in the official `cifar` config.
  config.model.mapping_lr_multiplier = 0.01
  config.model.channel_base = 512  # → 16 channels at 32², 32 below.
  config.model.channel_max = 32
  config.model.d_architecture = 'resnet'  # 'resnet' | 'skip' | 'orig'
  config.model.mbstd_group_size = 4  # Minibatch-stddev group; 0 = the whole batch.
  config.model.mbstd_num_channels = 1
  # Groups form within each device's share of the batch, as within each GPU's in the official
  # code (and need no communication); N > 0: within N equal parts whatever the device count,
  # e.g. 8 gives an 8-GPU run's statistics on one device.
  config.model.mbstd_num_splits = 0
  # Mixed precision: bfloat16 in the `num_bf16_res` highest resolutions of G and D, activations
  # clamped to ±conv_clamp (0 = no clamp). Off on a CPU, where bf16 is slower than float32.
  config.model.num_bf16_res = 0
  config.model.conv_clamp = 0.0
  config.model.spectral_norm = False  # Not for StyleGAN2 (R1 keeps D in check): True is refused.

  # Objective (jaxgen/objectives/stylegan2.py): non-saturating logistic loss and the lazy
  # regularisers. γ: the official `auto` heuristic 0.0002 · R² / batch gives 0.013 here; 0.05
  # kept D in check better in 7,000-step CPU runs (SWD 60 vs 75 at 0.0064 with other settings).
  config.objective = ml_collections.ConfigDict()
  config.objective.name = 'stylegan2'
  config.objective.loss = 'nonsaturating'  # Gmain/Dmain: the official one, 'hinge' or 'lsgan'.
  config.objective.r1_gamma = 0.05
  config.objective.r1_interval = 16  # Lazy R1: every 16 steps, scaled by 16.
  config.objective.pl_weight = 0.0  # Path-length regularisation (2 in `stylegan2`); 0 = off.
  config.objective.pl_interval = 4
  config.objective.pl_batch_shrink = 2  # PL runs on batch / 2 samples.
  config.objective.pl_decay = 0.01  # Running mean of the path lengths.
  config.objective.style_mixing_prob = 0.0  # 0.9 in `stylegan2`.

  # ADA (jaxgen/augment/ada.py): every image D sees is augmented with probability p, which
  # adapts every `interval` steps so that E[sign(D(real))] stays near `target`.
  config.augment = ml_collections.ConfigDict()
  config.augment.mode = 'ada'  # 'ada' | 'fixed' (p stays at augment.p) | 'noaug'
  config.augment.p = 0.0  # Initial (or fixed) probability.
  config.augment.target = 0.6
  config.augment.interval = 4
  config.augment.speed_kimg = 500.0  # Images (thousands) for p to move by 1.
  config.augment.pipeline = 'bgc'  # 'blit' | 'geom' | 'color' | 'bg' | 'bgc'

  # Optimizer: Adam β = (0, 0.99), ε = 1e-8 (lr and betas corrected for lazy regularisation).
  # The official `cifar` and `paper256` lr is 0.0025; at these widths 0.005 learnt faster in
  # 7,000-step CPU runs: SWD 44.6 and 41.5 (seeds 0, 1) against 59.7 and 70.0; 0.008: 57.4.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.g_lr = 0.005
  config.optimizer.d_lr = 0.005
  config.optimizer.b1 = 0.0
  config.optimizer.b2 = 0.99
  config.optimizer.eps = 1e-8

  # Schedule.
  config.train = ml_collections.ConfigDict()
  # Global, over all devices and processes. On a CPU, 16 learnt faster per image than 32 (SWD
  # 71 vs 108 after 38k images) at the same images/s.
  config.train.batch_size = 16
  config.train.num_steps = 7000
  config.train.ema_kimg = 10.0  # G EMA half-life (thousands of images); the official batch·10/32.
  config.train.ema_rampup = 0.05  # Half-life ≤ 5 % of the images shown so far; 0 = no ramp-up.

  # Evaluation of the EMA generator. Sliced Wasserstein distance needs no downloaded weights;
  # with the FID Inception weights add e.g. 'fid10k' (see README).
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('swd',)
  config.eval.num_images = 1024  # Real and generated images compared by SWD.
  config.eval.batch_size = 256
  config.eval.every_steps = 1000
  config.eval.at_start = True  # Score the untrained generator too, as a baseline.

  # Checkpointing: the last `keep`, plus the best by `best_metric` (lower is better).
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'swd/avg'
  config.checkpoint.best_mode = 'min'

  # Logging: TensorBoard scalars every `every_steps`, sample grids at every evaluation.
  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  config.log.num_samples = 64  # Images in each sample grid (a fixed latent batch).

  if preset in ('stylegan2', 'paper256', 'bench256', 'bench64'):
    _official_networks(config)
    config.data.resolution = 256
    config.data.source = 'folder:/path/to/your/images'  # Or 'tfds:NAME[:SPLIT]'.
    config.data.xflip = True
    config.train.num_steps = 25_000_000 // 32  # 25,000 kimg at batch 32.
  if preset == 'stylegan2':
    config.optimizer.g_lr = config.optimizer.d_lr = 0.002
    config.objective.r1_gamma = 10.0
    config.train.ema_kimg = 10.0
    config.train.ema_rampup = 0.0
  elif preset == 'paper256':
    config.optimizer.g_lr = config.optimizer.d_lr = 0.0025
    config.model.channel_base = 16384
    config.model.mbstd_group_size = 8
    config.train.batch_size = 64
    config.train.num_steps = 25_000_000 // 64
    config.objective.r1_gamma = 1.0
    config.train.ema_kimg = 20.0
    config.train.ema_rampup = 0.0
  elif preset == 'cifar10':
    _official_networks(config)
    config.data.source = 'tfds:cifar10:train'
    config.data.use_labels = True
    config.model.num_mapping_layers = 2
    config.model.d_architecture = 'orig'
    config.model.mbstd_group_size = 32
    config.optimizer.g_lr = config.optimizer.d_lr = 0.0025
    config.train.batch_size = 64
    config.train.num_steps = 100_000_000 // 64  # 100,000 kimg.
    config.train.ema_kimg = 500.0
    config.train.ema_rampup = 0.05
    config.objective.r1_gamma = 0.01
    config.objective.pl_weight = 0.0  # The official `cifar` config: no path length, ...
    config.objective.style_mixing_prob = 0.0  # ... no style mixing.
  elif preset in ('bench256', 'bench64'):
    # The stylegan3 repository's `--cfg=stylegan2 --aug=noaug`, against which the official speed
    # was measured: lr 0.002, EMA batch·10/32 kimg with ramp-up 0.05, γ 1 (256²) / 0.05 (64²).
    config.augment.mode = 'noaug'
    config.optimizer.g_lr = config.optimizer.d_lr = 0.002
    config.data.source = 'embedded'
    config.data.num_images = 1024
    if preset == 'bench64':
      config.data.resolution = 64
      config.train.batch_size = 64
      config.objective.r1_gamma = 0.05
    else:
      config.train.batch_size = 32
      config.objective.r1_gamma = 1.0
    config.train.ema_kimg = config.train.batch_size * 10 / 32
    config.train.ema_rampup = 0.05
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use stylegan2, paper256, cifar10, bench256 or '
                     'bench64')
  if preset in ('stylegan2', 'paper256', 'cifar10'):
    # Inception metrics as in the papers need the FID weights (README); SWD always works.
    config.eval.num_images = 10000
    config.eval.every_steps = 5000
    config.checkpoint.every_steps = 1000
    config.log.every_steps = 100
  return config


def _official_networks(config):
  """The official networks: 512-d z and w, 8 mapping layers, 512 channels from 64² down,
  bfloat16 in the 4 highest resolutions with conv_clamp 256."""
  config.model.z_dim = 512
  config.model.w_dim = 512
  config.model.num_mapping_layers = 8
  config.model.channel_base = 32768
  config.model.channel_max = 512
  config.model.num_bf16_res = 4
  config.model.conv_clamp = 256.0
  config.model.mbstd_group_size = 4
  config.objective.r1_gamma = 10.0
  config.objective.pl_weight = 2.0
  config.objective.style_mixing_prob = 0.9
  config.train.batch_size = 32
