r"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation on the one training loop.

  python -m jaxgen.main --config=configs/cyclegan.py --workdir=/tmp/cyclegan_default

The default is a CPU quickstart on the embedded two-domain data (no download;
jaxgen/data/unpaired.py): domain A is the procedural compositions painted orange on teal,
domain B *other* compositions painted navy on parchment. CycleGAN never sees a pair, but since
the restyling f from A to B is known, the translation G_A(a) is scored against f(a), the same
composition in B's colours (PSNR/SSIM), beside the
untranslated a (`baseline_*`), and by SWD against B images. 32×32 images, CycleGAN's networks
made small (ResNet generators of 3 blocks, ngf 16: 272,515 parameters each; 70×70 PatchGANs,
ndf 16: 175,089 each), the official losses (LSGAN, cycle 10, identity 0.5, 50-image pools) and
Adam β1 0.5, at batch 4 and lr 5e-4 for 1,000 steps: constant, then linearly to 0 over the last
500. 256 images of each domain are held out and scored at steps 500 and 1,000.

Measured on a 2-core CPU (JAX 0.10.2) shared with two to four other trainings (load average
4–6): 8.5 minutes wall-clock with start-up (~1.5 min of compiling) and both evaluations. On the
held-out images, step 500 / step 1,000 against the untranslated A images:
  PSNR to f(a)   15.05 / 15.26   (A itself: 7.39)
  SWD to B ×10³  75.4  / 52.9    (A itself: 165.2; the mean over the 32² and 16² levels)
  SSIM to f(a)   0.130 / 0.095   (A itself: 0.115)
The outputs are B's navy-on-parchment compositions in the places of A's shapes, with soft
edges; periodic patterns (stripes, rings, dot grids) sometimes come out with the two colours
swapped — which of two alternating colours is the "shape" is what the generators must read from
the palettes' contrast, and is not learnt yet after 1,000 steps — which costs SSIM its gain.
The sample grids show real A | G_A(A) | G_B(G_A(A)) over real B | G_B(B) | G_A(G_B(B)).

Apply a trained model to your pictures, either way:
  python -m jaxgen.translate --workdir=/tmp/cyclegan_default --input=pics/ --outdir=out
  python -m jaxgen.translate --workdir=/tmp/cyclegan_default --input=pics/ --outdir=out2 \
      --direction=BtoA
Instance norm normalises what it is given: `--tile` equal to the pictures' size (a multiple of 4)
normalises each whole picture, as the official test does; a smaller picture is first mirrored
out to the tile, a larger one is cut into tiles that are normalised one by one.

Presets (`--config=configs/cyclegan.py:NAME`), the official `--model cycle_gan` defaults
(resnet_9blocks G, 11,378,179 parameters each; 70×70 PatchGAN D with instance norm, 2,764,737
each; batch 1; images loaded at 286² and randomly cropped to 256² and flipped, each domain on
its own; 100 epochs at lr 2e-4, then 100 decaying linearly to 0; an epoch is max(|A|, |B|)
steps at batch 1):
  horse2zebra  tfds `cycle_gan/horse2zebra` (trainA 1,067 horses, trainB 1,334 zebras; scored
               on testA/testB): 200 × 1,334 steps.
  monet2photo  tfds `cycle_gan/monet2photo` (trainA 1,072 Monet paintings, trainB 6,287 photos):
               200 × 6,287 steps.
  folders      your own two folders: data.source="unpaired:/data/A,/data/B" (edit
               data.source and train.num_steps / optimizer.decay_steps: 200 and 100 epochs).
  bench        the official networks at 256², batch 1, on the embedded data
               (`python -m jaxgen.bench --config=configs/cyclegan.py:bench`; batch 8:
               --config.train.batch_size=8).
