"""EDM's non-leaking augmentation (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", appendix; NVlabs `edm` `training/augment.py`).

Unlike ADA, where the augmentation sits in front of a discriminator, a diffusion model is trained
on augmented images *and told which augmentation it saw*: the pipeline returns, with every image,
a vector of augmentation labels that conditions the denoiser (`augment_dim`). At sampling time
the labels are zero, so the network generates un-augmented images and the augmentations do not
leak into the samples, whatever their probability.

Each enabled transform fires on an image with probability min(multiplier · p, 1):

  blit   xflip, yflip (mirror), rotate_int (90° steps), translate_int (integer shift with
         mirror-reflected borders, ±`translate_int_max` of the size);
  geom   scale (isotropic, log2 σ `scale_std`), rotate_frac (uniform angle, ±π·`rotate_frac_max`),
         aniso (log2 σ `aniso_std`, along an axis at a uniform angle with probability
         `aniso_rotate_prob`, else along x), translate_frac (σ `translate_frac_std` of the size);
  color  brightness (σ `brightness_std`), contrast (log2 σ `contrast_std`), lumaflip, hue
         (rotation about the luma axis, ±π·`hue_max`), saturation (log2 σ `saturation_std`).

Each enabled transform appends its parameters to the labels, whether or not it fired (a transform
that did not fire contributes zeros), in this order, as float32 columns:

  xflip      [flipped]                  yflip          [flipped]
  rotate_int [w ∈ {1,2}, w ∈ {2,3}]     translate_int  [tx/(W·max), ty/(H·max)]
  scale      [log2 s / scale_std]       rotate_frac    [cos θ − 1, sin θ]
  aniso      [w cos r, w sin r], w = log2 s / aniso_std, r the axis angle
  translate_frac [tx/(W·std), ty/(H·std)]
  brightness [b / std]   contrast [log2 c / std]   lumaflip [flipped]
  hue        [cos θ − 1, sin θ]         saturation     [log2 s / std]

so EDM's CIFAR-10 recipe (`CIFAR10_PIPE`: xflip, yflip, scale, rotate_frac, aniso,
translate_frac) gives 9 labels, its networks' `augment_dim`. (xflip=1e8 makes every image toss
the x-flip coin whatever p is: half the images are mirrored, and labelled so.)

The geometric transforms compose into one inverse matrix G⁻¹ per image (output pixel, centred
coordinates → input pixel), executed exactly as the official code does it: reflect padding by a
margin that covers the transformed corners of every image in the batch, 2× up-sampling with the
orthonormal `sym6` wavelet low-pass filter, bilinear resampling with zeros outside, 2×
down-sampling with the same filter (which undoes the up-sampling exactly: perfect reconstruction,
so the identity transform returns the input up to float rounding). The official margin is
data-dependent, so its shapes are not static; here the image is always reflect-padded by the
largest margin it can choose (size − 1 per side) and everything beyond the batch's margin is
zeroed, before and after the up-sampling, which reproduces the official zero-padded borders
sample for sample, jit-able. The margin, like the official one, is a maximum over the batch that
is passed (the official code computes it per GPU). The colour transforms compose into one 4×4
matrix per image acting on (r, g, b, 1); one-channel images get the mean of its three rows.

Random draws: `draw(key, n)` makes every random number the official code draws, one array per
draw, named in `draw_specs()`, in the official order; `apply(images, draws)` is the
deterministic rest. `tests/test_edm_augment.py` replays draws recorded from the official PyTorch
code through `apply` and compares the outputs.

Images are [N, H, W, C] float32 in [−1, 1]; labels [N, label_dim] float32.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.augment.ada import SYM6, bilinear_gather
from jaxgen.errors import UserError
from jaxgen.ops.upfirdn2d import upfirdn1d_matrix

_HIGHEST = jax.lax.Precision.HIGHEST

# Per transform, in the official order: (number of label columns, the random draws it makes).
# A draw is (name, kind, rows): kind 'uniform' [0, 1), 'normal', or an int k for a uniform
# integer in [0, k); rows 2 for the [2, N] draws of the translations (x and y), else [N].
_TRANSFORMS = (
    ('xflip', 1, (('w', 2, 1), ('gate', 'uniform', 1))),
    ('yflip', 1, (('w', 2, 1), ('gate', 'uniform', 1))),
    ('rotate_int', 2, (('w', 4, 1), ('gate', 'uniform', 1))),
    ('translate_int', 2, (('w', 'uniform', 2), ('gate', 'uniform', 1))),
    ('scale', 1, (('w', 'normal', 1), ('gate', 'uniform', 1))),
    ('rotate_frac', 2, (('w', 'uniform', 1), ('gate', 'uniform', 1))),
    ('aniso', 2, (('w', 'normal', 1), ('r', 'uniform', 1), ('gate', 'uniform', 1),
                  ('r_gate', 'uniform', 1))),
    ('translate_frac', 2, (('w', 'normal', 2), ('gate', 'uniform', 1))),
    ('brightness', 1, (('w', 'normal', 1), ('gate', 'uniform', 1))),
    ('contrast', 1, (('w', 'normal', 1), ('gate', 'uniform', 1))),
    ('lumaflip', 1, (('w', 2, 1), ('gate', 'uniform', 1))),
    ('hue', 2, (('w', 'uniform', 1), ('gate', 'uniform', 1))),
    ('saturation', 1, (('w', 'normal', 1), ('gate', 'uniform', 1))),
)
GEOMETRIC = ('scale', 'rotate_frac', 'aniso', 'translate_frac')
COLOR = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')


@dataclasses.dataclass(frozen=True)
class AugmentPipe:
  """The official `AugmentPipe`'s settings (same names and defaults: everything off, p = 1).

  Multipliers: 0 disables a transform (and its labels); otherwise it fires with probability
  multiplier · p. `pipe(images, key)` → (images, labels); hashable, so it can be closed over or
  passed as a static argument of `jax.jit`.
  """
  p: float = 1.0                    # overall multiplier of every transform's probability
  # Pixel blitting.
  xflip: float = 0.0
  yflip: float = 0.0
  rotate_int: float = 0.0
  translate_int: float = 0.0
  translate_int_max: float = 0.125  # integer translation range, fraction of the image size
  # Geometric transformations.
  scale: float = 0.0
  rotate_frac: float = 0.0
  aniso: float = 0.0
  translate_frac: float = 0.0
  scale_std: float = 0.2            # log2 stddev of isotropic scaling
  rotate_frac_max: float = 1.0      # rotation range, 1 = full circle
  aniso_std: float = 0.2            # log2 stddev of anisotropic scaling
  aniso_rotate_prob: float = 0.5    # probability that the anisotropy axis is rotated
  translate_frac_std: float = 0.125  # stddev of fractional translation, fraction of the size
  # Colour transformations.
  brightness: float = 0.0
  contrast: float = 0.0
  lumaflip: float = 0.0
  hue: float = 0.0
  saturation: float = 0.0
  brightness_std: float = 0.2       # stddev of the brightness offset
  contrast_std: float = 0.5         # log2 stddev of contrast
  hue_max: float = 1.0              # hue rotation range, 1 = full circle
  saturation_std: float = 1.0       # log2 stddev of saturation

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not np.isfinite(value) or value < 0:
        raise UserError(f'augmentation setting {field.name}={value} must be a finite number '
                        '>= 0.')
    if self.p > 1:
      raise UserError(f'augmentation probability p={self.p} is outside [0, 1].')

  def enabled(self):
    """Names of the enabled transforms, in the official order."""
    return tuple(name for name, _, _ in _TRANSFORMS if getattr(self, name) > 0)

  @property
  def label_dim(self):
    """Width of the labels: the network's `augment_dim` (9 for `CIFAR10_PIPE`)."""
    widths = {name: width for name, width, _ in _TRANSFORMS}
    return sum(widths[name] for name in self.enabled())

  def draw_specs(self):
    """[(name, kind, rows)] of every random draw, in the order the official code makes them:
    name is 'transform.draw' (e.g. 'xflip.gate'), kind as in `_TRANSFORMS`, rows 1 ([N]) or 2
    ([2, N])."""
    draws = {name: spec for name, _, spec in _TRANSFORMS}
    return [(f'{name}.{draw}', kind, rows)
            for name in self.enabled() for draw, kind, rows in draws[name]]

  def draw(self, key, n):
    """Every random number of one call for a batch of n: {name: [n] or [2, n]} (int32 for the
    integer draws, float32 otherwise). Two RNG calls, one block of uniforms and one of normals,
    sliced in `draw_specs` order (integers in [0, k) are ⌊k·u⌋: exact for k = 2, 4)."""
    specs = self.draw_specs()
    num_uniform = sum(rows for _, kind, rows in specs if kind != 'normal')
    num_normal = sum(rows for _, kind, rows in specs if kind == 'normal')
    uniform_key, normal_key = jax.random.split(key)
    uniform = jax.random.uniform(uniform_key, (num_uniform, n), jnp.float32)
    normal = jax.random.normal(normal_key, (num_normal, n), jnp.float32)
    out = {}
    for name, kind, rows in specs:
      if kind == 'normal':
        value, normal = normal[:rows], normal[rows:]
      else:
        value, uniform = uniform[:rows], uniform[rows:]
        if kind != 'uniform':
          value = jnp.floor(value * kind).astype(jnp.int32)
      out[name] = value if rows == 2 else value[0]
    return out

  def apply(self, images, draws):
    """The pipeline for given random draws (see `draw`): (images, labels [N, label_dim])."""
    _check_images(self, images.shape)
    return _apply(self, images, draws)

  def __call__(self, images, key):
    """Augments images [N, H, W, C] (float, [−1, 1]) → (images, labels [N, label_dim] float32).

    Every image gets its own random parameters from `key`. Not differentiable with respect to
    the parameters (there are none to learn); gradients with respect to images do flow.
    """
    _check_images(self, images.shape)
    return self.apply(images, self.draw(key, images.shape[0]))


