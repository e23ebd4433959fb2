"""The input pipeline: a source chosen by `config.data.source`, batched for the mesh.

Sources (each a random-access sequence of {'image': uint8 [R, R, C], 'label': int32}):
  'embedded'            the procedural dataset shipped in the package (no download)
  'folder:PATH'         a folder of images, cached at the training resolution
  'tfds:NAME[:SPLIT]'   a prepared tensorflow-datasets dataset (split defaults to 'train')
  'pairs:DIR'           aligned image pairs for translation (jaxgen/data/pairs.py); examples
                        also hold the input image, 'input'; 'pairs:embedded' is the
                        embedded CycleGAN domains, paired
  'unpaired:A,B'        two unpaired domains (jaxgen/data/unpaired.py; also 'unpaired:embedded'
                        and 'tfds:cycle_gan/NAME'); examples hold an A image as 'input'

Held-out images. `data.holdout` > 0 keeps that many images of the source (a fixed seeded
choice) out of training for the evaluator; `eval.source`, when set, names another source to
evaluate on instead (e.g. pix2pix's val/ folder). Image-to-image runs score held-out pairs.

Examples may be transformed on the way (`transform(example, rng)`, e.g. an image-to-image
task's random crop and degradation, jaxgen/data/tasks.py) with grain's per-position generator.

Order. The global stream is a seeded shuffle of the source, reshuffled every epoch (grain's
`MapDataset.shuffle`), optionally x-flipped per example. Global batch `s` is elements
[s·B, (s+1)·B) of that stream whatever the number of processes: process `p` of `P` loads the
p-th contiguous block of B/P of them, and nothing else. So the batch at step `s` depends only
on (seed, s) and the data position is the step itself: resuming at step s restarts the
iterator at batch s, exactly.
"""

import grain
import numpy as np

from jaxgen.data import unpaired
from jaxgen.data.folder import FolderSource
from jaxgen.data.pairs import EmbeddedPairsSource, PairsSource
from jaxgen.data.procedural import MAX_RESOLUTION, MIN_RESOLUTION, ProceduralSource
from jaxgen.data.tfds_source import TfdsSource
from jaxgen.errors import UserError


def create_source(data_config):
  """Builds the source named by `data_config.source` (see the module docstring)."""
  spec = data_config.source
  kind, _, rest = spec.partition(':')
  resolution, channels = data_config.resolution, data_config.channels
  classes = tuple(data_config.get('classes', ()))
  if classes and kind != 'embedded':
    raise UserError(f'data.classes={classes} selects classes of the embedded dataset only; '
                    f'with data.source={spec!r} set --config.data.classes=() and point the '
                    'source at the images you want (e.g. one class folder)')
  rotation = data_config.get('rotation', 1.0)
  if rotation != 1.0 and kind != 'embedded':
    raise UserError(f'data.rotation={rotation} narrows the shapes of the embedded dataset only; '
                    f'with data.source={spec!r} set --config.data.rotation=1')
  if channels not in (1, 3):
    raise UserError(f'data.channels={channels} is not supported: use 1 (grayscale) or 3 (RGB)')
  if kind == 'embedded':
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
      raise UserError(f'the embedded dataset renders {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels, '
                      f'not data.resolution={resolution}')
    return ProceduralSource(resolution, data_config.num_images, data_config.seed, channels,
                            classes, rotation)
  if kind == 'folder':
    if not rest:
      raise UserError('data.source="folder:" needs a path, e.g. "folder:/data/my_art"')
    return FolderSource(rest, resolution, channels, data_config.use_labels,
                        data_config.cache_dir or None)
  if kind == 'tfds':
    name, _, split = rest.partition(':')
    if not name:
      raise UserError('data.source="tfds:" needs a dataset name, e.g. "tfds:cifar10:train"')
    if name.startswith('cycle_gan/') and split in ('', 'train', 'test'):
      return _cycle_gan(data_config, name, split or 'train')
    return TfdsSource(name, split or 'train', resolution, channels, data_config.use_labels,
                      data_config.tfds_data_dir or None, data_config.tfds_download)
  if kind == 'pairs':
    if not rest:
      raise UserError('data.source="pairs:" needs a path, e.g. "pairs:/data/facades/train"')
    if rest == 'embedded':
      return EmbeddedPairsSource(resolution, data_config.num_images, data_config.seed, channels)
    return PairsSource(rest, resolution, channels)
  if kind == 'unpaired':
    return _unpaired(data_config)
  raise UserError(f'unknown data.source {spec!r}: use "embedded", "folder:PATH", '
                  '"tfds:NAME[:SPLIT]", "pairs:DIR" or "unpaired:DIR_A,DIR_B"')


