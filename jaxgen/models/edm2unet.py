"""EDM2's magnitude-preserving U-Net (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models"; NVlabs `edm2` `training/networks_edm2.py`), NHWC, in Flax linen.

What sets it apart from SongUNet (jaxgen/models/songunet.py), as the paper's configs B–G:

- No biases and no normalisation layers inside the residual branches; activations are kept at
  unit magnitude by construction instead: every learned layer is an `MPConv` whose weight is
  normalised to unit norm per output channel and scaled by 1/√fan_in, SiLU is divided by 0.596
  (`mp_silu`), sums and concatenations are weighted so that unit-variance inputs give a
  unit-variance output (`mp_sum`, `mp_cat`), and encoder blocks pixel-normalise their input.
- Forced weight normalisation: the trained weights themselves are re-normalised before every
  training step (`force_weight_norm`, which the recipe applies), so their norm cannot grow and
  the effective learning rate is what the schedule says.
- The embedding is magnitude-preserving Fourier features of c_noise, a learned linear map, and a
  class embedding mixed in with `mp_sum` (label_balance); each block multiplies its residual
  branch by 1 + a gain-scaled linear map of the embedding (the gain starts at 0).
- The input gets a constant channel of ones (in place of biases); the output conv's gain starts
  at 0, so the untrained network outputs zeros and the denoiser is c_skip·x.
- Encoder blocks resample, then (when the width changes) a 1×1 conv, then pixel norm; decoder
  blocks take the concatenated skip and apply their 1×1 conv after the residual branch.
  Attention is cosine attention (q, k, v pixel-normalised per head), at `attn_resolutions` and in
  the first bottleneck block whenever the width holds a head of `channels_per_head`.

The paper's learned per-σ uncertainty (the loss weight 1/e^u(σ), Eq. 21) is `Precond`'s
`logvar_channels` (jaxgen/models/precond.py); the loss is jaxgen/objectives/diffusion.py's
'edm2'.

Weights are [kh, kw, in, out] for convolutions and [in, out] for linear maps (the official code's
[out, in, kh, kw] and [out, in] transposed; `params_from_official` converts a state dict). The
parameter tree carries the weights that forced weight normalisation acts on under the name
`mp_weight`. Compute runs in `dtype` (bf16 where safe), normalisations and the embedding in
float32.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxgen.errors import UserError
from jaxgen.models.precision import matmul_precision
from jaxgen.models.songunet import (BUFFERS, check_levels, downsample_2x, resample_kernel,
                                    self_attention, upsample_2x)

MP_WEIGHT = 'mp_weight'  # Name of every weight that forced weight normalisation acts on.
SILU_GAIN = 0.596  # E[silu(x)²]^½ for x ~ N(0, 1): mp_silu's divisor.


def normalize(x, axis=None, eps=1e-4):
  """x / (eps + RMS(x)) over `axis` (None: every axis but the first), in float32 then x.dtype:
  the official `normalize` (norm · √(n_kept/n) is the RMS)."""
  if axis is None:
    axis = tuple(range(1, x.ndim))
  x32 = x.astype(jnp.float32)
  rms = jnp.sqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True))
  return (x32 / (eps + rms)).astype(x.dtype)


def normalize_weight(w, eps=1e-4):
  """A weight [..., out] normalised to unit RMS per output channel (the official code's per row
  of [out, ...])."""
  return normalize(w, axis=tuple(range(w.ndim - 1)), eps=eps)


def mp_silu(x):
  return jax.nn.silu(x) / SILU_GAIN


def mp_sum(a, b, t=0.5):
  """(1 − t)·a + t·b divided by √((1 − t)² + t²): unit variance in, unit variance out."""
  return (a + t * (b - a)) / math.sqrt((1 - t) ** 2 + t ** 2)


def mp_cat(a, b, t=0.5):
  """Channel concatenation [wa·a, wb·b] with weights that keep the output's magnitude and give b
  the share t (Eq. 103)."""
  na, nb = a.shape[-1], b.shape[-1]
  c = math.sqrt((na + nb) / ((1 - t) ** 2 + t ** 2))
  return jnp.concatenate([a * (c / math.sqrt(na) * (1 - t)), b * (c / math.sqrt(nb) * t)],
                         axis=-1)


class MPFourier(nn.Module):
  """Magnitude-preserving Fourier features of x [N]: √2·cos(x·f + φ), f = 2π·N(0, 1)·bandwidth,
  φ = 2π·U[0, 1), drawn at initialisation and never trained (collection 'buffers'); [N, C]."""
  num_channels: int
  bandwidth: float = 1.0

  @nn.compact
  def __call__(self, x):
    freqs = self.variable(BUFFERS, 'freqs', lambda: 2 * np.pi * self.bandwidth * jax.random.normal(
        self.make_rng('params'), (self.num_channels,), jnp.float32))
    phases = self.variable(BUFFERS, 'phases', lambda: 2 * np.pi * jax.random.uniform(
        self.make_rng('params'), (self.num_channels,), jnp.float32))
    y = x.astype(jnp.float32)[:, None] * freqs.value[None, :] + phases.value[None, :]
    return jnp.cos(y) * math.sqrt(2)


class MPConv(nn.Module):
  """Magnitude-preserving convolution (`kernel` k > 0, weight [k, k, in, out], 'same' padding)
  or linear map (`kernel` 0, weight [in, out]): the weight normalised per output channel times
  gain/√fan_in. Weights start N(0, 1) (any scale: they are normalised)."""
  features: int
  kernel: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, gain=1.0):
    fan_in = x.shape[-1] * max(self.kernel, 1) ** 2
    shape = ((self.kernel, self.kernel) if self.kernel else ()) + (x.shape[-1], self.features)
    w = self.param(MP_WEIGHT, nn.initializers.normal(1.0), shape, jnp.float32)
    w = normalize_weight(w) * (gain / math.sqrt(fan_in))
    w = w.astype(self.dtype)
    x = x.astype(self.dtype)
    if not self.kernel:
      return jnp.dot(x, w, precision=matmul_precision(self.dtype))
    pad = self.kernel // 2
    return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                    precision=matmul_precision(self.dtype))


def _attention(qkv, num_heads):
  """Cosine self-attention: qkv [N, H, W, 3C] with the official channel order [head, c, (q, k,
  v)]; q, k, v pixel-normalised over each head's c channels, then SongUNet's attention (the same
  layout and softmax(qᵀk / √c) v); → [N, H, W, C]."""
  n, h, w, c3 = qkv.shape
  per_head = c3 // (3 * num_heads)
  qkv = normalize(qkv.reshape(n, h, w, num_heads, per_head, 3), axis=4)
  return self_attention(qkv.reshape(n, h, w, c3), num_heads)


class Block(nn.Module):
  """EDM2's encoder ('enc') or decoder ('dec') block: optional 2× resampling, a residual branch
  conv–(embedding scale)–conv mixed in with mp_sum(res_balance), optional cosine attention mixed
  in with mp_sum(attn_balance), activations clipped to ±clip_act."""
  out_channels: int
  flavor: str = 'enc'
  resample_mode: str = 'keep'  # 'keep' | 'up' | 'down'
  resample_filter: Sequence[int] = (1, 1)
  attention: bool = False
  channels_per_head: int = 64
  dropout: float = 0.0
  res_balance: float = 0.3
  attn_balance: float = 0.3
  clip_act: float = 256.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, emb, train=False):
    dt = self.dtype
    in_channels = x.shape[-1]
    kernel = resample_kernel(self.resample_filter)
    pad = (len(self.resample_filter) - 1) // 2
    if self.resample_mode == 'down':
      x = downsample_2x(x, kernel, pad)
    elif self.resample_mode == 'up':
      x = upsample_2x(x, kernel, pad)
    if self.flavor == 'enc':
      if in_channels != self.out_channels:
        x = MPConv(self.out_channels, 1, dtype=dt, name='conv_skip')(x)
      x = normalize(x, axis=-1)  # Pixel norm.

    y = MPConv(self.out_channels, 3, dtype=dt, name='conv_res0')(mp_silu(x))
    emb_gain = self.param('emb_gain', nn.initializers.zeros, (), jnp.float32)
    c = MPConv(self.out_channels, 0, dtype=jnp.float32, name='emb_linear')(emb, gain=emb_gain) + 1
    y = mp_silu(y * c[:, None, None, :].astype(y.dtype))
    if train and self.dropout:
      keep = jax.random.bernoulli(self.make_rng('dropout'), 1 - self.dropout, y.shape)
      y = jnp.where(keep, y / (1 - self.dropout), 0).astype(y.dtype)
    y = MPConv(self.out_channels, 3, dtype=dt, name='conv_res1')(y)

    if self.flavor == 'dec' and in_channels != self.out_channels:
      x = MPConv(self.out_channels, 1, dtype=dt, name='conv_skip')(x)
    x = mp_sum(x.astype(dt), y, t=self.res_balance)

    num_heads = self.out_channels // self.channels_per_head if self.attention else 0
    if num_heads:
      y = MPConv(self.out_channels * 3, 1, dtype=dt, name='attn_qkv')(x)
      y = MPConv(self.out_channels, 1, dtype=dt, name='attn_proj')(_attention(y, num_heads))
      x = mp_sum(x, y, t=self.attn_balance)
    if self.clip_act is not None:
      x = jnp.clip(x, -self.clip_act, self.clip_act)
    return x


def check_architecture(img_resolution, channel_mult, attn_resolutions, model_channels=None,
                       channels_per_head=64):
  """UserError (one line) unless the resolution halves cleanly through every level, the
  attention resolutions are among the network's (SongUNet's checks of the same) and each has
  at least one head: a level narrower than channels_per_head gets none, which the official code
  skips silently (so EDM2's bottom-level attention is off in a net that narrow)."""
  check_levels(img_resolution, channel_mult, attn_resolutions, network='EDM2UNet')
  if model_channels is None:
    return
  if channels_per_head < 1:
    raise UserError(f'EDM2UNet: channels_per_head={channels_per_head} must be at least 1')
  for level, mult in enumerate(channel_mult):
    res, channels = img_resolution >> level, model_channels * mult
    if res in attn_resolutions and channels < channels_per_head:
      raise UserError(f'EDM2UNet: attention at {res}x{res} would have no heads: that level has '
                      f'{channels} channels, fewer than channels_per_head={channels_per_head}; '
                      'lower channels_per_head or widen the level')


class EDM2UNet(nn.Module):
  """EDM2's U-Net. Fields are the official constructor's (channel_mult_noise/channel_mult_emb
  None: the first and the largest level's width) plus Block's options, the label dropout of
  classifier-free guidance (not in EDM2, which guides with a second network) and the compute
  `dtype`. Called as SongUNet: (x, noise_labels, class_labels, augment_labels, train)."""
  img_resolution: int
  in_channels: int
  out_channels: int
  label_dim: int = 0
  augment_dim: int = 0  # EDM2 has no augmentation labels; must be 0.
  model_channels: int = 192
  channel_mult: Sequence[int] = (1, 2, 3, 4)
  channel_mult_noise: Any = None
  channel_mult_emb: Any = None
  num_blocks: int = 3
  attn_resolutions: Sequence[int] = (16, 8)
  label_balance: float = 0.5
  concat_balance: float = 0.5
  res_balance: float = 0.3
  attn_balance: float = 0.3
  channels_per_head: int = 64
  dropout: float = 0.0
  label_dropout: float = 0.0
  resample_filter: Sequence[int] = (1, 1)
  clip_act: float = 256.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, train=False):
    check_architecture(self.img_resolution, tuple(self.channel_mult),
                       tuple(self.attn_resolutions), self.model_channels, self.channels_per_head)
    if self.augment_dim or augment_labels is not None:
      raise UserError('EDM2UNet takes no augmentation labels: set augment.p=0')
    want = (self.img_resolution, self.img_resolution, self.in_channels)
    if tuple(x.shape[1:]) != want:
      raise UserError(f'EDM2UNet: input of shape {tuple(x.shape)} but the network takes '
                      f'[N, {", ".join(map(str, want))}] images')
    dt = self.dtype
    cblock = [self.model_channels * m for m in self.channel_mult]
    cnoise = (self.model_channels * self.channel_mult_noise if self.channel_mult_noise
              else cblock[0])
    cemb = self.model_channels * self.channel_mult_emb if self.channel_mult_emb else max(cblock)
    block = dict(resample_filter=tuple(self.resample_filter),
                 channels_per_head=self.channels_per_head, dropout=self.dropout,
                 res_balance=self.res_balance, attn_balance=self.attn_balance,
                 clip_act=self.clip_act, dtype=dt)

    # Embedding (float32).
    emb = MPConv(cemb, 0, name='emb_noise')(MPFourier(cnoise, name='emb_fourier')(noise_labels))
    if self.label_dim:
      n = x.shape[0]
      labels = (jnp.zeros((n, self.label_dim), jnp.float32) if class_labels is None
                else class_labels.astype(jnp.float32))
      if train and self.label_dropout:
        keep = jax.random.uniform(self.make_rng('dropout'), (n, 1))  # One draw per image.
        labels = labels * (keep >= self.label_dropout).astype(labels.dtype)
      emb = mp_sum(emb, MPConv(cemb, 0, name='emb_label')(labels * math.sqrt(self.label_dim)),
                   t=self.label_balance)
    emb = mp_silu(emb)

    # Encoder; the constant channel of ones stands in for biases.
    x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1).astype(dt)
    skips = []
    for level, channels in enumerate(cblock):
      res = self.img_resolution >> level
      name = f'enc_{res}x{res}'
      if level == 0:
        x = MPConv(channels, 3, dtype=dt, name=f'{name}_conv')(x)
      else:
        x = Block(x.shape[-1], 'enc', 'down', **block, name=f'{name}_down')(x, emb, train)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = Block(channels, 'enc', attention=res in self.attn_resolutions, **block,
                  name=f'{name}_block{idx}')(x, emb, train)
        skips.append(x)

    # Decoder.
    for level, channels in reversed(list(enumerate(cblock))):
      res = self.img_resolution >> level
      name = f'dec_{res}x{res}'
      if level == len(cblock) - 1:
        x = Block(x.shape[-1], 'dec', attention=True, **block, name=f'{name}_in0')(x, emb, train)
        x = Block(x.shape[-1], 'dec', **block, name=f'{name}_in1')(x, emb, train)
      else:
        x = Block(x.shape[-1], 'dec', 'up', **block, name=f'{name}_up')(x, emb, train)
      for idx in range(self.num_blocks + 1):
        x = mp_cat(x, skips.pop(), t=self.concat_balance)
        x = Block(channels, 'dec', attention=res in self.attn_resolutions, **block,
                  name=f'{name}_block{idx}')(x, emb, train)
    out_gain = self.param('out_gain', nn.initializers.zeros, (), jnp.float32)
    x = MPConv(self.out_channels, 3, dtype=dt, name='out_conv')(x, gain=out_gain)
    return x.astype(jnp.float32)


