"""Applying a fully convolutional image-to-image network to pictures of any size, in tiles.

`translate_tiled(fn, image, tile, overlap, scale)` cuts the input [H, W, C] into tile×tile
windows whose starts are `tile − overlap` apart (the last one flush with the far edge), runs `fn`
on batches of them — one compiled shape, whatever the picture — and blends the outputs: each
output tile is weighted by a window that ramps linearly from ~0 to 1 over the overlap on every
side shared with another tile (and is 1 on the picture's own edges), so a seam is a smooth
cross-fade instead of a step. A picture smaller than a tile is padded (mirrored, edge pixel repeated) to one
tile and the output cropped: a picture that fits in one tile is exactly one pass of `fn`. With
an overlap at least the network's receptive field the blend only averages outputs computed from
the same pixels, so tiled and whole-image outputs differ by what the network computes
differently near a tile's border (its padding).
"""

import math

import numpy as np

from jaxgen.errors import UserError


def _starts(size, tile, overlap):
  """Window starts along one axis: `tile − overlap` apart, the last flush with `size`."""
  if size <= tile:
    return [0]
  stride = tile - overlap
  count = math.ceil((size - tile) / stride) + 1
  starts = [min(i * stride, size - tile) for i in range(count)]
  return sorted(set(starts))


def _ramp(length, overlap, scale, ramp_before, ramp_after):
  """1-D blending weights of one output tile (length = tile·scale)."""
  w = np.ones(length, np.float64)
  ramp = overlap * scale
  if ramp > 0:
    # (i + 0.5) / ramp: strictly positive, so every output pixel has weight > 0.
    rising = (np.arange(ramp) + 0.5) / ramp
    if ramp_before:
      w[:ramp] = np.minimum(w[:ramp], rising)
    if ramp_after:
      w[length - ramp:] = np.minimum(w[length - ramp:], rising[::-1])
  return w


def translate_tiled(fn, image, tile, overlap, scale=1, batch_size=8, out_channels=None):
  """fn over `image` in blended tiles (see the module docstring).

  Args:
    fn: batch [N, tile, tile, C] float32 → [N, tile·scale, tile·scale, C_out] (numpy-able).
    image: float32 [H, W, C], the network input.
    tile: input pixels per tile side (what `fn` is compiled for).
    overlap: input pixels shared by neighbouring tiles (0 ≤ overlap < tile).
    scale: output pixels per input pixel (super-resolution), else 1.
    batch_size: tiles per call of `fn` (the last call is padded to it).
    out_channels: C_out when it differs from C.

  Returns:
    float32 [H·scale, W·scale, C_out].
  """
  if not 0 <= overlap < tile:
    raise UserError(f'--overlap={overlap} must be at least 0 and below --tile={tile}')
  h, w, c = image.shape
  pad_h, pad_w = max(tile - h, 0), max(tile - w, 0)
  if pad_h or pad_w:
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode='symmetric')
  big_h, big_w = image.shape[:2]
  ys, xs = _starts(big_h, tile, overlap), _starts(big_w, tile, overlap)
  windows = [(y, x) for y in ys for x in xs]
  out_c = out_channels or c
  total = np.zeros((big_h * scale, big_w * scale, out_c), np.float64)
  weight = np.zeros((big_h * scale, big_w * scale, 1), np.float64)
  size = tile * scale
  for start in range(0, len(windows), batch_size):
    chunk = windows[start:start + batch_size]
    batch = np.stack([image[y:y + tile, x:x + tile] for y, x in chunk])
    if len(chunk) < batch_size:
      batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - len(chunk), axis=0)])
    outputs = np.asarray(fn(batch.astype(np.float32)), np.float64)
    for (y, x), out in zip(chunk, outputs):
      wy = _ramp(size, overlap, scale, y > 0, y + tile < big_h)
      wx = _ramp(size, overlap, scale, x > 0, x + tile < big_w)
      window = (wy[:, None] * wx[None, :])[..., None]
      oy, ox = y * scale, x * scale
      total[oy:oy + size, ox:ox + size] += out * window
      weight[oy:oy + size, ox:ox + size] += window
  result = total / weight
  return result[:h * scale, :w * scale].astype(np.float32)


