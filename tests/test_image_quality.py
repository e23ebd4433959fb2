"""PSNR and SSIM against scikit-image (the Wang et al. 2004 SSIM setting)."""

import numpy as np
import pytest
import skimage.data
import skimage.metrics
from scipy import ndimage

from jaxgen.errors import UserError
from jaxgen.metrics import image_quality

# The bound. Our maths is float32 (skimage's float64): per-pixel SSIM terms carry
# ~1e-6 relative error after the mean-centring, well inside 1e-4.
TOL = 1e-4


def _skimage_ssim(a, b, data_range):
  return skimage.metrics.structural_similarity(
      a, b, data_range=data_range, channel_axis=-1, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False)


def _pairs():
  """(a, b, data_range) batches: random noise, and structured photos with distortions."""
  rng = np.random.default_rng(0)
  noise_a = rng.integers(0, 256, (2, 24, 31, 3)).astype(np.uint8)
  noise_b = np.clip(noise_a + rng.normal(0, 20, noise_a.shape), 0, 255).astype(np.uint8)
  photo = skimage.data.astronaut()[100:164, 150:230]  # [64, 80, 3] uint8
  blurred = ndimage.gaussian_filter(photo.astype(np.float64), (1.2, 1.2, 0))
  noisy = photo + rng.normal(0, 10, photo.shape)
  photos = np.stack([photo, photo]).astype(np.float64) / 255
  distorted = np.stack([blurred, noisy]) / 255
  camera = skimage.data.camera()[200:260, 180:250]  # grayscale [60, 70]
  camera_b = np.roll(camera, 2, axis=1)
  return [
      (noise_a, noise_b, None),  # uint8: data_range 255 inferred
      (photos, np.clip(distorted, 0, 1), 1.0),
      (photos * 2 - 1, np.clip(distorted, 0, 1) * 2 - 1, 2.0),  # [-1, 1]
      (camera[None], camera_b[None], None),  # [B, H, W]
  ]


@pytest.mark.parametrize('case', range(4))
def test_ssim_matches_skimage(case):
  a, b, data_range = _pairs()[case]
  got = np.asarray(image_quality.ssim(a, b, data_range))
  for i in range(a.shape[0]):
    ai, bi = a[i], b[i]
    if ai.ndim == 2:
      ai, bi = ai[..., None], bi[..., None]
    ref = _skimage_ssim(ai, bi, data_range or 255)
    assert abs(got[i] - ref) < TOL, (got[i], ref)


@pytest.mark.parametrize('case', range(4))
def test_psnr_matches_skimage(case):
  a, b, data_range = _pairs()[case]
  got = np.asarray(image_quality.psnr(a, b, data_range))
  for i in range(a.shape[0]):
    ref = skimage.metrics.peak_signal_noise_ratio(a[i], b[i], data_range=data_range or 255)
    assert abs(got[i] - ref) < TOL * ref, (got[i], ref)


def test_identical_images():
  a = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(image_quality.ssim(a, a, 1.0), 1.0, atol=1e-6)
  assert np.all(np.isinf(np.asarray(image_quality.psnr(a, a, 1.0))))


def test_bad_inputs():
  a = np.zeros((1, 10, 20, 3), np.uint8)
  with pytest.raises(UserError, match='11x11'):
    image_quality.ssim(a, a)
  with pytest.raises(UserError, match='data_range'):
    image_quality.psnr(a.astype(np.float32), a.astype(np.float32))
  with pytest.raises(UserError, match='different shapes'):
    image_quality.psnr(a, a[:, :, :10])
