"""`folder:PATH` — a user's own images (jpg, png, webp, bmp, tiff) in any sizes and modes.

The folder is decoded once into a cache of uint8 arrays at the training resolution (like
StyleGAN2-ADA's dataset_tool, but automatic): training then reads memory-mapped arrays and
needs neither TensorFlow nor per-step JPEG decoding. The cache key covers every file's path,
size and modification time, the resolution, the channel count and the labelling, so an edited
folder gets a fresh cache. A cache entry is written under a temporary name and renamed into
place; an entry that fails to load is rebuilt. The source folder is only ever read.

High bit depths are reduced to 8 bits by one rule, scikit-image's `img_as_ubyte`: an integer
sample keeps its top 8 bits (16-bit v → v >> 8, signed 32-bit v → max(v, 0) >> 23), a float
sample maps [0, 1] → [0, 255], clipped and rounded. Pillow already reduces 16-bit RGB(A) PNGs
this way (v >> 8) when it opens them, so a 16-bit picture gives the same bytes in gray or RGB.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from jaxgen.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif', '.tiff')
# 2: high-bit-depth images scaled to 8 bits (version 1 clipped them, e.g. 16-bit gray to white);
# meta.json records the images' sizes for the small-images warning.
_CACHE_VERSION = 2
_UINT16_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')

log = logging.getLogger(__name__)


def default_cache_dir():
  return os.path.join(os.environ.get('JAXGEN_CACHE', os.path.expanduser('~/.cache/jaxgen')),
                      'datasets')


def list_images(root):
  """Sorted relative paths of image files under `root` (recursive), by extension."""
  if not os.path.isdir(root):
    raise UserError(f'folder dataset {root!r} is not a directory: give an existing folder of '
                    'images as data.source="folder:/path/to/images"')
  paths = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()
    for name in sorted(filenames):
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'):
        paths.append(os.path.relpath(os.path.join(dirpath, name), root))
  return paths


def _int_sample_format(image):
  """(bits, signed) of a mode-'I' image's samples, from its file. Pillow uses 'I' for 32-bit
  TIFFs (and for signed 16-bit ones), and older Pillows for 16-bit grayscale PNGs too; the
  values alone cannot tell these apart, the file's header can."""
  if image.format == 'PNG':
    return 16, False  # PNG samples are unsigned and at most 16 bits.
  tags = getattr(image, 'tag_v2', None)
  if image.format == 'TIFF' and tags is not None:
    bits, fmt = tags.get(258, 32), tags.get(339, 1)  # BitsPerSample, SampleFormat (1: uint).
    bits = bits[0] if isinstance(bits, tuple) else bits
    fmt = fmt[0] if isinstance(fmt, tuple) else fmt
    if bits in (16, 32):
      return bits, fmt == 2
  return 32, True


def _to_8bit(image):
  """A high-bit-depth grayscale PIL image (16-bit, 'I' or 'F') as 8-bit 'L' (see the module
  docstring for the rule); other images are returned as they are."""
  if image.mode in _UINT16_MODES:
    bits, signed = 16, False
  elif image.mode == 'I':
    bits, signed = _int_sample_format(image)
  elif image.mode == 'F':
    values = np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return Image.fromarray(np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8), 'L')
  else:
    return image
  values = np.asarray(image).astype(np.int64)
  if not signed:
    values &= (1 << bits) - 1  # Pillow holds unsigned 32-bit TIFF samples as int32: unwrap.
  values = np.maximum(values, 0) >> (bits - signed - 8)
  return Image.fromarray(values.astype(np.uint8), 'L')


def to_8bit_image(image, channels):
  """A PIL image as 8-bit 'L' (channels 1) or 'RGB' (3): high bit depths reduced (see the module
  docstring), transparency composited onto white."""
  image = _to_8bit(image)
  if image.mode in ('P', 'LA') or (image.mode == 'RGB' and 'transparency' in image.info):
    image = image.convert('RGBA')
  if image.mode == 'RGBA':
    white = Image.new('RGBA', image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image)
  return image.convert('L' if channels == 1 else 'RGB')


def to_training_image(image, resolution, channels):
  """Centre-crops a PIL image to a square and resizes it (Lanczos) to resolution².

  High-bit-depth images are first reduced to 8 bits (see the module docstring); RGBA and palette
  images are composited onto white; grayscale is repeated to RGB or RGB is converted to luma, as
  `channels` (1 or 3) asks.

  Returns:
    uint8 [resolution, resolution, channels].
  """
  image = to_8bit_image(image, channels)
  w, h = image.size
  side = min(w, h)
  left, top = (w - side) // 2, (h - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != resolution:
    image = image.resize((resolution, resolution), Image.LANCZOS)
  array = np.asarray(image, dtype=np.uint8)
  return array[..., None] if channels == 1 else array


def _cache_key(root, paths, resolution, channels, use_labels):
  digest = hashlib.sha256()
  digest.update(json.dumps([_CACHE_VERSION, os.path.abspath(root), resolution, channels,
                            use_labels]).encode())
  for rel in paths:
    st = os.stat(os.path.join(root, rel))
    digest.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return digest.hexdigest()[:24]


