"""The host-side degradations: imresize against a plain-loop evaluation of MATLAB's formula and
against PIL, its exactness properties; noise, JPEG, masks, luma, YCbCr and crops."""

import math

import numpy as np
import pytest
import skimage.color
import skimage.data
from PIL import Image

from jaxgen.data import degrade
from jaxgen.errors import UserError

# --------------------------------------------------------------------------------------------
# imresize


def _keys(t, a=-0.5):
  t = abs(t)
  if t <= 1:
    return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
  if t <= 2:
    return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
  return 0.0


def _reflect(i, n):
  """MATLAB 'symmetric': mirror about the outer edges, the edge pixel repeated."""
  while not 0 <= i < n:
    i = -1 - i if i < 0 else 2 * n - 1 - i
  return i


def _reference_rows(n_in, n_out, s):
  """Per output pixel, {input index: weight} and whether a non-zero tap was mirrored, written
  out from MATLAB's documented algorithm one pixel and one tap at a time."""
  width = 4 / s if s < 1 else 4
  rows, mirrored = [], []
  for x in range(1, n_out + 1):
    u = x / s + 0.5 * (1 - 1 / s)
    left = math.floor(u - width / 2)
    taps = {j: (s * _keys(s * (u - j)) if s < 1 else _keys(u - j))
            for j in range(left, left + math.ceil(width) + 2)}
    total = sum(taps.values())
    row, flag = {}, False
    for j, w in taps.items():
      i = _reflect(j - 1, n_in)
      flag |= (w != 0 and i != j - 1)
      row[i] = row.get(i, 0.0) + w / total
    rows.append(row)
    mirrored.append(flag)
  return rows, np.array(mirrored)


def _reference_float(image, out_hw, scales):
  """out[y, x] = sum_i sum_j wh[y, i] ww[x, j] image[i, j], the 2-D sum done directly."""
  rows_h, _ = _reference_rows(image.shape[0], out_hw[0], scales[0])
  rows_w, _ = _reference_rows(image.shape[1], out_hw[1], scales[1])
  image = image.astype(np.float64)
  out = np.zeros((out_hw[0], out_hw[1], image.shape[2]))
  for y, row_h in enumerate(rows_h):
    for x, row_w in enumerate(rows_w):
      for i, wh in row_h.items():
        for j, ww in row_w.items():
          out[y, x] += wh * ww * image[i, j]
  return out


def _reference_uint8(image, out_hw, scales):
  """MATLAB on uint8: one axis at a time (the smaller scale first, height on a tie), clipped to
  [0, 255] and rounded half up after each."""
  x = image.astype(np.float64)
  for axis in ((0, 1) if scales[0] <= scales[1] else (1, 0)):
    rows, _ = _reference_rows(x.shape[axis], out_hw[axis], scales[axis])
    moved = np.moveaxis(x, axis, 0)
    out = np.stack([sum(w * moved[i] for i, w in row.items()) for row in rows])
    x = np.floor(np.clip(np.moveaxis(out, 0, axis), 0, 255) + 0.5)
  return x.astype(np.uint8)


# (height, width, channels, scale, size, expected output size)
CASES = [
    (12, 15, 2, 1 / 2, None, (6, 8)),     # width 15 is not divisible: ceil(7.5) = 8
    (12, 15, 1, 1 / 3, None, (4, 5)),
    (16, 12, 3, 1 / 4, None, (4, 3)),
    (5, 7, 2, 2, None, (10, 14)),
    (5, 4, 1, 3, None, (15, 12)),
    (4, 5, 2, 4, None, (16, 20)),
    (11, 9, 2, None, (4, 13), (4, 13)),  # down one axis, up the other: width resampled last
    (3, 2, 1, 1 / 4, None, (1, 1)),      # the stretched kernel (16 px) mirrors past the image
]


