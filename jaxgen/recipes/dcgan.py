"""DCGAN recipe: train state, the jitted update step, and sampling.

One step is the classic alternation (Radford et al. 2016, and the PyTorch DCGAN example):
  1. fake = G(z) for a fresh z (BatchNorm in training mode);
  2. D update on real and fake (fake treated as a constant), Adam;
  3. G update through the *updated* D on the same fake, reusing step 1's forward pass (vjp).
The EMA generator (half-life `train.ema_kimg`) is what samples and metrics use.
"""

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import parallel
from jaxgen import recipes
from jaxgen.errors import UserError
from jaxgen.models import dcgan as dcgan_model
from jaxgen.objectives import nonsaturating


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  g_params: Any
  g_batch_stats: Any
  d_params: Any
  d_batch_stats: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any            # EMA of g_params: samples, metrics and export use these


def ema_beta(batch_size, ema_kimg):
  """Per-step decay for an EMA whose half-life is `ema_kimg` thousand images (0 disables)."""
  return 0.5 ** (batch_size / (ema_kimg * 1000.0)) if ema_kimg > 0 else 0.0


def global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class DCGAN:
  """Builds the DCGAN networks and steps from a config (see configs/dcgan.py)."""

  def __init__(self, config, num_classes, mesh=None):
    m = config.model
    res = config.data.resolution
    if res < 8 or res & (res - 1):
      raise UserError(f'DCGAN needs a power-of-two data.resolution ≥ 8, not {res}')
    self.conditional = config.data.use_labels
    self.num_classes = recipes.class_count(config, num_classes)
    dtype = jnp.dtype(m.dtype)
    self.z_dim = m.z_dim
    self.generator = dcgan_model.Generator(res, config.data.channels, m.g_base_channels,
                                           m.max_channels, self.num_classes, dtype)
    self.discriminator = dcgan_model.Discriminator(res, m.d_base_channels, m.max_channels,
                                                   self.num_classes, dtype)
    o = config.optimizer
    self.g_tx = optax.adam(o.g_lr, o.b1, o.b2, eps=o.eps)
    self.d_tx = optax.adam(o.d_lr, o.b1, o.b2, eps=o.eps)
    self.ema_beta = ema_beta(config.train.batch_size, config.train.ema_kimg)
    self.image_shape = (res, res, config.data.channels)
    self._constrain = parallel.batch_constraint(mesh)

  def prepare_training(self):
    """Nothing beyond the networks is needed to train."""

  def step_variant(self, step):
    """Static variant of the update at `step` (DCGAN has one; StyleGAN's lazy regs have more)."""
    del step
    return ()

  def init_state(self, rng):
    g_key, d_key = jax.random.split(jax.random.fold_in(rng, 1 << 30))
    z = jnp.zeros((2, self.z_dim))
    labels = jnp.zeros((2,), jnp.int32)
    g_vars = self.generator.init(g_key, z, labels, train=False)
    d_vars = self.discriminator.init(d_key, jnp.zeros((2,) + self.image_shape), labels,
                                     train=False)
    return TrainState(
        step=jnp.zeros((), jnp.int32), rng=rng,
        g_params=g_vars['params'], g_batch_stats=g_vars['batch_stats'],
        d_params=d_vars['params'], d_batch_stats=d_vars['batch_stats'],
        g_opt_state=self.g_tx.init(g_vars['params']),
        d_opt_state=self.d_tx.init(d_vars['params']),
        ema_params=g_vars['params'])

  def latents(self, rng, n):
    return jax.random.normal(rng, (n, self.z_dim))

  def train_step(self, state, batch, variant=()):
    """One D and one G update. batch: {'image': uint8 [B,R,R,C], 'label': int32 [B]}."""
    del variant
    rng = jax.random.fold_in(state.rng, state.step)
    real = batch['image'].astype(jnp.float32) / 127.5 - 1.0
    labels = batch['label']
    z = self._constrain(self.latents(rng, real.shape[0]))

    def generate(g_params):
      return self.generator.apply({'params': g_params, 'batch_stats': state.g_batch_stats},
                                  z, labels, train=True, mutable=['batch_stats'])

    fake, g_vjp, g_updates = jax.vjp(generate, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
      variables = {'params': d_params, 'batch_stats': state.d_batch_stats}
      real_logits, updates = self.discriminator.apply(variables, real, labels, train=True,
                                                      mutable=['batch_stats'])
      variables = {'params': d_params, **updates}
      fake_logits, updates = self.discriminator.apply(
          variables, jax.lax.stop_gradient(fake), labels, train=True, mutable=['batch_stats'])
      loss = nonsaturating.discriminator_loss(real_logits, fake_logits)
      return loss, (updates['batch_stats'], real_logits, fake_logits)

    (d_loss, (d_batch_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(fake_images):
      variables = {'params': d_params, 'batch_stats': d_batch_stats}
      logits, _ = self.discriminator.apply(variables, fake_images, labels, train=True,
                                           mutable=['batch_stats'])
      return nonsaturating.generator_loss(logits)

    g_loss, dfake = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = g_vjp(dfake)
    g_updates_, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates_)
    beta = self.ema_beta
    ema_params = jax.tree.map(lambda e, p: beta * e + (1.0 - beta) * p, state.ema_params,
                              g_params)

    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_batch_stats=g_updates['batch_stats'],
        d_params=d_params, d_batch_stats=d_batch_stats, g_opt_state=g_opt_state,
        d_opt_state=d_opt_state, ema_params=ema_params)
    metrics = {
        'loss/d': d_loss, 'loss/g': g_loss,
        'logits/real': jnp.mean(real_logits), 'logits/fake': jnp.mean(fake_logits),
        'grad_norm/d': global_norm(d_grads), 'grad_norm/g': global_norm(g_grads),
    }
    return new_state, metrics

  # Samples are made from latents, not from a task's inputs.
  task = None
  # The metrics of `train_step` the progress bar shows.
  progress_metrics = ('loss/d', 'loss/g')
  # The parts of the train state that `generate` reads (what `jaxgen.export` writes).
  generator_fields = ('ema_params', 'g_batch_stats')
  # Keyword options of `generate` beyond (state, z, labels): none.
  sampling_options = ()

  def generate(self, state, z, labels):
    """EMA generator, BatchNorm with running statistics: z [N, z_dim] → [N, R, R, C] in [-1,1]."""
    variables = {'params': state.ema_params, 'batch_stats': state.g_batch_stats}
    return self.generator.apply(variables, z, labels, train=False)

  def evaluations_per_sample(self, **options):
    """Network evaluations per generated image: one generator pass."""
    del options
    return 1

  def network_forward(self, state, z, labels):
    """One evaluation of the network that samples (for benchmarks' FLOP counts)."""
    return self.generate(state, z, labels)

  def param_count(self, state):
    count = lambda t: sum(math.prod(x.shape) for x in jax.tree.leaves(t))
    return {'generator': count(state.g_params), 'discriminator': count(state.d_params)}
