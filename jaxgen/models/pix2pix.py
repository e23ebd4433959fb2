"""pix2pix's networks (Isola et al. 2017): the U-Net generator and the PatchGAN discriminator,
as the official code (junyanz/pytorch-CycleGAN-and-pix2pix, `models/networks.py`) builds them,
and the layers CycleGAN's ResnetGenerator (jaxgen/models/resnet_generator.py) shares with them.

U-Net generator (`UNetGenerator`, the official `UnetGenerator` / `UnetSkipConnectionBlock`):
`num_downs` levels; level i (0 = full resolution) halves the resolution with a 4×4 stride-2 conv
to ngf·min(2^i, 8) channels and its decoder half doubles it back with a 4×4 stride-2 transposed
conv, whose output is concatenated after the level's input (the skip connection):

  level 0 (outermost):  x → conv → [level 1] → ReLU → deconv → tanh        (no norm either side)
  level i (middle):     x → LReLU(0.2) → conv → norm → [level i+1] → ReLU → deconv → norm
                          (→ dropout 0.5 at levels 4 … num_downs−2) → concat[x, ·]
  level n−1 (innermost): x → LReLU(0.2) → conv → ReLU → deconv → norm → concat[x, ·]

The innermost conv has no norm (at 256² with 8 levels its output is 1×1). `unet_256` (8 levels)
maps 256² to 1² and back; `unet_128` has 7. With `use_dropout` the three ngf·8 decoder levels
below the innermost (for unet_256) drop half their units, pix2pix's only source of noise.

PatchGAN (`PatchDiscriminator`, the official `NLayerDiscriminator`): 4×4 convs with padding 1,
`n_layers` of them stride 2 (channels ndf·min(2^n, 8), norm after all but the first), one more
stride 1 with norm, LeakyReLU(0.2) after each, and a last stride-1 conv to one channel: logits
[B, h, w, 1], one per overlapping patch. Each logit sees a square of `receptive_field(n_layers)`
input pixels: 70×70 for the default n_layers=3 (16 for 1, 286 for 5: the paper's 16/70/286).

Normalisation (the official `get_norm_layer`), `norm` = 'batch' | 'instance' | 'none':
  * 'batch': torch's BatchNorm2d (affine, ε = 1e-5, momentum 0.1). train=True normalises with
    the batch's mean and biased variance over (B, H, W) and updates the running statistics in
    the `batch_stats` collection, r ← 0.9·r + 0.1·s, with the *unbiased* variance (n/(n−1), n =
    B·H·W) as torch does (Flax's own BatchNorm uses the biased one); train=False uses them.
    Apply with `mutable=['batch_stats']` when train=True.
  * 'instance': torch's InstanceNorm2d(affine=False, track_running_stats=False): every sample
    and channel normalised by its own mean and biased variance over (H, W), ε = 1e-5, in train
    and eval alike; no parameters.
  * 'none': identity.
The official code gives the convolutions followed by a norm a bias only for 'instance' (batch
norm's shift makes one redundant, and the rule, `use_bias = norm_layer == InstanceNorm2d`, is
False for 'none' too); the first and last layers always have one. Parameter counts depend on it:
unet_256 (3 → 3, batch) has 54,413,955, the 70×70 PatchGAN 2,768,705 on 6 channels.

Initialisation is the official `init_weights(net, 'normal', 0.02)`: conv and transposed-conv
weights N(0, 0.02²), biases 0, batch-norm scales N(1, 0.02²) and shifts 0; running mean 0, var 1.

Layout: activations NHWC; conv kernels HWIO [k, k, in, out] (torch OIHW weight transposed
(2, 3, 1, 0)); transposed-conv kernels [k, k, in, out] too (torch's ConvTranspose2d weight is
[in, out, k, k], transposed (2, 3, 0, 1), not flipped: the flip happens in the forward pass).
`params_from_official` converts an official state dict (e.g. a pretrained `latest_net_G.pth`).

`dtype` is the compute dtype of the convolutions; parameters stay float32; norm statistics are
float32; the generator's tanh output and the discriminator's logits are float32.

The official test.py keeps the networks in train mode unless `--eval` (pix2pix's generator then
normalises with the test batch's statistics and keeps its dropout); train=True with a 'dropout'
rng (discarding the batch-stats updates) reproduces that, train=False is `--eval`. The
translation recipe's `sampling.norm='batch'` applies train=True one image at a time with
dropout off (jaxgen/recipes/translation.py).

Usage:

  G = UNetGenerator(num_downs=UNET_PRESETS['unet_256'])
  variables = G.init(key, jnp.zeros([1, 256, 256, 3]), train=False)  # {'params', 'batch_stats'}
  fake, updates = G.apply(variables, x, train=True, mutable=['batch_stats'],
                          rngs={'dropout': key})          # x [B, 256, 256, C] → [B, 256, 256, 3]
  D = PatchDiscriminator()
  d_variables = D.init(key, jnp.zeros([1, 256, 256, 6]), train=False)
  logits = D.apply(d_variables, jnp.concatenate([x, fake], -1), train=False)   # [B, 30, 30, 1]
"""

