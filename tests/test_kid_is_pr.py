"""KID, Inception Score and precision/recall against direct implementations of their
definitions, plus metric-name parsing and `compute_metrics`."""

import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.metrics import fid, inception_score, kid, precision_recall, registry

# ---------------------------------------------------------------------------------------------
# KID.


def _mmd2_by_definition(x, y):
  """Unbiased MMD² with k(a, b) = (a·b / d + 1)^3, written as explicit sums over pairs."""
  m, d = x.shape
  k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_mmd2_matches_definition():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1, size=(12, 5))
  assert kid.mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_definition(x, y), rel=1e-10)


def test_kid_with_whole_sets_as_subsets_equals_mmd2():
  # With subsets as large as the sets, every subset is a permutation of the full sets, and
  # the unbiased MMD² does not depend on the order: KID must equal the definition exactly.
  rng = np.random.default_rng(1)
  real, fake = rng.normal(size=(15, 4)), rng.normal(0.3, 1.2, size=(15, 4))
  got = kid.kernel_inception_distance(real, fake, num_subsets=7, max_subset_size=1000)
  assert got == pytest.approx(_mmd2_by_definition(fake, real), rel=1e-10)


def test_kid_subsets_average_definition():
  # Smaller subsets: the result is the mean over subsets; check one subset against the
  # definition on the same indices (the documented sampling: fake, then real, per subset).
  rng = np.random.default_rng(2)
  real, fake = rng.normal(size=(40, 6)), rng.normal(0.4, 1, size=(30, 6))
  got = kid.kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=10, seed=5)
  pick = np.random.default_rng(5)
  fi = pick.choice(30, 10, replace=False)
  ri = pick.choice(40, 10, replace=False)
  assert got == pytest.approx(_mmd2_by_definition(fake[fi], real[ri]), rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_otherwise():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
  c = rng.normal(0.5, 1, size=(400, 16))
  same = kid.kernel_inception_distance(a, b, num_subsets=20, max_subset_size=200)
  diff = kid.kernel_inception_distance(a, c, num_subsets=20, max_subset_size=200)
  assert abs(same) < 0.1 * diff and diff > 0


def test_kid_input_errors():
  with pytest.raises(UserError):
    kid.kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(UserError):
    kid.kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------------------
# Inception Score.


def _is_by_definition(logits, splits):
  n = len(logits)
  scores = []
  for s in range(splits):
    part = logits[s * n // splits:(s + 1) * n // splits]
    probs = [np.exp(row - row.max()) / np.exp(row - row.max()).sum() for row in part]
    marginal = np.mean(probs, axis=0)
    kls = [sum(p[c] * (np.log(p[c]) - np.log(marginal[c])) for c in range(len(p)))
           for p in probs]
    scores.append(np.exp(np.mean(kls)))
  return np.mean(scores), np.std(scores)


def test_inception_score_matches_definition():
  logits = np.random.default_rng(4).normal(0, 3, (53, 7))  # uneven splits
  mean, std = inception_score.inception_score(logits, num_splits=10)
  ref_mean, ref_std = _is_by_definition(logits, 10)
  assert mean == pytest.approx(ref_mean, rel=1e-10)
  assert std == pytest.approx(ref_std, rel=1e-8)


def test_inception_score_extremes():
  # Identical predictions: p(y|x) = p(y), IS = 1. Confident, evenly spread: IS = #classes.
  same = np.tile(np.random.default_rng(5).normal(size=(1, 10)), (40, 1))
  assert inception_score.inception_score(same, 4)[0] == pytest.approx(1.0, abs=1e-12)
  confident = 60.0 * np.eye(10)[np.arange(40) % 10]
  assert inception_score.inception_score(confident, 4)[0] == pytest.approx(10.0, rel=1e-6)
  with pytest.raises(UserError):
    inception_score.inception_score(np.zeros((5, 3)), 10)


# ---------------------------------------------------------------------------------------------
# Precision and recall.


def _pr_by_definition(real, fake, k):
  def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

  def radii(x):
    d = dist(x, x)
    return np.array([np.sort(np.delete(d[i], i))[k - 1] for i in range(len(x))])

  def covered(probes, manifold):
    r, d = radii(manifold), dist(probes, manifold)
    return np.mean([any(d[i, j] <= r[j] for j in range(len(manifold)))
                    for i in range(len(probes))])

  return covered(fake, real), covered(real, fake)


def test_precision_recall_matches_definition():
  rng = np.random.default_rng(6)
  real = rng.normal(size=(70, 8))
  fake = np.concatenate([rng.normal(size=(30, 8)), rng.normal(3, 0.3, size=(25, 8))])
  # Row batches of 16 exercise the padding of the last block.
  p, r = precision_recall.precision_recall(real, fake, k=3, row_batch_size=16)
  ref_p, ref_r = _pr_by_definition(real.astype(np.float32).astype(np.float64),
                                   fake.astype(np.float32).astype(np.float64), 3)
  assert (p, r) == (pytest.approx(ref_p, abs=1e-12), pytest.approx(ref_r, abs=1e-12))
  assert 0.2 < p < 0.8 and r > 0.5  # the off-manifold cluster lowers precision only


def test_precision_recall_input_errors():
  with pytest.raises(UserError, match='more than 3'):
    precision_recall.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# ---------------------------------------------------------------------------------------------
# Names and compute_metrics.


def test_parse_metric_name():
  p = registry.parse_metric_name
  assert p('fid10k') == registry.MetricSpec('fid10k', 'fid', 10_000, 10_000)
  assert p('kid50k') == registry.MetricSpec('kid50k', 'kid', 50_000, 50_000)
  assert p('is50k') == registry.MetricSpec('is50k', 'is', 50_000, 0)
  assert p('pr50k3') == registry.MetricSpec('pr50k3', 'pr', 50_000, 50_000, 3)
  assert p('fid50k_full') == registry.MetricSpec('fid50k_full', 'fid', 50_000, None)
  for bad in ['fid', 'fid10', 'pr50k', 'fid10k3', 'is10k_full', 'swd', 'FID10k']:
    with pytest.raises(UserError):
      p(bad)


class _FeatureNet:
  """Fake Inception: pool = mean colour per image plus a pixel, logits from the colour."""

  def __call__(self, images, pad_to=None):
    x = np.asarray(images, np.float64)
    pool = np.concatenate([x.mean(axis=(1, 2)), x[:, 0, 0, :]], axis=1)
    return pool, pool[:, :3] * 2


def test_compute_metrics_equals_direct_calls(tmp_path):
  rng = np.random.default_rng(7)
  real_images = rng.normal(0, 1, (1500, 2, 2, 3))
  fake_images = rng.normal(0.2, 1.1, (1000, 2, 2, 3))

  def batches(images):
    return lambda n: (images[i:i + 256] for i in range(0, len(images) if n is None else n, 256))

  names = ['fid1k', 'kid1k', 'is1k', 'pr1k3', 'fid1k_full']
  got = registry.compute_metrics(names, _FeatureNet(), batches(fake_images),
                                 batches(real_images), dataset='toy', resolution=2,
                                 cache=tmp_path, kid_subsets=5)
  net = _FeatureNet()
  fake_pool, fake_logits = net(fake_images)
  real_pool = net(real_images)[0]
  stats = lambda x: (x.mean(0), np.cov(x, rowvar=False))
  assert got['fid1k'] == pytest.approx(
      fid.frechet_distance(*stats(real_pool[:1000]), *stats(fake_pool)), rel=1e-8)
  assert got['fid1k_full'] == pytest.approx(
      fid.frechet_distance(*stats(real_pool), *stats(fake_pool)), rel=1e-8)
  assert got['kid1k'] == pytest.approx(
      kid.kernel_inception_distance(real_pool[:1000], fake_pool, 5), rel=1e-6)
  assert (got['is1k'], got['is1k_std']) == pytest.approx(
      inception_score.inception_score(fake_logits), rel=1e-6)
  assert (got['pr1k3_precision'], got['pr1k3_recall']) == pytest.approx(
      precision_recall.precision_recall(real_pool[:1000], fake_pool, 3), abs=1e-12)
  assert sorted(got) == sorted(k for s in names
                               for k in registry.result_keys(registry.parse_metric_name(s)))
  # Real statistics were cached per count: 1000 (with features) and the full set.
  assert (tmp_path / 'fid_stats' / 'toy-2px-1000.npz').is_file()
  assert (tmp_path / 'fid_stats' / 'toy-2px-full.npz').is_file()
