"""The GAN remedies: the adversarial losses and WGAN-GP's penalty against direct NumPy
computations, spectral normalisation's power iteration against an SVD, the n_critic schedule, a
few jitted DCGAN steps with each remedy, and the spectral-norm state through a checkpoint.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import checkpoint
from jaxgen.errors import UserError
from jaxgen.objectives import gan_losses
from jaxgen.objectives import translation as translation_objective
from jaxgen.recipes import stylegan2 as stylegan2_recipe
from jaxgen.recipes.dcgan import CRITIC_AND_GENERATOR, CRITIC_ONLY, DCGAN

from conftest import STYLEGAN_TINY, tiny_config, with_overrides

# ------------------------------------------------------------------------------------------------
# Losses.

softplus = lambda t: np.log1p(np.exp(t))
NUMPY_LOSSES = {  # (D's loss, G's loss) on float64 logits, straight from the papers' formulas.
    'nonsaturating': (lambda r, f: np.mean(softplus(-r)) + np.mean(softplus(f)),
                      lambda f: np.mean(softplus(-f))),
    'wgan-gp': (lambda r, f: np.mean(f) - np.mean(r), lambda f: -np.mean(f)),
    'hinge': (lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
              lambda f: -np.mean(f)),
    'lsgan': (lambda r, f: np.mean((r - 1) ** 2) + np.mean(f ** 2),
              lambda f: np.mean((f - 1) ** 2)),
}


@pytest.mark.parametrize('name', gan_losses.LOSSES)
@pytest.mark.parametrize('shape', [(7,), (3, 2, 2, 1)])   # DCGAN's [B]; PatchGAN's [B, h, w, 1]
def test_losses_against_numpy(name, shape):
  rs = np.random.RandomState(0)
  real, fake = rs.uniform(-3, 3, shape), rs.uniform(-3, 3, (5,) + shape[1:])  # Across the kinks.
  d_np, g_np = NUMPY_LOSSES[name]
  d = gan_losses.discriminator_loss(name, jnp.asarray(real, jnp.float32),
                                    jnp.asarray(fake, jnp.float32))
  g = gan_losses.generator_loss(name, jnp.asarray(fake, jnp.float32))
  assert d.shape == g.shape == () and d.dtype == jnp.float32
  # float32 logits of magnitude ≤ 3: a few ulps of the sums.
  np.testing.assert_allclose(float(d), d_np(real, fake), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(float(g), g_np(fake), rtol=1e-6, atol=1e-6)


def test_unknown_loss_is_an_error():
  with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
    gan_losses.discriminator_loss('wgan', jnp.zeros(2), jnp.zeros(2))


def test_translation_losses_are_the_shared_ones_with_d_halved():
  real, fake = jnp.array([1.5, -0.3, 0.2]), jnp.array([-2.0, 0.4, 1.1])
  for kind, name in (('vanilla', 'nonsaturating'), ('lsgan', 'lsgan'), ('hinge', 'hinge')):
    d_np, g_np = NUMPY_LOSSES[name]
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    np.testing.assert_allclose(float(translation_objective.d_loss(kind, real, fake)),
                               0.5 * d_np(r, f), rtol=1e-6)
    np.testing.assert_allclose(float(translation_objective.g_loss(kind, None, fake)), g_np(f),
                               rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# WGAN-GP's gradient penalty.


def test_gradient_penalty_of_a_linear_critic():
  # D(x) = <w, x> + b has ∇ₓD = w everywhere, so the penalty is (‖w‖ − target)² whatever x̂.
  rs = np.random.RandomState(1)
  w = rs.standard_normal((4, 4, 3)) * 0.1
  critic = lambda x: jnp.sum(x * jnp.asarray(w, jnp.float32), axis=(1, 2, 3)) + 0.7
  real = jnp.asarray(rs.uniform(-1, 1, (6, 4, 4, 3)), jnp.float32)
  fake = jnp.asarray(rs.uniform(-1, 1, (6, 4, 4, 3)), jnp.float32)
  norm = np.sqrt(np.sum(w ** 2))
  penalties = jax.jit(lambda: [gan_losses.gradient_penalty(critic, real, fake,
                                                           jax.random.PRNGKey(0), target)
                               for target in (1.0, 0.5)])()
  np.testing.assert_allclose(np.asarray(penalties), (norm - np.array([1.0, 0.5])) ** 2, rtol=1e-5)


def _mlp_critic(a, w, v):
  """D_a(x) = Σ v · tanh(a · W x) per example (x flattened): a critic that treats examples on
  their own, with ∇ₓD = a Wᵀ (v ⊙ sech²(a W x))."""
  return lambda x: jnp.tanh(a * x.reshape(x.shape[0], -1) @ w.T) @ v


def _mlp_input_grads_np(a, w, v, xhat):
  x = xhat.reshape(xhat.shape[0], -1)
  return (a * v * (1 - np.tanh(a * x @ w.T) ** 2)) @ w            # [B, D], one row per example


def _mlp_penalty_np(a, w, v, xhat, target=1.0):
  grads = _mlp_input_grads_np(a, w, v, xhat)
  return np.mean((np.sqrt(np.sum(grads ** 2, axis=1)) - target) ** 2)


def test_gradient_penalty_is_per_example_on_interpolates_and_its_parameter_gradient():
  rs = np.random.RandomState(2)
  w, v = rs.standard_normal((5, 2 * 2 * 3)), rs.standard_normal(5)
  real, fake = rs.uniform(-1, 1, (4, 2, 2, 3)), rs.uniform(-1, 1, (4, 2, 2, 3))
  rng = jax.random.PRNGKey(3)
  # The documented draw: one ε ~ U[0, 1] per example, x̂ = ε x + (1 − ε) x̃.
  eps = np.asarray(jax.random.uniform(rng, (4, 1, 1, 1)), np.float64)
  xhat = eps * real + (1 - eps) * fake
  f32 = lambda t: jnp.asarray(t, jnp.float32)
  penalty = lambda a: gan_losses.gradient_penalty(_mlp_critic(a, f32(w), f32(v)), f32(real),
                                                  f32(fake), rng)
  a = 0.3
  # What trains D is the penalty's gradient w.r.t. the critic's parameters (double backprop).
  value, grad = jax.jit(jax.value_and_grad(penalty))(a)
  np.testing.assert_allclose(float(value), _mlp_penalty_np(a, w, v, xhat), rtol=1e-5)
  # One norm over the whole batch's gradient (not per example) would give this; it differs.
  batch_norm = np.sqrt(np.sum(_mlp_input_grads_np(a, w, v, xhat) ** 2))
  assert abs(float(value) - (batch_norm - 1) ** 2) > 1e-2
  # The gradient against a float64 central difference of the closed form.
  h = 1e-5
  numeric = (_mlp_penalty_np(a + h, w, v, xhat) - _mlp_penalty_np(a - h, w, v, xhat)) / (2 * h)
  np.testing.assert_allclose(float(grad), numeric, rtol=1e-4)


def test_gradient_penalty_is_finite_where_the_gradient_vanishes():
  critic = lambda x: jnp.zeros(x.shape[0]) * jnp.sum(x)             # ∇ = 0: ‖0‖ has no gradient
  x = jnp.ones((2, 2, 2, 1))
  value, grad = jax.jit(jax.value_and_grad(
      lambda s: gan_losses.gradient_penalty(lambda t: s * critic(t), x, -x,
                                            jax.random.PRNGKey(0))))(1.0)
  assert float(value) == 1.0 and np.isfinite(float(grad))


# ------------------------------------------------------------------------------------------------
# Spectral normalisation.


def test_spectral_norm_power_iteration_converges_to_the_largest_singular_value():
  # W = U diag(s) Vᵀ with s₂/s₁ = 0.5: the estimate's error shrinks like (s₂/s₁)^(2k).
  rs = np.random.RandomState(4)
  u_mat, _ = np.linalg.qr(rs.standard_normal((6, 4)))
  v_mat, _ = np.linalg.qr(rs.standard_normal((4, 4)))
  kernel = (u_mat * np.array([3.0, 1.5, 1.0, 0.5])) @ v_mat.T     # [in 6, out 4], as flax's Dense
  sigma_max = np.linalg.svd(kernel, compute_uv=False)[0]
  layer = nn.SpectralNorm(nn.Dense(4, use_bias=False))
  x = jnp.asarray(rs.standard_normal((3, 6)), jnp.float32)
  variables = layer.init(jax.random.PRNGKey(0), x, update_stats=False)
  variables = {'params': {'layer_instance': {'kernel': jnp.asarray(kernel, jnp.float32)}},
               'batch_stats': variables['batch_stats']}
  step = jax.jit(lambda v: layer.apply(v, x, update_stats=True, mutable=['batch_stats']))
  errors = []
  for _ in range(12):                                              # One iteration per call.
    y, updates = step(variables)
    variables = {**variables, **updates}
    (sigma,) = [float(value) for path, value in jax.tree_util.tree_leaves_with_path(updates)
                if 'sigma' in jax.tree_util.keystr(path)]
    errors.append(abs(sigma - sigma_max) / sigma_max)
  assert errors[-1] < 1e-5 and errors[-1] < errors[0]               # float32 power iteration
  # The layer divides its weights by the estimate.
  np.testing.assert_allclose(np.asarray(y), np.asarray(x) @ kernel / sigma, rtol=1e-5,
                             atol=1e-6)


# ------------------------------------------------------------------------------------------------
# DCGAN with the remedies: a few jitted steps (16×16, 4 base channels, batch 4).

# Every loss but the default, every D normalisation and n_critic > 1, in three runs (each one
# or two compiled programs; the losses themselves are checked above).
REMEDY_CONFIGS = {
    'wgan_gp': {'objective.name': 'wgan-gp', 'model.d_norm': 'layer', 'objective.n_critic': 2,
                'objective.drift': 1e-3},
    'lsgan': {'objective.name': 'lsgan'},                               # D with batch norm
    # With labels: the projection embedding is spectrally normalised too.
    'sn_hinge': {'objective.name': 'hinge', 'model.d_norm': 'none', 'model.spectral_norm': True,
                 'data.use_labels': True},
}
SMALL = {'model.g_base_channels': 4, 'model.d_base_channels': 4, 'model.z_dim': 8,
         'train.batch_size': 4}


def remedy_config(name):
  return tiny_config(**SMALL, **REMEDY_CONFIGS[name])


@functools.lru_cache(maxsize=None)
def remedy_run(name):
  """(recipe, [state₀, state₁, ...], [metrics₀, ...]) after one group of n_critic steps, each
  on its own batch; compiled and run once for every test that reads it."""
  recipe = DCGAN(remedy_config(name), num_classes=3)
  states, metrics = [recipe.init_state(jax.random.PRNGKey(0))], []
  rs = np.random.RandomState(5)
  step_fns = {}
  for step in range(recipe.n_critic):
    variant = recipe.step_variant(step)
    if variant not in step_fns:
      step_fns[variant] = jax.jit(functools.partial(recipe.train_step, variant=variant))
    batch = {'image': jnp.asarray(rs.randint(0, 256, (4, 16, 16, 3)), jnp.uint8),
             'label': jnp.asarray(rs.randint(0, 3, 4), jnp.int32)}
    state, m = step_fns[variant](states[-1], batch)
    states.append(state)
    metrics.append(jax.device_get(m))
  return recipe, states, metrics


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_n_critic_schedule():
  recipe = DCGAN(remedy_config('wgan_gp'), 0)
  assert [recipe.step_variant(s) for s in range(6)] == [CRITIC_ONLY, CRITIC_AND_GENERATOR] * 3
  three = DCGAN(with_overrides(remedy_config('wgan_gp'), {'objective.n_critic': 3}), 0)
  assert [three.step_variant(s) for s in range(6)] == [CRITIC_ONLY, CRITIC_ONLY,
                                                       CRITIC_AND_GENERATOR] * 2
  default = DCGAN(tiny_config(), 0)
  assert {default.step_variant(s) for s in range(5)} == {CRITIC_AND_GENERATOR}


@pytest.mark.parametrize('name', list(REMEDY_CONFIGS))
def test_remedy_trains_with_finite_metrics(name):
  _, states, metrics = remedy_run(name)
  for m in metrics:
    assert {'loss/d', 'loss/g', 'grad_norm/d'} <= set(m)
    assert all(np.isfinite(v) for v in m.values()), m
  assert not leaves_equal(states[-1].d_params, states[0].d_params)
  assert not leaves_equal(states[-1].g_params, states[0].g_params)
  assert int(states[-1].step) == len(metrics)


def test_wgan_gp_critic_steps_leave_g_alone_and_its_loss_adds_the_penalty():
  recipe, states, metrics = remedy_run('wgan_gp')
  critic_step, full_step = metrics
  assert 'grad_norm/g' not in critic_step and 'grad_norm/g' in full_step
  assert leaves_equal(states[1].g_params, states[0].g_params)
  assert leaves_equal(states[1].g_opt_state, states[0].g_opt_state)
  assert leaves_equal(states[1].ema_params, states[0].ema_params)
  assert not leaves_equal(states[1].d_params, states[0].d_params)
  for m in metrics:  # D's loss: critic loss + λ·penalty + ε_drift·E D(x)².
    want = (m['loss/d_adversarial'] + recipe.gp_weight * m['loss/d_gradient_penalty']
            + 1e-3 * m['loss/d_drift'])
    np.testing.assert_allclose(m['loss/d'], want, rtol=1e-5)
    np.testing.assert_allclose(m['loss/d_adversarial'], m['logits/fake'] - m['logits/real'],
                               rtol=1e-5, atol=1e-7)


def _sn_vectors(batch_stats):
  """{layer: (u, σ)} of spectral norm's state."""
  out = {}
  for module, entries in batch_stats.items():
    for key, value in entries.items():
      layer, kind = key.rsplit('/', 1)
      out.setdefault(layer, {})[kind] = np.asarray(value, np.float64)
  return out


