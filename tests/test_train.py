"""End to end: `python -m jaxgen.main` on tiny configs, as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (REPO, check_samples_and_swd, env_with_devices, kill_after_checkpoint,
                      main_command, read_scalars, run_main)

LOSSES = ('loss/d', 'loss/g')


def _losses(workdir):
  scalars = read_scalars(workdir)
  return {tag: scalars[tag] for tag in LOSSES}


def test_run_leaves_checkpoints_logs_config_samples_and_metric(dcgan_run):
  files = os.listdir(dcgan_run)
  assert {'checkpoints', 'tensorboard', 'samples', 'config.json'} <= set(files)
  config = json.load(open(os.path.join(dcgan_run, 'config.json')))
  assert config['train']['num_steps'] == 6 and config['model']['name'] == 'dcgan'
  steps = sorted(int(s) for s in os.listdir(os.path.join(dcgan_run, 'checkpoints'))
                 if s.isdigit())
  assert steps[-1] == 6
  scalars = check_samples_and_swd(dcgan_run)
  assert set(scalars['loss/d']) == set(range(1, 7))
  for tag in ('grad_norm/g', 'grad_norm/d', 'perf/step_time_s', 'perf/images_per_s',
              'progress/kimg'):
    assert tag in scalars
  assert scalars['progress/kimg'][6] == pytest.approx(6 * 8 / 1000)


def test_kill_9_then_rerun_resumes_with_identical_losses(dcgan_run, tmp_path):
  workdir = str(tmp_path)
  # Killed as soon as the step-4 checkpoint is complete (the run has 6 steps).
  kill_after_checkpoint(workdir, 4)
  result = run_main(workdir)
  assert 'Resuming at step' in result.stderr
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = _losses(dcgan_run), _losses(workdir)
  for tag in LOSSES:
    for step in range(1, 7):
      # Same programs on the same data and keys: equal up to float reassociation.
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-5), (tag, step)


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
  workdir = str(tmp_path)
  process = subprocess.Popen(
      main_command(workdir, **{'train.num_steps': 100000, 'checkpoint.every_steps': 100000,
                               'eval.every_steps': 100000, 'eval.at_start': False}),
      cwd=REPO, env=env_with_devices(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 300
  # Terminate once training is under way: the first scalars are on disk.
  while not (os.path.isdir(os.path.join(workdir, 'tensorboard'))
             and 'loss/d' in read_scalars(workdir)):
    assert process.poll() is None and time.time() < deadline
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 143, stderr[-2000:]
  assert 'checkpoint saved' in stderr
  steps = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit()]
  assert len(steps) == 1 and steps[0] > 0  # Only the preemption checkpoint exists.


def test_four_devices_shard_the_batch_and_match_one_device(dcgan_run, tmp_path):
  workdir = str(tmp_path)
  run_main(workdir, num_devices=4)
  expected, got = _losses(dcgan_run), _losses(workdir)
  for tag in LOSSES:
    for step in range(1, 7):
      # Cross-device reductions sum in another order: float32 reassociation only.
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-4), (tag, step)


def test_sharding_layout_on_four_devices():
  code = '''
import jax, numpy as np
from jax.sharding import PartitionSpec as P
from jaxgen import parallel
mesh = parallel.create_mesh()
batch = parallel.global_batch({"image": np.zeros((8, 4, 4, 3), np.uint8)}, mesh)["image"]
state = jax.device_put({"w": np.ones((3, 3))}, parallel.state_sharding(mesh, {"w": 0}))["w"]
print(mesh.devices.size, batch.sharding.spec == P("data"), sorted({s.data.shape for s in batch.addressable_shards}),
      state.sharding.is_fully_replicated, len(state.addressable_shards))
'''
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       env=env_with_devices(4), cwd=REPO, check=True).stdout.split()
  assert out[0] == '4'
  assert out[1] == 'True'  # Batch split over the data axis.
  assert ' '.join(out[2:-2]) == '[(2, 4, 4, 3)]'  # Each device holds 2 of the 8 rows.
  assert out[-2:] == ['True', '4']


def _launch(num_processes, command, log_dir, timeout=600):
  """launch/local.sh: `num_processes` CPU processes of 2 devices each."""
  env = env_with_devices(1, CPU_DEVICES_PER_PROCESS='2', LOG_DIR=str(log_dir))
  env['XLA_FLAGS'] = ''
  return subprocess.run(['bash', os.path.join(REPO, 'launch', 'local.sh'), str(num_processes),
                         *command], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  """launch/local.sh starts two processes of two CPU devices each, joined by jax.distributed:
  the same run as one process with four devices."""
  single = str(tmp_path / 'single')
  run_main(single, num_devices=4)
  multi = str(tmp_path / 'multi')
  result = _launch(2, main_command(multi), tmp_path / 'logs')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'on 4 device(s) in 2 process(es)' in result.stderr  # Process 0's output.
  assert (tmp_path / 'logs' / 'process_1.log').exists()
  expected, got = _losses(single), _losses(multi)
  for tag in LOSSES:
    for step in range(1, 7):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-4), (tag, step)


def test_launcher_stops_the_others_when_one_process_fails(tmp_path):
  # Process 1 fails at once; process 0 would run for a minute: the launcher stops it and
  # exits with process 1's status, pointing to its log.
  fake = ['bash', '-c', 'case "$*" in *--process_id=1*) echo broken >&2; exit 3;; esac; '
          'sleep 60', 'fake']
  start = time.time()
  result = _launch(2, fake, tmp_path / 'logs', timeout=120)
  assert result.returncode == 3 and time.time() - start < 30
  assert (f'launch/local.sh: process 1 exited with status 3; its log: '
          f'{tmp_path / "logs" / "process_1.log"}') in result.stderr
  assert (tmp_path / 'logs' / 'process_1.log').read_text().strip() == 'broken'
  result = _launch('two', fake, tmp_path / 'logs')
  assert result.returncode == 2
  assert result.stderr.strip() == ("launch/local.sh: error: NUM_PROCESSES must be a positive "
                                   "integer, not 'two'")


def test_launcher_passes_ctrl_c_on_as_sigterm(tmp_path):
  # Background processes of a script ignore SIGINT: the launcher sends each a SIGTERM, which
  # jaxgen.main answers with a checkpoint and status 143 (a fake stands in for it here).
  fake = ['bash', '-c', 'trap "echo got TERM >&2; exit 143" TERM; echo ready >&2; '
          'sleep 60 > /dev/null 2>&1 & wait', 'fake']
  env = env_with_devices(1, CPU_DEVICES_PER_PROCESS='1', LOG_DIR=str(tmp_path))
  launcher = subprocess.Popen(['bash', os.path.join(REPO, 'launch', 'local.sh'), '2', *fake],
                              cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 60
  while not (tmp_path / 'process_1.log').exists() or 'ready' not in (
      tmp_path / 'process_1.log').read_text():
    assert time.time() < deadline
    time.sleep(0.1)
  time.sleep(0.5)
  launcher.send_signal(signal.SIGINT)
  _, stderr = launcher.communicate(timeout=30)
  assert launcher.returncode == 143
  assert 'got TERM' in stderr and 'exited with status' not in stderr
  assert 'got TERM' in (tmp_path / 'process_1.log').read_text()


@pytest.mark.parametrize('xla_flags, expected', [
    ('', '2 True'),                                              # train.cpu_devices=2 applies.
    ('--xla_force_host_platform_device_count=3', '3 False'),     # XLA_FLAGS has the last word.
])
def test_cpu_devices_split_a_cpu_host_unless_xla_flags_set_the_count(xla_flags, expected):
  code = ('from jaxgen import parallel; changed = parallel.use_cpu_devices(2); import jax; '
          'print(jax.device_count(), changed)')
  env = env_with_devices()
  env['XLA_FLAGS'] = xla_flags
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
  assert result.stdout.split('\n')[-2] == expected
