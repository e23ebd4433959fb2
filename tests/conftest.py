"""Shared helpers: a tiny DCGAN config, running `jaxgen.main`, reading TensorBoard events."""

import glob
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The tests compile many small programs and run each a few steps: without LLVM's optimisations
# XLA's CPU backend compiles them about twice as fast (the tiny StyleGAN2 run: 65 s instead of
# 115 s on a 2-core CPU), for this process and the ones it starts. The same HLO, IEEE float
# semantics either way; speed is measured by `jaxgen.bench`, never here.
NO_LLVM_OPT = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {NO_LLVM_OPT}'.strip()


def fixture_maker(name):
  """tests/data/make_<name>_fixture.py as a module: what a parity test draws again (the shared
  weights, the layer tables) to check against the outputs that script recorded."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  module = f'make_{name}_fixture'
  spec = importlib.util.spec_from_file_location(
      module, os.path.join(REPO, 'tests', 'data', f'{module}.py'))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  return script


sys.path.insert(0, os.path.join(REPO, 'configs'))
sys.path.insert(0, REPO)

# Overrides that make configs/dcgan.py tiny: 16×16, 8 base channels, batch 8, 6 steps.
TINY = {
    'data.resolution': 16, 'data.num_images': 256, 'data.num_threads': 1,
    'model.g_base_channels': 8, 'model.d_base_channels': 8,
    'train.batch_size': 8, 'train.num_steps': 6,
    'eval.num_images': 64, 'eval.batch_size': 32, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 16,
}


def with_overrides(config, overrides):
  """`config` with dotted-key overrides applied, as --config.a.b=v would."""
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split('.')
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def tiny_config(**overrides):
  import dcgan
  return with_overrides(dcgan.get_config(), {**TINY, **overrides})


# Overrides that make configs/stylegan.py tiny: 16×16, ≤ 32 channels, batch 8, 6 steps, with
# every phase inside them: path length every 2 steps, R1 every 4, ADA p updates every 2 steps.
STYLEGAN_TINY = {
    'data.resolution': 16, 'data.num_images': 256, 'data.num_threads': 1,
    'model.z_dim': 16, 'model.w_dim': 16, 'model.channel_base': 256, 'model.channel_max': 32,
    'objective.pl_weight': 2.0, 'objective.style_mixing_prob': 0.9,
    'objective.pl_interval': 2, 'objective.r1_interval': 4, 'objective.r1_gamma': 1.0,
    'augment.interval': 2, 'augment.target': 0.05, 'augment.speed_kimg': 0.5,
    'train.batch_size': 8, 'train.num_steps': 6,
    'eval.num_images': 64, 'eval.batch_size': 32, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 16,
}


# The shared StyleGAN2 run's minibatch-stddev groups form within 4 splits of the batch, as on 4
# devices: the 4-device test compares with it, and needs no single-device run of its own.
STYLEGAN_RUN = {'model.mbstd_num_splits': 4}


# Overrides that make configs/diffusion.py tiny: unconditional on all ten embedded classes
# (conditional sampling has tests of its own), 16×16, EDM's recipe with a 2-level SongUNet of 8
# channels (attention at 8², dropout and EDM's augmentation on; EDM2's U-Net, the CPU default's,
# has tests of its own in test_edm2unet.py), batch 8, 6 steps (the lr decaying over the last 3),
# a 3-step Heun sampler.
DIFFUSION_TINY = {
    'model.arch': 'songunet', 'objective.name': 'edm', 'optimizer.lr': 4e-3,
    'optimizer.b2': 0.999,
    'data.resolution': 16, 'data.num_images': 256, 'data.num_threads': 1, 'data.classes': '()',
    'data.rotation': 1.0, 'data.use_labels': False, 'model.label_dropout': 0.0, 'sampling.guidance': 1.0,
    'model.model_channels': 8, 'model.channel_mult': '(1,2)', 'model.num_blocks': 1,
    'model.attn_resolutions': '(8,)', 'model.dropout': 0.1, 'augment.p': 0.5,
    'optimizer.lr_rampup_kimg': 0.016, 'optimizer.lr_cooldown': 0.5, 'train.ema_kimg': 0.02,
    'train.batch_size': 8, 'train.num_steps': 6, 'sampling.num_steps': 3,
    'eval.num_images': 64, 'eval.batch_size': 32, 'eval.every_steps': 3, 'eval.at_start': True,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 16,
    # EDM2's power-function EMAs, snapshotted every 2 steps (16 images): post-hoc EMA's input.
    'train.ema_std': '(0.05,0.1)', 'train.ema_snapshot_kimg': 0.016,
}
# Overrides that make configs/pix2pix.py tiny: inpainting 32×32 with the smallest official
# U-Net (5 levels) of 4 channels and a 2-layer PatchGAN of 4 (both with batch norm, dropout on),
# batch 4, 6 steps, 16 held-out images scored at 3 and 6.
PIX2PIX_TINY = {
    'task.name': 'inpaint',
    'data.resolution': 32, 'data.num_images': 64, 'data.holdout': 16, 'data.num_threads': 1,
    'model.num_downs': 5, 'model.ngf': 4, 'model.ndf': 4, 'model.n_layers': 2,
    'train.batch_size': 4, 'train.num_steps': 6,
    'eval.num_images': 16, 'eval.batch_size': 8, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 4,
}

# Overrides that make configs/superres.py tiny: ×4 from 8×8 to 32×32, an SRResNet of 4
# features and 1 block, batch 4, 6 steps.
SUPERRES_TINY = {
    'data.resolution': 32, 'data.num_images': 64, 'data.holdout': 16, 'data.num_threads': 1,
    'task.crop': 0, 'model.num_feat': 4, 'model.num_block': 1,
    'train.batch_size': 4, 'train.num_steps': 6,
    'eval.num_images': 16, 'eval.batch_size': 8, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 4,
}

# Overrides that make configs/cyclegan.py tiny: the embedded two domains at 20×20, random 16×16
# crops, 2-block ResNet generators of 4 channels and 2-layer PatchGANs of 4, pools of 4 fakes (full
# after 2 steps of 2, so steps 3–6 draw from them), batch 2, 6 steps, lr decaying over the last 3.
CYCLEGAN_TINY = {
    'data.resolution': 20, 'data.num_images': 64, 'data.holdout': 16, 'data.num_threads': 1,
    'task.crop': 16, 'model.generator': 'resnet', 'model.n_blocks': 2, 'model.ngf': 4,
    'model.ndf': 4, 'model.n_layers': 2, 'objective.pool_size': 4, 'optimizer.decay_steps': 3,
    'train.batch_size': 2, 'train.num_steps': 6,
    'eval.num_images': 16, 'eval.batch_size': 8, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 2,
}

# Overrides that make configs/adain.py tiny: the embedded content and style images at 16×16 (the
# official decoder, whose size does not depend on the images), batch 2, 6 steps, 4 held-out pairs
# scored at 3 and 6. The VGG19 weights are a random file (random_vgg19: no ImageNet weights here).
ADAIN_TINY = {
    'data.resolution': 16, 'data.num_images': 32, 'data.holdout': 4, 'data.num_threads': 1,
    'train.batch_size': 2, 'train.num_steps': 6,
    'eval.num_images': 4, 'eval.batch_size': 4, 'eval.every_steps': 3,
    'checkpoint.every_steps': 2, 'log.every_steps': 1, 'log.num_samples': 2,
}

TINY_BY_CONFIG = {'configs/stylegan.py': STYLEGAN_TINY, 'configs/diffusion.py': DIFFUSION_TINY,
                  'configs/pix2pix.py': PIX2PIX_TINY, 'configs/superres.py': SUPERRES_TINY,
                  'configs/cyclegan.py': CYCLEGAN_TINY, 'configs/adain.py': ADAIN_TINY}


def main_command(workdir, config='configs/dcgan.py', **overrides):
  args = [sys.executable, '-m', 'jaxgen.main', f'--config={config}', f'--workdir={workdir}']
  tiny = TINY_BY_CONFIG.get(config.split(':')[0], TINY)
  for key, value in {**tiny, **overrides}.items():
    args.append(f'--config.{key}={value}')
  return args


def env_with_devices(num_devices=1, **extra):
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices} {NO_LLVM_OPT}'
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env.update(extra)
  return env


def run_main(workdir, num_devices=1, check=True, timeout=600, config='configs/dcgan.py',
             **overrides):
  result = subprocess.run(main_command(workdir, config, **overrides), cwd=REPO, capture_output=True,
                          text=True, env=env_with_devices(num_devices), timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f'jaxgen.main failed ({result.returncode}):\n{result.stderr[-4000:]}')
  return result


def kill_after_checkpoint(workdir, step, config='configs/dcgan.py', **overrides):
  """Starts `jaxgen.main` and SIGKILLs it as soon as checkpoint `step` is complete."""
  process = subprocess.Popen(main_command(workdir, config, **overrides), cwd=REPO,
                             env=env_with_devices(1), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 400
  while not os.path.exists(os.path.join(workdir, 'checkpoints', str(step))):
    assert process.poll() is None, 'the run ended before it could be killed'
    assert time.time() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()


def read_scalars(workdir):
  """{tag: {step: value}} from every TensorBoard event file in DIR/tensorboard."""
  from tensorboardX.proto import event_pb2
  scalars = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    i = 0
    while i + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[i:i + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      for value in event.summary.value:
        if value.HasField('simple_value'):
          scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def check_samples_and_swd(workdir):
  """The tiny 6-step run's sample grids (at evaluations 0, 3, 6, plus reals) and SWD scalars;
  returns all scalars for further checks."""
  from PIL import Image
  import numpy as np
  samples = sorted(os.listdir(os.path.join(workdir, 'samples')))
  assert samples == ['00000000.png', '00000003.png', '00000006.png', 'reals.png']
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', '00000006.png')))
  assert grid.shape == (64, 64, 3) and grid.std() > 0
  scalars = read_scalars(workdir)
  assert set(scalars['eval/swd/avg']) == {0, 3, 6}
  return scalars


def tree_digest(root):
  """{relative path: (size, mtime_ns)} of every file under root: to prove nothing changed."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      st = os.stat(path)
      out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
  return out