def test_spectral_norm_stores_one_power_iteration_per_step():
  _, states, _ = remedy_run('sn_hinge')
  before, after = _sn_vectors(states[0].d_batch_stats), _sn_vectors(states[1].d_batch_stats)
  assert set(before) == {'down0/kernel', 'down1/kernel', 'logit/kernel',
                         'label_projection/embedding'}
  params = states[0].d_params                       # The weights that step's real pass saw.
  weights = {'down0/kernel': params['down0']['kernel'], 'down1/kernel': params['down1']['kernel'],
             'logit/kernel': params['logit']['kernel'],
             'label_projection/embedding': params['label_projection']['embedding']}
  normalize = lambda t: t / np.linalg.norm(t)
  for layer, w in weights.items():
    w = np.asarray(w, np.float64).reshape(-1, w.shape[-1])      # [k·k·C_in, C_out]
    v = normalize(before[layer]['u'] @ w.T)
    u = normalize(v @ w)
    np.testing.assert_allclose(after[layer]['u'], u, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(after[layer]['sigma'], (v @ w @ u.T).item(), rtol=1e-4)


def test_spectral_norm_state_and_a_critic_without_batch_stats_round_trip_a_checkpoint(tmp_path):
  # sn_hinge's u and σ live in d_batch_stats; wgan_gp's critic (layer norm) has none at all ({}).
  runs = {name: remedy_run(name) for name in ('sn_hinge', 'wgan_gp')}
  assert runs['wgan_gp'][1][-1].d_batch_stats == {}
  saved = {name: states[-1] for name, (_, states, _) in runs.items()}
  abstract = {name: jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
              for name, (recipe, _, _) in runs.items()}
  manager = checkpoint.create_manager(str(tmp_path), keep=1)
  checkpoint.save(manager, 1, saved)
  manager.wait_until_finished()
  restored = checkpoint.restore_latest(manager, abstract)
  manager.close()
  assert jax.tree.structure(restored) == jax.tree.structure(saved)
  assert leaves_equal(restored, saved)
  sn_start = runs['sn_hinge'][1][0].d_batch_stats
  assert not leaves_equal(restored['sn_hinge'].d_batch_stats, sn_start)  # u moved: restored


# ------------------------------------------------------------------------------------------------
# Settings that cannot train: refused while validating (the CLI rows are in test_bad_input.py).


@pytest.mark.parametrize('overrides, message', [
    ({'objective.name': 'wgan'}, "objective.name='wgan' is not a GAN loss"),
    ({'objective.name': 'wgan-gp', 'model.d_norm': 'layer', 'objective.n_critic': 0},
     'objective.n_critic=0 must be an integer >= 1'),
    ({'objective.name': 'wgan-gp'}, "needs a critic without batch norm"),
    ({'model.d_norm': 'instance'}, "model.d_norm='instance' is not a normalisation"),
    ({'objective.gp_weight': -1.0}, 'objective.gp_weight=-1.0 is negative'),
])
def test_dcgan_refuses(overrides, message):
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace('.', r'\.')):
    DCGAN(tiny_config(**overrides), 0)


