"""Full-reference image quality: PSNR and SSIM, batched and jit-friendly.

SSIM follows Wang et al. (2004): local statistics under an 11x11 Gaussian window with
sigma 1.5, population (biased) variances, K1 = 0.01, K2 = 0.03, averaged over the pixels whose
window lies fully inside the image and over channels. That is exactly

    skimage.metrics.structural_similarity(a, b, data_range=R, channel_axis=-1,
                                          gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)

(skimage's docstring names these arguments as the Wang et al. setting; its Gaussian is
truncated at 3.5 sigma, i.e. radius 5, and the 5-pixel border is cropped before the mean).
PSNR is 10 log10(R^2 / MSE) with the MSE over all pixels and channels of an image, as
`skimage.metrics.peak_signal_noise_ratio(a, b, data_range=R)`.

Both take batches [B, H, W, C] (or [B, H, W]) and return one value per image, [B].
"""

import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5), scipy.ndimage's truncation at 3.5 sigma
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _data_range(images, data_range):
  if data_range is not None:
    return float(data_range)
  if images.dtype == jnp.uint8:
    return 255.0
  raise UserError('data_range is required for float images (e.g. 1.0 for [0, 1], '
                  '2.0 for [-1, 1], 255.0 for [0, 255])')


def _as_batch(a, b):
  if a.shape != b.shape:
    raise UserError(f'images to compare have different shapes: {a.shape} vs {b.shape}')
  if a.ndim == 3:
    a, b = a[..., None], b[..., None]
  if a.ndim != 4:
    raise UserError(f'expected image batches [B, H, W, C] or [B, H, W], got {a.shape}')
  return a, b


def psnr(a, b, data_range=None):
  """Peak signal-to-noise ratio in dB.

  Args:
    a, b: [B, H, W, C] or [B, H, W] images of the same shape (uint8 or float).
    data_range: max - min of the pixel scale; default 255 for uint8, required for floats.

  Returns:
    [B] float32; inf where the images are identical.
  """
  r = _data_range(a, data_range)
  a, b = _as_batch(a, b)
  diff = a.astype(jnp.float32) - b.astype(jnp.float32)
  mse = jnp.mean(diff * diff, axis=(1, 2, 3))
  return 10 * jnp.log10(r * r / mse)


def _gaussian_taps():
  x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
  return (w / w.sum()).astype(np.float32)


def _valid_filter(x):
  """Separable 11x11 Gaussian filter, 'valid' region only: [B, H, W, C] -> [B, H-10, W-10, C].

  The valid region is exactly what SSIM keeps after cropping its border, so no padding
  convention is involved. Written as shifted sums (no convolution), so that no reduced
  matmul precision (TF32 on GPUs) can apply.
  """
  taps = _gaussian_taps()
  n = 2 * SSIM_RADIUS
  h, w = x.shape[1] - n, x.shape[2] - n
  x = sum(float(t) * x[:, i:i + h] for i, t in enumerate(taps))
  return sum(float(t) * x[:, :, i:i + w] for i, t in enumerate(taps))


def ssim(a, b, data_range=None):
  """Mean structural similarity per image (Wang et al. 2004; see the module docstring).

  Args:
    a, b: [B, H, W, C] or [B, H, W] images of the same shape, H and W >= 11.
    data_range: max - min of the pixel scale; default 255 for uint8, required for floats.

  Returns:
    [B] float32 in [-1, 1]; 1 for identical images.
  """
  r = _data_range(a, data_range)
  a, b = _as_batch(a, b)
  if min(a.shape[1:3]) < 2 * SSIM_RADIUS + 1:
    raise UserError(f'SSIM needs images of at least 11x11 pixels, got {a.shape[1:3]}')
  # Scale to unit range and subtract a common constant: variances and the covariance are
  # unchanged, and float32 keeps its precision in E[x^2] - E[x]^2. The means are restored
  # for the luminance term.
  x = a.astype(jnp.float32) / r
  y = b.astype(jnp.float32) / r
  shift = 0.5 * (jnp.mean(x, axis=(1, 2, 3), keepdims=True)
                 + jnp.mean(y, axis=(1, 2, 3), keepdims=True))
  x, y = x - shift, y - shift
  ux, uy = _valid_filter(x), _valid_filter(y)
  vx = _valid_filter(x * x) - ux * ux
  vy = _valid_filter(y * y) - uy * uy
  vxy = _valid_filter(x * y) - ux * uy
  ux, uy = ux + shift, uy + shift
  c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # (K R)^2 with R = 1 after scaling
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  return jnp.mean(s, axis=(1, 2, 3))
