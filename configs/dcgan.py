"""DCGAN (Radford et al. 2016) on the embedded procedural dataset, 32×32.

  python -m jaxgen.main --config=configs/dcgan.py --workdir=/tmp/dcgan

The README's quickstart. Needs no download. 2,500 steps of batch 64 with a half-width
network (base 32 channels): about 6–7 minutes on a 2-core CPU. Measured figures are in README.

Presets (`--config=configs/dcgan.py:NAME`), each the paper's 64×64 architecture or its 32×32
reduction, through tensorflow-datasets (prepare them first, see README):
  mnist     32×32 grayscale digits, 10 epochs ≈ 9.4k steps of 64.
  cifar10   32×32 RGB, ~25 epochs ≈ 20k steps of 64.
  celeb_a   64×64 faces, centre-cropped, ~8 epochs ≈ 20k steps of 64 (the paper's setting).

GAN remedies (`REMEDIES`, jaxgen/objectives/gan_losses.py): the quickstart above (embedded
data, 32×32, half width, 2,500 steps of 64) with one remedy each, e.g.

  python -m jaxgen.main --config=configs/dcgan.py:wgan_gp --workdir=/tmp/wgan_gp

Measured 2026-12-02 on the 2-core CPU while other jobs shared it (load 4–10, so the run times are
upper bounds; `jaxgen.bench` at load 2 gives each step's cost, the default's 176 ms). SWD ×10³
(`eval/swd/avg`, 1,024 images) at step 2,500, best in brackets; the default reaches 51.0:
  hinge     hinge loss, batch-norm D                        66.5 (55.4 at 2,000)  23 min, 182 ms
  lsgan     least squares, batch-norm D                     72.7                  20 min, 181 ms
  wgan_gp   WGAN-GP λ 10, n_critic 5 (500 G updates),
            layer-norm critic, Adam(1e-4, β = (0, 0.9))    168.1 (165.1 at 1,000) 68 min, 208 ms
  sn_hinge  hinge, spectral norm on every D layer, no BN    250.3 (204.0 at 2,000) 17 min, 176 ms
At this budget none beats the default: WGAN-GP's G has had a fifth of the updates, and the
spectrally normalised half-width D (no batch norm) separates real from fake only slowly
(hinge D loss ≈ 1.6 of 2 at the end). SAGAN's two learning rates (D 4e-4, G 1e-4, β = (0, 0.9))
did not rescue it: 215.5 (161.7 at 1,500).
"""

import ml_collections

REMEDIES = ('wgan_gp', 'hinge', 'lsgan', 'sn_hinge')


