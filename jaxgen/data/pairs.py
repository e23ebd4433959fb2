"""`pairs:DIR` — real paired images for image-to-image translation (pix2pix's datasets).

Two layouts, as pix2pix's own datasets come:
  DIR/A/… and DIR/B/…   two folders whose files match by relative path (the input in A, the
                        target in B);
  DIR/…                 side-by-side images, the input (A) on the left half and the target (B)
                        on the right (pix2pix's `--dataset_mode aligned`, e.g. facades/train).

Each image is centre-cropped to a square and resized (Lanczos) to data.resolution as folder
sources are, when it is read: paired datasets are small (facades: 400 pairs), so there is no
cache. Every file's header is read once up front so that an unreadable file is reported before
training instead of in the middle of it. Examples are {'input': uint8 A, 'image': uint8 B,
'label': 0}; `task.direction='BtoA'` swaps the roles (jaxgen/data/tasks.py).

`pairs:embedded` (no folder, no download) is the paired version of CycleGAN's embedded domains
(jaxgen/data/unpaired.py): each procedural composition painted in domain A's palette (orange on
teal) and the same composition in domain B's (navy ink on parchment), so pix2pix learns with
pairs the restyling that CycleGAN learns without them, and the two can be compared on the same
task. A folder called `embedded` is `pairs:./embedded`.
"""

import os

import numpy as np
from PIL import Image

from jaxgen.data import procedural, unpaired
from jaxgen.data.folder import list_images, to_training_image
from jaxgen.errors import UserError


def _unmatched(root, a, b):
  only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
  parts = []
  for side, names in (('A', only_a), ('B', only_b)):
    if names:
      shown = ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')
      parts.append(f'{len(names)} only in {side}/ ({shown})')
  return UserError(f'pairs:{root} has files without a partner: {"; ".join(parts)}; A/ and B/ '
                   'must hold the same file names')


class PairsSource:
  """Random-access source of aligned (A, B) image pairs (see the module docstring)."""

  def __init__(self, root, resolution, channels=3):
    if not os.path.isdir(root):
      raise UserError(f'paired dataset {root!r} is not a directory: give a folder with A/ and '
                      'B/ sub-folders, or of side-by-side AB images, as data.source="pairs:DIR"')
    self.root = root
    dir_a, dir_b = os.path.join(root, 'A'), os.path.join(root, 'B')
    self.side_by_side = not (os.path.isdir(dir_a) or os.path.isdir(dir_b))
    if self.side_by_side:
      self.paths = list_images(root)
      if not self.paths:
        raise UserError(f'paired dataset {root!r} has no images: put side-by-side AB images in '
                        'it, or the inputs in A/ and the targets in B/')
    else:
      if not (os.path.isdir(dir_a) and os.path.isdir(dir_b)):
        raise UserError(f'paired dataset {root!r} has only one of A/ and B/: add the other '
                        '(inputs in A/, targets in B/, with the same file names)')
      a, b = list_images(dir_a), list_images(dir_b)
      if set(a) != set(b):
        raise _unmatched(root, a, b)
      if not a:
        raise UserError(f'paired dataset {root!r} has no images in A/ and B/')
      self.paths = a
    unreadable = []
    for rel in self.paths:
      for path in self._files(rel):
        try:
          with Image.open(path) as image:
            size = image.size
          if self.side_by_side and size[0] < 2:
            raise ValueError('too narrow to split')
        except Exception:  # noqa: BLE001 — PIL raises many types for broken files.
          unreadable.append(os.path.relpath(path, root))
    if unreadable:
      raise UserError(f'pairs:{root} has {len(unreadable)} unreadable image(s) (first: '
                      f'{unreadable[0]}): remove or replace them, since a pair needs both '
                      'images')
    self.name = f'pairs:{os.path.abspath(root)}'
    self.resolution = resolution
    self.channels = channels
    self.class_names = []
    self.num_classes = 0

  def _files(self, rel):
    if self.side_by_side:
      return [os.path.join(self.root, rel)]
    return [os.path.join(self.root, 'A', rel), os.path.join(self.root, 'B', rel)]

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    rel = self.paths[index]
    if self.side_by_side:
      with Image.open(self._files(rel)[0]) as image:
        image.load()
        w, h = image.size
        half = w // 2
        a, b = image.crop((0, 0, half, h)), image.crop((half, 0, 2 * half, h))
    else:
      path_a, path_b = self._files(rel)
      with Image.open(path_a) as a, Image.open(path_b) as b:
        a.load()
        b.load()
        a, b = a.copy(), b.copy()
    return {'input': to_training_image(a, self.resolution, self.channels),
            'image': to_training_image(b, self.resolution, self.channels),
            'label': np.int32(0)}


class EmbeddedPairsSource:
  """`pairs:embedded`: composition i of the embedded dataset of `seed` painted in domain A's
  palette (the input) and in domain B's (the target); see the module docstring."""

  def __init__(self, resolution, num_images, seed=0, channels=3):
    if not procedural.MIN_RESOLUTION <= resolution <= procedural.MAX_RESOLUTION:
      raise UserError(f'the embedded dataset renders {procedural.MIN_RESOLUTION}..'
                      f'{procedural.MAX_RESOLUTION} pixels, not data.resolution={resolution}')
    self.resolution, self.num_images = resolution, num_images
    self.seed, self.channels = seed, channels
    self.name = 'pairs:embedded'
    self.class_names = []
    self.num_classes = 0

  def __len__(self):
    return self.num_images

  def __getitem__(self, index):
    a, b = (procedural.render(int(index), self.resolution, self.seed, self.channels,
                              palette=palette)[0]
            for palette in (unpaired.PALETTE_A, unpaired.PALETTE_B))
    return {'input': a, 'image': b, 'label': np.int32(0)}
