"""CycleGAN's ResNet generator (Zhu et al. 2017, after Johnson et al.'s fast style transfer), as
the official code (junyanz/pytorch-CycleGAN-and-pix2pix, `models/networks.py`:
`ResnetGenerator`, `ResnetBlock`) builds it:

  reflect-pad 3, 7×7 conv → ngf, norm, ReLU                                  (c7s1-ngf)
  2 × [3×3 conv stride 2, zero padding 1 → 2× channels, norm, ReLU]          (d2ngf, d4ngf)
  n_blocks × ResnetBlock(4·ngf): x + [pad 1, 3×3 conv, norm, ReLU, (dropout 0.5), pad 1,
                                      3×3 conv, norm](x)                      (R4ngf)
  2 × [3×3 transposed conv stride 2, padding 1, output_padding 1 → ½× channels, norm, ReLU]
  reflect-pad 3, 7×7 conv → out_channels, tanh                               (c7s1-3)

`resnet_9blocks` (9 blocks, for 256² images) and `resnet_6blocks` (6, for 128²). The transposed
convolutions are torch's ConvTranspose2d(3, 2, padding=1, output_padding=1): output 2H, the
extra row and column at the bottom/right (jaxgen.models.pix2pix.ConvTranspose2d). The two stride-2
convs give ⌈⌈H/2⌉/2⌉, so H, W multiples of 4 come back at the input's size (others come back
rounded up to one, as officially).

Normalisation, use of biases and initialisation are the official ones shared with pix2pix's
networks (see jaxgen/models/pix2pix.py): CycleGAN's default norm='instance' (per-sample
statistics, no parameters), so every conv has a bias; with 'batch' only the last conv has one.
resnet_9blocks (3 → 3, instance norm) has 11,378,179 parameters.

`padding_type` is the official option for the residual blocks' 3×3 convs: 'reflect' (default),
'replicate' or 'zero'; the first and last 7×7 convs always reflect-pad.

Variables: params `stem_conv`, `stem_norm`, `down{0,1}_conv`, `down{0,1}_norm`, `block{b}`
(`conv0`, `norm0`, `conv1`, `norm1`), `up{0,1}_conv`, `up{0,1}_norm`, `out_conv`; norms have
variables only for norm='batch' (also `batch_stats`). `params_from_official` (the one of
jaxgen.models.pix2pix, re-exported here) loads an official state dict, e.g. a pretrained
CycleGAN `latest_net_G_A.pth`.

Usage:

  G = ResnetGenerator(n_blocks=RESNET_PRESETS['resnet_9blocks'])
  variables = G.init(key, jnp.zeros([1, 256, 256, 3]), train=False)        # {'params'}
  y = G.apply(variables, x, train=False)                # x [B, 256, 256, C] → [B, 256, 256, 3]
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.errors import UserError
from jaxgen.models.pix2pix import (DROPOUT, Conv2d, ConvTranspose2d, check_norm, conv_bias,
                                   norm_layer, params_from_official)

__all__ = ['RESNET_PRESETS', 'PADDING_TYPES', 'ResnetBlock', 'ResnetGenerator',
           'params_from_official']

RESNET_PRESETS = {'resnet_9blocks': 9, 'resnet_6blocks': 6}  # the official netG names → n_blocks
PADDING_TYPES = {'reflect': 'reflect', 'replicate': 'edge', 'zero': None}  # → jnp.pad mode
N_DOWNSAMPLING = 2


def _pad(x, width, padding_type):
  """Pads H and W by `width`: 'reflect' mirrors without repeating the edge (torch's
  ReflectionPad2d), 'replicate' repeats the edge (ReplicationPad2d)."""
  return jnp.pad(x, ((0, 0), (width, width), (width, width), (0, 0)),
                 mode=PADDING_TYPES[padding_type])


def block_official_layers(prefix, norm, use_dropout, padding_type):
  """[(official prefix, name in the block, kind)] of one ResnetBlock's `conv_block` Sequential:
  [pad], conv, norm, ReLU, [Dropout], [pad], conv, norm; the pads are absent for 'zero'."""
  pad = 0 if padding_type == 'zero' else 1
  second = pad + 3 + (1 if use_dropout else 0) + pad
  return [(f'{prefix}conv_block.{pad}.', 'conv0', 'conv'),
          (f'{prefix}conv_block.{pad + 1}.', 'norm0', norm),
          (f'{prefix}conv_block.{second}.', 'conv1', 'conv'),
          (f'{prefix}conv_block.{second + 1}.', 'norm1', norm)]


class ResnetBlock(nn.Module):
  """x + F(x), F = pad, 3×3 conv, norm, ReLU, (dropout 0.5), pad, 3×3 conv, norm; the channel
  count is kept. 'zero' padding is the convs' own padding of 1."""
  norm: str = 'instance'
  use_dropout: bool = False
  padding_type: str = 'reflect'
  dtype: Any = jnp.float32

  def _conv(self, x, name):
    zero = self.padding_type == 'zero'
    if not zero:
      x = _pad(x, 1, self.padding_type)
    return Conv2d(x.shape[-1], 3, 1, 1 if zero else 0, conv_bias(self.norm), self.dtype,
                  name=name)(x)

  @nn.compact
  def __call__(self, x, train: bool):
    h = norm_layer(self.norm, self.dtype, 'norm0')(self._conv(x, 'conv0'), train)
    h = nn.relu(h)
    if self.use_dropout:
      h = nn.Dropout(DROPOUT, deterministic=not train, name='dropout')(h)
    h = norm_layer(self.norm, self.dtype, 'norm1')(self._conv(h, 'conv1'), train)
    return x + h.astype(x.dtype)

