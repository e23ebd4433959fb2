"""StyleGAN2-ADA recipe: train state, the jitted update step with lazy regularisation, sampling.

One training step is the official loop's four phases on one minibatch (NVlabs'
`training/training_loop.py`), each an Adam update of its own:

  1. Gmain  G minimises softplus(−D(aug(G(z)))), style mixing with `style_mixing_prob`;
  2. Greg   every `pl_interval` steps: path-length penalty · pl_weight · pl_interval on
            batch/pl_batch_shrink fresh samples (running mean `pl_mean` in the state);
  3. Dmain  D minimises softplus(D(aug(G(z)))) + softplus(−D(aug(x))); this pass's mapping
            updates the tracked `w_avg` (as the stylegan3 repository's loop does);
  4. Dreg   every `r1_interval` steps: (γ/2)·‖∇ₓD(aug(x))‖² · r1_interval on the reals.

Both optimisers use Adam's lazy-regularisation correction (lr·c, betas^c, c = I/(I+1)). After the
phases the generator EMA is updated (half-life `ema_kimg`, optional ramp-up; buffers are G's),
and every `augment.interval` steps ADA's p moves towards `augment.target` from the signs of the
real logits of the Dmain and Dreg passes. `objective.loss` may swap the official logistic
loss of Gmain and Dmain for the hinge or least-squares loss (jaxgen/objectives/gan_losses.py);
R1 stays, and ADA then reads the signs about the logit halfway between the loss's targets.
Everything here is a pure function of the state: the
step number picks the variant (which regularisers run), so the training loop jits one program
per variant and a resumed run repeats exactly the same updates.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxgen import parallel, recipes
from jaxgen.augment import ada
from jaxgen.errors import UserError
from jaxgen.models import stylegan2 as sg
from jaxgen.objectives import stylegan2 as objective


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed steps (minibatches)
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  g_params: Any
  g_buffers: Any             # w_avg (truncation) and noise_const; not trained
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any            # EMA of g_params: samples, metrics and export use these
  pl_mean: jax.Array         # float32 [], running mean of path lengths
  ada_p: jax.Array           # float32 [], augmentation probability
  ada_sign_sum: jax.Array    # float32 [], Σ sign(D(real)) since the last p update
  ada_count: jax.Array       # float32 [], how many logits went into ada_sign_sum
  last_r1: jax.Array         # float32 [], mean R1 penalty of the latest Dreg (for logs)
  last_pl: jax.Array         # float32 [], mean path-length penalty of the latest Greg


def mbstd_num_splits(config, mesh=None):
  """Parts of the batch within which minibatch-stddev groups form: `model.mbstd_num_splits`, or
  (0) one per device, as the official code groups each GPU's sub-batch."""
  splits = config.model.get('mbstd_num_splits', 0)
  if splits < 0:
    raise UserError(f'model.mbstd_num_splits={splits} must be >= 0 (0 = one per device)')
  return splits or (1 if mesh is None else int(mesh.devices.size))


