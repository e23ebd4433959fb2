"""LPIPS, the learned perceptual image patch similarity (Zhang et al. 2018), VGG16 version.

As the `lpips` package v0.1 computes it (github.com/richzhang/PerceptualSimilarity,
`lpips.LPIPS(net='vgg', version='0.1')`), for images x0, x1 in [-1, 1]:

  1. the scaling layer: x' = (x - shift) / scale per channel, shift = (-0.030, -0.088, -0.188),
     scale = (0.458, 0.448, 0.450) (torchvision's ImageNet normalisation, written for [-1, 1]);
  2. VGG16 features (torchvision's ImageNet weights) at the L = 5 layers relu1_2, relu2_2,
     relu3_3, relu4_3, relu5_3: f_l [H_l, W_l, C_l];
  3. each feature vector unit-normalised over channels, f / (||f||_2 + 1e-10);
  4. squared differences d_l = (f̂0_l - f̂1_l)^2, weighted by the learned non-negative
     per-channel weights w_l (a 1×1 convolution to one channel, no bias) and averaged over
     space: LPIPS = Σ_l mean_{h,w} Σ_c w_{l,c} d_{l,h,w,c}.

So d(x, x) = 0, d is symmetric, and d > 0 for images whose features differ. (Compiled, d(x, x)
is 0 only up to float32 rounding, ~1e-15: XLA may compile the two images' identical
computations differently, so their features can differ in the last bit.)

The linear weights are the package's `weights/v0.1/vgg.pth` (`LINEAR_WEIGHTS`:
`$JAXGEN_LPIPS_VGG_WEIGHTS`, the cache folder `lpips`, or a SHA-256-checked download), the
backbone torchvision's `vgg16-397923af.pth` (`jaxgen.models.vgg.VGG16_WEIGHTS`); `load_params`
finds both.

Parameters: {'vgg': VGG16 params (conv1_1 ... conv5_3), 'lin0' ... 'lin4': {'kernel':
[1, 1, C_l, 1]}}.

Usage:

  params = lpips.load_params()
  d = lpips.distance(params, x0, x1)                # [B]
"""

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import pretrained
from jaxgen.errors import UserError
from jaxgen.models import vgg

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')
CHANNELS = (64, 128, 256, 512, 512)
EPS = 1e-10


def unit_normalize(features):
  """Each feature vector (the last axis) divided by its L2 norm + 1e-10, as lpips does."""
  norm = jnp.sqrt(jnp.sum(features ** 2, axis=-1, keepdims=True))
  return features / (norm + EPS)


class LPIPS(nn.Module):
  """LPIPS(x0, x1) with the VGG16 backbone, v0.1.

  Attributes:
    dtype: compute dtype of the VGG16 convolutions (the rest is float32).
    precision: `jax.lax.Precision` of the convolutions (None: the backend's default).
  """
  dtype: Any = jnp.float32
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, x0, x1, per_layer=False):
    """x0, x1 [B, H, W, 3] in [-1, 1] -> [B] distances (and [L, B] per layer if per_layer)."""
    if x0.shape != x1.shape:
      raise UserError(f'LPIPS compares images of one shape, got {x0.shape} and {x1.shape}')
    batch = x0.shape[0]
    both = jnp.concatenate([x0, x1]).astype(jnp.float32)  # one VGG pass for the two
    scaled = (both - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
    feats = vgg.VGG(depth=16, outputs=LAYERS, normalize=False, dtype=self.dtype,
                    precision=self.precision, name='vgg')(scaled)
    layers = []
    for k, name in enumerate(LAYERS):
      f = unit_normalize(feats[name])
      diff = (f[:batch] - f[batch:]) ** 2
      weighted = nn.Conv(1, (1, 1), use_bias=False, precision=jax.lax.Precision.HIGHEST,
                         name=f'lin{k}')(diff)
      layers.append(jnp.mean(weighted[..., 0], axis=(1, 2)))
    layers = jnp.stack(layers)
    total = jnp.sum(layers, axis=0)
    return (total, layers) if per_layer else total


@functools.partial(jax.jit, static_argnames=('per_layer',))
def distance(params, x0, x1, per_layer=False):
  """LPIPS between image batches x0, x1 [B, H, W, 3] in [-1, 1] -> [B] (float32)."""
  return LPIPS().apply({'params': params}, x0, x1, per_layer=per_layer)


# ---------------------------------------------------------------------------------------------
# Weights.


def linear_shapes():
  return {f'lin{k}/kernel': (1, 1, c, 1) for k, c in enumerate(CHANNELS)}


def linear_to_flat(state_dict):
  """The lpips linear layers' state_dict (`lin{k}.model.1.weight` [1, C, 1, 1]) -> flat
  parameters (unchecked)."""
  flat = {}
  for key, value in state_dict.items():
    parts = key.split('.')
    if (len(parts) != 4 or parts[0] not in {f'lin{k}' for k in range(len(LAYERS))}
        or parts[1:] != ['model', '1', 'weight']):
      raise ValueError(f'unexpected key {key!r}; expected the lpips VGG linear layers '
                       '(lin0.model.1.weight ... lin4.model.1.weight)')
    flat[f'{parts[0]}/kernel'] = np.asarray(value).transpose(2, 3, 1, 0)  # OIHW -> HWIO
  return flat


# `lpips` v0.1's calibrated VGG linear layers: lpips/weights/v0.1/vgg.pth, 7,289 bytes, the
# same file in the PyPI package lpips 0.1.4 and at the repository's master (082bb24).
LINEAR_WEIGHTS = pretrained.WeightsSpec(
    name='lpips_vgg', title='LPIPS VGG linear weights (v0.1)', filename='vgg.pth',
    sha256='a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868',
    url=('https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/'
         'vgg.pth'),
    env_var='JAXGEN_LPIPS_VGG_WEIGHTS', subdir='lpips', converted_name='lpips_vgg_v0.1.npz',
    format_tag='jaxgen-lpips-vgg-v0.1', convert=linear_to_flat, shapes=linear_shapes)


def params_from_torch(vgg16_state_dict, linear_state_dict):
  """torchvision's VGG16 state_dict + lpips' linear-layer state_dict -> LPIPS params (numpy)."""
  params = pretrained.unflatten(pretrained.convert_state_dict(LINEAR_WEIGHTS, linear_state_dict))
  params['vgg'] = vgg.params_from_torchvision(vgg16_state_dict, depth=16)
  return params


def load_params(vgg_weights=None, linear_weights=None, cache=None, allow_download=True):
  """The LPIPS parameters: VGG16 and the linear layers, each found by `jaxgen.pretrained`.

  Args:
    vgg_weights: explicit `vgg16-397923af.pth` or converted `.npz` (else $JAXGEN_VGG16_WEIGHTS,
      the cache, a download).
    linear_weights: explicit lpips `vgg.pth` or converted `.npz` (else
      $JAXGEN_LPIPS_VGG_WEIGHTS, the cache, a download).
    cache: the cache root; default `jaxgen.pretrained.cache_dir()`.
    allow_download: try downloads when files are not found locally.
  """
  params = pretrained.load_params(LINEAR_WEIGHTS, linear_weights, cache, allow_download)
  params['vgg'] = vgg.load_params(16, vgg_weights, cache, allow_download)
  return params
