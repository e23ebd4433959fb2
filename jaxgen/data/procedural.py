"""The embedded procedural dataset: class-labelled compositions that need no download.

Every image is drawn from its index and the dataset seed alone, so the dataset is deterministic,
random-access and the same on every host. Ten classes, each a family of compositions with
random colours, positions, sizes, orientations and a coloured background:

  0 disc      1 square     2 triangle   3 stripes    4 rings
  5 checkers  6 gradient   7 blobs      8 cross      9 dot grid

A generator that only learns the average colour, or only one family, scores clearly worse than
one that reproduces shapes, edges and textures; that is what the quickstart presets need.
Images are anti-aliased (edges are soft over about one pixel) at any resolution from 16 to 256,
and no pattern repeats in under 3 pixels (see MIN_PERIOD_PIXELS), so stripes and rings stay
stripes and rings at 16² instead of moiré.
"""

import numpy as np

CLASS_NAMES = ('disc', 'square', 'triangle', 'stripes', 'rings', 'checkers', 'gradient',
               'blobs', 'cross', 'dot_grid')
NUM_CLASSES = len(CLASS_NAMES)
MIN_RESOLUTION, MAX_RESOLUTION = 16, 256
# Stripes, rings, checkers and dot grids with a period under this alias: their periods are drawn
# in image widths, and at 16² the smallest were 1.6–2.4 pixels. The floor binds only below 32²
# (3 pixels are 0.19 image widths at 32², 4.2 for the checkerboard's diagonal 0.27, under each
# class's smallest period), so images from 32² up are the same as without it.
MIN_PERIOD_PIXELS = 3


def _coverage(signed_distance, pixel):
  """Anti-aliased coverage of the region where `signed_distance` < 0 (units: image widths)."""
  return np.clip(0.5 - signed_distance / pixel, 0.0, 1.0)


def _rotate(x, y, angle):
  c, s = np.cos(angle), np.sin(angle)
  return c * x + s * y, -s * x + c * y


def _period(rng, low, high, pixel, diagonal=False):
  """A pattern's period drawn from [low, high] and raised to MIN_PERIOD_PIXELS pixels; with
  `diagonal` (a checkerboard, whose fundamental runs along its diagonal at period/√2), to
  √2 times that."""
  return max(rng.uniform(low, high), MIN_PERIOD_PIXELS * pixel * (np.sqrt(2) if diagonal else 1))


def _random_colour(rng, avoid=None):
  """An RGB colour in [0, 1]; if `avoid` is given, one clearly different from it."""
  for _ in range(16):
    colour = rng.uniform(0.0, 1.0, size=3)
    if avoid is None or np.abs(colour - avoid).sum() > 0.6:
      return colour
  return 1.0 - avoid


def _mask(label, x, y, rng, pixel, rotation=1.0):
  """Foreground coverage in [0, 1] for one class, on coordinates x, y in [-1, 1]; the shape's
  orientation is drawn from [0, rotation · 180°)."""
  cx, cy = rng.uniform(-0.35, 0.35, size=2)
  angle = rng.uniform(0, np.pi) * rotation
  u, v = _rotate(x - cx, y - cy, angle)
  if label == 0:  # disc
    radius = rng.uniform(0.25, 0.6)
    return _coverage(np.hypot(u, v) - radius, pixel)
  if label == 1:  # square
    half = rng.uniform(0.25, 0.55)
    return _coverage(np.maximum(np.abs(u), np.abs(v)) - half, pixel)
  if label == 2:  # equilateral triangle: the max of three half-plane distances
    size = rng.uniform(0.3, 0.6)
    d = np.full_like(u, -np.inf)
    for k in range(3):
      a = angle + 2 * np.pi * k / 3
      d = np.maximum(d, np.cos(a) * (x - cx) + np.sin(a) * (y - cy) - size / 2)
    return _coverage(d, pixel)
  if label == 3:  # stripes
    period = _period(rng, 0.25, 0.6, pixel)
    return _coverage(np.abs(((u / period) % 1.0) - 0.5) * period - period / 4, pixel)
  if label == 4:  # concentric rings
    period = _period(rng, 0.2, 0.4, pixel)
    r = np.hypot(x - cx, y - cy)
    return _coverage(np.abs(((r / period) % 1.0) - 0.5) * period - period / 4, pixel)
  if label == 5:  # checkerboard
    period = _period(rng, 0.3, 0.7, pixel, diagonal=True)
    su = np.sin(np.pi * u / (period / 2))
    sv = np.sin(np.pi * v / (period / 2))
    return np.clip(0.5 + 0.5 * su * sv * 4, 0.0, 1.0)
  if label == 6:  # linear gradient
    return np.clip(0.5 + u / rng.uniform(1.0, 2.5), 0.0, 1.0)
  if label == 7:  # a few soft Gaussian blobs
    total = np.zeros_like(x)
    for _ in range(rng.integers(2, 5)):
      bx, by = rng.uniform(-0.7, 0.7, size=2)
      sigma = rng.uniform(0.12, 0.3)
      total += np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma ** 2))
    return np.clip(total, 0.0, 1.0)
  if label == 8:  # cross
    arm, width = rng.uniform(0.4, 0.7), rng.uniform(0.08, 0.18)
    bar1 = np.maximum(np.abs(u) - arm, np.abs(v) - width)
    bar2 = np.maximum(np.abs(v) - arm, np.abs(u) - width)
    return _coverage(np.minimum(bar1, bar2), pixel)
  if label == 9:  # grid of dots
    period = _period(rng, 0.3, 0.5, pixel)
    radius = period * rng.uniform(0.2, 0.35)
    gu = ((u / period + 0.5) % 1.0 - 0.5) * period
    gv = ((v / period + 0.5) % 1.0 - 0.5) * period
    return _coverage(np.hypot(gu, gv) - radius, pixel)
  raise ValueError(f'unknown class {label}')


