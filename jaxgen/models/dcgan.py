"""DCGAN (Radford et al. 2016): all-convolutional generator and discriminator.

Generator: z [B, z_dim] → a 4×4 map (a transposed 4×4 convolution from 1×1, written as a dense
layer) → log2(R)−2 transposed convolutions (4×4, stride 2), each doubling the size and halving
the channels, with BatchNorm + ReLU between, and tanh at the end. Discriminator: the mirror
image with strided 4×4 convolutions, LeakyReLU 0.2, BatchNorm on all but the first layer, and a
final 4×4 valid convolution (here a dense layer on the flattened 4×4 map) to one logit. As in
the PyTorch DCGAN reference: no biases, weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02), so
at 64×64 with 64 base channels G has 3,576,704 parameters and D 2,765,568. Optional class
conditioning: a label embedding concatenated to z in G and a projection term (Miyato & Koyama
2018) in D.

D's normalisation is a choice (`norm`), for the GAN remedies (jaxgen/objectives/gan_losses.py):
  'batch'  the paper's BatchNorm (running statistics in the 'batch_stats' collection);
  'layer'  layer norm over each example's whole feature map (H, W, C) with a per-channel scale
           and offset, ε = 1e-5: the critic of Gulrajani et al.'s WGAN-GP code, whose gradient
           penalty needs a D that treats every example on its own;
  'none'   no normalisation (Miyato et al.'s spectrally normalised D).
`spectral_norm=True` divides every weight of D (convolutions, the logit layer, the projection
embedding) by its largest singular value σ (Miyato et al. 2018), estimated by flax's
`nn.SpectralNorm`: a convolution kernel [k, k, C_in, C_out] is read as a [k·k·C_in, C_out]
matrix, the power-iteration vector u and the last σ live in 'batch_stats' beside BatchNorm's
statistics. A call with `update_sn=True` advances u by one power iteration and stores it; other
calls normalise by σ from one iteration on the stored u, without storing anything.

Images are [B, R, R, C] in [-1, 1], NHWC. `dtype` is the compute dtype (bfloat16 for mixed
precision); parameters and BatchNorm statistics stay float32.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

_init = nn.initializers.normal(0.02)

D_NORMS = ('batch', 'layer', 'none')


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * nn.initializers.normal(1.0)(key, shape, dtype)


def channels_per_level(resolution, base_channels, max_channels):
  """Channels of the feature maps at 4×4, 8×8, ..., R/2 × R/2 (widest first)."""
  levels = int(math.log2(resolution)) - 2
  return [min(base_channels * 2 ** (levels - 1 - i), max_channels) for i in range(levels)]


class Generator(nn.Module):
  resolution: int = 64
  channels: int = 3
  base_channels: int = 64
  max_channels: int = 512
  num_classes: int = 0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z, labels=None, train=True):
    """z [B, z_dim], labels int [B] (if conditional) → images [B, R, R, C] in [-1, 1]."""
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                     scale_init=_bn_scale_init, dtype=self.dtype, name=name)
    widths = channels_per_level(self.resolution, self.base_channels, self.max_channels)
    x = z.astype(self.dtype)
    if self.num_classes:
      x = jnp.concatenate([x, nn.Embed(self.num_classes, z.shape[-1], embedding_init=_init,
                                       dtype=self.dtype, name='label_embed')(labels)], -1)
    x = nn.Dense(4 * 4 * widths[0], use_bias=False, kernel_init=_init, dtype=self.dtype,
                 name='project')(x)
    x = nn.relu(norm('project_bn')(x.reshape(-1, 4, 4, widths[0])))
    for i, width in enumerate(widths[1:], 1):
      x = nn.ConvTranspose(width, (4, 4), (2, 2), padding='SAME', use_bias=False,
                           kernel_init=_init, dtype=self.dtype, name=f'up{i}')(x)
      x = nn.relu(norm(f'up{i}_bn')(x))
    x = nn.ConvTranspose(self.channels, (4, 4), (2, 2), padding='SAME', use_bias=False,
                         kernel_init=_init, dtype=self.dtype, name='to_image')(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  resolution: int = 64
  base_channels: int = 64
  max_channels: int = 512
  num_classes: int = 0
  dtype: jnp.dtype = jnp.float32
  norm: str = 'batch'            # 'batch' | 'layer' | 'none' (D_NORMS)
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, images, labels=None, train=True, update_sn=False):
    """images [B, R, R, C] in [-1, 1] → logits [B]. `update_sn`: store one more power iteration
    of every spectral norm (one call per training step; ignored without spectral_norm)."""
    def layer(module, name):
      """`module` applied as is, or through its spectrally normalised weights."""
      if not self.spectral_norm:
        return module
      sn = nn.SpectralNorm(module, name=f'{name}_sn')
      return lambda *args: sn(*args, update_stats=update_sn)

    def norm(x, name):
      if self.norm == 'batch':
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                            scale_init=_bn_scale_init, dtype=self.dtype, name=f'{name}_bn')(x)
      if self.norm == 'layer':
        return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1,
                            dtype=self.dtype, name=f'{name}_ln')(x)
      return x

    widths = channels_per_level(self.resolution, self.base_channels, self.max_channels)[::-1]
    x = images.astype(self.dtype)
    for i, width in enumerate(widths):
      x = layer(nn.Conv(width, (4, 4), (2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                        kernel_init=_init, dtype=self.dtype, name=f'down{i}'), f'down{i}')(x)
      if i > 0:
        x = norm(x, f'down{i}')
      x = nn.leaky_relu(x, 0.2)
    features = x.reshape(x.shape[0], -1)
    logits = layer(nn.Dense(1, use_bias=False, kernel_init=_init, dtype=self.dtype,
                            name='logit'), 'logit')(features)[:, 0]
    if self.num_classes:
      embed = layer(nn.Embed(self.num_classes, features.shape[-1], embedding_init=_init,
                             dtype=self.dtype, name='label_projection'),
                    'label_projection')(labels)
      logits = logits + jnp.sum(embed * features, axis=-1)
    return logits.astype(jnp.float32)