def session_root(tmp_path_factory):
  """The test session's temporary folder. Under pytest-xdist each worker has a folder of its own
  inside it, so what the workers share (the runs below, the compilation cache) lives here."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def shared_run(tmp_path_factory, name, train):
  """The folder `name` in the session's folder, filled once by `train(workdir)` for every test
  and every xdist worker that asks for it: the first to ask trains while holding a lock, the
  others wait for it and read the result (a failed attempt is redone by the next asker)."""
  import shutil  # pylint: disable=import-outside-toplevel
  import filelock  # pylint: disable=import-outside-toplevel
  root = session_root(tmp_path_factory)
  workdir, done = root / name, root / f'{name}.done'
  with filelock.FileLock(str(root / f'{name}.lock')):
    if not done.exists():
      shutil.rmtree(workdir, ignore_errors=True)
      workdir.mkdir()
      train(str(workdir))
      done.touch()
  return str(workdir)


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for every process the tests start: a run whose programs
  an earlier process compiled loads them instead (the tiny StyleGAN2 run at the default
  optimisation level: 115 s cold, 28 s warm on a 2-core CPU). This process read JAX's settings
  when the test modules imported it, so only the processes the tests start use the cache; it
  lives and dies with the session's temporary folder, shared by the xdist workers."""
  cache = session_root(tmp_path_factory) / 'jax-cache'
  cache.mkdir(exist_ok=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = str(cache)


@pytest.fixture(scope='session')
def dcgan_run(tmp_path_factory):
  """The tiny DCGAN run (TINY, 6 steps) on one device, uninterrupted, trained once for every test
  that reads it. Tests must not write into it."""
  return shared_run(tmp_path_factory, 'dcgan',
                    lambda workdir: run_main(workdir))


@pytest.fixture(scope='session')
def stylegan_run(tmp_path_factory):
  """The tiny StyleGAN2 run (STYLEGAN_TINY and STYLEGAN_RUN, 6 steps, one device), trained once
  for every test that reads it: checkpoints 4 and 6, sample grids, TensorBoard events. Tests
  must not write into it."""
  return shared_run(tmp_path_factory, 'stylegan',
                    lambda workdir: run_main(workdir, config='configs/stylegan.py', **STYLEGAN_RUN))


@pytest.fixture(scope='session')
def pix2pix_run(tmp_path_factory):
  """The tiny pix2pix inpainting run (PIX2PIX_TINY, 6 steps, one device), trained once for every
  test that reads it: checkpoints 4 and 6, triplet grids at 3 and 6. Tests must not write into
  it."""
  return shared_run(tmp_path_factory, 'pix2pix',
                    lambda workdir: run_main(workdir, config='configs/pix2pix.py'))


@pytest.fixture(scope='session')
def superres_run(tmp_path_factory):
  """The tiny ×4 super-resolution run (SUPERRES_TINY, 6 steps, one device), trained once for
  every test that reads it. Tests must not write into it."""
  return shared_run(tmp_path_factory, 'superres',
                    lambda workdir: run_main(workdir, config='configs/superres.py'))


@pytest.fixture(scope='session')
def diffusion_run(tmp_path_factory):
  """The tiny diffusion run (DIFFUSION_TINY, 6 steps, one device), trained once for every test
  that reads it: checkpoints 4 and 6, sample grids at 0, 3, 6, TensorBoard events. Tests must not
  write into it."""
  return shared_run(tmp_path_factory, 'diffusion',
                    lambda workdir: run_main(workdir, config='configs/diffusion.py'))


@pytest.fixture(scope='session')
def cyclegan_run(tmp_path_factory):
  """The tiny CycleGAN run (CYCLEGAN_TINY, 6 steps, one device), trained once for every test that
  reads it: checkpoints 4 and 6, grids and scores at 3 and 6. Tests must not write into it."""
  return shared_run(tmp_path_factory, 'cyclegan',
                    lambda workdir: run_main(workdir, config='configs/cyclegan.py'))


@pytest.fixture
def repo():
  return REPO


def write_random_vgg19(path, seed=0):
  """A jaxgen VGG19 weight file of random weights (He-normal kernels, so activations keep their
  scale through the 16 layers; zero biases): for tests of what needs ImageNet weights, which are
  not available here. Not a model of anything."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jaxgen import pretrained  # pylint: disable=import-outside-toplevel
  from jaxgen.models import vgg  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  flat = {k: (rng.standard_normal(s, np.float32) * np.float32(np.sqrt(2.0 / (9 * s[2])))
              if k.endswith('kernel') else np.zeros(s, np.float32))
          for k, s in vgg.param_shapes(19).items()}
  pretrained.save_converted(vgg.VGG19_WEIGHTS, flat, str(path))


@pytest.fixture(scope='session')
def random_vgg19(tmp_path_factory):
  """The path of one random-weight VGG19 file (write_random_vgg19, 80 MB) for the whole session."""
  folder = shared_run(tmp_path_factory, 'random-vgg19',
                      lambda folder: write_random_vgg19(os.path.join(folder, 'vgg19.npz')))
  return os.path.join(folder, 'vgg19.npz')


@pytest.fixture(scope='session')
def adain_run(tmp_path_factory, random_vgg19):
  """The tiny AdaIN run (ADAIN_TINY, 6 steps, one device, random VGG19 weights), trained once for
  every test that reads it: checkpoints 4 and 6, content | style | output grids and scores at 3
  and 6. Tests must not write into it."""
  return shared_run(tmp_path_factory, 'adain', lambda workdir: run_main(
      workdir, config='configs/adain.py', **{'objective.vgg_weights': random_vgg19}))
