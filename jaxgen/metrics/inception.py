"""InceptionV3 as pytorch-fid builds it for FID, in Flax linen (NHWC).

This is the network of TensorFlow's `inception-2015-12-05` graph that the FID reference
(TTUR) uses, as ported by pytorch-fid (`pytorch_fid.inception.fid_inception_v3`). It differs
from torchvision's ImageNet InceptionV3 in four places, all reproduced here:

  * every BatchNorm has eps = 1e-3 (torchvision `BasicConv2d`);
  * the pool branch of Mixed_5b-5d, Mixed_6b-6e and Mixed_7b is a 3x3/1 average pool that
    does not count the zero padding (TensorFlow's SAME average pool);
  * the pool branch of Mixed_7c is a 3x3/1 *max* pool (a quirk of the TF graph);
  * the classifier `fc` has 1008 outputs.

Outputs: the 2048-d `pool3` features (global average of Mixed_7c) used by FID, KID and
precision/recall, and the `fc` logits *without* the fc bias (as the Inception Score of the
StyleGAN2-ADA metrics computes them).

Two input pipelines (`resize=`), reproduced exactly:

  * 'torch' (default), pytorch-fid's: images scaled to [0, 1], resized to 299x299 by bilinear
    interpolation with PyTorch's `align_corners=False` convention (half-pixel centres,
    src = (dst + 0.5) * in / out - 0.5) and no antialiasing, then mapped to [-1, 1] by 2x - 1.
  * 'tf', the TensorFlow graph's (TTUR, and the FIDs of ADM, StyleGAN2-ADA and EDM): values
    0..255 resized by TF 1.x `ResizeBilinear` with align_corners=False and no half-pixel
    centres (src = dst * in / out: the grid is anchored at the top-left corner and the image
    shifts by up to half a source pixel), then mapped by (x - 128) / 128, so 255 -> 0.9921875.

Parameters are one pytree, named after torchvision's modules so that the converter is a
rename: `{'Mixed_5b': {'branch1x1': {'kernel', 'scale', 'bias', 'mean', 'var'}}, ...,
'fc': {'kernel', 'bias'}}`. BatchNorm statistics live in `params` too (the network is only
ever used for inference).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxgen.errors import UserError

BN_EPS = 1e-3
INPUT_SIZE = 299
POOL_DIM = 2048
NUM_CLASSES = 1008


@dataclasses.dataclass(frozen=True)
class Precision:
  """How the convolutions and the fc layer are computed.

  Attributes:
    dtype: dtype of conv inputs and kernels (activations are stored in it between layers).
    precision: `jax.lax.Precision` of convs and the fc matmul.
  """
  dtype: jnp.dtype
  precision: jax.lax.Precision


# 'fp32': true float32 everywhere (the parity setting).
# 'tf32': float32 arrays at the backend's default matmul precision: TF32 tensor cores on
#   Ampere/Hopper GPUs, full float32 on CPU. This is what PyTorch does for convolutions by
#   default (cuDNN TF32), so pytorch-fid on a GPU runs like this.
# 'bf16': bfloat16 activations and kernels (tensor cores accumulate in float32); BatchNorm
#   folding, average-pool sums, the final average and the fc stay in float32.
PRECISIONS = {
    'fp32': Precision(jnp.float32, jax.lax.Precision.HIGHEST),
    'tf32': Precision(jnp.float32, jax.lax.Precision.DEFAULT),
    'bf16': Precision(jnp.bfloat16, jax.lax.Precision.DEFAULT),
}


def get_precision(name):
  if name not in PRECISIONS:
    raise UserError(f'unknown Inception precision {name!r}: use one of {sorted(PRECISIONS)}')
  return PRECISIONS[name]


# ---------------------------------------------------------------------------------------------
# Input pipeline (pytorch-fid's resize and normalisation).


def _linear_taps(in_size, out_size):
  """Source indices and weights of PyTorch's bilinear resize, `align_corners=False`.

  PyTorch (upsample_bilinear2d, no antialias) maps output pixel `d` to the source coordinate
  `s = (d + 0.5) * scale - 0.5` with `scale = in / out` in float32, clamps negative `s` to 0,
  and blends pixels `i0 = floor(s)` and `i1 = min(i0 + 1, in - 1)` with weight `s - i0` on
  `i1`. Its kernels evaluate `s` as one fused multiply-add (a single float32 rounding), which
  we reproduce exactly: the float64 product and difference are exact, then rounded once.
  Measured against torch's CPU kernel, the weights are bit-identical.

  Returns:
    (i0 [out] int32, i1 [out] int32, w1 [out] float32).
  """
  scale = np.float64(np.float32(in_size) / np.float32(out_size))
  src = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0))
  i0 = np.minimum(src.astype(np.int32), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  w1 = src - i0.astype(np.float32)
  return i0, i1, w1


def resize_bilinear(images, height, width):
  """Bilinear resize exactly as `F.interpolate(mode='bilinear', align_corners=False)`.

  Separable: width first, then height, with two taps each, the same sums PyTorch evaluates.
  Done with gathers rather than an interpolation matrix so that no matmul precision (TF32 on
  GPUs) can creep in.

  Args:
    images: [B, H, W, C] float.
    height, width: output size.

  Returns:
    [B, height, width, C], same dtype.
  """
  _, h, w, _ = images.shape
  if (h, w) == (height, width):
    return images  # PyTorch's taps are the identity then (s = d, weight 0).
  i0, i1, w1 = _linear_taps(w, width)
  w1 = jnp.asarray(w1)[None, None, :, None]
  x = images[:, :, i0, :] * (1 - w1) + images[:, :, i1, :] * w1
  i0, i1, w1 = _linear_taps(h, height)
  w1 = jnp.asarray(w1)[None, :, None, None]
  return x[:, i0] * (1 - w1) + x[:, i1] * w1


def _tf_legacy_taps(in_size, out_size):
  """Source indices and weights of TF 1.x bilinear resize (align_corners=False, legacy).

  TensorFlow's `ResizeBilinear` without half-pixel centres maps output pixel `d` to
  `s = d * scale`, `scale = in / out`, both the quotient and the product rounded to float32,
  and blends `lower = floor(s)` and `upper = min(ceil(s), in - 1)` with weight `s - floor(s)`
  on `upper`. No clamping at 0 is needed (s >= 0); at the far edge `upper` clamps, which is
  TensorFlow's only boundary rule. (Where `s` is an integer the weight is 0, so taking
  `floor(s) + 1` for `upper`, as here, gives the same result.)

  Returns:
    (i0 [out] int32, i1 [out] int32, w1 [out] float32).
  """
  scale = np.float32(in_size) / np.float32(out_size)  # float32 division, as TF's float math
  src = np.arange(out_size, dtype=np.float32) * scale
  i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  w1 = src - i0.astype(np.float32)
  return i0, i1, w1


def resize_bilinear_tf(images, height, width):
  """Bilinear resize exactly as TF 1.x `tf.image.resize_bilinear(align_corners=False)`.

  The legacy (pre `half_pixel_centers`) TensorFlow convention that the TF Inception graph of
  the FID reference applies to its 0..255 input: output pixel (y, x) reads the source at
  (y * H / height, x * W / width), i.e. the two grids share their top-left corner, not their
  centre. TensorFlow evaluates each output as

      top = tl + (tr - tl) * wx,   bottom = bl + (br - bl) * wx,   out = top + (bottom - top) * wy

  in float32; separably, that is a width pass then a height pass with the same operations in
  the same order, which is what this does (gathers, so no matmul precision can interfere).

  Args:
    images: [B, H, W, C] float (for the FID Inception: float32 values in [0, 255]).
    height, width: output size.

  Returns:
    [B, height, width, C], same dtype.
  """
  _, h, w, _ = images.shape
  if (h, w) == (height, width):
    return images  # scale 1: s = d exactly, weight 0.
  i0, i1, w1 = _tf_legacy_taps(w, width)
  w1 = jnp.asarray(w1, images.dtype)[None, None, :, None]
  left = images[:, :, i0, :]
  x = left + (images[:, :, i1, :] - left) * w1
  i0, i1, w1 = _tf_legacy_taps(h, height)
  w1 = jnp.asarray(w1, images.dtype)[None, :, None, None]
  top = x[:, i0]
  return top + (x[:, i1] - top) * w1


RESIZES = ('torch', 'tf')


def check_resize(resize):
  """Raises UserError unless `resize` is 'torch' or 'tf'."""
  if resize not in RESIZES:
    raise UserError(f"unknown FID resize {resize!r}: use 'torch' (pytorch-fid) or 'tf' "
                    '(TensorFlow 1.x, as ADM, StyleGAN2-ADA and EDM)')


def to_uint8(images, value_range=(-1.0, 1.0)):
  """Quantises float images to uint8 as writing them to PNG would (round half up, clip).

  Args:
    images: [...] float in `value_range`.

  Returns:
    [...] uint8.
  """
  lo, hi = value_range
  x = (images.astype(jnp.float32) - lo) * (255.0 / (hi - lo))
  return jnp.clip(jnp.floor(x + 0.5), 0, 255).astype(jnp.uint8)


def check_image_shape(shape):
  """Raises UserError unless `shape` is [B, H, W] or [B, H, W, C] with C in {1, 3}."""
  if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3)):
    return
  raise UserError(f'Inception expects images [B, H, W, 3] (or grayscale [B, H, W, 1] or '
                  f'[B, H, W]); got shape {tuple(shape)}')


def preprocess(images, value_range=(-1.0, 1.0), resize='torch'):
  """Images of any size to the network's input, as pytorch-fid or TensorFlow prepares them.

  Args:
    images: [B, H, W, 3], [B, H, W, 1] or [B, H, W]. uint8 in [0, 255], or float in
      `value_range` (default [-1, 1]; pass (0, 1) for [0, 1] images). Grayscale is repeated
      to 3 channels.
    value_range: (low, high) of float inputs; ignored for uint8.
    resize: 'torch' (pytorch-fid: [0, 1], PyTorch bilinear, 2x - 1) or 'tf' (the TF graph:
      [0, 255], TF 1.x legacy bilinear, (x - 128) / 128); see the module docstring.

  Returns:
    [B, 299, 299, 3] float32 in [-1, 1].
  """
  check_image_shape(images.shape)
  check_resize(resize)
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if resize == 'tf':
    # The graph casts the uint8 image to float32 and resizes the 0..255 values.
    if images.dtype == jnp.uint8:
      x = images.astype(jnp.float32)
    else:
      lo, hi = value_range
      x = (images.astype(jnp.float32) - lo) * (255.0 / (hi - lo))
    x = resize_bilinear_tf(x, INPUT_SIZE, INPUT_SIZE)
    return (x - 128.0) / 128.0  # the graph's Sub 128, Mul 1/128 (exact in float32)
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32) / 255.0  # torchvision ToTensor
  else:
    lo, hi = value_range
    x = (images.astype(jnp.float32) - lo) / (hi - lo)
  x = resize_bilinear(x, INPUT_SIZE, INPUT_SIZE)
  return 2 * x - 1


# ---------------------------------------------------------------------------------------------
# Pooling.


def max_pool(x, window, stride, padding=0):
  """Max pool; padded positions are -inf (never selected), as in PyTorch."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), pad)


