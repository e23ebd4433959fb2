"""ADA: every `bgc` operation keeps shapes, is differentiable and is the identity at p = 0; the
geometric resampling matches NVlabs' procedure (with its data-dependent padding) and the exact
maths of known transforms; the colour operations do what their matrices say; the controller moves
p the right way; bad settings are UserErrors.

Images are small (8–16 px) and keys use the 'unsafe_rbg' PRNG (fast to compile on CPU).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxgen.augment import ada
from jaxgen.errors import UserError

ALL_OPS = ada.GEOMETRIC_OPS + ada.COLOR_OPS


def key(seed):
  return jax.random.key(seed, impl='unsafe_rbg')


def noise_images(shape=(4, 8, 8, 3), seed=0):
  return jnp.asarray(np.random.RandomState(seed).uniform(-1, 1, shape), jnp.float32)


def smooth_images(n=4, size=16):
  yy, xx = np.mgrid[0:size, 0:size] / size
  img = np.stack([np.sin(2 * np.pi * xx * 1.3 + yy), np.cos(2 * np.pi * yy * 0.7) * xx,
                  xx * yy - 0.3], -1)
  return jnp.asarray(np.repeat(img[None], n, 0), jnp.float32)


@functools.lru_cache(maxsize=None)
def augment_fn(config):
  return jax.jit(lambda x, k, p: ada.augment(x, k, p, config))


# ------------------------------------------------------------------------------------------------
# Every operation: shape, identity at p = 0, effect at p = 1, gradient.


@pytest.mark.parametrize('op', ALL_OPS)
def test_each_op_shape_identity_and_gradient(op):
  config = ada.AugmentConfig(**{op: 1.0})
  x = noise_images((8, 8, 8, 3))
  y_probe = noise_images((8, 8, 8, 3), seed=1)

  @jax.jit
  def run(x, rng):
    # One batched trace (cheaper to compile): (x, p=0), (x, p=1), (0, p=1), same random draws.
    augment = jax.vmap(lambda v, p: ada.augment(v, rng, p, config))
    inputs = jnp.stack([x, x, jnp.zeros_like(x)])
    outputs, vjp = jax.vjp(lambda v: augment(v, jnp.array([0.0, 1.0, 1.0])), inputs)
    (grads,) = vjp(jnp.stack([jnp.zeros_like(x), y_probe, jnp.zeros_like(x)]))
    return outputs[0], outputs[1], grads[1], outputs[2]

  off, on, grad, offset = run(x, key(0))
  assert off.shape == on.shape == grad.shape == x.shape and on.dtype == x.dtype
  # p = 0: the geometric path still resamples (pad, sym6 up, sample, sym6 down), an identity up to
  # float32 rounding (~1e-6) because sym6 is orthonormal; the colour matrix is exactly I.
  np.testing.assert_allclose(np.asarray(off), np.asarray(x), atol=1e-5)
  # p = 1: the operation is applied (for 8 images at least one draw is not the identity).
  assert float(jnp.max(jnp.abs(on - x))) > 0.05
  # Differentiable, and the gradient is right: for fixed random draws the pipeline is affine in
  # the images, A x + t, so <A x, y> must equal <x, Aᵀ y> (the vjp).
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0.05
  lhs = float(jnp.sum((on - offset) * y_probe))
  rhs = float(jnp.sum(x * grad))
  assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-3)


def test_full_pipeline_identity_at_p0_and_traced_p():
  traces = []

  @jax.jit
  def run(x, rng, p):
    traces.append(1)
    return ada.augment(x, rng, p, ada.PIPELINES['bgc'])

  x = noise_images((4, 16, 16, 3))
  np.testing.assert_allclose(np.asarray(run(x, key(1), 0.0)), np.asarray(x), atol=1e-5)
  y = run(x, key(1), 0.8)
  assert y.shape == x.shape and float(jnp.max(jnp.abs(y - x))) > 0.1
  assert len(traces) == 1        # p is data: ADA's updates do not recompile the step


def test_grayscale_images():
  x = noise_images((4, 8, 8, 1))
  y = augment_fn(ada.PIPELINES['bgc'])(x, key(2), 1.0)
  assert y.shape == x.shape and float(jnp.max(jnp.abs(y - x))) > 0.05
  with pytest.raises(UserError, match='1 or 3 image channels'):
    ada.augment(noise_images((2, 8, 8, 4)), key(0), 0.5, ada.PIPELINES['bgc'])


# ------------------------------------------------------------------------------------------------
# Geometry.


def test_integer_translation_is_an_exact_shift():
  x = noise_images((8, 16, 16, 3))
  y = np.asarray(augment_fn(ada.AugmentConfig(xint=1))(x, key(3), 1.0))
  x = np.asarray(x)
  shifts = []
  for i in range(8):
    errors = {(dy, dx): np.abs(y[i, 2:-2, 2:-2] - np.roll(x[i], (dy, dx), (0, 1))[2:-2, 2:-2]).max()
              for dy in range(-2, 3) for dx in range(-2, 3)}
    best = min(errors, key=errors.get)
    assert errors[best] < 1e-5        # away from the reflected border, a pure pixel shift
    shifts.append(best)
  assert len(set(shifts)) > 1         # and the shift is random per image


@pytest.mark.parametrize('op, candidates', [
    ('xflip', lambda x: [x, x[:, ::-1]]),
    ('rotate90', lambda x: [np.rot90(x, k) for k in range(4)]),
])
def test_flips_and_quarter_turns(op, candidates):
  # These go through the same sym6 resampling as every geometric op (as in the official code),
  # which is exact for the identity but, sym6 being only nearly symmetric, blurs a mirrored image
  # slightly (the filter's self-convolution peaks at 0.965, not 1). On a smooth image that is
  # ~0.03 of a unit range; a wrong axis or a one-pixel offset would be ~0.3 or more.
  x = smooth_images(n=8)
  y = np.asarray(augment_fn(ada.AugmentConfig(**{op: 1}))(x, key(4), 1.0))
  x = np.asarray(x)
  chosen = []
  for i in range(8):
    errors = [np.abs(y[i] - c).max() for c in candidates(x[i])]
    assert min(errors) < 0.06
    chosen.append(int(np.argmin(errors)))
  assert len(set(chosen)) > 1


def _affine(a, b, c, d, tx, ty):
  return np.array([[a, b, tx], [c, d, ty], [0, 0, 1]], np.float64)


GEOMETRIES = {
    'rotation': _affine(np.cos(0.3), -np.sin(0.3), np.sin(0.3), np.cos(0.3), 1.5, -2.0),
    'anisotropic': _affine(1.2, 0.1, -0.2, 0.8, 0.3, 0.1),
    'mirror': _affine(-1, 0, 0, 1, 0, 0),
    'zoom_out': _affine(1.9, 0.4, -0.3, 1.7, 3.0, 0.0),   # the official margin clips here
}


@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_resampling_reproduces_linear_images(name):
  # sym6 reproduces polynomials, bilinear interpolation reproduces linear functions: a linear
  # ramp f must come out as f(G⁻¹ u) wherever G⁻¹ u lies well inside the image. Tolerance 5e-3
  # for a 0.03/pixel slope = 0.17 pixel: half-pixel convention errors would be 0.015+.
  g_inv = GEOMETRIES[name]
  size = 32
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  ramp = lambda x, y: 0.03 * x - 0.02 * y + 0.1
  x = jnp.asarray(np.stack([ramp(xx, yy)] * 3, -1)[None], jnp.float32)
  y = np.asarray(jax.jit(ada._apply_geometric)(x, jnp.asarray(g_inv[None], jnp.float32)))
  centred = np.stack([xx - (size - 1) / 2, yy - (size - 1) / 2, np.ones_like(xx)], -1)
  src = centred @ g_inv.T + np.array([(size - 1) / 2, (size - 1) / 2, 0])
  inside = np.all((src[..., :2] > 6) & (src[..., :2] < size - 7), axis=-1)
  assert inside.sum() > 50
  want = ramp(src[..., 0], src[..., 1])
  np.testing.assert_allclose(y[0, ..., 0][inside], want[inside], atol=5e-3)


def _upfirdn2d_numpy(x, f, up=1, down=1, pad=(0, 0, 0, 0), flip=False, gain=1.0):
  """Literal upfirdn2d: zero insertion, pad (x0, x1, y0, y1), 2-D convolution, decimation."""
  px0, px1, py0, py1 = pad
  f2 = np.outer(f, f) * gain
  n, h, w, c = x.shape
  xu = np.zeros((n, h * up, w * up, c))
  xu[:, ::up, ::up] = x
  xu = np.pad(xu, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
  xu = xu[:, max(-py0, 0):xu.shape[1] - max(-py1, 0), max(-px0, 0):xu.shape[2] - max(-px1, 0)]
  kernel = f2[::-1, ::-1] if flip else f2
  out = np.stack([np.stack([scipy.signal.convolve2d(xu[i, ..., j], kernel, mode='valid')
                            for j in range(c)], -1) for i in range(n)])
  return out[:, ::down, ::down]


def official_geometric_reference(images, g_inv):
  """NVlabs' geometric execution, step by step in float64: the data-dependent reflect margin,
  sym6 up-sampling, `affine_grid` + `grid_sample` (bilinear, zeros, align_corners=False) in
  normalised coordinates, sym6 down-sampling with cropping."""
  n, h, w, c = images.shape
  hz = np.asarray(ada.SYM6) / np.sum(ada.SYM6)
  hz_pad = len(hz) // 4
  t2 = lambda tx, ty: _affine(1, 0, 0, 1, tx, ty)
  s2 = lambda sx, sy: _affine(sx, 0, 0, sy, 0, 0)
  cx, cy = (w - 1) / 2, (h - 1) / 2
  corners = np.array([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]]).T
  cp = g_inv @ corners                                           # [N, 3, 4]
  margin = cp[:, :2, :].transpose(1, 0, 2).reshape(2, -1)
  margin = np.concatenate([-margin, margin]).max(axis=1)         # x0, y0, x1, y1
  margin = margin + np.array([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2)
  margin = np.minimum(np.maximum(margin, 0), [w - 1, h - 1] * 2)
  mx0, my0, mx1, my1 = np.ceil(margin).astype(int)
  images = np.pad(images, ((0, 0), (my0, my1), (mx0, mx1), (0, 0)), mode='reflect')
  g_inv = t2((mx0 - mx1) / 2, (my0 - my1) / 2) @ g_inv
  images = _upfirdn2d_numpy(images, hz, up=2, pad=(6, 5, 6, 5), gain=4)
  g_inv = s2(2, 2) @ g_inv @ s2(0.5, 0.5)
  g_inv = t2(-0.5, -0.5) @ g_inv @ t2(0.5, 0.5)
  out_h, out_w = (h + hz_pad * 2) * 2, (w + hz_pad * 2) * 2
  in_h, in_w = images.shape[1:3]
  theta = s2(2 / in_w, 2 / in_h) @ g_inv @ s2(out_w / 2, out_h / 2)
  gx, gy = np.meshgrid((2 * np.arange(out_w) + 1) / out_w - 1,
                       (2 * np.arange(out_h) + 1) / out_h - 1)
  out = np.zeros((n, out_h, out_w, c))
  for b in range(n):
    sx = theta[b, 0, 0] * gx + theta[b, 0, 1] * gy + theta[b, 0, 2]
    sy = theta[b, 1, 0] * gx + theta[b, 1, 1] * gy + theta[b, 1, 2]
    ix, iy = ((sx + 1) * in_w - 1) / 2, ((sy + 1) * in_h - 1) / 2
    x0, y0 = np.floor(ix).astype(int), np.floor(iy).astype(int)
    for dy in (0, 1):
      for dx in (0, 1):
        wgt = (1 - abs(ix - (x0 + dx))) * (1 - abs(iy - (y0 + dy)))
        ok = (x0 + dx >= 0) & (x0 + dx < in_w) & (y0 + dy >= 0) & (y0 + dy < in_h)
        vals = images[b, np.clip(y0 + dy, 0, in_h - 1), np.clip(x0 + dx, 0, in_w - 1)]
        out[b] += vals * (wgt * ok)[..., None]
  return _upfirdn2d_numpy(out, hz, down=2, pad=(-1, -1, -1, -1), flip=True)


def test_geometric_execution_matches_official_procedure():
  # Our static size − 1 reflect padding against the official per-batch margin: same samples.
  g_inv = np.stack([GEOMETRIES[name] for name in sorted(GEOMETRIES)])
  x = np.asarray(smooth_images(n=len(g_inv))) + np.random.RandomState(5).uniform(
      -0.3, 0.3, (len(g_inv), 16, 16, 3))
  apply = jax.jit(ada._apply_geometric)
  got = apply(jnp.asarray(x, jnp.float32), jnp.asarray(g_inv, jnp.float32))
  # Compiled and op-by-op execution fetch the same pixels (no fusion-dependent rounding).
  eager = ada._apply_geometric(jnp.asarray(x, jnp.float32), jnp.asarray(g_inv, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), np.asarray(eager), atol=1e-5)
  want = np.concatenate([official_geometric_reference(x[i:i + 1], g_inv[i:i + 1])
                         for i in range(len(g_inv))])
  assert got.shape == want.shape
  # Our sampling positions are 16.16 fixed point (see _apply_geometric): within ~3e-4 pixel here,
  # so values within ~3e-4 of float64 for these images (gradients below 1 per pixel).
  np.testing.assert_allclose(np.asarray(got), want, atol=5e-4)


def test_constant_image_stays_constant_under_rotation_and_translation():
  # The filters keep DC (gains 4 up, 1 down); rotation + small translation never sample past the
  # size − 1 reflect padding, so a constant image is unchanged everywhere.
  x = jnp.full((8, 16, 16, 3), 0.37, jnp.float32)
  y = augment_fn(ada.AugmentConfig(rotate=1, xfrac=1))(x, key(6), 1.0)
  np.testing.assert_allclose(np.asarray(y), 0.37, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Colour.


def _luma_chroma(img):
  mean = np.mean(img, axis=-1, keepdims=True)
  return mean, img - mean


def test_color_operations_follow_their_matrices():
  x = noise_images((8, 8, 8, 3), seed=7)
  run = lambda op: np.asarray(augment_fn(ada.AugmentConfig(**{op: 1}))(x, key(8), 1.0))
  x = np.asarray(x)
  x_luma, x_chroma = _luma_chroma(x)

  shift = run('brightness') - x                     # + b, the same for every pixel and channel
  np.testing.assert_allclose(shift - shift[:, :1, :1, :1], 0, atol=1e-5)
  assert np.std(shift[:, 0, 0, 0]) > 0.01

  ratio = run('contrast') / x                       # × c per image
  np.testing.assert_allclose(ratio - ratio[:, :1, :1, :1], 0, atol=1e-3)
  assert np.std(ratio[:, 0, 0, 0]) > 0.01

  y_luma, y_chroma = _luma_chroma(run('lumaflip'))  # Householder reflection of the luma axis
  flipped = np.abs(y_luma + x_luma).max(axis=(1, 2, 3)) < 1e-5
  kept = np.abs(y_luma - x_luma).max(axis=(1, 2, 3)) < 1e-5
  assert np.all(flipped | kept) and flipped.any()
  np.testing.assert_allclose(y_chroma, x_chroma, atol=1e-5)

  y_luma, y_chroma = _luma_chroma(run('hue'))       # rotation about the luma axis
  np.testing.assert_allclose(y_luma, x_luma, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(y_chroma, axis=-1), np.linalg.norm(x_chroma, axis=-1),
                             atol=1e-5)
  assert np.abs(y_chroma - x_chroma).max() > 0.05

  y_luma, y_chroma = _luma_chroma(run('saturation'))  # chroma × s per image
  np.testing.assert_allclose(y_luma, x_luma, atol=1e-5)
  s = np.sum(y_chroma * x_chroma, axis=(1, 2, 3)) / np.sum(x_chroma ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(y_chroma, s[:, None, None, None] * x_chroma, atol=1e-4)
  assert np.std(s) > 0.01


# ------------------------------------------------------------------------------------------------
# The adaptive controller and the settings.


def test_ada_p_moves_in_the_right_direction():
  step = 64 * 4 / (500 * 1000)      # batch · interval / (speed_kimg · 1000)
  # D too confident on reals (E[sign] = 0.8 > 0.6): more augmentation.
  p = ada.ada_update(0.2, sign_sum=0.8 * 256, count=256, batch_size=64)
  assert float(p) == pytest.approx(0.2 + step)
  # E[sign] = 0.2 < 0.6: less augmentation, never below 0.
  assert float(ada.ada_update(0.2, 0.2 * 256, 256, 64)) == pytest.approx(0.2 - step)
  assert float(ada.ada_update(0.0, -100.0, 256, 64)) == 0.0
  # Exactly on target: unchanged. Other speeds and intervals scale the step.
  assert float(ada.ada_update(0.3, 0.6 * 10, 10, 64)) == pytest.approx(0.3)
  assert float(ada.ada_update(0.3, 10.0, 10, 32, target=0.6, interval=8, speed_kimg=100)) == \
      pytest.approx(0.3 + 32 * 8 / 100_000)
  # Over many updates with an overfitting D, p climbs at the configured speed.
  p = jnp.float32(0.0)
  update = jax.jit(lambda p: ada.ada_update(p, 0.9, 1, 64))
  for _ in range(100):
    p = update(p)
  assert float(p) == pytest.approx(100 * step, rel=1e-4)


def test_ada_settings_validation():
  for target in (0.0, 1.0, 1.5, -0.1):
    with pytest.raises(UserError, match=r'ADA target .* outside \(0, 1\)'):
      ada.AdaSettings(mode='ada', target=target)
  with pytest.raises(UserError, match='mode'):
    ada.AdaSettings(mode='adaptive')
  with pytest.raises(UserError, match='pipeline'):
    ada.AdaSettings(pipeline='bgcfnc')
  with pytest.raises(UserError, match=r'p=2'):
    ada.AdaSettings(mode='fixed', p=2.0)
  fixed = ada.AdaSettings(mode='fixed', p=0.3)
  assert fixed.initial_p == 0.3 and not fixed.adaptive
  noaug = ada.AdaSettings(mode='noaug', target=5.0)     # the target is irrelevant without ADA
  x = noise_images()
  assert noaug(x, key(0), 1.0) is x and noaug.initial_p == 0.0
  assert ada.AdaSettings().adaptive and ada.AdaSettings().initial_p == 0.0
