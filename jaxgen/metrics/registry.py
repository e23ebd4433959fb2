"""Inception metrics by name: `fid10k`, `kid50k`, `is50k`, `pr50k3`, `fid50k_full`, ...

A name is `<kind><count>k[<k>][_full]`:

  * kind: `fid` (Fréchet Inception Distance), `kid` (Kernel Inception Distance), `is`
    (Inception Score), `pr` (precision/recall, followed by the neighbourhood size: `pr50k3`);
  * count: thousands of generated images (`10k` = 10,000);
  * real images: as many as generated (capped by the dataset), or the whole dataset with
    `_full` (as StyleGAN2-ADA's `fid50k_full`). IS uses no real images.

`compute_metrics` generates the largest count needed once, extracts Inception features once,
and evaluates every requested metric on prefixes of them. Real-data statistics come from the
cache (`fid.cached_real_features`) when a dataset name is given, keyed by the network's
precision, weights and input pipeline (`net.resize`: 'torch' or 'tf').
"""

import dataclasses
import re

from jaxgen.errors import UserError
from jaxgen.metrics import fid as fid_lib
from jaxgen.metrics import inception_score, kid, precision_recall

KINDS = ('fid', 'kid', 'is', 'pr')
_NAME = re.compile(r'^(fid|kid|is|pr)(\d+)k(\d*)(_full)?$')


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A parsed metric name.

  Attributes:
    name: the name as given, e.g. 'pr50k3'.
    kind: 'fid', 'kid', 'is' or 'pr'.
    num_fake: generated images.
    num_real: real images; None for the whole dataset (`_full`); 0 for IS.
    k: neighbourhood size (precision/recall only).
  """
  name: str
  kind: str
  num_fake: int
  num_real: int | None
  k: int | None = None


def parse_metric_name(name):
  """'fid10k' -> MetricSpec('fid10k', 'fid', 10000, 10000); 'pr50k3' -> k=3; see module doc."""
  match = _NAME.match(name)
  if not match:
    raise UserError(f'unknown metric {name!r}: expected e.g. fid10k, kid50k, is50k, pr50k3 or '
                    'fid50k_full')
  kind, thousands, k, full = match.groups()
  if (kind == 'pr') != bool(k):
    raise UserError(f'bad metric name {name!r}: precision/recall needs a neighbourhood size '
                    '(pr50k3) and other metrics take none')
  if kind == 'is' and full:
    raise UserError(f'bad metric name {name!r}: the Inception Score uses no real images')
  num_fake = int(thousands) * 1000
  if num_fake < 2:
    raise UserError(f'bad metric name {name!r}: needs at least 1k images')
  num_real = 0 if kind == 'is' else (None if full else num_fake)
  return MetricSpec(name, kind, num_fake, num_real, int(k) if k else None)


def result_keys(spec):
  """Keys `compute_metrics` returns for a spec (IS and PR give two numbers)."""
  if spec.kind == 'is':
    return [spec.name, spec.name + '_std']
  if spec.kind == 'pr':
    return [spec.name + '_precision', spec.name + '_recall']
  return [spec.name]


def _stats(features, num):
  """Mean and covariance of the first `num` pool3 features (float64, in chunks)."""
  if num == features.num:
    return features.mu, features.sigma
  stats = fid_lib.FeatureStats()
  for start in range(0, num, 4096):
    stats.update(features.pool[start:min(start + 4096, num)])
  return stats.mean, stats.cov


def compute_metrics(names, net, fake_batches, real_batches=None, dataset=None,
                    resolution=None, cache=None, kid_subsets=100, kid_subset_size=1000,
                    seed=0):
  """Evaluates Inception metrics on a generator and a dataset.

  Args:
    names: metric names, e.g. ['fid10k', 'kid10k', 'is10k', 'pr10k3'].
    net: an `fid.InceptionFeatures` (its `precision`, `weights_id` and `resize` key the
      real-data cache; a stand-in without them counts as fp32, unfingerprinted, 'torch').
    fake_batches: fn(num_images) -> iterable of generated image batches [B, H, W, C]
      (floats in the net's value_range, or uint8) yielding at least num_images in total.
    real_batches: fn(max_images or None) -> iterable of real image batches, in a fixed order
      (the first N images are the "N real images"); needed unless only IS is asked for.
    dataset, resolution: the real-data cache key (e.g. 'cifar10-train', 32); without a
      dataset name real features are recomputed every call.
    cache: cache root (default `$JAXGEN_CACHE` or ~/.cache/jaxgen).
    kid_subsets, kid_subset_size: KID's subsets (100 of <= 1000 images).
    seed: seed of KID's subset sampling.

  Returns:
    dict: 'fidNk', 'kidNk' -> float; 'isNk', 'isNk_std'; 'prNkK_precision',
    'prNkK_recall'.
  """
  specs = [parse_metric_name(n) for n in names]
  if not specs:
    return {}
  num_fake = max(s.num_fake for s in specs)
  keep_logits = any(s.kind == 'is' for s in specs)
  fake = fid_lib.extract(net, fake_batches(num_fake), num_fake, keep_pool=True,
                         keep_logits=keep_logits)
  if fake.num < num_fake:
    raise UserError(f'the generator gave {fake.num} images, {num_fake} were asked for')

  real_sets = {}  # num_real -> Features
  for spec in specs:
    if spec.kind == 'is' or spec.num_real in real_sets:
      continue
    if real_batches is None:
      raise UserError(f'{spec.name} needs real images, but no dataset was given')
    keep_pool = any(s.kind in ('kid', 'pr') and s.num_real == spec.num_real for s in specs)

    def compute(n=spec.num_real, keep=keep_pool):
      return fid_lib.extract(net, real_batches(n), n, keep_pool=keep)

    if dataset is None:
      real_sets[spec.num_real] = compute()
    else:
      real_sets[spec.num_real] = fid_lib.cached_real_features(
          dataset, resolution, spec.num_real, compute, keep_pool=keep_pool, cache=cache,
          precision=getattr(net, 'precision', 'fp32'),
          weights_id=getattr(net, 'weights_id', None),
          resize=getattr(net, 'resize', 'torch'))

  results = {}
  for spec in specs:
    pool = fake.pool[:spec.num_fake]
    real = real_sets.get(spec.num_real)
    if spec.kind == 'fid':
      mu, sigma = _stats(fake, spec.num_fake)
      results[spec.name] = fid_lib.frechet_distance(real.mu, real.sigma, mu, sigma)
    elif spec.kind == 'kid':
      results[spec.name] = kid.kernel_inception_distance(
          real.pool, pool, kid_subsets, kid_subset_size, seed)
    elif spec.kind == 'is':
      mean, std = inception_score.inception_score(fake.logits[:spec.num_fake])
      results[spec.name], results[spec.name + '_std'] = mean, std
    else:
      p, r = precision_recall.precision_recall(real.pool, pool, spec.k)
      results[spec.name + '_precision'], results[spec.name + '_recall'] = p, r
  return results
