"""StyleGAN2 (Karras et al. 2020) as configured by StyleGAN2-ADA (Karras et al. 2020b).

Generator = `mapping` (z [N, z_dim] → w, broadcast to ws [N, num_ws, w_dim]) followed by
`synthesis` (ws → image [N, R, R, C], roughly in [−1, 1]): a learned 4×4 constant, then per
resolution an up-sampling modulated 3×3 convolution and a plain one, each with weight
demodulation, per-pixel noise and bias + leaky ReLU, and a `skip` toRGB output summed over
resolutions. Discriminator: `resnet` (default), `skip` or `orig` blocks with FIR down-sampling,
then a minibatch-stddev epilogue producing one logit per image, with projection conditioning.

The maths follows NVlabs' stylegan2-ada-pytorch (`training/networks.py`) so the networks have the
same parameters (counts, shapes up to layout, initialisation, run-time gains):

  * equalised learning rate: weights are stored as N(0, 1) (divided by the learning-rate
    multiplier for dense layers) and scaled at run time by lr_multiplier/√fan_in;
  * mixed precision: the `num_bf16_res` highest resolutions of G and D compute in bfloat16 (the
    official code uses float16 there), parameters stay float32, and every convolution's output
    is clamped to ±`conv_clamp` (scaled by the layer's gain), as in the official code.

Layout differences from the PyTorch weights (for anyone converting checkpoints): images and
activations are NHWC, convolution weights HWIO [k, k, in, out], dense weights [in, out], and the
epilogue's `fc` sees its 4×4 input flattened in (h, w, c) rather than (c, h, w) order.

Non-trainable state lives in the 'buffers' collection: the mapping network's tracked `w_avg` (for
truncation) and each synthesis layer's `noise_const`. Everything in 'params' is trainable.

Usage:

  G = Generator(resolution=256)
  variables = init_generator(G, jax.random.key(0))          # {'params': ..., 'buffers': ...}
  img = G.apply(variables, z, c, rngs={'noise': key})        # [N, 256, 256, 3] float32
  ws, updates = G.apply(variables, z, c, update_w_avg=True, method='map', mutable=['buffers'])
  img = G.apply(variables, ws, method='synthesize', noise_mode='const')
  D = Discriminator(resolution=256)
  logits = D.apply(init_discriminator(D, key), img, c)     # [N] float32
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError
from jaxgen.ops.bias_act import bias_act, default_gain
from jaxgen.ops.conv2d_resample import conv2d_resample
from jaxgen.ops.upfirdn2d import downsample2d, setup_filter, upsample2d

BUFFERS = 'buffers'  # the collection holding w_avg and noise_const (not trained)
NOISE_MODES = ('random', 'const', 'none')


def _standard_normal(key, shape, dtype=jnp.float32):
  return jax.random.normal(key, shape, dtype)


def check_resolution(resolution, who='StyleGAN2'):
  """Raises UserError unless `resolution` is a power of two ≥ 8."""
  if not (isinstance(resolution, (int, np.integer)) and resolution >= 8
          and resolution & (resolution - 1) == 0):
    raise UserError(f'{who}: image resolution {resolution} is not a power of two >= 8; resize the '
                    'dataset to 2^k x 2^k pixels (e.g. 32, 64, 128, 256).')


def conditioning_dim(conditional, dataset_label_dim):
  """c_dim for the networks: the dataset's label dimension if conditional, else 0.

  Raises UserError when labels are requested but the dataset has none.
  """
  if not conditional:
    return 0
  if not dataset_label_dim or dataset_label_dim <= 0:
    raise UserError('conditional StyleGAN2 was requested but the dataset has no labels; set the '
                    'config to unconditional (conditional=False) or use a labelled dataset.')
  return int(dataset_label_dim)


def _labels(c, c_dim, who):
  """One-hot float32 labels [N, c_dim] from one-hot/soft labels or integer class ids [N]."""
  if c is None:
    raise UserError(f'{who} was built with c_dim={c_dim} but called without labels; pass labels '
                    f'[N, {c_dim}] (or integer classes [N]), or build it with c_dim=0.')
  c = jnp.asarray(c)
  if c.ndim == 1 and jnp.issubdtype(c.dtype, jnp.integer):
    c = jax.nn.one_hot(c, c_dim)
  return c.astype(jnp.float32)


def normalize_2nd_moment(x, axis=-1, eps=1e-8):
  """Scales x so the mean of its squares along `axis` is 1."""
  return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def channels_at(resolution, channel_base, channel_max):
  """Feature maps at a resolution: channel_base / resolution, capped at channel_max."""
  return min(channel_base // resolution, channel_max)


def bf16_min_resolution(resolution, num_bf16_res):
  """Lowest resolution computed in bfloat16 (the top `num_bf16_res` ones, never below 8)."""
  return max(2 ** (int(math.log2(resolution)) + 1 - num_bf16_res), 8)


# ------------------------------------------------------------------------------------------------
# Modulated convolution.


def demodulation_coefficients(weight, styles):
  """1 / ‖w · s‖ per sample and output channel: weight [k, k, I, O], styles [N, I] → [N, O].

  Σ_{k,i} (w[k, i, o] s[n, i])² = Σ_i s[n, i]² Σ_k w[k, i, o]², a small matmul instead of
  materialising per-sample weights. HIGHEST precision keeps it exact under TF32 defaults.
  """
  weight = weight.astype(jnp.float32)
  sq_norms = jnp.matmul(jnp.square(styles.astype(jnp.float32)),
                        jnp.sum(jnp.square(weight), axis=(0, 1)), precision=lax.Precision.HIGHEST)
  return lax.rsqrt(sq_norms + 1e-8)


def modulated_weights(weight, styles, demodulate=True):
  """Per-sample weights [N, k, k, I, O]: w scaled by the styles, demodulated to unit norm."""
  w = weight.astype(jnp.float32)[None] * styles.astype(jnp.float32)[:, None, None, :, None]
  if demodulate:
    w = w * demodulation_coefficients(weight, styles)[:, None, None, None, :]
  return w


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0,
                     resample_filter=None, demodulate=True, flip_weight=True,
                     fused_modconv=False):
  """StyleGAN2's modulated (and demodulated) convolution.

  Args:
    x: [N, H, W, I] activations (float32 or bfloat16; the computation runs in x's dtype).
    weight: [k, k, I, O] raw weights (unscaled; demodulation makes their scale irrelevant).
    styles: [N, I] float32 modulation coefficients.
    noise: optional noise added to the output, broadcastable to [N, H', W', O].
    up, down, padding, resample_filter, flip_weight: as `conv2d_resample`.
    demodulate: normalise every sample's effective weights to unit norm per output channel.
    fused_modconv: True = one grouped convolution with per-sample weights (as the official
      inference path); False = scale the input by the styles, convolve with the shared weights,
      scale the output by the demodulation coefficients. Equal maths; the unfused form runs the
      convolution as one large batched GEMM, which is what training wants.

  Returns:
    [N, H', W', O] in x's dtype.
  """
  batch, height, width, in_channels = x.shape
  kh, kw, _, out_channels = weight.shape
  if not fused_modconv:
    x = x * styles.astype(x.dtype)[:, None, None, :]
    x = conv2d_resample(x, weight.astype(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, flip_weight=flip_weight)
    if demodulate:
      dcoefs = demodulation_coefficients(weight, styles)
      x = x * dcoefs.astype(x.dtype)[:, None, None, :]
    if noise is not None:
      x = x + noise.astype(x.dtype)
    return x

  # Fused: the batch becomes feature groups of a single convolution.
  w = modulated_weights(weight, styles, demodulate)                     # [N, k, k, I, O]
  w = w.transpose(1, 2, 3, 0, 4).reshape(kh, kw, in_channels, batch * out_channels)
  x = x.transpose(1, 2, 0, 3).reshape(1, height, width, batch * in_channels)
  x = conv2d_resample(x, w.astype(x.dtype), f=resample_filter, up=up, down=down,
                      padding=padding, groups=batch, flip_weight=flip_weight)
  x = x.reshape(x.shape[1], x.shape[2], batch, out_channels).transpose(2, 0, 1, 3)
  if noise is not None:
    x = x + noise.astype(x.dtype)
  return x


# ------------------------------------------------------------------------------------------------
# Layers with equalised learning rate.


class FullyConnectedLayer(nn.Module):
  """Dense layer, weight [in, out] ~ N(0, 1/lr_multiplier²) scaled by lr_multiplier/√in."""
  features: int
  use_bias: bool = True
  activation: str = 'linear'
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x):
    """x [N, in] → [N, features], in x's dtype."""
    in_features = x.shape[-1]
    weight = self.param('weight', lambda key, shape: _standard_normal(key, shape) /
                        self.lr_multiplier, (in_features, self.features))
    w = weight.astype(x.dtype) * (self.lr_multiplier / math.sqrt(in_features))
    b = None
    if self.use_bias:
      bias = self.param('bias', nn.initializers.constant(self.bias_init), (self.features,))
      b = bias.astype(x.dtype) * self.lr_multiplier
    return bias_act(x @ w, b, act=self.activation)


class Conv2dLayer(nn.Module):
  """Convolution (optionally FIR up/down-sampling), weight [k, k, in, out] scaled by 1/√(in·k²).

  The output goes through bias + activation with gain `def_gain · gain`, clamped to
  ±conv_clamp·gain.
  """
  features: int
  kernel_size: int
  use_bias: bool = True
  activation: str = 'linear'
  up: int = 1
  down: int = 1
  resample_filter: Sequence[int] = (1, 3, 3, 1)
  conv_clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x, gain=1.0):
    """x [N, H, W, in] → [N, H·up/down, W·up/down, features], in x's dtype."""
    in_channels = x.shape[-1]
    k = self.kernel_size
    weight = self.param('weight', _standard_normal, (k, k, in_channels, self.features))
    w = (weight * (1 / math.sqrt(in_channels * k * k))).astype(x.dtype)
    x = conv2d_resample(x, w, f=setup_filter(self.resample_filter), up=self.up, down=self.down,
                        padding=k // 2, flip_weight=self.up == 1)
    b = None
    if self.use_bias:
      b = self.param('bias', nn.initializers.zeros, (self.features,)).astype(x.dtype)
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    return bias_act(x, b, act=self.activation, gain=default_gain(self.activation) * gain,
                    clamp=clamp)


# ------------------------------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
  """z (and/or labels c) → w. Also the discriminator's label embedding (z_dim = 0).

  z is normalised by its second moment; a label embedding (itself normalised) is concatenated;
  `num_layers` leaky-ReLU dense layers with learning-rate multiplier `lr_multiplier` follow. With
  `num_ws`, w is broadcast to [N, num_ws, w_dim] and its running mean `w_avg` (decay
  `w_avg_beta`) is tracked in the 'buffers' collection for truncation.
  """
  z_dim: int
  c_dim: int
  w_dim: int
  num_ws: Optional[int]
  num_layers: int = 8
  embed_features: Optional[int] = None
  layer_features: Optional[int] = None
  activation: str = 'lrelu'
  lr_multiplier: float = 0.01
  w_avg_beta: Optional[float] = 0.995

  @nn.compact
  def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
    """z [N, z_dim], c [N, c_dim] → ws [N, num_ws, w_dim] (or w [N, w_dim] if num_ws is None).

    truncation_psi: ws ← w_avg + ψ (ws − w_avg) for the first `truncation_cutoff` ws (all if
      None). ψ = 1 disables it.
    update_w_avg: fold this batch's mean w into w_avg (needs mutable=['buffers']); the official
      training loop does it for every mapping pass except the style-mixing one.
    """
    embed_features = self.w_dim if self.embed_features is None else self.embed_features
    layer_features = self.w_dim if self.layer_features is None else self.layer_features
    x = None
    if self.z_dim > 0:
      x = normalize_2nd_moment(z.astype(jnp.float32))
    if self.c_dim > 0:
      c = _labels(c, self.c_dim, 'MappingNetwork')
      y = normalize_2nd_moment(FullyConnectedLayer(embed_features, name='embed')(c))
      x = y if x is None else jnp.concatenate([x, y], axis=1)
    for idx in range(self.num_layers):
      features = self.w_dim if idx == self.num_layers - 1 else layer_features
      x = FullyConnectedLayer(features, activation=self.activation,
                              lr_multiplier=self.lr_multiplier, name=f'fc{idx}')(x)

    if self.num_ws is None or self.w_avg_beta is None:
      return x if self.num_ws is None else jnp.repeat(x[:, None], self.num_ws, axis=1)

    w_avg = self.variable(BUFFERS, 'w_avg', jnp.zeros, (self.w_dim,), jnp.float32)
    if update_w_avg and not self.is_initializing():
      batch_mean = lax.stop_gradient(jnp.mean(x, axis=0))
      w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
    ws = jnp.repeat(x[:, None], self.num_ws, axis=1)
    if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
      return ws
    truncated = w_avg.value + truncation_psi * (ws - w_avg.value)
    if truncation_cutoff is None:
      return truncated
    layer = jnp.arange(self.num_ws)[None, :, None]
    return jnp.where(layer < truncation_cutoff, truncated, ws)


class SynthesisLayer(nn.Module):
  """Modulated 3×3 convolution (optionally up-sampling ×2) + noise + bias + leaky ReLU."""
  features: int
  resolution: int
  kernel_size: int = 3
  up: int = 1
  use_noise: bool = True
  activation: str = 'lrelu'
  resample_filter: Sequence[int] = (1, 3, 3, 1)
  conv_clamp: Optional[float] = None
  fused_modconv: bool = False

  @nn.compact
  def __call__(self, x, w, noise_mode='random', gain=1.0):
    """x [N, R/up, R/up, I], w [N, w_dim] → [N, R, R, features] in x's dtype."""
    in_channels = x.shape[-1]
    k = self.kernel_size
    styles = FullyConnectedLayer(in_channels, bias_init=1.0, name='affine')(w)
    weight = self.param('weight', _standard_normal, (k, k, in_channels, self.features))
    noise = None
    if self.use_noise:
      noise_const = self.variable(
          BUFFERS, 'noise_const',
          lambda: _standard_normal(self.make_rng('params'), (self.resolution, self.resolution)))
      noise_strength = self.param('noise_strength', nn.initializers.zeros, ())
      if noise_mode == 'random':
        noise = _standard_normal(self.make_rng('noise'),
                                 (x.shape[0], self.resolution, self.resolution, 1))
        noise = noise * noise_strength
      elif noise_mode == 'const':
        noise = (noise_const.value * noise_strength)[None, :, :, None]
    bias = self.param('bias', nn.initializers.zeros, (self.features,))

    x = modulated_conv2d(x, weight, styles, noise=noise, up=self.up, padding=k // 2,
                         resample_filter=setup_filter(self.resample_filter),
                         flip_weight=self.up == 1, fused_modconv=self.fused_modconv)
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    return bias_act(x, bias.astype(x.dtype), act=self.activation,
                    gain=default_gain(self.activation) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
  """Modulated 1×1 convolution to image channels, no demodulation, styles scaled by 1/√in."""
  features: int
  kernel_size: int = 1
  conv_clamp: Optional[float] = None
  fused_modconv: bool = False

  @nn.compact
  def __call__(self, x, w):
    """x [N, R, R, I], w [N, w_dim] → [N, R, R, features] in x's dtype."""
    in_channels = x.shape[-1]
    k = self.kernel_size
    weight_gain = 1 / math.sqrt(in_channels * k * k)
    styles = FullyConnectedLayer(in_channels, bias_init=1.0, name='affine')(w) * weight_gain
    weight = self.param('weight', _standard_normal, (k, k, in_channels, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    x = modulated_conv2d(x, weight, styles, demodulate=False, padding=k // 2,
                         fused_modconv=self.fused_modconv)
    return bias_act(x, bias.astype(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
  """One resolution of the `skip` synthesis network: [const or up-conv], conv, toRGB."""
  in_channels: int  # 0 = the first (4×4) block, which starts from the learned constant
  out_channels: int
  resolution: int
  img_channels: int
  use_bf16: bool = False
  resample_filter: Sequence[int] = (1, 3, 3, 1)
  conv_clamp: Optional[float] = None
  fused_modconv: bool = False

  @property
  def num_conv(self):
    return 1 if self.in_channels == 0 else 2

  @nn.compact
  def __call__(self, x, img, ws, noise_mode='random'):
    """x [N, R/2, R/2, in] (None for the first block), img [N, R/2, R/2, C] float32 (or None),
    ws [N, num_conv + 1, w_dim] → (x [N, R, R, out], img [N, R, R, C] float32)."""
    dtype = jnp.bfloat16 if self.use_bf16 else jnp.float32
    layer = lambda name, **kw: SynthesisLayer(
        self.out_channels, self.resolution, resample_filter=self.resample_filter,
        conv_clamp=self.conv_clamp, fused_modconv=self.fused_modconv, name=name, **kw)
    if self.in_channels == 0:
      const = self.param('const', _standard_normal,
                         (self.resolution, self.resolution, self.out_channels))
      x = jnp.broadcast_to(const.astype(dtype)[None], (ws.shape[0],) + const.shape)
      x = layer('conv1')(x, ws[:, 0], noise_mode)
    else:
      x = x.astype(dtype)
      x = layer('conv0', up=2)(x, ws[:, 0], noise_mode)
      x = layer('conv1')(x, ws[:, 1], noise_mode)

    if img is not None:
      img = upsample2d(img, setup_filter(self.resample_filter))
    y = ToRGBLayer(self.img_channels, conv_clamp=self.conv_clamp,
                   fused_modconv=self.fused_modconv, name='torgb')(x, ws[:, self.num_conv])
    y = y.astype(jnp.float32)
    img = y if img is None else img + y
    return x, img


class SynthesisNetwork(nn.Module):
  """ws [N, num_ws, w_dim] → image [N, R, R, C] float32 (skip architecture)."""
  w_dim: int
  resolution: int
  img_channels: int
  channel_base: int = 32768
  channel_max: int = 512
  num_bf16_res: int = 4
  conv_clamp: Optional[float] = 256.0
  fused_modconv: bool = False
  resample_filter: Sequence[int] = (1, 3, 3, 1)

  @property
  def block_resolutions(self):
    return [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]

  @property
  def num_ws(self):
    return 2 * int(math.log2(self.resolution)) - 2

  @nn.compact
  def __call__(self, ws, noise_mode='random'):
    if noise_mode not in NOISE_MODES:
      raise UserError(f'noise_mode {noise_mode!r} is not one of {NOISE_MODES}; pick one of them.')
    if ws.shape[1:] != (self.num_ws, self.w_dim):
      raise ValueError(f'ws must be [N, {self.num_ws}, {self.w_dim}], got {ws.shape}')
    ws = ws.astype(jnp.float32)
    bf16_from = bf16_min_resolution(self.resolution, self.num_bf16_res)
    x = img = None
    w_idx = 0
    for res in self.block_resolutions:
      block = SynthesisBlock(
          in_channels=0 if res == 4 else channels_at(res // 2, self.channel_base,
                                                     self.channel_max),
          out_channels=channels_at(res, self.channel_base, self.channel_max), resolution=res,
          img_channels=self.img_channels, use_bf16=res >= bf16_from,
          resample_filter=self.resample_filter, conv_clamp=self.conv_clamp,
          fused_modconv=self.fused_modconv, name=f'b{res}')
      # Consecutive blocks share one w: a block's toRGB w is the next block's first conv w.
      x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], noise_mode)
      w_idx += block.num_conv
    return img


class Generator(nn.Module):
  """StyleGAN2 generator: `mapping` then `synthesis`.

  Fields mirror the official `--cfg` knobs: `channel_base` (32768 for `stylegan2`, 16384 for
  `paper256`), `channel_max`, `num_mapping_layers` (8; 2 for `auto`/`cifar`), `num_bf16_res` and
  `conv_clamp` (4 and 256: mixed precision; 0 and None: all float32), `noise_mode` (default for
  calls: 'random' needs rngs={'noise': key}, 'const' uses the fixed noise buffers, 'none').
  """
  resolution: int = 256
  img_channels: int = 3
  z_dim: int = 512
  w_dim: int = 512
  c_dim: int = 0
  num_mapping_layers: int = 8
  mapping_lr_multiplier: float = 0.01
  w_avg_beta: float = 0.995
  channel_base: int = 32768
  channel_max: int = 512
  num_bf16_res: int = 4
  conv_clamp: Optional[float] = 256.0
  noise_mode: str = 'random'
  fused_modconv: bool = False
  resample_filter: Sequence[int] = (1, 3, 3, 1)

  def __post_init__(self):
    check_resolution(self.resolution, 'Generator')
    if self.noise_mode not in NOISE_MODES:
      raise UserError(f'Generator: noise_mode {self.noise_mode!r} is not one of {NOISE_MODES}.')
    super().__post_init__()

  @property
  def num_ws(self):
    """Number of w vectors synthesis consumes: 2 per resolution from 8×8, 1 at 4×4, 1 toRGB."""
    return 2 * int(math.log2(self.resolution)) - 2

  def setup(self):
    self.synthesis = SynthesisNetwork(
        w_dim=self.w_dim, resolution=self.resolution, img_channels=self.img_channels,
        channel_base=self.channel_base, channel_max=self.channel_max,
        num_bf16_res=self.num_bf16_res, conv_clamp=self.conv_clamp,
        fused_modconv=self.fused_modconv, resample_filter=self.resample_filter)
    self.mapping = MappingNetwork(
        z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=self.num_ws,
        num_layers=self.num_mapping_layers, lr_multiplier=self.mapping_lr_multiplier,
        w_avg_beta=self.w_avg_beta)

  def map(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
    """z [N, z_dim], c [N, c_dim] (or int [N]) → ws [N, num_ws, w_dim]."""
    return self.mapping(z, c, truncation_psi=truncation_psi,
                        truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)

  def synthesize(self, ws, noise_mode=None):
    """ws [N, num_ws, w_dim] → images [N, R, R, C] float32."""
    return self.synthesis(ws, noise_mode=self.noise_mode if noise_mode is None else noise_mode)

  def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode=None,
               update_w_avg=False):
    """z [N, z_dim], c [N, c_dim] (or int [N]) → images [N, R, R, C] float32, ≈ [−1, 1]."""
    ws = self.map(z, c, truncation_psi, truncation_cutoff, update_w_avg)
    return self.synthesize(ws, noise_mode)


# ------------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
  """One resolution of D: [fromRGB], conv 3×3, conv 3×3 down ×2, residual 1×1 down (resnet)."""
  in_channels: int  # 0 = the first (highest-resolution) block, which reads the image
  tmp_channels: int
  out_channels: int
  resolution: int
  img_channels: int
  architecture: str = 'resnet'
  activation: str = 'lrelu'
  use_bf16: bool = False
  resample_filter: Sequence[int] = (1, 3, 3, 1)
  conv_clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x, img):
    """x [N, R, R, in] (None for the first block), img [N, R, R, C] →
    (x [N, R/2, R/2, out], img [N, R/2, R/2, C] for `skip`, else None)."""
    dtype = jnp.bfloat16 if self.use_bf16 else jnp.float32
    conv = lambda features, kernel, name, **kw: Conv2dLayer(
        features, kernel, resample_filter=self.resample_filter, name=name, **kw)
    if x is not None:
      x = x.astype(dtype)
    if self.in_channels == 0 or self.architecture == 'skip':
      img = img.astype(dtype)
      y = conv(self.tmp_channels, 1, 'fromrgb', activation=self.activation,
               conv_clamp=self.conv_clamp)(img)
      x = y if x is None else x + y
      img = downsample2d(img, setup_filter(self.resample_filter)) \
          if self.architecture == 'skip' else None

    conv0 = conv(self.tmp_channels, 3, 'conv0', activation=self.activation,
                 conv_clamp=self.conv_clamp)
    conv1 = conv(self.out_channels, 3, 'conv1', activation=self.activation, down=2,
                 conv_clamp=self.conv_clamp)
    if self.architecture == 'resnet':
      # Both branches scaled by √½ so the sum keeps unit variance.
      y = conv(self.out_channels, 1, 'skip', use_bias=False, down=2)(x, gain=math.sqrt(0.5))
      x = conv1(conv0(x), gain=math.sqrt(0.5))
      x = y + x
    else:
      x = conv1(conv0(x))
    return x, img


def minibatch_stddev(x, group_size=4, num_channels=1, num_splits=1):
  """Appends the minibatch standard deviation as `num_channels` extra feature maps.

  x [N, H, W, C] → [N, H, W, C + num_channels]. The batch is cut into `num_splits` equal
  contiguous parts (one per device, as the official code computes it on each GPU's sub-batch);
  within a part of M samples, samples i and i + M/G form a group (G = min(group_size, M)). The
  stddev over each group, averaged over pixels and C/num_channels channels, is broadcast to the
  group's members.
  """
  n, h, w, c = x.shape
  if n % num_splits:
    raise UserError(f'minibatch stddev: the batch of {n} does not split into {num_splits} equal '
                    'parts (one per device); use a batch size that is a multiple of it.')
  m = n // num_splits
  g = m if group_size is None else min(group_size, m)
  if m % g:
    raise UserError(f'minibatch-stddev group size {g} does not divide the per-device batch size '
                    f'{m}; choose a batch size that is a multiple of mbstd_group_size.')
  f = num_channels
  y = x.astype(jnp.float32).reshape(num_splits, g, m // g, h, w, f, c // f)
  y = y - jnp.mean(y, axis=1, keepdims=True)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + 1e-8)  # [S, M/G, H, W, F, c/F]
  y = jnp.mean(y, axis=(2, 3, 5))                         # [S, M/G, F]
  y = jnp.broadcast_to(y[:, None, :, None, None, :], (num_splits, g, m // g, h, w, f))
  return jnp.concatenate([x, y.reshape(n, h, w, f).astype(x.dtype)], axis=-1)


class DiscriminatorEpilogue(nn.Module):
  """4×4 head: minibatch stddev, conv 3×3, dense, output (projected onto cmap if conditional)."""
  in_channels: int
  cmap_dim: int
  resolution: int
  img_channels: int
  architecture: str = 'resnet'
  mbstd_group_size: Optional[int] = 4
  mbstd_num_channels: int = 1
  mbstd_num_splits: int = 1
  activation: str = 'lrelu'
  conv_clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x, img, cmap=None):
    """x [N, 4, 4, in], cmap [N, cmap_dim] → logits [N] float32."""
    x = x.astype(jnp.float32)
    if self.architecture == 'skip':
      x = x + Conv2dLayer(self.in_channels, 1, activation=self.activation,
                          name='fromrgb')(img.astype(jnp.float32))
    if self.mbstd_num_channels > 0:
      x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels,
                           self.mbstd_num_splits)
    x = Conv2dLayer(self.in_channels, 3, activation=self.activation, conv_clamp=self.conv_clamp,
                    name='conv')(x)
    x = FullyConnectedLayer(self.in_channels, activation=self.activation,
                            name='fc')(x.reshape(x.shape[0], -1))
    x = FullyConnectedLayer(1 if self.cmap_dim == 0 else self.cmap_dim, name='out')(x)
    if self.cmap_dim > 0:
      x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1 / math.sqrt(self.cmap_dim))
    return x[:, 0]


class Discriminator(nn.Module):
  """StyleGAN2 discriminator: image [N, R, R, C] (and labels) → logits [N] float32.

  Fields mirror the official knobs: `architecture` ('resnet' default; 'orig' for `cifar`;
  'skip'), `channel_base`, `channel_max`, `num_bf16_res`, `conv_clamp`, `mbstd_group_size` (4
  for `stylegan2`, 8 for `paper256`, 32 for `cifar`), `mbstd_num_channels`, `mbstd_num_splits`
  (groups form within each of that many parts of the batch: the devices), `cmap_dim` (label
  projection width, default = channels at 4×4) and `num_mapping_layers` of the label mapping.
  """
  resolution: int = 256
  img_channels: int = 3
  c_dim: int = 0
  architecture: str = 'resnet'
  channel_base: int = 32768
  channel_max: int = 512
  num_bf16_res: int = 4
  conv_clamp: Optional[float] = 256.0
  cmap_dim: Optional[int] = None
  mbstd_group_size: Optional[int] = 4
  mbstd_num_channels: int = 1
  mbstd_num_splits: int = 1
  num_mapping_layers: int = 8
  resample_filter: Sequence[int] = (1, 3, 3, 1)

  def __post_init__(self):
    check_resolution(self.resolution, 'Discriminator')
    if self.architecture not in ('orig', 'skip', 'resnet'):
      raise UserError(f'Discriminator: architecture {self.architecture!r} is not one of '
                      "'orig', 'skip', 'resnet'.")
    super().__post_init__()

  @nn.compact
  def __call__(self, img, c=None):
    """img [N, R, R, C] (≈ [−1, 1]), c [N, c_dim] (or int [N]) → logits [N] float32."""
    if img.shape[1:] != (self.resolution, self.resolution, self.img_channels):
      raise ValueError(f'Discriminator expects [N, {self.resolution}, {self.resolution}, '
                       f'{self.img_channels}] images, got {img.shape}')
    channels = lambda res: channels_at(res, self.channel_base, self.channel_max)
    bf16_from = bf16_min_resolution(self.resolution, self.num_bf16_res)
    x = None
    for res in [2 ** i for i in range(int(math.log2(self.resolution)), 2, -1)]:
      x, img = DiscriminatorBlock(
          in_channels=0 if res == self.resolution else channels(res), tmp_channels=channels(res),
          out_channels=channels(res // 2), resolution=res, img_channels=self.img_channels,
          architecture=self.architecture, use_bf16=res >= bf16_from,
          resample_filter=self.resample_filter, conv_clamp=self.conv_clamp, name=f'b{res}')(x, img)

    cmap = None
    cmap_dim = 0
    if self.c_dim > 0:
      cmap_dim = channels(4) if self.cmap_dim is None else self.cmap_dim
      cmap = MappingNetwork(z_dim=0, c_dim=self.c_dim, w_dim=cmap_dim, num_ws=None,
                            num_layers=self.num_mapping_layers, w_avg_beta=None,
                            name='mapping')(None, _labels(c, self.c_dim, 'Discriminator'))
    return DiscriminatorEpilogue(
        channels(4), cmap_dim=cmap_dim, resolution=4, img_channels=self.img_channels,
        architecture=self.architecture, mbstd_group_size=self.mbstd_group_size,
        mbstd_num_channels=self.mbstd_num_channels, mbstd_num_splits=self.mbstd_num_splits,
        conv_clamp=self.conv_clamp, name='b4')(x, img, cmap)


# ------------------------------------------------------------------------------------------------
# Initialisation and bookkeeping.


def _example_labels(c_dim, batch_size):
  return jnp.zeros((batch_size, c_dim), jnp.float32) if c_dim else None


def init_generator(generator, rng, batch_size=1):
  """Variables {'params', 'buffers'} of `generator` (works under jax.eval_shape)."""
  params_key, noise_key = jax.random.split(rng)
  z = jnp.zeros((batch_size, generator.z_dim), jnp.float32)
  return generator.init({'params': params_key, 'noise': noise_key}, z,
                        _example_labels(generator.c_dim, batch_size))


def init_discriminator(discriminator, rng, batch_size=None):
  """Variables {'params'} of `discriminator` (works under jax.eval_shape)."""
  batch_size = batch_size or discriminator.mbstd_num_splits  # One sample per split.
  res = discriminator.resolution
  img = jnp.zeros((batch_size, res, res, discriminator.img_channels), jnp.float32)
  return discriminator.init(rng, img, _example_labels(discriminator.c_dim, batch_size))


def count_params(tree):
  """Total number of scalars in a pytree of arrays (or ShapeDtypeStructs)."""
  return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree_util.tree_leaves(tree)))