def _check_images(pipe, shape):
  if len(shape) != 4:
    raise UserError(f'augmentation needs images [N, H, W, C], got shape {tuple(shape)}.')
  _, height, width, channels = shape
  if pipe.rotate_int > 0 and height != width:
    raise UserError(f'rotate_int needs square images, got {height}×{width}.')
  if any(getattr(pipe, name) > 0 for name in COLOR) and channels not in (1, 3):
    raise UserError(f'colour augmentation needs RGB (3 channels) or L (1 channel) images, got '
                    f'{channels} channels.')


# EDM's augmentation for CIFAR-10 (`train.py --augment=0.12`, the default): augment_dim = 9.
CIFAR10_PIPE = AugmentPipe(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
                           translate_frac=1)


# ------------------------------------------------------------------------------------------------
# Homogeneous matrices, batched: each entry is a [N] array or a scalar.


def _matrix(*rows, n):
  entry = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,))
  return jnp.stack([jnp.stack([entry(v) for v in row], axis=-1) for row in rows], axis=-2)


def _translate2d(tx, ty, n):
  return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], n=n)


def _scale2d(sx, sy, n):
  return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], n=n)


def _rotate2d(theta, n):
  return _matrix([jnp.cos(theta), jnp.sin(-theta), 0], [jnp.sin(theta), jnp.cos(theta), 0],
                 [0, 0, 1], n=n)