def _load_cache(entry):
  """Returns (images memmap, labels, meta) or None when the entry is missing or unusable."""
  try:
    with open(os.path.join(entry, 'meta.json')) as f:
      meta = json.load(f)
    images = np.load(os.path.join(entry, 'images.npy'), mmap_mode='r')
    labels = np.load(os.path.join(entry, 'labels.npy'))
    if (images.shape != tuple(meta['shape']) or images.dtype != np.uint8
        or labels.shape != (images.shape[0],)):
      raise ValueError('shape mismatch')
    return images, labels, meta
  except (FileNotFoundError, NotADirectoryError):  # Not built yet, or a cache_dir to refuse.
    return None
  except Exception as e:  # noqa: BLE001 — any unreadable entry is rebuilt, never trusted.
    log.warning('Rebuilding the unusable dataset cache %s (%s).', entry, e)
    return None


def _unwritable(folder, error):
  return UserError(f'could not write the dataset cache in {folder!r} '
                   f'({error.strerror or type(error).__name__}): set data.cache_dir (or '
                   '$JAXGEN_CACHE) to a writable folder')


def _decode(root, paths, resolution, channels, use_labels):
  """Every readable image at the training resolution: (uint8 [N, R, R, C], int32 [N], meta)."""
  class_names = sorted({os.path.dirname(p).split(os.sep)[0] for p in paths}) if use_labels else []
  class_index = {name: i for i, name in enumerate(class_names)}
  images, labels, skipped, sides = [], [], [], []
  for rel in paths:
    try:
      with Image.open(os.path.join(root, rel)) as image:
        image.load()
        images.append(to_training_image(image, resolution, channels))
        sides.append(min(image.size))
    except Exception:  # noqa: BLE001 — PIL raises many types for broken files.
      skipped.append(rel)
      continue
    labels.append(class_index[rel.split(os.sep)[0]] if use_labels else 0)
  if skipped:
    log.warning('Skipped %d unreadable image file(s) in %s (first: %s).', len(skipped),
                root, skipped[0])
  if not images:
    raise UserError(f'folder dataset {root!r} has no usable image ({len(paths)} candidate '
                    f'file(s), {len(skipped)} unreadable): add .jpg/.png/.webp/.bmp/.tif files')
  # Shorter sides before cropping, in pixels: upscaled more than 2× when under resolution/2.
  meta = {'root': os.path.abspath(root), 'shape': [len(images), resolution, resolution, channels],
          'class_names': class_names, 'skipped': len(skipped), 'min_side': min(sides),
          'num_small': sum(2 * side < resolution for side in sides)}
  return np.stack(images), np.asarray(labels, np.int32), meta


def _build_cache(root, paths, entry, resolution, channels, use_labels):
  folder = os.path.dirname(entry)
  try:  # Before decoding: an unwritable cache fails at once, not after the whole folder.
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=folder)
  except OSError as e:
    raise _unwritable(folder, e) from e
  try:
    images, labels, meta = _decode(root, paths, resolution, channels, use_labels)
    try:
      np.save(os.path.join(tmp, 'images.npy'), images)
      np.save(os.path.join(tmp, 'labels.npy'), labels)
      with open(os.path.join(tmp, 'meta.json'), 'w') as f:
        json.dump(meta, f)
      if os.path.exists(entry):
        shutil.rmtree(entry)
      os.replace(tmp, entry)
    except OSError as e:  # E.g. the disk filled up.
      raise _unwritable(folder, e) from e
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _warn_if_small(root, meta, resolution):
  """One warning when most images are upscaled more than 2× (shorter side < resolution/2):
  training goes on, but on blurry images."""
  count, small = meta['shape'][0], meta.get('num_small', 0)
  if 2 * small > count:
    log.warning('%d of %d images in %s have a shorter side under %d px (smallest: %d px), so '
                'they are upscaled more than 2× to data.resolution=%d: set a lower '
                'data.resolution or use larger images.', small, count, root,
                (resolution + 1) // 2, meta['min_side'], resolution)


class FolderSource:
  """Random-access source over a folder of images, cached at the training resolution."""

  def __init__(self, root, resolution, channels=3, use_labels=False, cache_dir=None):
    if resolution < 1:  # Checked before any image is read: every image would fail to resize.
      raise UserError(f'data.resolution={resolution} is not an image size: set data.resolution '
                      'to the side of the square training images in pixels, e.g. 64')
    paths = list_images(root)
    if not paths:
      raise UserError(f'folder dataset {root!r} contains no image files '
                      f'({"/".join(IMAGE_EXTENSIONS)}): put images in it or fix the path')
    if use_labels and all(os.sep not in p for p in paths):
      raise UserError(f'data.use_labels=True needs one sub-folder per class in {root!r}, '
                      'but all images are at the top level: move them into class folders or '
                      'set data.use_labels=False')
    cache_dir = cache_dir or default_cache_dir()
    entry = os.path.join(cache_dir, 'folder-' + _cache_key(root, paths, resolution, channels,
                                                           use_labels))
    cached = _load_cache(entry)
    if cached is None:
      log.info('Preparing %d images from %s at %d² into %s.', len(paths), root, resolution,
               entry)
      _build_cache(root, paths, entry, resolution, channels, use_labels)
      cached = _load_cache(entry)
      if cached is None:
        raise UserError(f'could not write the dataset cache {entry!r}: set data.cache_dir (or '
                        '$JAXGEN_CACHE) to a writable folder')
    self.images, self.labels, meta = cached
    _warn_if_small(root, meta, resolution)
    self.name = f'folder:{os.path.abspath(root)}'
    self.resolution = resolution
    self.channels = channels
    self.class_names = meta['class_names']
    self.num_classes = len(self.class_names) if use_labels else 0

  def __len__(self):
    return self.images.shape[0]

  def __getitem__(self, index):
    return {'image': np.asarray(self.images[index]), 'label': self.labels[index]}
