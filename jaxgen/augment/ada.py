"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"): the differentiable `bgc` pipeline and the adaptive-p controller.

`augment(images, rng, p, config)` applies, to every image independently, each enabled operation
with probability (multiplier · p) — the maths of NVlabs' `training/augment.py`:

  blit   x-flip, 90° rotations, integer translation (±12.5 % of the size);
  geom   isotropic scaling (log2 σ 0.2), arbitrary rotation (applied before and after the
         anisotropic scaling, each with 1 − √(1 − p), so that P(any rotation) = p), anisotropic
         scaling (log2 σ 0.2), fractional translation (σ 12.5 %);
  color  brightness (σ 0.2), contrast (log2 σ 0.5), luma flip, hue rotation, saturation
         (log2 σ 1).

The geometric operations compose into one inverse affine matrix per image, executed once: reflect
padding, 2× up-sampling with the orthogonal `sym6` wavelet low-pass filter, bilinear resampling,
2× down-sampling with the same filter. The colour operations compose into one 4×4 matrix per image.
Everything is differentiable with respect to the images, so D's gradients reach G through it.
With p = 0 every operation is the identity and the output equals the input up to float rounding.

Shapes are static under `jax.jit`: where the official code pads by a data-dependent margin
clipped to [0, size − 1], we always pad by size − 1, which gives the same samples (a larger
reflect pad only adds pixels that are never read). Images are [N, H, W, C], C = 1 or 3 for the
colour operations, values around [−1, 1].

`ada_update` is the controller: every `interval` steps, p moves by batch·interval/(speed_kimg·1000)
towards more augmentation when E[sign(D(real))] exceeds the target (D overfits), less otherwise.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError
from jaxgen.ops.upfirdn2d import setup_filter, upfirdn1d_matrix

# Low-pass decomposition filter of the Symlet-6 wavelet (orthonormal: Σh = √2, Σh² = 1).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)

