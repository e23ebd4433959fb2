"""Sliced Wasserstein distance on Laplacian pyramids (the weight-free quality metric)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data import procedural
from jaxgen.metrics import swd


def test_laplacian_pyramid_collapses_back_to_the_image():
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3)) * 255
  pyramid = swd.laplacian_pyramid(images, swd.num_levels(32))
  assert [p.shape[1] for p in pyramid] == [32, 16]
  rebuilt = pyramid[-1]
  for band in pyramid[-2::-1]:
    rebuilt = band + swd.pyr_up(rebuilt)
  np.testing.assert_allclose(rebuilt, images, atol=1e-3)  # float32 rounding on [0, 255].


def test_pyr_down_of_a_constant_is_the_constant():
  # The binomial filter sums to 1, and mirror padding keeps borders exact.
  out = swd.pyr_down(jnp.full((1, 16, 16, 1), 7.0))
  np.testing.assert_allclose(out, 7.0, rtol=1e-6)
  assert out.shape == (1, 8, 8, 1)


def test_sliced_wasserstein_of_a_shift_matches_its_expectation():
  # b = a + v: every projection differs by v·d, so SWD = E_d |v·d| over unit directions d.
  a = jax.random.normal(jax.random.PRNGKey(1), (4096, 8))
  v = jnp.array([3.0, 0, 0, 0, 0, 0, 0, 0])
  got = float(swd.sliced_wasserstein(a, a + v, jax.random.PRNGKey(2)))
  dirs = np.random.default_rng(0).normal(size=(200000, 8))
  expected = np.mean(np.abs(dirs[:, 0] * 3.0) / np.linalg.norm(dirs, axis=1))
  # 512 directions: the standard error of the mean is ~ 0.85/sqrt(512)·(std/mean ≈ 0.75) ≈ 3 %.
  assert abs(got - expected) / expected < 0.1
  assert float(swd.sliced_wasserstein(a, a, jax.random.PRNGKey(2))) == 0.0


def test_swd_ranks_a_good_generator_above_a_poor_one():
  reals = np.stack([procedural.render(i, 32)[0] for i in range(256)])
  other_reals = np.stack([procedural.render(i, 32)[0] for i in range(1000, 1256)])
  blurred = np.asarray(swd.pyr_up(swd.pyr_down(jnp.asarray(other_reals, jnp.float32))))
  flat = np.broadcast_to(other_reals.mean(axis=(1, 2), keepdims=True), other_reals.shape)
  metric = swd.SlicedWassersteinDistance(reals, batch_size=128)
  same = metric(other_reals)['swd/avg']
  blur = metric(np.clip(blurred, 0, 255))['swd/avg']
  mean_colour = metric(np.asarray(flat))['swd/avg']
  assert same < blur < mean_colour, (same, blur, mean_colour)
  assert mean_colour > 3 * same
