"""CycleGAN on the one loop: the official networks, the losses against direct computations, the
history pool's statistics, the shared tiny run's logs and state, exact resume after kill -9, and
`jaxgen.translate` / `export` / `evaluate` in both directions on it."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import cyclegan
from conftest import (CYCLEGAN_TINY, REPO, env_with_devices, kill_after_checkpoint,
                      read_scalars, run_main, with_overrides)
from jaxgen.objectives import cyclegan as objective
from jaxgen.recipes.cyclegan import CycleGAN


def test_presets_build_the_official_networks():
  # resnet_9blocks and the 70×70 PatchGAN with instance norm on 3 channels, as the official
  # `--model cycle_gan` (junyanz/pytorch-CycleGAN-and-pix2pix).
  recipe = CycleGAN(cyclegan.get_config('horse2zebra'), num_classes=0)
  state = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  assert recipe.param_count(state) == {'G_A': 11_378_179, 'G_B': 11_378_179,
                                       'D_A': 2_764_737, 'D_B': 2_764_737}
  assert state.fake_b_pool.shape == state.fake_a_pool.shape == (50, 256, 256, 3)
  from jaxgen import data  # The bench preset's data and networks fit together.
  bench = cyclegan.get_config('bench')
  CycleGAN(bench, num_classes=0)
  source, held_out = data.create_sources(bench)
  assert source[0]['input'].shape == held_out.domain_b[0]['image'].shape == (256, 256, 3)


def _tiny_recipe():
  return CycleGAN(with_overrides(cyclegan.get_config(), CYCLEGAN_TINY), num_classes=0)


def test_losses_match_direct_computations():
  """G's six terms and D's halved LSGAN losses, against the networks applied one by one and the
  losses written out in numpy."""
  recipe = _tiny_recipe()
  state = jax.jit(recipe.init_state)(jax.random.PRNGKey(3))
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  real_a, real_b = (jax.random.uniform(k, (2, 16, 16, 3), minval=-1.0, maxval=1.0) for k in keys)
  g, d = state.g_params, state.d_params
  total, (terms, fake_b, fake_a) = jax.jit(recipe.generator_losses)(g, d, real_a, real_b)

  g_apply = jax.jit(lambda p, x: recipe.generator.apply({'params': p}, x, train=False))
  d_apply = jax.jit(lambda p, x: recipe.discriminator.apply({'params': p}, x, train=True))
  G = lambda name, x: np.asarray(g_apply(g[name], x))
  D = lambda name, x: np.asarray(d_apply(d[name], x))
  a, b = np.asarray(real_a), np.asarray(real_b)
  fb, fa = G('G_A', a), G('G_B', b)
  l1 = lambda x, y: np.mean(np.abs(x - y))
  expected = {
      'G_A': np.mean((D('D_A', fb) - 1) ** 2), 'G_B': np.mean((D('D_B', fa) - 1) ** 2),
      'cycle_A': 10 * l1(G('G_B', fb), a), 'cycle_B': 10 * l1(G('G_A', fa), b),
      'idt_A': 0.5 * 10 * l1(G('G_A', b), b), 'idt_B': 0.5 * 10 * l1(G('G_B', a), a)}
  # float32 convolutions in another order (one program against separate calls): ~1e-6.
  assert set(terms) == set(expected)
  for name, value in expected.items():
    assert float(terms[name]) == pytest.approx(value, rel=1e-4, abs=1e-6), name
  assert float(total) == pytest.approx(sum(expected.values()), rel=1e-4)
  np.testing.assert_allclose(np.asarray(fake_b), fb, atol=1e-5)

  d_total, d_terms = jax.jit(recipe.discriminator_losses)(d, real_a, real_b, fake_b, fake_a)
  d_expected = {'D_A': 0.5 * (np.mean((D('D_A', b) - 1) ** 2) + np.mean(D('D_A', fb) ** 2)),
                'D_B': 0.5 * (np.mean((D('D_B', a) - 1) ** 2) + np.mean(D('D_B', fa) ** 2))}
  for name, value in d_expected.items():
    assert float(d_terms[name]) == pytest.approx(value, rel=1e-4), name
  assert float(d_total) == pytest.approx(sum(d_expected.values()), rel=1e-4)

  # λ_identity = 0 drops the identity terms (and their two generator passes).
  recipe.lambda_idt = 0.0
  terms = jax.eval_shape(recipe.generator_losses, g, d, real_a, real_b)[1][0]
  assert set(terms) == {'G_A', 'G_B', 'cycle_A', 'cycle_B'}


def test_history_pool_sampling_statistics():
  """The official ImagePool's behaviour, on 'images' that are their own ids 1, 2, 3, ...: while
  filling, each image is returned and stored; once full, about half of the images returned come
  from the pool, each a real past fake returned at most once, and nothing is lost."""
  size, batch, queries = 50, 2, 400
  pool, count = objective.empty_pool(size, (1, 1, 1))
  ids = jnp.arange(1, batch * queries + 1, dtype=jnp.float32).reshape(queries, batch, 1, 1, 1)

  def step(carry, inputs):
    pool, count = carry
    images, key = inputs
    returned, pool, count = objective.query_pool(pool, count, images, key)
    return (pool, count), returned

  keys = jax.random.split(jax.random.PRNGKey(0), queries)
  (pool, count), returned = jax.jit(lambda *a: jax.lax.scan(step, *a))((pool, count),
                                                                         (ids, keys))
  ids, returned = np.asarray(ids).ravel(), np.asarray(returned).ravel()
  pool = np.asarray(pool).ravel()
  assert int(count) == size
  fill = size  # The first 50 images fill the pool and come back unchanged.
  np.testing.assert_array_equal(returned[:fill], ids[:fill])
  # Once full: an image is returned itself, or a stored one (an earlier image) in its place.
  later = returned[fill:]
  from_pool = later != ids[fill:]
  assert np.all(later[from_pool] < ids[fill:][from_pool])  # Real past fakes, never new ones.
  # Binomial(n = 750, p = 1/2): mean 375, sd 13.7; 4 sd either way (a fixed key, so this is
  # deterministic; the bound rejects a coin of p ≤ 0.43 or ≥ 0.57).
  n = later.size
  assert abs(from_pool.sum() - n / 2) < 4 * np.sqrt(n) / 2, from_pool.sum()
  # What was stored (the first 50, then each image that took a returned one's place) is either
  # still stored or was returned from the pool, exactly once.
  stored = np.concatenate([ids[:fill], ids[fill:][from_pool]])
  np.testing.assert_array_equal(np.sort(np.concatenate([later[from_pool], pool])),
                                np.sort(stored))
  # pool_size 0: the batch itself.
  images = jnp.ones((3, 2, 2, 3))
  out, _, _ = objective.query_pool(*objective.empty_pool(0, (2, 2, 3)), images,
                                   jax.random.PRNGKey(0))
  np.testing.assert_array_equal(out, images)


# ------------------------------------------------------------------------------------------------
# The shared tiny run.


def test_run_logs_losses_scores_and_grids(cyclegan_run):
  scalars = read_scalars(cyclegan_run)
  for tag in ('loss/G_A', 'loss/G_B', 'loss/cycle_A', 'loss/cycle_B', 'loss/idt_A',
              'loss/idt_B', 'loss/D_A', 'loss/D_B', 'loss/g', 'grad_norm/g', 'grad_norm/d'):
    assert set(scalars[tag]) == set(range(1, 7)), tag
    assert all(np.isfinite(v) for v in scalars[tag].values()), tag
  for name in ('psnr', 'ssim', 'swd/avg'):
    assert set(scalars[f'eval/{name}']) == {3, 6}, name
    base = scalars[f'eval/baseline_{name}']  # The untranslated A images, scored once.
    assert base[3] == base[6], name
  assert 0 < scalars['eval/ssim'][6] <= 1 and 3 < scalars['eval/psnr'][6] < 60
  # lr: constant for 3 steps, then the official linear decay over 3 (1 − k/4, k = 1, 2, 3); the
  # step logged as s is update s − 1.
  lr, base_lr = scalars['lr'], cyclegan.get_config().optimizer.lr
  assert [lr[s] / base_lr for s in range(1, 7)] == pytest.approx([1, 1, 1, 0.75, 0.5, 0.25])
  # Two panels of real | translated | reconstructed, A over B (32 × 48 each), side by side.
  grid = np.asarray(Image.open(os.path.join(cyclegan_run, 'samples', '00000006.png')))
  assert grid.shape == (32, 96, 3) and grid[:16, :16].std() > 0
  assert set(os.listdir(os.path.join(cyclegan_run, 'checkpoints'))) >= {'4', '6'}


def test_checkpoint_holds_the_full_history_pools(cyclegan_run):
  """After 6 steps of 2 the pools of 4 are full of generated images (not the zeros they start
  as), and the newest fakes in them are what G made: in (−1, 1)."""
  from jaxgen import trained
  restored = trained.restore(cyclegan_run, need_data=False)
  state = restored.state
  for pool, count in ((state.fake_b_pool, state.fake_b_count),
                      (state.fake_a_pool, state.fake_a_count)):
    pool = np.asarray(pool)
    assert int(count) == 4 and pool.shape == (4, 16, 16, 3)
    assert np.all(np.abs(pool) < 1) and np.all(pool.reshape(4, -1).std(axis=1) > 0)


def test_kill_9_then_rerun_resumes_exactly(cyclegan_run, tmp_path):
  """Killed right after checkpoint 4 and run again: the later steps' losses (the same crops and
  flips, the restored pools and their draws, both optimisers) and the final scores equal the
  uninterrupted run's."""
  workdir = str(tmp_path / 'killed')
  kill_after_checkpoint(workdir, 4, config='configs/cyclegan.py')
  result = run_main(workdir, config='configs/cyclegan.py')
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = read_scalars(cyclegan_run), read_scalars(workdir)
  for tag in ('loss/D_A', 'loss/D_B', 'loss/g', 'loss/cycle_A', 'grad_norm/d'):
    for step in range(resumed_from + 1, 7):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-5, abs=1e-7), (tag, step)
  for name in ('psnr', 'swd/avg'):
    assert got[f'eval/{name}'][6] == pytest.approx(expected[f'eval/{name}'][6], rel=1e-5)