def validate(config, num_classes, mesh=None):
  """Checks the config's StyleGAN2 settings before anything is compiled (UserError)."""
  res = config.data.resolution
  sg.check_resolution(res, 'StyleGAN2 (data.resolution)')
  obj = config.objective
  if obj.r1_gamma < 0 or obj.pl_weight < 0:
    raise UserError(f'objective.r1_gamma ({obj.r1_gamma}) and objective.pl_weight '
                    f'({obj.pl_weight}) must be >= 0')
  for name in ('r1_interval', 'pl_interval'):
    if obj[name] < 1:
      raise UserError(f'objective.{name}={obj[name]} must be >= 1 (steps between lazy '
                      'regularisation passes; 1 = every step)')
  if not 0 <= obj.style_mixing_prob <= 1:
    raise UserError(f'objective.style_mixing_prob={obj.style_mixing_prob} is outside [0, 1]')
  loss = obj.get('loss', 'nonsaturating')
  if loss == 'wgan-gp':
    raise UserError("objective.loss='wgan-gp' is not supported by StyleGAN2 (its critic needs "
                    "the interpolates' gradient penalty, StyleGAN2 constrains D with R1): use "
                    "'nonsaturating', 'hinge' or 'lsgan', or configs/dcgan.py:wgan_gp")
  if loss not in objective.LOSSES:
    raise UserError(f'objective.loss={loss!r} is not a StyleGAN2 loss: use one of '
                    + ', '.join(repr(n) for n in objective.LOSSES))
  if config.model.get('spectral_norm', False):
    raise UserError('model.spectral_norm=True is not supported by StyleGAN2 (R1 regularises its '
                    'D instead): set it to False, or train configs/dcgan.py:sn_hinge')
  batch = config.train.batch_size
  group = config.model.mbstd_group_size
  splits = mbstd_num_splits(config, mesh)
  if batch % splits:
    raise UserError(f'train.batch_size={batch} does not split into model.mbstd_num_splits='
                    f'{splits} equal parts (0 = one per device): change one of them')
  per_split = batch // splits
  if group and per_split % min(group, per_split):
    raise UserError(f'train.batch_size={batch} is not a multiple of model.mbstd_group_size='
                    f'{group} on each of {splits} device(s)/splits (the per-device batch is '
                    f'{per_split}): change one of them')
  pl_batch = batch // obj.pl_batch_shrink if obj.pl_batch_shrink else 0
  if obj.pl_weight > 0 and pl_batch < 1:
    raise UserError(f'objective.pl_batch_shrink={obj.pl_batch_shrink} leaves no samples of the '
                    f'batch of {batch} for the path-length penalty: use 1 <= shrink <= batch')
  recipes.class_count(config, num_classes)  # UserError: labels from a source without.
  a = config.augment
  return ada.AdaSettings(mode=a.mode, p=a.p, target=a.target, interval=a.interval,
                         speed_kimg=a.speed_kimg, pipeline=a.pipeline)


