"""The input pipeline: a source chosen by `config.data.source`, batched for the mesh.

Sources (each a random-access sequence of {'image': uint8 [R, R, C], 'label': int32}):
  'embedded'            the procedural dataset shipped in the package (no download)
  'folder:PATH'         a folder of images, cached at the training resolution
  'tfds:NAME[:SPLIT]'   a prepared tensorflow-datasets dataset (split defaults to 'train')

Order. The global stream is a seeded shuffle of the source, reshuffled every epoch (grain's
`MapDataset.shuffle`), optionally x-flipped per example. Global batch `s` is elements
[s·B, (s+1)·B) of that stream whatever the number of processes: process `p` of `P` loads the
p-th contiguous block of B/P of them, and nothing else. So the batch at step `s` depends only
on (seed, s) and the data position is the step itself: resuming at step s restarts the
iterator at batch s, exactly.
"""

import grain
import numpy as np

from jaxgen.data.folder import FolderSource
from jaxgen.data.procedural import MAX_RESOLUTION, MIN_RESOLUTION, ProceduralSource
from jaxgen.data.tfds_source import TfdsSource
from jaxgen.errors import UserError


def create_source(data_config):
  """Builds the source named by `data_config.source` (see the module docstring)."""
  spec = data_config.source
  kind, _, rest = spec.partition(':')
  resolution, channels = data_config.resolution, data_config.channels
  if channels not in (1, 3):
    raise UserError(f'data.channels={channels} is not supported: use 1 (grayscale) or 3 (RGB)')
  if kind == 'embedded':
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
      raise UserError(f'the embedded dataset renders {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels, '
                      f'not data.resolution={resolution}')
    return ProceduralSource(resolution, data_config.num_images, data_config.seed, channels)
  if kind == 'folder':
    if not rest:
      raise UserError('data.source="folder:" needs a path, e.g. "folder:/data/my_art"')
    return FolderSource(rest, resolution, channels, data_config.use_labels,
                        data_config.cache_dir or None)
  if kind == 'tfds':
    name, _, split = rest.partition(':')
    if not name:
      raise UserError('data.source="tfds:" needs a dataset name, e.g. "tfds:cifar10:train"')
    return TfdsSource(name, split or 'train', resolution, channels, data_config.use_labels,
                      data_config.tfds_data_dir or None, data_config.tfds_download)
  raise UserError(f'unknown data.source {spec!r}: use "embedded", "folder:PATH" or '
                  '"tfds:NAME[:SPLIT]"')


def _xflip(example, rng):
  if rng.random() < 0.5:
    example = dict(example, image=np.ascontiguousarray(example['image'][:, ::-1]))
  return example


def batches(source, global_batch_size, seed, *, xflip=False, start_step=0, process_index=0,
            process_count=1, num_threads=4, prefetch=4):
  """Iterator over this process's share of every global batch, from `start_step` on.

  Yields:
    {'image': uint8 [B/P, R, R, C], 'label': int32 [B/P]} — rows [p·B/P, (p+1)·B/P) of the
    global batch at each step.
  """
  if global_batch_size % process_count:
    raise UserError(f'batch size {global_batch_size} is not divisible by the {process_count} '
                    'processes: choose a multiple')
  local = global_batch_size // process_count
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  if xflip:
    ds = ds.random_map(_xflip)
  ds = ds.batch(local)[process_index::process_count][start_step:]
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  return iter(ds.to_iter_dataset(read))


def fixed_examples(source, count, seed=0):
  """`count` examples picked by a seeded permutation (e.g. for metric references), stacked."""
  count = min(count, len(source))
  picks = np.random.default_rng(seed).permutation(len(source))[:count]
  examples = [source[int(i)] for i in picks]
  return {'image': np.stack([e['image'] for e in examples]),
          'label': np.asarray([e['label'] for e in examples], np.int32)}