def _valid_counts(size, window, padding):
  """How many unpadded inputs each output position of a stride-1 window covers: [size]."""
  idx = np.arange(size)
  lo = np.maximum(idx - padding, 0)
  hi = np.minimum(idx - padding + window, size)
  return (hi - lo).astype(np.float32)


def avg_pool_exclude_pad(x):
  """3x3 stride-1 average pool, padding 1, dividing by the number of *unpadded* inputs.

  PyTorch's `avg_pool2d(..., count_include_pad=False)` and TensorFlow's SAME average pool:
  a corner output averages 4 values, an edge output 6, the rest 9. Sums are in float32.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, H, W, C], same dtype.
  """
  _, h, w, _ = x.shape
  summed = jax.lax.reduce_window(x.astype(jnp.float32), 0.0, jax.lax.add, (1, 3, 3, 1),
                                 (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  counts = np.outer(_valid_counts(h, 3, 1), _valid_counts(w, 3, 1))
  return (summed / counts[None, :, :, None]).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# Layers.


class ConvBN(nn.Module):
  """torchvision's BasicConv2d: conv without bias, BatchNorm (eps 1e-3, running stats), ReLU.

  The BatchNorm is folded into the kernel and a bias inside the jitted computation (the same
  affine map, computed in float32), which lets XLA fuse bias + ReLU into the convolution.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: (ph, pw), zeros on both sides (PyTorch's symmetric padding).
    prec: compute precision.
  """
  features: int
  kernel_size: tuple = (1, 1)
  strides: tuple = (1, 1)
  padding: tuple = (0, 0)
  prec: Precision = PRECISIONS['fp32']

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, Cin] -> [B, H', W', features], in `prec.dtype`."""
    kh, kw = self.kernel_size
    kernel = self.param('kernel', nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
                        (kh, kw, x.shape[-1], self.features))
    scale = self.param('scale', nn.initializers.ones, (self.features,))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    mean = self.param('mean', nn.initializers.zeros, (self.features,))
    var = self.param('var', nn.initializers.ones, (self.features,))

    s = scale * jax.lax.rsqrt(var + BN_EPS)
    ph, pw = self.padding
    y = jax.lax.conv_general_dilated(
        x.astype(self.prec.dtype), (kernel * s).astype(self.prec.dtype),
        window_strides=self.strides, padding=((ph, ph), (pw, pw)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=self.prec.precision)
    # The bias is added in the compute dtype: conv + bias + ReLU then match cuDNN's fused
    # kernel. In bf16 that is one more bf16 rounding, as small as storing the activation.
    return jax.nn.relu(y + (bias - mean * s).astype(self.prec.dtype))


def _concat(branches):
  return jnp.concatenate(branches, axis=-1)


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d (35x35). Pool branch: average pool excluding padding."""
  pool_features: int
  prec: Precision

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(ConvBN, prec=self.prec)
    b1 = conv(64, name='branch1x1')(x)
    b5 = conv(48, name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, name='branch_pool')(avg_pool_exclude_pad(x))
    return _concat([b1, b5, b3, bp])


class InceptionB(nn.Module):
  """Mixed_6a: 35x35 -> 17x17 reduction."""
  prec: Precision

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(ConvBN, prec=self.prec)
    b3 = conv(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    bd = conv(64, name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(bd)
    bp = max_pool(x, 3, 2)
    return _concat([b3, bd, bp])


class InceptionC(nn.Module):
  """Mixed_6b-6e (17x17), factorised 7x7 convs. Pool branch: average excluding padding."""
  channels_7x7: int
  prec: Precision

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(ConvBN, prec=self.prec)
    c7 = self.channels_7x7
    b1 = conv(192, name='branch1x1')(x)
    b7 = conv(c7, name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, name='branch_pool')(avg_pool_exclude_pad(x))
    return _concat([b1, b7, bd, bp])


class InceptionD(nn.Module):
  """Mixed_7a: 17x17 -> 8x8 reduction."""
  prec: Precision

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(ConvBN, prec=self.prec)
    b3 = conv(192, name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=(2, 2), name='branch3x3_2')(b3)
    b7 = conv(192, name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(b7)
    bp = max_pool(x, 3, 2)
    return _concat([b3, b7, bp])


class InceptionE(nn.Module):
  """Mixed_7b/7c (8x8), expanded filter bank.

  Attributes:
    pool: 'avg' (Mixed_7b: average excluding padding) or 'max' (Mixed_7c: 3x3/1 max pool).
  """
  pool: str
  prec: Precision

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(ConvBN, prec=self.prec)
    b1 = conv(320, name='branch1x1')(x)
    b3 = conv(384, name='branch3x3_1')(x)
    b3 = _concat([conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                  conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)])
    bd = conv(448, name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = _concat([conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                  conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)])
    pooled = avg_pool_exclude_pad(x) if self.pool == 'avg' else max_pool(x, 3, 1, padding=1)
    bp = conv(192, name='branch_pool')(pooled)
    return _concat([b1, b3, bd, bp])


class Logits(nn.Module):
  """The 1008-way `fc` layer, applied without its bias (the bias is kept for completeness)."""
  prec: Precision

  @nn.compact
  def __call__(self, pool):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (POOL_DIM, NUM_CLASSES))
    self.param('bias', nn.initializers.zeros, (NUM_CLASSES,))
    return jnp.dot(pool, kernel, precision=self.prec.precision)


class InceptionV3(nn.Module):
  """The FID Inception network.

  Attributes:
    precision: a key of PRECISIONS.
  """
  precision: str = 'fp32'

  @nn.compact
  def __call__(self, x):
    """Runs the network on preprocessed images.

    Args:
      x: [B, H, W, 3] float in [-1, 1]; H = W = 299 for FID (any size >= 75 runs).

    Returns:
      pool3 [B, 2048] float32 and logits without the fc bias [B, 1008] float32.
    """
    prec = get_precision(self.precision)
    conv = functools.partial(ConvBN, prec=prec)
    x = conv(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)  # 149
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)  # 147
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)  # 147
    x = max_pool(x, 3, 2)  # 73
    x = conv(80, name='Conv2d_3b_1x1')(x)  # 73
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)  # 71
    x = max_pool(x, 3, 2)  # 35
    x = InceptionA(32, prec, name='Mixed_5b')(x)
    x = InceptionA(64, prec, name='Mixed_5c')(x)
    x = InceptionA(64, prec, name='Mixed_5d')(x)
    x = InceptionB(prec, name='Mixed_6a')(x)  # 17
    x = InceptionC(128, prec, name='Mixed_6b')(x)
    x = InceptionC(160, prec, name='Mixed_6c')(x)
    x = InceptionC(160, prec, name='Mixed_6d')(x)
    x = InceptionC(192, prec, name='Mixed_6e')(x)
    x = InceptionD(prec, name='Mixed_7a')(x)  # 8
    x = InceptionE('avg', prec, name='Mixed_7b')(x)
    x = InceptionE('max', prec, name='Mixed_7c')(x)
    pool = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # AdaptiveAvgPool2d(1)
    return pool, Logits(prec, name='fc')(pool)


