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

Two encoders (`model.encoder`). 'vgg19' (the default): torchvision's ImageNet VGG19 (zero
padding, input normalised by ImageNet's mean and std; `jaxgen.models.vgg`), whose weights most
users have. 'vgg_normalised': the official one, `OfficialEncoder` — Gatys et al.'s normalised
Caffe VGG19 as the official `net.vgg` holds it (`vgg_normalised.pth`): a 1×1 convolution that
maps [0, 1] RGB to the Caffe network's mean-subtracted BGR in 0–255, then every 3×3 convolution
reflection-padded and every max-pool rounding up (`ceil_mode`). The official `decoder.pth`
inverts that encoder only; `decoder_params_from_official` converts it. Images are in [-1, 1],
the decoder's output too (the official one's is in [0, 1]: an affine map that the conversion
folds into the last layer, y = 2·y_official − 1).
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


ENCODERS = ('vgg19', 'vgg_normalised')
# The official encoder's convolutions up to relu4_1 (name, in, out, then a max-pool?): net.vgg's
# Sequential indices 0, 2, 5, 9, 12, 16, 19, 22, 25, 29 (OFFICIAL_ENCODER_INDICES).
OFFICIAL_ENCODER_PLAN = (('conv0', 3, 3, False), ('conv1_1', 3, 64, False),
                         ('conv1_2', 64, 64, True), ('conv2_1', 64, 128, False),
                         ('conv2_2', 128, 128, True), ('conv3_1', 128, 256, False),
                         ('conv3_2', 256, 256, False), ('conv3_3', 256, 256, False),
                         ('conv3_4', 256, 256, True), ('conv4_1', 256, 512, False))
OFFICIAL_ENCODER_INDICES = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29)
# The official decoder's convolutions: net.decoder's Sequential indices, in DECODER_PLAN order.
OFFICIAL_DECODER_INDICES = (1, 5, 8, 11, 14, 18, 21, 25, 28)


class OfficialEncoder(nn.Module):
  """The official AdaIN encoder (`net.vgg[:31]`, see the module docstring) on [-1, 1] images:
  {'relu1_1', 'relu2_1', 'relu3_1', 'relu4_1'} as the official train.py's enc_1..enc_4."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    x = ((images.astype(jnp.float32) + 1.0) / 2.0).astype(self.dtype)  # The official [0, 1].
    out = {}
    for name, _, c_out, pool in OFFICIAL_ENCODER_PLAN:
      if name == 'conv0':  # 1×1, no padding, no ReLU.
        x = nn.Conv(c_out, (1, 1), dtype=self.dtype, name=name)(x)
        continue
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
      x = nn.relu(nn.Conv(c_out, (3, 3), padding='VALID', dtype=self.dtype, name=name)(x))
      relu = 'relu' + name[4:]
      if relu in ENCODER_LAYERS:
        out[relu] = x.astype(jnp.float32)
      if pool:  # MaxPool2d(2, 2, ceil_mode=True): an odd side keeps its last row / column.
        pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return out


def encoder(kind='vgg19', dtype=jnp.float32):
  """The frozen encoder `kind` (ENCODERS) returning ENCODER_LAYERS of [-1, 1] images."""
  if kind == 'vgg_normalised':
    return OfficialEncoder(dtype=dtype)
  return vgg.VGG(depth=19, outputs=ENCODER_LAYERS, dtype=dtype)


def encoder_param_shapes(kind='vgg19'):
  """{'conv1_1/kernel': shape, ...} of the encoder's convolutions up to conv4_1."""
  if kind == 'vgg_normalised':
    return _plan_shapes(OFFICIAL_ENCODER_PLAN)
  names = vgg.layer_names(19)
  last = names.index(ENCODER_LAYERS[-1])
  return {k: s for k, s in vgg.param_shapes(19).items()
          if names.index(k.split('/')[0]) < last}


def _sequential_to_flat(state_dict, indices, names, what):
  """{'I.weight', 'I.bias'} of an nn.Sequential → {'NAME/kernel' (HWIO), 'NAME/bias'} for the
  convolutions at `indices`; other entries (the layers after relu4_1 in vgg_normalised.pth)
  are ignored. ValueError names what does not fit."""
  flat = {}
  for index, name in zip(indices, names):
    try:
      weight, bias = state_dict[f'{index}.weight'], state_dict[f'{index}.bias']
    except KeyError:
      raise ValueError(f'no {index}.weight / {index}.bias: not {what}') from None
    flat[f'{name}/kernel'] = np.asarray(weight).transpose(2, 3, 1, 0)  # OIHW → HWIO
    flat[f'{name}/bias'] = np.asarray(bias)
  return flat