from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError
from jaxgen.models.precision import matmul_precision

NORMS = ('batch', 'instance', 'none')
UNET_PRESETS = {'unet_256': 8, 'unet_128': 7}  # the official netG names → num_downs
INIT_STD = 0.02        # init_weights(net, 'normal', init_gain=0.02)
NORM_EPS = 1e-5        # torch's BatchNorm2d / InstanceNorm2d default ε
BN_MOMENTUM = 0.9      # Flax's convention for torch's momentum=0.1: r ← 0.9·r + 0.1·batch
LEAK = 0.2             # LeakyReLU slope of the U-Net encoder and the PatchGAN
DROPOUT = 0.5


def check_norm(norm):
  if norm not in NORMS:
    raise UserError(f'norm={norm!r} is not one of {", ".join(NORMS)}')


def conv_bias(norm):
  """Whether a convolution followed by a norm layer has a bias: the official rule, true for
  instance norm only (batch norm's shift makes a bias redundant; 'none' follows the rule)."""
  return norm == 'instance'


def _normal_init(key, shape, dtype=jnp.float32):
  return INIT_STD * jax.random.normal(key, shape, dtype)


def _check_nhwc(x, what):
  if x.ndim != 4:
    raise UserError(f'{what} takes NHWC images [B, H, W, C]; got an array of shape {x.shape}')


# ------------------------------------------------------------------------------------------------
# Layers.


def _correlate(layer, x, stride, padding, lhs_dilation=1, flip=False):
  """What Conv2d and ConvTranspose2d share: the layer's kernel [k, k, in, features] ~ N(0,
  0.02²) (spatially flipped when `flip`), a correlation of x (dilated by `lhs_dilation`) with it
  in the compute dtype, NHWC/HWIO, with `stride` and (before, after) `padding`, then the bias
  (init 0) when the layer has one. Called inside the layer's compact __call__."""
  k = layer.kernel_size
  kernel = layer.param('kernel', _normal_init, (k, k, x.shape[-1], layer.features))
  if flip:
    kernel = kernel[::-1, ::-1]
  y = lax.conv_general_dilated(
      x.astype(layer.dtype), kernel.astype(layer.dtype), (stride, stride), [padding] * 2,
      lhs_dilation=(lhs_dilation, lhs_dilation), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=matmul_precision(layer.dtype))
  if layer.use_bias:
    y = y + layer.param('bias', nn.initializers.zeros, (layer.features,)).astype(layer.dtype)
  return y


