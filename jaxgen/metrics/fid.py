"""Fréchet Inception Distance, and the Inception feature extraction every metric shares.

FID (Heusel et al. 2017) is the Fréchet distance between two Gaussians fitted to the 2048-d
pool3 Inception features of two image sets:

    FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

Everything here follows pytorch-fid so that numbers are comparable with published ones:
features of the FID Inception (`inception.py`; with `resize='tf'` its input pipeline is
TensorFlow's instead, as in the FIDs of ADM, StyleGAN2-ADA and EDM), mean and covariance
(`np.cov`, ddof 1)
accumulated in float64, the matrix square root by `scipy.linalg.sqrtm` with pytorch-fid's
eps-offset retry and imaginary-part check, and `.npz` statistics files with keys `mu` and
`sigma` that pytorch-fid reads and writes.

Typical use (see also `registry.compute_metrics`):

    net = InceptionFeatures(mesh=mesh)            # weights found as in inception_weights
    real = extract(net, real_batches, num_samples=10_000)
    fake = extract(net, fake_batches, num_samples=10_000)
    fid = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
"""

import dataclasses
import hashlib
import os
import pathlib
import re
import tempfile
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from scipy import linalg

from jaxgen.errors import UserError
from jaxgen.metrics import inception, inception_weights

DATA_AXIS = 'data'  # the batch axis name of jaxgen.parallel's mesh


# ---------------------------------------------------------------------------------------------
# Feature extraction.


class InceptionFeatures:
  """The FID Inception, loaded once, jitted and sharded over a mesh's data axis.

  `net(images)` returns (pool3 [B, 2048], logits [B, 1008]) as float32 jax Arrays, sharded
  over the batch. It compiles once per input shape (use `pad_to` to keep one shape).

  Inputs are [B, H, W, 3] (or grayscale [B, H, W, 1] / [B, H, W]), any H and W: uint8 in
  [0, 255], or floats in `value_range` (default [-1, 1], a generator's output). Floats are
  first quantised to uint8 (`quantize=True`), exactly as if the images had been saved as PNG
  and read back, which is how reference FIDs are computed. They are then resized to 299x299
  as pytorch-fid does (`resize='torch'`) or as the TensorFlow graph does (`resize='tf'`).
  """

  def __init__(self, params=None, *, weights=None, mesh=None, data_axis=DATA_AXIS,
               precision='fp32', value_range=(-1.0, 1.0), quantize=True, allow_download=True,
               resize='torch'):
    """Args:

      params: Inception parameters (nested dict); default: `inception_weights.load_params`.
      weights: explicit weight file (`.npz` or pytorch-fid `.pth`) when `params` is None.
      mesh: a `jax.sharding.Mesh`; default a 1-D mesh over all devices.
      data_axis: the mesh axis (or tuple of axes) the batch is split over.
      precision: 'fp32' (true float32, the parity setting), 'tf32' (the backend's default
        matmul precision: TF32 on recent NVIDIA GPUs, like PyTorch's default for convs) or
        'bf16' (bfloat16 activations, float32 accumulation).
      value_range: range of float inputs.
      quantize: round float inputs to uint8 first.
      allow_download: whether `load_params` may download the weights.
      resize: the input pipeline: 'torch' (pytorch-fid: PyTorch's half-pixel bilinear resize,
        2x - 1) or 'tf' (TF 1.x legacy bilinear resize of 0..255, (x - 128) / 128: the
        pipeline behind the FIDs of TTUR, ADM, StyleGAN2-ADA and EDM). See `inception.py`.
    """
    inception.get_precision(precision)  # validates the name
    inception.check_resize(resize)
    if params is None:
      params = inception_weights.load_params(weights, allow_download=allow_download)
    self.mesh = mesh if mesh is not None else Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
    self.data_axis = data_axis if mesh is not None else DATA_AXIS
    axes = self.data_axis if isinstance(self.data_axis, tuple) else (self.data_axis,)
    self.num_shards = int(np.prod([self.mesh.shape[a] for a in axes]))
    self.precision = precision
    self.resize = resize
    self.weights_id = weights_fingerprint(params)
    _check_same_on_every_process(self.weights_id)
    self.value_range = tuple(value_range)
    self.quantize = quantize
    self._batch_sharding = NamedSharding(self.mesh, P(self.data_axis))
    self.params = jax.device_put(params, NamedSharding(self.mesh, P()))
    self._forward = jax.jit(self._apply)

  def _apply(self, params, images):
    if self.quantize and images.dtype != jnp.uint8:
      images = inception.to_uint8(images, self.value_range)
    return inception.apply(params, images, self.precision, self.value_range, self.resize)

  def __call__(self, images, pad_to=None):
    """Features of one batch.

    Args:
      images: [B, H, W, C] numpy or jax array (see the class docstring).
      pad_to: pad the batch with zeros to this many images (then dropped), so that a short
        last batch reuses the compiled function. Always padded to a multiple of the shards.

    Returns:
      pool3 [B, 2048] float32, logits without bias [B, 1008] float32 (jax Arrays).
    """
    inception.check_image_shape(images.shape)
    n = images.shape[0]
    size = max(n, pad_to or 0)
    size += -size % self.num_shards
    if size != n:
      pad = [(0, size - n)] + [(0, 0)] * (images.ndim - 1)
      images = (np.pad(images, pad) if isinstance(images, np.ndarray)
                else jnp.pad(images, pad))
    images = jax.device_put(images, self._batch_sharding)
    pool, logits = self._forward(self.params, images)
    if size != n:
      pool, logits = pool[:n], logits[:n]
    return pool, logits