def encoder_params_from_official(state_dict):
  """naoto0804/pytorch-AdaIN's `vgg_normalised.pth` (net.vgg's state_dict) → the flat
  parameters of `OfficialEncoder` ({'conv0/kernel': HWIO, ...})."""
  return _sequential_to_flat(state_dict, OFFICIAL_ENCODER_INDICES,
                             [n for n, *_ in OFFICIAL_ENCODER_PLAN],
                             "the official AdaIN encoder's state_dict (vgg_normalised.pth)")


def decoder_params_from_official(state_dict):
  """naoto0804/pytorch-AdaIN's `decoder.pth` (net.decoder's state_dict) → `Decoder`'s flat
  parameters, the last layer rescaled from the official [0, 1] output to [-1, 1]."""
  flat = _sequential_to_flat(state_dict, OFFICIAL_DECODER_INDICES,
                             [n for n, *_ in DECODER_PLAN],
                             "the official AdaIN decoder's state_dict (decoder.pth)")
  last = DECODER_PLAN[-1][0]
  flat[f'{last}/kernel'] = 2.0 * flat[f'{last}/kernel']
  flat[f'{last}/bias'] = 2.0 * flat[f'{last}/bias'] - 1.0
  return flat


def _plan_shapes(plan):
  """{'NAME/kernel': HWIO, 'NAME/bias': (out,)} of a plan's convolutions: 3×3, but for the
  official encoder's 1×1 'conv0'."""
  shapes = {}
  for name, c_in, c_out, _ in plan:
    k = 1 if name == 'conv0' else 3
    shapes[f'{name}/kernel'], shapes[f'{name}/bias'] = (k, k, c_in, c_out), (c_out,)
  return shapes


def decoder_param_shapes():
  """{'conv4_1/kernel': shape, ...} of `Decoder`."""
  return _plan_shapes(DECODER_PLAN)


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


# The official AdaIN weights (naoto0804/pytorch-AdaIN's release v0.0.0). No SHA-256 is published
# for them, so jaxgen.pretrained never downloads them: the user fetches them by hand, and a copy
# is taken on its layout (every converted name and shape, finite values).
_RELEASE = 'https://github.com/naoto0804/pytorch-AdaIN/releases/tag/v0.0.0'


def _official_spec(name, title, filename, env_var, convert, shapes):
  from jaxgen import pretrained  # pylint: disable=import-outside-toplevel
  return pretrained.WeightsSpec(
      name=name, title=title, filename=filename, sha256='', url=_RELEASE, env_var=env_var,
      subdir='adain', converted_name=f'{name}.npz', format_tag=f'jaxgen-{name}-v1',
      convert=convert, shapes=shapes)


ENCODER_WEIGHTS = _official_spec(
    'adain_vgg', "the official AdaIN encoder's weights", 'vgg_normalised.pth',
    'JAXGEN_ADAIN_VGG_WEIGHTS', encoder_params_from_official,
    lambda: encoder_param_shapes('vgg_normalised'))
DECODER_WEIGHTS = _official_spec(
    'adain_decoder', "the official AdaIN decoder's weights", 'decoder.pth',
    'JAXGEN_ADAIN_DECODER_WEIGHTS', decoder_params_from_official, decoder_param_shapes)


def load_official_encoder(weights=None):
  """`OfficialEncoder`'s parameters (a pytree) from vgg_normalised.pth or its converted .npz:
  `weights`, $JAXGEN_ADAIN_VGG_WEIGHTS or the cache; UserError naming the file otherwise."""
  from jaxgen import pretrained  # pylint: disable=import-outside-toplevel
  return pretrained.load_params(ENCODER_WEIGHTS, weights=weights)


def load_official_decoder(weights=None):
  """`Decoder`'s parameters from the official decoder.pth (found as `load_official_encoder`)."""
  from jaxgen import pretrained  # pylint: disable=import-outside-toplevel
  return pretrained.load_params(DECODER_WEIGHTS, weights=weights)
