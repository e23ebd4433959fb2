"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation on the one training loop.

As the official code (junyanz/pytorch-CycleGAN-and-pix2pix, `models/cycle_gan_model.py`,
`models/networks.py`, `util/image_pool.py`, `options/train_options.py`): two ResNet generators,
G_A: A → B and G_B: B → A (`resnet_9blocks`, instance norm, reflection padding;
jaxgen/models/resnet_generator.py), two 70×70 PatchGAN discriminators with instance norm, D_A
on domain B and D_B on domain A (jaxgen/models/pix2pix.py), every weight drawn N(0, 0.02²)
(`init_weights`). The losses are jaxgen/objectives/cyclegan.py's: LSGAN, cycle λ_A = λ_B = 10,
identity 0.5·λ, D's loss halved, D fed through a 50-image history pool of each generator's
fakes. Adam 2e-4, β1 0.5 for both generators together and both discriminators together; the
learning rate constant, then decayed linearly over the last `optimizer.decay_steps` steps as
the official 'linear' policy decays it over n_epochs_decay epochs:
lr(s) = lr·(1 − max(0, s + 1 − n_constant) / (decay_steps + 1)) for update s = 0, 1, ....

One step is the official `optimize_parameters`, compiled as one program: the forward pass of
both generators (fakes, reconstructions, identities); G_A and G_B updated with the
discriminators held fixed; then the fakes go through the history pools and D_A and D_B are
updated on (real, pooled fake). The pools are arrays in the train state (with how many images
each holds), their random draws keyed by fold_in(state.rng, step): a resumed run continues with
exactly the pools and draws of an uninterrupted one. There is no EMA of the generators (the
official code has none): samples, metrics and exports use the trained weights.

