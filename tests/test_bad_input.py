"""Every bad input to `python -m jaxgen.main`, in one table: one error line naming what was wrong,
a non-zero exit, no traceback, and no file of the workdir changed (SHA-256 of every file before
and after; a new workdir is not even created).

A row is a `Case`: its overrides (`--config.KEY=VALUE`), extra arguments, the text its error line
must hold (the key it names), and which workdir it runs on:
  'trained'  a copy of the shared tiny DCGAN run (config.json, checkpoints 4 and 6, samples...)
  'new'      a path that does not exist yet (and must not exist afterwards)
  'file'     a path holding a regular file
Families add their bad inputs here (one row each, in their own section).
"""

import dataclasses
import hashlib
import os
import shutil
import subprocess
from typing import Callable, Optional

import pytest

from conftest import REPO, env_with_devices, main_command


@dataclasses.dataclass
class Case:
  id: str
  expect: str                                   # Text of the single error line (the key).
  overrides: dict = dataclasses.field(default_factory=dict)
  args: tuple = ()                              # Extra command-line arguments.
  workdir: str = 'new'                          # 'new' | 'trained' | 'file'
  config: str = 'configs/dcgan.py'              # May hold {tmp_path}: a file setup wrote.
  exit_code: int = 2
  setup: Optional[Callable] = None              # fn(tmp_path) -> overrides to add, before run.
  env: dict = dataclasses.field(default_factory=dict)
  lock_may_change: bool = False                 # Failed after taking the workdir lock.

  def __str__(self):
    return self.id


def _pairs(tmp, names_a, names_b):
  """A pairs: dataset under tmp with (empty) files in A/ and B/ (None: no B/ folder); returns
  the overrides that train on it."""
  for side, names in (('A', names_a), ('B', names_b)):
    if names is not None:
      (tmp / 'pairs' / side).mkdir(parents=True)
      for name in names:
        (tmp / 'pairs' / side / name).touch()
  return {'data.source': f'pairs:{tmp / "pairs"}', 'task.name': 'paired'}


def _init_run(tmp, overrides):
  """A run folder whose config.json is configs/superres.py's tiny run with `overrides` (another
  architecture): model.init_from refuses it before reading a checkpoint. Returns the override."""
  import json  # pylint: disable=import-outside-toplevel
  import superres  # pylint: disable=import-outside-toplevel
  from conftest import SUPERRES_TINY, with_overrides  # pylint: disable=import-outside-toplevel
  run = tmp / 'psnr_run'
  run.mkdir()
  config = with_overrides(superres.get_config(), {**SUPERRES_TINY, **overrides})
  (run / 'config.json').write_text(json.dumps(config.to_dict()))
  return {'model.init_from': str(run)}


