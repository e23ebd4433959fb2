"""VGG16 and VGG19 feature extractors (Simonyan & Zisserman 2015), as torchvision builds them.

Only torchvision's `features` stack: blocks of 3×3 convolutions (stride 1, zero padding 1, with
bias), each followed by a ReLU, and a 2×2 max-pool (stride 2, floor) closing each block.

    block        1    2    3    4    5
    channels    64  128  256  512  512
    VGG16 convs  2    2    3    3    3      (torchvision cfg 'D', 13 convs)
    VGG19 convs  2    2    4    4    4      (torchvision cfg 'E', 16 convs)

Layers are named as the perceptual losses name them: `conv{b}_{k}` (the k-th convolution of
block b, before its ReLU), `relu{b}_{k}` (after it), `pool{b}`. `VGG(outputs=...)` returns the
requested activations as a dict and computes nothing after the deepest of them: Gatys et al.'s
style layers are relu1_1 ... relu5_1, SRGAN's and ESRGAN's losses use relu5_4 and conv5_4
(ESRGAN takes the features before the activation), LPIPS uses relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 of VGG16.

Input: images [B, H, W, 3] in [-1, 1]. With `normalize=True` (default) they are normalised as
torchvision's ImageNet models expect, x01 = (x + 1) / 2 then (x01 - mean) / std per channel,
mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225); `normalize=False` passes them
unchanged (LPIPS applies its own scaling layer, the same map written as (x - shift) / scale).

Weights: torchvision's ImageNet checkpoints `vgg16-397923af.pth` and `vgg19-dcbb9e9d.pth`, found
by `jaxgen.pretrained` (`load_params(depth)`; `$JAXGEN_VGG16_WEIGHTS` / `$JAXGEN_VGG19_WEIGHTS`,
the cache folder `vgg`, or a SHA-256-checked download). Only `features.*` is converted (the
classifier is dropped): OIHW kernels -> HWIO, `features.{i}` -> the layer name of index i.

Usage:

  params = vgg.load_params(19)
  feats = vgg.VGG(depth=19, outputs=('relu2_1', 'conv5_4')).apply({'params': params}, images)
  feats['conv5_4']                                  # [B, H/16, W/16, 512]
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import pretrained
from jaxgen.errors import UserError

# ImageNet statistics of torchvision's classification models (transforms.Normalize).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CHANNELS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def layer_names(depth):
  """Every layer of VGG`depth`'s features in order: ['conv1_1', 'relu1_1', 'conv1_2', ...]."""
  if depth not in CONVS_PER_BLOCK:
    raise UserError(f'VGG depth {depth!r} is not supported: use 16 or 19')
  names = []
  for block, convs in enumerate(CONVS_PER_BLOCK[depth], start=1):
    for k in range(1, convs + 1):
      names += [f'conv{block}_{k}', f'relu{block}_{k}']
    names.append(f'pool{block}')
  return names


def torchvision_index(depth):
  """{conv name: its index in torchvision's `features` Sequential}. Every conv, ReLU and pool
  takes one index, in the order of `layer_names`."""
  return {name: i for i, name in enumerate(layer_names(depth)) if name.startswith('conv')}


def _channels(name):
  return CHANNELS[int(name[len('conv')]) - 1]


def check_outputs(depth, outputs):
  """Raises UserError unless `outputs` is a non-empty list of VGG`depth` layer names."""
  names = layer_names(depth)
  if isinstance(outputs, str) or not outputs:
    raise UserError(f'VGG outputs must be a non-empty list of layer names, got {outputs!r}')
  unknown = [o for o in outputs if o not in names]
  if unknown:
    raise UserError(f'unknown VGG{depth} layer(s) {unknown}: use conv{{b}}_{{k}}, '
                    f'relu{{b}}_{{k}} or pool{{b}}, e.g. {names[:4]} ... {names[-3:]}')