@pytest.mark.parametrize('h, w, c, scale, size, expected', CASES)
def test_imresize_matches_the_direct_formula(h, w, c, scale, size, expected):
  rng = np.random.default_rng(h * 100 + w)
  scales = (scale, scale) if scale else (size[0] / h, size[1] / w)
  image = rng.uniform(0, 255, (h, w, c))
  out = degrade.imresize(image, scale=scale, size=size)
  assert out.shape == (*expected, c) and out.dtype == np.float32
  # float32 output of float64 arithmetic on values <= ~300: rounding ~2e-5.
  np.testing.assert_allclose(out, _reference_float(image, expected, scales), atol=1e-4, rtol=0)
  image8 = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  out8 = degrade.imresize(image8, scale=scale, size=size)
  assert out8.dtype == np.uint8
  np.testing.assert_array_equal(out8, _reference_uint8(image8, expected, scales))


def _pil_resize(image, out_hw):
  """PIL bicubic (antialiased, a = -0.5), RGB uint8 or per channel in float ('F') mode."""
  size = (out_hw[1], out_hw[0])
  if image.dtype == np.uint8:
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC, reducing_gap=None))
  return np.stack([np.asarray(Image.fromarray(image[..., k].astype(np.float32), 'F').resize(
      size, Image.BICUBIC, reducing_gap=None)) for k in range(image.shape[-1])], -1)


@pytest.mark.parametrize('h, w, scale, size', [
    (48, 60, 1 / 4, None), (48, 60, 1 / 3, None), (48, 60, 1 / 2, None),
    (16, 20, 2, None), (16, 20, 3, None), (16, 20, 4, None),
    (37, 41, None, (13, 29)), (20, 20, None, (33, 47))])
def test_imresize_matches_pil_away_from_the_borders(h, w, scale, size):
  """PIL evaluates the same kernel at the same coordinates (centre (x + 0.5) / s, support
  2 / min(s, 1), weights normalised) but truncates it at the image's edge instead of mirroring:
  they agree wherever MATLAB mirrors nothing."""
  rng = np.random.default_rng(h + w)
  out_hw = degrade.imresize(np.zeros((h, w)), scale=scale, size=size).shape
  scales = (scale, scale) if scale else (out_hw[0] / h, out_hw[1] / w)
  inside_h = ~_reference_rows(h, out_hw[0], scales[0])[1]
  inside_w = ~_reference_rows(w, out_hw[1], scales[1])[1]
  assert inside_h.sum() >= out_hw[0] // 2 and inside_w.sum() >= out_hw[1] // 2
  interior = np.ix_(inside_h, inside_w)

  # Float ('F') mode: PIL sums in double and stores float32, between the passes too, so the
  # two agree to float32 rounding of values <= ~300 (measured <= 3e-5).
  image = rng.uniform(0, 255, (h, w, 3))
  ours = degrade.imresize(image, scale=scale, size=size)
  np.testing.assert_allclose(ours[interior], _pil_resize(image, out_hw)[interior], atol=2e-4)

  # uint8: PIL (22-bit fixed-point weights) rounds and clips after its first (horizontal) pass
  # and at the end. On values in [40, 215] no pass overshoots [0, 255] (the cubic's lobes add
  # at most 1/8 of the range per pass), so nothing is clipped, and PIL is off the exact value
  # by at most 0.5 (the final rounding) + 0.5 * sum |w| (the first rounding, seen through the
  # second pass; sum |w| <= 1.25 for a = -0.5): 1.125. Hence, as integers,
  #   |PIL - round(exact)| <= 1, and |PIL - ours| <= 2 (ours rounds after each pass too, in
  #   MATLAB's order, height first), measured 1 and 2.
  image8 = rng.integers(40, 216, (h, w, 3), dtype=np.uint8)
  exact = degrade.imresize(image8.astype(np.float64), scale=scale, size=size).astype(np.float64)
  pil8 = _pil_resize(image8, out_hw)[interior].astype(np.int64)
  assert np.abs(pil8 - exact[interior]).max() <= 1.125 + 1e-3
  assert np.abs(pil8 - np.floor(exact[interior] + 0.5)).max() <= 1
  ours8 = degrade.imresize(image8, scale=scale, size=size)[interior].astype(np.int64)
  assert np.abs(pil8 - ours8).max() <= 2
  assert np.abs(ours8 - np.floor(exact[interior] + 0.5)).max() <= 1  # same argument


