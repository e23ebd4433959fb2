"""DCGAN recipe: train state, the jitted update step, and sampling.

One step is the classic alternation (Radford et al. 2016, and the PyTorch DCGAN example):
  1. fake = G(z) for a fresh z (BatchNorm in training mode);
  2. D update on real and fake (fake treated as a constant), Adam;
  3. G update through the *updated* D on the same fake, reusing step 1's forward pass (vjp).
The EMA generator (half-life `train.ema_kimg`) is what samples and metrics use.

The GAN remedies are config choices (configs/dcgan.py presets), none of them a different loop:
  * `objective.name`: the adversarial loss, one of jaxgen/objectives/gan_losses.py's
    (non-saturating, WGAN-GP, hinge, least squares). With 'wgan-gp' D's loss adds
    `gp_weight` · E(‖∇D(x̂)‖₂ − 1)² on random interpolates x̂ (λ = 10, Gulrajani et al.).
  * `objective.drift`: ProGAN's ε_drift · E D(x)², which keeps a critic's logits near 0 (0.001
    there; 0 = off).
  * `objective.n_critic`: D updates per G update. Steps s with s mod n_critic < n_critic − 1 are
    critic-only (step 3 skipped), the last of each group runs all three, every step on a fresh
    real batch as the WGAN-GP paper does; the step number alone decides, so a resumed run
    repeats exactly the same updates. The EMA moves with G's updates only.
  * `model.d_norm` ('batch' | 'layer' | 'none') and `model.spectral_norm`: D's normalisation
    (jaxgen/models/dcgan.py). With spectral norm, step 2's pass on the reals stores one power
    iteration per step (Miyato et al.'s one per update); the passes on fakes, on interpolates
    and in step 3 use σ from the stored u without storing. The u vectors live in the train state
    (`d_batch_stats`), so checkpoints hold them and a resumed run continues the same iteration.
"""

import numbers
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import parallel
from jaxgen import recipes
from jaxgen.errors import UserError
from jaxgen.models import dcgan as dcgan_model
from jaxgen.objectives import gan_losses

# The step variants: the phases that run (critic-only steps skip G's update).
CRITIC_ONLY = ('D',)
CRITIC_AND_GENERATOR = ('D', 'G')


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  g_params: Any
  g_batch_stats: Any
  d_params: Any
  d_batch_stats: Any         # BatchNorm statistics and spectral norm's u, σ ({} with neither)
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any            # EMA of g_params: samples, metrics and export use these


def ema_beta(batch_size, ema_kimg):
  """Per-step decay for an EMA whose half-life is `ema_kimg` thousand images (0 disables)."""
  return 0.5 ** (batch_size / (ema_kimg * 1000.0)) if ema_kimg > 0 else 0.0


def global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def validate(config):
  """Checks the config's DCGAN settings before anything is compiled (UserError)."""
  m, obj = config.model, config.objective
  res = config.data.resolution
  if res < 8 or res & (res - 1):
    raise UserError(f'DCGAN needs a power-of-two data.resolution ≥ 8, not {res}')
  if obj.name not in gan_losses.LOSSES:
    raise UserError(f'objective.name={obj.name!r} is not a GAN loss: use one of '
                    + ', '.join(repr(n) for n in gan_losses.LOSSES))
  d_norm = m.get('d_norm', 'batch')
  if d_norm not in dcgan_model.D_NORMS:
    raise UserError(f'model.d_norm={d_norm!r} is not a normalisation: use one of '
                    + ', '.join(repr(n) for n in dcgan_model.D_NORMS))
  n_critic = obj.get('n_critic', 1)
  if not isinstance(n_critic, numbers.Integral) or isinstance(n_critic, bool) or n_critic < 1:
    raise UserError(f'objective.n_critic={n_critic!r} must be an integer >= 1 (D updates per G '
                    'update; 5 in the WGAN-GP paper)')
  for name in ('gp_weight', 'drift'):
    if obj.get(name, 0.0) < 0:
      raise UserError(f'objective.{name}={obj[name]} is negative: a penalty weight must be >= 0')
  if obj.name == 'wgan-gp' and d_norm == 'batch':
    raise UserError("objective.name='wgan-gp' needs a critic without batch norm (its gradient "
                    "penalty is per example; batch norm mixes the batch): set "
                    "model.d_norm='layer' (the paper's) or 'none'")