def render(index, resolution, seed=0, channels=3, palette=None, rotation=1.0):
  """Draws image `index` of the dataset.

  `palette`, a (background, foreground) pair of RGB colours in [0, 1], paints the same
  composition in those two colours instead of its random ones (the geometry, drawn from the same
  random stream, is unchanged): the restyling of the two-domain data (jaxgen/data/unpaired.py).
  `rotation` in [0, 1] narrows the orientations of shapes, stripes and grids to [0, rotation ·
  180°): 0 draws them upright (squares and crosses axis-aligned, stripes vertical), 1 (the
  dataset) at any angle. The angle is drawn from the same random stream and scaled, so every
  other property of image `index` (label, colours, position, size) is the same at any rotation.

  Returns:
    (image, label): image uint8 [resolution, resolution, channels], label int in [0, 10).
  """
  label = index % NUM_CLASSES
  rng = np.random.default_rng([seed, index])
  coords = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
  x, y = np.meshgrid(coords, coords)
  pixel = 2.0 / resolution
  background = _random_colour(rng)
  foreground = _random_colour(rng, avoid=background)
  if palette is not None:
    background, foreground = (np.asarray(c, np.float64) for c in palette)
  # A faint background gradient keeps the flat area from being trivially constant.
  tilt = rng.uniform(-0.15, 0.15, size=2)
  base = background[None, None, :] + (tilt[0] * x + tilt[1] * y)[..., None]
  mask = _mask(label, x, y, rng, pixel, rotation)[..., None]
  image = np.clip(base * (1.0 - mask) + foreground[None, None, :] * mask, 0.0, 1.0)
  if channels == 1:
    image = image @ np.array([0.299, 0.587, 0.114])[:, None]
  return np.round(image * 255.0).astype(np.uint8), label


def check_classes(classes):
  """`classes` as a sorted tuple of distinct labels; UserError names what is wrong."""
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel
  chosen = tuple(classes)
  bad = [c for c in chosen if isinstance(c, bool) or not isinstance(c, (int, np.integer))
         or not 0 <= c < NUM_CLASSES]
  if bad or len(set(chosen)) != len(chosen):
    names = ', '.join(f'{i} {n}' for i, n in enumerate(CLASS_NAMES))
    raise UserError(f'data.classes={chosen} must be distinct labels of the embedded dataset '
                    f'({names}); () = all ten')
  return tuple(sorted(int(c) for c in chosen))


def check_rotation(rotation):
  """`rotation` as a float in [0, 1]; UserError names what is wrong."""
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel
  if (isinstance(rotation, bool) or not isinstance(rotation, (int, float, np.number))
      or not 0.0 <= rotation <= 1.0):
    raise UserError(f'data.rotation={rotation!r} must be a number in [0, 1]: the share of the '
                    'half-turn the embedded shapes are rotated over (0 upright, 1 any angle)')
  return float(rotation)


class ProceduralSource:
  """Random-access source of the procedural dataset (a grain `RandomAccessDataSource`).

  `classes` (labels, e.g. (0, 1, 2, 8)) keeps only those classes: image i of the source is
  image (i // k) · 10 + classes[i % k] of the full dataset (k classes, sorted), so each kept
  image is the one the full dataset holds at that index. Labels are renumbered 0..k−1 in that
  order (a conditional model has k classes; `class_names` says which). `rotation` as in
  `render`.
  """

  name = 'embedded'

  def __init__(self, resolution, num_images=20000, seed=0, channels=3, classes=(), rotation=1.0):
    self.resolution = resolution
    self.rotation = check_rotation(rotation)
    self.num_images = num_images
    self.seed = seed
    self.channels = channels
    self.classes = check_classes(classes) if classes else tuple(range(NUM_CLASSES))
    self.num_classes = len(self.classes)
    self.class_names = [CLASS_NAMES[c] for c in self.classes]

  def __len__(self):
    return self.num_images

  def __getitem__(self, index):
    block, label = divmod(int(index), len(self.classes))
    image, _ = render(block * NUM_CLASSES + self.classes[label], self.resolution, self.seed,
                      self.channels, rotation=self.rotation)
    return {'image': image, 'label': np.int32(label)}

  def __repr__(self):
    return (f'ProceduralSource(resolution={self.resolution}, num_images={self.num_images}, '
            f'seed={self.seed}, classes={self.classes}, rotation={self.rotation})')