@pytest.mark.parametrize('scale', [1 / 4, 1 / 3, 1 / 2, 2, 3, 4])
def test_imresize_keeps_a_constant(scale):
  image = np.full((24, 18, 3), 97.25)
  np.testing.assert_allclose(degrade.imresize(image, scale), 97.25, atol=1e-5)
  image8 = np.full((24, 18, 1), 201, np.uint8)
  assert (degrade.imresize(image8, scale) == 201).all()


@pytest.mark.parametrize('k', [2, 3, 4])
def test_imresize_down_then_up_is_exact_on_a_linear_ramp(k):
  """Down by k: each LR pixel's taps are symmetric about its centre, so a ramp is sampled
  exactly at (i + 0.5) k - 0.5; up by k: Keys' a = -0.5 kernel reproduces polynomials of
  degree <= 2. So the round trip returns the ramp wherever no tap was mirrored."""
  n = 60
  y, x = np.mgrid[:n, :n].astype(np.float64)
  ramp = (1.7 * y - 0.9 * x + 40)[..., None]
  round_trip = degrade.imresize(degrade.imresize(ramp, 1 / k), k)
  assert round_trip.shape == ramp.shape
  m = 5 * k  # the LR pixels within 2 of the edge are mirrored; the up pass reads 2 LR pixels
  np.testing.assert_allclose(round_trip[m:-m, m:-m], ramp[m:-m, m:-m], atol=1e-4)
  assert np.abs(round_trip - ramp).max() > 0.1  # the mirrored border is not a ramp: m matters
  quadratic = (0.05 * (y[:20, :20] - 7) ** 2 + 0.3 * x[:20, :20] * y[:20, :20])[..., None]
  up = degrade.imresize(quadratic, k)
  yy, xx = (np.mgrid[:20 * k, :20 * k] + 0.5) / k - 0.5  # the HR pixels on LR coordinates
  expected = (0.05 * (yy - 7) ** 2 + 0.3 * xx * yy)[..., None]
  m = 3 * k
  np.testing.assert_allclose(up[m:-m, m:-m], expected[m:-m, m:-m], atol=1e-4)


