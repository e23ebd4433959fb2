"""Diffusion recipe (EDM, Karras et al. 2022): train state, the jitted update, sampling.

One training step is EDM's `training/training_loop.py` iteration on one minibatch (EDM2's,
with `model.arch='edm2'`: its magnitude-preserving U-Net, jaxgen/models/edm2unet.py):

  0. EDM2's forced weight normalisation: every `mp_weight` re-normalised to unit RMS per output
     channel, as the official forward pass does in training mode (SongUNet has none);
  1. images → [-1, 1]; with `augment.p` > 0 EDM's non-leaking augmentation, whose labels the
     network sees (jaxgen/augment/edm.py);
  2. the loss of `objective.name` (jaxgen/objectives/diffusion.py): a noise level σ per image,
     n ~ N(0, σ²), loss λ(σ)·‖D(y + n; σ) − y‖², summed over pixels and averaged over images
     ('edm2': divided by e^u(σ) of the learned uncertainty, plus u);
  3. NaN/Inf gradient entries replaced (0, ±1e5) as the official loop does, then Adam with the
     learning rate ramped linearly over `optimizer.lr_rampup_kimg` and, with
     `optimizer.lr_cooldown` > 0 (not in EDM, whose lr stays constant), decayed linearly to 0
     over that last fraction of `train.num_steps`; with `optimizer.lr_decay_kimg` > 0, EDM2's
     lr/√(images/decay) once past it;
  4. the EMA of the weights, half-life `train.ema_kimg` with ramp-up `train.ema_rampup`; with
     `train.ema_std` (σ_rel, e.g. EDM2's 0.05 and 0.10), also EDM2's power-function EMAs,
     β = (1 − 1/(updates so far))^(γ+1), saved every `train.ema_snapshot_kimg` as snapshots
     (`snapshots`) from which `python -m jaxgen.phema` reconstructs any σ_rel post hoc
     (jaxgen/posthoc_ema.py).

Sampling (`generate`) runs a sampler of jaxgen/samplers/diffusion.py on the EMA denoiser, one
compiled program per setting: latents z ~ N(0, I) of the image's shape, scaled by σ_max inside.
Classifier-free guidance (conditional runs): D = D(x; σ) + w·(D(x; σ, c) − D(x; σ)), both
branches in one batched call; w = 1 is the plain conditional denoiser.
"""

import dataclasses
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.augment import edm as edm_augment
from jaxgen import posthoc_ema
from jaxgen import recipes
from jaxgen.errors import UserError
from jaxgen.models import edm2unet
from jaxgen.models import precond as precond_lib
from jaxgen.models import songunet
from jaxgen.objectives import diffusion as objective
from jaxgen.objectives import stylegan2 as gan_objective
from jaxgen.samplers import diffusion as samplers

PRECONDS = ('edm', 'vp', 've')
ARCHS = ('songunet', 'edm2')  # jaxgen/models/songunet.py (EDM), jaxgen/models/edm2unet.py


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key; step keys are fold_in(rng, step)
  params: Any                # the denoiser's weights (float32 masters)
  buffers: Any               # untrained constants (NCSN++'s Fourier frequencies; else empty)
  opt_state: Any
  ema_params: Any            # EMA of params: samples, metrics and export use these


@flax.struct.dataclass
class PowerEMATrainState(TrainState):
  """The train state with EDM2's power-function EMAs (train.ema_std); a subclass, so that
  runs without them keep TrainState's checkpoint layout."""
  power_ema: Any = ()        # tuple: one EMA of params per σ_rel of train.ema_std


# Sampler settings in config.sampling; `generate` takes each as a keyword option.
SAMPLING_FIELDS = ('sampler', 'num_steps', 'sigma_min', 'sigma_max', 'rho', 'S_churn', 'S_min',
                   'S_max', 'S_noise', 'eta', 'guidance')


