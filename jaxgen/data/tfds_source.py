"""`tfds:NAME[:SPLIT]` — a tensorflow-datasets dataset, read with random access.

Uses `tfds.data_source`, which reads the ArrayRecord files of a prepared dataset without
TensorFlow; each process only decodes the examples of its own shard of every batch (the
pipeline slices batches by process). Images are centre-cropped and resized (Lanczos) to the
configured resolution on the fly, as the folder source does.

Paired super-resolution datasets (`PAIRED_SR`) give each example's low-resolution image as its
'input', for task sr (jaxgen/data/tasks.py takes it instead of down-scaling the target):
`tfds:div2k/bicubic_x4` (DIV2K, Agustsson & Timofte 2017: 800 train / 100 validation 2K images,
features 'hr' and 'lr'; configs bicubic_x2/x3/x4/x8, unknown_x2/x3/x4 and realistic_mild_x4,
realistic_difficult_x4, realistic_wild_x4 — the scale is the config name's `_xN`). Resizing
would change the degradation that relates the pair, so neither image is resampled: the example
is the centre data.resolution² window of the HR image at its own pixels and the LR window it
was made from, (data.resolution / N)², its corner on the LR pixel grid (images with a shorter
side are scaled, both, with a warning; pick data.resolution ≤ the images' short side, DIV2K's
is ≥ 648). The realistic_* configs (NTIRE 2018's tracks 2–4) degrade with blur, noise and
small shifts, so their pairs are aligned only up to those shifts. tfds's other image pairs —
segmentation maps (cityscapes, scene_parse150) and depth (nyu_depth_v2) — are class ids or
depths, not pictures, and cycle_gan is unpaired (jaxgen/data/unpaired.py).
"""

import logging
import os
import re

import numpy as np
from PIL import Image

from jaxgen.data.folder import to_training_image
from jaxgen.errors import UserError

log = logging.getLogger(__name__)

# tfds datasets of (low-resolution, high-resolution) pairs: {name: (input feature, target
# feature)}; the scale is the builder config's `_xN`.
PAIRED_SR = {'div2k': ('lr', 'hr')}


def _default_data_dir():
  return os.environ.get('TFDS_DATA_DIR', os.path.expanduser('~/tensorflow_datasets'))


def _missing_data_message(name, split, data_dir, cause):
  return (f'tfds dataset {name!r} (split {split!r}) is not prepared in {data_dir!r} and could '
          f'not be prepared ({type(cause).__name__}: {str(cause).splitlines()[0][:160]}): on a '
          f'machine with network run `tfds build {name} --file_format=array_record '
          f'--data_dir={data_dir}` (datasets with manual downloads also need '
          '--manual_dir), then copy that folder here or point data.tfds_data_dir / '
          '$TFDS_DATA_DIR at it')


class TfdsSource:
  """Random-access source over a prepared tfds dataset split."""

  def __init__(self, name, split, resolution, channels=3, use_labels=False, data_dir=None,
               download=True, image_key='image', label_key='label'):
    import tensorflow_datasets as tfds  # Imported here: only `tfds:` sources need it.

    data_dir = data_dir or _default_data_dir()
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 — tfds raises DatasetNotFoundError and others.
      raise UserError(f'unknown tfds dataset {name!r} ({str(e).splitlines()[0][:160]}): check '
                      'the name against `tfds.list_builders()`') from e
    try:
      if not builder.is_prepared():
        if not download:
          raise FileNotFoundError('data.tfds_download is False')
        builder.download_and_prepare(file_format='array_record')
      self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 — network, missing-file and format errors alike.
      raise UserError(_missing_data_message(name, split, data_dir, e)) from e

    features = builder.info.features
    self.input_key, self.scale = None, 1
    if name.split('/')[0] in PAIRED_SR:
      self.input_key, image_key = PAIRED_SR[name.split('/')[0]]
      self.scale = _config_scale(name, builder)
      if resolution % self.scale:
        raise UserError(f'data.resolution={resolution} is not divisible by the ×{self.scale} of '
                        f'tfds:{name}: its low-resolution images would have a fraction of a '
                        f'pixel; choose a multiple of {self.scale}')
    if image_key not in features:
      raise UserError(f'tfds dataset {name!r} has no {image_key!r} feature (it has '
                      f'{sorted(features.keys())}): set data.image_key')
    self.label_key = label_key if use_labels else None
    if use_labels:
      if label_key not in features or not hasattr(features[label_key], 'num_classes'):
        raise UserError(f'labels were requested but tfds dataset {name!r} has no class label '
                        f'feature {label_key!r}: set data.use_labels=False or data.label_key')
      self.num_classes = features[label_key].num_classes
    else:
      self.num_classes = 0
    self.image_key = image_key
    self.name = f'tfds:{name}:{split}'
    self.resolution = resolution
    self.channels = channels

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    example = self._source[int(index)]
    label = np.int32(example[self.label_key]) if self.label_key else np.int32(0)
    if self.input_key:
      low, high = self._sr_windows(np.asarray(example[self.input_key]),
                                   np.asarray(example[self.image_key]), index)
      return {'input': low, 'image': high, 'label': label}
    return {'image': self._image(np.asarray(example[self.image_key]), self.resolution),
            'label': label}

  def _image(self, array, size):
    """uint8 [H, W, c] → the centre square resized (Lanczos) to size², data.channels."""
    pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    return to_training_image(pil, size, self.channels)

  _warned_small = False

  def _sr_windows(self, low, high, index):
    """The aligned centre windows of a (LR, HR) pair: (R/s)² of LR, R² of HR, R =
    data.resolution, s = the scale; the LR window's corner is on the LR grid and the HR
    window's s times it, so that pixel (i, j) of LR is made from HR's s×s block at (s·i, s·j)."""
    s, size = self.scale, self.resolution
    small = size // s
    h, w = low.shape[:2]
    if min(h, w) < small or high.shape[0] < h * s or high.shape[1] < w * s:
      if not self._warned_small:
        log.warning('%s: image %d (LR %dx%d, HR %dx%d) is smaller than data.resolution=%d: '
                    'such pairs are resized, which changes their degradation; lower '
                    'data.resolution', self.name, index, w, h, high.shape[1], high.shape[0], size)
        self._warned_small = True
      return self._image(low, small), self._image(high, size)
    top, left = (h - small) // 2, (w - small) // 2
    low = low[top:top + small, left:left + small]
    high = high[s * top:s * top + size, s * left:s * left + size]
    return self._image(low, small), self._image(high, size)


def _config_scale(name, builder):
  """The scale of a paired SR dataset's builder config, e.g. 4 for div2k/bicubic_x4."""
  config = builder.builder_config.name if builder.builder_config else ''
  match = re.search(r'_x(\d+)$', config)
  if not match:
    raise UserError(f'tfds:{name}: its config {config!r} names no scale (_xN); give one as '
                    'NAME/CONFIG, e.g. tfds:div2k/bicubic_x4')
  return int(match.group(1))