def stylegan_config(**overrides):
  import stylegan  # configs/stylegan.py
  config = with_overrides(stylegan.get_config(), {**STYLEGAN_TINY, **overrides})
  return config


@pytest.mark.parametrize('overrides, message', [
    ({'objective.loss': 'wgan-gp'}, "objective.loss='wgan-gp' is not supported by StyleGAN2"),
    ({'objective.loss': 'softplus'}, "objective.loss='softplus' is not a StyleGAN2 loss"),
])
def test_stylegan2_refuses_losses_it_cannot_train(overrides, message):
  with pytest.raises(UserError, match=message):
    stylegan2_recipe.validate(stylegan_config(**overrides), 0)


def test_stylegan2_refuses_spectral_norm():
  with pytest.raises(UserError, match='model.spectral_norm=True is not supported by StyleGAN2'):
    stylegan2_recipe.validate(stylegan_config(**{'model.spectral_norm': True}), 0)


def test_stylegan2_ada_reads_signs_about_the_losses_midpoint():
  logits = jnp.array([-0.2, 0.3, 0.7])
  signs = {loss: np.asarray(stylegan2_recipe.StyleGAN2(
      stylegan_config(**{'objective.loss': loss}), 0)._real_sign(logits))
           for loss in ('nonsaturating', 'hinge', 'lsgan')}
  np.testing.assert_array_equal(signs['nonsaturating'], [-1, 1, 1])
  np.testing.assert_array_equal(signs['hinge'], [-1, 1, 1])
  np.testing.assert_array_equal(signs['lsgan'], [-1, -1, 1])     # about ½, between 0 and 1
