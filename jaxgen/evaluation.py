"""Scoring a generator during training: the metrics named in `config.eval.metrics`.

The `Evaluator` generates images from the EMA generator (sharded over the mesh like training)
and hands them, as uint8 [N, R, R, C], to each metric. It also draws the sample grids.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxgen import data, parallel
from jaxgen.errors import UserError
from jaxgen.metrics.swd import SlicedWassersteinDistance


class Evaluator:
  """Scores the EMA generator with the metrics of `config.eval.metrics`."""

  def __init__(self, config, recipe, source, mesh):
    self.recipe = recipe
    self.mesh = mesh
    self.num_images = config.eval.num_images
    devices = mesh.devices.size
    self.batch_size = -(-config.eval.batch_size // devices) * devices
    self.num_classes = recipe.num_classes
    self.seed = config.seed
    self.metrics = {}
    for name in config.eval.metrics:
      if name == 'swd':
        reals = data.fixed_examples(source, self.num_images, seed=config.seed)['image']
        self.num_images = reals.shape[0]
        self.metrics[name] = SlicedWassersteinDistance(reals, seed=config.seed)
      else:
        raise UserError(f'unknown metric {name!r} in eval.metrics: available: swd')
    self._generate = jax.jit(self._generate_batch, static_argnums=3,
                             out_shardings=parallel.batch_sharding(mesh))

  def _generate_batch(self, state, key, start, size):
    z = self.recipe.latents(key, size)
    labels = (start + jnp.arange(size)) % max(self.num_classes, 1)
    return self.recipe.generate(state, z, labels.astype(jnp.int32))

  def generate_uint8(self, state, count, key):
    """`count` images from the EMA generator as uint8 [count, R, R, C] on every host."""
    out = []
    for i, start in enumerate(range(0, count, self.batch_size)):
      key_i = np.asarray(jax.random.fold_in(key, i))  # Host value: valid input on any mesh.
      images = self._generate(state, key_i, np.int32(start), self.batch_size)
      images = multihost_utils.process_allgather(images, tiled=True)
      out.append(np.clip(np.round((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8))
    return np.concatenate(out)[:count]

  def __call__(self, state):
    if not self.metrics:
      return {}
    fakes = self.generate_uint8(state, self.num_images, jax.random.PRNGKey(self.seed + 7))
    results = {}
    for metric in self.metrics.values():
      results.update(metric(fakes))
    return results
