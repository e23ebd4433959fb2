"""Paired image-to-image translation: pix2pix, PSNR-oriented super-resolution and ESRGAN.

One recipe for every paired task of jaxgen/data/tasks.py (super-resolution, denoising,
inpainting, colourisation, real pairs): a generator G maps the task's input to the target, and
is trained by a pixel loss, optionally a perceptual loss and optionally an adversarial one. G's
output becomes the image through the task (`Task.compose`): colourisation's G predicts two
chroma channels that join the input's luma, in training (the losses and D see the image) and
in sampling alike.

  pix2pix (Isola et al. 2017; junyanz/pytorch-CycleGAN-and-pix2pix): U-Net G, 70×70 PatchGAN D
      on the channel-concatenation (input, image), `vanilla` GAN + λ·L1 with λ = 100, Adam 2e-4
      (β1 0.5), the learning rate constant then linearly decayed to 0.
  SR, PSNR-oriented (SRResNet/MSRResNet as BasicSR trains it): L1 only (`model.discriminator
      = 'none'`), Adam 2e-4 (β 0.9, 0.99), cosine decay.
  ESRGAN (Wang et al. 2018): RRDB G, VGG-style D on the target alone, relativistic GAN (5e-3),
      L1 (1e-2) and the VGG19 conv5_4 perceptual loss (1) — fine-tuned from a PSNR-oriented G.

One step is pix2pix's `optimize_parameters`: G's forward pass (batch norm in training mode,
dropout on); D's update on real and generated pairs (generated treated as constants); then G's
update through the *updated* D on the same forward pass (its vjp). The EMA of G's weights
(`train.ema_kimg`; 0 = none, G itself, as pix2pix) is what samples, metrics and exports use.

Batch norm at sampling time (`sampling.norm`, the `norm` option of `generate`; evaluation and
`jaxgen.translate` take the run's value):
  'running'  the running statistics gathered in training (the official test.py with `--eval`).
  'batch'    each image normalised with its own statistics, as the official test.py does by
             default (batch size 1, the networks left in training mode) and the pix2pix paper
             describes; dropout stays off, so a translation is deterministic (test.py keeps
             dropout on as well: its outputs vary from call to call). The statistics are each
             image's alone (one image at a time), whatever the batch or tile it comes in.
Generators without batch norm (SRResNet, RRDB, instance norm) ignore it.

`model.init_from` starts a run from another run's G and its EMA (`init_fields`; ESRGAN's GAN
stage from the PSNR-oriented RRDB, configs/superres.py:esrgan).
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import recipes
from jaxgen.data import tasks as tasks_lib
from jaxgen.errors import UserError
from jaxgen.objectives import stylegan2 as gan_objective
from jaxgen.objectives import translation as objective

GENERATORS = ('unet_256', 'unet_128', 'unet', 'resnet_9blocks', 'resnet_6blocks', 'srresnet',
              'rrdb')
DISCRIMINATORS = ('patchgan', 'vgg128', 'none')
SCHEDULES = ('constant', 'linear', 'cosine')
NORMS = ('running', 'batch')  # sampling.norm: batch norm's statistics at sampling time


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  g_params: Any
  g_batch_stats: Any         # running batch-norm statistics ({} without batch norm)
  d_params: Any              # {} without a discriminator
  d_batch_stats: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any            # EMA of g_params: samples, metrics and export use these


def learning_rate_schedule(o, num_steps):
  """optax schedule of `optimizer.schedule`: constant; linear (pix2pix's 'linear' policy:
  constant until `optimizer.decay_start` of the run, then linearly to 0 at the end); cosine
  (from lr to 0 over the run)."""
  if o.schedule == 'constant':
    return o.lr
  if o.schedule == 'linear':
    length = max(num_steps - int(round(o.decay_start * num_steps)), 1)
    return lambda count: o.lr * recipes.linear_decay(count, num_steps, length)
  return optax.cosine_decay_schedule(o.lr, max(num_steps, 1))


class Translation(recipes.OnePassSampling):
  """Builds G (and D), the losses and the optimisers from a config (configs/pix2pix.py,
  configs/superres.py)."""

  def __init__(self, config, num_classes, mesh=None):
    del num_classes, mesh  # Translation is conditioned on images, not classes.
    m, obj, o = config.model, config.objective, config.optimizer
    self.task = tasks_lib.create_task(config)
    if self.task is None:
      raise UserError('model.name="translation" needs an image-to-image task: set task.name '
                      f'to one of {", ".join(tasks_lib.TASKS)} (see configs/pix2pix.py)')
    if config.data.use_labels:
      raise UserError('translation runs are conditioned on images, not classes: set '
                      'data.use_labels=False')
    self.num_classes = 0
    for key, value, allowed in (('model.generator', m.generator, GENERATORS),
                                ('model.discriminator', m.discriminator, DISCRIMINATORS),
                                ('objective.gan_loss', obj.gan_loss, objective.GAN_LOSSES),
                                ('objective.pixel_loss', obj.pixel_loss, objective.PIXEL_LOSSES),
                                ('optimizer.schedule', o.schedule, SCHEDULES)):
      if value not in allowed:
        raise UserError(f'{key}={value!r} is not one of {", ".join(allowed)}')
    if (m.discriminator == 'none') != (obj.gan_loss == 'none'):
      raise UserError(f'model.discriminator={m.discriminator!r} with objective.gan_loss='
                      f'{obj.gan_loss!r}: an adversarial loss needs a discriminator and a '
                      'discriminator needs an adversarial loss; set both or neither to "none"')
    if not 0 <= o.decay_start <= 1:
      raise UserError(f'optimizer.decay_start={o.decay_start} is a fraction of the run: give a '
                      'value in [0, 1]')
    sampling = config.get('sampling', {})  # Absent in runs older than sampling.norm.
    unknown = sorted(set(sampling.keys()) - {'norm'})
    if unknown:
      raise UserError(f'sampling.{unknown[0]} is not a setting of translation runs: their '
                      'only sampling setting is sampling.norm ("running" or "batch")')
    self.norm = self.check_norm(sampling.get('norm', 'running'))
    channels = config.data.channels
    self.channels = channels
    self.scale = self.task.scale
    self.input_channels = self.task.input_channels
    self.train_size = self.task.train_size
    self.generator = self._build_generator(m, channels)
    self.d_conditional = bool(m.d_conditional)
    if self.d_conditional and self.scale != 1 and m.discriminator != 'none':
      raise UserError('model.d_conditional=True concatenates the input and the image for D, '
                      f'but a super-resolution input is {self.scale}× smaller: set '
                      'model.d_conditional=False')
    self.d_channels = channels + (self.input_channels if self.d_conditional else 0)
    self.discriminator = self._build_discriminator(m)
    self._check_sizes(config)
    self.gan_loss = obj.gan_loss
    self.gan_weight = float(obj.gan_weight)
    self.pixel_loss = obj.pixel_loss
    self.pixel_weight = float(obj.pixel_weight)
    self.perceptual_weight = float(obj.perceptual_weight)
    self.perceptual = None  # Loaded by prepare_training: sampling does not need VGG weights.
    self._objective = obj
    schedule = learning_rate_schedule(o, config.train.num_steps)
    self.learning_rate = schedule if callable(schedule) else (lambda count: schedule)
    self.g_tx = optax.adam(schedule, o.b1, o.b2, eps=o.eps)
    self.d_tx = optax.adam(schedule, o.b1, o.b2, eps=o.eps)
    self.batch_size = config.train.batch_size
    self.ema_kimg = config.train.ema_kimg
    self.ema_rampup = config.train.get('ema_rampup', 0.0) or None

  # ----------------------------------------------------------------------------------------------
  # Networks.

  def _build_generator(self, m, channels):
    # pylint: disable=import-outside-toplevel
    from jaxgen.models import pix2pix, resnet_generator, srnet
    dtype = jnp.dtype(m.dtype)
    name = m.generator
    if name != 'srresnet' and name != 'rrdb' and self.scale != 1:
      raise UserError(f'model.generator={name!r} keeps the image size, but task sr scales it by '
                      f'{self.scale}: use "srresnet" or "rrdb" for super-resolution')
    if name in ('srresnet', 'rrdb') and self.scale == 1:
      raise UserError(f'model.generator={name!r} up-samples; for task {self.task.name!r} use a '
                      'U-Net ("unet", "unet_256", "unet_128") or a ResNet generator')
    if name.startswith('unet'):
      self.num_downs = (pix2pix.UNET_PRESETS[name] if name in pix2pix.UNET_PRESETS
                        else int(m.num_downs))
      if self.num_downs < 5:
        raise UserError(f'model.num_downs={self.num_downs}: the official U-Net has at least 5 '
                        'levels (its four outer ones and the innermost); use 5 or more')
      return pix2pix.UNetGenerator(out_channels=self.task.output_channels,
                                   num_downs=self.num_downs,
                                   ngf=m.ngf, norm=m.norm, use_dropout=m.use_dropout,
                                   dtype=dtype)
    self.num_downs = 0
    if name.startswith('resnet'):
      self.num_downs = 2
      return resnet_generator.ResnetGenerator(
          out_channels=self.task.output_channels, ngf=m.ngf,
          n_blocks=resnet_generator.RESNET_PRESETS[name],
          norm=m.norm, use_dropout=m.use_dropout, dtype=dtype)
    if name == 'srresnet':
      return srnet.SRResNet(num_in_ch=self.input_channels, num_out_ch=channels,
                            num_feat=m.num_feat, num_block=m.num_block, upscale=self.scale)
    return srnet.RRDBNet(num_in_ch=self.input_channels, num_out_ch=channels,
                         num_feat=m.num_feat, num_block=m.num_block,
                         num_grow_ch=m.num_grow_ch, scale=self.scale)

  def _build_discriminator(self, m):
    # pylint: disable=import-outside-toplevel
    from jaxgen.models import pix2pix, srnet
    if m.discriminator == 'patchgan':
      return pix2pix.PatchDiscriminator(ndf=m.ndf, n_layers=m.n_layers, norm=m.d_norm)
    if m.discriminator == 'vgg128':
      return srnet.VGGStyleDiscriminator(num_in_ch=self.d_channels, num_feat=m.ndf,
                                         input_size=128)
    return None

  def _check_sizes(self, config):
    """The training crop and the evaluation images must fit the networks."""
    m = config.model
    size, key = self.train_size, 'task.crop' if self.task.crop else 'data.resolution'
    multiple = 2 ** self.num_downs
    if size % multiple:
      raise UserError(f'{key}={size} does not fit model.generator={m.generator!r}: its '
                      f'{self.num_downs} down-samplings need a multiple of {multiple} pixels')
    if m.discriminator == 'patchgan':
      # k4 s2 p1 convs halve the size n_layers times, then two k4 s1 p1 convs take 1 each.
      smallest = 3 * 2 ** m.n_layers
      if size < smallest:
        raise UserError(f'a crop of {size} px is smaller than the PatchGAN discriminator '
                        f'(model.n_layers={m.n_layers}) can see: use task.crop (or '
                        f'data.resolution) ≥ {smallest}, or fewer layers')
    if m.discriminator == 'vgg128' and size != 128:
      raise UserError(f'model.discriminator="vgg128" takes 128×128 images, not {size}: set '
                      'task.crop=128')

  def _build_perceptual(self, obj):
    """fn(images) → the VGG features of the perceptual loss, with ImageNet weights found by
    jaxgen.pretrained (UserError naming the file when they are missing)."""
    from jaxgen.models import vgg  # pylint: disable=import-outside-toplevel
    depth = {'vgg16': 16, 'vgg19': 19}.get(obj.perceptual_network)
    if depth is None:
      raise UserError(f'objective.perceptual_network={obj.perceptual_network!r}: use "vgg16" or '
                      '"vgg19"')
    layers = tuple(obj.perceptual_layers)
    try:
      vgg.check_outputs(depth, layers)
    except UserError as e:
      raise UserError(f'objective.perceptual_layers={layers}: {e}') from None
    params = vgg.load_params(depth, obj.get('vgg_weights', '') or None)
    net = vgg.VGG(depth=depth, outputs=layers)
    return lambda images: net.apply({'params': params}, images)

  def _g_apply(self, variables, x, train, rng=None):
    """G(x) → (images, new batch stats or {}). Every generator is called as G(x, train): batch
    norm and dropout in training mode or not (SRResNet and RRDBNet have neither). The images are
    the task's composition of the input and G's output (`Task.compose`: colourisation's chroma
    joined to the input's luma)."""
    rngs = {'dropout': rng} if train and rng is not None else {}
    if not variables.get('batch_stats'):
      out, stats = self.generator.apply({'params': variables['params']}, x, train=train,
                                        rngs=rngs), {}
    elif not train:
      out, stats = self.generator.apply(variables, x, train=False), variables['batch_stats']
    else:
      out, updates = self.generator.apply(variables, x, train=True, mutable=['batch_stats'],
                                          rngs=rngs)
      stats = updates['batch_stats']
    return self.task.compose(x, out), stats

  def _g_own_statistics(self, variables, x):
    """G(x) with batch norm normalising each image by its own statistics, dropout off
    (`sampling.norm='batch'`): one image at a time in training mode, the statistics' updates
    discarded. Dropout has no variables, so G without it takes the same ones."""
    generator = self.generator.clone(use_dropout=False)

    def one(image):
      out, _ = generator.apply(variables, image[None], train=True, mutable=['batch_stats'])
      return out[0]

    return self.task.compose(x, jax.vmap(one)(x))

  def _d_apply(self, params, batch_stats, images):
    """D's logits (training mode) → (logits, new batch stats or {})."""
    if batch_stats:
      logits, updates = self.discriminator.apply({'params': params, 'batch_stats': batch_stats},
                                                 images, train=True, mutable=['batch_stats'])
      return logits, updates['batch_stats']
    return self.discriminator.apply({'params': params}, images, train=True), {}

  # ----------------------------------------------------------------------------------------------
  # Training.

  def prepare_training(self):
    """Loads the perceptual loss's VGG weights (objective.perceptual_weight > 0): UserError
    naming the file when they cannot be found."""
    if self.perceptual_weight > 0 and self.perceptual is None:
      self.perceptual = self._build_perceptual(self._objective)

  def step_variant(self, step):
    """One update program for every step."""
    del step
    return ()

  def init_state(self, rng):
    g_key, d_key = jax.random.split(jax.random.fold_in(rng, 1 << 30))
    small = self.train_size
    x = jnp.zeros((1, self.task.input_size(small), self.task.input_size(small),
                   self.input_channels))
    g_vars = self.generator.init({'params': g_key, 'dropout': g_key}, x, train=False)
    d_params, d_stats = {}, {}
    if self.discriminator is not None:
      d_vars = self.discriminator.init(d_key, jnp.zeros((1, small, small, self.d_channels)),
                                       train=False)
      d_params, d_stats = d_vars['params'], d_vars.get('batch_stats', {})
    return TrainState(
        step=jnp.zeros((), jnp.int32), rng=rng,
        g_params=g_vars['params'], g_batch_stats=g_vars.get('batch_stats', {}),
        d_params=d_params, d_batch_stats=d_stats,
        g_opt_state=self.g_tx.init(g_vars['params']), d_opt_state=self.d_tx.init(d_params),
        ema_params=g_vars['params'])

  def _d_input(self, inputs, images):
    return jnp.concatenate([inputs, images], axis=-1) if self.d_conditional else images

  def train_step(self, state, batch, variant=()):
    """One D update (with a discriminator) and one G update, then the EMA.

    batch: {'input': float32 [B, h, w, c_in], 'image': uint8 [B, H, W, C] the targets}."""
    del variant
    dropout_key = jax.random.fold_in(state.rng, state.step)
    inputs = batch['input'].astype(jnp.float32)
    target = batch['image'].astype(jnp.float32) / 127.5 - 1.0

    def generate(g_params):
      return self._g_apply({'params': g_params, 'batch_stats': state.g_batch_stats}, inputs,
                           train=True, rng=dropout_key)

    fake, g_vjp, g_batch_stats = jax.vjp(generate, state.g_params, has_aux=True)
    metrics = {}
    d_params, d_batch_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
    if self.discriminator is not None:
      def d_loss_fn(d_params):
        real_logits, stats = self._d_apply(d_params, state.d_batch_stats,
                                           self._d_input(inputs, target))
        fake_logits, stats = self._d_apply(d_params, stats, self._d_input(
            inputs, jax.lax.stop_gradient(fake)))
        loss = objective.d_loss(self.gan_loss, real_logits, fake_logits)
        return loss, (stats, real_logits, fake_logits)

      (d_loss, (d_batch_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
          d_loss_fn, has_aux=True)(state.d_params)
      d_updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state, state.d_params)
      d_params = optax.apply_updates(state.d_params, d_updates)
      metrics.update({'loss/d': d_loss, 'logits/real': jnp.mean(real_logits),
                      'logits/fake': jnp.mean(fake_logits),
                      'grad_norm/d': optax.global_norm(d_grads)})

    def g_loss_fn(images):
      terms = {'pixel': objective.pixel_loss(self.pixel_loss, images, target)}
      total = self.pixel_weight * terms['pixel']
      if self.discriminator is not None:
        fake_logits, _ = self._d_apply(d_params, d_batch_stats, self._d_input(inputs, images))
        real_logits = None
        if self.gan_loss == 'ragan':
          real_logits, _ = self._d_apply(d_params, d_batch_stats, self._d_input(inputs, target))
          real_logits = jax.lax.stop_gradient(real_logits)
        terms['gan'] = objective.g_loss(self.gan_loss, real_logits, fake_logits)
        total = total + self.gan_weight * terms['gan']
      if self.perceptual_weight > 0:
        if self.perceptual is None:
          raise RuntimeError('call prepare_training() before tracing train_step')
        terms['perceptual'] = objective.perceptual_loss(self.perceptual, images, target)
        total = total + self.perceptual_weight * terms['perceptual']
      return total, terms

    (g_loss, terms), dfake = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
    (g_grads,) = g_vjp(dfake)
    g_updates, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    shown = state.step.astype(jnp.float32) * self.batch_size
    beta = gan_objective.ema_beta(self.batch_size, self.ema_kimg, self.ema_rampup, shown)
    ema_params = gan_objective.ema_update(state.ema_params, g_params, beta)
    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats,
        d_params=d_params, d_batch_stats=d_batch_stats, g_opt_state=g_opt_state,
        d_opt_state=d_opt_state, ema_params=ema_params)
    metrics.update({'loss/g': g_loss, 'grad_norm/g': optax.global_norm(g_grads),
                    'lr': self.learning_rate(state.step)})
    metrics.update({f'loss/{k}': v for k, v in terms.items()})
    return new_state, metrics

  # ----------------------------------------------------------------------------------------------
  # Sampling.

  @property
  def progress_metrics(self):
    """The metrics of `train_step` the progress bar shows."""
    return (('loss/d', 'loss/gan') if self.discriminator is not None else ()) + ('loss/pixel',)

  # The parts of the train state that `generate` reads (what `jaxgen.export` writes).
  generator_fields = ('ema_params', 'g_batch_stats')
  # What `model.init_from` takes from another run: G, its batch-norm statistics and its EMA.
  init_fields = ('g_params', 'g_batch_stats', 'ema_params')
  # Keyword options of `generate` beyond (state, inputs, labels): config.sampling's `norm`.
  sampling_options = ('norm',)

  @staticmethod
  def check_norm(norm):
    if norm not in NORMS:
      raise UserError(f'sampling.norm={norm!r}: use "running" (batch norm\'s running '
                      'statistics) or "batch" (each image\'s own, as pix2pix\'s test.py)')
    return norm

  def generate(self, state, inputs, labels=None, norm=None):
    """The EMA generator: the task's inputs [N, h, w, c_in] (pixels in [-1, 1]) → images
    [N, H, W, C] in ≈ [-1, 1] (inpainting: the input's known pixels with the generator's in the
    holes, `Task.finish`). `norm`: batch norm's statistics, 'running' or 'batch' (each image's
    own; the module docstring); None = the run's sampling.norm."""
    del labels
    norm = self.norm if norm is None else self.check_norm(norm)
    variables = {'params': state.ema_params, 'batch_stats': state.g_batch_stats}
    inputs = jnp.asarray(inputs, jnp.float32)
    if norm == 'batch' and state.g_batch_stats:
      outputs = self._g_own_statistics(variables, inputs)
    else:
      outputs = self._g_apply(variables, inputs, train=False)[0]
    return self.task.finish(inputs, outputs)

  def param_count(self, state):
    counts = {'generator': recipes.count_params(state.g_params)}
    if self.discriminator is not None:
      counts['discriminator'] = recipes.count_params(state.d_params)
    return counts
