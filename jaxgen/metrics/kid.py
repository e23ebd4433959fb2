"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy between the pool3 Inception features of two
image sets under the polynomial kernel k(x, y) = (x·y / d + 1)^3, d = 2048. Each of
`num_subsets` (100) random subsets of m = min(n_real, n_fake, 1000) images per side gives the
unbiased estimate

    MMD² = [Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)] / (m (m - 1)) - 2 Σ_{i,j} k(x_i, y_j) / m²

and KID is their mean, as in the StyleGAN2-ADA metrics. Unlike FID it is unbiased, so small
sample sets give comparable numbers; it can be slightly negative.
"""

import numpy as np

from jaxgen.errors import UserError


def polynomial_kernel(x, y):
  """k(x, y) = (x·y / d + 1)^3 for rows of x [n, d] and y [m, d] -> [n, m] float64."""
  return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
  """Unbiased MMD² between equal-size samples x, y [m, d] under `polynomial_kernel`."""
  m = x.shape[0]
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
  return within - 2 * kxy.sum() / (m * m)


def kernel_inception_distance(real, fake, num_subsets=100, max_subset_size=1000, seed=0):
  """KID between two feature sets.

  Args:
    real: [n_real, d] features; fake: [n_fake, d] features.
    num_subsets: number of random subsets averaged.
    max_subset_size: images per side in a subset (capped by the smaller set).
    seed: seed of the subset sampling (numbers are reproducible).

  Returns:
    float, the mean unbiased MMD² over subsets.
  """
  real = np.asarray(real, np.float64)
  fake = np.asarray(fake, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise UserError(f'KID needs two feature sets [n, d] of equal d, got {real.shape} and '
                    f'{fake.shape}')
  m = min(real.shape[0], fake.shape[0], max_subset_size)
  if m < 2:
    raise UserError(f'KID needs at least 2 images per set, got {real.shape[0]} and '
                    f'{fake.shape[0]}')
  rng = np.random.default_rng(seed)
  total = 0.0
  for _ in range(num_subsets):
    x = fake[rng.choice(fake.shape[0], m, replace=False)]
    y = real[rng.choice(real.shape[0], m, replace=False)]
    total += mmd2_unbiased(x, y)
  return float(total / num_subsets)
