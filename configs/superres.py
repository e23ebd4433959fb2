"""Super-resolution: PSNR-oriented SRResNet / RRDB and ESRGAN, on the one training loop.

  python -m jaxgen.main --config=configs/superres.py --workdir=/tmp/superres

The default is a CPU quickstart on the embedded procedural dataset (no download): ×4
super-resolution of random 64×64 crops of 128×128 images from 16×16 inputs made by MATLAB's
antialiased bicubic down-scaling (as the SR literature makes its LR images), with a small
SRResNet (BasicSR's MSRResNet: 32 features, 4 residual blocks without batch norm, pixel-shuffle
up-sampling, the bilinear input added back; 159 k parameters) trained by L1 alone, Adam 1e-3
with cosine decay. 256 embedded images are held out and scored (their centre 64×64) at every
evaluation beside bicubic up-scaling (`baseline_*`): PSNR and SSIM on RGB, and on the Y channel
with a 4-pixel border cropped, as SR papers report.

Measured on a 2-core CPU (JAX 0.10.2), 3,000 steps of 8: 7.9 minutes with start-up and three
evaluations (~55 training images/s). PSNR-Y / SSIM-Y 40.89 / 0.946 at step 1,000, 41.59 / 0.949
at 2,000, 41.87 / 0.950 at 3,000, against 39.77 / 0.918 for bicubic; RGB PSNR / SSIM 32.28 /
0.910 against 31.88 / 0.883. The outputs have sharp edges where bicubic's are soft. Trained on
whole 64×64 images (16×16 inputs) instead, where the data's stripes, checkers and dot grids lie
at the inputs' Nyquist limit, the same 3,000 steps did not beat bicubic (PSNR-Y 36.2 vs 37.2).

Apply it to your own pictures (any size; large ones are tiled with blended seams):
  python -m jaxgen.translate --workdir=/tmp/superres --input=small.png --outdir=out

Presets (`--config=configs/superres.py:NAME`); point data.source at your images (e.g. a folder
of DIV2K HR images with data.resolution=512 and random crops), or at a dataset of real pairs,
whose LR images replace jaxgen's bicubic down-scaling: --config.data.source=tfds:div2k/bicubic_x4
(the scale must be task.scale; jaxgen/data/tfds_source.py):
  msrresnet  BasicSR's MSRResNet ×4 (64 features, 16 blocks, 1,517,571 parameters): 128² GT
             crops, batch 16, L1, Adam 2e-4 (β 0.9, 0.99), cosine decay over 1 M steps.
  rrdb       ESRGAN's PSNR-oriented RRDB ×4 (23 blocks, 16,697,987 parameters), same training.
  esrgan     ESRGAN's GAN stage: the RRDB G, BasicSR's VGG-style D on 128² crops, relativistic
             GAN 5e-3 + L1 1e-2 + VGG19 conv5_4 perceptual 1, Adam 1e-4 (β 0.9, 0.99), EMA; needs
             the ImageNet VGG19 weights (jaxgen/pretrained.py says where they are looked for).
             As ESRGAN, it starts from the PSNR-oriented RRDB (`model.init_from`: G's weights
             and their EMA; D and Adam start afresh): train `rrdb` first, then the GAN stage,
               python -m jaxgen.main --config=configs/superres.py:rrdb --workdir=/tmp/superres_rrdb
               python -m jaxgen.main --config=configs/superres.py:esrgan --workdir=/tmp/esrgan
             or point --config.model.init_from at your PSNR run (a workdir, or one of its
             checkpoints/<step> folders).
"""

import importlib.util
import math
import os

_spec = importlib.util.spec_from_file_location(
    'jaxgen_configs_pix2pix', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           'pix2pix.py'))
_pix2pix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pix2pix)


def get_config(preset=''):
  config = _pix2pix.get_config()  # Every field, documented there.
  config.data.resolution = 128
  config.task.name = 'sr'
  config.task.scale = 4
  config.task.crop = 64  # 64² targets from 16² inputs; evaluation on the centre 64².
  config.model.generator = 'srresnet'
  config.model.num_feat = 32
  config.model.num_block = 4
  config.model.discriminator = 'none'
  config.objective.gan_loss = 'none'
  config.objective.pixel_weight = 1.0
  config.optimizer.lr = 1e-3
  config.optimizer.b1, config.optimizer.b2 = 0.9, 0.99
  config.optimizer.schedule = 'cosine'
  config.train.batch_size = 8
  config.train.num_steps = 3000
  config.eval.metrics = ('psnr', 'ssim', 'psnr_y', 'ssim_y')
  config.checkpoint.best_metric = 'psnr_y'

  if preset in ('msrresnet', 'rrdb', 'esrgan'):
    config.data.resolution = 256
    config.task.crop = 128
    config.model.num_feat = 64
    config.model.num_block = 16
    config.optimizer.lr = 2e-4
    config.train.batch_size = 16
    config.train.num_steps = 1_000_000
    config.eval.every_steps = 5000
    config.checkpoint.every_steps = 5000
  if preset in ('rrdb', 'esrgan'):
    config.model.generator = 'rrdb'
    config.model.num_block = 23
    config.model.num_grow_ch = 32
  if preset == 'esrgan':
    config.model.discriminator = 'vgg128'
    config.model.ndf = 64
    config.model.d_conditional = False
    config.model.init_from = '/tmp/superres_rrdb'  # The `rrdb` run (ESRGAN's 051 → 052 stage).
    config.objective.gan_loss = 'ragan'
    config.objective.gan_weight = 5e-3
    config.objective.pixel_weight = 1e-2
    config.objective.perceptual_weight = 1.0
    config.objective.perceptual_layers = ('conv5_4',)
    config.optimizer.lr = 1e-4
    config.optimizer.schedule = 'constant'
    config.train.num_steps = 400_000
    # BasicSR's EMA decay 0.999 per step, as a half-life in kimg at batch 16 (11.1 kimg).
    config.train.ema_kimg = 16 * math.log(2) / -math.log(0.999) / 1000
  elif preset and preset not in ('msrresnet', 'rrdb'):
    raise ValueError(f'unknown preset {preset!r}: use msrresnet, rrdb or esrgan')
  return config
