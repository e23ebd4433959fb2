"""Degradations that make self-supervised image-to-image training pairs, on the host (numpy).

A clean image x becomes an input y = D(x) for a network that learns to undo D:

  super-resolution   y = imresize(x, 1/s)            MATLAB's antialiased bicubic, as EDSR,
                                                     RCAN, ESRGAN and BasicSR make LR images
  denoising          y = x + sigma n, n ~ N(0, I)     sigma in 0-255 units (15, 25, 50)
  JPEG artefacts     y = jpeg(x, quality)             PIL's baseline JPEG encoder and decoder
  inpainting         y = x (1 - m), m = free_form_mask(...)   strokes and boxes, 1 = hole
  colourisation      y = luma(x)                      ITU-R BT.601 Y', as PIL's convert('L')

plus `random_crop` (one crop of several aligned arrays) and `rgb_to_ycbcr_y` (the Y channel on
which SR papers report PSNR/SSIM). Everything here runs per example inside the grain pipeline:
pure numpy and PIL, no JAX, and every random choice is drawn from the `numpy.random.Generator`
passed in, so an example is a function of its generator's seed alone. Images are HWC arrays,
uint8 in [0, 255] or float (units stated per function).
"""

import functools
import io
import math
import numbers

import numpy as np
from PIL import Image, ImageDraw

from jaxgen.errors import UserError

# --------------------------------------------------------------------------------------------
# imresize: MATLAB's bicubic resampling.

CUBIC_A = -0.5  # Keys' parameter; MATLAB's and PIL's 'bicubic' (OpenCV uses -0.75)
CUBIC_WIDTH = 4.0  # the kernel's support [-2, 2], in input pixels


def cubic(x):
  """Keys' cubic convolution kernel with a = -0.5 (Keys 1981, eq. 15), for |x| = t:

      k(t) = 1.5 t^3 - 2.5 t^2 + 1               t <= 1
      k(t) = -0.5 t^3 + 2.5 t^2 - 4 t + 2        1 < t <= 2
      k(t) = 0                                   t > 2

  (the general form is (a+2) t^3 - (a+3) t^2 + 1 and a t^3 - 5a t^2 + 8a t - 4a). It
  interpolates (k(0) = 1, k(+-1) = k(+-2) = 0) and its integer translates reproduce every
  polynomial of degree <= 2 exactly.
  """
  t = np.abs(np.asarray(x, np.float64))
  a = CUBIC_A
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return np.where(t <= 1, near, np.where(t <= 2, far, 0.0))