class StyleGAN2(recipes.OnePassSampling):
  """Builds the StyleGAN2 networks and the update step from a config (configs/stylegan.py)."""

  def __init__(self, config, num_classes, mesh=None):
    self.augment = validate(config, num_classes, mesh)
    m, o, obj = config.model, config.optimizer, config.objective
    res = config.data.resolution
    self.conditional = config.data.use_labels
    self.num_classes = recipes.class_count(config, num_classes)
    self.image_shape = (res, res, config.data.channels)
    self.batch_size = config.train.batch_size
    self.z_dim = m.z_dim
    self.generator = sg.Generator(
        resolution=res, img_channels=config.data.channels, z_dim=m.z_dim, w_dim=m.w_dim,
        c_dim=self.num_classes, num_mapping_layers=m.num_mapping_layers,
        mapping_lr_multiplier=m.mapping_lr_multiplier, channel_base=m.channel_base,
        channel_max=m.channel_max, num_bf16_res=m.num_bf16_res,
        conv_clamp=m.conv_clamp or None)
    self.discriminator = sg.Discriminator(
        resolution=res, img_channels=config.data.channels, c_dim=self.num_classes,
        architecture=m.d_architecture, channel_base=m.channel_base, channel_max=m.channel_max,
        num_bf16_res=m.num_bf16_res, conv_clamp=m.conv_clamp or None,
        mbstd_group_size=m.mbstd_group_size or None, mbstd_num_channels=m.mbstd_num_channels,
        mbstd_num_splits=mbstd_num_splits(config, mesh))
    self.obj = obj
    self.loss = obj.get('loss', 'nonsaturating')
    self.pl_batch = max(self.batch_size // obj.pl_batch_shrink, 1) if obj.pl_weight > 0 else 0
    self.g_tx = self._adam(o.g_lr, o, obj.pl_interval)
    self.d_tx = self._adam(o.d_lr, o, obj.r1_interval)
    self.ema_kimg = config.train.ema_kimg
    self.ema_rampup = config.train.ema_rampup or None
    self._constrain = parallel.batch_constraint(mesh)

  @staticmethod
  def _adam(lr, o, interval):
    lr, (b1, b2) = objective.lazy_regularization_adam_hparams(lr, (o.b1, o.b2), interval)
    return optax.adam(lr, b1, b2, eps=o.eps)

  # ----------------------------------------------------------------------------------------------

  def prepare_training(self):
    """Nothing beyond the networks is needed to train."""

  def step_variant(self, step):
    """(run path length, run R1) at `step`: the lazy regularisers' phases, as static flags."""
    obj = self.obj
    do_pl = obj.pl_weight > 0 and step % obj.pl_interval == 0
    do_r1 = obj.r1_gamma > 0 and step % obj.r1_interval == 0
    return (bool(do_pl), bool(do_r1))

  def init_state(self, rng):
    g_key, d_key = jax.random.split(jax.random.fold_in(rng, 1 << 30))
    g_vars = sg.init_generator(self.generator, g_key)
    d_vars = sg.init_discriminator(self.discriminator, d_key)
    zero = jnp.zeros((), jnp.float32)
    return TrainState(
        step=jnp.zeros((), jnp.int32), rng=rng,
        g_params=g_vars['params'], g_buffers=g_vars[sg.BUFFERS], d_params=d_vars['params'],
        g_opt_state=self.g_tx.init(g_vars['params']),
        d_opt_state=self.d_tx.init(d_vars['params']),
        ema_params=g_vars['params'], pl_mean=zero,
        ada_p=jnp.asarray(self.augment.initial_p, jnp.float32),
        ada_sign_sum=zero, ada_count=zero, last_r1=zero, last_pl=zero)

  def latents(self, rng, n):
    return jax.random.normal(rng, (n, self.z_dim))

  def _labels(self, labels):
    return labels if self.num_classes else None

  # ----------------------------------------------------------------------------------------------
  # Network calls as the loss sees them.

  def _map(self, params, buffers, z, c, rng, update_w_avg=False):
    """Mapping with style mixing: ws [N, num_ws, w_dim] (and the new buffers)."""
    variables = {'params': params, sg.BUFFERS: buffers}
    ws, updates = self.generator.apply(variables, z, c, update_w_avg=update_w_avg,
                                       method='map', mutable=[sg.BUFFERS])
    if self.obj.style_mixing_prob > 0:
      z_key, mix_key = jax.random.split(rng)
      ws_mix = self.generator.apply(variables, self.latents(z_key, z.shape[0]), c, method='map')
      ws = objective.style_mix(mix_key, ws, ws_mix, self.obj.style_mixing_prob)
    return ws, updates[sg.BUFFERS]

  def _synthesize(self, params, buffers, ws, rng):
    return self.generator.apply({'params': params, sg.BUFFERS: buffers}, ws, rngs={'noise': rng},
                                method='synthesize', noise_mode='random')

  def _discriminate(self, d_params, images, c, rng, p):
    """D on augmented images: logits [N]. With p = 0 the pipeline is skipped (the identity)."""
    if self.augment.mode != 'noaug':
      with jax.named_scope('ADA'):
        images = jax.lax.cond(p > 0, lambda x: self.augment(x, rng, p), lambda x: x, images)
    return self.discriminator.apply({'params': d_params}, images, c)

  def _generate_fakes(self, g_params, buffers, n, c, rng, update_w_avg=False):
    z_key, map_key, noise_key = jax.random.split(rng, 3)
    z = self._constrain(self.latents(z_key, n))
    ws, buffers = self._map(g_params, buffers, z, c, map_key, update_w_avg)
    return self._synthesize(g_params, buffers, ws, noise_key), buffers

  # ----------------------------------------------------------------------------------------------

  def _real_sign(self, logits):
    """sign(D(x) − m), ADA's statistic, with m the loss's logit midpoint (0 but for LSGAN)."""
    midpoint = objective.LOGIT_MIDPOINT[self.loss]
    return jnp.sign(logits - midpoint if midpoint else logits)

  def train_step(self, state, batch, variant=(False, False)):
    """One minibatch: Gmain, [Greg], Dmain, [Dreg], EMA, ADA. batch: {'image': uint8 [B,R,R,C],
    'label': int32 [B]}. Returns (new state, scalar metrics)."""
    do_pl, do_r1 = variant
    obj = self.obj
    keys = jax.random.split(jax.random.fold_in(state.rng, state.step), 8)
    real = batch['image'].astype(jnp.float32) / 127.5 - 1.0
    c = self._labels(batch['label'])
    batch_size = real.shape[0]
    p = state.ada_p
    g_params, d_params, buffers = state.g_params, state.d_params, state.g_buffers

    # Gmain.
    def g_main_loss(params):
      fake, _ = self._generate_fakes(params, buffers, batch_size, c, keys[0])
      logits = self._discriminate(d_params, fake, c, keys[1], p)
      return objective.generator_loss(logits, self.loss), logits

    # Named scopes label each phase's ops in profiles (python -m jaxgen.bench --profile).
    with jax.named_scope('Gmain'):
      (g_loss, fake_logits), g_grads = jax.value_and_grad(g_main_loss, has_aux=True)(g_params)
      updates, g_opt_state = self.g_tx.update(g_grads, state.g_opt_state, g_params)
      g_params = optax.apply_updates(g_params, updates)

    # Greg: path length on batch / pl_batch_shrink fresh samples.
    pl_mean, last_pl = state.pl_mean, state.last_pl
    if do_pl:
      pl_c = None if c is None else c[:self.pl_batch]

      def g_pl_loss(params):
        z_key, map_key, noise_key, pl_key = jax.random.split(keys[2], 4)
        z = self._constrain(self.latents(z_key, self.pl_batch))
        ws, _ = self._map(params, buffers, z, pl_c, map_key)
        synthesis_fn = lambda w: self._synthesize(params, buffers, w, noise_key)
        penalty, new_mean, _ = objective.path_length_penalty(synthesis_fn, ws, pl_mean, pl_key,
                                                             obj.pl_decay)
        mean_penalty = jnp.mean(penalty)
        return mean_penalty * obj.pl_weight * obj.pl_interval, (new_mean, mean_penalty)

      with jax.named_scope('Greg'):
        (_, (pl_mean, last_pl)), pl_grads = jax.value_and_grad(g_pl_loss, has_aux=True)(
            g_params)
        updates, g_opt_state = self.g_tx.update(pl_grads, g_opt_state, g_params)
        g_params = optax.apply_updates(g_params, updates)

    # Dmain: fakes from the updated G (this mapping pass updates w_avg), reals.
    with jax.named_scope('Dmain'):
      fake, buffers = self._generate_fakes(g_params, buffers, batch_size, c, keys[3],
                                           update_w_avg=True)
      fake = jax.lax.stop_gradient(fake)

      def d_main_loss(params):
        fake_logits = self._discriminate(params, fake, c, keys[4], p)
        real_logits = self._discriminate(params, real, c, keys[5], p)
        return objective.discriminator_loss(real_logits, fake_logits, self.loss), (
            real_logits, fake_logits)

      (d_loss, (real_logits, d_fake_logits)), d_grads = jax.value_and_grad(
          d_main_loss, has_aux=True)(d_params)
      updates, d_opt_state = self.d_tx.update(d_grads, state.d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
    sign_sum = state.ada_sign_sum + jnp.sum(self._real_sign(real_logits))
    count = state.ada_count + batch_size

    # Dreg: lazy R1 on the (augmented) reals.
    last_r1 = state.last_r1
    if do_r1:
      def d_r1_loss(params):
        d_fn = lambda images: self._discriminate(params, images, c, keys[6], p)
        penalty, logits = objective.r1_penalty(d_fn, real)
        mean_penalty = jnp.mean(penalty)
        return mean_penalty * (obj.r1_gamma / 2) * obj.r1_interval, (mean_penalty,
                                                                              logits)

      with jax.named_scope('Dreg'):
        (_, (last_r1, r1_logits)), r1_grads = jax.value_and_grad(d_r1_loss, has_aux=True)(
            d_params)
        updates, d_opt_state = self.d_tx.update(r1_grads, d_opt_state, d_params)
        d_params = optax.apply_updates(d_params, updates)
      sign_sum = sign_sum + jnp.sum(self._real_sign(r1_logits))
      count = count + batch_size

    # Generator EMA: half-life ema_kimg, ramp-up on the images shown before this step.
    beta = objective.ema_beta(batch_size, self.ema_kimg, self.ema_rampup,
                              state.step.astype(jnp.float32) * batch_size)
    with jax.named_scope('EMA'):
      ema_params = objective.ema_update(state.ema_params, g_params, beta)

    # ADA: p moves every `interval` steps, from the mean sign of the real logits.
    ada_p = p
    if self.augment.adaptive:
      update_now = (state.step + 1) % self.augment.interval == 0
      new_p = ada.ada_update(p, sign_sum, count, batch_size, self.augment.target,
                             self.augment.interval, self.augment.speed_kimg)
      ada_p = jnp.where(update_now, new_p, p)
      sign_sum = jnp.where(update_now, 0.0, sign_sum)
      count = jnp.where(update_now, 0.0, count)

    new_state = state.replace(
        step=state.step + 1, g_params=g_params, g_buffers=buffers, d_params=d_params,
        g_opt_state=g_opt_state, d_opt_state=d_opt_state, ema_params=ema_params,
        pl_mean=pl_mean, ada_p=ada_p, ada_sign_sum=sign_sum, ada_count=count,
        last_r1=last_r1, last_pl=last_pl)
    metrics = {
        'loss/d': d_loss, 'loss/g': g_loss,
        'loss/r1_penalty': last_r1, 'loss/pl_penalty': last_pl, 'pl/mean': pl_mean,
        'logits/real': jnp.mean(real_logits), 'logits/fake': jnp.mean(d_fake_logits),
        'logits/fake_for_g': jnp.mean(fake_logits),
        'augment/p': ada_p, 'augment/real_sign': jnp.mean(self._real_sign(real_logits)),
        'grad_norm/d': optax.global_norm(d_grads), 'grad_norm/g': optax.global_norm(g_grads),
        'ema/beta': beta,
    }
    return new_state, metrics

  # ----------------------------------------------------------------------------------------------

  # Samples are made from latents, not from a task's inputs.
  task = None
  # The metrics of `train_step` the progress bar shows.
  progress_metrics = ('loss/d', 'loss/g')
  # The parts of the train state that `generate` reads (what `jaxgen.export` writes).
  generator_fields = ('ema_params', 'g_buffers')
  # Keyword options of `generate` beyond (state, z, labels), for `jaxgen.generate`'s flags.
  sampling_options = ('truncation_psi', 'truncation_cutoff', 'noise_mode', 'noise_key')

  def generate(self, state, z, labels, truncation_psi=1.0, truncation_cutoff=None,
               noise_mode='const', noise_key=None):
    """EMA generator: z [N, z_dim], labels int [N] → images [N, R, R, C] float32 in ≈ [−1, 1].

    ψ < 1 truncates the first `truncation_cutoff` ws (all if None) towards the tracked w_avg.
    noise_mode: 'const' (the noise buffers fixed at init), 'random' (drawn from `noise_key`)
    or 'none'.
    """
    variables = {'params': state.ema_params, sg.BUFFERS: state.g_buffers}
    rngs = {'noise': noise_key} if noise_mode == 'random' else None
    return self.generator.apply(variables, z, self._labels(labels),
                                truncation_psi=truncation_psi,
                                truncation_cutoff=truncation_cutoff, noise_mode=noise_mode,
                                rngs=rngs)

  def param_count(self, state):
    return {'generator': recipes.count_params(state.g_params),
            'discriminator': recipes.count_params(state.d_params)}