`generate(state, inputs, direction='AtoB')` translates with G_A ('AtoB') or G_B ('BtoA').
"""

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import recipes
from jaxgen.data import unpaired
from jaxgen.errors import UserError
from jaxgen.objectives import cyclegan as objective

GENERATORS = ('resnet_9blocks', 'resnet_6blocks', 'resnet')
NORMS = ('instance', 'none')
GAN_LOSSES = ('lsgan', 'nonsaturating', 'hinge')
DIRECTIONS = ('AtoB', 'BtoA')


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  g_params: Any              # {'G_A': A → B, 'G_B': B → A}
  d_params: Any              # {'D_A': on domain B, 'D_B': on domain A}
  g_opt_state: Any
  d_opt_state: Any
  fake_b_pool: jax.Array     # float32 [pool_size, c, c, C]: G_A's past fakes, for D_A
  fake_b_count: jax.Array    # int32 [], images stored in fake_b_pool
  fake_a_pool: jax.Array     # G_B's past fakes, for D_B
  fake_a_count: jax.Array


def linear_decay(lr, num_steps, decay_steps):
  """The official 'linear' policy in steps: lr for num_steps − decay_steps updates, then
  lr·(1 − k / (decay_steps + 1)) for the k-th of the last decay_steps (k = 1 … decay_steps),
  i.e. lr·min(1, (num_steps − count) / (decay_steps + 1)) (`recipes.linear_decay`)."""
  return lambda count: lr * recipes.linear_decay(count, num_steps, decay_steps + 1)


class CycleGAN(recipes.OnePassSampling):
  """Builds G_A, G_B, D_A, D_B, the losses and the optimisers from a config
  (configs/cyclegan.py)."""

  def __init__(self, config, num_classes, mesh=None):
    del num_classes, mesh  # Conditioned on images, not classes.
    m, obj, o = config.model, config.objective, config.optimizer
    if config.data.use_labels:
      raise UserError('CycleGAN translates images, it does not condition on classes: set '
                      'data.use_labels=False')
    self.task = unpaired.UnpairedTask(config.get('task', {}), config.data.channels,
                                      config.data.resolution, config.data.source)
    self.num_classes = 0
    for key, value, allowed in (('model.generator', m.generator, GENERATORS),
                                ('model.norm', m.norm, NORMS),
                                ('objective.gan_loss', obj.gan_loss, GAN_LOSSES)):
      if value not in allowed:
        hint = (': batch norm is not supported here (CycleGAN trains with batch 1 and instance '
                'norm)' if key == 'model.norm' and value == 'batch' else '')
        raise UserError(f'{key}={value!r} is not one of {", ".join(allowed)}{hint}')
    for key in ('lambda_A', 'lambda_B', 'lambda_identity'):
      value = float(obj[key])
      if not (math.isfinite(value) and value >= 0):
        raise UserError(f'objective.{key}={obj[key]} must be a finite number ≥ 0 (CycleGAN: '
                        '10, 10 and 0.5)')
    self.lambda_a, self.lambda_b = float(obj.lambda_A), float(obj.lambda_B)
    self.lambda_idt = float(obj.lambda_identity)
    self.gan_loss = obj.gan_loss
    self.pool_size = int(obj.pool_size)
    if self.pool_size < 0:
      raise UserError(f'objective.pool_size={obj.pool_size} is negative: give the number of past '
                      'fakes each discriminator draws from (CycleGAN: 50; 0 = none)')
    num_steps, decay_steps = int(config.train.num_steps), int(o.decay_steps)
    if not 0 <= decay_steps <= num_steps:
      raise UserError(f'optimizer.decay_steps={decay_steps} must be within 0..train.num_steps='
                      f'{num_steps}: the learning rate decays to 0 over the last decay_steps')
    self.channels = config.data.channels
    self.num_downs = 2  # The generators' two stride-2 convs (jaxgen.tiling rounds tiles to 4).
    self.generator = self._build_generator(m)
    self.discriminator = self._build_discriminator(m)
    self._check_size(m)
    self.learning_rate = linear_decay(float(o.lr), num_steps, decay_steps)
    self.g_tx = optax.adam(self.learning_rate, o.b1, o.b2, eps=o.eps)
    self.d_tx = optax.adam(self.learning_rate, o.b1, o.b2, eps=o.eps)
    self._use_dropout = bool(m.use_dropout)

  # ----------------------------------------------------------------------------------------------
  # Networks.

  def _build_generator(self, m):
    from jaxgen.models import resnet_generator  # pylint: disable=import-outside-toplevel
    n_blocks = resnet_generator.RESNET_PRESETS.get(m.generator, m.get('n_blocks', 9))
    if int(n_blocks) < 0:
      raise UserError(f'model.n_blocks={n_blocks} must be ≥ 0')
    return resnet_generator.ResnetGenerator(
        out_channels=self.channels, ngf=m.ngf, n_blocks=int(n_blocks), norm=m.norm,
        use_dropout=m.use_dropout, padding_type=m.get('padding_type', 'reflect'),
        dtype=jnp.dtype(m.dtype))

  def _build_discriminator(self, m):
    from jaxgen.models import pix2pix  # pylint: disable=import-outside-toplevel
    return pix2pix.PatchDiscriminator(ndf=m.ndf, n_layers=m.n_layers, norm=m.norm)

  def _check_size(self, m):
    size = self.task.train_size
    key = 'task.crop' if self.task.crop else 'data.resolution'
    if size % 4:
      raise UserError(f'{key}={size} does not fit the ResNet generator: its two down-samplings '
                      'need a multiple of 4 pixels')
    smallest = 3 * 2 ** m.n_layers  # As pix2pix: n_layers halvings, then two k4 s1 p1 convs.
    if size < smallest:
      raise UserError(f'{key}={size} is smaller than the PatchGAN discriminator '
                      f'(model.n_layers={m.n_layers}) can see: use at least {smallest} px, or '
                      'fewer layers')

  def _g(self, params, x, key=None):
    """One generator in training mode (dropout on when configured, with `key`)."""
    if self._use_dropout and key is not None:
      return self.generator.apply({'params': params}, x, train=True, rngs={'dropout': key})
    return self.generator.apply({'params': params}, x, train=False)

  def _d(self, params, images):
    return self.discriminator.apply({'params': params}, images, train=True)

  # ----------------------------------------------------------------------------------------------
  # Training.

  def prepare_training(self):
    """Nothing to load: CycleGAN needs no pretrained weights."""

  def step_variant(self, step):
    """One update program for every step."""
    del step
    return ()

  def init_state(self, rng):
    keys = jax.random.split(jax.random.fold_in(rng, 1 << 30), 4)
    size = self.task.train_size
    image = jnp.zeros((1, size, size, self.channels))
    g_params = {name: self.generator.init({'params': k, 'dropout': k}, image,
                                          train=False)['params']
                for name, k in zip(('G_A', 'G_B'), keys[:2])}
    d_params = {name: self.discriminator.init(k, image, train=False)['params']
                for name, k in zip(('D_A', 'D_B'), keys[2:])}
    pool, count = objective.empty_pool(self.pool_size, (size, size, self.channels))
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_params,
                      d_params=d_params, g_opt_state=self.g_tx.init(g_params),
                      d_opt_state=self.d_tx.init(d_params), fake_b_pool=pool,
                      fake_b_count=count, fake_a_pool=pool, fake_a_count=count)

  def generator_losses(self, g_params, d_params, real_a, real_b, key=None):
    """The official `forward` + `backward_G`: (G's total loss, (terms, fake_b, fake_a)).

    real_a, real_b: float32 [B, c, c, C] in [-1, 1]; `key`: dropout, when configured. Each
    generator takes what it translates in one batch — G_A: a (→ fake_b) with b (→ idt_a), then
    fake_a (→ rec_b) — which is the official per-image passes exactly, since instance norm
    normalises each image on its own (and compiles half the passes)."""
    keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
    g_a, g_b = g_params['G_A'], g_params['G_B']
    identity = self.lambda_idt > 0
    if identity:
      n = real_a.shape[0]
      fake_b, idt_a = jnp.split(self._g(g_a, jnp.concatenate([real_a, real_b]), keys[0]), [n])
      fake_a, idt_b = jnp.split(self._g(g_b, jnp.concatenate([real_b, real_a]), keys[1]), [n])
    else:
      fake_b, fake_a = self._g(g_a, real_a, keys[0]), self._g(g_b, real_b, keys[1])
    rec_a = self._g(g_b, fake_b, keys[2])
    rec_b = self._g(g_a, fake_a, keys[3])
    terms = objective.generator_adversarial(self.gan_loss, self._d(d_params['D_A'], fake_b),
                                            self._d(d_params['D_B'], fake_a))
    terms.update(objective.cycle_losses(real_a, rec_a, real_b, rec_b, self.lambda_a,
                                        self.lambda_b))
    if identity:
      terms.update(objective.identity_losses(real_a, idt_b, real_b, idt_a, self.lambda_a,
                                             self.lambda_b, self.lambda_idt))
    return sum(terms.values()), (terms, fake_b, fake_a)

  def _d_real_fake(self, params, real, fake):
    """D's logits on the real and the fake images, in one batch (instance norm: per image)."""
    return jnp.split(self._d(params, jnp.concatenate([real, fake])), [real.shape[0]])

  def discriminator_losses(self, d_params, real_a, real_b, pooled_fake_b, pooled_fake_a):
    """The official `backward_D_A` + `backward_D_B`: (their sum, {'D_A': …, 'D_B': …})."""
    terms = {
        'D_A': objective.discriminator_loss(
            self.gan_loss, *self._d_real_fake(d_params['D_A'], real_b, pooled_fake_b)),
        'D_B': objective.discriminator_loss(
            self.gan_loss, *self._d_real_fake(d_params['D_B'], real_a, pooled_fake_a))}
    return terms['D_A'] + terms['D_B'], terms

  def train_step(self, state, batch, variant=()):
    """The official `optimize_parameters`: G_A and G_B, then D_A and D_B on pooled fakes.

    batch: {'input': float32 [B, c, c, C] A images in [-1, 1], 'image': uint8 [B, c, c, C]
    B images}."""
    del variant
    key = jax.random.fold_in(state.rng, state.step)
    dropout_key, pool_b_key, pool_a_key = jax.random.split(key, 3)
    real_a = batch['input'].astype(jnp.float32)
    real_b = batch['image'].astype(jnp.float32) / 127.5 - 1.0

    (g_loss, (g_terms, fake_b, fake_a)), g_grads = jax.value_and_grad(
        self.generator_losses, has_aux=True)(state.g_params, state.d_params, real_a, real_b,
                                             dropout_key)
    g_updates, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    pooled_b, b_pool, b_count = objective.query_pool(state.fake_b_pool, state.fake_b_count,
                                                     fake_b, pool_b_key)
    pooled_a, a_pool, a_count = objective.query_pool(state.fake_a_pool, state.fake_a_count,
                                                     fake_a, pool_a_key)
    (d_loss, d_terms), d_grads = jax.value_and_grad(self.discriminator_losses, has_aux=True)(
        state.d_params, real_a, real_b, pooled_b, pooled_a)
    d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                              g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                              fake_b_pool=b_pool, fake_b_count=b_count, fake_a_pool=a_pool,
                              fake_a_count=a_count)
    metrics = {f'loss/{k}': v for k, v in {**g_terms, **d_terms}.items()}
    metrics.update({'loss/g': g_loss, 'loss/d': d_loss,
                    'grad_norm/g': optax.global_norm(g_grads),
                    'grad_norm/d': optax.global_norm(d_grads),
                    'lr': self.learning_rate(state.step)})
    return new_state, metrics

  # ----------------------------------------------------------------------------------------------
  # Sampling.

  progress_metrics = ('loss/D_A', 'loss/G_A', 'loss/cycle_A')

  # The parts of the train state that `generate` reads (what `jaxgen.export` writes): both
  # generators.
  generator_fields = ('g_params',)
  # `direction`: 'AtoB' (G_A, the default) or 'BtoA' (G_B).
  sampling_options = ('direction',)

  def generate(self, state, inputs, labels=None, direction='AtoB'):
    """Translates inputs [N, h, w, C] (pixels in [-1, 1]; h, w multiples of 4) with G_A
    ('AtoB', None too) or G_B ('BtoA') → images [N, h, w, C] in (−1, 1)."""
    del labels
    direction = direction or 'AtoB'
    if direction not in DIRECTIONS:
      raise UserError(f'direction={direction!r}: use "AtoB" (G_A, A → B) or "BtoA" (G_B, '
                      'B → A)')
    name = 'G_A' if direction == 'AtoB' else 'G_B'
    return self._g(state.g_params[name], jnp.asarray(inputs, jnp.float32))

  def param_count(self, state):
    return {name: recipes.count_params(params) for name, params in
            {**state.g_params, **state.d_params}.items()}
