"""FID: the Fréchet distance, statistics, extraction, the stats cache, and the CLI."""

import os
import pathlib
import socket
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.errors import UserError
from jaxgen.metrics import fid, inception_weights

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _gaussian_stats(rng, n, d, shift=0.0, scale=1.0):
  x = rng.normal(shift, scale, (n, d)) @ rng.normal(0, 1, (d, d)) / np.sqrt(d)
  return x.mean(0), np.cov(x, rowvar=False)


# ---------------------------------------------------------------------------------------------
# The Fréchet distance.


def test_fid_of_a_set_with_itself_is_zero():
  mu, sigma = _gaussian_stats(np.random.default_rng(0), 500, 64)
  # sqrtm(S S) = S up to float64 rounding of a 64x64 problem: ~1e-12 of Tr(S) ~ 1e2.
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_fid_is_symmetric():
  rng = np.random.default_rng(1)
  a, b = _gaussian_stats(rng, 400, 48), _gaussian_stats(rng, 300, 48, shift=0.2, scale=1.3)
  ab, ba = fid.frechet_distance(*a, *b), fid.frechet_distance(*b, *a)
  assert ab > 1  # clearly different sets
  assert ab == pytest.approx(ba, rel=1e-9)  # Tr sqrt(S1 S2) = Tr sqrt(S2 S1) exactly


def test_fid_closed_form_for_diagonal_covariances():
  # Commuting covariances: FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  rng = np.random.default_rng(2)
  a, b = rng.uniform(0.1, 3, 32), rng.uniform(0.1, 3, 32)
  mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize('n', [500, 40])  # full rank, and rank-deficient (n < d) like FID
def test_eigenvalue_form_agrees_with_sqrtm(n):
  rng = np.random.default_rng(3)
  a, b = _gaussian_stats(rng, n, 64), _gaussian_stats(rng, n, 64, shift=0.1, scale=0.8)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ref = fid.frechet_distance(*a, *b)
  # Rank-deficient products have near-zero eigenvalues whose square roots (~1e-7) differ
  # between methods; relative 1e-6 of an FID ~ 10 is far below any meaningful digit.
  assert fid.frechet_distance_eig(*a, *b) == pytest.approx(ref, rel=1e-6)


def test_singular_product_retries_with_eps():
  # S1 S2 nilpotent: sqrtm has no finite answer; pytorch-fid adds eps to both diagonals and
  # the result is |dmu|^2 + Tr(S1) + Tr(S2) - 2 * 2 sqrt(eps (1 + eps)) (a 2x2 Jordan block).
  eps = 1e-6
  s1, s2 = np.array([[0.0, 1.0], [0.0, 0.0]]), np.eye(2)
  with pytest.warns(UserWarning, match='singular'):
    got = fid.frechet_distance(np.zeros(2), s1, np.ones(2), s2, eps=eps)
  assert got == pytest.approx(2 + 0 + 2 - 4 * np.sqrt(eps * (1 + eps)), rel=1e-9)


def test_large_imaginary_part_is_an_error():
  # A product with a negative eigenvalue has no real square root: pytorch-fid's check fires.
  with pytest.raises(ValueError, match='imaginary'):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -4.0]))


def test_mismatched_dimensions_are_a_user_error():
  with pytest.raises(UserError, match='different dimensions'):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(UserError, match='inconsistent'):
    fid.frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))


# ---------------------------------------------------------------------------------------------
# Statistics.


def test_streaming_stats_match_numpy():
  rng = np.random.default_rng(4)
  x = rng.normal(1000.0, 0.01, (301, 16))  # large offset, small spread: cancellation-prone
  stats = fid.FeatureStats()
  for start, stop in [(0, 7), (7, 100), (100, 250), (250, 301)]:
    stats.update(x[start:stop])
  np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
  # np.cov centres in two passes; the shifted sums must match it to float64 rounding.
  np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-12)
  assert stats.num == 301


def test_npz_round_trip_is_pytorch_fid_compatible(tmp_path):
  mu, sigma = _gaussian_stats(np.random.default_rng(5), 50, 8)
  path = tmp_path / 'stats.npz'
  fid.save_stats(path, mu, sigma)
  with np.load(path) as f:  # exactly how pytorch-fid reads statistics
    np.testing.assert_array_equal(f['mu'][:], mu)
    np.testing.assert_array_equal(f['sigma'][:], sigma)
  mu2, sigma2 = fid.load_stats(path)
  np.testing.assert_array_equal(mu2, mu)
  np.testing.assert_array_equal(sigma2, sigma)
  np.savez(tmp_path / 'written_by_pytorch_fid.npz', mu=mu, sigma=sigma)  # its save_fid_stats
  np.testing.assert_array_equal(fid.load_stats(tmp_path / 'written_by_pytorch_fid.npz')[0], mu)


