"""EDM's SongUNet: the DDPM++ and NCSN++ U-Nets of Song et al. (2021) as Karras et al. (2022)
re-implemented them (NVlabs `edm`, `training/networks.py`).

F(x, c_noise, class_labels, augment_labels) → [N, R, R, out_channels], the raw network that a
preconditioning (jaxgen/models/precond.py) wraps into a denoiser D(x; σ). The pieces:

  * mapping: an embedding of the noise label c_noise (sinusoidal 'positional' for DDPM++, random
    'fourier' features for NCSN++), plus linear embeddings of the class labels (with label
    dropout, for classifier-free guidance) and of the augmentation labels, then two SiLU dense
    layers → emb [N, model_channels · channel_mult_emb];
  * encoder: a 3×3 conv, then per resolution a down-sampling residual block (not at the top) and
    `num_blocks` residual blocks (`UNetBlock`: GroupNorm, SiLU, conv, + the embedding, GroupNorm,
    SiLU, dropout, conv, skip connection, optional self-attention); 'skip' and 'residual'
    encoders also feed the down-sampled input image into every resolution (NCSN++'s
    "input skip" / "residual" progressive-growing paths);
  * decoder: two blocks at the lowest resolution (the first with attention), then per resolution
    an up-sampling block (not at the bottom) and `num_blocks + 1` blocks that each take one
    encoder activation concatenated to their input; the output is GroupNorm, SiLU and a 3×3
    conv at the top ('standard'), or summed over every resolution, up-sampled ('skip').

Faithful to the official network: the same parameters (names, counts, shapes up to layout), the
same initialisation (`weight_init`), the same resampling filters, and the same output to float32
rounding (tests/test_songunet.py holds it against the official code's outputs).

Layout differences from the PyTorch weights: activations are NHWC, convolution weights HWIO
[k, k, in, out], dense weights [in, out]; module names are the official ones with the ModuleDict
folded in ('enc.16x16_block0' → 'enc_16x16_block0'). `params_from_official` converts a state
dict. NCSN++'s random Fourier frequencies are not trained (a buffer in the official code): they
live in the 'buffers' collection, so `net.init` returns {'params', 'buffers'} for
embedding_type='fourier'; pass both to `apply`.

Mixed precision ("bf16 where safe"): `dtype` is the compute dtype of convolutions, dense layers
and the attention matmuls; parameters stay float32; GroupNorm statistics, the softmax and the
returned output are float32.

Usage:

  net = SongUNet(img_resolution=32, in_channels=3, out_channels=3, channel_mult=(2, 2, 2))
  variables = init_songunet(net, jax.random.key(0))
  out = net.apply(variables, x, noise_labels)                  # x [N, 32, 32, 3] → [N, 32, 32, 3]
  out = net.apply(variables, x, noise_labels, train=True, rngs={'dropout': key})
"""

import math
from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError
from jaxgen.models.precision import matmul_precision

BUFFERS = 'buffers'  # the collection holding the (untrained) Fourier-embedding frequencies
EMBEDDING_TYPES = ('positional', 'fourier')
ENCODER_TYPES = ('standard', 'skip', 'residual')
DECODER_TYPES = ('standard', 'skip')


# ------------------------------------------------------------------------------------------------
# Initialisation.


def weight_init(key, shape, mode, fan_in, fan_out):
  """EDM's initialisers: uniform or normal, with Xavier (fan_in + fan_out) or Kaiming (fan_in)
  scaling. Every distribution here has variance 2/(fan_in + fan_out) (Xavier) or 1/fan_in
  (Kaiming); the uniform ones are U(−b, b) with b = √3 · std."""
  if mode == 'xavier_uniform':
    return math.sqrt(6 / (fan_in + fan_out)) * jax.random.uniform(key, shape, jnp.float32, -1, 1)
  if mode == 'xavier_normal':
    return math.sqrt(2 / (fan_in + fan_out)) * jax.random.normal(key, shape, jnp.float32)
  if mode == 'kaiming_uniform':
    return math.sqrt(3 / fan_in) * jax.random.uniform(key, shape, jnp.float32, -1, 1)
  if mode == 'kaiming_normal':
    return math.sqrt(1 / fan_in) * jax.random.normal(key, shape, jnp.float32)
  raise ValueError(f'unknown init mode {mode!r}')