class ResnetGenerator(nn.Module):
  """CycleGAN's generator: x [B, H, W, C] (any C, H and W ≥ 5) → tanh output
  [B, 4⌈⌈H/2⌉/2⌉, …, out_channels] in (−1, 1), float32 (the input's size for multiples of 4)."""
  out_channels: int = 3
  ngf: int = 64
  n_blocks: int = 9
  norm: str = 'instance'
  use_dropout: bool = False
  padding_type: str = 'reflect'
  dtype: Any = jnp.float32

  def _check(self, x):
    check_norm(self.norm)
    if self.padding_type not in PADDING_TYPES:
      raise UserError(f'padding_type={self.padding_type!r} is not one of '
                      f'{", ".join(PADDING_TYPES)}')
    if self.n_blocks < 0:
      raise UserError(f'n_blocks={self.n_blocks} must be ≥ 0')
    if x.ndim != 4:
      raise UserError(f'ResnetGenerator takes NHWC images [B, H, W, C]; got shape {x.shape}')
    # Reflection pads must be narrower than what they pad (torch refuses otherwise): 3 at full
    # resolution, 1 at quarter resolution ⌈⌈H/2⌉/2⌉ ≥ 2.
    if min(x.shape[1:3]) < 5:
      raise UserError(f'ResnetGenerator takes images of at least 5×5 pixels; got '
                      f'{x.shape[1]}×{x.shape[2]}')

  def _block(self, b):
    return ResnetBlock(self.norm, self.use_dropout, self.padding_type, self.dtype,
                       name=f'block{b}')

  @nn.compact
  def __call__(self, x, train: bool):
    self._check(x)
    bias = conv_bias(self.norm)
    norm = lambda name: norm_layer(self.norm, self.dtype, name)
    h = Conv2d(self.ngf, 7, 1, 0, bias, self.dtype, name='stem_conv')(_pad(x, 3, 'reflect'))
    h = nn.relu(norm('stem_norm')(h, train))
    for i in range(N_DOWNSAMPLING):
      h = Conv2d(self.ngf * 2 ** (i + 1), 3, 2, 1, bias, self.dtype, name=f'down{i}_conv')(h)
      h = nn.relu(norm(f'down{i}_norm')(h, train))
    for b in range(self.n_blocks):
      h = self._block(b)(h, train)
    for i in range(N_DOWNSAMPLING):
      features = self.ngf * 2 ** (N_DOWNSAMPLING - i - 1)
      h = ConvTranspose2d(features, 3, 2, 1, 1, bias, self.dtype, name=f'up{i}_conv')(h)
      h = nn.relu(norm(f'up{i}_norm')(h, train))
    h = Conv2d(self.out_channels, 7, 1, 0, True, self.dtype, name='out_conv')(
        _pad(h, 3, 'reflect'))
    return jnp.tanh(h.astype(jnp.float32))

  def example_input(self, in_channels, batch=1):
    """The smallest input shape the network takes (for `init` and `jax.eval_shape`)."""
    return jax.ShapeDtypeStruct((batch, 8, 8, in_channels), jnp.float32)

  def official_layers(self):
    """[(official state-dict prefix, Flax path, kind)]. The official Sequential: pad, conv,
    norm, ReLU (0–3); per down-sampling conv, norm, ReLU (4–9); the blocks (10 …); per
    up-sampling deconv, norm, ReLU; pad, conv, tanh."""
    layers = [('model.1.', ('stem_conv',), 'conv'), ('model.2.', ('stem_norm',), self.norm)]
    for i in range(N_DOWNSAMPLING):
      layers += [(f'model.{4 + 3 * i}.', (f'down{i}_conv',), 'conv'),
                 (f'model.{5 + 3 * i}.', (f'down{i}_norm',), self.norm)]
    first = 4 + 3 * N_DOWNSAMPLING
    for b in range(self.n_blocks):
      layers += [(prefix, (f'block{b}', name), kind) for prefix, name, kind in
                 block_official_layers(f'model.{first + b}.', self.norm, self.use_dropout,
                                       self.padding_type)]
    first += self.n_blocks
    for i in range(N_DOWNSAMPLING):
      layers += [(f'model.{first + 3 * i}.', (f'up{i}_conv',), 'deconv'),
                 (f'model.{first + 3 * i + 1}.', (f'up{i}_norm',), self.norm)]
    last = first + 3 * N_DOWNSAMPLING + 1
    return layers + [(f'model.{last}.', ('out_conv',), 'conv')]
