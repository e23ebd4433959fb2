"""DCGAN networks, objective and one update step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.errors import UserError
from jaxgen.models import dcgan
from jaxgen.objectives import gan_losses
from jaxgen.recipes.dcgan import DCGAN, ema_beta

from conftest import tiny_config


def test_parameter_counts_match_the_pytorch_reference():
  # PyTorch's examples/dcgan (nz=100, ngf=ndf=64, nc=3, 64×64): G 3,576,704, D 2,765,568.
  recipe = DCGAN(tiny_config(**{'data.resolution': 64, 'model.g_base_channels': 64,
                                'model.d_base_channels': 64}), num_classes=0)
  state = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  assert recipe.param_count(state) == {'generator': 3_576_704, 'discriminator': 2_765_568}


@pytest.mark.parametrize('resolution', [16, 32, 64])
def test_shapes_and_range(resolution):
  g = dcgan.Generator(resolution, 3, 8, 64)
  d = dcgan.Discriminator(resolution, 8, 64)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 100))
  g_vars = g.init(jax.random.PRNGKey(1), z, train=False)
  images = g.apply(g_vars, z, train=False)
  assert images.shape == (4, resolution, resolution, 3)
  assert float(jnp.abs(images).max()) <= 1.0
  d_vars = d.init(jax.random.PRNGKey(2), images, train=False)
  assert d.apply(d_vars, images, train=False).shape == (4,)


def test_bfloat16_compute_keeps_float32_parameters():
  g = dcgan.Generator(16, 3, 8, 64, dtype=jnp.bfloat16)
  z = jnp.ones((2, 100))
  variables = g.init(jax.random.PRNGKey(0), z, train=False)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert g.apply(variables, z, train=False).dtype == jnp.float32


def test_losses_against_their_definition():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sigmoid = lambda x: 1 / (1 + np.exp(-x))
  expected_d = -np.mean(np.log(sigmoid(np.array(real)))) - np.mean(
      np.log(1 - sigmoid(np.array(fake))))
  np.testing.assert_allclose(gan_losses.discriminator_loss('nonsaturating', real, fake),
                             expected_d, rtol=1e-6)
  np.testing.assert_allclose(gan_losses.generator_loss('nonsaturating', fake),
                             -np.mean(np.log(sigmoid(np.array(fake)))), rtol=1e-6)


def test_ema_beta_half_life():
  beta = ema_beta(batch_size=64, ema_kimg=10)
  # After ema_kimg·1000 images the old average's weight has halved.
  np.testing.assert_allclose(beta ** (10_000 / 64), 0.5, rtol=1e-9)
  assert ema_beta(64, 0) == 0.0


def test_train_step_updates_both_networks_and_matches_a_manual_step():
  config = tiny_config(**{'train.ema_kimg': 0.0})
  recipe = DCGAN(config, 0)
  state = recipe.init_state(jax.random.PRNGKey(0))
  batch = {'image': jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)),
                                jnp.uint8), 'label': jnp.zeros((8,), jnp.int32)}
  new_state, metrics = jax.jit(recipe.train_step)(state, batch)
  assert int(new_state.step) == 1
  # Recompute the D update by hand: grads of the D loss at the same z, one Adam step.
  z = recipe.latents(jax.random.fold_in(state.rng, 0), 8)
  fake, _ = recipe.generator.apply({'params': state.g_params,
                                    'batch_stats': state.g_batch_stats}, z, None, train=True,
                                   mutable=['batch_stats'])
  real = batch['image'].astype(jnp.float32) / 127.5 - 1

  def d_loss(p):
    v = {'params': p, 'batch_stats': state.d_batch_stats}
    r, upd = recipe.discriminator.apply(v, real, None, train=True, mutable=['batch_stats'])
    f, _ = recipe.discriminator.apply({'params': p, **upd}, fake, None, train=True,
                                      mutable=['batch_stats'])
    return gan_losses.discriminator_loss('nonsaturating', r, f)

  loss, grads = jax.value_and_grad(d_loss)(state.d_params)
  np.testing.assert_allclose(metrics['loss/d'], loss, rtol=1e-5)
  updates, _ = recipe.d_tx.update(grads, state.d_opt_state, state.d_params)
  expected = optax.apply_updates(state.d_params, updates)
  for a, b in zip(jax.tree.leaves(new_state.d_params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  changed = lambda a, b: any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a),
                                                                     jax.tree.leaves(b)))
  assert changed(new_state.g_params, state.g_params)
  # ema_kimg = 0: the EMA generator is the live one.
  for a, b in zip(jax.tree.leaves(new_state.ema_params), jax.tree.leaves(new_state.g_params)):
    np.testing.assert_array_equal(a, b)


def test_conditional_dcgan_uses_labels():
  recipe = DCGAN(tiny_config(**{'data.use_labels': True}), num_classes=10)
  state = recipe.init_state(jax.random.PRNGKey(0))
  z = jnp.tile(recipe.latents(jax.random.PRNGKey(1), 1), (2, 1))
  images = recipe.generate(state, z, jnp.array([0, 1]))
  assert not np.allclose(images[0], images[1])


def test_labels_on_an_unlabelled_dataset_is_an_error():
  with pytest.raises(UserError, match='has no labels'):
    DCGAN(tiny_config(**{'data.use_labels': True}), num_classes=0)
