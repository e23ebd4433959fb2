"""Test helper shared by the StyleGAN2 model and objective tests."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import stylegan2 as sg


def random_variables(network, seed):
  """Variables of `network` drawn like the official initialisation, without compiling Flax's
  per-parameter RNG (slow on CPU): weights N(0, 1) (mapping layers N(0, 1/0.01²)), small
  random biases around their initial values (1 for affine layers), noise strengths 0.5 so the
  noise inputs matter, w_avg 0. `test_initial_state_matches_official_initialisation` checks the
  real initialiser."""
  init = sg.init_generator if isinstance(network, sg.Generator) else sg.init_discriminator
  shapes = jax.eval_shape(functools.partial(init, network), jax.random.key(0))
  rs = np.random.RandomState(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    noise = rs.standard_normal(leaf.shape).astype(np.float32)
    if name.endswith("['w_avg']"):
      return jnp.zeros(leaf.shape, jnp.float32)
    if name.endswith("['noise_strength']"):
      return jnp.full(leaf.shape, 0.5, jnp.float32)
    if name.endswith("['bias']"):
      return jnp.asarray(0.1 * noise + (1.0 if "['affine']" in name else 0.0))
    if "['mapping']['fc" in name:
      return jnp.asarray(noise / 0.01)
    return jnp.asarray(noise)

  return jax.tree_util.tree_map_with_path(draw, shapes)