class VGG(nn.Module):
  """torchvision's VGG`depth` `features`, returning the named activations asked for.

  Attributes:
    depth: 16 or 19.
    outputs: layer names to return (see `layer_names`); the network stops after the deepest.
    normalize: map [-1, 1] images to torchvision's ImageNet normalisation first.
    dtype: compute dtype of the convolutions (parameters stay float32; the returned
      activations are float32).
    precision: `jax.lax.Precision` of the convolutions (None: the backend's default).
  """
  depth: int = 19
  outputs: Sequence[str] = ('relu5_4',)
  normalize: bool = True
  dtype: Any = jnp.float32
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, images):
    """images [B, H, W, 3] in [-1, 1] -> {name: [B, h, w, C] float32} for `outputs`."""
    check_outputs(self.depth, self.outputs)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise UserError(f'VGG expects RGB images [B, H, W, 3], got shape {images.shape}')
    names = layer_names(self.depth)
    last = max(names.index(o) for o in self.outputs)
    x = images.astype(jnp.float32)
    if self.normalize:
      mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
      x = ((x + 1) / 2 - mean) / std
    x = x.astype(self.dtype)
    out = {}
    for name in names[:last + 1]:
      if name.startswith('conv'):
        x = nn.Conv(_channels(name), (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    precision=self.precision, name=name)(x)
      elif name.startswith('relu'):
        x = nn.relu(x)
      else:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
      if name in self.outputs:
        out[name] = x.astype(jnp.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Weights.


def param_shapes(depth):
  """{'conv1_1/kernel': (3, 3, 3, 64), 'conv1_1/bias': (64,), ...} of every conv of VGG`depth`."""
  shapes, in_channels = {}, 3
  for name in torchvision_index(depth):
    out_channels = _channels(name)
    shapes[f'{name}/kernel'] = (3, 3, in_channels, out_channels)
    shapes[f'{name}/bias'] = (out_channels,)
    in_channels = out_channels
  return shapes


def features_to_flat(state_dict, depth):
  """torchvision VGG state_dict -> flat jaxgen parameters (unchecked; classifier dropped).

  Raises:
    ValueError: a key that is neither `features.{i}.{weight,bias}` of a conv of VGG`depth` nor
      `classifier.*`.
  """
  by_index = {i: name for name, i in torchvision_index(depth).items()}
  flat = {}
  for key, value in state_dict.items():
    parts = key.split('.')
    if parts[0] == 'classifier':
      continue
    if (len(parts) != 3 or parts[0] != 'features' or not parts[1].isdigit()
        or int(parts[1]) not in by_index or parts[2] not in ('weight', 'bias')):
      raise ValueError(f'unexpected key {key!r}; expected torchvision VGG{depth} names '
                       '(features.{i}.weight / .bias, classifier.*)')
    name = by_index[int(parts[1])]
    value = np.asarray(value)
    if parts[2] == 'weight':
      flat[f'{name}/kernel'] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    else:
      flat[f'{name}/bias'] = value
  return flat


def _spec(depth, filename, sha256):
  return pretrained.WeightsSpec(
      name=f'vgg{depth}', title=f'torchvision VGG{depth} weights', filename=filename,
      sha256=sha256, url=f'https://download.pytorch.org/models/{filename}',
      env_var=f'JAXGEN_VGG{depth}_WEIGHTS', subdir='vgg',
      converted_name=f'vgg{depth}_features.npz', format_tag=f'jaxgen-vgg{depth}-features-v1',
      convert=lambda state_dict: features_to_flat(state_dict, depth),
      shapes=lambda: param_shapes(depth))


# torchvision's `IMAGENET1K_V1` checkpoints. Their file names carry the first 8 hex digits of
# the SHA-256 (torch.hub checks only those); the full digests are those of the published files
# (553,433,881 and 574,673,361 bytes), as recorded in public projects that pin them.
VGG16_WEIGHTS = _spec(16, 'vgg16-397923af.pth',
                      '397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0')
VGG19_WEIGHTS = _spec(19, 'vgg19-dcbb9e9d.pth',
                      'dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44')
WEIGHTS = {16: VGG16_WEIGHTS, 19: VGG19_WEIGHTS}


def params_from_torchvision(state_dict, depth=None):
  """torchvision `vgg16()` / `vgg19()` state_dict (name -> array) -> VGG params (numpy).

  Args:
    state_dict: the full model's or only `features.*`; the classifier is ignored.
    depth: 16 or 19; default: from the number of convolutions (13 or 16).

  Raises:
    UserError: not a torchvision VGG16/19 state_dict.
  """
  if depth is None:
    convs = sum(k.startswith('features.') and k.endswith('.weight') for k in state_dict)
    depth = {13: 16, 16: 19}.get(convs)
    if depth is None:
      raise UserError(f'state_dict has {convs} features.*.weight entries: not torchvision\'s '
                      'VGG16 (13 convolutions) or VGG19 (16)')
  return pretrained.unflatten(pretrained.convert_state_dict(WEIGHTS[depth], state_dict))


def load_params(depth=19, weights=None, cache=None, allow_download=True):
  """torchvision's ImageNet VGG`depth` features, found as in `jaxgen.pretrained.resolve`."""
  if depth not in WEIGHTS:
    raise UserError(f'VGG depth {depth!r} is not supported: use 16 or 19')
  return pretrained.load_params(WEIGHTS[depth], weights, cache, allow_download)


def param_count(depth):
  """Parameters of VGG`depth`'s features (torchvision: 14,714,688 and 20,024,384)."""
  return sum(int(np.prod(s)) for s in param_shapes(depth).values())
