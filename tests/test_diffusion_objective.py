"""EDM's training objectives: the σ samplers against their distributions, the weights against
their formulas, and the losses with denoisers whose loss is known in closed form (the ideal one
on constant data, one that reads σ back out of the loss, the ideal one on Gaussian data).

Tolerances on sample statistics are 4–5 standard errors of the estimate (computed in each test),
so a correct implementation fails them with probability < 1e-4; the keys are fixed anyway.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.objectives import diffusion

NUM_SAMPLES = 20_000


def key(seed):
  return jax.random.key(seed, impl='unsafe_rbg')


def test_edm_sigma_is_log_normal():
  sample = jax.jit(diffusion.edm_sigma, static_argnums=(1, 2, 3))
  for p_mean, p_std in ((-1.2, 1.2), (0.4, 0.3)):
    sigma = np.asarray(sample(key(0), NUM_SAMPLES, p_mean, p_std))
    assert sigma.shape == (NUM_SAMPLES, 1, 1, 1) and sigma.dtype == np.float32
    log_sigma = np.log(sigma.ravel().astype(np.float64))
    # Standard errors: of the mean P_std/√n; of the standard deviation ≈ P_std/√(2n).
    assert abs(log_sigma.mean() - p_mean) < 4 * p_std / math.sqrt(NUM_SAMPLES)
    assert abs(log_sigma.std() - p_std) < 4 * p_std / math.sqrt(2 * NUM_SAMPLES)


def test_edm_weight():
  sigma = np.array([0.002, 0.05, 0.5, 1.0, 7.0, 80.0])
  for sigma_data in (0.5, 1.0):
    expected = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    got = np.asarray(jax.jit(diffusion.edm_weight)(sigma.astype(np.float32), sigma_data))
    np.testing.assert_allclose(got, expected, rtol=1e-6)   # float32 rounding of 4 operations
    # λ = 1/c_out², c_out = σ·σ_data/√(σ² + σ_data²) the preconditioning's output scale.
    c_out = sigma * sigma_data / np.sqrt(sigma ** 2 + sigma_data ** 2)
    np.testing.assert_allclose(got * c_out ** 2, 1.0, rtol=1e-6)


def test_vp_sigma_and_its_time_range():
  t = np.array([1e-5, 1e-3, 0.1, 0.5, 1.0])
  expected = np.sqrt(np.expm1(0.5 * 19.9 * t ** 2 + 0.1 * t))
  official, other = jax.jit(lambda t: (diffusion.vp_sigma(t),
                                       diffusion.vp_sigma(t, beta_d=10, beta_min=1)))(t)
  # float32 expm1 and sqrt: a few ulp, also at t = ε_t where exp() − 1 would be 5 % off.
  np.testing.assert_allclose(official, expected, rtol=1e-5)
  np.testing.assert_allclose(official[-1], 152.17, rtol=1e-4)                # √(e^10.05 − 1)
  np.testing.assert_allclose(other[3], math.sqrt(math.expm1(1.75)), rtol=1e-5)

  t = np.asarray(jax.jit(diffusion.vp_time, static_argnums=(1, 2))(key(1), NUM_SAMPLES, 1e-5))
  assert t.shape == (NUM_SAMPLES, 1, 1, 1)
  assert t.min() >= 1e-5 and t.max() <= 1.0
  # Uniform on (ε_t, 1]: mean (1 + ε_t)/2 (standard error (1/√12)/√n), both ends reached.
  assert abs(t.mean() - (1 + 1e-5) / 2) < 4 / math.sqrt(12 * NUM_SAMPLES)
  assert t.min() < 1e-3 and t.max() > 0.999


def test_ve_sigma_is_log_uniform():
  sigma = np.asarray(jax.jit(diffusion.ve_sigma, static_argnums=(1, 2, 3))(
      key(2), NUM_SAMPLES, 0.02, 100.0))
  assert sigma.shape == (NUM_SAMPLES, 1, 1, 1)
  # [σ_min, σ_max), up to float32 rounding of the power at the ends.
  assert sigma.min() >= 0.02 * (1 - 1e-6) and sigma.max() <= 100.0 * (1 + 1e-6)
  assert sigma.min() < 0.021 and sigma.max() > 99
  log_sigma = np.log(sigma.ravel().astype(np.float64))
  width = math.log(100 / 0.02)                    # uniform on [ln σ_min, ln σ_max): std w/√12
  assert abs(log_sigma.mean() - math.log(0.02 * 100) / 2) < 4 * width / math.sqrt(
      12 * NUM_SAMPLES)
  # Standard error of a uniform sample's std: std·√((kurtosis − 1)/(4n)), kurtosis 1.8.
  assert abs(log_sigma.std() - width / math.sqrt(12)) < 4 * width / math.sqrt(12) * math.sqrt(
      0.8 / (4 * NUM_SAMPLES))


WEIGHTS = {'edm': diffusion.edm_weight, 'vp': diffusion.inverse_variance_weight,
           've': diffusion.inverse_variance_weight}


def test_losses_with_known_denoisers():
  """On constant images c: D = c (the ideal denoiser) gives 0; D = c − σ/√λ(σ) gives σ² per
  element, which reads back the σ the loss drew; D = c + ξ/√λ, with ξ = (noisy − c)/σ the
  standard noise, gives ξ², mean 1. For each of the three losses (one compiled program)."""
  c = 0.3
  images = jnp.full((2000, 2, 2, 1), c, jnp.float32)

  def denoisers(weight):
    def ideal(noisy, sigma, labels, augment_labels):
      assert sigma.shape == (2000, 1, 1, 1) and labels is None and augment_labels is None
      return jnp.full_like(noisy, c)

    def reads_sigma(noisy, sigma, labels, augment_labels):
      return jnp.full_like(noisy, c) - sigma / jnp.sqrt(weight(sigma))

    def unit_noise(noisy, sigma, labels, augment_labels):
      return c + (noisy - c) / sigma / jnp.sqrt(weight(sigma))
    return ideal, reads_sigma, unit_noise

  @jax.jit
  def run(k):
    return {name: [diffusion.LOSSES[name](d, images, None, k) for d in denoisers(WEIGHTS[name])]
            for name in WEIGHTS}

  for name, (zero, sigma_squared, xi_squared) in jax.tree.map(np.asarray, run(key(3))).items():
    assert zero.shape == images.shape and zero.dtype == np.float32
    np.testing.assert_array_equal(zero, 0.0, err_msg=name)

    sigma = np.sqrt(sigma_squared.astype(np.float64))
    assert (sigma == sigma[:, :1, :1, :1]).all()        # one σ per image
    log_sigma = np.log(sigma[:, 0, 0, 0])
    n = len(log_sigma)
    if name == 'edm':    # log-normal(−1.2, 1.2²): 4 standard errors of the mean and the std
      assert abs(log_sigma.mean() + 1.2) < 4 * 1.2 / math.sqrt(n)
      assert abs(log_sigma.std() - 1.2) < 4 * 1.2 / math.sqrt(2 * n)
    elif name == 've':   # log-uniform on [0.02, 100)
      assert sigma.min() >= 0.02 * (1 - 1e-5) and sigma.max() <= 100 * (1 + 1e-5)
      width = math.log(5000)
      assert abs(log_sigma.mean() - math.log(2) / 2) < 4 * width / math.sqrt(12 * n)
    else:                # σ_VP(t), t uniform on (1e-5, 1]: t recovered by inverting σ_VP
      t = (-0.1 + np.sqrt(0.01 + 2 * 19.9 * np.log1p(sigma[:, 0, 0, 0] ** 2))) / 19.9
      assert t.min() >= 1e-5 * (1 - 1e-3) and t.max() <= 1 + 1e-5
      assert abs(t.mean() - 0.5) < 4 / math.sqrt(12 * n)

    # ξ² of 8000 independent standard normals: mean 1, standard error √(2/8000) = 0.016.
    assert abs(xi_squared.mean() - 1) < 5 * math.sqrt(2 / xi_squared.size), name


def test_edm_loss_of_the_ideal_denoiser_on_gaussian_data_is_one():
  """For data y ~ N(0, σ_data²) per element, the ideal denoiser is x·σ_data²/(σ_data² + σ²), its
  error has variance σ²σ_data²/(σ² + σ_data²) = 1/λ(σ): the EDM loss is χ²₁, mean 1, at every σ."""
  sigma_data = 0.5
  images = sigma_data * np.random.RandomState(0).standard_normal((64, 8, 8, 3))

  def ideal(noisy, sigma, labels, augment_labels):
    return noisy * sigma_data ** 2 / (sigma_data ** 2 + sigma ** 2)

  def blind(noisy, sigma, labels, augment_labels):   # ignores the noise level (σ = 1 always)
    return noisy * sigma_data ** 2 / (sigma_data ** 2 + 1)

  loss, worse = jax.jit(lambda k: [diffusion.edm_loss(d, images.astype(np.float32), None, k)
                                   for d in (ideal, blind)])(key(5))
  # 12288 χ²₁ values (variance 2): standard error √(2/12288) = 0.013.
  assert abs(float(loss.mean()) - 1) < 5 * math.sqrt(2 / loss.size)
  assert float(worse.mean()) > 1.5


def test_augmentation_and_labels_reach_the_denoiser():
  """The target is the *augmented* image, and the denoiser sees the class and augment labels."""
  c = 0.3
  images = jnp.full((4, 2, 2, 3), c, jnp.float32)
  class_labels = jnp.eye(4, 10)

  def negate(images, key):
    del key
    return -images, jnp.ones((images.shape[0], 9), jnp.float32)

  def denoise(noisy, sigma, labels, augment_labels):
    assert labels.shape == (4, 10) and augment_labels.shape == (4, 9)
    # −c when given these labels (row sums 1, augment labels 1), something else otherwise.
    scale = jnp.sum(labels, axis=1) * jnp.mean(augment_labels, axis=1)
    return jnp.broadcast_to(-c * scale[:, None, None, None], noisy.shape)

  # Without augmentation the target is +c: a denoiser answering −c misses by 2c.
  no_aug = lambda noisy, sigma, labels, a: jnp.full_like(noisy, -c)
  with_aug, without = jax.jit(lambda k: (
      diffusion.edm_loss(denoise, images, class_labels, k, augment=negate),
      diffusion.edm_loss(no_aug, images, class_labels, k)))(key(6))
  np.testing.assert_array_equal(with_aug, 0.0)
  assert float(without.min()) > 0


def test_reduce_loss_sums_pixels_and_averages_images():
  per_element = np.arange(4 * 2 * 2 * 3, dtype=np.float32).reshape(4, 2, 2, 3)
  # The official `loss.sum() / batch_size`: 2·2·3 = 12 elements per image.
  reduced = float(jax.jit(diffusion.reduce_loss)(per_element))
  assert reduced == pytest.approx(per_element.sum() / 4) == pytest.approx(12 * per_element.mean())


def test_make_loss_binds_settings_and_refuses_unknown_ones():
  images = jnp.zeros((3, 2, 2, 1))
  reads_sigma = lambda noisy, sigma, labels, a: jnp.zeros_like(noisy) + sigma ** 2   # loss σ²
  bound = diffusion.make_loss('ve', sigma_min=1.0, sigma_max=2.0)
  got, expected, default = jax.jit(lambda k: (
      bound(reads_sigma, images, None, k),
      diffusion.ve_loss(reads_sigma, images, None, k, sigma_min=1.0, sigma_max=2.0),
      diffusion.ve_loss(reads_sigma, images, None, k)))(key(7))
  np.testing.assert_array_equal(got, expected)
  assert 1 <= got.min() and got.max() < 4 * (1 + 1e-6)        # σ² with σ in [1, 2)
  assert not np.array_equal(got, default)
  assert set(diffusion.LOSSES) == {'edm', 'vp', 've', 'edm2'}
  with pytest.raises(UserError, match='unknown'):
    diffusion.make_loss('ddpm')
  with pytest.raises(UserError, match='P_mean'):
    diffusion.make_loss('vp', P_mean=0.0)