def force_weight_norm(params):
  """Every `mp_weight` of a parameter tree normalised per output channel (forced weight
  normalisation, Eq. 66); other leaves unchanged. A no-op on trees without such weights (e.g. a
  SongUNet's), so the diffusion recipe applies it to every network."""
  def fix(path, leaf):
    last = path[-1]
    return normalize_weight(leaf) if getattr(last, 'key', None) == MP_WEIGHT else leaf
  return jax.tree_util.tree_map_with_path(fix, params)


def params_from_official(state_dict):
  """An official Precond's (or UNet's) state dict {name: array} → ({'params': ...},
  {'buffers': ...}) in this module's layout and Precond's nesting ('unet.' → 'model').

  'unet.enc.16x16_block0.conv_res0.weight' → params['model']['enc_16x16_block0']['conv_res0']
  ['mp_weight'], OIHW → HWIO ([out, in] → [in, out]); the gains as scalars; the Fourier
  frequencies and phases into the buffers."""
  params, buffers = {}, {}
  for name, value in state_dict.items():
    value = np.asarray(value, np.float32)
    parts = name.split('.')
    if parts[0] == 'unet':
      parts[0] = 'model'
    if len(parts) > 2 and parts[1] in ('enc', 'dec'):  # 'enc', '16x16_block0' → one module.
      parts[1:3] = [f'{parts[1]}_{parts[2]}']
    leaf = parts[-1]
    tree = buffers if leaf in ('freqs', 'phases') else params
    if leaf == 'weight':
      parts[-1] = MP_WEIGHT
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    for part in parts[:-1]:
      tree = tree.setdefault(part, {})
    tree[parts[-1]] = jnp.asarray(value)
  return {'params': params}, {BUFFERS: buffers}