def test_translate_export_and_evaluate_both_directions(cyclegan_run, tmp_path):
  """`translate` applies G_A (default) and G_B (--direction=BtoA), from the workdir and from an
  exported file alike, each equal to the recipe's `generate` on the picture; `evaluate` rescores
  the logged figures. (The CLIs' `main`s run in this process: no JAX start-up per command.)"""
  from jaxgen import evaluate, export, trained, translate
  pictures = tmp_path / 'in'
  pictures.mkdir()
  picture = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  Image.fromarray(picture).save(pictures / 'p.png')
  network = tmp_path / 'g.npz'
  assert export.main([f'--workdir={cyclegan_run}', f'--output={network}']) == 0
  restored = trained.load_generator(str(network))
  x = jnp.asarray(picture, jnp.float32)[None] / 127.5 - 1.0
  for direction, source in (('AtoB', f'--workdir={cyclegan_run}'),
                            ('BtoA', f'--network={network}')):
    out = tmp_path / direction
    assert translate.main([source, f'--input={pictures}', f'--outdir={out}', '--tile=16',
                           f'--direction={direction}']) == 0
    got = np.asarray(Image.open(out / 'p.png'), np.float32)
    want = np.asarray(restored.recipe.generate(restored.state, x, None, direction=direction))[0]
    # The same float32 pass, rounded to uint8 by the PNG: at most one level of 255 apart.
    assert np.abs(got - np.clip(np.round((want + 1) * 127.5), 0, 255)).max() <= 1, direction
  a, b = (np.asarray(Image.open(tmp_path / d / 'p.png')) for d in ('AtoB', 'BtoA'))
  assert np.abs(a.astype(int) - b).mean() > 1  # Two different generators.
  with pytest.raises(SystemExit):  # argparse: one usage line.
    translate.parse_args([f'--network={network}', '--input=x', '--outdir=y',
                          '--direction=sideways'])

  out = tmp_path / 'e.json'
  assert evaluate.main([f'--workdir={cyclegan_run}', '--metrics=psnr,swd',
                        f'--output={out}']) == 0
  figures = json.loads(out.read_text())['results']
  logged = read_scalars(cyclegan_run)
  for name in ('psnr', 'swd/avg', 'baseline_psnr'):
    assert figures[name] == pytest.approx(logged[f'eval/{name}'][6], rel=1e-5), name
  assert evaluate.main([f'--workdir={cyclegan_run}', '--metrics=psnr_y']) == 2


