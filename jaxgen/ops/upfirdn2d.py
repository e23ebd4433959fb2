"""FIR up-sampling, filtering and down-sampling of NHWC images (StyleGAN2's `upfirdn2d`).

`upfirdn2d` does, per channel: insert `up − 1` zeros after every pixel, pad (or crop, for
negative padding), convolve with the FIR filter `f` keeping only outputs whose footprint lies
inside the padded image, and keep every `down`-th pixel — the same sequence, sizes and gains as
NVlabs' op of that name (and scipy.signal.upfirdn in 1-D).

Two implementations, same results (float32 arithmetic either way):

  * 'slices' (default for filters of up to 7 taps, e.g. StyleGAN2's [1, 3, 3, 1]): one `lax.pad`
    (its interior padding is the zero insertion) and a sum of strided slices, one per tap. These
    are elementwise ops that XLA fuses into one kernel with the neighbouring bias, activation and
    noise; their transposes are again pads and slices, so R1's and path length's higher-order
    gradients stay cheap.
  * 'conv' (default for longer filters, e.g. ADA's 12-tap sym6): a depthwise convolution
    (`feature_group_count` = channels, `lhs_dilation` = up, stride = down). Unrolling a long
    filter into slices makes programs that are slow to compile; one convolution is not.

Filters are NumPy constants prepared by `setup_filter`; a 1-D filter is applied separably.
"""

import numpy as np
from jax import lax
import jax.numpy as jnp

SLICES_MAX_TAPS = 7  # longer filters use the depthwise-convolution implementation by default


def parse_scaling(scaling):
  """int or (sx, sy) → (sx, sy)."""
  if isinstance(scaling, int):
    scaling = (scaling, scaling)
  sx, sy = scaling
  if sx < 1 or sy < 1:
    raise ValueError(f'scaling factors must be >= 1, got {scaling}')
  return int(sx), int(sy)


def parse_padding(padding):
  """int, (px, py) or (px0, px1, py0, py1) → (px0, px1, py0, py1)."""
  if isinstance(padding, int):
    padding = (padding, padding)
  if len(padding) == 2:
    px, py = padding
    padding = (px, px, py, py)
  return tuple(int(p) for p in padding)


def filter_size(f):
  """(width, height) of a filter from `setup_filter`; (1, 1) for None."""
  if f is None:
    return 1, 1
  f = np.asarray(f)
  return (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])


def setup_filter(f, normalize=True, flip_filter=False, gain=1, separable=None):
  """Prepares a FIR filter for `upfirdn2d`.

  Args:
    f: taps `[n]` (separable, applied along x then y), a 2-D filter `[fh, fw]`, a scalar, or
      None (identity).
    normalize: scale so the filter keeps the magnitude of a constant (DC) signal.
    flip_filter: flip the filter (convolution ↔ correlation).
    gain: overall signal gain (each 1-D pass of a separable filter gets sqrt(gain)).
    separable: keep a 1-D filter separable (default) or expand it to its 2-D outer product.
      Both give the same result; the separable form needs 2n instead of n² taps.

  Returns:
    float32 NumPy array, `[n]` or `[fh, fw]`.
  """
  f = np.asarray(1.0 if f is None else f, dtype=np.float64)
  if f.ndim == 0:
    f = f[np.newaxis]
  if f.ndim not in (1, 2) or f.size == 0:
    raise ValueError(f'filter must be 1-D or 2-D and non-empty, got shape {f.shape}')
  if separable is None:
    separable = f.ndim == 1
  if f.ndim == 1 and not separable:
    f = np.outer(f, f)
  if normalize:
    f = f / f.sum()
  if flip_filter:
    f = np.flip(f)
  f = f * gain ** (f.ndim / 2)
  return f.astype(np.float32)