def _initializer(mode, fan_in, fan_out, scale):
  """A Flax initializer: `weight_init` times `scale` (exact zeros when scale is 0)."""
  def init(key, shape, dtype=jnp.float32):
    if scale == 0:
      return jnp.zeros(shape, dtype)
    return (weight_init(key, shape, mode, fan_in, fan_out) * scale).astype(dtype)
  return init


class Init(NamedTuple):
  """How a layer is initialised (the official `init_mode`, `init_weight`, `init_bias`): weight =
  weight_init(...) · init_weight, bias = weight_init(...) · init_bias."""
  init_mode: str = 'kaiming_normal'
  init_weight: float = 1.0
  init_bias: float = 0.0


# SongUNet's three initialisations. Its "zero" layers (the last conv of every residual branch,
# the attention output projection, the output conv) are not zero but Xavier scaled by 1e-5, so
# every residual branch starts as (almost) the identity while still receiving gradients. The
# attention's qkv projection is scaled by √0.2.
XAVIER = Init('xavier_uniform')
XAVIER_ZERO = Init('xavier_uniform', 1e-5)
XAVIER_ATTN = Init('xavier_uniform', math.sqrt(0.2))


# ------------------------------------------------------------------------------------------------
# Layers.


class Linear(nn.Module):
  """Dense layer x @ W + b, W [in, out]."""
  features: int
  use_bias: bool = True
  init_mode: str = 'kaiming_normal'
  init_weight: float = 1.0
  init_bias: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x [..., in] → [..., features] in `dtype`."""
    fan_in, fan_out = x.shape[-1], self.features
    weight = self.param('weight', _initializer(self.init_mode, fan_in, fan_out, self.init_weight),
                        (fan_in, fan_out))
    x = jnp.matmul(x.astype(self.dtype), weight.astype(self.dtype),
                   precision=matmul_precision(self.dtype))
    if self.use_bias:
      bias = self.param('bias', _initializer(self.init_mode, fan_in, fan_out, self.init_bias),
                        (fan_out,))
      x = x + bias.astype(self.dtype)
    return x


def resample_kernel(resample_filter):
  """The 2-D resampling filter f fᵀ / (Σf)² (numpy float32 [k, k]) of a 1-D filter: [1, 1] is a
  box (average pooling / nearest up-sampling), [1, 3, 3, 1] a binomial (bilinear-like)."""
  f = np.asarray(resample_filter, np.float32)
  return np.outer(f, f) / np.square(f.sum())


def _depthwise(x, kernel2d, stride=1, padding=0, dilate=1):
  """The same 2-D kernel applied to every channel of x [N, H, W, C]. `dilate` = 2 inserts zeros
  between input pixels: a stride-2 transposed convolution.

  Computed as a one-channel convolution over N·C images rather than a grouped convolution with
  C groups: the same sums, but XLA's CPU backend runs grouped convolutions (and their gradients)
  several times slower than plain ones."""
  n, h, w, c = x.shape
  planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
  kernel = jnp.asarray(kernel2d[:, :, None, None], x.dtype)
  y = lax.conv_general_dilated(
      planes, kernel, window_strides=(stride, stride), padding=[(padding, padding)] * 2,
      lhs_dilation=(dilate, dilate), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=matmul_precision(x.dtype))
  return jnp.transpose(y.reshape(n, c, y.shape[1], y.shape[2]), (0, 2, 3, 1))


def _is_box(kernel2d):
  return kernel2d.shape == (2, 2) and np.all(kernel2d == kernel2d[0, 0])


def upsample_2x(x, kernel2d, padding):
  """PyTorch's conv_transpose2d(x, 4·f, stride=2, padding) per channel: 2× up-sampling. A
  transposed convolution is a convolution of the zero-interleaved input with the flipped kernel
  padded by k − 1 − padding; the factor 4 keeps the mean (one in four pixels is non-zero).
  With DDPM++'s box filter [1, 1] and no padding that is nearest-neighbour up-sampling, done
  as such (no multiplications by the three zeros in four)."""
  if _is_box(kernel2d) and padding == 0:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2) * jnp.asarray(4 * kernel2d[0, 0],
                                                                          x.dtype)
  k = kernel2d.shape[0]
  return _depthwise(x, np.flip(kernel2d * 4, (0, 1)), padding=k - 1 - padding, dilate=2)


def downsample_2x(x, kernel2d, padding):
  """conv2d(x, f, stride=2, padding) per channel: low-pass filtering and 2× down-sampling.
  With the box filter [1, 1] and no padding: the mean of each 2×2 block."""
  n, h, w, c = x.shape
  if _is_box(kernel2d) and padding == 0 and h % 2 == 0 and w % 2 == 0:
    blocks = x.reshape(n, h // 2, 2, w // 2, 2, c)
    return jnp.sum(blocks, axis=(2, 4)) * jnp.asarray(kernel2d[0, 0], x.dtype)
  return _depthwise(x, kernel2d, stride=2, padding=padding)


class Conv2d(nn.Module):
  """Square convolution (`kernel` 0 = none: resampling only) with optional 2× up- or
  down-sampling by `resample_filter`, weight [k, k, in, out].

  Unfused (the default) resamples first, then convolves at the new resolution. Fused resampling
  convolves at the higher resolution: for `down`, conv then filter-and-subsample; for `up`,
  filter-and-upsample with less padding, then conv with less padding. These are different
  operators at the borders and in receptive field, not just a speed trick: SongUNet's
  'residual' encoder uses the fused down-sampling conv.
  """
  out_channels: int
  kernel: int
  use_bias: bool = True
  up: bool = False
  down: bool = False
  resample_filter: Sequence[int] = (1, 1)
  fused_resample: bool = False
  init_mode: str = 'kaiming_normal'
  init_weight: float = 1.0
  init_bias: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x [N, H, W, in] → [N, H', W', out_channels] in `dtype` (H' = 2H, H/2 or H)."""
    assert not (self.up and self.down)
    in_channels, k = x.shape[-1], self.kernel
    x = x.astype(self.dtype)
    w = b = None
    if k:
      fan_in, fan_out = in_channels * k * k, self.out_channels * k * k
      w = self.param('weight', _initializer(self.init_mode, fan_in, fan_out, self.init_weight),
                     (k, k, in_channels, self.out_channels)).astype(self.dtype)
      if self.use_bias:
        b = self.param('bias', _initializer(self.init_mode, fan_in, fan_out, self.init_bias),
                       (self.out_channels,)).astype(self.dtype)
    f = resample_kernel(self.resample_filter) if (self.up or self.down) else None
    w_pad = k // 2
    f_pad = (f.shape[0] - 1) // 2 if f is not None else 0

    def conv(x, padding):
      return lax.conv_general_dilated(x, w, (1, 1), [(padding, padding)] * 2,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      precision=matmul_precision(self.dtype))

    if self.fused_resample and self.up and w is not None:
      x = upsample_2x(x, f, padding=max(f_pad - w_pad, 0))
      x = conv(x, max(w_pad - f_pad, 0))
    elif self.fused_resample and self.down and w is not None:
      x = conv(x, w_pad + f_pad)
      x = downsample_2x(x, f, padding=0)
    else:
      if self.up:
        x = upsample_2x(x, f, padding=f_pad)
      if self.down:
        x = downsample_2x(x, f, padding=f_pad)
      if w is not None:
        x = conv(x, w_pad)
    if b is not None:
      x = x + b
    return x