def _taps(in_length, out_length, scale, antialiasing=True):
  """The weights and input indices of one resampled axis, as MATLAB's imresize computes them.

  Output pixel x = 1..out_length (1-based, pixel centres at integers) sits at the input
  coordinate u = x / s + (1 - 1/s) / 2, which maps the outer edges 0.5 onto each other. When
  down-scaling (s < 1) with antialiasing the kernel is stretched to h(t) = s k(s t), of width
  4/s, so it low-passes at the output's Nyquist rate while it interpolates. Output x reads the
  P = ceil(width) + 2 inputs j = floor(u - width/2) + 0..P-1 with weights h(u - j) / sum_j h(u - j)
  (normalised, so a constant stays constant).

  Returns:
    weights [out_length, P] float64 and raw 0-based indices [out_length, P] int64 (before the
    symmetric boundary handling; some lie outside [0, in_length)).
  """
  width = CUBIC_WIDTH
  stretch = scale < 1 and antialiasing
  if stretch:
    width = CUBIC_WIDTH / scale
  x = np.arange(1, out_length + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(u - width / 2)
  num_taps = int(math.ceil(width)) + 2
  indices = left[:, None] + np.arange(num_taps)  # 1-based
  distance = u[:, None] - indices
  weights = scale * cubic(scale * distance) if stretch else cubic(distance)
  weights = weights / weights.sum(axis=1, keepdims=True)
  return weights, indices.astype(np.int64) - 1


def symmetric_index(indices, length):
  """MATLAB's 'symmetric' padding of 0-based indices: the signal is mirrored about its outer
  edges with the edge pixel repeated (..., 1, 0 | 0, 1, ..., n-1 | n-1, n-2, ...), i.e. it is
  periodic with period 2n and index i reads (i mod 2n) or 2n - 1 - (i mod 2n)."""
  period = np.mod(indices, 2 * length)
  return np.where(period < length, period, 2 * length - 1 - period)


@functools.lru_cache(maxsize=256)
def resize_taps(in_length, out_length, scale, antialiasing=True):
  """The taps of one resampled axis, ready to apply: resized[x] = sum_p w[x, p] signal[i[x, p]].

  The weights of `_taps` with the raw indices folded into [0, in_length) by `symmetric_index`,
  and the leading/trailing tap columns that are zero in every row dropped (as MATLAB does).
  Cached and read-only.

  Returns:
    weights [out_length, P] float64, indices [out_length, P] int64.
  """
  weights, indices = _taps(in_length, out_length, scale, antialiasing)
  used = np.flatnonzero(np.any(weights != 0, axis=0))
  keep = slice(used[0], used[-1] + 1)
  weights = np.ascontiguousarray(weights[:, keep])
  indices = symmetric_index(indices[:, keep], in_length)
  weights.setflags(write=False)
  indices.setflags(write=False)
  return weights, indices


def _output_shape(in_shape, scale, size):
  if (scale is None) == (size is None):
    raise UserError('imresize needs exactly one of scale= (output/input, e.g. 0.25 for x4 '
                    'down-scaling) and size=(height, width)')
  if size is not None:
    if (np.ndim(size) != 1 or len(size) != 2
        or not all(isinstance(n, numbers.Real) and int(n) == n and n >= 1 for n in size)):
      raise UserError(f'imresize size={size!r} must be two positive integers (height, width)')
    out_shape = tuple(int(n) for n in size)
    return out_shape, tuple(o / i for o, i in zip(out_shape, in_shape))
  scales = (scale, scale) if np.ndim(scale) == 0 else tuple(scale)
  if len(scales) != 2 or not all(isinstance(s, numbers.Real) and np.isfinite(s) and s > 0
                                 for s in scales):
    raise UserError(f'imresize scale={scale!r} must be a positive number or a (height, width) '
                    'pair of them (output/input: 0.25 down-scales by 4, 2 up-scales by 2)')
  scales = tuple(float(s) for s in scales)
  # MATLAB's ceil(scale * size), less 1e-6 so that a scale rounded just above 1/k (1/3 in float32,
  # 0.33333334) still gives size / k for sizes divisible by k.
  out_shape = tuple(max(1, math.ceil(n * s - 1e-6)) for n, s in zip(in_shape, scales))
  return out_shape, scales


def imresize(image, scale=None, size=None, antialiasing=True):
  """MATLAB's `imresize(image, scale)` / `imresize(image, [h w])` with its default 'bicubic'.

  Separable: each axis is resampled by its `resize_taps` (Keys' cubic, a = -0.5; widened to
  4/s input pixels and scaled by s when down-scaling by s < 1, with antialiasing; weights
  normalised per output pixel; MATLAB's 'symmetric' boundary, the edge pixel repeated in the
  mirror). Scale s is output/input: 1/4 makes the x4 LR image of the SR literature, 4 its
  bicubic baseline. Given `scale`, the output is ceil(s * size) per axis (exactly size / k for a
  size divisible by k at s = 1/k) and the kernel uses s itself; given `size`, s = out / in per
  axis. As MATLAB, the axis with the smaller scale is resampled first (height on a tie).

  Arithmetic is float64. Float input gives float32, neither clipped nor rounded (units kept,
  e.g. [0, 1] or [0, 255]). uint8 input gives uint8, and, as MATLAB, is clipped to [0, 255] and
  rounded half up after *each* axis: MATLAB's imresize keeps the input's class between its
  passes (fatheral/matlab_imresize, which does the same, reports a bit-exact match with MATLAB
  R2015b on uint8), and the SR benchmarks' LR images are MATLAB's output on uint8 PNGs. For a
  single rounding at the end, pass float and round yourself.

  This equals BasicSR's `basicsr/utils/matlab_functions.py:imresize` on float input up to its
  float32 arithmetic (checked once at BasicSR 8d56e3a on [0, 1] images, x1/2, x1/3, x1/4, x2,
  x3, x4: max difference 1.5e-6, borders included), and PIL's `Image.resize(..., BICUBIC,
  reducing_gap=None)` away from the borders (PIL renormalises the kernel inside the image
  instead of mirroring; see tests/test_degrade.py for the uint8 bounds).

  Args:
    image: [H, W] or [H, W, C], uint8 or float.
    scale: a positive number or a (height, width) pair: output / input.
    size: (out_height, out_width) instead of `scale`.
    antialiasing: widen the kernel when down-scaling (MATLAB's default, True).

  Returns:
    [out_height, out_width(, C)], uint8 for uint8 input, else float32.
  """
  image = np.asarray(image)
  if image.ndim not in (2, 3):
    raise UserError(f'imresize expects an image [H, W] or [H, W, C], got shape {image.shape}')
  is_uint8 = image.dtype == np.uint8
  if not (is_uint8 or np.issubdtype(image.dtype, np.floating)):
    raise UserError(f'imresize expects uint8 or float images, got {image.dtype}')
  out_shape, scales = _output_shape(image.shape[:2], scale, size)
  x = image.astype(np.float64)
  for axis in sorted((0, 1), key=lambda a: scales[a]):  # stable: height first on a tie
    weights, indices = resize_taps(image.shape[axis], out_shape[axis], scales[axis],
                                   bool(antialiasing))
    gathered = np.moveaxis(x, axis, 0)[indices]  # [out, P, other axes...]
    x = np.moveaxis(np.einsum('op,op...->o...', weights, gathered), 0, axis)
    if is_uint8:
      x = np.floor(np.clip(x, 0, 255) + 0.5)  # MATLAB rounds half away from zero
  return x.astype(np.uint8) if is_uint8 else x.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Noise and JPEG.

def _range_pair(value, what, low_bound, high_bound):
  """(low, high) from a number or a (low, high) pair, checked to lie in [low_bound, high_bound]."""
  pair = (value, value) if isinstance(value, numbers.Number) else tuple(value)
  if len(pair) != 2 or not all(isinstance(v, numbers.Number) and np.isfinite(v) for v in pair):
    raise UserError(f'{what}={value!r} must be a number or a (low, high) pair of numbers')
  low, high = pair
  if not low_bound <= low <= high <= high_bound:
    raise UserError(f'{what}={value!r} must lie in [{low_bound}, {high_bound}] with low <= high')
  return low, high


def sample_sigma(rng, sigma_or_range):
  """A noise level in 0-255 units: `sigma_or_range` itself if it is a number (nothing is drawn
  from `rng`), else uniform in [low, high) for a pair (low, high), as blind denoisers (DnCNN-B:
  [0, 55], FFDNet: [0, 75]) are trained. Returns a float."""
  low, high = _range_pair(sigma_or_range, 'sigma', 0.0, 255.0)
  return float(low) if low == high else float(rng.uniform(low, high))


def add_gaussian_noise(image, sigma, rng):
  """Additive white Gaussian noise, y = x + sigma n with n ~ N(0, I) i.i.d. per pixel and
  channel: the denoising literature's AWGN (DnCNN, FFDNet, SwinIR's sigma = 15, 25, 50).

  Args:
    image: [H, W, C] float in [0, 255] (uint8 is converted).
    sigma: the standard deviation in the same 0-255 units (see `sample_sigma`).
    rng: numpy.random.Generator; one standard normal is drawn per element.

  Returns:
    [H, W, C] float32, not clipped (as those papers train and test: clipping would make the
    noise signal-dependent).
  """
  if not (np.isfinite(sigma) and sigma >= 0):
    raise UserError(f'noise sigma={sigma!r} must be a finite number >= 0 (0-255 units)')
  image = np.asarray(image, np.float32)
  noise = rng.standard_normal(image.shape, dtype=np.float32)
  return image + np.float32(sigma) * noise


JPEG_QUALITY_RANGE = (1, 95)  # PIL: above 95 the quantisation tables are nearly all ones


def sample_quality(rng, quality_or_range):
  """A JPEG quality: the int itself (nothing drawn), or uniform over the integers of
  [low, high] inclusive for a pair, as Real-ESRGAN and FBCNN draw it (e.g. (30, 95))."""
  low, high = _range_pair(quality_or_range, 'jpeg quality', *JPEG_QUALITY_RANGE)
  if int(low) != low or int(high) != high:
    raise UserError(f'jpeg quality={quality_or_range!r} must be integers')
  return int(low) if low == high else int(rng.integers(int(low), int(high) + 1))


def jpeg(image, quality):
  """The image after a JPEG encode/decode round trip with PIL (libjpeg): baseline, the IJG
  quantisation tables scaled to `quality`, 4:2:0 chroma subsampling for RGB (PIL's default).

  Args:
    image: [H, W, 3], [H, W, 1] or [H, W] uint8.
    quality: an int in [1, 95].

  Returns:
    uint8 of the same shape. Deterministic.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise UserError(f'jpeg expects a uint8 image, got {image.dtype}: convert with '
                    'np.clip(np.round(x), 0, 255).astype(np.uint8)')
  if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
    raise UserError(f'jpeg expects [H, W, 3], [H, W, 1] or [H, W], got shape {image.shape}')
  low, high = JPEG_QUALITY_RANGE
  if not (isinstance(quality, numbers.Integral) and low <= quality <= high):
    raise UserError(f'jpeg quality={quality!r} must be an integer in [{low}, {high}]')
  plane = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
  buffer = io.BytesIO()
  Image.fromarray(plane).save(buffer, format='JPEG', quality=int(quality))
  decoded = np.asarray(Image.open(buffer))
  return decoded.reshape(image.shape)


# --------------------------------------------------------------------------------------------
# Inpainting masks.

def free_form_mask(rng, height, width, *, max_strokes=5, max_vertices=6, max_boxes=2,
                   max_angle=4.0, length_range=(0.1, 0.35), width_range=(0.04, 0.12),
                   box_range=(0.1, 0.4), max_hole_fraction=0.6):
  """A random hole mask of free-form strokes and boxes, as DeepFill v2 (Yu et al. 2019, Alg. 1)
  and LaMa (Suvorov et al. 2022) train inpainting.

  With S = sqrt(height * width), every length below is a fraction of S, so the hole fraction
  does not depend on the resolution or the aspect ratio. The mask is the union of
    * 1..max_strokes strokes: a polyline from a uniform start point through 1..max_vertices
      segments, each turning to a uniform angle in [0, max_angle) radians (mirrored to
      2 pi - angle on every other stroke, as DeepFill), of length uniform in `length_range` S,
      clipped to the image, drawn with a brush of width uniform in `width_range` S (at least
      1 pixel) and round joints and ends;
    * 0..max_boxes axis-aligned boxes, side lengths uniform in `box_range` S, placed uniformly
      inside the image.
  A stroke or box that would take the hole fraction above `max_hole_fraction` is left out, so
  the mask is never all hole; it is never empty either (if everything was left out, one box of
  the smallest side is used).

  Coverage with the defaults (hole fraction over 1,000 draws): mean 0.18-0.19, std 0.09,
  5%/50%/95% quantiles 0.05/0.18/0.34 at 64x64, 256x256 and 48x128 (mean 0.20 at 32x32 and
  0.26 at 16x16, where the 1-pixel minimum brush and pixel rounding add up); never above
  max_hole_fraction, never empty. tests/test_degrade.py holds the mean in [0.15, 0.25] for
  32..256 pixels.

  Args:
    rng: numpy.random.Generator; the mask is a function of its state alone.
    height, width: the mask's size in pixels.

  Returns:
    [height, width, 1] float32, 1 = hole (to be filled), 0 = known pixel.
  """
  if height < 1 or width < 1 or height * width < 2:
    raise UserError(f'free_form_mask needs at least 2 pixels, got {height}x{width}')
  if not 0 < max_hole_fraction < 1:
    raise UserError(f'max_hole_fraction={max_hole_fraction} must lie in (0, 1)')
  if max_strokes < 1 or max_vertices < 1 or max_boxes < 0:
    raise UserError('free_form_mask needs max_strokes >= 1, max_vertices >= 1, max_boxes >= 0')
  side = math.sqrt(height * width)
  limit = max_hole_fraction * height * width
  mask = np.zeros((height, width), np.uint8)

  def accept(candidate):
    nonlocal mask
    hole = np.maximum(mask, np.asarray(candidate, np.uint8))
    if np.count_nonzero(hole) <= limit:
      mask = hole

  for stroke in range(int(rng.integers(1, max_strokes + 1))):
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    brush = max(1.0, rng.uniform(*width_range) * side)
    radius = brush / 2
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    points = [(x, y)]
    for _ in range(int(rng.integers(1, max_vertices + 1))):
      angle = rng.uniform(0, max_angle)
      if stroke % 2 == 0:
        angle = 2 * np.pi - angle
      length = rng.uniform(*length_range) * side
      x = float(np.clip(x + length * np.cos(angle), 0, width - 1))
      y = float(np.clip(y + length * np.sin(angle), 0, height - 1))
      points.append((x, y))
    draw.line(points, fill=1, width=int(round(brush)), joint='curve')
    for px, py in points:  # round ends and a disc at every vertex
      draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=1)
    accept(canvas)

  def box(low, high):
    box_h = max(1, min(height, int(round(rng.uniform(low, high) * side))))
    box_w = max(1, min(width, int(round(rng.uniform(low, high) * side))))
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    hole = np.zeros_like(mask)
    hole[top:top + box_h, left:left + box_w] = 1
    return hole

  for _ in range(int(rng.integers(0, max_boxes + 1))):
    accept(box(*box_range))
  if not mask.any():
    hole = box(box_range[0], box_range[0])
    mask = hole if np.count_nonzero(hole) <= limit else _single_pixel(rng, height, width)
  return mask.astype(np.float32)[..., None]


def _single_pixel(rng, height, width):
  hole = np.zeros((height, width), np.uint8)
  hole[rng.integers(height), rng.integers(width)] = 1
  return hole


# --------------------------------------------------------------------------------------------
# Colour: luma, YCbCr, crops.

LUMA_BT601 = (0.299, 0.587, 0.114)


def luma(image):
  """Luma Y' = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 on gamma-encoded R'G'B'), the grey
  input of colourisation models and what PIL's `convert('L')` computes.

  Args:
    image: [..., 3] uint8 in [0, 255] or float (any units; Y' is in the same units).

  Returns:
    [..., 1]: float32 for float input; uint8 rounded half up for uint8 input (PIL's
    convert('L') up to its 16-bit fixed-point weights, which can flip a value within 0.003 of
    a half-level).
  """
  image = np.asarray(image)
  if image.shape[-1:] != (3,):
    raise UserError(f'luma expects RGB images [..., 3], got shape {image.shape}')
  y = image.astype(np.float64) @ np.asarray(LUMA_BT601)
  if image.dtype == np.uint8:
    return np.floor(y + 0.5).astype(np.uint8)[..., None]
  return y.astype(np.float32)[..., None]


YCBCR_Y_WEIGHTS = (65.481, 128.553, 24.966)  # 219 * (0.299, 0.587, 0.114): Y' on [16, 235]


def rgb_to_ycbcr_y(image, data_range=None, quantize=False):
  """The Y channel of MATLAB's `rgb2ycbcr` (ITU-R BT.601, studio range), on which SR papers
  report PSNR and SSIM:

      Y = 16 + 65.481 R + 128.553 G + 24.966 B,   R, G, B in [0, 1],  Y in [16, 235],

  returned on the input's scale: Y * data_range / 255 (so uint8 input gives Y in [16, 235],
  [0, 1] input gives [16/255, 235/255]), as BasicSR's `rgb2ycbcr(..., y_only=True)`.

  Args:
    image: [..., 3] RGB, uint8 or float.
    data_range: the value of white: 255 for uint8 (the default there); required for float.
    quantize: round Y to integer levels of the 0-255 scale (half up), as MATLAB's rgb2ycbcr
      returns for uint8 input: the Y of the MATLAB evaluation scripts of EDSR/RCAN. BasicSR
      does not round (the default).

  Returns:
    [..., 1] float32.
  """
  image = np.asarray(image)
  if image.shape[-1:] != (3,):
    raise UserError(f'rgb_to_ycbcr_y expects RGB images [..., 3], got shape {image.shape}')
  if data_range is None:
    if image.dtype != np.uint8:
      raise UserError('rgb_to_ycbcr_y needs data_range for float images (1.0 for [0, 1], '
                      '255.0 for [0, 255])')
    data_range = 255.0
  rgb = image.astype(np.float64) / data_range
  y = 16.0 + rgb @ np.asarray(YCBCR_Y_WEIGHTS)
  if quantize:
    y = np.floor(np.clip(y, 0, 255) + 0.5)
  return (y * (data_range / 255.0)).astype(np.float32)[..., None]


def random_crop(rng, images, size, multiple_of=1):
  """One uniformly random size x size window cut from one image or from several aligned ones.

  The top-left corner (top, left) is drawn uniformly from the multiples of `multiple_of` that
  keep the window inside: top = multiple_of * rng.integers(0, (H - h) // multiple_of + 1), then
  left likewise. With multiple_of = s the window starts on the grid of an s-times down-scaled
  image (or on JPEG's 8x8 blocks with 8).

  Args:
    rng: numpy.random.Generator (two integers are drawn).
    images: one array [H, W, ...] or a list/tuple of arrays sharing H and W.
    size: the crop's side, or (height, width).
    multiple_of: the grid the corner lies on.

  Returns:
    A contiguous copy of the window, [h, w, ...]: one array, or a list for a list/tuple.
  """
  single = isinstance(images, np.ndarray)
  arrays = [np.asarray(a) for a in ([images] if single else images)]
  if not arrays:
    raise UserError('random_crop needs at least one image')
  height, width = arrays[0].shape[:2]
  for a in arrays[1:]:
    if a.shape[:2] != (height, width):
      raise UserError(f'random_crop needs aligned images of one size, got {height}x{width} '
                      f'and {a.shape[0]}x{a.shape[1]}')
  crop_h, crop_w = (size, size) if np.ndim(size) == 0 else size
  if multiple_of < 1 or crop_h < 1 or crop_w < 1:
    raise UserError(f'random_crop needs size >= 1 and multiple_of >= 1, got {size}, '
                    f'{multiple_of}')
  if crop_h > height or crop_w > width:
    raise UserError(f'an image of {height}x{width} is smaller than the {crop_h}x{crop_w} crop: '
                    'use a smaller crop size or larger images')
  top = multiple_of * int(rng.integers(0, (height - crop_h) // multiple_of + 1))
  left = multiple_of * int(rng.integers(0, (width - crop_w) // multiple_of + 1))
  crops = [np.ascontiguousarray(a[top:top + crop_h, left:left + crop_w]) for a in arrays]
  return crops[0] if single else crops