# ------------------------------------------------------------------------------------------------
# Two-domain data and settings.


def _data(**overrides):
  config = cyclegan.get_config()
  config.data.update({'resolution': 16, 'num_images': 30, **overrides})
  return config.data


def test_unpaired_source_covers_both_domains_and_holds_out_each():
  from jaxgen.data import pipeline, unpaired
  source = pipeline.create_source(_data())
  assert len(source) == 30 and source.name == 'unpaired:embedded'
  examples = [source[i] for i in range(30)]
  # A in order, B a fixed permutation: each image of each domain once per epoch.
  for i, e in enumerate(examples):
    np.testing.assert_array_equal(e['input'], source.domain_a[i]['image'])
  b_images = {source.domain_b[j]['image'].tobytes(): j for j in range(30)}
  assert sorted(b_images[e['image'].tobytes()] for e in examples) == list(range(30))
  # B's compositions are other ones than A's: no B image is the true translation of an A image.
  truths = {source.truth_a[i]['image'].tobytes() for i in range(30)}
  assert not truths & set(b_images)
  assert all(source[i]['input'].tobytes() == examples[i]['input'].tobytes() for i in (0, 7))

  train, held = source.hold_out(8, seed=1)
  for part, size in ((train, 22), (held, 8)):
    assert len(part.domain_a) == len(part.domain_b) == len(part.truth_a) == size
  assert not set(train.domain_a.indices) & set(held.domain_a.indices)
  assert not set(train.domain_b.indices) & set(held.domain_b.indices)
  for k in (0, 5):  # Held-out truths stay aligned with their A images.
    i = int(held.domain_a.indices[k])
    np.testing.assert_array_equal(held.truth_a[k]['image'], source.truth_a[i]['image'])
    np.testing.assert_array_equal(held.domain_a[k]['image'], source.domain_a[i]['image'])
  # Two specs, each any source: here the embedded images twice (no known translation).
  both = pipeline.create_source(_data(source='unpaired:embedded,embedded'))
  assert both.truth_a is None and len(both) == 30
  assert unpaired.parse('unpaired:/a,tfds:x:y') == ['folder:/a', 'tfds:x:y']


