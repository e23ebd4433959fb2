"""End to end: `python -m jaxgen.main` on tiny configs, as a user runs it."""

import json
import os
import signal
import socket
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


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """An uninterrupted 6-step tiny run on one device (shared by several tests)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  run_main(workdir)
  return workdir


def test_run_leaves_checkpoints_logs_config_samples_and_metric(reference_run):
  files = os.listdir(reference_run)
  assert {'checkpoints', 'tensorboard', 'samples', 'config.json'} <= set(files)
  config = json.load(open(os.path.join(reference_run, 'config.json')))
  assert config['train']['num_steps'] == 6 and config['model']['name'] == 'dcgan'
  steps = sorted(int(s) for s in os.listdir(os.path.join(reference_run, 'checkpoints'))
                 if s.isdigit())
  assert steps[-1] == 6
  scalars = check_samples_and_swd(reference_run)
  assert set(scalars['loss/d']) == set(range(1, 7))
  for tag in ('grad_norm/g', 'grad_norm/d', 'perf/step_time_s', 'perf/images_per_s',
              'progress/kimg'):
    assert tag in scalars
  assert scalars['progress/kimg'][6] == pytest.approx(6 * 8 / 1000)


def test_kill_9_then_rerun_resumes_with_identical_losses(reference_run, tmp_path):
  workdir = str(tmp_path)
  # Killed as soon as the step-4 checkpoint is complete (the run has 6 steps).
  kill_after_checkpoint(workdir, 4)
  result = run_main(workdir)
  assert 'Resuming at step' in result.stderr
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = _losses(reference_run), _losses(workdir)
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


def test_four_devices_shard_the_batch_and_match_one_device(reference_run, tmp_path):
  workdir = str(tmp_path)
  run_main(workdir, num_devices=4)
  expected, got = _losses(reference_run), _losses(workdir)
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


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  single = str(tmp_path / 'single')
  run_main(single, num_devices=4)
  multi = str(tmp_path / 'multi')
  port = _free_port()
  processes = [
      subprocess.Popen(main_command(multi) + [f'--coordinator_address=127.0.0.1:{port}',
                                              '--num_processes=2', f'--process_id={i}'],
                       cwd=REPO, env=env_with_devices(2), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  logs = []
  for p in processes:
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
    logs.append(stderr)
  assert 'on 4 device(s) in 2 process(es)' in logs[0]
  expected, got = _losses(single), _losses(multi)
  for tag in LOSSES:
    for step in range(1, 7):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-4), (tag, step)