def remedy(config, name):
  """The quickstart (embedded data, 32×32, half width, 2,500 steps of 64) with one GAN remedy."""
  if name == 'wgan_gp':
    # Gulrajani et al.'s DCGAN experiment: λ = 10, five critic updates per G update, a critic
    # with layer norm instead of batch norm, Adam(1e-4, β = (0, 0.9)).
    config.objective.name = 'wgan-gp'
    config.objective.n_critic = 5
    config.objective.gp_weight = 10.0
    config.model.d_norm = 'layer'
    config.optimizer.g_lr = config.optimizer.d_lr = 1e-4
    config.optimizer.b1, config.optimizer.b2 = 0.0, 0.9
  elif name == 'hinge':
    config.objective.name = 'hinge'  # The paper's D (batch norm) and Adam.
  elif name == 'lsgan':
    config.objective.name = 'lsgan'  # Mao et al. train with the same Adam(2e-4, β1 = 0.5).
  elif name == 'sn_hinge':
    # Miyato et al.: spectral norm on every layer of D, no batch norm, the hinge loss, one D
    # update per G update with Adam(2e-4, β = (0.5, 0.999)) (their setting C, DCGAN's own).
    config.objective.name = 'hinge'
    config.model.d_norm = 'none'
    config.model.spectral_norm = True


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Parameter init, data order, latents.

  # Data: every source yields uint8 [R, R, C] images (and int labels) at data.resolution.
  config.data = ml_collections.ConfigDict()
  config.data.source = 'embedded'  # 'embedded' | 'folder:PATH' | 'tfds:NAME[:SPLIT]'
  config.data.resolution = 32
  config.data.channels = 3
  config.data.num_images = 20000  # Size of the embedded dataset (it is procedural).
  config.data.classes = ()  # Embedded data: keep only these classes (e.g. (0, 1)); () = all.
  config.data.rotation = 1.0  # Embedded data: shapes rotated over [0, rotation·180°); 0 upright.
  config.data.seed = 0  # Which embedded images; not the data order (that is config.seed).
  config.data.xflip = False  # The classic recipe does not augment.
  config.data.use_labels = False  # True: class-conditional G and D (projection).
  config.data.cache_dir = ''  # folder: sources' decoded cache; '' = $JAXGEN_CACHE or ~/.cache.
  config.data.tfds_data_dir = ''  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets.
  config.data.tfds_download = True  # Try to download and prepare missing tfds data.
  config.data.num_threads = 4  # Host threads decoding examples.

  # Model: the paper's architecture, sized by the resolution. Widths double per halving of the
  # feature map, from base_channels at R/2 up to max_channels.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'dcgan'
  config.model.z_dim = 100
  config.model.g_base_channels = 32  # The paper's 64 for the presets; 32 keeps the CPU
  config.model.d_base_channels = 32  # quickstart within minutes.
  config.model.max_channels = 512
  config.model.dtype = 'float32'  # 'bfloat16' for mixed precision on GPU/TPU.
  # D's normalisation: 'batch' (the paper's), 'layer' (WGAN-GP's critic) or 'none'.
  config.model.d_norm = 'batch'
  config.model.spectral_norm = False  # Spectral norm on every weight of D (Miyato et al.).

  # Objective: the adversarial loss, one of jaxgen/objectives/gan_losses.py: 'nonsaturating'
  # (the paper's), 'wgan-gp', 'hinge', 'lsgan'.
  config.objective = ml_collections.ConfigDict()
  config.objective.name = 'nonsaturating'
  config.objective.n_critic = 1  # D updates per G update (5 in the WGAN-GP paper).
  config.objective.gp_weight = 10.0  # WGAN-GP's λ; read only with name='wgan-gp'.
  config.objective.drift = 0.0  # ProGAN's ε_drift · E D(x)² (0.001 there); 0 = off.

  # Optimizer: Adam as in the paper (lr 2e-4, β1 0.5 for stability).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.g_lr = 2e-4
  config.optimizer.d_lr = 2e-4
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8

  # Schedule.
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64  # Global, over all devices and processes.
  config.train.num_steps = 2500
  config.train.ema_kimg = 0.0  # EMA half-life (thousands of images); 0 = off, as in the paper.

  # Evaluation: sliced Wasserstein distance needs no downloaded weights.
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('swd',)
  config.eval.num_images = 1024  # Real and generated images compared.
  config.eval.batch_size = 256
  config.eval.every_steps = 500
  config.eval.at_start = True  # Score the untrained generator too, as a baseline.

  # Checkpointing: the last `keep`, plus the best by `best_metric` (lower is better).
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 250
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'swd/avg'
  config.checkpoint.best_mode = 'min'

  # Logging: TensorBoard scalars every `every_steps`, sample grids at every evaluation.
  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 50
  config.log.num_samples = 64  # Images in each sample grid (a fixed latent batch).

  if preset == 'mnist':
    config.data.source = 'tfds:mnist:train'
    config.data.channels = 1
    config.train.num_steps = 9400
  elif preset == 'cifar10':
    config.data.source = 'tfds:cifar10:train'
    config.train.num_steps = 20000
  elif preset == 'celeb_a':
    config.data.source = 'tfds:celeb_a:train'
    config.data.resolution = 64
    config.train.num_steps = 20000
  elif preset in REMEDIES:
    remedy(config, preset)
    return config
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use mnist, cifar10 or celeb_a (datasets), '
                     f'or {", ".join(REMEDIES)} (GAN remedies)')
  if preset:
    config.model.g_base_channels = config.model.d_base_channels = 64  # The paper's width.
    config.eval.num_images = 4096
    config.eval.every_steps = 2000
    config.checkpoint.every_steps = 1000
    config.log.every_steps = 100
  return config