def test_bad_statistics_files(tmp_path):
  np.savez(tmp_path / 'nokeys.npz', m=np.zeros(3))
  with pytest.raises(UserError, match='no `mu` and `sigma`'):
    fid.load_stats(tmp_path / 'nokeys.npz')
  (tmp_path / 'garbage.npz').write_bytes(b'garbage')
  with pytest.raises(UserError, match='cannot read'):
    fid.load_stats(tmp_path / 'garbage.npz')
  np.savez(tmp_path / 'shape.npz', mu=np.zeros(3), sigma=np.eye(4))
  with pytest.raises(UserError, match='inconsistent'):
    fid.load_stats(tmp_path / 'shape.npz')


class _FakeNet:
  """Stands in for InceptionFeatures: pool = first 6 pixel values, logits = their negation."""

  def __init__(self):
    self.shapes = []

  def __call__(self, images, pad_to=None):
    self.shapes.append((images.shape[0], pad_to))
    pool = np.asarray(images, np.float32).reshape(images.shape[0], -1)[:, :6]
    return pool, -pool


def test_extract_counts_pads_and_keeps_features():
  rng = np.random.default_rng(6)
  images = rng.integers(0, 256, (23, 4, 4, 3)).astype(np.uint8)
  net = _FakeNet()
  out = fid.extract(net, (images[i:i + 10] for i in range(0, 23, 10)), num_samples=21,
                    keep_pool=True, keep_logits=True)
  expected = images.reshape(23, -1)[:21, :6].astype(np.float64)
  assert out.num == 21
  np.testing.assert_array_equal(out.pool, expected)
  np.testing.assert_array_equal(out.logits, -expected)
  np.testing.assert_allclose(out.mu, expected.mean(0), rtol=1e-12)
  np.testing.assert_allclose(out.sigma, np.cov(expected, rowvar=False), rtol=1e-10, atol=1e-9)
  assert net.shapes == [(10, 10), (10, 10), (1, 10)]  # short last batch padded to 10
  with pytest.raises(UserError, match='at least 2 images'):
    fid.extract(net, [images[:1]])


def test_inception_features_pads_and_quantizes(tmp_path):
  params = inception_weights.convert_state_dict(inception_weights.random_state_dict(1))
  net = fid.InceptionFeatures(params, precision='fp32')
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
  pool, logits = net(images, pad_to=4)  # compiled for 4, three returned
  assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
  # Floats in [-1, 1] are quantised back to exactly these uint8 values first.
  pool_f, _ = net((images / 127.5 - 1).astype(np.float32), pad_to=4)
  np.testing.assert_array_equal(np.asarray(pool_f), np.asarray(pool))
  # Padding does not leak into the results: the first image alone gives the same features.
  alone, _ = net(np.concatenate([images[:1]] * 4))
  np.testing.assert_allclose(np.asarray(alone)[0], np.asarray(pool)[0], rtol=1e-5, atol=1e-6)


_TWO_PROCESS_SCRIPT = """
import sys
import jax
port, pid, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
jax.distributed.initialize(f'127.0.0.1:{port}', 2, pid)
from jaxgen.errors import UserError
from jaxgen.metrics import fid, inception_weights
params = inception_weights.convert_state_dict(inception_weights.random_state_dict(seed))
try:
  net = fid.InceptionFeatures(params)
except UserError as e:
  print('ERROR', e)
  sys.exit(2)
print('OK', net.weights_id)
"""