class DCGAN(recipes.OnePassSampling):
  """Builds the DCGAN networks and steps from a config (see configs/dcgan.py)."""

  def __init__(self, config, num_classes, mesh=None):
    validate(config)
    m, obj = config.model, config.objective
    res = config.data.resolution
    self.conditional = config.data.use_labels
    self.num_classes = recipes.class_count(config, num_classes)
    dtype = jnp.dtype(m.dtype)
    self.z_dim = m.z_dim
    self.generator = dcgan_model.Generator(res, config.data.channels, m.g_base_channels,
                                           m.max_channels, self.num_classes, dtype)
    self.discriminator = dcgan_model.Discriminator(
        res, m.d_base_channels, m.max_channels, self.num_classes, dtype,
        norm=m.get('d_norm', 'batch'), spectral_norm=bool(m.get('spectral_norm', False)))
    self.loss = obj.name
    self.gp_weight = obj.get('gp_weight', 10.0) if obj.name == 'wgan-gp' else 0.0
    self.drift = obj.get('drift', 0.0)
    self.n_critic = obj.get('n_critic', 1)
    o = config.optimizer
    self.g_tx = optax.adam(o.g_lr, o.b1, o.b2, eps=o.eps)
    self.d_tx = optax.adam(o.d_lr, o.b1, o.b2, eps=o.eps)
    self.ema_beta = ema_beta(config.train.batch_size, config.train.ema_kimg)
    self.image_shape = (res, res, config.data.channels)
    self._constrain = parallel.batch_constraint(mesh)

  def prepare_training(self):
    """Nothing beyond the networks is needed to train."""

  def step_variant(self, step):
    """The phases of the update at `step`: CRITIC_ONLY for the first n_critic − 1 steps of each
    group of n_critic, CRITIC_AND_GENERATOR for the last (always, with n_critic = 1)."""
    if step % self.n_critic == self.n_critic - 1:
      return CRITIC_AND_GENERATOR
    return CRITIC_ONLY

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
        d_params=d_vars['params'], d_batch_stats=d_vars.get('batch_stats', {}),
        g_opt_state=self.g_tx.init(g_vars['params']),
        d_opt_state=self.d_tx.init(d_vars['params']),
        ema_params=g_vars['params'])

  def latents(self, rng, n):
    return jax.random.normal(rng, (n, self.z_dim))

  def train_step(self, state, batch, variant=CRITIC_AND_GENERATOR):
    """One D update and, unless the variant is CRITIC_ONLY, one G update.
    batch: {'image': uint8 [B,R,R,C], 'label': int32 [B]}."""
    rng = jax.random.fold_in(state.rng, state.step)
    real = batch['image'].astype(jnp.float32) / 127.5 - 1.0
    labels = batch['label']
    z = self._constrain(self.latents(rng, real.shape[0]))

    def generate(g_params):
      return self.generator.apply({'params': g_params, 'batch_stats': state.g_batch_stats},
                                  z, labels, train=True, mutable=['batch_stats'])

    fake, g_vjp, g_updates = jax.vjp(generate, state.g_params, has_aux=True)

    def discriminate(variables, images, update_sn=False):
      logits, updates = self.discriminator.apply(variables, images, labels, train=True,
                                                 update_sn=update_sn, mutable=['batch_stats'])
      return logits, {'params': variables['params'], **updates}

    def d_loss_fn(d_params):
      variables = {'params': d_params, 'batch_stats': state.d_batch_stats}
      real_logits, variables = discriminate(variables, real, update_sn=True)
      fake_logits, variables = discriminate(variables, jax.lax.stop_gradient(fake))
      terms = {'adversarial': gan_losses.discriminator_loss(self.loss, real_logits,
                                                            fake_logits)}
      loss = terms['adversarial']
      if self.gp_weight:
        critic = lambda images: discriminate(variables, images)[0]
        terms['gradient_penalty'] = gan_losses.gradient_penalty(
            critic, real, fake, jax.random.fold_in(rng, 1))
        loss = loss + self.gp_weight * terms['gradient_penalty']
      if self.drift:
        terms['drift'] = jnp.mean(jnp.square(real_logits))
        loss = loss + self.drift * terms['drift']
      return loss, (variables.get('batch_stats', {}), real_logits, fake_logits, terms)

    (d_loss, (d_batch_stats, real_logits, fake_logits, d_terms)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)
    new_state = state.replace(
        step=state.step + 1, g_batch_stats=g_updates['batch_stats'], d_params=d_params,
        d_batch_stats=d_batch_stats, d_opt_state=d_opt_state)
    metrics = {
        'loss/d': d_loss,
        'logits/real': jnp.mean(real_logits), 'logits/fake': jnp.mean(fake_logits),
        'grad_norm/d': global_norm(d_grads),
    }
    if len(d_terms) > 1:
      metrics.update({f'loss/d_{k}': v for k, v in d_terms.items()})

    if 'G' not in variant:
      # G's loss at this step's logits (before D's update), so every step logs loss/g.
      metrics['loss/g'] = gan_losses.generator_loss(self.loss, fake_logits)
      return new_state, metrics

    def g_loss_fn(fake_images):
      variables = {'params': d_params, 'batch_stats': d_batch_stats}
      logits, _ = discriminate(variables, fake_images)
      return gan_losses.generator_loss(self.loss, logits)

    g_loss, dfake = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = g_vjp(dfake)
    g_updates_, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates_)
    beta = self.ema_beta
    ema_params = jax.tree.map(lambda e, p: beta * e + (1.0 - beta) * p, state.ema_params,
                              g_params)
    new_state = new_state.replace(g_params=g_params, g_opt_state=g_opt_state,
                                  ema_params=ema_params)
    metrics.update({'loss/g': g_loss, 'grad_norm/g': global_norm(g_grads)})
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

  def param_count(self, state):
    return {'generator': recipes.count_params(state.g_params),
            'discriminator': recipes.count_params(state.d_params)}
