"""Inception metrics in training (`jaxgen.evaluation`) and on a trained run (`jaxgen.evaluate`).

The FID Inception takes ~0.12 s per image on a 2-core CPU, so a 1k-image metric would take
minutes; most tests give the Evaluator a cheap stand-in feature extractor (the `inception=`
argument) and check the plumbing: generation, real images, caching, logging, keep-best,
the CLI. The weight lookup itself runs for real (missing weights, offline).
"""

import functools
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, env_with_devices, read_scalars, run_main, tiny_config, tree_digest
from jaxgen import checkpoint, data, evaluate, evaluation, parallel, summaries, train
from jaxgen.errors import UserError
from jaxgen.metrics import inception_weights, registry

OFFLINE = {'HTTPS_PROXY': 'http://127.0.0.1:9', 'HTTP_PROXY': 'http://127.0.0.1:9',
           'https_proxy': 'http://127.0.0.1:9', 'http_proxy': 'http://127.0.0.1:9'}


class _FeatureNet:
  """Stand-in for the FID Inception: a fixed projection of 4×4-pooled pixels.

  Reads images as InceptionFeatures does (uint8, or floats in [-1, 1] quantised to uint8),
  and records each batch size it is given.
  """

  def __init__(self):
    self.batch_sizes = []
    self.num_images = 0
    rng = np.random.default_rng(0)
    self.projection = rng.normal(size=(48, 12))

  def __call__(self, images, pad_to=None):
    del pad_to
    x = np.asarray(images)
    if x.dtype != np.uint8:
      x = np.clip(np.floor((x.astype(np.float32) + 1) * 127.5 + 0.5), 0, 255)
    self.batch_sizes.append(x.shape[0])
    self.num_images += x.shape[0]
    b, h, w, c = x.shape
    pooled = x.astype(np.float64).reshape(b, 4, h // 4, 4, w // 4, c).mean(axis=(2, 4)) / 255
    pool = pooled.reshape(b, -1) @ self.projection
    return pool, pool[:, :10]


def _setup(**overrides):
  config = tiny_config(**overrides)
  source = data.create_source(config.data)
  recipe = train.create_recipe(config, source)
  mesh = parallel.create_mesh()
  state = recipe.init_state(jax.random.PRNGKey(config.seed))
  return config, source, recipe, mesh, state


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv(inception_weights.ENV_CACHE, str(tmp_path / 'cache'))
  monkeypatch.delenv(inception_weights.ENV_WEIGHTS, raising=False)
  for name, value in OFFLINE.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv('NO_PROXY', raising=False)
  monkeypatch.delenv('no_proxy', raising=False)
  return tmp_path / 'cache'


def test_evaluator_inception_metrics_stream_and_cache(cache):
  names = ('swd', 'fid1k', 'kid1k', 'is1k', 'pr1k3')
  config, source, recipe, mesh, state = _setup(**{'eval.metrics': names,
                                                  'eval.batch_size': 128})
  net = _FeatureNet()
  evaluator = evaluation.Evaluator(config, recipe, source, mesh, inception=net)
  results = evaluator(state)
  assert sorted(results) == sorted(['swd/16', 'swd/avg', 'fid1k', 'kid1k', 'is1k', 'is1k_std',
                                    'pr1k3_precision', 'pr1k3_recall'])
  assert all(np.isfinite(v) for v in results.values())
  # Streamed: the extractor saw 1000 generated + 256 real images, never more than a batch.
  assert max(net.batch_sizes) == 128 and net.num_images == 1000 + 256
  # The same numbers from the same 1000 generated images and the whole (256-image) source.
  fakes = evaluator.generate_uint8(state, 1000, jax.random.PRNGKey(config.seed + 7))
  reals = np.stack([source[i]['image'] for i in range(len(source))])
  direct = registry.compute_metrics(names[1:], _FeatureNet(), lambda n: [fakes],
                                    lambda n: [reals], seed=config.seed)
  for name, value in direct.items():
    assert results[name] == pytest.approx(value, rel=1e-6), name
  # Real features are cached per dataset, resolution and count: a second call reads none.
  assert (cache / 'fid_stats' / 'embedded-seed0-256img-3ch-16px-1000.npz').is_file()
  net.num_images = 0
  again = evaluator(state)
  assert net.num_images == 1000
  assert again['fid1k'] == pytest.approx(results['fid1k'], rel=1e-9)


def test_training_logs_inception_metrics_and_keeps_best_by_fid(tmp_path, cache, monkeypatch):
  net = _FeatureNet()
  monkeypatch.setattr(train, 'create_evaluator',
                      functools.partial(evaluation.create_evaluator, inception=net))
  config = tiny_config(**{'eval.metrics': ('fid1k', 'kid1k'), 'checkpoint.keep': 1,
                          'checkpoint.best_metric': 'fid1k', 'eval.batch_size': 256})
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  scalars = read_scalars(workdir)
  fids = scalars['eval/fid1k']
  assert sorted(fids) == [0, 3, 6] and sorted(scalars['eval/kid1k']) == [0, 3, 6]
  assert len(set(fids.values())) == 3  # the generator changed between evaluations
  best = min(fids, key=fids.get)
  manager = checkpoint.open_read_only(workdir, 'fid1k', 'min')
  assert manager.best_step() == best
  assert set(manager.all_steps()) == {best, 6}  # keep=1: the newest, plus the best by FID


def test_missing_weights_skip_inception_metrics_with_one_warning(cache, caplog):
  config, source, recipe, mesh, state = _setup(**{'eval.metrics': ('swd', 'fid1k')})
  with caplog.at_level('WARNING', logger='jaxgen'):
    evaluator = evaluation.Evaluator(config, recipe, source, mesh)
  warnings = [r for r in caplog.records if r.levelname == 'WARNING']
  assert len(warnings) == 1
  message = warnings[0].getMessage()
  assert 'Skipping fid1k' in message and inception_weights.PTH_NAME in message
  # The download was tried and failed offline (refused, or no DNS: the reason varies by host).
  assert 'cannot download https://' in message
  assert sorted(evaluator(state)) == ['swd/16', 'swd/avg']
  assert not list(cache.rglob('*.pth')) and not list(cache.rglob('*.part'))
  # An explicit weight file that is missing is an error, not a silent skip.
  config.eval.inception_weights = str(cache / 'nowhere.npz')
  with pytest.raises(UserError, match='nowhere.npz'):
    evaluation.Evaluator(config, recipe, source, mesh)


def test_unknown_metric_name(cache):
  config, source, recipe, mesh, _ = _setup(**{'eval.metrics': ('swd', 'fid10')})
  with pytest.raises(UserError, match="unknown metric 'fid10'"):
    evaluation.Evaluator(config, recipe, source, mesh)


# ---------------------------------------------------------------------------------------------
# A real run: Inception metrics configured, no weights to be found, offline.


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('evaluate')
  workdir = str(root / 'run')
  env = {inception_weights.ENV_CACHE: str(root / 'cache'), **OFFLINE}
  saved = {k: os.environ.get(k) for k in list(env) + [inception_weights.ENV_WEIGHTS]}
  os.environ.update(env)
  os.environ.pop(inception_weights.ENV_WEIGHTS, None)
  try:
    result = run_main(workdir, **{'eval.metrics': '("swd","fid1k")'})
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return workdir, result, root


def test_training_without_weights_warns_once_and_finishes(trained):
  workdir, result, root = trained
  warnings = [l for l in result.stderr.splitlines() if 'fid1k' in l]
  assert len(warnings) == 1 and ' W Skipping fid1k' in warnings[0], result.stderr[-2000:]
  assert 'Finished 6 steps' in result.stderr
  scalars = read_scalars(workdir)
  assert sorted(scalars['eval/swd/avg']) == [0, 3, 6]
  assert not any('fid' in tag for tag in scalars)
  assert not list((root / 'cache').rglob('*.pth'))


def _evaluate(cache, *args):
  full_env = env_with_devices(1, **{inception_weights.ENV_CACHE: str(cache), **OFFLINE})
  full_env.pop(inception_weights.ENV_WEIGHTS, None)
  return subprocess.run([sys.executable, '-m', 'jaxgen.evaluate', *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, env=full_env, timeout=300)


def test_cli_scores_the_best_checkpoint_read_only(trained, tmp_path):
  workdir, _, _ = trained
  before = tree_digest(workdir)
  out = tmp_path / 'scores.json'
  result = _evaluate(tmp_path / 'cache', '--workdir', workdir, '--metrics', 'swd', '--best',
                     '--output', out)
  assert result.returncode == 0, result.stderr
  logged = read_scalars(workdir)['eval/swd/avg']
  best = min(logged, key=logged.get)
  saved = json.loads(out.read_text())
  assert saved['step'] == best
  assert saved['results']['swd/avg'] == pytest.approx(logged[best], rel=1e-5)
  assert f'swd/avg: {saved["results"]["swd/avg"]:.6g}' in result.stdout.splitlines()
  assert tree_digest(workdir) == before


def test_cli_inception_metrics_on_a_checkpoint(trained, tmp_path, cache):
  workdir, _, _ = trained
  before = tree_digest(workdir)
  first = min(checkpoint.open_read_only(workdir).all_steps())
  args = evaluate.parse_args(['--workdir', workdir, '--metrics', 'fid1k,is1k', '--step',
                              str(first), '--batch_size', '200'])
  net = _FeatureNet()
  step, results = evaluate.run(args, inception=net)
  assert step == first and sorted(results) == ['fid1k', 'is1k', 'is1k_std']
  assert max(net.batch_sizes) == 200
  # The same as scoring that checkpoint directly.
  config, source, recipe, mesh, _ = _setup(**{'eval.metrics': ('fid1k', 'is1k'),
                                              'eval.batch_size': 200})
  abstract = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(config.seed))
  sharding = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                          abstract)
  state = checkpoint.restore(checkpoint.open_read_only(workdir), first, abstract)
  direct = evaluation.Evaluator(config, recipe, source, mesh, inception=_FeatureNet())(state)
  assert results == pytest.approx(direct, rel=1e-9)
  assert tree_digest(workdir) == before


