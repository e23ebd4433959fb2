"""Improved precision and recall (Kynkäänniemi et al. 2019), on Inception features.

Each set of features is a manifold estimate: the union of balls centred on its points, each
ball's radius the distance to that point's k-th nearest neighbour within the set (k = 3).
Precision is the fraction of generated samples inside the real manifold (how many samples
are realistic); recall is the fraction of real samples inside the generated manifold (how
much of the data is covered).

Note: the paper and the StyleGAN2-ADA `pr50k3` metric embed images with VGG16 (fc2, 4096-d);
jaxgen uses the FID Inception's 2048-d pool3 features instead, so as not to need a second
network. Numbers are therefore not directly comparable with published `pr50k3` values.

Distances are computed on the default JAX device in float32 at full matmul precision,
`row_batch_size` rows at a time against the whole manifold.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError

_HIGHEST = jax.lax.Precision.HIGHEST


def _distances(rows, cols):
  """Euclidean distances [r, c] between rows [r, d] and cols [c, d], float32."""
  sq = (jnp.sum(rows * rows, 1)[:, None] + jnp.sum(cols * cols, 1)[None, :]
        - 2 * jnp.dot(rows, cols.T, precision=_HIGHEST))
  return jnp.sqrt(jnp.maximum(sq, 0))


@functools.partial(jax.jit, static_argnames='k')
def _kth_neighbour_distance(rows, manifold, k):
  # The k+1-th smallest distance: the row itself (at ~0) is the first.
  return -jax.lax.top_k(-_distances(rows, manifold), k + 1)[0][:, k]


@jax.jit
def _inside(probes, manifold, radii):
  return jnp.any(_distances(probes, manifold) <= radii[None, :], axis=1)


def _row_batches(x, size):
  """Yields (padded batch [size, d], number of real rows)."""
  for start in range(0, x.shape[0], size):
    batch = x[start:start + size]
    n = batch.shape[0]
    yield np.pad(batch, ((0, size - n), (0, 0))), n


def manifold_radii(manifold, k=3, row_batch_size=1024):
  """Distance of each point [n, d] to its k-th nearest other point: [n] float32."""
  m = jnp.asarray(manifold, jnp.float32)
  out = [np.asarray(_kth_neighbour_distance(jnp.asarray(b), m, k))[:n]
         for b, n in _row_batches(np.asarray(manifold, np.float32), row_batch_size)]
  return np.concatenate(out)


def coverage(probes, manifold, radii, row_batch_size=1024):
  """Fraction of probes [p, d] inside the union of balls (manifold [n, d], radii [n])."""
  m, r = jnp.asarray(manifold, jnp.float32), jnp.asarray(radii, jnp.float32)
  hits = [np.asarray(_inside(jnp.asarray(b), m, r))[:n]
          for b, n in _row_batches(np.asarray(probes, np.float32), row_batch_size)]
  return float(np.concatenate(hits).mean())


def precision_recall(real, fake, k=3, row_batch_size=1024):
  """Improved precision and recall.

  Args:
    real: [n_real, d] features of real images; fake: [n_fake, d] of generated ones.
    k: neighbourhood size (3 in the paper).
    row_batch_size: rows per distance block (memory: row_batch_size x n floats).

  Returns:
    (precision, recall), floats in [0, 1].
  """
  real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise UserError(f'precision/recall needs two feature sets [n, d] of equal d, got '
                    f'{real.shape} and {fake.shape}')
  if min(real.shape[0], fake.shape[0]) <= k:
    raise UserError(f'precision/recall with k={k} needs more than {k} images per set, got '
                    f'{real.shape[0]} and {fake.shape[0]}')
  precision = coverage(fake, real, manifold_radii(real, k, row_batch_size), row_batch_size)
  recall = coverage(real, fake, manifold_radii(fake, k, row_batch_size), row_batch_size)
  return precision, recall