class Conv2d(nn.Module):
  """k×k convolution with stride and symmetric zero padding, as torch's Conv2d: output size
  ⌊(H + 2·padding − k)/stride⌋ + 1. Kernel [k, k, in, out] ~ N(0, 0.02²), bias 0."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return _correlate(self, x, self.stride, (self.padding, self.padding))


class ConvTranspose2d(nn.Module):
  """torch's ConvTranspose2d(k, stride s, padding p, output_padding q): every input pixel adds
  its kernel-weighted copy into the output at s·i − p + (0 … k−1); output size (H − 1)·s − 2p +
  k + q. Computed as the equivalent correlation: the input dilated by s (s−1 zeros between
  pixels), padded by k−1−p before and k−1−p+q after, with the spatially flipped kernel.

  Kernel [k, k, in, out] = torch's weight [in, out, k, k] transposed (2, 3, 0, 1), unflipped."""
  features: int
  kernel_size: int
  stride: int = 2
  padding: int = 0
  output_padding: int = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    before = self.kernel_size - 1 - self.padding
    return _correlate(self, x, 1, (before, before + self.output_padding),
                      lhs_dilation=self.stride, flip=True)


def _scale_init(key, shape, dtype=jnp.float32):
  return 1 + INIT_STD * jax.random.normal(key, shape, dtype)