def test_tfds_cycle_gan_gives_its_two_splits(monkeypatch):
  """tfds:cycle_gan/NAME is trainA with trainB (':test': testA with testB), each a plain tfds
  source (a stand-in here: the datasets are downloads)."""
  from jaxgen.data import pipeline

  class FakeTfds:
    def __init__(self, name, split, resolution, channels, use_labels, data_dir, download):
      del data_dir, download
      assert not use_labels
      self.name = f'tfds:{name}:{split}'
      self.image = np.full((resolution, resolution, channels), len(split), np.uint8)
      self.num_classes = 0

    def __len__(self):
      return 3 if self.name.endswith('A') else 5

    def __getitem__(self, index):
      return {'image': self.image, 'label': np.int32(0)}

  monkeypatch.setattr(pipeline, 'TfdsSource', FakeTfds)
  for spec, split in (('tfds:cycle_gan/horse2zebra', 'train'),
                      ('tfds:cycle_gan/horse2zebra:test', 'test')):
    source = pipeline.create_source(_data(source=spec))
    assert source.domain_a.name == f'tfds:cycle_gan/horse2zebra:{split}A'
    assert source.domain_b.name == f'tfds:cycle_gan/horse2zebra:{split}B'
    assert len(source) == 5 and source.truth_a is None


def test_bad_settings_are_refused_before_anything_runs():
  from jaxgen import data, evaluation, parallel
  from jaxgen.errors import UserError

  def refused(match, **overrides):
    config = with_overrides(cyclegan.get_config(), {**CYCLEGAN_TINY, **overrides})
    with pytest.raises(UserError, match=match) as error:
      recipe = CycleGAN(config, num_classes=0)
      source, eval_source = data.create_sources(config)
      evaluation.create_evaluator(config, recipe, eval_source, parallel.create_mesh())
    assert '\n' not in str(error.value)

  refused("model.norm='batch' is not one of instance, none: batch norm",
          **{'model.norm': 'batch'})
  refused('optimizer.decay_steps=9 must be within 0..train.num_steps=6',
          **{'optimizer.decay_steps': 9})
  refused("objective.gan_loss='wgan-gp' is not one of", **{'objective.gan_loss': 'wgan-gp'})
  refused('objective.pool_size=-1 is negative', **{'objective.pool_size': -1})
  refused('task.crop=14 does not fit the ResNet generator', **{'task.crop': 14})
  refused('smaller than the PatchGAN discriminator', **{'model.n_layers': 3})
  refused('data.holdout=64 leaves no training images', **{'data.holdout': 64})
  refused("eval.metrics has 'lpips'", **{'eval.metrics': ('swd', 'lpips')})
  refused('does not know them', **{'data.source': 'unpaired:embedded,embedded'})


def test_bench_times_training_and_translation(cyclegan_run, tmp_path):
  """`jaxgen.bench` runs the CycleGAN step on the pipeline's unpaired batches and times G_A (a
  process of its own, after the shared run: its programs come from the compilation cache)."""
  del cyclegan_run  # Trained first, for the cache.
  out = tmp_path / 'bench.json'
  overrides = [f'--config.{k}={v}' for k, v in CYCLEGAN_TINY.items()]
  result = subprocess.run([sys.executable, '-m', 'jaxgen.bench', '--config=configs/cyclegan.py',
                           *overrides, '--steps=2', '--warmup=1', '--sample_batches=1',
                           f'--output={out}'], cwd=REPO, capture_output=True, text=True,
                          env=env_with_devices(1), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert figures['finite'] and figures['images_per_s'] > 0 and figures['gflop_per_image'] > 0
  assert figures['sample_evaluations'] == 1 and figures['sample_images_per_s'] > 0
