"""2-D convolution with optional FIR up-/down-sampling (StyleGAN2's `conv2d_resample`).

Mathematically: up-sample x by zero insertion, FIR-filter it with `f` (gain up²), convolve with
`w`, then FIR-filter and keep every `down`-th pixel — with the padding arithmetic of NVlabs' op so
shapes and alignment match it exactly. Each case is arranged so the expensive convolution runs at
the lower of the two resolutions:

  * up-sampling: a transposed convolution (`lhs_dilation`, which XLA maps to cuDNN's strided
    backward-data kernel) followed by the FIR filter on the output channels;
  * down-sampling: the FIR filter followed by a stride-`down` convolution;
  * 1×1 kernels: the filter runs on whichever side has fewer pixels.

Weights are HWIO `[kh, kw, in_channels / groups, out_channels]`. `flip_weight=True` gives a
correlation (what `lax.conv` and `torch.nn.functional.conv2d` compute); False gives a true
convolution, which NVlabs use for up-sampling layers — it only matters for loading their weights.
"""

import functools

from jax import lax

from jaxgen.ops.upfirdn2d import filter_size, parse_padding, upfirdn2d

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True):
  """Convolves x [N, H, W, I] with w [kh, kw, I/groups, O], resampling with filter `f`.

  Args:
    x: input activations, NHWC.
    w: weights, HWIO, already scaled and cast to x's dtype.
    f: FIR filter from `setup_filter` (needed when up > 1 or down > 1).
    up: integer up-sampling factor.
    down: integer down-sampling factor.
    padding: padding relative to the up-sampled image: int, (x, y) or (x0, x1, y0, y1).
    groups: feature groups (the batch size for fused modulated convolutions).
    flip_weight: True = correlation, False = convolution.

  Returns:
    [N, H·up/down, W·up/down, O] for 'same' padding (padding = kernel_size // 2).
  """
  if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
    raise ValueError(f'up and down must be positive integers, got up={up}, down={down}')
  kh, kw = w.shape[0], w.shape[1]
  fw, fh = filter_size(f)
  px0, px1, py0, py1 = parse_padding(padding)
  if up > 1:
    px0 += (fw + up - 1) // 2
    px1 += (fw - up) // 2
    py0 += (fh + up - 1) // 2
    py1 += (fh - up) // 2
  if down > 1:
    px0 += (fw - down + 1) // 2
    px1 += (fw - down) // 2
    py0 += (fh - down + 1) // 2
    py1 += (fh - down) // 2
  if not flip_weight:
    w = w[::-1, ::-1]  # lax convolutions are correlations
  conv = functools.partial(lax.conv_general_dilated, rhs=w, dimension_numbers=_DIMENSIONS,
                           feature_group_count=groups)

  # 1×1 kernel, down-sampling only: filter and down-sample first, then convolve.
  if kw == 1 and kh == 1 and down > 1 and up == 1:
    x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
    return conv(x, window_strides=(1, 1), padding='VALID')

  # 1×1 kernel, up-sampling only: convolve first, then up-sample.
  if kw == 1 and kh == 1 and up > 1 and down == 1:
    x = conv(x, window_strides=(1, 1), padding='VALID')
    return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)

  # Down-sampling only: filter, then a strided convolution.
  if down > 1 and up == 1:
    x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
    return conv(x, window_strides=(down, down), padding='VALID')

  # Up-sampling: transposed convolution over the zero-stuffed input, then the filter.
  if up > 1:
    x = conv(x, window_strides=(1, 1), padding=((kh - 1, kh - 1), (kw - 1, kw - 1)),
             lhs_dilation=(up, up))
    x = upfirdn2d(x, f, padding=(px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)),
                  gain=up * up)
    if down > 1:
      x = upfirdn2d(x, f, down=down)
    return x

  # No resampling, symmetric non-negative padding: a plain convolution.
  if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
    return conv(x, window_strides=(1, 1), padding=((py0, py0), (px0, px0)))

  # No resampling, asymmetric or negative padding: pad or crop, then a 'valid' convolution.
  x = upfirdn2d(x, None, padding=(px0, px1, py0, py1))
  return conv(x, window_strides=(1, 1), padding='VALID')
