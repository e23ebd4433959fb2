"""Super-resolution networks of BasicSR / ESRGAN: SRResNet (BasicSR's MSRResNet), RRDBNet
(ESRGAN's generator) and the VGG-style discriminator of SRGAN/ESRGAN.

  * SRResNet ("modified SRResNet", Wang et al. 2018, BasicSR `archs/srresnet_arch.py`): the
    PSNR-oriented baseline. conv_first + LeakyReLU(0.1), `num_block` residual blocks without
    batch norm (x + conv(ReLU(conv(x)))), sub-pixel up-sampling (a conv to r²·C channels and a
    pixel shuffle: one ×2 or ×3 step, or two ×2 steps for ×4, each + LeakyReLU(0.1)), conv_hr +
    LeakyReLU(0.1), conv_last, plus the bilinear up-sampling of the input: the network learns
    the residual to bilinear interpolation.
  * RRDBNet (ESRGAN, Wang et al. 2018, BasicSR `archs/rrdbnet_arch.py`): conv_first, a trunk of
    `num_block` residual-in-residual dense blocks, conv_body, + the trunk's input (one long
    skip), then two (nearest ×2, conv, LeakyReLU(0.2)) steps, conv_hr + LeakyReLU(0.2) and
    conv_last. A residual dense block concatenates every earlier feature map,
      x_k = LReLU(conv_k([x, x_1, …, x_{k−1}]))  (k = 1..4, `num_grow_ch` channels each),
      RDB(x) = 0.2 · conv_5([x, x_1, …, x_4]) + x,
    and RRDB(x) = 0.2 · RDB₃(RDB₂(RDB₁(x))) + x: the residual scaling β = 0.2 keeps the 69
    stacked dense blocks trainable without batch norm. Always ×4 up-sampling; BasicSR's
    `scale` 2 and 1 (Real-ESRGAN) first pixel-unshuffle the input by 2 or 4 (so the image
    comes out 2× or 1× the input size) and widen conv_first accordingly.
  * VGGStyleDiscriminator (BasicSR `archs/discriminator_arch.py`): a conv + LeakyReLU(0.2),
    then conv–BN–LeakyReLU(0.2) layers, alternating 3×3 stride 1 and 4×4 stride 2 (pad 1, no
    bias), channels num_feat·(1, 2, 4, 8, 8[, 8]), down to 4×4 from an input of 128 (or 256),
    then linear(→100) + LeakyReLU(0.2) and linear(→1): one logit per image, [N, 1].

Faithful to the official networks: the same parameters (names, counts, shapes up to layout),
the same initialisation, and the same outputs to float32 rounding (tests/test_srnet.py holds
them against the official code's outputs, tests/data/README_srnet.md).

Initialisation, as BasicSR: `default_init_weights(..., 0.1)`, i.e. Kaiming normal (fan_in,
gain √2, std √(2 / fan_in)) × 0.1 and zero biases, for every SRResNet conv and for the convs of
RRDBNet's dense blocks; PyTorch's default (weight and bias U(±1/√fan_in)) for RRDBNet's other
convs and the whole discriminator (BatchNorm scale 1, shift 0).

Layout differences from the PyTorch weights: activations NHWC; conv kernels HWIO [k, k, in,
out], dense kernels [in, out]; `nn.Sequential` indices folded into names ('body.3.rdb1.conv2' →
'body_3/rdb1/conv2'); BatchNorm's weight, bias → params scale, bias and running_mean,
running_var → batch_stats mean, var. The discriminator flattens its 4×4 features in PyTorch's
(C, H, W) order, so its linear weights load unchanged. `params_from_official` converts a state
dict (BasicSR names, or ESRGAN's own, see there).

BatchNorm follows PyTorch exactly (eps 1e-5, momentum 0.1): train=True normalises with the
batch's mean and biased variance and updates running_mean ← 0.9·running_mean + 0.1·mean and
running_var ← 0.9·running_var + 0.1·unbiased variance (apply with mutable=['batch_stats']);
train=False normalises with the running statistics. Inside one jit the batch statistics are
those of the global batch (synchronised batch norm), whatever the sharding.

Pretrained weights. The official models take RGB in [0, 1] ([N, H, W, 3] float32; ESRGAN's
`test.py` reads BGR with OpenCV and flips it to RGB before dividing by 255) and return RGB
whose useful range is [0, 1] (clip it). To load `RRDB_ESRGAN_x4.pth` (xinntao/ESRGAN) or
BasicSR's `ESRGAN_SRx4_DF2KOST_official-ff704c30.pth` / `MSRResNet_x4…pth`:

  from jaxgen.pretrained import load_torch_state_dict        # reads a .pth without torch
  state = load_torch_state_dict('RRDB_ESRGAN_x4.pth')
  net = RRDBNet()                                             # ×4, RGB, 64 features, 23 blocks
  variables = params_from_official(state, net)
  sr = net.apply(variables, lr_rgb_01)                        # [N, h, w, 3] → [N, 4h, 4w, 3]

Usage:

  net = SRResNet(upscale=4)
  variables = init_variables(net, jax.random.key(0))
  sr = net.apply(variables, lr)                               # [N, h, w, 3] → [N, 4h, 4w, 3]
  disc = VGGStyleDiscriminator()
  dvars = init_variables(disc, jax.random.key(1))
  logits, updates = disc.apply(dvars, sr_128, train=True, mutable=['batch_stats'])
"""