def weights_fingerprint(params):
  """First 10 hex digits of the SHA-256 of every parameter (by name, shape, dtype, bytes): which
  Inception produced cached features. pytorch-fid's weights always give the same one."""
  digest = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0],
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f'{jax.tree_util.keystr(path)}:{leaf.shape}:{leaf.dtype};'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()[:10]


def _check_same_on_every_process(weights_id):
  """Raises UserError unless every process loaded the same Inception weights (each process
  finds its own file; different files would silently mix two networks' features)."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  mine = np.frombuffer(bytes.fromhex(weights_id[:8]), np.uint32).astype(np.int64)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1)
  if np.any(every != every[0]):
    raise UserError(f'the {jax.process_count()} processes loaded different FID Inception '
                    f'weights (this one: fingerprint {weights_id}): give every process the '
                    'same weight file (eval.inception_weights or $JAXGEN_INCEPTION_WEIGHTS)')


def _to_host(x):
  """A (possibly multi-process) jax Array -> numpy, gathered on every process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


class FeatureStats:
  """Streaming mean and covariance in float64.

  Sums are taken around a shift (the first batch's mean) so that the covariance does not
  suffer from cancellation: cov = (sum d d^T - n c c^T) / (n - 1) with d = x - shift and
  c = mean(d). The result equals `np.mean(x, 0)` and `np.cov(x, rowvar=False)`.
  """

  def __init__(self):
    self.num = 0
    self._shift = self._sum = self._outer = None

  def update(self, x):
    """x: [B, D] features (any float dtype)."""
    x = np.asarray(x, np.float64)
    if self._shift is None:
      self._shift = x.mean(axis=0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1], x.shape[1]))
    d = x - self._shift
    self._sum += d.sum(axis=0)
    self._outer += d.T @ d
    self.num += x.shape[0]

  @property
  def mean(self):
    """[D] float64."""
    return self._shift + self._sum / self.num

  @property
  def cov(self):
    """[D, D] float64, unbiased (ddof 1) like np.cov."""
    if self.num < 2:
      raise UserError(f'a covariance needs at least 2 images, got {self.num}')
    c = self._sum / self.num
    return (self._outer - self.num * np.outer(c, c)) / (self.num - 1)


@dataclasses.dataclass
class Features:
  """Inception features of one image set.

  Attributes:
    num: number of images.
    mu: [2048] float64 mean of pool3.
    sigma: [2048, 2048] float64 covariance of pool3.
    pool: [num, 2048] float32 pool3 features, when kept (KID, precision/recall).
    logits: [num, 1008] float32 logits without bias, when kept (Inception Score).
  """
  num: int
  mu: np.ndarray
  sigma: np.ndarray
  pool: np.ndarray | None = None
  logits: np.ndarray | None = None