def _fir_valid(x, taps, axis, down):
  """Correlates `x` with 1-D `taps` along `axis` ('valid' mode), keeping every `down`-th output."""
  size = x.shape[axis]
  num_out = (size - len(taps)) // down + 1
  if num_out <= 0:
    raise ValueError(f'image of size {size} is too small for a {len(taps)}-tap filter')
  out = None
  for i, tap in enumerate(taps):
    if tap == 0:
      continue
    part = lax.slice_in_dim(x, i, i + (num_out - 1) * down + 1, stride=down, axis=axis)
    part = part * float(tap)
    out = part if out is None else out + part
  if out is None:
    shape = list(x.shape)
    shape[axis] = num_out
    out = jnp.zeros(shape, x.dtype)
  return out


def _fir_valid_2d(x, taps, down_y, down_x):
  """Correlates `x` [N, H, W, C] with a non-separable 2-D filter ('valid' mode), strided."""
  fh, fw = taps.shape
  out_h = (x.shape[1] - fh) // down_y + 1
  out_w = (x.shape[2] - fw) // down_x + 1
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f'image of size {x.shape[1:3]} is too small for a {taps.shape} filter')
  out = jnp.zeros((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
  for i in range(fh):
    for j in range(fw):
      if taps[i, j] == 0:
        continue
      part = lax.slice(x, (0, i, j, 0),
                       (x.shape[0], i + (out_h - 1) * down_y + 1, j + (out_w - 1) * down_x + 1,
                        x.shape[3]),
                       (1, down_y, down_x, 1))
      out = out + part * float(taps[i, j])
  return out


def _upfirdn2d_conv(x, taps, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
  """Correlation with `taps` via depthwise convolutions; zero insertion by lhs_dilation."""
  channels = x.shape[-1]
  conv = lambda v, kernel, strides, padding, dilation: lax.conv_general_dilated(
      v, jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels))), strides, padding,
      lhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=channels, precision=lax.Precision.HIGHEST)
  # The reference op appends up − 1 zeros after the last pixel, hence the extra high padding.
  pad_y, pad_x = (pady0, pady1 + upy - 1), (padx0, padx1 + upx - 1)
  if taps.ndim == 2:
    return conv(x, taps, (downy, downx), (pad_y, pad_x), (upy, upx))
  x = conv(x, taps[None, :], (1, downx), ((0, 0), pad_x), (1, upx))
  return conv(x, taps[:, None], (downy, 1), (pad_y, (0, 0)), (upy, 1))


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl=None):
  """Pads, up-samples, FIR-filters and down-samples a batch of images.

  Args:
    x: [N, H, W, C], any float dtype (computed in float32, returned in x's dtype).
    f: filter from `setup_filter` (`[n]` separable or `[fh, fw]`), or None (identity).
    up: integer up-sampling factor, int or (x, y).
    down: integer down-sampling factor, int or (x, y).
    padding: padding of the up-sampled image: int, (x, y) or (x0, x1, y0, y1); negative crops.
    flip_filter: False = convolution (NVlabs' default), True = correlation.
    gain: overall signal gain.
    impl: 'slices' or 'conv' (see the module docstring); None picks by filter length.

  Returns:
    [N, H', W', C] with H' = (H·up_y + py0 + py1 − fh) // down_y + 1 (and likewise W').
  """
  upx, upy = parse_scaling(up)
  downx, downy = parse_scaling(down)
  padx0, padx1, pady0, pady1 = parse_padding(padding)
  f = np.ones((1, 1), np.float32) if f is None else np.asarray(f, np.float32)
  if f.ndim not in (1, 2):
    raise ValueError(f'filter must be 1-D or 2-D, got shape {f.shape}')

  if impl is None:
    impl = 'slices' if max(f.shape) <= SLICES_MAX_TAPS else 'conv'
  if impl not in ('slices', 'conv'):
    raise ValueError(f"impl must be 'slices' or 'conv', got {impl!r}")

  dtype = x.dtype
  x = x.astype(jnp.float32)
  taps = f * gain ** (f.ndim / 2)
  if not flip_filter:
    taps = np.flip(taps)  # a convolution is a correlation with the flipped filter
  taps = np.ascontiguousarray(taps, np.float32)
  if impl == 'conv':
    return _upfirdn2d_conv(x, taps, upx, upy, downx, downy, padx0, padx1, pady0,
                           pady1).astype(dtype)

  # Interior padding inserts up − 1 zeros *between* pixels; the reference op also appends them
  # after the last pixel, hence the extra up − 1 at the high end.
  x = lax.pad(x, jnp.array(0, x.dtype),
              ((0, 0, 0), (pady0, pady1 + upy - 1, upy - 1), (padx0, padx1 + upx - 1, upx - 1),
               (0, 0, 0)))
  if taps.ndim == 1:
    x = _fir_valid(x, taps, axis=2, down=downx)
    x = _fir_valid(x, taps, axis=1, down=downy)
  else:
    x = _fir_valid_2d(x, taps, downy, downx)
  return x.astype(dtype)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None):
  """Filters images with `f`, padded so the output has the input's size (plus `padding`)."""
  padx0, padx1, pady0, pady1 = parse_padding(padding)
  fw, fh = filter_size(f)
  p = (padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2)
  return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None):
  """Up-samples images by `up` with filter `f`: [N, H, W, C] → [N, H·up, W·up, C].

  The filter gain is multiplied by up² so a constant image keeps its value (the zeros inserted
  between pixels would otherwise dilute it). `padding` is relative to the output.
  """
  upx, upy = parse_scaling(up)
  padx0, padx1, pady0, pady1 = parse_padding(padding)
  fw, fh = filter_size(f)
  p = (padx0 + (fw + upx - 1) // 2, padx1 + (fw - upx) // 2,
       pady0 + (fh + upy - 1) // 2, pady1 + (fh - upy) // 2)
  return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy,
                   impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None):
  """Down-samples images by `down` with filter `f`: [N, H, W, C] → [N, H/down, W/down, C].

  `padding` is relative to the input.
  """
  downx, downy = parse_scaling(down)
  padx0, padx1, pady0, pady1 = parse_padding(padding)
  fw, fh = filter_size(f)
  p = (padx0 + (fw - downx + 1) // 2, padx1 + (fw - downx) // 2,
       pady0 + (fh - downy + 1) // 2, pady1 + (fh - downy) // 2)
  return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upfirdn1d_matrix(size, f, up=1, down=1, padding=(0, 0), flip_filter=False, gain=1):
  """The 1-D `upfirdn2d` along one axis of length `size` as a dense float32 matrix [out, size].

  `f` is a 1-D filter from `setup_filter`; `padding` = (p0, p1) of the up-sampled signal
  (negative crops); `gain` is this axis's gain (a separable 2-D op with gain g applies √g per
  axis). Applying it with a matmul, `einsum('oh,nhwc->nowc', M, x)`, equals `upfirdn2d` along
  that axis; for long filters on small images (ADA's 12-tap sym6) a matmul and its transpose
  run faster than the tap-by-tap form on every backend.
  """
  taps = np.asarray(f, np.float64) * gain
  if taps.ndim != 1:
    raise ValueError(f'upfirdn1d_matrix needs a 1-D filter, got shape {taps.shape}')
  if not flip_filter:
    taps = taps[::-1]
  p0, p1 = padding
  length = p0 + size * up + p1
  num_out = (length - len(taps)) // down + 1
  if num_out <= 0:
    raise ValueError(f'signal of size {size} is too small for a {len(taps)}-tap filter')
  matrix = np.zeros((num_out, size))
  for j in range(size):
    position = p0 + j * up  # where input sample j lands in the padded, zero-stuffed signal
    if not 0 <= position < length:
      continue  # cropped away
    for i in range(num_out):
      t = position - i * down
      if 0 <= t < len(taps):
        matrix[i, j] = taps[t]
  return matrix.astype(np.float32)