# ---------------------------------------------------------------------------------------------
# Parameters.

# The smallest input the network accepts; parameter shapes do not depend on it.
_MIN_INPUT = 75


def param_shapes():
  """The expected parameter pytree as `jax.ShapeDtypeStruct`s (no computation)."""
  x = jax.ShapeDtypeStruct((1, _MIN_INPUT, _MIN_INPUT, 3), jnp.float32)
  variables = jax.eval_shape(InceptionV3().init, jax.random.key(0), x)
  return variables['params']


def random_params(seed=0):
  """He-initialised parameters (BatchNorm as identity): for benchmarks and tests only."""
  x = jnp.zeros((1, _MIN_INPUT, _MIN_INPUT, 3), jnp.float32)
  return jax.jit(InceptionV3().init)(jax.random.key(seed), x)['params']


def apply(params, images, precision='fp32', value_range=(-1.0, 1.0), resize='torch'):
  """Preprocesses and runs the network (jit it, or use `fid.InceptionFeatures`).

  Args:
    params: the Inception parameter pytree.
    images: see `preprocess`.
    precision: a key of PRECISIONS.
    value_range: range of float images.
    resize: 'torch' (pytorch-fid's input pipeline) or 'tf' (TensorFlow's); see `preprocess`.

  Returns:
    pool3 [B, 2048] float32 and logits without bias [B, 1008] float32.
  """
  x = preprocess(images, value_range, resize)
  return InceptionV3(precision).apply({'params': params}, x)
