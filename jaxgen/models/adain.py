"""AdaIN style transfer's networks (Huang & Belongie 2017, "Arbitrary style transfer in real-time
with adaptive instance normalization"), as naoto0804/pytorch-AdaIN's `net.py` builds them.

  encoder f   VGG19 up to relu4_1, frozen (jaxgen.models.vgg; also relu1_1, relu2_1, relu3_1
              for the style loss)
  AdaIN       t = AdaIN(f(c), f(s)) = σ(f(s)) · (f(c) − μ(f(c))) / σ(f(c)) + μ(f(s))
              μ, σ per sample and channel over space, σ = √(unbiased variance + 1e-5)
              (`function.py`'s calc_mean_std)
  decoder g   the encoder mirrored, pooling replaced by nearest-neighbour ×2 up-sampling, every
              3×3 convolution reflection-padded by 1, ReLU after each but the last:

                512→256, up, 256→256 ×3, 256→128, up, 128→128, 128→64, up, 64→64, 64→3

              3,505,219 parameters, as the official `decoder` (9 convolutions with biases).

Styles. t can blend several style images, Σ_k w_k AdaIN(f(c), f(s_k)) (the official
`--style_interpolation_weights`), and be pulled back towards the content by α ∈ [0, 1]:
g(α t + (1 − α) f(c)) (`--alpha`, the content–style trade-off).

Where this differs from the official code: the encoder is torchvision's ImageNet VGG19 (zero
padding, input normalised by ImageNet's mean and std; `jaxgen.models.vgg`), not the official
`vgg_normalised.pth` (Gatys et al.'s normalised Caffe VGG19 with reflection padding), so an
official `decoder.pth` does not fit it and a decoder is trained here. Images are in [-1, 1], the
decoder's output too (the official one's is in [0, 1]: an affine map its last layer absorbs).
Initialisation is PyTorch's default for `nn.Conv2d`, as the official decoder's: weights and biases
uniform in ±1/√fan_in.

Sizes: the encoder floors the size three times and the decoder doubles it three times, so images
whose sides are multiples of 8 come back at their size (SIZE_MULTIPLE).

Usage:

  decoder = Decoder()
  params = decoder.init(key, jnp.zeros([1, 4, 4, 512]))['params']
  feats = encoder().apply({'params': enc_params}, images)          # {'relu1_1': ..., ...}
  t = adain(feats['relu4_1'], style_feats['relu4_1'])
  images = decoder.apply({'params': params}, t)                    # [B, 8h, 8w, 3]
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import vgg
from jaxgen.objectives.style import ADAIN_EPS, mean_std

# The encoder's outputs: the style loss's layers, the last of which AdaIN works on.
ENCODER_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1')
# The official decoder's convolutions (in → out channels) and which are followed by ×2
# up-sampling; names mirror the VGG layers they invert.
DECODER_PLAN = (('conv4_1', 512, 256, True), ('conv3_4', 256, 256, False),
                ('conv3_3', 256, 256, False), ('conv3_2', 256, 256, False),
                ('conv3_1', 256, 128, True), ('conv2_2', 128, 128, False),
                ('conv2_1', 128, 64, True), ('conv1_2', 64, 64, False),
                ('conv1_1', 64, 3, False))
SIZE_MULTIPLE = 8


def adain(content_feat, style_feat, eps=ADAIN_EPS):
  """AdaIN(x, y) = σ(y) (x − μ(x)) / σ(x) + μ(y), per sample and channel; features [B, H, W, C]
  (content and style may differ in H, W)."""
  c_mean, c_std = mean_std(content_feat, eps)
  s_mean, s_std = mean_std(style_feat, eps)
  normalized = (content_feat.astype(jnp.float32) - c_mean[:, None, None]) / c_std[:, None, None]
  return normalized * s_std[:, None, None] + s_mean[:, None, None]


def blend(content_feat, style_feats, weights, alpha):
  """α Σ_k w_k AdaIN(c, s_k) + (1 − α) c: content features [B, h, w, C], a list of style
  features (each [B, h_k, w_k, C]) and their weights (floats summing to 1), α in [0, 1]."""
  t = sum(w * adain(content_feat, s) for w, s in zip(weights, style_feats))
  return alpha * t + (1.0 - alpha) * content_feat


def encoder(dtype=jnp.float32):
  """The frozen encoder: torchvision's VGG19 returning ENCODER_LAYERS of [-1, 1] images."""
  return vgg.VGG(depth=19, outputs=ENCODER_LAYERS, dtype=dtype)


def encoder_param_shapes():
  """{'conv1_1/kernel': shape, ...} of the VGG19 convolutions up to conv4_1."""
  names = vgg.layer_names(19)
  last = names.index(ENCODER_LAYERS[-1])
  return {k: s for k, s in vgg.param_shapes(19).items()
          if names.index(k.split('/')[0]) < last}


def encoder_params(vgg_params):
  """The encoder's part of full VGG19 parameters ({'conv1_1': {'kernel', 'bias'}, ...})."""
  wanted = {k.split('/')[0] for k in encoder_param_shapes()}
  return {k: v for k, v in vgg_params.items() if k in wanted}


def _torch_default_init(fan_in):
  """PyTorch's nn.Conv2d default: uniform in ±1/√fan_in (kaiming_uniform(a=√5) for weights)."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Decoder(nn.Module):
  """AdaIN's decoder (see the module docstring): [B, h, w, 512] → [B, 8h, 8w, 3].

  Attributes:
    dtype: compute dtype (parameters stay float32; the output is float32).
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t):
    x = t.astype(self.dtype)
    for i, (name, c_in, c_out, upsample) in enumerate(DECODER_PLAN):
      fan_in = 9 * c_in
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
      x = nn.Conv(c_out, (3, 3), padding='VALID', dtype=self.dtype, name=name,
                  kernel_init=_torch_default_init(fan_in),
                  bias_init=_torch_default_init(fan_in))(x)
      if i < len(DECODER_PLAN) - 1:
        x = nn.relu(x)
      if upsample:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # Nearest neighbour, ×2.
    return x.astype(jnp.float32)


def param_count():
  """The decoder's parameters: Σ 9·in·out + out over DECODER_PLAN (3,505,219)."""
  return sum(9 * c_in * c_out + c_out for _, c_in, c_out, _ in DECODER_PLAN)
