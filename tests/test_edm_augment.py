"""EDM's non-leaking augmentation: identity and zero labels at p = 0; flips, quarter turns,
integer shifts and exact-grid geometric transforms against direct NumPy; labels zero exactly
where a transform did not fire; and the whole pipeline against NVlabs' PyTorch AugmentPipe, run
once on the same random draws (tests/data/edm_augment.npz, README_edm_augment.md).

Images are tiny (8–20 px); keys use the 'unsafe_rbg' PRNG (fast to compile on CPU).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.augment import edm
from jaxgen.augment.ada import SYM6
from jaxgen.errors import UserError

FIXTURE = os.path.join(os.path.dirname(__file__), 'data', 'edm_augment.npz')
EVERYTHING = dict(xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1, rotate_frac=1,
                  aniso=1, translate_frac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
                  saturation=1)


def key(seed):
  return jax.random.key(seed, impl='unsafe_rbg')


def noise_images(shape, seed=0):
  return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def jitted_apply(pipe):
  return jax.jit(pipe.apply)


def forced_draws(pipe, n, **values):
  """Draws under which every enabled transform fires (gates 0) with the given values for the
  other draws ('transform.draw' → array), zeros for the rest."""
  draws = {}
  for name, kind, rows in pipe.draw_specs():
    shape = (2, n) if rows == 2 else (n,)
    dtype = np.int32 if isinstance(kind, int) else np.float32
    draws[name] = np.broadcast_to(np.asarray(values.get(name, 0), dtype), shape)
  return draws


def test_cifar10_pipe_is_the_official_recipe():
  pipe = edm.CIFAR10_PIPE
  assert (pipe.p, pipe.xflip, pipe.yflip, pipe.scale, pipe.rotate_frac, pipe.aniso,
          pipe.translate_frac) == (0.12, 1e8, 1, 1, 1, 1, 1)
  assert (pipe.rotate_int, pipe.translate_int, pipe.brightness, pipe.hue) == (0, 0, 0, 0)
  assert pipe.label_dim == 9                             # the CIFAR-10 networks' augment_dim
  assert edm.AugmentPipe(**EVERYTHING).label_dim == 19
  assert edm.AugmentPipe().label_dim == 0


def test_p0_is_the_identity_with_zero_labels():
  pipe = edm.AugmentPipe(p=0.0, **EVERYTHING)
  x = noise_images((4, 8, 8, 3))
  y, labels = jax.jit(pipe)(x, key(0))
  assert y.shape == x.shape and labels.shape == (4, 19) and labels.dtype == jnp.float32
  np.testing.assert_array_equal(labels, 0.0)
  # The geometric stage still runs (up-sampling, identity resampling, down-sampling): sym6 is
  # orthonormal, so down(up(x)) = x exactly in real arithmetic; float32 rounding of 2 × 2
  # 12-tap sums of values ≤ 1 stays below 1e-5.
  np.testing.assert_allclose(y, x, atol=1e-5)


def test_xflip_fires_per_image_as_its_label_says():
  pipe = edm.AugmentPipe(p=1.0, xflip=1)
  x = noise_images((8, 6, 6, 3))
  y, labels = jax.jit(pipe)(x, key(3))
  flipped = np.asarray(labels[:, 0]) == 1
  assert 0 < flipped.sum() < 8, 'this key should flip some images and not others'
  np.testing.assert_array_equal(y[flipped], x[flipped][:, :, ::-1])
  np.testing.assert_array_equal(y[~flipped], x[~flipped])
  np.testing.assert_array_equal(labels[~flipped], 0.0)


def test_forced_flips_and_quarter_turns():
  x = noise_images((4, 6, 6, 3))
  pipe = edm.AugmentPipe(p=1.0, xflip=1, yflip=1)
  w = np.array([0, 1, 0, 1], np.int32)
  v = np.array([0, 0, 1, 1], np.int32)
  y, labels = jitted_apply(pipe)(x, forced_draws(pipe, 4, **{'xflip.w': w, 'yflip.w': v}))
  expected = [x[0], x[1, :, ::-1], x[2, ::-1], x[3, ::-1, ::-1]]
  np.testing.assert_array_equal(y, np.stack(expected))
  np.testing.assert_array_equal(labels, np.stack([w, v], 1))

  pipe = edm.AugmentPipe(p=1.0, rotate_int=1)
  w = np.arange(4, dtype=np.int32)
  y, labels = jitted_apply(pipe)(x, forced_draws(pipe, 4, **{'rotate_int.w': w}))
  # w quarter turns counter-clockwise (as displayed, y down).
  np.testing.assert_array_equal(y, np.stack([np.rot90(x[k], k) for k in range(4)]))
  np.testing.assert_array_equal(labels, [[0, 0], [1, 0], [1, 1], [0, 1]])


def test_forced_integer_translation_reflects_at_the_borders():
  pipe = edm.AugmentPipe(p=1.0, translate_int=1, translate_int_max=0.25)
  x = noise_images((2, 8, 8, 1))
  # tx = round((2u − 1) · W · max): u = 0.75 → 1 px, u = 0.25 → −1, u = 0.9 → round(1.6) = 2.
  u = np.array([[0.75, 0.9], [0.25, 0.9]], np.float32)       # [xy, N]
  y, labels = jitted_apply(pipe)(x, forced_draws(pipe, 2, **{'translate_int.w': u}))
  tx, ty = np.array([1, 2]), np.array([-1, 2])
  for i in range(2):
    padded = np.pad(x[i], ((4, 4), (4, 4), (0, 0)), mode='reflect')
    # The official indexing: out[y, x] = in[y + ty, x − tx] (content moves right by tx, up
    # by ty), reflected at the borders without repeating the edge.
    expected = padded[4 + ty[i]:4 + ty[i] + 8, 4 - tx[i]:4 - tx[i] + 8]
    np.testing.assert_array_equal(y[i], expected)
  np.testing.assert_allclose(labels, np.stack([tx, ty], 1) / 2.0, atol=1e-7)


def test_geometric_transforms_on_the_pixel_grid():
  """Fractional translations by whole pixels land on the 2× grid exactly, so the resampling
  reduces to the up/down-sampling pair (perfect reconstruction); ±90° rotations too, but the
  sym6 filter is not symmetric, so they equal np.rot90 only on smooth images."""
  pipe = edm.AugmentPipe(p=1.0, rotate_frac=1, translate_frac=1)
  noise = noise_images((2, 8, 8, 3), seed=1)
  yy, xx = np.mgrid[0:8, 0:8] / 8
  smooth = np.stack([np.sin(2 * np.pi * (0.4 * xx + 0.15 * yy)), xx - 0.5, 0.8 * xx * yy - 0.2],
                    -1).astype(np.float32)
  x = np.concatenate([noise, np.stack([smooth, smooth])])
  # Shift = w · W · translate_frac_std = w · 1 px; θ = (2u − 1)·π.
  shift = np.array([[2.0, -2.0, 0, 0], [0.0, 1.0, 0, 0]], np.float32)   # [xy, N]
  u = np.array([0.5, 0.5, 0.75, 0.25], np.float32)                     # θ = 0, 0, π/2, −π/2
  y, labels = jitted_apply(pipe)(x, forced_draws(pipe, 4, **{'translate_frac.w': shift,
                                                             'rotate_frac.w': u}))
  for i, (tx, ty) in enumerate(shift[:, :2].T.astype(int)):
    padded = np.pad(x[i], ((8, 8), (8, 8), (0, 0)), mode='reflect')
    # G⁻¹ = translate(−t): out(x, y) = in(x − tx, y − ty), reflected beyond the border;
    # float32 rounding through the 12-tap up/down-sampling sums (as at p = 0).
    np.testing.assert_allclose(y[i], padded[8 - ty:16 - ty, 8 - tx:16 - tx], atol=1e-5)
  # +π/2 turns the content counter-clockwise as displayed (y down). Measured: 0.035 from
  # np.rot90 on this smooth image (0.2 on white noise); the other direction misses by 0.87.
  np.testing.assert_allclose(y[2], np.rot90(smooth, 1), atol=0.06)
  np.testing.assert_allclose(y[3], np.rot90(smooth, -1), atol=0.06)
  np.testing.assert_allclose(labels, [[0, 0, 2, 0], [0, 0, -2, 1], [-1, 1, 0, 0],
                                      [-1, -1, 0, 0]], atol=1e-6)


def test_labels_zero_where_nothing_fired_and_outputs_sane():
  pipe = edm.AugmentPipe(p=0.5, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
                         translate_frac=1)
  x = noise_images((32, 8, 8, 3))
  draws, (y, labels) = jax.jit(lambda k: (pipe.draw(k, 32), pipe(x, k)))(key(7))
  draws, y, labels = jax.tree.map(np.asarray, (draws, y, labels))
  assert y.shape == x.shape and y.dtype == np.float32 and labels.shape == (32, 9)
  fired = {name: draws[f'{name}.gate'] < getattr(pipe, name) * pipe.p
           for name in ('xflip', 'yflip', 'scale', 'rotate_frac', 'aniso', 'translate_frac')}
  assert fired['xflip'].all()                        # 1e8 · p ≥ 1: every image tosses the coin
  assert 0 < fired['scale'].sum() < 32 and 0 < fired['translate_frac'].sum() < 32
  columns = {'xflip': [0], 'yflip': [1], 'scale': [2], 'rotate_frac': [3, 4], 'aniso': [5, 6],
             'translate_frac': [7, 8]}
  for name, cols in columns.items():
    block = labels[:, cols]
    np.testing.assert_array_equal(block[~fired[name]], 0.0, err_msg=name)
    if name in ('xflip', 'yflip'):
      np.testing.assert_array_equal(block[fired[name], 0], draws[f'{name}.w'][fired[name]])
    else:
      # Continuous draws: a fired transform has non-zero labels (with probability 1).
      assert (np.abs(block[fired[name]]).max(axis=1) > 0).all(), name
  # An image no geometric transform fired on is its flips of the input (up to the
  # perfect-reconstruction rounding above); the others change.
  still = ~(fired['scale'] | fired['rotate_frac'] | fired['aniso'] | fired['translate_frac'])
  assert 0 < still.sum() < 32
  flipped = np.where(labels[:, 0, None, None, None] == 1, x[:, :, ::-1], x)
  flipped = np.where(labels[:, 1, None, None, None] == 1, flipped[:, ::-1], flipped)
  np.testing.assert_allclose(y[still], flipped[still], atol=1e-5)
  assert (np.abs(y[~still] - flipped[~still]).max(axis=(1, 2, 3)) > 1e-2).all()

  assert np.isfinite(y).all() and np.isfinite(labels).all()
  # |out| ≤ |in| · (‖up-sampling phase‖₁ · ‖bilinear‖₁ · ‖down-sampling‖₁)², one factor per axis.
  h = np.abs(np.asarray(SYM6))
  assert np.abs(y).max() <= (max(h[0::2].sum(), h[1::2].sum()) * 1.0 * h.sum()) ** 2
  # Resampling smooths white noise a little; its rms stays near the input's (0.577).
  assert 0.3 < np.sqrt(np.mean(np.square(y))) < 0.7


def test_bad_settings_are_user_errors():
  with pytest.raises(UserError, match='p='):
    edm.AugmentPipe(p=1.5)
  with pytest.raises(UserError, match='scale'):
    edm.AugmentPipe(scale=-1)
  with pytest.raises(UserError, match='channels'):
    edm.AugmentPipe(hue=1)(jnp.zeros((1, 4, 4, 2)), key(0))
  with pytest.raises(UserError, match='square'):
    edm.AugmentPipe(rotate_int=1)(jnp.zeros((1, 4, 6, 3)), key(0))


# ------------------------------------------------------------------------------------------------
# Parity with the official PyTorch code on the same random numbers.

_TORCH_KIND = {'uniform': 'rand', 'normal': 'randn'}


def _fixture_cases():
  with np.load(FIXTURE) as data:
    return sorted({name.split('/')[0] for name in data.files if '/' in name})


@pytest.mark.parametrize('case', _fixture_cases())
def test_matches_official_augment_pipe(case):
  with np.load(FIXTURE) as data:
    data = dict(data)
  pipe = edm.AugmentPipe(**json.loads(str(data[f'{case}/settings'])))
  specs = pipe.draw_specs()
  # The draws, in order, must be those the official code made (same kinds and sizes).
  assert [_TORCH_KIND.get(kind, 'randint') for _, kind, _ in specs] == list(
      data[f'{case}/draw_kinds'])
  images = data[f'{case}/images']
  n = images.shape[0]
  draws = {}
  for i, (name, kind, rows) in enumerate(specs):
    value = data[f'{case}/draw{i:02d}']
    assert value.size == rows * n, name
    draws[name] = value.reshape((2, n) if rows == 2 else (n,))
  y, labels = jitted_apply(pipe)(images, draws)
  # Labels: the same float32 maths (cos, sin, divisions) in a different library: ≤ a few ulp.
  np.testing.assert_allclose(labels, data[f'{case}/labels'], atol=1e-6)
  # Images: the sampling coordinates (up to ~100 px on the 2× grid) come from a different
  # sequence of float32 operations than affine_grid's, ≈ 1e-5 px apart; times white noise's
  # slopes (≤ 2 per px) and the 12-tap sums: a few 1e-5 (measured: ≤ 1.2e-5 over 12 seeds).
  # A fixed large reflect pad instead of the batch's margin misses 'gray_rect' by 2e-3.
  np.testing.assert_allclose(y, data[f'{case}/output'], atol=3e-5)