class BatchNorm(nn.Module):
  """torch's BatchNorm2d (affine, track_running_stats) over NHWC: y = (x − μ)/√(σ² + ε)·γ + β.

  train=True: μ, σ² are the batch mean and biased variance over (B, H, W), and the running
  statistics (collection `batch_stats`: 'mean', 'var') become m·r + (1 − m)·s with the unbiased
  variance σ²·n/(n − 1), n = B·H·W (torch's update). train=False: μ, σ² are the running ones.
  Parameters 'scale' γ ~ N(1, 0.02²), 'bias' β = 0."""
  momentum: float = BN_MOMENTUM
  epsilon: float = NORM_EPS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    c = x.shape[-1]
    scale = self.param('scale', _scale_init, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    running_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    running_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    x32 = x.astype(jnp.float32)
    if train:
      n = x.size // c
      if n < 2:
        raise UserError(f'batch norm in training needs more than one value per channel; got an '
                        f'input of shape {x.shape}: use a larger batch or images')
      mean = x32.mean((0, 1, 2))
      var = jnp.square(x32 - mean).mean((0, 1, 2))
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * mean
        running_var.value = m * running_var.value + (1 - m) * var * (n / (n - 1))
    else:
      mean, var = running_mean.value, running_var.value
    y = (x32 - mean) * (scale * lax.rsqrt(var + self.epsilon)) + bias
    return y.astype(self.dtype)


def instance_norm(x, epsilon=NORM_EPS):
  """torch's InstanceNorm2d(affine=False, track_running_stats=False) over NHWC: each sample's
  channel normalised by its own mean and biased variance over (H, W). Statistics in float32."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean((1, 2), keepdims=True)
  var = jnp.square(x32 - mean).mean((1, 2), keepdims=True)
  return ((x32 - mean) * lax.rsqrt(var + epsilon)).astype(x.dtype)


def norm_layer(norm, dtype, name):
  """The official `get_norm_layer(norm)`: a layer called as f(x, train). 'batch' is a BatchNorm
  module named `name` (its variables under that name); 'instance' and 'none' have no variables."""
  if norm == 'batch':
    return BatchNorm(dtype=dtype, name=name)
  if norm == 'instance':
    return lambda x, train: instance_norm(x)
  return lambda x, train: x


# ------------------------------------------------------------------------------------------------
# Networks.


class UNetGenerator(nn.Module):
  """pix2pix's U-Net generator: x [B, H, W, C] (any C; H, W multiples of 2^num_downs) → tanh
  output [B, H, W, out_channels] in (−1, 1), float32. See the module docstring for the levels.

  Variables: params `down{i}_conv`, `down{i}_norm` (middle levels), `up{i}_conv`, `up{i}_norm`
  (all but the outermost), level 0 outermost; with norm='batch' also `batch_stats`."""
  out_channels: int = 3
  num_downs: int = 8
  ngf: int = 64
  norm: str = 'batch'
  use_dropout: bool = False
  dtype: Any = jnp.float32

  def level_channels(self, i):
    """(outer, inner) channels of level i: inner = ngf·min(2^i, 8); outer = the level above's
    inner (out_channels at level 0)."""
    inner = self.ngf * min(2 ** i, 8)
    outer = self.out_channels if i == 0 else self.ngf * min(2 ** (i - 1), 8)
    return outer, inner

  def _check(self, x):
    check_norm(self.norm)
    if self.num_downs < 5:
      raise UserError(f'num_downs={self.num_downs}: the official U-Net has at least 5 levels '
                      '(unet_128: 7, unet_256: 8)')
    _check_nhwc(x, 'UNetGenerator')
    size = 2 ** self.num_downs
    if x.shape[1] % size or x.shape[2] % size:
      raise UserError(f'a U-Net of num_downs={self.num_downs} takes images whose height and width '
                      f'are multiples of {size}; got {x.shape[1]}×{x.shape[2]}: resize or crop '
                      'them, or use fewer levels')

  @nn.compact
  def __call__(self, x, train: bool):
    self._check(x)
    n, bias = self.num_downs, conv_bias(self.norm)
    conv = lambda features, use_bias, name: Conv2d(features, 4, 2, 1, use_bias, self.dtype,
                                                   name=name)
    deconv = lambda features, use_bias, name: ConvTranspose2d(features, 4, 2, 1, 0, use_bias,
                                                              self.dtype, name=name)
    norm = lambda name: norm_layer(self.norm, self.dtype, name)

    h, skips = x, []
    for i in range(n):                     # encoder: level i's input is level i−1's output
      if i > 0:
        skips.append(h)
        h = nn.leaky_relu(h, LEAK)
      h = conv(self.level_channels(i)[1], bias, f'down{i}_conv')(h)
      if 0 < i < n - 1:
        h = norm(f'down{i}_norm')(h, train)
    for i in reversed(range(n)):           # decoder, innermost first
      outer = self.level_channels(i)[0]
      h = nn.relu(h)
      if i == 0:
        h = deconv(outer, True, 'up0_conv')(h)
        return jnp.tanh(h.astype(jnp.float32))
      h = norm(f'up{i}_norm')(deconv(outer, bias, f'up{i}_conv')(h), train)
      if self.use_dropout and 4 <= i < n - 1:
        h = nn.Dropout(DROPOUT, deterministic=not train, name=f'up{i}_dropout')(h)
      h = jnp.concatenate([skips[i - 1], h.astype(skips[i - 1].dtype)], axis=-1)

  def example_input(self, in_channels, batch=1):
    """The smallest input shape the network takes (for `init` and `jax.eval_shape`)."""
    size = 2 ** self.num_downs
    return jax.ShapeDtypeStruct((batch, size, size, in_channels), jnp.float32)

  def official_layers(self):
    """[(official state-dict prefix, Flax path, kind)] of the layers with variables; kind is
    'conv', 'deconv' or a norm. The official U-Net nests its levels: level i's layers are the
    entries of a Sequential at B_i = 'model.model.' + '1.model.' + '3.model.'·(i − 1)."""
    layers, n = [], self.num_downs
    prefix = 'model.model.'
    for i in range(n):
      if i == 0:
        layers += [(prefix + '0.', ('down0_conv',), 'conv'),
                   (prefix + '3.', ('up0_conv',), 'deconv')]
      elif i < n - 1:
        layers += [(prefix + '1.', (f'down{i}_conv',), 'conv'),
                   (prefix + '2.', (f'down{i}_norm',), self.norm),
                   (prefix + '5.', (f'up{i}_conv',), 'deconv'),
                   (prefix + '6.', (f'up{i}_norm',), self.norm)]
      else:
        layers += [(prefix + '1.', (f'down{i}_conv',), 'conv'),
                   (prefix + '3.', (f'up{i}_conv',), 'deconv'),
                   (prefix + '4.', (f'up{i}_norm',), self.norm)]
      prefix += '1.model.' if i == 0 else '3.model.'
    return layers


def receptive_field(n_layers):
  """Side of the input square one PatchGAN logit sees: through the 4×4 convs (strides 2 ×
  n_layers, then 1, 1) backwards, r ← s·r + (k − s) from r = 1: 16, 34, 70, 142, 286 for
  n_layers = 1 … 5."""
  r = 1
  for stride in [1, 1] + [2] * n_layers:
    r = stride * r + (4 - stride)
  return r


class PatchDiscriminator(nn.Module):
  """pix2pix's PatchGAN (the official NLayerDiscriminator): x [B, H, W, C] (pix2pix: input and
  output image concatenated, C = 6) → logits [B, h, w, 1], float32, h = ⌊H/2^n⌋ − 2 (30 for
  256² and n_layers 3). No sigmoid: the loss takes logits.

  Variables: params `conv0` … `conv{n_layers + 1}` (the last gives the logits) and `norm1` …
  `norm{n_layers}`; with norm='batch' also `batch_stats`."""
  ndf: int = 64
  n_layers: int = 3
  norm: str = 'batch'
  dtype: Any = jnp.float32

  def _check(self, x):
    check_norm(self.norm)
    if self.n_layers < 1:
      raise UserError(f'n_layers={self.n_layers}: a PatchGAN has at least one stride-2 layer')
    _check_nhwc(x, 'PatchDiscriminator')
    smallest = 3 * 2 ** self.n_layers
    if min(x.shape[1:3]) < smallest:
      raise UserError(f'a PatchGAN of n_layers={self.n_layers} takes images of at least '
                      f'{smallest}×{smallest} pixels; got {x.shape[1]}×{x.shape[2]}')

  @nn.compact
  def __call__(self, x, train: bool):
    self._check(x)
    bias = conv_bias(self.norm)
    h = Conv2d(self.ndf, 4, 2, 1, True, self.dtype, name='conv0')(x)
    h = nn.leaky_relu(h, LEAK)
    for n in range(1, self.n_layers + 1):  # the last of these is stride 1
      stride = 2 if n < self.n_layers else 1
      h = Conv2d(self.ndf * min(2 ** n, 8), 4, stride, 1, bias, self.dtype, name=f'conv{n}')(h)
      h = norm_layer(self.norm, self.dtype, f'norm{n}')(h, train)
      h = nn.leaky_relu(h, LEAK)
    h = Conv2d(1, 4, 1, 1, True, self.dtype, name=f'conv{self.n_layers + 1}')(h)
    return h.astype(jnp.float32)

  def example_input(self, in_channels, batch=1):
    size = 3 * 2 ** self.n_layers
    return jax.ShapeDtypeStruct((batch, size, size, in_channels), jnp.float32)

  def official_layers(self):
    """The official Sequential is [conv, LReLU] then [conv, norm, LReLU] per layer, then the
    last conv: conv n at index 3n − 1, its norm at 3n (an Identity for 'none')."""
    layers = [('model.0.', ('conv0',), 'conv')]
    for n in range(1, self.n_layers + 1):
      layers += [(f'model.{3 * n - 1}.', (f'conv{n}',), 'conv'),
                 (f'model.{3 * n}.', (f'norm{n}',), self.norm)]
    last = self.n_layers + 1
    return layers + [(f'model.{3 * last - 1}.', (f'conv{last}',), 'conv')]


# ------------------------------------------------------------------------------------------------
# Official weights.


def _take(state_dict, used, name):
  if name not in state_dict:
    raise UserError(f'official weights: no tensor {name!r}; the state dict is of another '
                    'architecture (compare the network name, ngf/ndf, num_downs/n_blocks/'
                    'n_layers, norm, use_dropout)')
  used.add(name)
  return np.asarray(state_dict[name], np.float32)


def _put(tree, path, value):
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = np.ascontiguousarray(value)


def _shapes(tree):
  return {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def params_from_official(state_dict, network):
  """Flax variables of `network` (a UNetGenerator, PatchDiscriminator or ResnetGenerator) from
  the official code's state dict of the same architecture.

  state_dict: {name: array}, as `torch.load('latest_net_G.pth')` gives it (tensors or numpy
    arrays; a 'module.' prefix from DataParallel is dropped). Instance-norm running statistics
    that old official checkpoints carry (the official loader deletes them too) and batch norm's
    `num_batches_tracked` are ignored.
  network: the Flax module, configured as the official network was (norm, ngf, levels, ...).

  Returns {'params': ...} plus {'batch_stats': ...} for norm='batch': nested dicts of float32
  numpy arrays. Conv weights OIHW → HWIO; transposed-conv weights [in, out, k, k] → [k, k, in,
  out]; BatchNorm weight, bias, running_mean, running_var → scale, bias, mean, var. Every tensor
  must be used and every variable of the network found, with its shape, else one UserError.
  """
  state_dict = dict(state_dict)
  if state_dict and all(k.startswith('module.') for k in state_dict):
    state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
  params, stats, used = {}, {}, set()
  for prefix, path, kind in network.official_layers():
    if kind in ('conv', 'deconv'):
      weight = _take(state_dict, used, prefix + 'weight')
      if weight.ndim != 4:
        raise UserError(f'official weights: {prefix}weight has shape {weight.shape}, not that '
                        'of a 2-D convolution; the architecture differs')
      _put(params, path + ('kernel',),
           weight.transpose(2, 3, 1, 0) if kind == 'conv' else weight.transpose(2, 3, 0, 1))
      if prefix + 'bias' in state_dict:
        _put(params, path + ('bias',), _take(state_dict, used, prefix + 'bias'))
    elif kind == 'batch':
      _put(params, path + ('scale',), _take(state_dict, used, prefix + 'weight'))
      _put(params, path + ('bias',), _take(state_dict, used, prefix + 'bias'))
      _put(stats, path + ('mean',), _take(state_dict, used, prefix + 'running_mean'))
      _put(stats, path + ('var',), _take(state_dict, used, prefix + 'running_var'))
    if kind in ('batch', 'instance'):
      for buffer in ('running_mean', 'running_var', 'num_batches_tracked'):
        if prefix + buffer in state_dict:
          used.add(prefix + buffer)
  unused = sorted(set(state_dict) - used)
  if unused:
    raise UserError(f'official weights: {len(unused)} tensors this {type(network).__name__} has '
                    f'no place for, e.g. {unused[0]!r}; the state dict is of another '
                    'architecture (or norm) than this network')

  first = network.official_layers()[0][0] + 'weight'
  in_channels = np.shape(state_dict[first])[1]
  want = jax.eval_shape(lambda x: network.init(jax.random.key(0), x, train=False),
                        network.example_input(in_channels))
  variables = {'params': params, **({'batch_stats': stats} if stats else {})}
  expected, got = _shapes(want), _shapes(variables)
  for key, shape in expected.items():
    if key not in got:
      raise UserError(f'official weights: nothing for {key}; the state dict is of another '
                      'architecture (or norm) than this network')
    if got[key] != shape:
      raise UserError(f'official weights: {key} has shape {got[key]} (from the official layout), '
                      f'this network expects {shape}; ngf/ndf or the channels differ')
  for key in got:
    if key not in expected:
      raise UserError(f'official weights: {key} has no place in this network; the state dict is '
                      'of another architecture (or norm) than this network')
  return variables