CASES = [
    # --- the training config (jaxgen/validation.py) -------------------------------------------
    Case('batch-size-zero', 'train.batch_size=0', overrides={'train.batch_size': 0}),
    Case('batch-size-negative-on-a-run', 'train.batch_size=-8',
         overrides={'train.batch_size': -8}, workdir='trained'),
    Case('num-steps-negative', 'train.num_steps=-5', overrides={'train.num_steps': -5}),
    Case('log-every-zero', 'log.every_steps=0', overrides={'log.every_steps': 0}),
    Case('eval-every-zero', 'eval.every_steps=0', overrides={'eval.every_steps': 0}),
    Case('checkpoint-every-zero', 'checkpoint.every_steps=0',
         overrides={'checkpoint.every_steps': 0}),
    Case('keep-zero', 'checkpoint.keep=0', overrides={'checkpoint.keep': 0}, workdir='trained'),
    Case('learning-rate-negative', 'optimizer.g_lr=-0.0002 is negative',
         overrides={'optimizer.g_lr': -2e-4}),
    Case('learning-rate-nan', 'optimizer.d_lr=nan is not a finite number',
         overrides={'optimizer.d_lr': 'nan'}),
    Case('adam-beta-one', 'optimizer.b2=1.0 is outside [0, 1)', overrides={'optimizer.b2': 1.0}),
    Case('compute-dtype-unknown', "model.dtype='3'", overrides={'model.dtype': 3}),
    Case('resolution-zero', 'data.resolution=0', overrides={'data.resolution': 0}),
    Case('unknown-metric-on-a-run', "unknown metric 'fidd1k'",
         overrides={'eval.metrics': "('swd', 'fidd1k')"}, workdir='trained'),
    Case('stylegan-r1-interval-zero', 'objective.r1_interval=0',
         overrides={'objective.r1_interval': 0}, config='configs/stylegan.py'),
    Case('workdir-is-a-file', 'is a file, not a folder', workdir='file'),
    Case('workdir-of-another-experiment', 'holds a different experiment (optimizer.g_lr',
         overrides={'optimizer.g_lr': 1e-3}, workdir='trained'),
    # The state cannot be restored into another model: refused after the lock is taken (which
    # records its owner in .lock), with config.json and the checkpoints untouched.
    Case('allow-config-change-to-another-model',
         "checkpoint 6 in", overrides={'model.g_base_channels': 16},
         args=('--allow_config_change',), workdir='trained', lock_may_change=True),
    # --- diffusion (jaxgen/recipes/diffusion.py, jaxgen/samplers, jaxgen/models/songunet.py) ----
    Case('diffusion-unknown-sampler', "sampling.sampler='rk45'",
         overrides={'sampling.sampler': 'rk45'}, config='configs/diffusion.py'),
    Case('diffusion-unknown-precond', "model.precond='edn'",
         overrides={'model.precond': 'edn'}, config='configs/diffusion.py'),
    Case('diffusion-unknown-loss', "objective.name='score'",
         overrides={'objective.name': 'score'}, config='configs/diffusion.py'),
    Case('diffusion-steps-zero', 'sampling.num_steps=0',
         overrides={'sampling.num_steps': 0}, config='configs/diffusion.py'),
    Case('diffusion-guidance-unconditional', 'sampling.guidance=2.0',
         overrides={'data.use_labels': False, 'sampling.guidance': 2.0},
         config='configs/diffusion.py'),
    Case('diffusion-sigma-min-above-max', '> sigma_min=100.0',
         overrides={'sampling.sigma_min': 100.0}, config='configs/diffusion.py'),
    Case('diffusion-resolution-not-halvable', 'data.resolution=18',
         overrides={'data.resolution': 18}, config='configs/diffusion.py'),
    Case('diffusion-attention-resolution-absent', 'model.attn_resolutions',
         overrides={'model.attn_resolutions': '(7,)'}, config='configs/diffusion.py'),
    Case('diffusion-augment-p-above-one', 'augment.p=1.5',
         overrides={'augment.p': 1.5}, config='configs/diffusion.py'),
    Case('diffusion-lr-cooldown-above-one', 'optimizer.lr_cooldown=1.5',
         overrides={'optimizer.lr_cooldown': 1.5}, config='configs/diffusion.py'),
    Case('diffusion-cpu-devices-negative', 'train.cpu_devices=-1',
         overrides={'train.cpu_devices': -1}, config='configs/diffusion.py'),
    Case('diffusion-unknown-arch', "model.arch='unet3'",
         overrides={'model.arch': 'unet3'}, config='configs/diffusion.py'),
    Case('diffusion-edm2-with-augment-labels', "model.arch='edm2' takes no augmentation labels",
         overrides={'model.arch': 'edm2', 'augment.p': 0.12, 'model.attn_resolutions': '()'},
         config='configs/diffusion.py'),
    Case('diffusion-edm2-attention-without-heads', 'attention at 8x8 would have no heads',
         overrides={'model.arch': 'edm2', 'model.attn_resolutions': '(8,)'},
         config='configs/diffusion.py'),
    Case('diffusion-edm2-loss-without-uncertainty', 'model.logvar_channels > 0',
         overrides={'objective.name': 'edm2', 'model.logvar_channels': 0},
         config='configs/diffusion.py'),
    Case('diffusion-lr-decay-negative', 'optimizer.lr_decay_kimg=-1.0',
         overrides={'optimizer.lr_decay_kimg': -1.0}, config='configs/diffusion.py'),
    Case('diffusion-ema-std-out-of-range', 'train.ema_std=0.3',
         overrides={'train.ema_std': '(0.05,0.3)'}, config='configs/diffusion.py'),
    Case('diffusion-ema-std-twice', 'names a σ_rel twice',
         overrides={'train.ema_std': '(0.05,0.05)'}, config='configs/diffusion.py'),
    Case('diffusion-ema-snapshots-without-std', 'train.ema_std is empty',
         overrides={'train.ema_std': '()', 'train.ema_snapshot_kimg': 3.2},
         config='configs/diffusion.py'),
    Case('diffusion-ema-snapshots-between-batches', 'not a whole number of batches',
         overrides={'train.ema_std': '(0.05,0.1)', 'train.ema_snapshot_kimg': 0.1},
         config='configs/diffusion.py'),
    # --- image-to-image (jaxgen/data/tasks.py, jaxgen/data/pairs.py, recipes/translation.py) ----
    Case('translation-sr-scale-five', 'task.scale=5 is not supported',
         overrides={'task.scale': 5}, config='configs/superres.py'),
    Case('translation-crop-not-divisible-by-scale', 'task.crop=30 is not divisible by task.scale=4',
         overrides={'task.crop': 30}, config='configs/superres.py'),
    Case('translation-image-too-small-for-scale', 'too small for super-resolution ×4',
         overrides={'task.crop': 12}, config='configs/superres.py'),
    Case('translation-crop-below-patchgan', 'smaller than the PatchGAN discriminator',
         overrides={'data.resolution': 64, 'task.crop': 32, 'model.n_layers': 4},
         config='configs/pix2pix.py'),
    Case('translation-crop-does-not-fit-unet', 'task.crop=48 does not fit model.generator',
         overrides={'data.resolution': 64, 'task.crop': 48}, config='configs/pix2pix.py'),
    Case('translation-unet-too-shallow', 'model.num_downs=4',
         overrides={'model.num_downs': 4}, config='configs/pix2pix.py'),
    Case('translation-unknown-task', "unknown task.name 'deblur'",
         overrides={'task.name': 'deblur'}, config='configs/pix2pix.py'),
    Case('translation-holdout-everything', 'data.holdout=256 leaves no training images',
         overrides={'data.num_images': 256, 'data.holdout': 256}, config='configs/pix2pix.py'),
    Case('translation-unknown-metric', "eval.metrics has 'kid'",
         overrides={'eval.metrics': "('psnr', 'kid')"}, config='configs/pix2pix.py'),
    Case('translation-pairs-unmatched', 'has files without a partner: 2 only in B/ (b.png, c.png)',
         config='configs/pix2pix.py', setup=lambda tmp: _pairs(tmp, ['a.png'],
                                                               ['a.png', 'b.png', 'c.png'])),
    Case('translation-pairs-only-a', 'has only one of A/ and B/',
         config='configs/pix2pix.py', setup=lambda tmp: _pairs(tmp, ['a.png'], None)),
    Case('translation-pairs-embedded-resolution', 'renders 16..256 pixels, not data.resolution=8',
         overrides={'data.source': 'pairs:embedded', 'task.name': 'paired', 'data.resolution': 8,
                    'model.num_downs': 3}, config='configs/pix2pix.py'),
    Case('translation-init-from-missing', 'model.init_from=/nonexistent/rrdb is not a training run',
         overrides={'model.init_from': '/nonexistent/rrdb'}, config='configs/superres.py'),
    Case('translation-init-from-another-architecture',
         'does not fit this config: g_params/body_0/conv1/bias should be (4,)',
         config='configs/superres.py', setup=lambda tmp: _init_run(tmp, {'model.num_feat': 8})),
    # --- CycleGAN (jaxgen/data/unpaired.py, jaxgen/recipes/cyclegan.py) ----------------------
    Case('cyclegan-unpaired-one-folder', 'needs two image collections, domain A and domain B',
         config='configs/cyclegan.py', setup=lambda tmp: {'data.source': f'unpaired:{tmp}'}),
    Case('cyclegan-unpaired-empty-folder', 'contains no image files', config='configs/cyclegan.py',
         setup=lambda tmp: (tmp / 'A').mkdir() or (tmp / 'B').mkdir() or (
             tmp / 'B' / 'b.png').touch() or {'data.source': f'unpaired:{tmp}/A,{tmp}/B'}),
    Case('cyclegan-unpaired-missing-folder', 'is not a directory', config='configs/cyclegan.py',
         setup=lambda tmp: {'data.source': f'unpaired:{tmp}/nowhere,{tmp}'}),
    Case('cyclegan-single-domain-source', "learns from two unpaired domains, but "
         "data.source='embedded' is one", overrides={'data.source': 'embedded'},
         config='configs/cyclegan.py'),
    # --- GAN remedies (jaxgen/objectives/gan_losses.py, recipes/dcgan.py, recipes/stylegan2.py) -
    Case('gan-unknown-loss', "objective.name='wgan' is not a GAN loss",
         overrides={'objective.name': 'wgan'}),
    Case('gan-wgan-gp-n-critic-zero', 'objective.n_critic=0 must be an integer >= 1',
         overrides={'objective.name': 'wgan-gp', 'model.d_norm': 'layer',
                    'objective.n_critic': 0}),
    Case('gan-wgan-gp-batch-norm-critic', "'wgan-gp' needs a critic without batch norm",
         overrides={'objective.name': 'wgan-gp'}),
    Case('gan-stylegan-spectral-norm', 'model.spectral_norm=True is not supported by StyleGAN2',
         overrides={'model.spectral_norm': True}, config='configs/stylegan.py'),
    # --- style transfer (jaxgen/recipes/adain.py; the stylize CLI's table is tests/test_style.py)
    Case('adain-single-domain-source', "learns from two unpaired domains, but "
         "data.source='embedded' is one", overrides={'data.source': 'embedded'},
         config='configs/adain.py'),
    Case('adain-resolution-not-a-multiple-of-8', 'data.resolution=20: AdaIN',
         overrides={'data.resolution': 20}, config='configs/adain.py'),
    Case('adain-alpha-out-of-range', 'sampling.alpha=1.5 must be in [0, 1]',
         overrides={'sampling.alpha': 1.5}, config='configs/adain.py'),
    Case('adain-unknown-encoder', "model.encoder='vgg16': use",
         overrides={'model.encoder': 'vgg16'}, config='configs/adain.py'),
    Case('adain-official-encoder-missing',
         "official AdaIN encoder's weights not found (vgg_normalised.pth",
         overrides={'model.encoder': 'vgg_normalised',
                    'objective.vgg_weights': '/nonexistent/vgg_normalised.pth'},
         config='configs/adain.py'),
    # An explicit weights path is looked up as given (never downloaded): one line naming it.
    Case('adain-vgg-weights-missing', '/nonexistent/vgg19.npz (from the weights argument) do '
         'not exist', overrides={'objective.vgg_weights': '/nonexistent/vgg19.npz'},
         config='configs/adain.py'),
    # --- config files and flags (jaxgen/cli.py) -----------------------------------------------
    Case('config-file-missing', 'configs/nope.py: no such config file (configs/ holds adain.py',
         config='configs/nope.py'),
    # A config file in tmp_path: setup writes it (write_text's count `and {}`: no overrides).
    Case('config-file-syntax-error', 'broken.py, line 3: SyntaxError: invalid syntax',
         config='{tmp_path}/broken.py',
         setup=lambda tmp: (tmp / 'broken.py').write_text(
             'import ml_collections\n\ndef get_config(:\n  return None\n') and {}),
    Case('config-file-raises', "raises.py, line 2: NameError: name 'helper' is not defined",
         config='{tmp_path}/raises.py',
         setup=lambda tmp: (tmp / 'raises.py').write_text(
             'def get_config():\n  return helper()\n') and {}),
    Case('config-unknown-preset',
         "configs/dcgan.py: unknown preset 'bogus': use mnist, cifar10 or celeb_a",
         config='configs/dcgan.py:bogus'),
    Case('override-unknown-key', 'unknown config key train.bogus_key; train has batch_size',
         overrides={'train.bogus_key': 1}),
    Case('override-misspelled-group', 'unknown config key trian; Did you mean "train"',
         overrides={'trian.num_steps': 3}),
    Case('override-bad-value', "--config.train.num_steps=abc: invalid literal for int()",
         overrides={'train.num_steps': 'abc'}),
    # --- data sources (jaxgen/data) -----------------------------------------------------------
    # A folder source here is tmp_path itself holding one empty 'a.png': each check fires before
    # any image is decoded (the cache folder is made first). Nothing can be made under
    # /dev/null, not even by root (the tests run as root).
    Case('folder-cache-env-unwritable', 'JAXGEN_CACHE',
         setup=lambda tmp: (tmp / 'a.png').touch() or {'data.source': f'folder:{tmp}'},
         env={'JAXGEN_CACHE': os.path.join(os.devnull, 'jaxgen')}),
    Case('folder-cache-dir-unwritable', 'data.cache_dir',
         setup=lambda tmp: (tmp / 'a.png').touch() or {
             'data.source': f'folder:{tmp}', 'data.cache_dir': os.path.join(os.devnull, 'c')}),
    Case('folder-use-labels-flat', 'data.use_labels', overrides={'data.use_labels': True},
         setup=lambda tmp: (tmp / 'a.png').touch() or {'data.source': f'folder:{tmp}'}),
    Case('folder-resolution-0', 'data.resolution', overrides={'data.resolution': 0},
         setup=lambda tmp: (tmp / 'a.png').touch() or {'data.source': f'folder:{tmp}'}),
    Case('folder-classes', 'data.classes=(0, 1) selects classes of the embedded dataset only',
         overrides={'data.classes': '(0,1)'},
         setup=lambda tmp: (tmp / 'a.png').touch() or {'data.source': f'folder:{tmp}'}),
    Case('embedded-class-out-of-range', 'data.classes=(0, 10) must be distinct labels',
         overrides={'data.classes': '(0,10)'}),
    Case('embedded-class-repeated', 'data.classes=(3, 3) must be distinct labels',
         overrides={'data.classes': '(3,3)'}),
    Case('embedded-rotation-above-1', 'data.rotation=1.5 must be a number in [0, 1]',
         overrides={'data.rotation': 1.5}),
    Case('embedded-rotation-negative', 'data.rotation=-0.25 must be a number in [0, 1]',
         overrides={'data.rotation': -0.25}),
    Case('folder-rotation', 'data.rotation=0.0 narrows the shapes of the embedded dataset only',
         overrides={'data.rotation': 0.0},
         setup=lambda tmp: (tmp / 'a.png').touch() or {'data.source': f'folder:{tmp}'}),
]


