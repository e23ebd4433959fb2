"""What survives what: one owner per workdir, Ctrl-C, divergence, failed and damaged checkpoints.

Each test runs `jaxgen.main` on the tiny DCGAN (a copy of the shared run where it needs one) and
checks the workdir's files afterwards. The bad inputs that need no running training are in
tests/test_bad_input.py.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, env_with_devices, main_command, tree_digest


def _copy(run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(run, workdir)
  return workdir


def _run(workdir, *extra, env=None, prefix=(), **overrides):
  return subprocess.run(list(prefix) + main_command(workdir, **overrides) + list(extra), cwd=REPO,
                        capture_output=True, text=True, env=env or env_with_devices(1),
                        timeout=600)


def _one_error(result, code):
  assert result.returncode == code, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


def _steps(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit())


def _checkpoint_digest(workdir, step):
  return tree_digest(os.path.join(workdir, 'checkpoints', str(step)))


LONG = {'train.num_steps': 100000, 'eval.every_steps': 100000, 'checkpoint.every_steps': 2}


def test_a_second_run_is_refused_while_the_first_trains_and_ctrl_c_saves(tmp_path):
  workdir = str(tmp_path / 'run')
  first = subprocess.Popen(main_command(workdir, **LONG), cwd=REPO, env=env_with_devices(1),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 400
    while not os.path.exists(os.path.join(workdir, 'checkpoints', '2')):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline
      time.sleep(0.1)
    config = open(os.path.join(workdir, 'config.json')).read()
    owner = f'pid {first.pid} on host {socket.gethostname()}'
    assert open(os.path.join(workdir, '.lock')).read().startswith(owner)
    # The same command, and another experiment forced in with --allow_config_change: both
    # refused, naming the owner, and the first run's config stays.
    for extra in ([], ['--allow_config_change', '--config.optimizer.g_lr=0.001']):
      line = _one_error(_run(workdir, *extra, **LONG), 2)
      assert 'is in use by another run' in line and owner in line, line
    assert open(os.path.join(workdir, 'config.json')).read() == config
    assert first.poll() is None  # Still training.
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=300)
  finally:
    if first.poll() is None:
      first.kill()
  assert first.returncode == 130, stderr[-3000:]
  assert 'Traceback' not in stderr
  stopped = re.search(r'Interrupted \(Ctrl-C\) at step (\d+): checkpoint saved', stderr)
  assert stopped, stderr[-3000:]
  step = int(stopped.group(1))
  assert _steps(workdir)[-1] == step
  # The lock went with the process: the same experiment resumes at the saved step.
  result = _run(workdir, **{**LONG, 'train.num_steps': step})
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resuming at step {step} of {step}' in result.stderr


def test_divergence_stops_before_any_non_finite_checkpoint(dcgan_run, tmp_path):
  """With logs every 10 steps and checkpoints every 2, a diverging run used to save checkpoints 8
  and 10 full of NaN before its log-step check stopped it (and a re-run resumed from them)."""
  workdir = _copy(dcgan_run, tmp_path)
  before = {s: _checkpoint_digest(workdir, s) for s in _steps(workdir)}
  huge_lr = {'train.num_steps': 12, 'log.every_steps': 10, 'eval.every_steps': 100,
             'optimizer.g_lr': 1e38, 'optimizer.d_lr': 1e38}
  line = _one_error(_run(workdir, '--allow_config_change', **huge_lr), 1)
  # Step 7's D update makes the weights ~1e38, and its G gradients through them overflow.
  diverged = re.search(r'training diverged at step (\d+): (\S+) is (nan|inf)', line)
  assert diverged and int(diverged.group(1)) in (7, 8), line
  assert 'the newest checkpoint, 6, is finite' in line
  assert {s: _checkpoint_digest(workdir, s) for s in _steps(workdir)} == before
  # Resumes from checkpoint 6 with a learning rate that works.
  result = _run(workdir, '--allow_config_change', **{'train.num_steps': 8})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resuming at step 6 of 8' in result.stderr
  assert _steps(workdir)[-1] == 8


def test_divergence_stops_before_any_non_finite_snapshot(tmp_path):
  """Snapshots (EDM2's power-function EMAs, every step here) are kept forever: a diverging
  diffusion run stops before writing a non-finite one, as it does before a checkpoint — here
  at the step whose float32 weights (lr 1e37 after a first step at lr 0) no longer fit the
  snapshots' float16."""
  workdir = str(tmp_path / 'run')
  result = subprocess.run(main_command(workdir, config='configs/diffusion.py', **{
      'train.num_steps': 12, 'log.every_steps': 10, 'eval.every_steps': 100,
      'eval.at_start': False, 'checkpoint.every_steps': 100, 'optimizer.lr': 1e38,
      'optimizer.lr_rampup_kimg': 0.32, 'train.ema_snapshot_kimg': 0.008}),
      cwd=REPO, capture_output=True, text=True, env=env_with_devices(1), timeout=600)
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert result.returncode != 0 and len(errors) == 1, result.stderr[-3000:]
  diverged = re.search(r'training diverged at step (\d+)', errors[0])
  assert diverged, errors[0]
  names = sorted(os.listdir(os.path.join(workdir, 'snapshots')))
  # Snapshots of every step before the one that diverged (2 σ_rel each), and none after.
  assert len(names) == 2 * (int(diverged.group(1)) - 1) > 0, (names, errors[0])
  for name in names:
    with np.load(os.path.join(workdir, 'snapshots', name)) as f:
      assert all(np.isfinite(f[k]).all() for k in f.files if f[k].dtype.kind == 'f'), name


def test_a_failed_checkpoint_write_stops_the_run_with_one_line(dcgan_run, tmp_path):
  """A disk that fills up mid-write: files may grow to 64 KiB (the tiny run's PNGs, events and
  config stay below it), and the checkpoint's data files (100-340 KiB) fail with EFBIG. (A disk
  already too full for a checkpoint is refused before writing: test_checkpoint.py.)"""
  workdir = _copy(dcgan_run, tmp_path)
  before = {s: _checkpoint_digest(workdir, s) for s in _steps(workdir)}
  # bash's `ulimit -f` counts KiB; the limit is inherited by the command it execs.
  small_files = ['bash', '-c', 'ulimit -f 64 && exec "$@"', 'bash']
  # No compilation cache: its entries are larger than the limit, and must not be half-written.
  env = env_with_devices(1, JAX_ENABLE_COMPILATION_CACHE='false')
  result = _run(workdir, env=env, prefix=small_files, **{'train.num_steps': 12})
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
  assert re.search(r'writing checkpoint 8 to \S+ failed \(.*File too large.*; [\d.]+ GiB free '
                   r'there\): the earlier checkpoints are intact', errors[0]), errors[0]
  assert 'resume from step 6' in errors[0]
  # Orbax's writer threads may still print their own asyncio tracebacks as they wind down; none
  # is jaxgen's (its failure is the one line above).
  assert f'{os.sep}jaxgen{os.sep}' not in result.stderr
  assert {s: _checkpoint_digest(workdir, s) for s in _steps(workdir)} == before
  assert not os.path.exists(os.path.join(workdir, 'samples', '00000012.png'))  # Stopped.


def _truncate_data(folder):
  data = max(glob.glob(os.path.join(folder, '**', 'd', '*'), recursive=True),
             key=os.path.getsize)
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) // 2)