@pytest.mark.parametrize('seeds', [(0, 0), (0, 1)])
def test_processes_must_load_the_same_inception_weights(tmp_path, seeds):
  script = tmp_path / 'net.py'
  script.write_text(_TWO_PROCESS_SCRIPT)
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))
  procs = [subprocess.Popen([sys.executable, str(script), str(port), str(i), str(seed)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i, seed in enumerate(seeds)]
  outs = [p.communicate(timeout=300) for p in procs]
  if seeds[0] == seeds[1]:
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0].split()[-1] == outs[1][0].split()[-1]  # The same fingerprint.
  else:
    assert [p.returncode for p in procs] == [2, 2], outs
    assert all('loaded different FID Inception weights' in out for out, _ in outs), outs


def test_weights_fingerprint_names_the_network():
  """Cached real features belong to one Inception: other weights, other fingerprint and file."""
  params = inception_weights.convert_state_dict(inception_weights.random_state_dict(1))
  same = inception_weights.convert_state_dict(inception_weights.random_state_dict(1))
  other = inception_weights.convert_state_dict(inception_weights.random_state_dict(2))
  first = fid.weights_fingerprint(params)
  assert len(first) == 10 and first == fid.weights_fingerprint(same)
  assert fid.weights_fingerprint(other) != first
  # One changed scalar is another network.
  leaves, treedef = jax.tree_util.tree_flatten(same)
  leaves[-1] = np.asarray(leaves[-1]).copy()
  leaves[-1].flat[0] += 1e-3
  assert fid.weights_fingerprint(jax.tree_util.tree_unflatten(treedef, leaves)) != first
  net = fid.InceptionFeatures(params, precision='fp32')
  assert net.weights_id == first
  assert fid.real_stats_path('d', 32, 50, '/c', 'fp32', first).name == f'd-32px-50-w{first}.npz'


# ---------------------------------------------------------------------------------------------
# Cache of real-data statistics.


def _features(seed, keep_pool=True):
  x = np.random.default_rng(seed).normal(size=(20, 5))
  return fid.Features(20, x.mean(0), np.cov(x, rowvar=False), x.astype(np.float32) if
                      keep_pool else None)


def test_real_stats_cache_hit_miss_and_rebuild(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    return _features(len(calls))

  path = fid.real_stats_path('my data/v1', 32, 1000, tmp_path)
  assert path.name == 'my_data_v1-32px-1000.npz'
  first = fid.cached_real_features('my data/v1', 32, 1000, compute, cache=tmp_path)
  again = fid.cached_real_features('my data/v1', 32, 1000, compute, cache=tmp_path)
  assert len(calls) == 1
  np.testing.assert_array_equal(again.sigma, first.sigma)
  assert again.pool is None  # not asked for
  with_pool = fid.cached_real_features('my data/v1', 32, 1000, compute, keep_pool=True,
                                       cache=tmp_path)
  assert len(calls) == 1 and with_pool.pool.shape == (20, 5)
  # Another count or resolution is another entry.
  fid.cached_real_features('my data/v1', 32, None, compute, cache=tmp_path)
  assert len(calls) == 2
  assert fid.real_stats_path('d', 64, None, tmp_path).name == 'd-64px-full.npz'
  assert fid.real_stats_path('d', 64, 5, tmp_path, 'bf16').name == 'd-64px-5-bf16.npz'
  # A corrupt entry (truncated write, disk error) is rebuilt with a warning.
  path.write_bytes(path.read_bytes()[:100])
  with pytest.warns(UserWarning, match='rebuilding corrupt'):
    rebuilt = fid.cached_real_features('my data/v1', 32, 1000, compute, cache=tmp_path)
  assert len(calls) == 3
  np.testing.assert_array_equal(rebuilt.mu, _features(3).mu)
  assert not list(path.parent.glob('*.tmp'))


def test_real_stats_cache_recomputes_when_features_are_missing(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    return _features(0, keep_pool=len(calls) > 1)

  fid.cached_real_features('d', 8, 20, compute, cache=tmp_path)
  out = fid.cached_real_features('d', 8, 20, compute, keep_pool=True, cache=tmp_path)
  assert len(calls) == 2 and out.pool is not None


# ---------------------------------------------------------------------------------------------
# The CLI (subprocesses: exit codes and the one-line errors).


def _run_cli(*args, env=None):
  full_env = dict(os.environ, JAX_PLATFORMS='cpu', **(env or {}))
  full_env.pop(inception_weights.ENV_WEIGHTS, None)
  full_env.update(env or {})
  return subprocess.run([sys.executable, '-m', 'jaxgen.fid', *map(str, args)], cwd=ROOT,
                        env=full_env, capture_output=True, text=True, timeout=600)


def _assert_one_line_error(result, *needles):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('jaxgen.fid: error: '), result.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


def _save_png(path, seed=0, size=16):
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8)).save(path)


def test_cli_errors(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  texts = tmp_path / 'texts'
  texts.mkdir()
  (texts / 'notes.txt').write_text('not an image')
  a, b = tmp_path / 'a.npz', tmp_path / 'b.npz'
  fid.save_stats(a, np.zeros(4), np.eye(4))
  fid.save_stats(b, np.zeros(5), np.eye(5))
  _assert_one_line_error(_run_cli(empty, a), 'no images in', 'it is empty')
  _assert_one_line_error(_run_cli(texts, a), 'no images in', 'notes.txt')
  _assert_one_line_error(_run_cli(a, b), 'different dimensions')
  _assert_one_line_error(_run_cli(tmp_path / 'nowhere', a), 'no such file')
  _assert_one_line_error(_run_cli('--save-stats', texts, a), 'already exists')
  # Images present but no weights and no download allowed: names the file and the command.
  images = tmp_path / 'images'
  images.mkdir()
  _save_png(images / 'x.png')
  _save_png(images / 'y.png', 1)
  result = _run_cli('--no-download', images, a, env={'JAXGEN_CACHE': str(tmp_path / 'cache')})
  _assert_one_line_error(result, inception_weights.PTH_NAME, 'inception_weights convert')


def test_cli_unreadable_image(tmp_path):
  weights = tmp_path / 'w.npz'
  inception_weights.save_converted(
      inception_weights.state_dict_to_flat(inception_weights.random_state_dict(0)), weights)
  images = tmp_path / 'images'
  images.mkdir()
  (images / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  _save_png(images / 'ok.png')
  fid.save_stats(tmp_path / 's.npz', np.zeros(2048), np.eye(2048))
  _assert_one_line_error(_run_cli('--weights', weights, images, tmp_path / 's.npz'),
                         'cannot read image', 'broken.png')


def test_cli_stats_files(tmp_path):
  rng = np.random.default_rng(8)
  a, b = _gaussian_stats(rng, 100, 6), _gaussian_stats(rng, 100, 6, shift=1.0)
  fid.save_stats(tmp_path / 'a.npz', *a)
  fid.save_stats(tmp_path / 'b.npz', *b)
  result = _run_cli(tmp_path / 'a.npz', tmp_path / 'b.npz')
  assert result.returncode == 0, result.stderr
  assert float(result.stdout.split('FID:')[1]) == pytest.approx(fid.frechet_distance(*a, *b),
                                                                rel=1e-12)


@pytest.mark.slow
def test_cli_end_to_end_on_images(tmp_path):
  """--save-stats on a folder gives the statistics the library computes on the same files."""
  weights = tmp_path / 'w.npz'
  inception_weights.save_converted(
      inception_weights.state_dict_to_flat(inception_weights.random_state_dict(0)), weights)
  images = tmp_path / 'images'
  (images / 'sub').mkdir(parents=True)
  for i in range(5):
    _save_png(images / f'{i}.png', i, size=32)
  _save_png(images / 'sub' / 'ignored.png', 9, size=32)  # not recursive by default
  out = tmp_path / 'stats.npz'
  result = _run_cli('--weights', weights, '--batch-size', 4, '--save-stats', images, out)
  assert result.returncode == 0, result.stderr
  mu, sigma = fid.load_stats(out)
  assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
  # The same five images through the library give the same statistics.
  net = fid.InceptionFeatures(inception_weights.load_converted(weights)[0])
  files = sorted(images.glob('*.png'))
  batch = np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files])
  ref = fid.extract(net, [batch[:4], batch[4:]])
  # Same float32 network on the same device; batch composition may change summation order.
  np.testing.assert_allclose(mu, ref.mu, rtol=1e-5, atol=1e-6 * np.abs(ref.mu).max())
  np.testing.assert_allclose(sigma, ref.sigma, rtol=1e-4, atol=1e-6 * np.abs(ref.sigma).max())


def test_metrics_import_no_data_or_config_libraries():
  # The GPU machines used for measurements lack tensorflow, grain and ml_collections.
  code = ('import sys, jaxgen.fid, jaxgen.metrics.fid, jaxgen.metrics.registry, '
          'jaxgen.metrics.image_quality, jaxgen.metrics.inception_bench; '
          'bad = [m for m in ("tensorflow", "grain", "ml_collections", "tensorboardX", "torch") '
          'if m in sys.modules]; print(bad); sys.exit(bool(bad))')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stdout + result.stderr