import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError

SRRESNET_SCALES = (2, 3, 4)
RRDBNET_SCALES = (1, 2, 4)
DISCRIMINATOR_SIZES = (128, 256)


# ------------------------------------------------------------------------------------------------
# Resampling, as PyTorch computes it.


def pixel_shuffle(x, r):
  """torch.nn.PixelShuffle(r) in NHWC: [N, H, W, C·r²] → [N, r·H, r·W, C] with
  out[n, r·h + i, r·w + j, c] = x[n, h, w, c·r² + i·r + j] (PyTorch's channel order: each output
  channel's r² sub-pixels are consecutive input channels, row-major over (i, j))."""
  n, h, w, c = x.shape
  if c % (r * r):
    raise UserError(f'pixel_shuffle: {c} channels is not a multiple of {r}² = {r * r}')
  y = x.reshape(n, h, w, c // (r * r), r, r)
  y = jnp.transpose(y, (0, 1, 4, 2, 5, 3))  # n, h, i, w, j, c
  return y.reshape(n, h * r, w * r, c // (r * r))


def pixel_unshuffle(x, r):
  """The inverse of `pixel_shuffle` (torch.nn.PixelUnshuffle, BasicSR's `pixel_unshuffle`):
  [N, r·H, r·W, C] → [N, H, W, C·r²], out[n, h, w, c·r² + i·r + j] = x[n, r·h + i, r·w + j, c]."""
  n, hh, ww, c = x.shape
  if hh % r or ww % r:
    raise UserError(f'pixel_unshuffle: a {hh}×{ww} image does not split into {r}×{r} blocks; '
                    f'crop or pad it to multiples of {r}')
  y = x.reshape(n, hh // r, r, ww // r, r, c)
  y = jnp.transpose(y, (0, 1, 3, 5, 2, 4))  # n, h, w, c, i, j
  return y.reshape(n, hh // r, ww // r, c * r * r)


def upsample_nearest(x, r):
  """F.interpolate(x, scale_factor=r, mode='nearest') for integer r: each pixel repeated r×r."""
  return jnp.repeat(jnp.repeat(x, r, axis=1), r, axis=2)


def _bilinear_taps(size, r):
  """Source indices and weights of PyTorch's bilinear up-sampling by r along one axis
  (align_corners=False): output pixel o samples the input at s = (o + ½)/r − ½, clamped at 0,
  between i₀ = ⌊s⌋ and i₁ = min(i₀ + 1, size − 1) with weight λ = s − i₀ on i₁. Computed in
  float32 with the float32 1/r, as PyTorch's CPU kernel does."""
  scale = np.float32(1.0 / r)
  src = np.maximum(scale * (np.arange(size * r, dtype=np.float32) + np.float32(0.5))
                   - np.float32(0.5), np.float32(0))
  i0 = np.minimum(np.floor(src).astype(np.int32), size - 1)
  i1 = np.minimum(i0 + 1, size - 1)
  lam = (src - i0.astype(np.float32)).astype(np.float32)
  return i0, i1, lam


def upsample_bilinear(x, r):
  """F.interpolate(x, scale_factor=r, mode='bilinear', align_corners=False) in NHWC, integer r:
  separable linear interpolation at half-pixel centres, edges replicated. [N, H, W, C] →
  [N, r·H, r·W, C]."""
  for axis in (1, 2):
    i0, i1, lam = _bilinear_taps(x.shape[axis], r)
    shape = [1, 1, 1, 1]
    shape[axis] = lam.size
    lam = jnp.asarray(lam.reshape(shape), x.dtype)
    x = jnp.take(x, i0, axis=axis) * (1 - lam) + jnp.take(x, i1, axis=axis) * lam
  return x


# ------------------------------------------------------------------------------------------------
# Initialisers and layers.


def kaiming_normal(scale=1.0):
  """BasicSR's default_init_weights for a conv or dense kernel: N(0, 2/fan_in) · scale
  (torch.nn.init.kaiming_normal_, fan_in mode, gain √2), fan_in = k·k·in."""
  return nn.initializers.variance_scaling(2.0 * scale * scale, 'fan_in', 'normal')


# PyTorch's default Conv2d/Linear kernel: kaiming_uniform_(a=√5), i.e. U(±1/√fan_in).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias(fan_in):
  """PyTorch's default Conv2d/Linear bias: U(±1/√fan_in), fan_in that of the layer's kernel."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _conv(x, features, name, basicsr_init, *, kernel=3, stride=1, use_bias=True,
          precision=None):
  """PyTorch's Conv2d(in, features, kernel, stride, padding=1) on NHWC x, initialised as BasicSR's
  default_init_weights(…, 0.1) (`basicsr_init`) or as PyTorch's default."""
  if basicsr_init:
    kernel_init, bias_init = kaiming_normal(0.1), nn.initializers.zeros
  else:
    kernel_init = torch_default_kernel
    bias_init = torch_default_bias(kernel * kernel * x.shape[-1])
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((1, 1), (1, 1)),
                 use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                 precision=precision, name=name)(x)


def _lrelu(x, slope):
  return jax.nn.leaky_relu(x, slope)


class BatchNorm(nn.Module):
  """torch.nn.BatchNorm2d over the channels of NHWC x: (x − μ)/√(σ² + eps)·scale + bias, μ, σ²
  the batch's mean and biased variance over (N, H, W) when training (the running statistics are
  then updated with momentum, PyTorch's convention: new = (1 − momentum)·old + momentum·batch,
  the variance unbiased, n/(n − 1)), the running statistics otherwise."""
  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train):
    channels = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (channels,), jnp.float32)
    if train:
      mean = jnp.mean(x, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
      if not self.is_initializing():
        n = x.shape[0] * x.shape[1] * x.shape[2]
        m = self.momentum
        running_mean.value = (1 - m) * running_mean.value + m * mean
        running_var.value = (1 - m) * running_var.value + m * var * (n / max(n - 1, 1))
    else:
      mean, var = running_mean.value, running_var.value
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


# ------------------------------------------------------------------------------------------------
# SRResNet (BasicSR's MSRResNet).


class ResidualBlockNoBN(nn.Module):
  """x + conv2(ReLU(conv1(x))): EDSR's residual block, no batch norm, no residual scaling."""
  num_feat: int = 64
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    h = _conv(x, self.num_feat, 'conv1', True, precision=self.precision)
    h = _conv(jax.nn.relu(h), self.num_feat, 'conv2', True, precision=self.precision)
    return x + h


def _check_channels(x, expected, what):
  if x.ndim != 4 or x.shape[-1] != expected:
    raise UserError(f'{what}: expected images [N, H, W, {expected}], got shape {tuple(x.shape)}; '
                    'inputs are NHWC')


def _check_scale(scale, scales, what, attribute):
  if scale not in scales:
    raise UserError(f'{what}: {attribute}={scale} is not supported; BasicSR\'s {what} '
                    f'up-samples by one of {scales}')


def _reconstruct(conv, feat, num_feat, num_out_ch, slope):
  """The tail both generators share, at the output resolution: conv_last(LReLU(conv_hr(feat)))."""
  return conv(_lrelu(conv(feat, num_feat, 'conv_hr'), slope), num_out_ch, 'conv_last')


class SRResNet(nn.Module):
  """BasicSR's MSRResNet: [N, H, W, num_in_ch] → [N, upscale·H, upscale·W, num_out_ch].

  The official pretrained models take RGB in [0, 1]. Attribute names are the official
  constructor's (`upscale` 2, 3 or 4). `train` is accepted and ignored (no batch norm, no
  dropout), so that every generator is called as G(x, train)."""
  num_in_ch: int = 3
  num_out_ch: int = 3
  num_feat: int = 64
  num_block: int = 16
  upscale: int = 4
  precision: Any = None  # of the convolutions; None: the backend's default for float32

  @nn.compact
  def __call__(self, x, train=False):
    del train  # Neither batch norm nor dropout.
    _check_scale(self.upscale, SRRESNET_SCALES, 'SRResNet', 'upscale')
    _check_channels(x, self.num_in_ch, 'SRResNet')
    conv = lambda h, features, name: _conv(h, features, name, True, precision=self.precision)
    out = _lrelu(conv(x, self.num_feat, 'conv_first'), 0.1)
    for i in range(self.num_block):
      out = ResidualBlockNoBN(self.num_feat, self.precision, name=f'body_{i}')(out)
    steps = (2, 2) if self.upscale == 4 else (self.upscale,)
    for i, r in enumerate(steps):
      out = conv(out, self.num_feat * r * r, f'upconv{i + 1}')
      out = _lrelu(pixel_shuffle(out, r), 0.1)
    out = _reconstruct(conv, out, self.num_feat, self.num_out_ch, 0.1)
    return out + upsample_bilinear(x, self.upscale)


MSRResNet = SRResNet  # the official class name


# ------------------------------------------------------------------------------------------------
# RRDBNet (ESRGAN's generator).


class ResidualDenseBlock(nn.Module):
  """0.2 · conv5([x, x1, x2, x3, x4]) + x, x_k = LReLU_0.2(conv_k([x, x1, …])): five 3×3
  convs, the first four growing the concatenation by `num_grow_ch` channels each."""
  num_feat: int = 64
  num_grow_ch: int = 32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    features = [x]
    for k in range(1, 5):
      h = _conv(jnp.concatenate(features, axis=-1), self.num_grow_ch, f'conv{k}', True,
                precision=self.precision)
      features.append(_lrelu(h, 0.2))
    h = _conv(jnp.concatenate(features, axis=-1), self.num_feat, 'conv5', True,
              precision=self.precision)
    return h * 0.2 + x


class RRDB(nn.Module):
  """Residual in residual dense block: 0.2 · rdb3(rdb2(rdb1(x))) + x."""
  num_feat: int = 64
  num_grow_ch: int = 32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    out = x
    for k in range(1, 4):
      out = ResidualDenseBlock(self.num_feat, self.num_grow_ch, self.precision,
                               name=f'rdb{k}')(out)
    return out * 0.2 + x


class RRDBNet(nn.Module):
  """ESRGAN's generator (BasicSR's RRDBNet): [N, H, W, num_in_ch] → [N, scale·H, scale·W,
  num_out_ch]. scale 4 is ESRGAN; 2 and 1 (Real-ESRGAN) pixel-unshuffle the input by 2 or 4
  first, so H and W must be multiples of 2 or 4.

  The defaults are the official ESRGAN ×4 (16,697,987 parameters); its pretrained models take
  RGB in [0, 1]. `train` is accepted and ignored, as SRResNet's."""
  num_in_ch: int = 3
  num_out_ch: int = 3
  scale: int = 4
  num_feat: int = 64
  num_block: int = 23
  num_grow_ch: int = 32
  precision: Any = None  # of the convolutions; None: the backend's default for float32

  @nn.compact
  def __call__(self, x, train=False):
    del train  # Neither batch norm nor dropout.
    _check_scale(self.scale, RRDBNET_SCALES, 'RRDBNet', 'scale')
    _check_channels(x, self.num_in_ch, 'RRDBNet')
    conv = lambda h, features, name: _conv(h, features, name, False, precision=self.precision)
    feat = x if self.scale == 4 else pixel_unshuffle(x, 4 // self.scale)
    feat = conv(feat, self.num_feat, 'conv_first')
    trunk = feat
    for i in range(self.num_block):
      trunk = RRDB(self.num_feat, self.num_grow_ch, self.precision, name=f'body_{i}')(trunk)
    feat = feat + conv(trunk, self.num_feat, 'conv_body')
    for name in ('conv_up1', 'conv_up2'):
      feat = _lrelu(conv(upsample_nearest(feat, 2), self.num_feat, name), 0.2)
    return _reconstruct(conv, feat, self.num_feat, self.num_out_ch, 0.2)


# ------------------------------------------------------------------------------------------------
# The VGG-style discriminator.


class VGGStyleDiscriminator(nn.Module):
  """BasicSR's VGGStyleDiscriminator: [N, input_size, input_size, num_in_ch] → logits [N, 1].
  Apply with train=True and mutable=['batch_stats'] to normalise with batch statistics and
  update the running ones (PyTorch's train mode); train=False uses the running statistics."""
  num_in_ch: int = 3
  num_feat: int = 64
  input_size: int = 128
  precision: Any = None  # of the convolutions and dense layers

  @nn.compact
  def __call__(self, x, train=False):
    if self.input_size not in DISCRIMINATOR_SIZES:
      raise UserError(f'VGGStyleDiscriminator: input_size={self.input_size} is not supported; '
                      f'use one of {DISCRIMINATOR_SIZES}')
    _check_channels(x, self.num_in_ch, 'VGGStyleDiscriminator')
    if x.shape[1:3] != (self.input_size, self.input_size):
      raise UserError(f'VGGStyleDiscriminator: images are {x.shape[1]}×{x.shape[2]}, this '
                      f'discriminator takes {self.input_size}×{self.input_size} (input_size)')
    conv = lambda h, features, name, **kw: _conv(h, features, name, False,
                                                 precision=self.precision, **kw)
    bn = lambda h, name: _lrelu(BatchNorm(name=name)(h, train), 0.2)
    feat = _lrelu(conv(x, self.num_feat, 'conv0_0'), 0.2)
    feat = bn(conv(feat, self.num_feat, 'conv0_1', kernel=4, stride=2, use_bias=False), 'bn0_1')
    num_stages = int(math.log2(self.input_size // 4))  # each halves: 128 → 4 in 5 stages
    for i in range(1, num_stages):
      features = self.num_feat * min(2 ** i, 8)
      feat = bn(conv(feat, features, f'conv{i}_0', use_bias=False), f'bn{i}_0')
      feat = bn(conv(feat, features, f'conv{i}_1', kernel=4, stride=2, use_bias=False),
                f'bn{i}_1')
    # PyTorch's view(N, -1) flattens NCHW: (C, H, W) order, so the official linear1 loads as is.
    feat = jnp.transpose(feat, (0, 3, 1, 2)).reshape(feat.shape[0], -1)
    dense = lambda h, features, name: nn.Dense(
        features, kernel_init=torch_default_kernel, bias_init=torch_default_bias(h.shape[-1]),
        precision=self.precision, name=name)(h)
    feat = _lrelu(dense(feat, 100, 'linear1'), 0.2)
    return dense(feat, 1, 'linear2')


# ------------------------------------------------------------------------------------------------
# Initialisation and official weights.


def _dummy_input(network):
  if isinstance(network, VGGStyleDiscriminator):
    size = network.input_size
  else:
    size = 8  # any size whose parameters are the same; a multiple of 4 for pixel-unshuffle
  return jnp.zeros((1, size, size, network.num_in_ch), jnp.float32)


def init_variables(network, key):
  """Freshly initialised variables of an SRResNet, RRDBNet or VGGStyleDiscriminator:
  {'params': ...}, and {'batch_stats': ...} for the discriminator."""
  if not isinstance(network, (SRResNet, RRDBNet, VGGStyleDiscriminator)):
    raise UserError(f'init_variables: not a network of jaxgen.models.srnet: '
                    f'{type(network).__name__}')
  return network.init({'params': key}, _dummy_input(network))


# ESRGAN's own names (xinntao/ESRGAN RRDBNet_arch.py, the released RRDB_ESRGAN_x4.pth and
# RRDB_PSNR_x4.pth) → BasicSR's.
_ESRGAN_RENAMES = (
    (re.compile(r'^RRDB_trunk\.(\d+)\.RDB(\d)\.'), r'body.\1.rdb\2.'),
    (re.compile(r'^trunk_conv\.'), 'conv_body.'),
    (re.compile(r'^upconv(\d)\.'), r'conv_up\1.'),
    (re.compile(r'^HRconv\.'), 'conv_hr.'),
)


def _legacy_esrgan_name(name, num_block):
  """ESRGAN's first release (architecture.py's RRDB_Net, one flattened nn.Sequential 'model'
  with 'model.N' names, ×4) → BasicSR's name; None if `name` is not one of its tensors.
  model.0 conv_first; model.1 the shortcut around the trunk: model.1.sub.i.RDBk.convj.0 its
  dense-block convs, model.1.sub.<num_block> conv_body; then (upsample, conv, act) twice:
  model.3, model.6; model.8 conv_hr, model.10 conv_last."""
  match = re.fullmatch(r'model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)', name)
  if match:
    return 'body.{}.rdb{}.conv{}.{}'.format(*match.groups())
  match = re.fullmatch(r'model\.1\.sub\.(\d+)\.(weight|bias)', name)
  if match and int(match.group(1)) == num_block:
    return f'conv_body.{match.group(2)}'
  layers = {'0': 'conv_first', '3': 'conv_up1', '6': 'conv_up2', '8': 'conv_hr',
            '10': 'conv_last'}
  match = re.fullmatch(r'model\.(\d+)\.(weight|bias)', name)
  if match and match.group(1) in layers:
    return f'{layers[match.group(1)]}.{match.group(2)}'
  return None


def _unwrap(state_dict, param_key):
  """BasicSR saves {'params': state_dict} (and 'params_ema' with EMA); the EMA weights are the
  ones BasicSR evaluates, so they are taken when present, unless `param_key` says otherwise."""
  nested = [k for k, v in state_dict.items() if isinstance(v, dict)]
  if param_key is None and not nested:
    return state_dict
  if param_key is None:
    param_key = 'params_ema' if 'params_ema' in nested else 'params'
  if not nested:
    raise UserError(f'official weights: param_key={param_key!r} given, but this is a plain state '
                    'dict (tensors only); leave param_key=None')
  if param_key not in nested:
    raise UserError(f'official weights: no state dict under {param_key!r}; this checkpoint has '
                    f'{nested}; pass param_key= one of them')
  return state_dict[param_key]


def _basicsr_names(state_dict, network):
  """{BasicSR name: (the given name, value)}: DataParallel's 'module.' prefix stripped and, for
  RRDBNet, ESRGAN's names mapped to BasicSR's."""
  strip = lambda name: name[len('module.'):] if name.startswith('module.') else name
  legacy = isinstance(network, RRDBNet) and any(strip(k) == 'model.0.weight' for k in state_dict)
  out = {}
  for given, value in state_dict.items():
    name = strip(given)
    if legacy:
      name = _legacy_esrgan_name(name, network.num_block) or name
    elif isinstance(network, RRDBNet):
      for pattern, replacement in _ESRGAN_RENAMES:
        name = pattern.sub(replacement, name)
    if name in out:
      raise UserError(f'official weights: {given!r} and {out[name][0]!r} are the same tensor '
                      f'({name!r}); give one state dict')
    out[name] = (given, value)
  return out


def _flax_path(name, ndim):
  """'body.3.rdb1.conv2.weight' → ('params', 'body_3', 'rdb1', 'conv2', 'kernel');
  'bn1_0.running_var' → ('batch_stats', 'bn1_0', 'var')."""
  parts = name.split('.')
  if len(parts) > 2 and parts[0] == 'body':
    parts = [f'body_{parts[1]}'] + parts[2:]
  *modules, leaf = parts
  if leaf == 'running_mean':
    return ('batch_stats', *modules, 'mean')
  if leaf == 'running_var':
    return ('batch_stats', *modules, 'var')
  if leaf == 'weight':
    return ('params', *modules, 'kernel' if ndim > 1 else 'scale')
  return ('params', *modules, leaf)


def _official_name(path):
  """The inverse of `_flax_path`: ('params', 'body_3', 'rdb1', 'conv2', 'kernel') →
  'body.3.rdb1.conv2.weight' (BasicSR's name)."""
  collection, *modules, leaf = path
  modules = [m.replace('_', '.', 1) if re.fullmatch(r'body_\d+', m) else m for m in modules]
  if collection == 'batch_stats':
    leaf = {'mean': 'running_mean', 'var': 'running_var'}[leaf]
  else:
    leaf = {'kernel': 'weight', 'scale': 'weight'}.get(leaf, leaf)
  return '.'.join(modules + [leaf])


def params_from_official(state_dict, network, param_key=None):
  """Flax variables for `network` from an official PyTorch state dict.

  state_dict: {name: numpy array}, e.g. `{k: v.numpy() for k, v in net.state_dict().items()}`
    or `jaxgen.pretrained.load_torch_state_dict(path)` of a `.pth`. Accepted:
    BasicSR's names (MSRResNet, RRDBNet, VGGStyleDiscriminator); for RRDBNet also ESRGAN's
    ('conv_first', 'RRDB_trunk.N.RDB1.conv1', 'trunk_conv', 'upconv1', 'upconv2', 'HRconv',
    'conv_last': xinntao/ESRGAN's RRDB_ESRGAN_x4.pth) and those of ESRGAN's first release
    ('model.0', 'model.1.sub.N.RDB1.conv1.0', …, 'model.10'); a 'module.' prefix; a BasicSR
    checkpoint {'params': …, 'params_ema': …} (see `param_key`).
  network: the SRResNet, RRDBNet or VGGStyleDiscriminator the weights are for; every tensor must
    map onto one of its variables, shape for shape, else one UserError line.
  param_key: which state dict of a BasicSR checkpoint; None: 'params_ema' if present, else
    'params'.

  Returns {'params': …} (and 'batch_stats' for the discriminator), nested dicts of float32
  numpy arrays: conv weights OIHW → HWIO, linear weights [out, in] → [in, out]. BatchNorm's
  `num_batches_tracked` is dropped (unused with a momentum).
  """
  if not isinstance(network, (SRResNet, RRDBNet, VGGStyleDiscriminator)):
    raise UserError(f'params_from_official: not a network of jaxgen.models.srnet: '
                    f'{type(network).__name__}')
  what = type(network).__name__
  state_dict = _unwrap(dict(state_dict), param_key)
  variables, official = {}, {}
  for name, (given, value) in _basicsr_names(state_dict, network).items():
    if name.endswith('num_batches_tracked'):
      continue
    value = np.asarray(value, np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:
      value = value.T
    path = _flax_path(name, value.ndim)
    official[path] = given
    node = variables
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.ascontiguousarray(value)

  want = jax.eval_shape(lambda: init_variables(network, jax.random.key(0)))
  shapes = lambda tree: {tuple(k.key for k in path): leaf.shape
                         for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  expected, got = shapes(want), shapes(variables)
  for path, shape in got.items():
    if path not in expected:
      raise UserError(f'official weights: unexpected tensor {official[path]!r}; the weights are '
                      f'of another architecture than this {what} (compare num_block, upscale/'
                      'scale, input_size)')
    if shape != expected[path]:
      raise UserError(f'official weights: {official[path]!r} has shape {shape} (after NCHW → '
                      f'NHWC), this {what} expects {expected[path]}; the architecture differs '
                      '(compare num_in_ch, num_out_ch, num_feat, num_grow_ch, upscale/scale)')
  for path in expected:
    if path not in got:
      raise UserError(f'official weights: no tensor {_official_name(path)!r} (for '
                      f'{"/".join(path)}); the weights are of another architecture than this '
                      f'{what} (compare num_block, upscale/scale, input_size)')
  return variables