class Diffusion:
  """Builds the denoiser, its loss, optimiser and samplers from a config
  (configs/diffusion.py)."""

  def __init__(self, config, num_classes, mesh=None):
    m, obj = config.model, config.objective
    res = config.data.resolution
    if m.precond not in PRECONDS:
      raise UserError(f'model.precond={m.precond!r} is not a preconditioning: choose one of '
                      f'{", ".join(PRECONDS)}')
    if obj.name not in objective.LOSSES:
      raise UserError(f'objective.name={obj.name!r} is not a diffusion loss: choose one of '
                      f'{", ".join(sorted(objective.LOSSES))}')
    arch = m.get('arch', 'songunet')  # Runs saved before EDM2 existed: SongUNet.
    if arch not in ARCHS:
      raise UserError(f'model.arch={arch!r} is not a diffusion network: choose one of '
                      f'{", ".join(ARCHS)}')
    channels_per_head = m.get('channels_per_head', 64)  # Runs saved before the field: EDM2's.
    try:
      if arch == 'songunet':
        songunet.check_architecture(res, tuple(m.channel_mult), tuple(m.attn_resolutions),
                                    m.embedding_type, m.encoder_type, m.decoder_type)
      else:
        edm2unet.check_architecture(res, tuple(m.channel_mult), tuple(m.attn_resolutions),
                                    m.model_channels, channels_per_head)
    except UserError as e:  # Name the config keys.
      raise UserError(f'data.resolution={res}, model.channel_mult={tuple(m.channel_mult)}, '
                      f'model.attn_resolutions={tuple(m.attn_resolutions)}: {e}') from None
    self.learned_uncertainty = obj.name in objective.LEARNED_UNCERTAINTY
    logvar_channels = m.get('logvar_channels', 0) if self.learned_uncertainty else 0
    if self.learned_uncertainty and logvar_channels < 1:
      raise UserError(f'objective.name={obj.name!r} learns the loss\'s uncertainty u(σ): set '
                      f'model.logvar_channels > 0 (EDM2: 128), not {logvar_channels}')
    if arch == 'edm2' and config.augment.p > 0:
      raise UserError(f'model.arch=\'edm2\' takes no augmentation labels: set augment.p=0 '
                      f'(not {config.augment.p}) or use model.arch=\'songunet\'')
    self.conditional = config.data.use_labels
    self.num_classes = recipes.class_count(config, num_classes)
    if not 0 <= m.dropout < 1 or not 0 <= m.label_dropout < 1:
      raise UserError(f'model.dropout={m.dropout} and model.label_dropout={m.label_dropout} '
                      'must be in [0, 1)')
    if not 0 <= config.augment.p <= 1:
      raise UserError(f'augment.p={config.augment.p} is a probability: give a value in [0, 1]')
    if config.optimizer.lr_rampup_kimg < 0:
      raise UserError(f'optimizer.lr_rampup_kimg={config.optimizer.lr_rampup_kimg} is '
                      'negative: the warm-up length in kimg (0 = none)')
    self.image_shape = (res, res, config.data.channels)
    self.augment_p = float(config.augment.p)
    # EDM's CIFAR-10 pipeline (x-flips always, y-flips, scaling, rotation, anisotropy,
    # translation), each transform with probability p; its 9 labels condition the network.
    self.augment_pipe = dataclasses.replace(edm_augment.CIFAR10_PIPE, p=self.augment_p)
    self.augment_dim = self.augment_pipe.label_dim if self.augment_p > 0 else 0
    net_kwargs = dict(
        img_resolution=res, in_channels=config.data.channels, out_channels=config.data.channels,
        label_dim=self.num_classes, augment_dim=self.augment_dim,
        model_channels=m.model_channels, channel_mult=tuple(m.channel_mult),
        channel_mult_emb=m.channel_mult_emb, num_blocks=m.num_blocks,
        attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
        label_dropout=m.label_dropout, resample_filter=tuple(m.resample_filter),
        dtype=jnp.dtype(m.dtype))
    if arch == 'songunet':
      model = songunet.SongUNet(
          **net_kwargs, embedding_type=m.embedding_type,
          channel_mult_noise=m.channel_mult_noise, encoder_type=m.encoder_type,
          decoder_type=m.decoder_type)
    else:  # The noise embedding as wide as the first level, as EDM2's default.
      model = edm2unet.EDM2UNet(**net_kwargs, channels_per_head=channels_per_head)
    self.net = precond_lib.Precond(
        kind=m.precond, sigma_data=m.sigma_data, label_dim=self.num_classes,
        beta_d=obj.vp_beta_d, beta_min=obj.vp_beta_min, epsilon_t=obj.vp_epsilon_t,
        logvar_channels=logvar_channels, model=model)
    self.loss = objective.make_loss(obj.name, **{
        'edm': dict(P_mean=obj.P_mean, P_std=obj.P_std, sigma_data=m.sigma_data),
        'edm2': dict(P_mean=obj.P_mean, P_std=obj.P_std, sigma_data=m.sigma_data),
        'vp': dict(beta_d=obj.vp_beta_d, beta_min=obj.vp_beta_min, epsilon_t=obj.vp_epsilon_t),
        've': dict(sigma_min=obj.ve_sigma_min, sigma_max=obj.ve_sigma_max)}[obj.name])
    o = config.optimizer
    batch = config.train.batch_size
    rampup_images = o.lr_rampup_kimg * 1000
    cooldown = o.get('lr_cooldown', 0.0)  # Runs saved before it existed: constant.
    if not 0 <= cooldown <= 1:
      raise UserError(f'optimizer.lr_cooldown={cooldown} is a fraction of train.num_steps: '
                      'give a value in [0, 1] (0 = constant, as EDM)')
    num_steps = config.train.num_steps
    cooldown_steps = cooldown * num_steps
    decay_images = o.get('lr_decay_kimg', 0.0) * 1000
    if decay_images < 0:
      raise UserError(f'optimizer.lr_decay_kimg={o.lr_decay_kimg} is negative: EDM2\'s '
                      'inverse-square-root decay starts after this many kimg (0 = none)')

    def learning_rate(count):  # count: updates so far; EDM ramps on the images shown so far.
      images = count * batch
      ramp = jnp.minimum(images / max(rampup_images, 1e-8), 1.0)
      # EDM2: lr / √(images / decay_images) once past decay_images (its ref_batches · batch).
      decay = (jax.lax.rsqrt(jnp.maximum(images / decay_images, 1.0)) if decay_images
               else 1.0)
      # Linear to 0 over the last lr_cooldown of the run.
      return o.lr * ramp * decay * recipes.linear_decay(count, num_steps, cooldown_steps)

    self.tx = optax.adam(learning_rate, o.b1, o.b2, eps=o.eps)
    self.learning_rate = learning_rate
    self.batch_size = batch
    self.ema_kimg = config.train.ema_kimg
    self.ema_rampup = config.train.ema_rampup or None
    self._setup_power_ema(config.train)
    self.sampling = {k: config.sampling[k] for k in SAMPLING_FIELDS}
    self.check_sampling(prefix='sampling.')
    del mesh  # Nothing here is created outside the inputs' shardings.

  def _setup_power_ema(self, train):
    """EDM2's power-function EMAs (train.ema_std) and their snapshots' interval in updates."""
    self.ema_std = posthoc_ema.check_std(train.get('ema_std', ()), 'train.ema_std')
    if len(set(self.ema_std)) != len(self.ema_std):
      raise UserError(f'train.ema_std={self.ema_std} names a σ_rel twice: give distinct values')
    # Exponents γ (host float64), and the updates between snapshots (0: none).
    self.ema_exp = tuple(float(g) for g in posthoc_ema.std_to_exp(np.array(self.ema_std)))
    kimg = train.get('ema_snapshot_kimg', 0.0)
    images = round(kimg * 1000)
    if kimg < 0 or abs(kimg * 1000 - images) > 1e-6 * max(images, 1):
      raise UserError(f'train.ema_snapshot_kimg={kimg} must be a whole number of images (in '
                      'thousands) >= 0 (EDM2: 8388.608, i.e. 8 Mi)')
    if images and not self.ema_std:
      raise UserError(f'train.ema_snapshot_kimg={kimg} saves power-function EMAs, but '
                      'train.ema_std is empty: set e.g. train.ema_std=(0.05, 0.1), or 0 here')
    if images % self.batch_size:
      raise UserError(f'train.ema_snapshot_kimg={kimg} ({images} images) is not a whole number '
                      f'of batches of train.batch_size={self.batch_size}: snapshots are taken '
                      'between updates')
    self.snapshot_steps = images // self.batch_size

  # ----------------------------------------------------------------------------------------------

  def check_sampling(self, prefix='', guide=None, **options):
    """The sampler settings: config.sampling with `options` (None = the config's) over it, σ
    range 0 = the sampler's own. UserError for settings this run cannot use (before anything
    is compiled); `prefix` goes before the names in messages. `guide`: a guiding run (see
    `check_guide`), which lets an unconditional run take guidance too."""
    if guide is not None:
      self.check_guide(guide)
    s = {**self.sampling, **{k: v for k, v in options.items() if v is not None}}
    for bound in ('sigma_min', 'sigma_max'):
      s[bound] = s[bound] or None  # 0: the sampler's default range.
    samplers.check_settings(s['sampler'], s['num_steps'], sigma_min=s['sigma_min'],
                            sigma_max=s['sigma_max'], rho=s['rho'], S_churn=s['S_churn'],
                            S_min=s['S_min'], S_max=s['S_max'], S_noise=s['S_noise'],
                            eta=s['eta'], prefix=prefix)
    if not math.isfinite(s['guidance']) or s['guidance'] < 0:
      raise UserError(f'{prefix}guidance={s["guidance"]} must be a finite number >= 0 (1 = '
                      'none)')
    if s['guidance'] != 1 and not self.num_classes and guide is None:
      raise UserError(f'{prefix}guidance={s["guidance"]}: classifier-free guidance needs a '
                      'conditional '
                      'run (data.use_labels=True, trained with model.label_dropout > 0); this '
                      'one is unconditional: leave it at 1, or guide it with another run '
                      '(--guide, EDM2\'s autoguidance)')
    return s

  def check_guide(self, guide):
    """UserError unless `guide` (a jaxgen.trained.TrainedRun: a workdir's checkpoint or an
    exported/post-hoc EMA file) is a diffusion run that can guide this one: the same image shape,
    and this run's classes or none."""
    other = guide.recipe
    if not isinstance(other, Diffusion):
      raise UserError(f'--guide must be a diffusion run; it is a {guide.config.model.name!r} '
                      'run')
    if other.image_shape != self.image_shape:
      raise UserError(f'--guide makes {other.image_shape} images and this run '
                      f'{self.image_shape}: a guiding network must denoise the same images')
    if other.num_classes not in (0, self.num_classes):
      raise UserError(f'--guide is conditional on {other.num_classes} classes and this run on '
                      f'{self.num_classes}: give a guide trained on the same classes, or an '
                      'unconditional one')

  def prepare_training(self):
    """Nothing beyond the networks is needed to train."""

  def step_variant(self, step):
    """One update program for every step."""
    del step
    return ()

  def init_state(self, rng):
    key = jax.random.fold_in(rng, 1 << 30)
    n = 2
    x = jnp.zeros((n,) + self.image_shape)
    sigma = jnp.ones((n,))
    labels = jnp.zeros((n, self.num_classes)) if self.num_classes else None
    augment_labels = jnp.zeros((n, self.augment_dim)) if self.augment_dim else None
    variables = self.net.init(key, x, sigma, labels, augment_labels)
    params = variables['params']
    state = dict(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                 buffers=variables.get(songunet.BUFFERS, {}), opt_state=self.tx.init(params),
                 ema_params=params)
    if self.ema_std:
      return PowerEMATrainState(**state, power_ema=tuple(params for _ in self.ema_std))
    return TrainState(**state)

  def latents(self, rng, n):
    """Unit Gaussian noise of the image's shape; the sampler scales it by σ_max."""
    return jax.random.normal(rng, (n,) + self.image_shape)

  def _one_hot(self, labels):
    return jax.nn.one_hot(labels, self.num_classes) if self.num_classes else None

  def denoise(self, params, buffers, x, sigma, labels=None, augment_labels=None, train=False,
              rng=None, return_logvar=False):
    """D(x; σ) [N, R, R, C] float32; labels one-hot [N, K] or None (zeros: unconditional);
    with `return_logvar`, (D, u(σ)) of EDM2's learned uncertainty."""
    rngs = {'dropout': rng} if train else None
    return self.net.apply({'params': params, songunet.BUFFERS: buffers}, x, sigma, labels,
                          augment_labels, train=train, rngs=rngs, return_logvar=return_logvar)

  def train_step(self, state, batch, variant=()):
    """One Adam update on the loss and the EMA. batch: {'image': uint8 [B,R,R,C], 'label'}."""
    del variant
    loss_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
    images = batch['image'].astype(jnp.float32) / 127.5 - 1.0
    labels = self._one_hot(batch['label'])
    augment = self.augment_pipe if self.augment_p > 0 else None
    # EDM2's forced weight normalisation: its weights are re-normalised before every step, as
    # the official forward pass does in training mode (a no-op for SongUNet's weights).
    params0 = edm2unet.force_weight_norm(state.params)

    def loss_fn(params):
      def denoise(x, sigma, labels, augment_labels):
        return self.denoise(params, state.buffers, x, sigma.reshape(-1), labels,
                            augment_labels, train=True, rng=dropout_key,
                            return_logvar=self.learned_uncertainty)

      per_element = self.loss(denoise, images, labels, loss_key, augment=augment)
      return objective.reduce_loss(per_element), jnp.mean(per_element)

    with jax.named_scope('loss'):
      (_, mean_loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params0)
    # As the official loop: a NaN/Inf gradient entry does not poison the weights.
    grads = jax.tree.map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), grads)
    updates, opt_state = self.tx.update(grads, state.opt_state, params0)
    params = optax.apply_updates(params0, updates)
    shown = state.step.astype(jnp.float32) * self.batch_size  # Images before this step.
    beta = gan_objective.ema_beta(self.batch_size, self.ema_kimg, self.ema_rampup, shown)
    with jax.named_scope('EMA'):
      ema_params = gan_objective.ema_update(state.ema_params, params, beta)
      power = {}
      if self.ema_std:
        power['power_ema'] = tuple(self._power_ema_update(ema, params, exp, state.step)
                                   for ema, exp in zip(state.power_ema, self.ema_exp))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params, **power)
    metrics = {'loss/denoise': mean_loss, 'grad_norm': optax.global_norm(grads),
               'lr': self.learning_rate(state.step), 'ema/beta': beta}
    return new_state, metrics

  @staticmethod
  def _power_ema_update(ema, params, exp, step):
    """One power-function EMA update after update `step` + 1 (EDM2's Eq. 127 with t the images
    after it, Δt one batch): ema + (1 − β)(params − ema), β = (1 − 1/(step + 1))^(γ+1); 1 − β
    as −expm1((γ+1)·log1p(−1/(step + 1))), exact in float32 where 1 − 1/(step + 1) is not
    (a 5e5-update run would be off by 3 %)."""
    steps = (step + 1).astype(jnp.float32)
    weight = -jnp.expm1((exp + 1) * jnp.log1p(-1.0 / steps))
    return jax.tree.map(lambda e, p: e + weight * (p - e), ema, params)

  def snapshots(self, state, step):
    """The power-function EMAs to keep at `step` (every train.ema_snapshot_kimg): {name:
    (generator fields, info)}, named as EDM2's snapshots; {} at other steps. The EMAs are kept
    in float16, as EDM2's training loop saves its snapshots (half the disk: a 1 Gimg
    edm2_img64 run keeps 256); jaxgen.phema accumulates them in float32, as the official
    reconstruct_phema.py."""
    if not self.snapshot_steps or step % self.snapshot_steps:
      return {}
    nimg = step * self.batch_size
    half = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float16), tree)
    # 'averaged': the fields phema combines; the rest (constant buffers) it copies, as the
    # official reconstruct_phema.py copies a network's buffers.
    return {posthoc_ema.snapshot_name(step, std): (
        {'ema_params': half(ema), 'buffers': state.buffers},
        {'snapshot': {'nimg': nimg, 'std': std, 'averaged': ['ema_params']}})
            for std, ema in zip(self.ema_std, state.power_ema)}

  # ----------------------------------------------------------------------------------------------

  # Samples are made from latents, not from a task's inputs.
  task = None
  # The metrics of `train_step` the progress bar shows.
  progress_metrics = ('loss/denoise',)
  # The parts of the train state that `generate` reads (what `jaxgen.export` writes).
  generator_fields = ('ema_params', 'buffers')
  # Keyword options of `generate` beyond (state, z, labels): config.sampling's fields (None =
  # the config's value) and the key of stochastic samplers.
  sampling_options = SAMPLING_FIELDS + ('noise_key', 'guide')

  def sigma_range(self, sampler, sigma_min=None, sigma_max=None):
    """The sampler's σ range (None: its default) clamped to the preconditioning's, as EDM's
    generate.py does."""
    default_min, default_max = samplers.default_sigma_range(sampler)
    lo, hi = self.net.sigma_range()
    return (max(default_min if sigma_min is None else sigma_min, lo),
            min(default_max if sigma_max is None else sigma_max, hi))

  def guided_denoiser(self, state, labels, guidance, guide=None):
    """fn(x, σ) → D of the EMA weights for the sampler: conditional on `labels` (one-hot or
    None); with a `guidance` scale (not None), D_ref + w·(D − D_ref), where D_ref is this
    network without labels (classifier-free guidance, both in one call of twice the batch) or,
    with `guide` (a TrainedRun), that run's EMA denoiser on the same labels, or none if it is
    unconditional (EDM2's autoguidance and its guiding networks)."""
    params, buffers = state.ema_params, state.buffers
    if guidance is None:
      return lambda x, sigma: self.denoise(params, buffers, x, jnp.full((x.shape[0],), sigma),
                                           labels)
    if guide is not None:
      other, other_state = guide.recipe, guide.state
      other_labels = labels if other.num_classes else None

      def autoguided(x, sigma):
        sigmas = jnp.full((x.shape[0],), sigma)
        d = self.denoise(params, buffers, x, sigmas, labels)
        d_ref = other.denoise(other_state.ema_params, other_state.buffers, x, sigmas,
                              other_labels)
        return d_ref + guidance * (d - d_ref)

      return autoguided

    def guided(x, sigma):
      both = jnp.concatenate([labels, jnp.zeros_like(labels)])
      d = self.denoise(params, buffers, jnp.concatenate([x, x]),
                       jnp.full((2 * x.shape[0],), sigma), both)
      d_cond, d_uncond = jnp.split(d, 2)
      return d_uncond + guidance * (d_cond - d_uncond)

    return guided

  def generate(self, state, z, labels, noise_key=None, guide=None, **options):
    """EMA denoiser + sampler: z [N, R, R, C] ~ N(0, I), labels int [N] → images in ≈ [−1, 1].

    options: config.sampling's fields (sampler, num_steps, guidance, S_churn, ...); None or
    missing = the config's value. `noise_key` drives stochastic samplers (default: from z).
    `guide`: another diffusion run (jaxgen.trained.TrainedRun) whose denoiser guidance
    extrapolates away from instead of this one's unconditional branch (`guided_denoiser`)."""
    s = self.check_sampling(guide=guide, **options)
    sigma_min, sigma_max = self.sigma_range(s['sampler'], s['sigma_min'], s['sigma_max'])
    if noise_key is None:  # Deterministic in z alone: a key from z's first value's bits.
      noise_key = jax.random.PRNGKey(jax.lax.bitcast_convert_type(z.reshape(-1)[0], jnp.int32))
    one_hot = self._one_hot(labels)
    guided = s['guidance'] != 1 and (one_hot is not None or guide is not None)
    denoise = self.guided_denoiser(state, one_hot, s['guidance'] if guided else None, guide)
    return samplers.sample(denoise, z, noise_key, sampler=s['sampler'],
                           num_steps=s['num_steps'], sigma_min=sigma_min, sigma_max=sigma_max,
                           rho=s['rho'], S_churn=s['S_churn'], S_min=s['S_min'],
                           S_max=s['S_max'], S_noise=s['S_noise'], eta=s['eta'])

  def evaluations_per_sample(self, guide=None, **options):
    """Network evaluations per generated image (for benchmarks): the sampler's, doubled under
    guidance (two branches, or two networks)."""
    s = self.check_sampling(guide=guide, **options)
    guided = (self.num_classes or guide is not None) and s['guidance'] != 1
    return samplers.num_evaluations(s['sampler'], s['num_steps']) * (2 if guided else 1)

  def network_forward(self, state, z, labels):
    """One evaluation of the EMA denoiser at σ = 1 (for benchmarks' FLOP counts)."""
    return self.denoise(state.ema_params, state.buffers, z, jnp.ones((z.shape[0],)),
                        self._one_hot(labels))

  def param_count(self, state):
    return {'denoiser': recipes.count_params(state.params)}