def _unpaired(data_config):
  """'unpaired:SPEC_A,SPEC_B' or 'unpaired:embedded' (jaxgen/data/unpaired.py)."""
  import copy  # pylint: disable=import-outside-toplevel
  spec = data_config.source
  if spec == 'unpaired:embedded':
    if not MIN_RESOLUTION <= data_config.resolution <= MAX_RESOLUTION:
      raise UserError(f'the embedded dataset renders {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels, '
                      f'not data.resolution={data_config.resolution}')
    return unpaired.embedded(data_config.resolution, data_config.num_images, data_config.seed,
                             data_config.channels)
  domains = []
  for side, part in zip('AB', unpaired.parse(spec)):
    if part.partition(':')[0] in ('unpaired', 'pairs'):
      raise UserError(f'domain {side} of data.source={spec!r} is {part!r}: each domain is one '
                      'collection of images (a folder, "tfds:NAME:SPLIT" or "embedded")')
    domain_config = copy.deepcopy(data_config)
    domain_config.source, domain_config.use_labels = part, False
    try:
      domains.append(create_source(domain_config))
    except UserError as e:
      raise UserError(f'domain {side} of data.source={spec!r}: {e}') from e
  return unpaired.UnpairedSource(*domains, data_config.seed)


def _cycle_gan(data_config, name, split):
  """tfds 'cycle_gan/NAME': split 'train' is trainA with trainB, 'test' testA with testB."""
  domains = [TfdsSource(name, split + side, data_config.resolution, data_config.channels, False,
                        data_config.tfds_data_dir or None, data_config.tfds_download)
             for side in 'AB']
  return unpaired.UnpairedSource(*domains, data_config.seed, name=f'tfds:{name}:{split}')


class Subset:
  """The examples of `source` at `indices`, in that order (a held-out split or its rest)."""

  def __init__(self, source, indices, what):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    self.name = f'{source.name} ({what})'
    self.num_classes = source.num_classes
    self.class_names = getattr(source, 'class_names', [])

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, index):
    return self.source[int(self.indices[index])]


HOLDOUT_SEED = 0x401D


def create_sources(config):
  """(training source, evaluation source) of a config (see "Held-out images" above); the two
  are the same object when nothing is held out."""
  source = create_source(config.data)
  holdout = int(config.data.get('holdout', 0))
  eval_spec = config.eval.get('source', '')
  if holdout < 0:
    raise UserError(f'data.holdout={holdout} is negative: give the number of images to keep '
                    'out of training (0 = none)')
  if holdout and eval_spec:
    raise UserError(f'both data.holdout={holdout} and eval.source={eval_spec!r} are set: '
                    'evaluate on held-out images or on another source, not both')
  if eval_spec:
    import copy  # pylint: disable=import-outside-toplevel
    eval_data = copy.deepcopy(config.data)
    eval_data.source = eval_spec
    return source, create_source(eval_data)
  if not holdout:
    return source, source
  if hasattr(source, 'hold_out'):  # Sources of several collections split each one.
    return source.hold_out(holdout, HOLDOUT_SEED)
  if holdout >= len(source):
    raise UserError(f'data.holdout={holdout} leaves no training images of the {len(source)} in '
                    f'{config.data.source!r}: hold out fewer')
  order = np.random.default_rng(HOLDOUT_SEED).permutation(len(source))
  return (Subset(source, np.sort(order[holdout:]), 'training part'),
          Subset(source, np.sort(order[:holdout]), f'{holdout} held out'))


def _xflip(example, rng):
  """Flips an example's images (both of a pair) left-right with probability 1/2."""
  if rng.random() < 0.5:
    example = dict(example, **{k: np.ascontiguousarray(example[k][:, ::-1])
                               for k in ('image', 'input') if k in example})
  return example


def batches(source, global_batch_size, seed, *, xflip=False, transform=None, start_step=0,
            process_index=0, process_count=1, num_threads=4, prefetch=4):
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
  if transform is not None:
    ds = ds.random_map(transform)
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
