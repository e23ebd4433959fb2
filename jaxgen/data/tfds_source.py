"""`tfds:NAME[:SPLIT]` — a tensorflow-datasets dataset, read with random access.

Uses `tfds.data_source`, which reads the ArrayRecord files of a prepared dataset without
TensorFlow; each process only decodes the examples of its own shard of every batch (the
pipeline slices batches by process). Images are centre-cropped and resized (Lanczos) to the
configured resolution on the fly, as the folder source does.
"""

import os

import numpy as np
from PIL import Image

from jaxgen.data.folder import to_training_image
from jaxgen.errors import UserError


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
    image = np.asarray(example[self.image_key])
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    label = np.int32(example[self.label_key]) if self.label_key else np.int32(0)
    return {'image': to_training_image(pil, self.resolution, self.channels), 'label': label}