def test_imresize_shapes_and_dtypes():
  image = np.zeros((48, 36, 3), np.float32)
  for k in (2, 3, 4):
    assert degrade.imresize(image, 1 / k).shape == (48 // k, 36 // k, 3)
    assert degrade.imresize(image, k).shape == (48 * k, 36 * k, 3)
  assert degrade.imresize(np.zeros((10, 7)), 1 / 3).shape == (4, 3)  # MATLAB's ceil
  assert degrade.imresize(image, np.float32(1 / 3)).shape == (16, 12, 3)  # 1/3 rounded up
  assert degrade.imresize(np.zeros((10, 7)), (0.5, 2)).shape == (5, 14)
  assert degrade.imresize(np.zeros((10, 7, 2), np.uint8), size=(3, 11)).shape == (3, 11, 2)
  assert degrade.imresize(np.zeros((8, 8), np.float64), 1 / 2).dtype == np.float32
  # float is neither clipped nor rounded: a step overshoots on up-scaling.
  step = np.zeros((8, 8), np.float32)
  step[:, 4:] = 1
  up = degrade.imresize(step, 2)
  assert up.min() < 0 and up.max() > 1


def test_imresize_rejects_bad_arguments():
  image = np.zeros((8, 8, 3), np.float32)
  for kwargs in ({}, {'scale': 0.5, 'size': (4, 4)}, {'scale': 0}, {'scale': -1},
                 {'scale': float('nan')}, {'size': (4,)}, {'size': (4, 0)}, {'size': (4, 2.5)}):
    with pytest.raises(UserError):
      degrade.imresize(image, **kwargs)
  with pytest.raises(UserError):
    degrade.imresize(np.zeros((8, 8), np.int16), 0.5)
  with pytest.raises(UserError):
    degrade.imresize(np.zeros((2, 8, 8, 3)), 0.5)


# --------------------------------------------------------------------------------------------
# Noise and JPEG


def test_gaussian_noise():
  image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
  noisy = degrade.add_gaussian_noise(image, 25.0, np.random.default_rng(1))
  assert noisy.dtype == np.float32 and noisy.shape == image.shape
  noise = (noisy - image).astype(np.float64)
  # 12,288 samples: the sample std's standard error is 25 / sqrt(2 N) = 0.16 (1 %), the mean's
  # 25 / sqrt(N) = 0.23; the bounds are about 5 standard errors.
  assert abs(noise.std() - 25.0) < 0.8 and abs(noise.mean()) < 1.2
  assert noisy.min() < 0 and noisy.max() > 255  # not clipped
  again = degrade.add_gaussian_noise(image, 25.0, np.random.default_rng(1))
  np.testing.assert_array_equal(noisy, again)
  other = degrade.add_gaussian_noise(image, 25.0, np.random.default_rng(2))
  assert not np.array_equal(noisy, other)
  np.testing.assert_array_equal(degrade.add_gaussian_noise(image, 0, np.random.default_rng(1)),
                                image)
  with pytest.raises(UserError):
    degrade.add_gaussian_noise(image, -1.0, np.random.default_rng(0))


def test_sample_sigma():
  rng = np.random.default_rng(0)
  state = rng.bit_generator.state
  assert degrade.sample_sigma(rng, 25) == 25.0
  assert rng.bit_generator.state == state  # a fixed sigma draws nothing
  draws = np.array([degrade.sample_sigma(rng, (5, 55)) for _ in range(2000)])
  assert draws.min() >= 5 and draws.max() < 55
  assert abs(draws.mean() - 30) < 1.5  # uniform: std 14.4, standard error 0.32
  assert degrade.sample_sigma(np.random.default_rng(3), (0, 75)) == \
      degrade.sample_sigma(np.random.default_rng(3), (0, 75))
  for bad in (-1, (10, 5), (0, 300), (1, 2, 3), 'a', float('nan')):
    with pytest.raises(UserError):
      degrade.sample_sigma(rng, bad)


def _photo():
  return skimage.data.astronaut()[80:176, 140:236]  # [96, 96, 3] uint8


def test_jpeg_round_trip():
  photo = _photo()
  errors = []
  for quality in (10, 30, 60, 95):
    out = degrade.jpeg(photo, quality)
    assert out.shape == photo.shape and out.dtype == np.uint8
    errors.append(np.mean((out.astype(np.float64) - photo) ** 2))
  assert all(a > b for a, b in zip(errors, errors[1:])), errors  # error falls with quality
  assert 10 * np.log10(255 ** 2 / errors[-1]) > 35  # q = 95 is close (measured 38.7 dB)
  assert 10 * np.log10(255 ** 2 / errors[0]) < 32  # q = 10 is clearly degraded (27.1 dB)
  np.testing.assert_array_equal(degrade.jpeg(photo, 30), degrade.jpeg(photo, 30))
  gray = photo[..., :1]
  assert degrade.jpeg(gray, 50).shape == gray.shape
  assert degrade.jpeg(gray[..., 0], 50).shape == gray.shape[:2]
  for quality in (0, 96, 50.5):
    with pytest.raises(UserError):
      degrade.jpeg(photo, quality)
  with pytest.raises(UserError):
    degrade.jpeg(photo.astype(np.float32), 50)


def test_sample_quality():
  rng = np.random.default_rng(0)
  assert degrade.sample_quality(rng, 75) == 75
  draws = [degrade.sample_quality(rng, (30, 35)) for _ in range(300)]
  assert set(draws) == set(range(30, 36))  # both ends included
  assert all(isinstance(q, int) for q in draws)
  for bad in (0, 100, (40, 30), (30.5, 40)):
    with pytest.raises(UserError):
      degrade.sample_quality(rng, bad)


# --------------------------------------------------------------------------------------------
# Masks


@pytest.mark.parametrize('height, width, draws', [(32, 32, 300), (64, 64, 300), (256, 256, 100),
                                                  (48, 128, 200)])
def test_free_form_mask_coverage(height, width, draws):
  """The documented band: mean hole fraction in [0.15, 0.25] (measured 0.18-0.20 at these
  sizes over 1,000 draws; per-draw std ~0.09, so the standard error of these means is
  <= 0.009); every draw in (0, max_hole_fraction]."""
  fractions = []
  for seed in range(draws):
    mask = degrade.free_form_mask(np.random.default_rng(seed), height, width)
    assert mask.shape == (height, width, 1) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    fractions.append(mask.mean())
  fractions = np.array(fractions)
  assert 0.15 <= fractions.mean() <= 0.25, fractions.mean()
  assert fractions.min() > 0 and fractions.max() <= 0.6
  assert np.percentile(fractions, 95) > 0.25  # large holes do occur


def test_free_form_mask_is_deterministic_and_bounded():
  a = degrade.free_form_mask(np.random.default_rng(7), 64, 64)
  b = degrade.free_form_mask(np.random.default_rng(7), 64, 64)
  c = degrade.free_form_mask(np.random.default_rng(8), 64, 64)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  for seed in range(50):  # a tight cap: components that would exceed it are left out
    mask = degrade.free_form_mask(np.random.default_rng(seed), 32, 32, max_hole_fraction=0.1)
    assert 0 < mask.mean() <= 0.1
  # A cap below every stroke and box: the one-pixel fallback keeps the mask non-empty.
  mask = degrade.free_form_mask(np.random.default_rng(0), 16, 16, max_hole_fraction=0.005)
  assert mask.sum() == 1
  with pytest.raises(UserError):
    degrade.free_form_mask(np.random.default_rng(0), 16, 16, max_hole_fraction=1.0)


# --------------------------------------------------------------------------------------------
# Luma, YCbCr, crops

# PIL's convert('L') is (19595 R + 38470 G + 7471 B + 2^15) >> 16: its weights differ from
# 0.299, 0.587, 0.114 by < 1e-5 each, so at most 255 * sum |dw| ~ 0.003 levels.
PIL_WEIGHT_ERROR = 255 * sum(abs(p / 65536 - w) for p, w in zip((19595, 38470, 7471),
                                                                degrade.LUMA_BT601))


def test_luma_against_formula_and_pil():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  y = degrade.luma(image.astype(np.float32))
  assert y.shape == (40, 50, 1) and y.dtype == np.float32
  expected = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
  np.testing.assert_allclose(y[..., 0], expected, atol=1e-4)
  pil = np.asarray(Image.fromarray(image).convert('L')).astype(np.float64)
  assert np.abs(pil - y[..., 0]).max() <= 0.5 + PIL_WEIGHT_ERROR
  y8 = degrade.luma(image)
  assert y8.dtype == np.uint8 and y8.shape == (40, 50, 1)
  np.testing.assert_array_equal(y8[..., 0], np.floor(expected + 0.5))
  # uint8 equals PIL except where the exact value is within PIL's weight error of a half level.
  near_tie = np.abs(expected - np.floor(expected) - 0.5) <= PIL_WEIGHT_ERROR
  assert ((y8[..., 0] == pil) | near_tie).all()
  assert degrade.luma(np.ones((2, 4, 4, 3))).shape == (2, 4, 4, 1)  # batches too
  with pytest.raises(UserError):
    degrade.luma(np.zeros((4, 4, 1)))


def test_rgb_to_ycbcr_y():
  white = np.full((2, 2, 3), 255, np.uint8)
  black = np.zeros((2, 2, 3), np.uint8)
  np.testing.assert_allclose(degrade.rgb_to_ycbcr_y(white), 235.0, atol=1e-4)
  np.testing.assert_allclose(degrade.rgb_to_ycbcr_y(black), 16.0, atol=1e-4)
  np.testing.assert_allclose(degrade.rgb_to_ycbcr_y(np.ones((1, 1, 3)), data_range=1.0),
                             235 / 255, atol=1e-6)
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
  y = degrade.rgb_to_ycbcr_y(image)
  assert y.shape == (2, 9, 11, 1) and y.dtype == np.float32
  rgb = image / 255.0
  expected = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
  np.testing.assert_allclose(y[..., 0], expected, atol=1e-4)
  # scikit-image's rgb2ycbcr is the same BT.601 studio-range matrix (Y on the 0-255 scale).
  np.testing.assert_allclose(y[0, ..., 0], skimage.color.rgb2ycbcr(rgb[0])[..., 0], atol=1e-4)
  np.testing.assert_allclose(degrade.rgb_to_ycbcr_y(rgb, data_range=1.0), y / 255, atol=1e-6)
  np.testing.assert_array_equal(degrade.rgb_to_ycbcr_y(image, quantize=True)[..., 0],
                                np.floor(expected + 0.5))
  with pytest.raises(UserError):
    degrade.rgb_to_ycbcr_y(rgb)  # float needs data_range


def test_random_crop_is_one_uniform_crop_of_aligned_arrays():
  height, width = 10, 13
  rows, cols = np.mgrid[:height, :width]
  image = np.stack([rows, cols], -1)  # each pixel holds its own coordinates
  mask = (rows * 100 + cols)[..., None].astype(np.float32)
  rng = np.random.default_rng(0)
  corners = []
  for _ in range(2000):
    crop, crop_mask = degrade.random_crop(rng, [image, mask], 4)
    assert crop.shape == (4, 4, 2) and crop_mask.shape == (4, 4, 1)
    top, left = crop[0, 0]
    assert crop_mask[0, 0, 0] == top * 100 + left  # the same window in both
    np.testing.assert_array_equal(crop, image[top:top + 4, left:left + 4])
    corners.append((top, left))
  tops, lefts = np.array(corners).T
  # 7 tops x 10 lefts, each ~1/70 of 2,000 = 28.6 draws (std 5.3): all occur, none dominates.
  counts = np.bincount(tops * 10 + lefts, minlength=70)
  assert counts.min() > 5 and counts.max() < 60
  crop = degrade.random_crop(np.random.default_rng(1), image, (6, 3))
  assert isinstance(crop, np.ndarray) and crop.shape == (6, 3, 2)
  for seed in range(50):
    crop = degrade.random_crop(np.random.default_rng(seed), image, 4, multiple_of=3)
    assert crop[0, 0, 0] % 3 == 0 and crop[0, 0, 1] % 3 == 0
  a = degrade.random_crop(np.random.default_rng(5), image, 4)
  np.testing.assert_array_equal(a, degrade.random_crop(np.random.default_rng(5), image, 4))


def test_random_crop_errors():
  rng = np.random.default_rng(0)
  with pytest.raises(UserError, match='smaller than the 32x32 crop'):
    degrade.random_crop(rng, np.zeros((24, 40, 3)), 32)
  with pytest.raises(UserError, match='aligned'):
    degrade.random_crop(rng, [np.zeros((24, 40, 3)), np.zeros((24, 41, 1))], 8)
