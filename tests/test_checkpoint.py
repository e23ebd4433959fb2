"""Workdir guard and the keep-last-K-plus-best checkpoint policy."""

import json
import os

import jax.numpy as jnp
import pytest

from jaxgen import checkpoint
from jaxgen.errors import UserError


def test_guard_records_config_and_accepts_a_resume(tmp_path):
  config = {'train': {'batch_size': 8, 'num_steps': 10}, 'model': {'name': 'dcgan'}}
  assert checkpoint.guard_experiment(str(tmp_path), config) is False
  assert json.loads((tmp_path / 'config.json').read_text()) == config
  # A longer run of the same experiment is a resume, not another experiment.
  longer = {'train': {'batch_size': 8, 'num_steps': 20}, 'model': {'name': 'dcgan'}}
  assert checkpoint.guard_experiment(str(tmp_path), longer) is True


def test_guard_refuses_another_experiment_without_touching_the_workdir(tmp_path):
  checkpoint.guard_experiment(str(tmp_path), {'train': {'batch_size': 8}, 'x': 1})
  before = (tmp_path / 'config.json').read_text()
  with pytest.raises(UserError) as info:
    checkpoint.guard_experiment(str(tmp_path), {'train': {'batch_size': 16}, 'x': 1})
  assert 'train.batch_size: 8 → 16' in str(info.value) and '--allow_config_change' in str(
      info.value)
  assert (tmp_path / 'config.json').read_text() == before
  # Asked to, it continues and records the new config.
  checkpoint.guard_experiment(str(tmp_path), {'train': {'batch_size': 16}, 'x': 1},
                              allow_change=True)
  assert json.loads((tmp_path / 'config.json').read_text())['train']['batch_size'] == 16


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