def _garble_metadata(folder):
  with open(os.path.join(folder, 'default', '_METADATA'), 'w') as f:
    f.write('{not json')


@pytest.mark.parametrize('damage', [_truncate_data, _garble_metadata], ids=lambda f: f.__name__)
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_resumed(
    dcgan_run, tmp_path, damage):
  workdir = _copy(dcgan_run, tmp_path)
  newest = os.path.join(workdir, 'checkpoints', '6')
  damage(newest)
  damaged = tree_digest(newest)
  result = _run(workdir, **{'train.num_steps': 8})
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [l for l in result.stderr.splitlines() if 'Damaged' in l]
  assert len(warnings) == 1 and 'checkpoint 6 (unreadable' in warnings[0], result.stderr
  assert 'renamed aside to 6.damaged, resuming from checkpoint 4' in warnings[0]
  assert 'Resuming at step 4 of 8' in result.stderr
  # Kept, not deleted, byte for byte; training went on past it.
  assert tree_digest(os.path.join(workdir, 'checkpoints', '6.damaged')) == damaged
  assert _steps(workdir)[-1] == 8


@pytest.fixture
def diverged_run(dcgan_run, tmp_path):
  """A copy of the shared run with a checkpoint 8 full of NaN, as an older jaxgen saved them."""
  import orbax.checkpoint as ocp
  workdir = _copy(dcgan_run, tmp_path)
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  item_handlers=ocp.StandardCheckpointHandler())
  state = manager.restore(6)
  nan = {k: v for k, v in state.items()}
  for field in ('g_params', 'ema_params', 'd_params'):
    if field in nan:
      import jax
      nan[field] = jax.tree.map(lambda x: np.full_like(x, np.nan), nan[field])
  manager.save(8, args=ocp.args.StandardSave(nan))
  manager.wait_until_finished()
  manager.close()
  return workdir


