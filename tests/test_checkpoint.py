"""Workdir guard and the keep-last-K-plus-best checkpoint policy."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import jax.numpy as jnp
import pytest

from conftest import REPO

from jaxgen import checkpoint
from jaxgen.errors import RunFailed, UserError


def test_guard_checks_without_writing_and_config_is_recorded_separately(tmp_path):
  config = {'train': {'batch_size': 8, 'num_steps': 10}, 'model': {'name': 'dcgan'}}
  assert checkpoint.check_experiment(str(tmp_path), config) is False
  assert not (tmp_path / 'config.json').exists()  # Checking writes nothing.
  checkpoint.record_config(str(tmp_path), config)
  assert json.loads((tmp_path / 'config.json').read_text()) == config
  assert os.listdir(tmp_path) == ['config.json']  # Written atomically: no temporary left.
  # A longer run of the same experiment is a resume, not another experiment.
  longer = {'train': {'batch_size': 8, 'num_steps': 20}, 'model': {'name': 'dcgan'}}
  assert checkpoint.check_experiment(str(tmp_path), longer) is True
  # A run recorded by an older jaxgen lacks the settings added since: still a resume.
  newer = {'train': {'batch_size': 8, 'num_steps': 20}, 'model': {'name': 'dcgan', 'sn': False}}
  assert checkpoint.check_experiment(str(tmp_path), newer) is True
  assert checkpoint.settings_added_or_removed(config, newer) == ['model.sn']


def test_a_run_from_before_an_added_setting_held_its_old_value(tmp_path):
  # data.rotation came after runs on the embedded shapes at any angle (1.0) were recorded; the
  # diffusion default's is 0.0. Such a run resumes at 1.0 and is another experiment at 0.0.
  old = {'train': {'batch_size': 8}, 'data': {'source': 'embedded'}}
  checkpoint.record_config(str(tmp_path), old)
  at_any_angle = {'train': {'batch_size': 8}, 'data': {'source': 'embedded', 'rotation': 1.0}}
  assert checkpoint.check_experiment(str(tmp_path), at_any_angle) is True
  upright = {'train': {'batch_size': 8}, 'data': {'source': 'embedded', 'rotation': 0.0}}
  with pytest.raises(UserError, match=r'data.rotation: absent, so 1.0 → 0.0'):
    checkpoint.check_experiment(str(tmp_path), upright)
  assert checkpoint.experiment_differences(old, upright) == ['data.rotation']
  assert checkpoint.experiment_differences(upright, old) == []  # Removed: only a warning.


def test_guard_refuses_another_experiment_without_touching_the_workdir(tmp_path):
  checkpoint.record_config(str(tmp_path), {'train': {'batch_size': 8}, 'x': 1})
  before = (tmp_path / 'config.json').read_text()
  with pytest.raises(UserError) as info:
    checkpoint.check_experiment(str(tmp_path), {'train': {'batch_size': 16}, 'x': 1})
  assert 'train.batch_size: 8 → 16' in str(info.value) and '--allow_config_change' in str(
      info.value)
  assert (tmp_path / 'config.json').read_text() == before
  # Asked to, it accepts the new config (recorded once the run has started).
  assert checkpoint.check_experiment(str(tmp_path), {'train': {'batch_size': 16}, 'x': 1},
                                     allow_change=True) is True


def test_workdir_lock_names_its_owner_and_dies_with_it(tmp_path):
  workdir = str(tmp_path)
  lock = checkpoint.WorkdirLock(workdir)
  owner = (tmp_path / checkpoint.LOCK_FILE).read_text()
  assert owner.startswith(f'pid {os.getpid()} on host {socket.gethostname()} since ')
  # flock locks belong to an open file description: a second open, even in this process,
  # is another owner and is refused.
  with pytest.raises(UserError, match=f'in use by another run \\(pid {os.getpid()} on host'):
    checkpoint.WorkdirLock(workdir)
  assert (tmp_path / checkpoint.LOCK_FILE).read_text() == owner  # The refused one wrote nothing.
  lock.release()
  checkpoint.WorkdirLock(workdir).release()
  # A process killed with SIGKILL while holding it leaves no stale lock.
  holder = subprocess.Popen([sys.executable, '-c', (
      'import sys, time; sys.path.insert(0, sys.argv[1]); from jaxgen import checkpoint; '
      'checkpoint.WorkdirLock(sys.argv[2]); print("locked", flush=True); time.sleep(600)'),
      REPO, workdir], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(UserError, match=f'pid {holder.pid} on host'):
    checkpoint.WorkdirLock(workdir)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  checkpoint.WorkdirLock(workdir).release()


def test_keep_below_one_is_refused(tmp_path):
  with pytest.raises(UserError, match='checkpoint.keep=0 must be >= 1'):
    checkpoint.create_manager(str(tmp_path), keep=0)
  assert not (tmp_path / 'checkpoints').exists()


def test_first_non_finite_names_the_leaf():
  tree = {'g': {'w': jnp.ones((2, 3)), 'b': jnp.zeros(3)}, 'step': jnp.int32(4)}
  assert checkpoint.first_non_finite(tree) is None
  tree['g']['w'] = tree['g']['w'].at[1, 2].set(jnp.inf)
  assert checkpoint.first_non_finite(tree) == 'g/w'
  tree['g']['b'] = tree['g']['b'].at[0].set(jnp.nan)
  assert checkpoint.first_non_finite(tree) == 'g/b'  # The first in tree order.


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('a file, not a folder')
  with pytest.raises(UserError, match='not writable'):
    checkpoint.check_writable(str(blocker / 'workdir'))


def test_keeps_the_last_k_and_the_best(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep=2, best_metric='swd/avg')
  scores = {1: 5.0, 2: 1.0, 3: 4.0, 4: None, 5: 3.0, 6: None}  # Best is step 2.
  for step, score in scores.items():
    metrics = None if score is None else {'swd/avg': score}
    checkpoint.save(manager, step, {'w': jnp.full((3,), float(step))}, metrics)
    manager.wait_until_finished()
  assert sorted(manager.all_steps()) == [2, 5, 6]
  restored = checkpoint.restore_latest(manager, {'w': jnp.zeros((3,))})
  assert float(restored['w'][0]) == 6.0
  manager.close()
  assert not any(name.endswith('tmp') for name in os.listdir(tmp_path / 'checkpoints'))


def test_saver_refuses_a_checkpoint_the_disk_cannot_hold(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep=2)
  state = {'w': jnp.ones((4,))}
  saver = checkpoint.Saver(manager)
  saver.save(1, state)
  saver.state_bytes = shutil.disk_usage(str(tmp_path)).free + 2**30
  with pytest.raises(RunFailed, match=r'writing checkpoint 2 to .* failed \(OSError: .* MiB '
                     r'needed, .* MiB free; .* GiB free there\): the earlier checkpoints are '
                     r'intact; .* resume from step 1'):
    saver.save(2, state)
  assert sorted(manager.all_steps()) == [1]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']  # Not a byte of step 2.
  manager.close()