def _translate3d(tx, ty, tz, n):
  return _matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1], n=n)


def _scale3d(sx, sy, sz, n):
  return _matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1], n=n)


def _rotate3d(axis, theta, n):
  """Rotation by theta about the unit axis (3 floats) (Rodrigues)."""
  vx, vy, vz = axis
  s, c = jnp.sin(theta), jnp.cos(theta)
  cc = 1 - c
  return _matrix([vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                 [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                 [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                 [0, 0, 0, 1], n=n)


def _mm(a, b):
  """Batched matrix product in full float32 (TPU/GPU would otherwise round to bf16/TF32)."""
  return jnp.matmul(a, b, precision=_HIGHEST)


# ------------------------------------------------------------------------------------------------
# The pipeline.


def _apply(pipe, images, draws):
  n, height, width, channels = images.shape
  dtype = images.dtype
  images = images.astype(jnp.float32)
  labels = []

  def fires(name, gate):
    return gate < getattr(pipe, name) * pipe.p

  # Pixel blitting: exact permutations of pixels.
  if pipe.xflip > 0:
    w = jnp.where(fires('xflip', draws['xflip.gate']), draws['xflip.w'], 0)
    images = jnp.where((w == 1)[:, None, None, None], images[:, :, ::-1], images)
    labels.append([w])
  if pipe.yflip > 0:
    w = jnp.where(fires('yflip', draws['yflip.gate']), draws['yflip.w'], 0)
    images = jnp.where((w == 1)[:, None, None, None], images[:, ::-1], images)
    labels.append([w])
  if pipe.rotate_int > 0:
    w = jnp.where(fires('rotate_int', draws['rotate_int.gate']), draws['rotate_int.w'], 0)
    # Quarter turns as x-flip, y-flip and transpose, in the official order.
    per_image = lambda mask: mask[:, None, None, None]
    images = jnp.where(per_image((w == 1) | (w == 2)), images[:, :, ::-1], images)
    images = jnp.where(per_image((w == 2) | (w == 3)), images[:, ::-1], images)
    images = jnp.where(per_image((w == 1) | (w == 3)), jnp.swapaxes(images, 1, 2), images)
    labels.append([(w == 1) | (w == 2), (w == 2) | (w == 3)])
  if pipe.translate_int > 0:
    w = draws['translate_int.w'] * 2 - 1
    w = jnp.where(fires('translate_int', draws['translate_int.gate'])[None], w, 0.0)
    tx = jnp.round(w[0] * np.float32(width * pipe.translate_int_max)).astype(jnp.int32)
    ty = jnp.round(w[1] * np.float32(height * pipe.translate_int_max)).astype(jnp.int32)
    images = _translate_int(images, tx, ty)
    labels.append([tx / np.float32(width * pipe.translate_int_max),
                   ty / np.float32(height * pipe.translate_int_max)])

  # Geometric transformations: G⁻¹ maps output pixels to input pixels (centred coordinates).
  g_inv = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (n, 3, 3))
  if pipe.scale > 0:
    w = jnp.where(fires('scale', draws['scale.gate']), draws['scale.w'], 0.0)
    s = jnp.exp2(w * np.float32(pipe.scale_std))
    g_inv = _mm(g_inv, _scale2d(1 / s, 1 / s, n))
    labels.append([w])
  if pipe.rotate_frac > 0:
    w = (draws['rotate_frac.w'] * 2 - 1) * np.float32(np.pi * pipe.rotate_frac_max)
    w = jnp.where(fires('rotate_frac', draws['rotate_frac.gate']), w, 0.0)
    g_inv = _mm(g_inv, _rotate2d(w, n))
    labels.append([jnp.cos(w) - 1, jnp.sin(w)])
  if pipe.aniso > 0:
    w = jnp.where(fires('aniso', draws['aniso.gate']), draws['aniso.w'], 0.0)
    r = (draws['aniso.r'] * 2 - 1) * np.float32(np.pi)
    r = jnp.where(draws['aniso.r_gate'] < pipe.aniso_rotate_prob, r, 0.0)
    s = jnp.exp2(w * np.float32(pipe.aniso_std))
    # Scale by (s, 1/s) along the axis at angle r: R(r) S R(−r), inverted.
    g_inv = _mm(_mm(_mm(g_inv, _rotate2d(-r, n)), _scale2d(1 / s, 1 / (1 / s), n)),
                _rotate2d(r, n))
    labels.append([w * jnp.cos(r), w * jnp.sin(r)])
  if pipe.translate_frac > 0:
    w = jnp.where(fires('translate_frac', draws['translate_frac.gate'])[None],
                  draws['translate_frac.w'], 0.0)
    g_inv = _mm(g_inv, _translate2d(-(w[0] * np.float32(width * pipe.translate_frac_std)),
                                    -(w[1] * np.float32(height * pipe.translate_frac_std)), n))
    labels.append([w[0], w[1]])
  if any(getattr(pipe, name) > 0 for name in GEOMETRIC):
    images = _apply_geometric(images, g_inv)

  # Colour transformations: M acts on homogeneous (r, g, b, 1).
  eye = jnp.eye(4, dtype=jnp.float32)
  m = jnp.broadcast_to(eye, (n, 4, 4))
  luma = np.array([1, 1, 1, 0], np.float32) / np.float32(np.sqrt(3))
  luma_outer = jnp.asarray(np.outer(luma, luma))
  if pipe.brightness > 0:
    w = jnp.where(fires('brightness', draws['brightness.gate']), draws['brightness.w'], 0.0)
    b = w * np.float32(pipe.brightness_std)
    m = _mm(_translate3d(b, b, b, n), m)
    labels.append([w])
  if pipe.contrast > 0:
    w = jnp.where(fires('contrast', draws['contrast.gate']), draws['contrast.w'], 0.0)
    c = jnp.exp2(w * np.float32(pipe.contrast_std))
    m = _mm(_scale3d(c, c, c, n), m)
    labels.append([w])
  if pipe.lumaflip > 0:
    w = jnp.where(fires('lumaflip', draws['lumaflip.gate']), draws['lumaflip.w'], 0)
    # Householder reflection through the plane orthogonal to the luma axis.
    m = _mm(eye - 2 * luma_outer * w[:, None, None].astype(jnp.float32), m)
    labels.append([w])
  if pipe.hue > 0:
    w = (draws['hue.w'] * 2 - 1) * np.float32(np.pi * pipe.hue_max)
    w = jnp.where(fires('hue', draws['hue.gate']), w, 0.0)
    m = _mm(_rotate3d(luma[:3], w, n), m)
    labels.append([jnp.cos(w) - 1, jnp.sin(w)])
  if pipe.saturation > 0:
    w = jnp.where(fires('saturation', draws['saturation.gate']), draws['saturation.w'], 0.0)
    s = jnp.exp2(w * np.float32(pipe.saturation_std))
    m = _mm(luma_outer + (eye - luma_outer) * s[:, None, None], m)
    labels.append([w])
  if any(getattr(pipe, name) > 0 for name in COLOR):
    images = _apply_color(images, m)

  columns = [jnp.asarray(c).astype(jnp.float32) for group in labels for c in group]
  labels = jnp.stack(columns, axis=1) if columns else jnp.zeros((n, 0), jnp.float32)
  return images.astype(dtype), labels


def _translate_int(images, tx, ty):
  """Shifts images [N, H, W, C] by integer (tx [N], ty [N]) pixels (x right, y up, as the
  official code indexes them) with mirror-reflected (edge not repeated) borders."""
  _, height, width, _ = images.shape
  x = jnp.arange(width)[None, :]
  y = jnp.arange(height)[None, :]
  # Reflection of an index onto [0, size − 1] with period 2·size − 2.
  src_x = width - 1 - jnp.abs(width - 1 - jnp.mod(x - tx[:, None], 2 * width - 2))
  src_y = height - 1 - jnp.abs(height - 1 - jnp.mod(y + ty[:, None], 2 * height - 2))
  images = jnp.take_along_axis(images, src_y[:, :, None, None], axis=1)
  return jnp.take_along_axis(images, src_x[:, None, :, None], axis=2)


def _separable(images, rows, cols):
  """Applies matrices rows [Ho, H] and cols [Wo, W] along the two axes of images [N, H, W, C]
  (x first, like the official code)."""
  images = jnp.einsum('ow,nhwc->nhoc', cols, images, precision=_HIGHEST)
  return jnp.einsum('oh,nhwc->nowc', rows, images, precision=_HIGHEST)


def _interval_mask(size, start, length):
  """[size] float32: 1 on [start, start + length) (traced ints), 0 elsewhere."""
  i = jnp.arange(size)
  return ((i >= start) & (i < start + length)).astype(jnp.float32)


def _pad_and_upsample_matrix(size, start, length):
  """[2·(3·size − 2), size] float32, along one axis: reflect padding by size − 1, zeros outside
  [start, start + length) (the official padded image), 2× up-sampling with sym6, zeros outside
  [2·start, 2·(start + length)) (the official up-sampled image). start, length: traced ints."""
  big = 3 * size - 2
  reflect = np.zeros((big, size), np.float32)
  reflect[np.arange(big), np.pad(np.arange(size), size - 1, mode='reflect')] = 1
  # Zero insertion, then up[j] = Σₜ hz[11 − t] · stuffed[j + t − 6] for j ∈ [0, 2·big): the
  # official convolution (padding 6) of the stuffed signal, i.e. upfirdn with padding (6, 5).
  hz = np.asarray(SYM6, np.float64)
  up_pad = ((len(hz) + 1) // 2, len(hz) - 1 - (len(hz) + 1) // 2)
  up = upfirdn1d_matrix(big, hz, up=2, padding=up_pad)                   # [2·big, big]
  up = up * _interval_mask(2 * big, 2 * start, 2 * length)[:, None]
  return jnp.matmul(up, reflect * _interval_mask(big, start, length)[:, None], precision=_HIGHEST)


def _apply_geometric(images, g_inv):
  """Resamples images [N, H, W, C] through the inverse transforms g_inv [N, 3, 3]."""
  n, height, width, _ = images.shape
  hz = np.asarray(SYM6, np.float64)
  hz_pad = len(hz) // 4
  cx, cy = (width - 1) / 2, (height - 1) / 2

  # The batch's margin: how far the output's corners land outside the input, plus 2·hz_pad
  # pixels of filter support, clipped to [0, size − 1], rounded up.
  corners = jnp.array([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], jnp.float32)
  cp = jnp.einsum('nij,kj->nik', g_inv, corners, precision=_HIGHEST)[:, :2]  # [N, xy, corner]
  lo = jnp.max(-cp, axis=(0, 2))                                          # towards −x, −y
  hi = jnp.max(cp, axis=(0, 2))                                           # towards +x, +y
  base = jnp.array([hz_pad * 2 - cx, hz_pad * 2 - cy], jnp.float32)
  limit = jnp.array([width - 1, height - 1], jnp.float32)
  lo = jnp.ceil(jnp.minimum(jnp.maximum(lo + base, 0), limit)).astype(jnp.int32)
  hi = jnp.ceil(jnp.minimum(jnp.maximum(hi + base, 0), limit)).astype(jnp.int32)
  mx0, my0, mx1, my1 = lo[0], lo[1], hi[0], hi[1]

  # The official code reflect-pads by the batch's margin and up-samples 2× (zero insertion, then
  # convolution with sym6, zeros beyond the padded image). Static shapes: pad by the largest
  # margin there can be (size − 1 per side) and zero what lies beyond the batch's margin, before
  # and after the up-sampling; the official padded image then sits at offset (ox, oy). All of it
  # is linear along each axis: one dynamic matrix per axis.
  ox, oy = width - 1 - mx0, height - 1 - my0
  pw, ph = width + mx0 + mx1, height + my0 + my1                         # official padded size
  images = _separable(images, _pad_and_upsample_matrix(height, oy, ph),
                      _pad_and_upsample_matrix(width, ox, pw))
  g_inv = _mm(_translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, n), g_inv)
  g_inv = _mm(_mm(_scale2d(2, 2, n), g_inv), _scale2d(0.5, 0.5, n))
  g_inv = _mm(_mm(_translate2d(-0.5, -0.5, n), g_inv), _translate2d(0.5, 0.5, n))

  # Resampling onto the output grid (2× the padded-by-hz_pad output), as affine_grid and
  # grid_sample (align_corners=False) do it: normalised coordinates in [−1, 1] on both sides.
  out_h, out_w = (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2
  up_w, up_h = (2 * pw).astype(jnp.float32), (2 * ph).astype(jnp.float32)
  g_inv = _mm(_mm(_scale2d(2 / up_w, 2 / up_h, n), g_inv),
              _scale2d(1 / (2 / out_w), 1 / (2 / out_h), n))
  g_inv = jax.lax.stop_gradient(g_inv)
  xb = (jnp.linspace(-1, 1, out_w, dtype=jnp.float32) * np.float32((out_w - 1) / out_w))
  yb = (jnp.linspace(-1, 1, out_h, dtype=jnp.float32) * np.float32((out_h - 1) / out_h))
  xn = (g_inv[:, 0, 0, None, None] * xb[None, None, :] + g_inv[:, 0, 1, None, None]
        * yb[None, :, None] + g_inv[:, 0, 2, None, None])
  yn = (g_inv[:, 1, 0, None, None] * xb[None, None, :] + g_inv[:, 1, 1, None, None]
        * yb[None, :, None] + g_inv[:, 1, 2, None, None])
  # Pixel coordinates in the official up-sampled image, then in this (larger) one.
  px = ((xn + 1) * up_w - 1) / 2 + (2 * ox).astype(jnp.float32)
  py = ((yn + 1) * up_h - 1) / 2 + (2 * oy).astype(jnp.float32)
  images = _bilinear_sample(images, px, py)

  # 2× down-sampling: correlation with sym6, stride 2, centred (padding 5), then cropping hz_pad
  # pixels per side: down[i] = Σₜ hz[t] · x[2i + t + 1] — upfirdn with padding (−1, −1).
  down_pad = ((len(hz) - 1) // 2 - 2 * hz_pad, (len(hz) - 1) // 2 - 2 * hz_pad)
  return _separable(images,
                    upfirdn1d_matrix(out_h, hz, down=2, padding=down_pad, flip_filter=True),
                    upfirdn1d_matrix(out_w, hz, down=2, padding=down_pad, flip_filter=True))


def _bilinear_sample(images, px, py):
  """Samples images [N, Hi, Wi, C] at pixel coordinates px, py [N, Ho, Wo] (pixel centres at
  integers), bilinearly, with zeros outside."""
  # One materialised copy of the coordinates: the pixel indices and the interpolation weights
  # below must see the same floats (a recomputation in another fusion could round differently
  # and floor a near-integer coordinate the other way).
  px, py = jax.lax.optimization_barrier((px, py))
  x0, y0 = jnp.floor(px), jnp.floor(py)
  fx, fy = px - x0, py - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  return bilinear_gather(images, x0, y0, fx, fy)


def _apply_color(images, m):
  """Applies M [N, 4, 4] to images [N, H, W, C]: RGB, or one channel (the mean of M's rows)."""
  channels = images.shape[-1]
  if channels == 3:
    return (jnp.einsum('nij,nhwj->nhwi', m[:, :3, :3], images, precision=_HIGHEST)
            + m[:, None, None, :3, 3])
  if channels == 1:
    m = jnp.mean(m[:, :3, :], axis=1)                                        # [N, 4]
    return images * jnp.sum(m[:, :3], axis=1)[:, None, None, None] + m[:, None, None, 3:]
  raise ValueError(f'{channels} channels')  # _check_images refuses these first