def extract(net, batches, num_samples=None, keep_pool=False, keep_logits=False):
  """Runs `net` over image batches, accumulating FID statistics.

  The device works on batch i+1 while the host accumulates batch i. Every batch is padded to
  the size of the first so that only one shape is compiled.

  Args:
    net: an `InceptionFeatures` (or a callable `(images, pad_to) -> (pool, logits)`).
    batches: iterable of image batches [B, H, W, C].
    num_samples: stop after this many images (None: use all).
    keep_pool, keep_logits: also return the per-image features.

  Returns:
    `Features`; `num` may be below `num_samples` when `batches` runs out.

  Raises:
    UserError: fewer than 2 images.
  """
  stats = FeatureStats()
  pools, logits = [], []
  batch_size = None
  pending = None

  def consume(outputs, count):
    pool = _to_host(outputs[0])[:count]
    stats.update(pool)
    if keep_pool:
      pools.append(pool.astype(np.float32))
    if keep_logits:
      logits.append(_to_host(outputs[1])[:count].astype(np.float32))

  taken = 0
  for images in batches:
    if num_samples is not None and taken >= num_samples:
      break
    count = images.shape[0]
    if num_samples is not None:
      count = min(count, num_samples - taken)
      images = images[:count]
    if count == 0:
      continue
    batch_size = batch_size or images.shape[0]
    outputs = net(images, pad_to=batch_size)
    if pending is not None:
      consume(*pending)
    pending = (outputs, count)
    taken += count
  if pending is not None:
    consume(*pending)
  if stats.num < 2:
    raise UserError(f'FID statistics need at least 2 images, got {stats.num}')
  return Features(stats.num, stats.mean, stats.cov,
                  np.concatenate(pools) if keep_pool else None,
                  np.concatenate(logits) if keep_logits else None)


# ---------------------------------------------------------------------------------------------
# The Fréchet distance.


def check_stats(mu1, sigma1, mu2, sigma2):
  """Validates two (mu, sigma) pairs; returns them as float64. UserError on bad shapes."""
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  for name, mu, sigma in (('first', mu1, sigma1), ('second', mu2, sigma2)):
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
      raise UserError(f'the {name} statistics are inconsistent: mu {mu.shape}, sigma '
                      f'{sigma.shape} (expected mu [D] and sigma [D, D])')
  if mu1.shape != mu2.shape:
    raise UserError(f'the two statistics have different dimensions ({mu1.shape[0]} vs '
                    f'{mu2.shape[0]}): were they computed with the same feature extractor?')
  return (mu1.astype(np.float64), sigma1.astype(np.float64), mu2.astype(np.float64),
          sigma2.astype(np.float64))


