"""`folder:PATH` — a user's own images (jpg, png, webp, bmp) in any sizes and modes.

The folder is decoded once into a cache of uint8 arrays at the training resolution (like
StyleGAN2-ADA's dataset_tool, but automatic): training then reads memory-mapped arrays and
needs neither TensorFlow nor per-step JPEG decoding. The cache key covers every file's path,
size and modification time, the resolution, the channel count and the labelling, so an edited
folder gets a fresh cache. A cache entry is written under a temporary name and renamed into
place; an entry that fails to load is rebuilt. The source folder is only ever read.
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

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp')
_CACHE_VERSION = 1

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


def to_training_image(image, resolution, channels):
  """Centre-crops a PIL image to a square and resizes it (Lanczos) to resolution².

  RGBA and palette images are composited onto white; grayscale is repeated to RGB or RGB is
  converted to luma, as `channels` (1 or 3) asks.

  Returns:
    uint8 [resolution, resolution, channels].
  """
  if image.mode in ('P', 'LA') or (image.mode == 'RGB' and 'transparency' in image.info):
    image = image.convert('RGBA')
  if image.mode == 'RGBA':
    white = Image.new('RGBA', image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image)
  image = image.convert('L' if channels == 1 else 'RGB')
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
  except FileNotFoundError:
    return None
  except Exception as e:  # noqa: BLE001 — any unreadable entry is rebuilt, never trusted.
    log.warning('Rebuilding the unusable dataset cache %s (%s).', entry, e)
    return None


def _build_cache(root, paths, entry, resolution, channels, use_labels):
  class_names = sorted({os.path.dirname(p).split(os.sep)[0] for p in paths}) if use_labels else []
  class_index = {name: i for i, name in enumerate(class_names)}
  images, labels, skipped = [], [], []
  for rel in paths:
    try:
      with Image.open(os.path.join(root, rel)) as image:
        image.load()
        images.append(to_training_image(image, resolution, channels))
    except Exception:  # noqa: BLE001 — PIL raises many types for broken files.
      skipped.append(rel)
      continue
    labels.append(class_index[rel.split(os.sep)[0]] if use_labels else 0)
  if skipped:
    log.warning('Skipped %d unreadable image file(s) in %s (first: %s).', len(skipped),
                root, skipped[0])
  if not images:
    raise UserError(f'folder dataset {root!r} has no usable image ({len(paths)} candidate '
                    f'file(s), {len(skipped)} unreadable): add .jpg/.png/.webp/.bmp files')
  os.makedirs(os.path.dirname(entry), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tmp-', dir=os.path.dirname(entry))
  try:
    np.save(os.path.join(tmp, 'images.npy'), np.stack(images))
    np.save(os.path.join(tmp, 'labels.npy'), np.asarray(labels, np.int32))
    meta = {'root': os.path.abspath(root), 'shape': [len(images), resolution, resolution,
                                                     channels],
            'class_names': class_names, 'skipped': len(skipped)}
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f)
    if os.path.exists(entry):
      shutil.rmtree(entry)
    os.replace(tmp, entry)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


class FolderSource:
  """Random-access source over a folder of images, cached at the training resolution."""

  def __init__(self, root, resolution, channels=3, use_labels=False, cache_dir=None):
    paths = list_images(root)
    if not paths:
      raise UserError(f'folder dataset {root!r} contains no image files '
                      f'({"/".join(IMAGE_EXTENSIONS)}): put images in it or fix the path')
    if use_labels and all(os.sep not in p for p in paths):
      raise UserError(f'data.folder_labels=True needs one sub-folder per class in {root!r}, '
                      'but all images are at the top level: move them into class folders or '
                      'set data.folder_labels=False')
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
    self.name = f'folder:{os.path.abspath(root)}'
    self.resolution = resolution
    self.channels = channels
    self.class_names = meta['class_names']
    self.num_classes = len(self.class_names) if use_labels else 0

  def __len__(self):
    return self.images.shape[0]

  def __getitem__(self, index):
    return {'image': np.asarray(self.images[index]), 'label': self.labels[index]}