GEOMETRIC_OPS = ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac')
COLOR_OPS = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Probability multipliers (0 = off, 1 = with probability p) and ranges of each operation."""
  xflip: float = 0.0
  rotate90: float = 0.0
  xint: float = 0.0
  scale: float = 0.0
  rotate: float = 0.0
  aniso: float = 0.0
  xfrac: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  lumaflip: float = 0.0
  hue: float = 0.0
  saturation: float = 0.0
  xint_max: float = 0.125        # integer translation range, fraction of the image size
  scale_std: float = 0.2         # log2 stddev of isotropic scaling
  rotate_max: float = 1.0        # rotation range, 1 = full circle
  aniso_std: float = 0.2         # log2 stddev of anisotropic scaling
  xfrac_std: float = 0.125       # stddev of fractional translation, fraction of the image size
  brightness_std: float = 0.2    # stddev of the brightness offset
  contrast_std: float = 0.5      # log2 stddev of contrast
  hue_max: float = 1.0           # hue rotation range, 1 = full circle
  saturation_std: float = 1.0    # log2 stddev of saturation

  @property
  def has_geometric(self):
    return any(getattr(self, op) > 0 for op in GEOMETRIC_OPS)

  @property
  def has_color(self):
    return any(getattr(self, op) > 0 for op in COLOR_OPS)


PIPELINES = {
    'blit': AugmentConfig(xflip=1, rotate90=1, xint=1),
    'geom': AugmentConfig(scale=1, rotate=1, aniso=1, xfrac=1),
    'color': AugmentConfig(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'bg': AugmentConfig(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    'bgc': AugmentConfig(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                         brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
}
ADA_MODES = ('ada', 'fixed', 'noaug')


@dataclasses.dataclass(frozen=True)
class AdaSettings:
  """How D's inputs are augmented; validated on construction (UserError on bad values).

  mode: 'ada' (p starts at `p` and adapts towards `target`), 'fixed' (p stays `p`) or 'noaug'.
  target: ADA's target for E[sign(D(real))], in (0, 1); 0.6 in the paper.
  interval: D steps between p updates.
  speed_kimg: thousands of images for p to move by 1 (500; the official code uses 100 when
    fine-tuning from a pretrained network).
  pipeline: a name in `PIPELINES`.
  """
  mode: str = 'ada'
  p: float = 0.0
  target: float = 0.6
  interval: int = 4
  speed_kimg: float = 500.0
  pipeline: str = 'bgc'

  def __post_init__(self):
    if self.mode not in ADA_MODES:
      raise UserError(f'augmentation mode {self.mode!r} is not one of {ADA_MODES}; pick one.')
    if self.mode == 'ada' and not 0 < self.target < 1:
      raise UserError(f'ADA target {self.target} is outside (0, 1); set it to a fraction such as '
                      '0.6 (the paper\'s value).')
    if not 0 <= self.p <= 1:
      raise UserError(f'augmentation probability p={self.p} is outside [0, 1]; set it in [0, 1].')
    if self.mode != 'noaug' and self.pipeline not in PIPELINES:
      raise UserError(f'augmentation pipeline {self.pipeline!r} is unknown; use one of '
                      f'{sorted(PIPELINES)}.')
    if self.interval < 1 or self.speed_kimg <= 0:
      raise UserError(f'ADA interval ({self.interval}) must be >= 1 and speed_kimg '
                      f'({self.speed_kimg}) > 0.')

  @property
  def initial_p(self):
    return 0.0 if self.mode == 'noaug' else float(self.p)

  @property
  def adaptive(self):
    return self.mode == 'ada'

  def __call__(self, images, rng, p):
    """Augments images [N, H, W, C] with probability p (identity for 'noaug')."""
    if self.mode == 'noaug':
      return images
    return augment(images, rng, p, PIPELINES[self.pipeline])


def ada_update(p, sign_sum, count, batch_size, target=0.6, interval=4, speed_kimg=500.0):
  """One step of the ADA controller.

  Args:
    p: current augmentation probability (scalar).
    sign_sum: Σ sign(D(real)) over the real logits seen since the last update (the official loop
      counts those of both the main and the R1 D passes).
    count: how many logits went into `sign_sum`.
    batch_size: images per training step.
    target, interval, speed_kimg: as `AdaSettings`.

  Returns:
    The new p = max(p + sign(sign_sum/count − target) · batch·interval/(speed_kimg·1000), 0),
    float32.
  """
  r_t = sign_sum / jnp.maximum(count, 1)
  step = batch_size * interval / (speed_kimg * 1000)
  return jnp.maximum(jnp.asarray(p, jnp.float32) + jnp.sign(r_t - target) * step, 0.0)


# ------------------------------------------------------------------------------------------------
# Homogeneous transformation matrices, batched: each argument is [N] (or a scalar).


def _matrix(*rows):
  n = max(jnp.shape(v)[0] if jnp.ndim(v) else 1 for row in rows for v in row)
  entry = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,))
  return jnp.stack([jnp.stack([entry(v) for v in row], axis=-1) for row in rows], axis=-2)


def _translate2d(tx, ty):
  return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1])


def _scale2d(sx, sy):
  return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1])


def _rotate2d(theta):
  c, s = jnp.cos(theta), jnp.sin(theta)
  return _matrix([c, -s, 0], [s, c, 0], [0, 0, 1])


def _translate3d(tx, ty, tz):
  return _matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1])


def _scale3d(sx, sy, sz):
  return _matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1])


def _rotate3d(v, theta):
  """Rotation by theta [N] around the unit axis v (3 floats)."""
  vx, vy, vz = v
  s, c = jnp.sin(theta), jnp.cos(theta)
  cc = 1 - c
  return _matrix([vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                 [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                 [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                 [0, 0, 0, 1])


class _Draws:
  """Hands out rows of one block of uniforms and one of normals (one RNG call each)."""

  def __init__(self, rng, batch_size, num_uniform=24, num_normal=8):
    uniform_key, normal_key = jax.random.split(rng)
    self._uniform = jax.random.uniform(uniform_key, (num_uniform, batch_size))
    self._normal = jax.random.normal(normal_key, (num_normal, batch_size))
    self.batch_size = batch_size
    self._next_uniform = 0
    self._next_normal = 0

  def uniform(self):
    row = self._uniform[self._next_uniform]
    self._next_uniform += 1
    return row

  def normal(self):
    row = self._normal[self._next_normal]
    self._next_normal += 1
    return row


# ------------------------------------------------------------------------------------------------
# The pipeline.


def _geometric_matrix(draws, p, cfg, height, width):
  """Inverse transform G⁻¹ [N, 3, 3]: output pixel (centred coordinates) → input pixel."""
  n = draws.batch_size
  g_inv = jnp.broadcast_to(jnp.eye(3), (n, 3, 3))
  if cfg.xflip > 0:
    i = jnp.floor(draws.uniform() * 2)
    i = jnp.where(draws.uniform() < cfg.xflip * p, i, 0.0)
    g_inv = g_inv @ _scale2d(1 - 2 * i, 1)
  if cfg.rotate90 > 0:
    i = jnp.floor(draws.uniform() * 4)
    i = jnp.where(draws.uniform() < cfg.rotate90 * p, i, 0.0)
    g_inv = g_inv @ _rotate2d(np.pi / 2 * i)
  if cfg.xint > 0:
    tx = (draws.uniform() * 2 - 1) * cfg.xint_max
    ty = (draws.uniform() * 2 - 1) * cfg.xint_max
    apply = draws.uniform() < cfg.xint * p
    tx, ty = jnp.where(apply, tx, 0.0), jnp.where(apply, ty, 0.0)
    g_inv = g_inv @ _translate2d(-jnp.round(tx * width), -jnp.round(ty * height))
  if cfg.scale > 0:
    s = jnp.exp2(draws.normal() * cfg.scale_std)
    s = jnp.where(draws.uniform() < cfg.scale * p, s, 1.0)
    g_inv = g_inv @ _scale2d(1 / s, 1 / s)
  # Rotation before and after the anisotropic scaling, each with p_rot: P(pre or post) = p.
  p_rot = 1 - jnp.sqrt(jnp.clip(1 - cfg.rotate * p, 0, 1))
  if cfg.rotate > 0:
    theta = (draws.uniform() * 2 - 1) * np.pi * cfg.rotate_max
    theta = jnp.where(draws.uniform() < p_rot, theta, 0.0)
    g_inv = g_inv @ _rotate2d(theta)
  if cfg.aniso > 0:
    s = jnp.exp2(draws.normal() * cfg.aniso_std)
    s = jnp.where(draws.uniform() < cfg.aniso * p, s, 1.0)
    g_inv = g_inv @ _scale2d(1 / s, s)
  if cfg.rotate > 0:
    theta = (draws.uniform() * 2 - 1) * np.pi * cfg.rotate_max
    theta = jnp.where(draws.uniform() < p_rot, theta, 0.0)
    g_inv = g_inv @ _rotate2d(theta)
  if cfg.xfrac > 0:
    tx = draws.normal() * cfg.xfrac_std
    ty = draws.normal() * cfg.xfrac_std
    apply = draws.uniform() < cfg.xfrac * p
    tx, ty = jnp.where(apply, tx, 0.0), jnp.where(apply, ty, 0.0)
    g_inv = g_inv @ _translate2d(-tx * width, -ty * height)
  return g_inv


_FRACTION_BITS = 16  # sampling positions are 16.16 fixed-point numbers


def _resample(images, f, up=1, down=1, padding=(0, 0), flip_filter=False, gain=1.0):
  """Separable `upfirdn2d` of images [N, H, W, C] as two small matmuls (one per axis).

  Same linear map as `upsample2d`/`downsample2d` with the 12-tap sym6 filter; a depthwise
  convolution or tap-by-tap slices of a long filter on these small, 3-channel images are 10–20×
  slower (the slices' transpose especially, which R1 and every G step go through).
  """
  _, height, width, _ = images.shape
  rows = upfirdn1d_matrix(height, f, up, down, padding, flip_filter, gain)
  cols = upfirdn1d_matrix(width, f, up, down, padding, flip_filter, gain)
  hi = jax.lax.Precision.HIGHEST
  images = jnp.einsum('oh,nhwc->nowc', rows, images, precision=hi)
  return jnp.einsum('ow,nhwc->nhoc', cols, images, precision=hi)


def _bilinear_sample(images, x_fixed, y_fixed):
  """Samples images [N, Hi, Wi, C] at fixed-point pixel coordinates (int32 [N, Ho, Wo], units of
  2⁻¹⁶ pixel), bilinearly, with zeros outside the image."""
  unit = 1 << _FRACTION_BITS
  x0, y0 = x_fixed >> _FRACTION_BITS, y_fixed >> _FRACTION_BITS          # floor
  fx = (x_fixed & (unit - 1)).astype(jnp.float32) / unit
  fy = (y_fixed & (unit - 1)).astype(jnp.float32) / unit
  return bilinear_gather(images, x0, y0, fx, fy)


def bilinear_gather(images, x0, y0, fx, fy):
  """Σ of the four neighbours (x0 + {0, 1}, y0 + {0, 1}) of images [N, Hi, Wi, C] weighted
  bilinearly by the fractions fx, fy [N, Ho, Wo], neighbours outside the image counting as zero:
  [N, Ho, Wo, C]. The four neighbours in one gather (its gradient is one scatter-add)."""
  n, in_h, in_w, c = images.shape
  xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=1)                       # [N, 4, Ho, Wo]
  ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=1)
  weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
  inside = (xs >= 0) & (xs < in_w) & (ys >= 0) & (ys < in_h)
  weights = jnp.where(inside, weights, 0.0)
  index = jnp.clip(ys, 0, in_h - 1) * in_w + jnp.clip(xs, 0, in_w - 1)
  flat = images.reshape(n, in_h * in_w, c)
  values = jax.vmap(lambda im, i: im[i])(flat, index.reshape(n, -1)).reshape(index.shape + (c,))
  return jnp.sum(values * weights[..., None], axis=1)


def _apply_geometric(images, g_inv):
  """Resamples images [N, H, W, C] through the inverse transforms g_inv [N, 3, 3]."""
  _, height, width, _ = images.shape
  hz_geom = setup_filter(SYM6)
  hz_pad = len(SYM6) // 4
  # Reflect-pad by the largest margin the official code can choose (symmetric: no origin shift).
  images = jnp.pad(images, ((0, 0), (height - 1, height - 1), (width - 1, width - 1), (0, 0)),
                   mode='reflect')
  # 2× up-sampling (upsample2d's padding and gain, per axis).
  up_pad = ((len(SYM6) + 1) // 2, (len(SYM6) - 2) // 2)
  images = _resample(images, hz_geom, up=2, padding=up_pad, gain=2.0)
  # Same transform in up-sampled pixels; the half-pixel shifts undo the even filter's offset.
  g_inv = _scale2d(2, 2) @ g_inv @ _scale2d(0.5, 0.5)
  g_inv = _translate2d(-0.5, -0.5) @ g_inv @ _translate2d(0.5, 0.5)

  # Output pixel (i, j) sits at (j − (W_out − 1)/2, i − (H_out − 1)/2) in centred coordinates,
  # and G⁻¹ maps it to the input, whose centre is pixel ((W_in − 1)/2, (H_in − 1)/2). Computed
  # in fixed point from the matrix entries: integer arithmetic is exact, so however XLA fuses or
  # duplicates this computation, the gather's pixel indices and the interpolation weights agree
  # (in floating point, one fusion with fused multiply-adds and one without can floor a
  # near-integer coordinate differently and fetch the wrong pixel).
  out_h, out_w = (height + 2 * hz_pad) * 2, (width + 2 * hz_pad) * 2
  in_h, in_w = images.shape[1], images.shape[2]
  unit = 1 << _FRACTION_BITS
  g = jax.lax.stop_gradient(g_inv)
  linear = jnp.round(g[:, :2, :2] * (unit / 2)).astype(jnp.int32)       # per half pixel
  offset = jnp.round((g[:, :2, 2] + jnp.array([(in_w - 1) / 2, (in_h - 1) / 2])) * unit)
  offset = offset.astype(jnp.int32)
  cols = (2 * jnp.arange(out_w, dtype=jnp.int32) - (out_w - 1))[None, None, :]   # 2·x_out
  rows = (2 * jnp.arange(out_h, dtype=jnp.int32) - (out_h - 1))[None, :, None]   # 2·y_out
  per_image = lambda m: m[:, None, None]
  x_fixed = (per_image(linear[:, 0, 0]) * cols + per_image(linear[:, 0, 1]) * rows
             + per_image(offset[:, 0]))
  y_fixed = (per_image(linear[:, 1, 0]) * cols + per_image(linear[:, 1, 1]) * rows
             + per_image(offset[:, 1]))
  images = _bilinear_sample(images, x_fixed, y_fixed)
  # 2× down-sampling, cropping 2·hz_pad output pixels per side (downsample2d's padding).
  down_pad = (-hz_pad * 2 + (len(SYM6) - 1) // 2, -hz_pad * 2 + (len(SYM6) - 2) // 2)
  return _resample(images, hz_geom, down=2, padding=down_pad, flip_filter=True)


def _color_matrix(draws, p, cfg, num_channels):
  """Colour transform C [N, 4, 4] acting on homogeneous (r, g, b, 1)."""
  n = draws.batch_size
  eye = jnp.eye(4)
  c_mat = jnp.broadcast_to(eye, (n, 4, 4))
  luma = np.array([1, 1, 1, 0], np.float32) / np.sqrt(3)
  luma_outer = jnp.asarray(np.outer(luma, luma))
  if cfg.brightness > 0:
    b = draws.normal() * cfg.brightness_std
    b = jnp.where(draws.uniform() < cfg.brightness * p, b, 0.0)
    c_mat = _translate3d(b, b, b) @ c_mat
  if cfg.contrast > 0:
    c = jnp.exp2(draws.normal() * cfg.contrast_std)
    c = jnp.where(draws.uniform() < cfg.contrast * p, c, 1.0)
    c_mat = _scale3d(c, c, c) @ c_mat
  if cfg.lumaflip > 0:
    i = jnp.floor(draws.uniform() * 2)
    i = jnp.where(draws.uniform() < cfg.lumaflip * p, i, 0.0)
    c_mat = (eye - 2 * luma_outer * i[:, None, None]) @ c_mat   # Householder reflection
  if cfg.hue > 0 and num_channels > 1:
    theta = (draws.uniform() * 2 - 1) * np.pi * cfg.hue_max
    theta = jnp.where(draws.uniform() < cfg.hue * p, theta, 0.0)
    c_mat = _rotate3d(luma[:3], theta) @ c_mat                  # rotate around the luma axis
  if cfg.saturation > 0 and num_channels > 1:
    s = jnp.exp2(draws.normal() * cfg.saturation_std)
    s = jnp.where(draws.uniform() < cfg.saturation * p, s, 1.0)
    c_mat = (luma_outer + (eye - luma_outer) * s[:, None, None]) @ c_mat
  return c_mat


def _apply_color(images, c_mat):
  """Applies C [N, 4, 4] to images [N, H, W, C], C = 3 (RGB) or 1 (luma: the rows' mean)."""
  if images.shape[-1] == 3:
    return (jnp.einsum('nij,nhwj->nhwi', c_mat[:, :3, :3], images)
            + c_mat[:, None, None, :3, 3])
  c_mean = jnp.mean(c_mat[:, :3, :], axis=1)                      # [N, 4]
  return (images * jnp.sum(c_mean[:, :3], axis=1)[:, None, None, None]
          + c_mean[:, None, None, 3:])


def augment(images, rng, p, config=PIPELINES['bgc']):
  """Applies the ADA pipeline `config` to images [N, H, W, C] with probability p.

  Args:
    images: float array [N, H, W, C], values around [−1, 1]; C must be 1 or 3 when colour
      operations are enabled.
    rng: PRNG key; each image gets its own random parameters.
    p: augmentation probability, a float or a traced scalar (changing it does not recompile).
    config: an `AugmentConfig` (e.g. `PIPELINES['bgc']`).

  Returns:
    Augmented images, same shape and dtype; differentiable with respect to `images`.
  """
  n, height, width, num_channels = images.shape
  if config.has_color and num_channels not in (1, 3):
    raise UserError(f'ADA colour augmentation needs 1 or 3 image channels, got {num_channels}; '
                    "use the 'bg' pipeline for other images.")
  dtype = images.dtype
  p = jnp.asarray(p, jnp.float32)
  draws = _Draws(rng, n)
  images = images.astype(jnp.float32)
  if config.has_geometric:
    images = _apply_geometric(images, _geometric_matrix(draws, p, config, height, width))
  if config.has_color:
    images = _apply_color(images, _color_matrix(draws, p, config, num_channels))
  return images.astype(dtype)