def _sqrtm(a):
  # SciPy < 1.16 returns (sqrtm, error) only with disp=False; newer ones return the matrix.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', linalg.LinAlgWarning)
    return linalg.sqrtm(a)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """FID between N(mu1, sigma1) and N(mu2, sigma2), computed as pytorch-fid does.

  `sqrtm(sigma1 @ sigma2)`; if that is not finite (a singular product), retried with `eps`
  added to both diagonals; an imaginary part (numerical error) is dropped if the diagonal's
  is within 1e-3 of 0, else ValueError.

  Args:
    mu1, mu2: [D] means. sigma1, sigma2: [D, D] covariances.
    eps: the diagonal offset of the retry.

  Returns:
    float.
  """
  mu1, sigma1, mu2, sigma2 = check_stats(mu1, sigma1, mu2, sigma2)
  diff = mu1 - mu2
  covmean = _sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    warnings.warn(f'FID: singular product of covariances; adding {eps} to their diagonals')
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f'FID: imaginary component {np.max(np.abs(covmean.imag))} in the '
                       'matrix square root (too few images for the feature dimension?)')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_eig(mu1, sigma1, mu2, sigma2):
  """FID by eigenvalues: Tr((S1 S2)^(1/2)) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))).

  S1 S2 is similar to the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), so this needs only
  symmetric eigendecompositions (faster and free of sqrtm's failure modes). Agrees with
  `frechet_distance` for covariance matrices (tested).
  """
  mu1, sigma1, mu2, sigma2 = check_stats(mu1, sigma1, mu2, sigma2)
  w, v = np.linalg.eigh(sigma1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = root1 @ sigma2 @ root1
  ev = np.linalg.eigvalsh((inner + inner.T) / 2)
  tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
  diff = mu1 - mu2
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


# ---------------------------------------------------------------------------------------------
# Statistics files (pytorch-fid's format) and the cache of real-data statistics.


def _atomic_save(path, compressed=True, **arrays):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      (np.savez_compressed if compressed else np.savez)(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_stats(path, mu, sigma):
  """Writes `mu` and `sigma` to an `.npz` that pytorch-fid reads (atomically)."""
  mu, sigma, _, _ = check_stats(mu, sigma, mu, sigma)
  _atomic_save(path, mu=mu, sigma=sigma)


def load_stats(path):
  """Reads `mu` [D], `sigma` [D, D] from a pytorch-fid style `.npz`; UserError if invalid."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f'no such statistics file: {path}')
  try:
    with np.load(path, allow_pickle=False) as data:
      mu, sigma = data['mu'], data['sigma']
  except KeyError:
    raise UserError(f'{path} has no `mu` and `sigma` arrays: not FID statistics') from None
  except Exception as e:  # pylint: disable=broad-except  (not a zip, CRC error, truncation)
    raise UserError(f'cannot read FID statistics {path}: {type(e).__name__}') from None
  mu, sigma, _, _ = check_stats(mu, sigma, mu, sigma)
  if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
    raise UserError(f'{path} holds non-finite FID statistics')
  return mu, sigma


def real_stats_path(dataset, resolution, num_samples, cache=None, precision='fp32',
                    weights_id=None, resize='torch'):
  """Cache file of a dataset's Inception features.

  `<cache>/fid_stats/<dataset>-<res>px-<n>[-<precision>][-tfresize][-w<weights_id>].npz`: the
  precision is appended when not fp32, `-tfresize` for TensorFlow's input pipeline, and the
  weights' fingerprint when given (statistics are only comparable for one network at one
  precision on one input pipeline). pytorch-fid's pipeline adds nothing, so caches written
  before `resize` existed stay valid.

  Args:
    dataset: a name identifying the data (and its split/preprocessing), e.g. 'cifar10-train'.
    resolution: image side in pixels.
    num_samples: images used, or None for the whole dataset ('full').
    cache: cache root; default `inception_weights.cache_dir()`.
    precision: the Inception precision the statistics were computed at.
    weights_id: `InceptionFeatures.weights_id`, the fingerprint of the Inception weights.
    resize: `InceptionFeatures.resize`, 'torch' or 'tf'.
  """
  inception.check_resize(resize)
  safe = re.sub(r'[^A-Za-z0-9._-]+', '_', str(dataset))
  count = 'full' if num_samples is None else str(int(num_samples))
  suffix = '' if precision == 'fp32' else f'-{precision}'
  if resize == 'tf':
    suffix += '-tfresize'
  if weights_id:
    suffix += f'-w{weights_id}'
  root = pathlib.Path(cache) if cache else inception_weights.cache_dir()
  return root / 'fid_stats' / f'{safe}-{int(resolution)}px-{count}{suffix}.npz'


def _read_cached(path, keep_pool):
  with np.load(path, allow_pickle=False) as data:
    mu, sigma, num = data['mu'], data['sigma'], int(data['num'])
    pool = data['pool'] if 'pool' in data.files else None
  check_stats(mu, sigma, mu, sigma)
  if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
    raise ValueError('non-finite statistics')
  if keep_pool and pool is None:
    return None  # cached without features: recompute to get them
  if pool is not None and (pool.shape != (num, mu.shape[0]) or not np.isfinite(pool).all()):
    raise ValueError('bad features')
  return Features(num, mu, sigma, pool if keep_pool else None)


def cached_real_features(dataset, resolution, num_samples, compute, keep_pool=False,
                         cache=None, precision='fp32', weights_id=None, resize='torch'):
  """Real-data Inception statistics (and features), computed once per dataset/res/count.

  A missing, unreadable or inconsistent entry is (re)computed with `compute()` and written
  atomically, so an interrupted run never leaves a half-written entry behind.

  Args:
    dataset, resolution, num_samples: the cache key (see `real_stats_path`).
    compute: () -> `Features`; called on a cache miss. Must set `pool` if `keep_pool`.
    keep_pool: the caller needs per-image pool3 features (KID, precision/recall).
    cache: cache root.
    precision: the Inception precision (part of the key).
    weights_id: fingerprint of the Inception weights (part of the key).
    resize: the Inception's input pipeline, 'torch' or 'tf' (part of the key).

  Returns:
    `Features` (with `pool` when `keep_pool`).
  """
  path = real_stats_path(dataset, resolution, num_samples, cache, precision, weights_id,
                         resize)
  if path.is_file():
    try:
      cached = _read_cached(path, keep_pool)
      if cached is not None:
        return cached
    except Exception as e:  # pylint: disable=broad-except
      warnings.warn(f'rebuilding corrupt FID statistics cache entry {path} '
                    f'({type(e).__name__})')
  features = compute()
  arrays = dict(mu=features.mu, sigma=features.sigma, num=np.int64(features.num))
  if features.pool is not None:
    arrays['pool'] = features.pool.astype(np.float32)
  _atomic_save(path, compressed=False, **arrays)
  return features