def _fails_cleanly(result, *needles):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('jaxgen: error: '), result.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


def test_cli_bad_input(trained, tmp_path):
  workdir, _, _ = trained
  before = tree_digest(workdir)
  cache = tmp_path / 'cache'
  run = functools.partial(_evaluate, cache)
  _fails_cleanly(run('--workdir', tmp_path, '--metrics', 'fid1k'), 'config.json')
  no_checkpoints = tmp_path / 'fresh'
  no_checkpoints.mkdir()
  shutil.copy(os.path.join(workdir, 'config.json'), no_checkpoints)
  _fails_cleanly(run('--workdir', no_checkpoints, '--metrics', 'swd'), 'no checkpoints')
  _fails_cleanly(run('--workdir', workdir, '--metrics', 'fid1k,fidd1k'),
                 "unknown metric 'fidd1k'")
  steps = ', '.join(map(str, sorted(checkpoint.open_read_only(workdir).all_steps())))
  _fails_cleanly(run('--workdir', workdir, '--metrics', 'swd', '--step', '5'),
                 'no checkpoint 5', f'there are {steps}')
  _fails_cleanly(run('--workdir', workdir, '--metrics', 'fid1k', '--no_download'),
                 inception_weights.PTH_NAME, str(cache / 'inception'), 'inception_weights convert')
  _fails_cleanly(run('--workdir', workdir, '--metrics', 'kid1k'),
                 'cannot download', 'Connection refused')
  _fails_cleanly(run('--workdir', workdir, '--metrics', 'is1k', '--weights',
                     tmp_path / 'nowhere.npz'), 'nowhere.npz', 'do not exist')
  assert tree_digest(workdir) == before
  assert not list(cache.rglob('*.pth'))


@pytest.mark.parametrize('count', [16, 40, 64])
def test_sample_grid_columns_hold_one_class_each(count):
  """Sample i has label i mod K (evaluator); the grid's columns must be a multiple of K for each
  column to show one class, near a square grid; without classes, ⌈√count⌉ as before."""
  assert summaries.grid_columns(count) == math.ceil(math.sqrt(count))
  assert summaries.grid_columns(count, count + 1) == math.ceil(math.sqrt(count))
  for k in range(1, count // 2 + 1):
    columns = summaries.grid_columns(count, k)
    assert columns % k == 0 and columns <= count
    labels = np.arange(count) % k
    for c in range(columns):
      assert len(set(labels[c::columns])) == 1
    # Near square: no other multiple of k is closer to √count.
    assert abs(columns - math.sqrt(count)) <= k / 2 + 1e-9 or columns == k
  assert summaries.grid_columns(64, 5) == 10 and summaries.grid_columns(64, 4) == 8