class GroupNorm(nn.Module):
  """Group normalisation with EDM's group count min(num_groups, C // min_channels_per_group).
  Statistics in float32 (biased variance, as PyTorch); the output in x's dtype."""
  num_groups: int = 32
  min_channels_per_group: int = 4
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    groups = min(self.num_groups, channels // self.min_channels_per_group)
    if groups < 1 or channels % groups:
      raise UserError(f'SongUNet: GroupNorm {"/".join(self.scope.path)} has {channels} channels, '
                      f'which EDM\'s min({self.num_groups}, C // {self.min_channels_per_group}) = '
                      f'{groups} groups cannot split evenly; choose model_channels and '
                      'channel_mult so every level has >= 4 channels (and a multiple of 32 from '
                      '128 up)')
    weight = self.param('weight', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    y = x.astype(jnp.float32)
    mean = _group_mean(y, groups)
    y = y - mean
    var = _group_mean(jnp.square(y), groups)
    return (y * (lax.rsqrt(var + self.eps) * weight) + bias).astype(x.dtype)


def _group_mean(x, groups):
  """x [N, ..., C] → [N, 1, ..., 1, C]: the mean over all but the batch axis of each of `groups`
  contiguous channel groups, repeated over its channels. Reducing the spatial axes first (channels
  stay the fast axis) is ~1.5× quicker on CPUs than one reduction over (H, W, C/G)."""
  n, channels = x.shape[0], x.shape[-1]
  per_channel = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
  per_group = jnp.mean(per_channel.reshape(n, groups, channels // groups), axis=2, keepdims=True)
  per_group = jnp.broadcast_to(per_group, (n, groups, channels // groups))
  return per_group.reshape((n,) + (1,) * (x.ndim - 2) + (channels,))


def self_attention(qkv, num_heads):
  """Self-attention over the pixels: qkv [N, H, W, 3C] → [N, H, W, C], softmax(qᵀk / √c) v with c
  = C / num_heads channels per head.

  The official code splits the 3C channels as [head, channel, (q, k, v)], i.e. q, k and v are
  interleaved channel by channel (not three contiguous blocks); this keeps that order so the
  official qkv weights load unchanged. Logits and softmax in float32.
  """
  n, h, w, c3 = qkv.shape
  per_head = c3 // (3 * num_heads)
  qkv = qkv.reshape(n, h * w, num_heads, per_head, 3)
  q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
  precision = matmul_precision(qkv.dtype)
  logits = jnp.einsum('nqhc,nkhc->nhqk', q, k / math.sqrt(per_head),
                      precision=precision, preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits, axis=-1).astype(qkv.dtype)
  out = jnp.einsum('nhqk,nkhc->nqhc', weights, v, precision=precision)
  return out.reshape(n, h, w, num_heads * per_head)


class UNetBlock(nn.Module):
  """EDM's residual block (the union of DDPM++, NCSN++ and ADM blocks):

    h = conv0(SiLU(norm0(x)))                          (up/down-sampling here)
    h = SiLU(norm1(h + affine(emb)))                   or, adaptive: SiLU(norm1(h)·(1+s) + t)
    x = (conv1(dropout(h)) + skip(x)) · skip_scale     skip: 1×1 conv (or resampling) if needed
    x = (proj(attention(qkv(norm2(x)))) + x) · skip_scale     if attention

  skip_scale = √½ (SongUNet) keeps the variance of the sum of two independent unit-variance
  branches at 1, so activations do not grow along the ~20 residual additions.
  """
  out_channels: int
  up: bool = False
  down: bool = False
  attention: bool = False
  num_heads: Optional[int] = None
  channels_per_head: int = 64
  dropout: float = 0.0
  skip_scale: float = 1.0
  eps: float = 1e-5
  resample_filter: Sequence[int] = (1, 1)
  resample_proj: bool = False
  adaptive_scale: bool = True
  init_main: Init = Init()
  init_zero: Init = Init(init_weight=0.0)
  init_attn: Optional[Init] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, emb, train=False):
    """x [N, H, W, in], emb [N, emb_channels] → [N, H', W', out_channels] in `dtype`."""
    in_channels, out = x.shape[-1], self.out_channels
    resample = dict(up=self.up, down=self.down, resample_filter=self.resample_filter)
    main, zero = self.init_main._asdict(), self.init_zero._asdict()
    orig = x
    x = nn.silu(GroupNorm(eps=self.eps, name='norm0')(x))
    x = Conv2d(out, 3, **resample, **main, dtype=self.dtype, name='conv0')(x)

    params = Linear(out * (2 if self.adaptive_scale else 1), **main, dtype=self.dtype,
                    name='affine')(emb)[:, None, None, :].astype(x.dtype)
    norm1 = GroupNorm(eps=self.eps, name='norm1')
    if self.adaptive_scale:
      scale, shift = jnp.split(params, 2, axis=-1)
      x = nn.silu(shift + norm1(x) * (scale + 1))
    else:
      x = nn.silu(norm1(x + params))

    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = Conv2d(out, 3, **zero, dtype=self.dtype, name='conv1')(x)
    if out != in_channels or self.up or self.down:
      kernel = 1 if (self.resample_proj or out != in_channels) else 0
      orig = Conv2d(out, kernel, **resample, **main, dtype=self.dtype, name='skip')(orig)
    x = (x + orig.astype(x.dtype)) * self.skip_scale

    num_heads = 0
    if self.attention:
      num_heads = self.num_heads if self.num_heads is not None else out // self.channels_per_head
    if num_heads:
      attn_init = (self.init_attn or self.init_main)._asdict()
      qkv = Conv2d(out * 3, 1, **attn_init, dtype=self.dtype,
                   name='qkv')(GroupNorm(eps=self.eps, name='norm2')(x))
      a = self_attention(qkv, num_heads)
      x = (Conv2d(out, 1, **zero, dtype=self.dtype, name='proj')(a) + x) * self.skip_scale
    return x


# ------------------------------------------------------------------------------------------------
# Noise-level embeddings.


def positional_embedding(x, num_channels, max_positions=10000, endpoint=False):
  """Transformer-style sinusoids of x [N]: [cos(x ω_i), sin(x ω_i)] with ω_i =
  (1/max_positions)^(i / (num_channels/2 − endpoint)), i < num_channels/2; float32 [N, C].
  `endpoint` (SongUNet) makes the lowest frequency exactly 1/max_positions."""
  half = num_channels // 2
  freqs = jnp.arange(half, dtype=jnp.float32) / (half - (1 if endpoint else 0))
  freqs = (1 / max_positions) ** freqs
  x = x.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class FourierEmbedding(nn.Module):
  """NCSN++'s random Fourier features of x [N]: [cos(2π x f_i), sin(2π x f_i)], f ~ N(0, scale²)
  drawn once at initialisation and never trained (collection 'buffers'); float32 [N, C]."""
  num_channels: int
  scale: float = 16.0

  @nn.compact
  def __call__(self, x):
    freqs = self.variable(BUFFERS, 'freqs', lambda: self.scale * jax.random.normal(
        self.make_rng('params'), (self.num_channels // 2,), jnp.float32))
    x = x.astype(jnp.float32)[:, None] * (2 * np.pi * freqs.value)[None, :]
    return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


# ------------------------------------------------------------------------------------------------
# The network.


def resolutions(img_resolution, channel_mult):
  """The network's feature-map resolutions, top to bottom: R, R/2, …, one per channel_mult."""
  return tuple(img_resolution >> level for level in range(len(channel_mult)))


def check_levels(img_resolution, channel_mult, attn_resolutions, network='SongUNet'):
  """Raises UserError (one line, naming `network`) unless the U-Net's levels work: img_resolution
  divisible by 2^(len(channel_mult) − 1) (the encoder halves it that often and the decoder
  doubles it back and concatenates the encoder's activations, so an odd size would come back one
  pixel short) and every attention resolution among the network's. The official code silently
  ignores an attention resolution the network does not have; here it is an error."""
  if not channel_mult:
    raise UserError(f'{network}: channel_mult is empty; give one multiplier per resolution, '
                    'e.g. (1, 2, 2, 2)')
  levels = len(channel_mult)
  if not (isinstance(img_resolution, (int, np.integer)) and img_resolution >= 1
          and img_resolution % 2 ** (levels - 1) == 0):
    raise UserError(f'{network}: image resolution {img_resolution} cannot be halved '
                    f'{levels - 1} times (len(channel_mult)={levels}); it must be a multiple of '
                    f'{2 ** (levels - 1)}, or use fewer channel_mult entries')
  have = resolutions(img_resolution, channel_mult)
  missing = [r for r in attn_resolutions if r not in have]
  if missing:
    raise UserError(f'{network}: attention resolution(s) {missing} not in the network, whose '
                    f'resolutions are {list(have)}; choose attn_resolutions among them')


def check_architecture(img_resolution, channel_mult, attn_resolutions,
                       embedding_type='positional', encoder_type='standard',
                       decoder_type='standard'):
  """Raises UserError (one line) for a SongUNet the official code cannot build or run: its
  levels (`check_levels`) and its embedding, encoder and decoder types."""
  check_levels(img_resolution, channel_mult, attn_resolutions)
  for name, value, allowed in (('embedding_type', embedding_type, EMBEDDING_TYPES),
                               ('encoder_type', encoder_type, ENCODER_TYPES),
                               ('decoder_type', decoder_type, DECODER_TYPES)):
    if value not in allowed:
      raise UserError(f'SongUNet: {name}={value!r} is not one of {", ".join(allowed)}')


class SongUNet(nn.Module):
  """DDPM++ (positional embedding, 'standard' encoder, resample_filter (1, 1)) and NCSN++
  ('fourier', channel_mult_noise 2, 'residual' encoder, (1, 3, 3, 1)) U-Nets. Fields are the
  official constructor's, plus the compute `dtype`."""
  img_resolution: int
  in_channels: int
  out_channels: int
  label_dim: int = 0
  augment_dim: int = 0
  model_channels: int = 128
  channel_mult: Sequence[int] = (1, 2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.10
  label_dropout: float = 0.0
  embedding_type: str = 'positional'
  channel_mult_noise: int = 1
  encoder_type: str = 'standard'
  decoder_type: str = 'standard'
  resample_filter: Sequence[int] = (1, 1)
  dtype: Any = jnp.float32

  def _embedding(self, noise_labels, class_labels, augment_labels, train):
    """The mapping network: emb [N, model_channels · channel_mult_emb] in `dtype`."""
    noise_channels = self.model_channels * self.channel_mult_noise
    emb_channels = self.model_channels * self.channel_mult_emb
    linear = dict(**XAVIER._asdict(), dtype=self.dtype)
    if self.embedding_type == 'positional':
      emb = positional_embedding(noise_labels, noise_channels, endpoint=True)
    else:
      emb = FourierEmbedding(noise_channels, name='map_noise')(noise_labels)
    # Both embeddings produce [cos, sin]; the network swaps the halves to [sin, cos] (as Song
    # et al.'s code orders them), which only matters for loading trained weights.
    emb = jnp.concatenate(jnp.split(emb, 2, axis=1)[::-1], axis=1)
    n = emb.shape[0]
    if self.label_dim:
      labels = (jnp.zeros((n, self.label_dim), jnp.float32) if class_labels is None
                else class_labels.astype(jnp.float32))
      if train and self.label_dropout:
        keep = jax.random.uniform(self.make_rng('dropout'), (n, 1))  # One draw per image.
        labels = labels * (keep >= self.label_dropout).astype(labels.dtype)
      # One-hot labels are scaled by √label_dim: unit mean square, like the noise embedding.
      emb = emb + Linear(noise_channels, **linear, name='map_label')(
          labels * math.sqrt(self.label_dim))
    if self.augment_dim:
      # No bias, so missing augmentation labels (zeros) add exactly nothing, as the official
      # code's skipping of the layer; calling it anyway creates its weights at init.
      aug = (jnp.zeros((n, self.augment_dim), jnp.float32) if augment_labels is None
             else augment_labels)
      emb = emb + Linear(noise_channels, use_bias=False, **linear, name='map_augment')(aug)
    emb = nn.silu(Linear(emb_channels, **linear, name='map_layer0')(emb))
    return nn.silu(Linear(emb_channels, **linear, name='map_layer1')(emb))

  @nn.compact
  def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, train=False):
    """F(x): x [N, R, R, in_channels], noise_labels [N] (c_noise), class_labels one-hot
    [N, label_dim] (None = zeros), augment_labels [N, augment_dim] (None = no augmentation)
    → float32 [N, R, R, out_channels]. train=True applies dropout and label dropout (rng
    'dropout')."""
    check_architecture(self.img_resolution, self.channel_mult, self.attn_resolutions,
                       self.embedding_type, self.encoder_type, self.decoder_type)
    want = (self.img_resolution, self.img_resolution, self.in_channels)
    if tuple(x.shape[1:]) != want:
      raise UserError(f'SongUNet: input of shape {tuple(x.shape)} but the network takes '
                      f'[N, {", ".join(map(str, want))}] images')
    emb = self._embedding(noise_labels, class_labels, augment_labels, train)
    dt = self.dtype
    # SongUNet's blocks: one attention head whatever the width, GroupNorm eps 1e-6 (not the
    # layer's default 1e-5), the embedding added (not adaptive scale/shift), and a 1×1 conv on
    # every resampling skip path.
    block = dict(num_heads=1, dropout=self.dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                 resample_filter=tuple(self.resample_filter), resample_proj=True,
                 adaptive_scale=False, init_main=XAVIER, init_zero=XAVIER_ZERO,
                 init_attn=XAVIER_ATTN, dtype=dt)
    xavier = XAVIER._asdict()
    levels = len(self.channel_mult)
    x = x.astype(dt)

    # Encoder. `skips` collects every output the decoder will concatenate back.
    skips = []
    aux = x
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      name = f'enc_{res}x{res}'
      if level == 0:
        x = Conv2d(self.model_channels, 3, **xavier, dtype=dt, name=f'{name}_conv')(x)
      else:
        x = UNetBlock(x.shape[-1], down=True, **block, name=f'{name}_down')(x, emb, train)
        if self.encoder_type == 'skip':
          # NCSN++ "input skip": the image, down-sampled, joins through a 1×1 conv.
          aux = Conv2d(aux.shape[-1], 0, down=True, resample_filter=tuple(self.resample_filter),
                       dtype=dt, name=f'{name}_aux_down')(aux)
          x = x + Conv2d(x.shape[-1], 1, **xavier, dtype=dt, name=f'{name}_aux_skip')(aux)
        elif self.encoder_type == 'residual':
          # NCSN++ "residual" input path: a fused down-sampling 3×3 conv of the previous level's
          # sum; the sum is divided by √2 to keep unit variance.
          aux = Conv2d(x.shape[-1], 3, down=True, resample_filter=tuple(self.resample_filter),
                       fused_resample=True, **xavier, dtype=dt, name=f'{name}_aux_residual')(aux)
          x = aux = (x + aux) / math.sqrt(2)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = UNetBlock(self.model_channels * mult, attention=res in self.attn_resolutions, **block,
                      name=f'{name}_block{idx}')(x, emb, train)
        skips.append(x)

    # Decoder.
    out = None
    for level, mult in reversed(list(enumerate(self.channel_mult))):
      res = self.img_resolution >> level
      name = f'dec_{res}x{res}'
      if level == levels - 1:
        # The bottleneck: attention at the lowest resolution whatever attn_resolutions says.
        x = UNetBlock(x.shape[-1], attention=True, **block, name=f'{name}_in0')(x, emb, train)
        x = UNetBlock(x.shape[-1], **block, name=f'{name}_in1')(x, emb, train)
      else:
        x = UNetBlock(x.shape[-1], up=True, **block, name=f'{name}_up')(x, emb, train)
      for idx in range(self.num_blocks + 1):
        x = jnp.concatenate([x, skips.pop()], axis=-1)
        attn = idx == self.num_blocks and res in self.attn_resolutions
        x = UNetBlock(self.model_channels * mult, attention=attn, **block,
                      name=f'{name}_block{idx}')(x, emb, train)
      if self.decoder_type == 'skip' or level == 0:
        if self.decoder_type == 'skip' and level < levels - 1:
          # 'skip' decoder: the output so far, up-sampled, plus this resolution's output.
          out = Conv2d(self.out_channels, 0, up=True, resample_filter=tuple(self.resample_filter),
                       dtype=dt, name=f'{name}_aux_up')(out)
        y = nn.silu(GroupNorm(eps=1e-6, name=f'{name}_aux_norm')(x))
        y = Conv2d(self.out_channels, 3, **XAVIER_ZERO._asdict(), dtype=dt,
                   name=f'{name}_aux_conv')(y)
        out = y if out is None else y + out
    return out.astype(jnp.float32)


# ------------------------------------------------------------------------------------------------
# Initialisation and official weights.


def dummy_inputs(unet, batch=1):
  """Zero inputs (x, noise labels or σ = 1, class labels, augment labels) for `init`."""
  x = jnp.zeros((batch, unet.img_resolution, unet.img_resolution, unet.in_channels), jnp.float32)
  labels = jnp.zeros((batch, unet.label_dim), jnp.float32) if unet.label_dim else None
  augment = jnp.zeros((batch, unet.augment_dim), jnp.float32) if unet.augment_dim else None
  return x, jnp.ones((batch,), jnp.float32), labels, augment


def init_songunet(net, key):
  """Freshly initialised variables of a SongUNet, or of a module wrapping one as `net.model`
  (precond.Precond): {'params': ...} and, for Fourier embeddings, {'buffers': ...}."""
  return net.init({'params': key}, *dummy_inputs(getattr(net, 'model', net)))


def _flax_path(name):
  """'model.enc.16x16_block0.norm0.weight' → ('model', 'enc_16x16_block0', 'norm0', 'weight')."""
  parts = name.split('.')
  out = []
  i = 0
  while i < len(parts):
    if parts[i] in ('enc', 'dec') and i + 1 < len(parts):
      out.append(f'{parts[i]}_{parts[i + 1]}')
      i += 2
    else:
      out.append(parts[i])
      i += 1
  return tuple(out)


def params_from_official(state_dict, net=None):
  """Variables for this module from an official state dict.

  state_dict: {name: numpy array}, e.g. `{k: v.numpy() for k, v in net.state_dict().items()}`
    of an official SongUNet (names 'enc.…', 'map_layer0.…') or of EDMPrecond / VPPrecond /
    VEPrecond (names 'model.…', which map onto Precond's `model` submodule).
  net: optional SongUNet or Precond; when given, the result is checked against its variables
    (every name and shape, and the resampling filter) and a mismatch is one UserError line.

  Returns {'params': ...} (and 'buffers' for Fourier embeddings), nested dicts of float32 numpy
  arrays: conv weights OIHW → HWIO, dense weights [out, in] → [in, out]. The official
  `resample_filter` buffers are constants of the architecture and are not returned.
  """
  variables = {}
  filters = {}
  for name, value in state_dict.items():
    value = np.asarray(value, np.float32)
    path = _flax_path(name)
    if path[-1] == 'resample_filter':
      filters[name] = value
      continue
    if path[-1] == 'freqs':
      collection = BUFFERS
    else:
      collection = 'params'
      if path[-1] == 'weight' and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
      elif path[-1] == 'weight' and value.ndim == 2:
        value = value.T
    node = variables.setdefault(collection, {})
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.ascontiguousarray(value)
  if net is None:
    return variables

  unet = getattr(net, 'model', net)
  want = jax.eval_shape(lambda: init_songunet(net, jax.random.key(0)))
  expected = {jax.tree_util.keystr(p): v.shape
              for p, v in jax.tree_util.tree_leaves_with_path(want)}
  got = {jax.tree_util.keystr(p): v.shape
         for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  for key in expected:
    if key not in got:
      raise UserError(f'official weights: no tensor for {key}; the weights are of another '
                      'architecture than this SongUNet (compare channel_mult, num_blocks, '
                      'encoder/decoder types, label_dim, augment_dim)')
    if got[key] != expected[key]:
      raise UserError(f'official weights: {key} has shape {got[key]}, this network expects '
                      f'{expected[key]} (after NCHW → NHWC); the architecture differs')
  for key in got:
    if key not in expected:
      raise UserError(f'official weights: unexpected tensor {key}; the weights are of another '
                      'architecture than this SongUNet')
  kernel = resample_kernel(unet.resample_filter)
  for name, value in filters.items():
    if value.shape[-2:] != kernel.shape or not np.allclose(value.reshape(kernel.shape), kernel):
      raise UserError(f'official weights: {name} is the filter of another resample_filter than '
                      f'{tuple(unet.resample_filter)}; set resample_filter as the weights were '
                      'trained')
  return variables
