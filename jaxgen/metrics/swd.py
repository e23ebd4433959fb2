"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, ProGAN §5).

Needs no downloaded weights. For each level of a Laplacian pyramid (from the full resolution
down to 16×16), 128 random 7×7 neighbourhoods are taken from every image; each set of
descriptors is normalised per colour channel (over all patches and pixels) and the real and
generated sets are compared with the sliced Wasserstein distance over 4 × 128 random unit
directions. Reported ×10³ per level (`swd/<res>`) and averaged over levels (`swd/avg`): lower
is better. The maths follows the ProGAN reference (5-tap binomial filter as in cv2.pyrDown /
pyrUp, mirror padding), written here with jit-compiled JAX.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_LEVEL_RESOLUTION = 16

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def num_levels(resolution):
  return max(1, int(np.log2(resolution)) - int(np.log2(MIN_LEVEL_RESOLUTION)) + 1)


def _blur(images, gain=1.0):
  """Separable 5×5 binomial filter with mirror ('reflect') padding. images [N, H, W, C]."""
  x = jnp.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
  k = jnp.asarray(_BINOMIAL * np.sqrt(gain))
  h, w = images.shape[1:3]
  x = sum(k[i] * x[:, i:i + h, :, :] for i in range(5))
  return sum(k[i] * x[:, :, i:i + w, :] for i in range(5))


def pyr_down(images):
  return _blur(images)[:, ::2, ::2, :]


def pyr_up(images):
  n, h, w, c = images.shape
  up = jnp.zeros((n, 2 * h, 2 * w, c), images.dtype).at[:, ::2, ::2, :].set(images)
  return _blur(up, gain=4.0)


def laplacian_pyramid(images, levels):
  """images [N, H, W, C] → `levels` arrays, band-pass first, the coarsest Gaussian last."""
  pyramid = [images]
  for _ in range(1, levels):
    smaller = pyr_down(pyramid[-1])
    pyramid[-1] = pyramid[-1] - pyr_up(smaller)
    pyramid.append(smaller)
  return pyramid


@functools.partial(jax.jit, static_argnames='levels')
def raw_descriptors(images, key, levels):
  """Random 7×7 patches of every pyramid level.

  Args:
    images: [N, H, W, C] float, any fixed scale (e.g. [0, 255]).
  Returns:
    A tuple of `levels` arrays [N · 128, 7, 7, C].
  """
  half = NHOOD_SIZE // 2
  offsets = jnp.arange(-half, half + 1)
  out = []
  for level, key in zip(laplacian_pyramid(images.astype(jnp.float32), levels),
                        jax.random.split(key, levels)):
    n, h, w, _ = level.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (n, NHOODS_PER_IMAGE), half, h - half)
    cx = jax.random.randint(kx, (n, NHOODS_PER_IMAGE), half, w - half)
    rows = (cy[:, :, None] + offsets)[:, :, :, None]           # [N, P, 7, 1]
    cols = (cx[:, :, None] + offsets)[:, :, None, :]           # [N, P, 1, 7]
    patches = level[jnp.arange(n)[:, None, None, None], rows, cols]  # [N, P, 7, 7, C]
    out.append(patches.reshape((-1,) + patches.shape[2:]))
  return tuple(out)


def finalize(descriptors):
  """Per-channel standardisation over all patches and pixels; → [M, 7·7·C] float32."""
  d = jnp.asarray(descriptors, jnp.float32)
  d = (d - d.mean(axis=(0, 1, 2))) / (d.std(axis=(0, 1, 2)) + 1e-8)
  return d.reshape(d.shape[0], -1)


def sliced_wasserstein(a, b, key):
  """Mean over 4×128 random unit directions of E|sort(a·d) − sort(b·d)|. a, b: [M, D]."""
  # XLA's CPU sort is ~100× slower than NumPy's; accelerators sort fast in place.
  on_cpu = jax.default_backend() == 'cpu'
  results = []
  for key in jax.random.split(key, DIR_REPEATS):
    dirs = jax.random.normal(key, (a.shape[1], DIRS_PER_REPEAT))
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = a @ dirs, b @ dirs
    if on_cpu:
      pa, pb = np.sort(np.asarray(pa), axis=0), np.sort(np.asarray(pb), axis=0)
    else:
      pa, pb = jnp.sort(pa, axis=0), jnp.sort(pb, axis=0)
    results.append(float(jnp.mean(jnp.abs(pa - pb))))
  return float(np.mean(results))


class SlicedWassersteinDistance:
  """SWD between a fixed set of real images and generated sets of the same size.

  `reals`: [N, R, R, C] uint8 (or floats in [0, 255]). Call with a generated set of N images
  in the same range; returns {'swd/<res>': ×10³ per level, 'swd/avg': their mean}.
  """

  def __init__(self, reals, seed=0, batch_size=256):
    self.num_images = reals.shape[0]
    self.resolution = reals.shape[1]
    self.levels = num_levels(self.resolution)
    self.batch_size = batch_size
    self.seed = seed
    self.real = self._descriptors(reals, jax.random.PRNGKey(seed))

  def _descriptors(self, images, key):
    per_level = [[] for _ in range(self.levels)]
    for i, start in enumerate(range(0, images.shape[0], self.batch_size)):
      batch = jnp.asarray(images[start:start + self.batch_size], jnp.float32)
      for level, d in enumerate(raw_descriptors(batch, jax.random.fold_in(key, i),
                                                self.levels)):
        per_level[level].append(d)
    return [finalize(jnp.concatenate(d)) for d in per_level]

  def __call__(self, fakes):
    if fakes.shape != (self.num_images, self.resolution, self.resolution) + fakes.shape[3:]:
      raise ValueError(f'expected {self.num_images} images of {self.resolution}², got '
                       f'{fakes.shape}')
    key = jax.random.PRNGKey(self.seed + 1)
    fake = self._descriptors(fakes, key)
    results = {}
    for level, (a, b) in enumerate(zip(self.real, fake)):
      dist = sliced_wasserstein(a, b, jax.random.fold_in(key, 1000 + level))
      results[f'swd/{self.resolution >> level}'] = dist * 1e3
    results['swd/avg'] = float(np.mean(list(results.values())))
    return results