def content_digest(root):
  """{relative path: SHA-256} of every file under `root` (or of `root`, a file); None when `root`
  does not exist."""
  if not os.path.exists(root):
    return None
  if os.path.isfile(root):
    with open(root, 'rb') as f:
      return {'': hashlib.sha256(f.read()).hexdigest()}
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def run_case(case, workdir, tmp_path):
  overrides = dict(case.overrides)
  if case.setup is not None:
    overrides.update(case.setup(tmp_path) or {})
  args = main_command(workdir, case.config.format(tmp_path=tmp_path), **overrides) + list(case.args)
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                        env=env_with_devices(1, **case.env), timeout=300)


@pytest.mark.parametrize('case', CASES, ids=str)
def test_bad_input_is_one_line_and_changes_nothing(case, dcgan_run, tmp_path):
  workdir = str(tmp_path / 'work')
  if case.workdir == 'trained':
    shutil.copytree(dcgan_run, workdir)
  elif case.workdir == 'file':
    with open(workdir, 'w') as f:
      f.write('a file, not a folder')
  before = content_digest(workdir)
  result = run_case(case, workdir, tmp_path)
  assert result.returncode == case.exit_code, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1, result.stderr[-3000:]
  assert case.expect in errors[0], errors[0]
  after = content_digest(workdir)
  if case.lock_may_change and after is not None:
    before.pop('.lock', None)
    after.pop('.lock', None)
  assert after == before
