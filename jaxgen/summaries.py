"""What a run shows: TensorBoard scalars and images, PNG sample grids, the progress bar.

Only process 0 writes; other processes get no-op writers, so callers need no `if`.
"""

import math
import os
import sys

import numpy as np
from PIL import Image


def to_uint8(images):
  """Floats in [-1, 1] (clipped) → uint8 [0, 255]; uint8 stays as it is."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, columns=None):
  """[N, H, W, C] floats in [-1, 1] (or uint8) → one uint8 [rows·H, cols·W, C] grid."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or grid_columns(n)
  rows = int(math.ceil(n / columns))
  grid = np.zeros((rows * h, columns * w, c), np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
  return grid


def grid_columns(count, num_classes=0):
  """Columns for a grid of `count` samples whose labels cycle through `num_classes` classes
  (sample i has label i mod K, as the evaluator draws them): a multiple of K near √count, so that
  every column holds one class; without classes (or with more than `count`), ⌈√count⌉."""
  if not num_classes or num_classes > count:
    return int(math.ceil(math.sqrt(count)))
  return num_classes * max(1, round(math.sqrt(count) / num_classes))


def save_png(grid, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp.png'
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp)
  os.replace(tmp, path)


class Writer:
  """TensorBoard (tensorboardX) scalars and images under DIR/tensorboard, and PNG grids."""

  def __init__(self, workdir, enabled=True):
    self.enabled = enabled
    self.workdir = workdir
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), flush_secs=30)

  def scalars(self, step, values):
    if self.enabled:
      for name, value in values.items():
        self._tb.add_scalar(name, float(value), step)

  def images(self, step, name, images, png_name=None, columns=None):
    """Logs a grid of `images` ([N, H, W, C] in [-1, 1]) and saves DIR/samples/<png_name>."""
    if not self.enabled:
      return
    grid = image_grid(images, columns)
    self._tb.add_image(name, grid, step, dataformats='HWC')
    if png_name:
      save_png(grid, os.path.join(self.workdir, 'samples', png_name))

  def text(self, step, name, text):
    if self.enabled:
      self._tb.add_text(name, text, step)

  def flush(self):
    if self.enabled:
      self._tb.flush()

  def close(self):
    if self.enabled:
      self._tb.close()


def progress_bar(total, initial, enabled=True):
  """A tqdm bar over steps with ETA; on a non-terminal it redraws at most every 30 s."""
  from tqdm import tqdm
  interactive = sys.stderr.isatty()
  return tqdm(total=total, initial=initial, disable=not enabled, unit='step', dynamic_ncols=True,
              mininterval=0.5 if interactive else 30.0, smoothing=0.1, file=sys.stderr)