"""

import ml_collections


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Parameter init, data order, crops, flips, the history pools' draws.

  # Two domains, never paired (jaxgen/data/unpaired.py): examples hold an A image as 'input'
  # and a B image as 'image'.
  config.data = ml_collections.ConfigDict()
  # 'unpaired:embedded' | 'unpaired:DIR_A,DIR_B' (or source specs) | 'tfds:cycle_gan/NAME'
  config.data.source = 'unpaired:embedded'
  config.data.resolution = 32  # Images are centre-cropped and resized to this (official: 286).
  config.data.channels = 3
  config.data.num_images = 20000  # Per domain of the embedded data.
  config.data.seed = 0
  config.data.xflip = False  # Flips are the task's: each domain flipped on its own.
  config.data.use_labels = False
  config.data.holdout = 256  # Images of each domain kept out of training and scored.
  config.data.cache_dir = ''
  config.data.tfds_data_dir = ''
  config.data.tfds_download = True
  config.data.num_threads = 4

  # What a training example becomes (jaxgen.data.unpaired.UnpairedTask).
  config.task = ml_collections.ConfigDict()
  config.task.crop = 0  # Random crops of this size (0 = whole images; official: 256 of 286).
  config.task.flip = True  # Random left-right flips (official: no_flip=False).

  # Networks (jaxgen/models/resnet_generator.py, pix2pix.py).
  config.model = ml_collections.ConfigDict()
  config.model.name = 'cyclegan'
  config.model.generator = 'resnet'  # 'resnet_9blocks' | 'resnet_6blocks' | 'resnet' (n_blocks)
  config.model.n_blocks = 3
  config.model.ngf = 16  # Official: 64.
  config.model.ndf = 16  # Official: 64.
  config.model.n_layers = 3  # PatchGAN: 3 = 70×70 receptive field.
  config.model.norm = 'instance'  # G and D; 'instance' | 'none'.
  config.model.use_dropout = False  # Official: no_dropout=True.
  config.model.padding_type = 'reflect'
  config.model.dtype = 'float32'

  # Losses (jaxgen/objectives/cyclegan.py).
  config.objective = ml_collections.ConfigDict()
  config.objective.gan_loss = 'lsgan'  # 'lsgan' | 'nonsaturating' | 'hinge'
  config.objective.lambda_A = 10.0  # Cycle A → B → A.
  config.objective.lambda_B = 10.0  # Cycle B → A → B.
  config.objective.lambda_identity = 0.5  # × λ: G_A(b) ≈ b, G_B(a) ≈ a.
  config.objective.pool_size = 50  # Past fakes each D draws from (0 = none).

  # Adam for both generators and for both discriminators; lr constant, then linearly to 0 over
  # the last `decay_steps` steps (official: n_epochs, then n_epochs_decay).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.lr = 5e-4  # Official: 2e-4 at batch 1 (the presets); 2.5× for 1,000 steps of 4.
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.decay_steps = 500  # Official: 100 of 200 epochs.

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 4  # Official: 1.
  config.train.num_steps = 1000

  # Evaluation on held-out images (jaxgen/evaluation.py: UnpairedEvaluator), beside A itself.
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('psnr', 'ssim', 'swd')  # psnr/ssim need the known f: embedded only.
  config.eval.num_images = 256
  config.eval.batch_size = 64
  config.eval.every_steps = 500
  config.eval.at_start = False
  config.eval.source = ''  # Another two-domain source to evaluate on (e.g. testA/testB).
  config.eval.inception_weights = ''

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'psnr'
  config.checkpoint.best_mode = 'max'

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  config.log.num_samples = 6  # Panels of A → B → A over B → A → B in each grid (3 × 2).

  if preset in ('horse2zebra', 'monet2photo'):
    _official(config, epoch_steps={'horse2zebra': 1334, 'monet2photo': 6287}[preset])
    config.data.source = f'tfds:cycle_gan/{preset}'
    config.eval.source = f'tfds:cycle_gan/{preset}:test'
  elif preset == 'folders':
    _official(config, epoch_steps=1000)
    config.data.source = 'unpaired:/path/to/A,/path/to/B'
    config.data.holdout = 64
  elif preset == 'bench':
    _official(config, epoch_steps=1000)
    config.data.resolution = 256  # The embedded images stop at 256²: whole images, no crop.
    config.task.crop = 0
    config.data.num_images = 256
    config.data.holdout = 16
    config.eval.metrics = ('swd',)
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use horse2zebra, monet2photo, folders or bench')
  return config


def _official(config, epoch_steps):
  """The official `--model cycle_gan` defaults: networks, 286² loaded and 256² crops, batch 1,
  100 + 100 epochs of `epoch_steps` steps, scored by SWD (and FID with Inception weights)."""
  config.data.resolution = 286
  config.data.holdout = 0
  config.task.crop = 256
  config.model.generator = 'resnet_9blocks'
  config.model.ngf = config.model.ndf = 64
  config.train.batch_size = 1
  config.optimizer.lr = 2e-4
  config.train.num_steps = 200 * epoch_steps
  config.optimizer.decay_steps = 100 * epoch_steps
  config.eval.metrics = ('swd', 'fid')
  config.eval.num_images = 100
  config.eval.batch_size = 10
  config.eval.every_steps = 10 * epoch_steps
  config.checkpoint.every_steps = epoch_steps
  config.checkpoint.best_metric = ''
  config.log.every_steps = 100