def test_non_finite_weights_are_refused_and_set_aside(diverged_run, dcgan_run, tmp_path):
  python = [sys.executable, '-m']
  before = tree_digest(diverged_run)
  commands = {
      'generate': python + ['jaxgen.generate', f'--workdir={diverged_run}',
                            f'--outdir={tmp_path}/out', '--seeds=0-3'],
      'export': python + ['jaxgen.export', f'--workdir={diverged_run}',
                          f'--output={tmp_path}/g.npz'],
      'evaluate': python + ['jaxgen.evaluate', f'--workdir={diverged_run}', '--metrics=swd'],
  }
  for name, args in commands.items():
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                            env=env_with_devices(1), timeout=300)
    line = _one_error(result, 2)
    assert 'checkpoint 8 in' in line and 'holds non-finite values' in line, (name, line)
    assert '--step' in line and '6' in line
  assert tree_digest(diverged_run) == before
  assert not os.path.exists(tmp_path / 'out') and not os.path.exists(tmp_path / 'g.npz')

  # An exported file with a NaN weight, and a NaN truncation: refused the same way.
  export = subprocess.run(python + ['jaxgen.export', f'--workdir={dcgan_run}',
                                    f'--output={tmp_path}/g.npz'], cwd=REPO, capture_output=True,
                          text=True, env=env_with_devices(1), timeout=300)
  assert export.returncode == 0, export.stderr
  with np.load(tmp_path / 'g.npz') as f:
    arrays = {k: f[k] for k in f.files}
  key = next(k for k in arrays if k.startswith('ema_params/'))
  arrays[key] = np.full_like(arrays[key], np.nan)
  np.savez(tmp_path / 'nan.npz', **arrays)
  for args, needle in (
      ([f'--network={tmp_path}/nan.npz'], f'holds non-finite values ({key})'),
      ([f'--workdir={dcgan_run}', '--trunc=nan'], '--trunc=nan is not a finite number'),
      ([f'--workdir={dcgan_run}', '--trunc=inf'], '--trunc=inf is not a finite number')):
    result = subprocess.run(python + ['jaxgen.generate', f'--outdir={tmp_path}/out2',
                                      '--seeds=0'] + args, cwd=REPO, capture_output=True,
                            text=True, env=env_with_devices(1), timeout=300)
    assert needle in _one_error(result, 2)
  assert not os.path.exists(tmp_path / 'out2')

  # Training sets the diverged checkpoint aside (renamed, not deleted) and resumes before it.
  result = _run(diverged_run, **{'train.num_steps': 8})
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r'Damaged checkpoint 8 \(non-finite values in \S+\) in \S+: renamed aside '
                   r'to 8.damaged, resuming from checkpoint 6', result.stderr), result.stderr
  assert os.path.isdir(os.path.join(diverged_run, 'checkpoints', '8.damaged'))
  assert _steps(diverged_run)[-1] == 8


def test_too_few_images_for_the_batch_is_a_warning(tmp_path, caplog):
  from conftest import tiny_config
  from jaxgen import train
  config = tiny_config(**{'data.num_images': 4})
  workdir = str(tmp_path / 'run')
  train.prepare(config, workdir)
  assert any('The dataset has 4 images, fewer than the batch of 8' in r.getMessage()
             for r in caplog.records)
  assert not os.path.exists(workdir)  # Preparing writes nothing.
