"""StyleGAN2-ADA objective and schedule: losses, R1 and path-length penalties against independent
computations (closed forms, forward-mode Jacobians, finite differences), style mixing, the EMA
decay and the lazy-regularisation Adam correction.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.augment import ada
from jaxgen.models import stylegan2 as sg
from jaxgen.objectives import stylegan2 as obj
from stylegan2_testing import random_variables

TINY_G = dict(resolution=16, z_dim=8, w_dim=8, channel_base=128, channel_max=16,
              num_mapping_layers=2, num_bf16_res=0, noise_mode='const')
TINY_D = dict(resolution=16, channel_base=128, channel_max=16, mbstd_group_size=2, num_bf16_res=0)


def key(seed):
  return jax.random.key(seed, impl='unsafe_rbg')   # fast to compile on CPU


# ------------------------------------------------------------------------------------------------
# Losses.


def test_logistic_losses():
  fake = jnp.array([-2.0, 0.0, 3.0])
  real = jnp.array([1.0, -0.5])
  sigmoid = lambda t: 1 / (1 + np.exp(-np.asarray(t, np.float64)))
  assert float(obj.generator_loss(fake)) == pytest.approx(np.mean(-np.log(sigmoid(fake))), 1e-6)
  want = np.mean(-np.log(1 - sigmoid(fake))) + np.mean(-np.log(sigmoid(real)))
  assert float(obj.discriminator_loss(real, fake)) == pytest.approx(want, 1e-6)
  assert float(obj.generator_loss(jnp.zeros(4))) == pytest.approx(math.log(2), 1e-6)


# ------------------------------------------------------------------------------------------------
# R1.


def test_r1_penalty_closed_form_and_its_parameter_gradient():
  # D(x) = Σ v · tanh(a x): ∇ₓD = a v (1 − tanh²(a x)), so R1 = Σ (a v sech²(a x))².
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.standard_normal((3, 4, 4, 2)), jnp.float32)
  v = jnp.asarray(rs.standard_normal((4, 4, 2)), jnp.float32)
  d_fn = lambda a: (lambda img: jnp.sum(v * jnp.tanh(a * img), axis=(1, 2, 3)))
  a = 0.7
  penalty, logits = obj.r1_penalty(d_fn(a), x)
  xn, vn = np.asarray(x, np.float64), np.asarray(v, np.float64)
  grad = a * vn * (1 - np.tanh(a * xn) ** 2)
  np.testing.assert_allclose(np.asarray(penalty), np.sum(grad ** 2, axis=(1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(logits), np.sum(vn * np.tanh(a * xn), axis=(1, 2, 3)),
                             rtol=1e-5)
  # The second-order gradient (what trains D) against a central difference in float64.
  loss = lambda a: jnp.mean(obj.r1_penalty(d_fn(a), x)[0])
  penalty_np = lambda a: np.mean(np.sum((a * vn * (1 - np.tanh(a * xn) ** 2)) ** 2, (1, 2, 3)))
  eps = 1e-5
  numeric = (penalty_np(a + eps) - penalty_np(a - eps)) / (2 * eps)
  assert float(jax.grad(loss)(a)) == pytest.approx(numeric, rel=1e-4)


def test_r1_penalty_on_the_discriminator_matches_forward_mode():
  small = {**TINY_D, 'resolution': 8}
  d = sg.Discriminator(**small)
  d_vars = random_variables(d, seed=1)
  real = jnp.asarray(np.random.RandomState(2).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)

  @jax.jit
  def both(variables, images):
    d_fn = lambda img: d.apply(variables, img)
    penalty, _ = obj.r1_penalty(d_fn, images)
    # Independent: the full Jacobian by forward mode (one JVP per pixel), then its squared norm.
    jac = jax.jacfwd(d_fn)(images)                               # [N, N, H, W, C]
    # Minibatch stddev couples the samples, and R1 is the gradient of Σₙ D(xₙ).
    return penalty, jnp.sum(jnp.square(jnp.sum(jac, axis=0)), axis=(1, 2, 3))

  penalty, want = both(d_vars, real)
  np.testing.assert_allclose(np.asarray(penalty), np.asarray(want), rtol=1e-4)
  assert bool(jnp.all(penalty > 0))

  # Through the augmentation pipeline and bf16 blocks, R1's parameter gradient is finite.
  d16 = sg.Discriminator(**{**small, 'num_bf16_res': 1})

  @jax.jit
  def r1_loss_grad(variables, images, rng):
    def loss(params):
      d_fn = lambda img: d16.apply({'params': params}, ada.augment(img, rng, 0.5))
      return jnp.mean(obj.r1_penalty(d_fn, images)[0])
    return jax.grad(loss)(variables['params'])

  grads = jax.tree_util.tree_leaves(r1_loss_grad(d_vars, real, key(3)))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in grads) > 0


# ------------------------------------------------------------------------------------------------
# Path length.


def test_path_length_penalty_matches_forward_mode_jacobian():
  g = sg.Generator(**TINY_G)
  g_vars = random_variables(g, seed=4)
  z = jax.random.normal(key(5), (2, 8))
  ws = jax.jit(functools.partial(g.apply, method='map'))(g_vars, z)   # [2, 6, 8]
  synthesis_fn = lambda w: g.apply(g_vars, w, method='synthesize')
  rng = key(6)

  @jax.jit
  def both(ws):
    penalty, new_mean, lengths = obj.path_length_penalty(synthesis_fn, ws, 0.3, rng)
    images = synthesis_fn(ws)
    noise = jax.random.normal(rng, images.shape) / math.sqrt(16 * 16)
    jac = jax.jacfwd(synthesis_fn)(ws)                        # [N, H, W, C, N, L, D]
    grads = jnp.einsum('nhwc,nhwcmld->mld', noise, jac)       # Jᵀ y, forward-mode built
    return penalty, new_mean, lengths, grads

  penalty, new_mean, lengths, grads = both(ws)
  want_lengths = np.sqrt(np.mean(np.sum(np.asarray(grads, np.float64) ** 2, axis=2), axis=1))
  np.testing.assert_allclose(np.asarray(lengths), want_lengths, rtol=1e-4)
  want_mean = 0.3 + 0.01 * (want_lengths.mean() - 0.3)
  assert float(new_mean) == pytest.approx(want_mean, rel=1e-5)
  np.testing.assert_allclose(np.asarray(penalty), (want_lengths - want_mean) ** 2, rtol=1e-3,
                             atol=1e-7)


def test_path_length_gradient_flows_through_the_updated_mean():
  # synthesis(ws) = s · tanh(ws) summed into an image: lengths ∝ |s|. The official penalty
  # (lengths − a')², a' = a + d (mean(lengths) − a), differentiates through a' as well.
  rs = np.random.RandomState(7)
  ws = jnp.asarray(rs.standard_normal((4, 3, 5)), jnp.float32)
  proj = jnp.asarray(rs.standard_normal((3, 5, 2, 2, 1)), jnp.float32)
  synth = lambda s: (lambda w: s * jnp.einsum('nld,ldhwc->nhwc', jnp.tanh(w), proj))
  rng, pl_mean, decay = key(8), 0.2, 0.5          # a large decay makes the coupling visible

  def loss(s):
    return jnp.mean(obj.path_length_penalty(synth(s), ws, pl_mean, rng, decay)[0])

  lengths1 = obj.path_length_penalty(synth(1.0), ws, pl_mean, rng, decay)[2]
  s = 1.3
  ell = np.asarray(lengths1, np.float64)                 # lengths(s) = s · ell for s > 0
  a_new = pl_mean + decay * (s * ell.mean() - pl_mean)
  want = np.mean(2 * (s * ell - a_new) * (ell - decay * ell.mean()))
  detached = np.mean(2 * (s * ell - a_new) * ell)        # what a stop-gradient mean would give
  got = float(jax.grad(loss)(s))
  assert got == pytest.approx(want, rel=1e-4)
  assert abs(got - detached) > 1e-3 * abs(detached)


# ------------------------------------------------------------------------------------------------
# Style mixing.


def test_mix_styles_crossover():
  ws = jnp.zeros((2, 6, 3))
  ws_mix = jnp.ones((2, 6, 3))
  for cutoff in range(1, 7):
    mixed = np.asarray(obj.mix_styles(ws, ws_mix, cutoff))
    assert np.all(mixed[:, :cutoff] == 0) and np.all(mixed[:, cutoff:] == 1)


def test_mixing_cutoff_distribution():
  keys = jax.random.split(key(9), 4000)
  cutoffs = np.asarray(jax.vmap(lambda k: obj.mixing_cutoff(k, 6, 0.9))(keys))
  # With probability 0.9 a cutoff uniform in [1, 6); otherwise 6 (no mixing). 4000 draws: the
  # no-mixing share has stddev √(0.09/4000) ≈ 0.005, so ±0.025 is a 5σ band.
  assert set(np.unique(cutoffs)) == {1, 2, 3, 4, 5, 6}
  assert abs(np.mean(cutoffs == 6) - 0.1) < 0.025
  counts = np.bincount(cutoffs, minlength=7)[1:6] / len(cutoffs)
  np.testing.assert_allclose(counts, 0.9 / 5, atol=0.025)
  always = np.asarray(jax.vmap(lambda k: obj.mixing_cutoff(k, 6, 1.0))(keys[:500]))
  never = np.asarray(jax.vmap(lambda k: obj.mixing_cutoff(k, 6, 0.0))(keys[:500]))
  assert always.max() <= 5 and np.all(never == 6)
  ws, ws_mix = jnp.zeros((1, 6, 2)), jnp.ones((1, 6, 2))
  np.testing.assert_array_equal(np.asarray(obj.style_mix(key(1), ws, ws_mix, prob=0.0)), 0)


# ------------------------------------------------------------------------------------------------
# Schedule.


def test_ema_beta():
  assert float(obj.ema_beta(32, 10)) == pytest.approx(0.5 ** (32 / 10_000), rel=1e-6)
  # Half-life: after ema_kimg · 1000 images the old weights count for one half.
  assert float(obj.ema_beta(32, 10)) ** (10_000 / 32) == pytest.approx(0.5, rel=1e-4)
  # Ramp-up: ema_nimg = min(ema_kimg · 1000, cur_nimg · ema_rampup).
  assert float(obj.ema_beta(64, 20, 0.05, cur_nimg=1000)) == pytest.approx(0.5 ** (64 / 50),
                                                                          rel=1e-6)
  assert float(obj.ema_beta(64, 20, 0.05, cur_nimg=10_000_000)) == pytest.approx(
      0.5 ** (64 / 20_000), rel=1e-6)
  assert float(obj.ema_beta(64, 20, 0.05, cur_nimg=0)) == 0.0       # first step copies G
  beta = jax.jit(obj.ema_beta, static_argnums=(0, 1, 2))(64, 20, 0.05, jnp.int32(1000))
  assert float(beta) == pytest.approx(0.5 ** (64 / 50), rel=1e-6)
  ema = obj.ema_update({'w': jnp.array([1.0])}, {'w': jnp.array([3.0])}, 0.25)
  assert float(ema['w'][0]) == pytest.approx(3.0 + 0.25 * (1.0 - 3.0))


def test_lazy_regularization_adam_correction():
  lr, betas = obj.lazy_regularization_adam_hparams(0.0025, (0.0, 0.99), 16)
  assert lr == pytest.approx(0.0025 * 16 / 17)
  assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
  lr, betas = obj.lazy_regularization_adam_hparams(0.002, (0.0, 0.99), 4)
  assert lr == pytest.approx(0.0016) and betas[1] == pytest.approx(0.99 ** 0.8)
  assert obj.lazy_regularization_adam_hparams(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