def read_picture(path, channels):
  """uint8 [H, W, channels] of a picture file (any bit depth; alpha onto white), or None when it
  cannot be read."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxgen.data.folder import to_8bit_image  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      array = np.asarray(to_8bit_image(image, channels), np.uint8)
  except Exception:  # noqa: BLE001 — PIL raises many types for broken files.
    return None
  return array[..., None] if array.ndim == 2 else array


def read_mask(path, shape):
  """float32 [H, W, 1], 1 where the mask picture is light (luma ≥ 128 = fill), or None when it
  cannot be read or its size is not `shape`."""
  mask = read_picture(path, 1)
  if mask is None or mask.shape[:2] != tuple(shape):
    return None
  return (mask >= 128).astype(np.float32)


class Translator:
  """A restored image-to-image run as fn(uint8 picture [H, W, C], mask or None) → output floats
  in [-1, 1], tiled (translate_tiled) with one compiled tile shape.

  The tile is `tile` input pixels rounded up to a multiple of what the generator's
  down-samplings need (2^num_downs); the overlap defaults to a quarter of it. `options`: keyword
  options of the recipe's `generate` (its `sampling_options`, e.g. CycleGAN's direction)."""

  def __init__(self, restored, mesh, tile=256, overlap=None, batch_size=4, options=None):
    import jax  # pylint: disable=import-outside-toplevel
    from jaxgen import parallel  # pylint: disable=import-outside-toplevel
    recipe = restored.recipe
    self.task = recipe.task
    multiple = 2 ** getattr(recipe, 'num_downs', 0)
    self.tile = -(-tile // multiple) * multiple
    self.overlap = self.tile // 4 if overlap is None else overlap
    if not 0 <= self.overlap < self.tile:
      raise UserError(f'--overlap={overlap} must be at least 0 and below the tile of '
                      f'{self.tile} px')
    self.batch_size = parallel.device_batch(batch_size, mesh)
    state = restored.state
    options = dict(options or {})
    generate = jax.jit(lambda x: recipe.generate(state, x, None, **options),
                       in_shardings=parallel.batch_sharding(mesh),
                       out_shardings=parallel.batch_sharding(mesh))
    self._fn = lambda batch: np.asarray(jax.device_get(generate(batch)))

  def __call__(self, image, mask=None):
    inputs = self.task.user_input(image, mask)
    return translate_tiled(self._fn, inputs, self.tile, self.overlap, self.task.scale,
                           self.batch_size, out_channels=self.task.channels)


def translate_files(translator, paths, outputs, masks=None, mask_colour=None):
  """Translates each picture of `paths` into `outputs[path]` (PNG, folders created); returns the
  paths written. Inpainting takes each picture's mask file from `masks` or, with `mask_colour`
  (R, G, B), its pixels within ±8 of that colour as holes. Unreadable pictures (or masks) are
  skipped with one warning each."""
  import logging  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  from jaxgen import summaries  # pylint: disable=import-outside-toplevel
  log = logging.getLogger('jaxgen')
  task = translator.task
  written = []
  for path in paths:
    image = read_picture(path, task.channels)
    if image is None:
      log.warning('Skipped %s: not a readable picture.', path)
      continue
    mask = None
    if task.name == 'inpaint':
      if masks:
        mask = read_mask(masks[path], image.shape[:2])
        if mask is None:
          log.warning('Skipped %s: its mask %s is not a readable picture of the same size.',
                      path, masks[path])
          continue
      else:
        distance = np.abs(image.astype(np.int32) - np.asarray(mask_colour)[:image.shape[-1]])
        mask = (distance.max(axis=-1, keepdims=True) <= 8).astype(np.float32)
    out = translator(image, mask)
    os.makedirs(os.path.dirname(outputs[path]) or '.', exist_ok=True)
    summaries.save_png(summaries.to_uint8(out), outputs[path])
    written.append(outputs[path])
  return written
