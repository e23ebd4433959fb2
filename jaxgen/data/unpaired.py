"""Two-domain (unpaired) data: images of a domain A and of a domain B, never matched.

CycleGAN and AdaIN learn from two collections of images that are not pairs (horses and zebras;
photos and paintings). `data.source` names them as

  'unpaired:SPEC_A,SPEC_B'   each SPEC a folder path or any single-domain source spec
                             ('folder:PATH', 'tfds:NAME:SPLIT', 'embedded', ...)
  'unpaired:embedded'        the embedded two-domain data (below; no download)
  'tfds:cycle_gan/NAME'      CycleGAN's datasets (horse2zebra, monet2photo, ...): split 'train'
                             (the default) is trainA with trainB, 'test' is testA with testB

Examples are {'input': uint8 [R, R, C] an A image, 'image': uint8 [R, R, C] a B image,
'label': 0}. As the official UnalignedDataset, the source is as long as the larger domain and
example i holds A image i mod |A|; its B image is the (i mod |B|)-th of a seeded permutation of
B, so every image of both domains is seen every epoch (those of the smaller domain more than
once) and which B goes with which A is an arbitrary, fixed choice (CycleGAN's losses are a sum
of an A term and a B term, so the pairing carries no signal; the pipeline reshuffles the order
every epoch). Everything is a function of (seed, index), so batches stay deterministic in
(seed, step) and resuming stays exact.

The embedded two-domain data. Both domains are the embedded procedural compositions (discs,
stripes, checkers, blobs, ...), each painted in a fixed two-colour palette instead of random
colours: domain A orange on teal, domain B navy ink on parchment, and B's compositions are
*different* ones (another seed), so no B image is the translation of an A image. Because the
restyling f (A's palette → B's, the composition kept) is known, a translation A → B can be
measured against f(a), which CycleGAN never sees: `truth_a[i]` is {'image': f(domain_a[i])}.
Fixed palettes, not random colours, because CycleGAN's generators normalise every image's
colour statistics away (instance norm): a random colour could never be translated back.

Held-out images. `data.holdout=N` keeps N images of each domain (a fixed seeded choice) out of
training (`hold_out`); the evaluator translates the held-out A images and compares them with
the held-out B images.

`UnpairedTask` is what a recipe trained on these sources (CycleGAN) gives as its `task`
(jaxgen/recipes/__init__.py): training examples are each domain's own random crop and flip, as
the official code transforms A and B images independently; evaluation images are centre crops;
a user's picture is translated as it is.
"""

import numpy as np

from jaxgen.data import degrade, procedural
from jaxgen.errors import UserError

# The embedded domains' (background, foreground) colours in [0, 1]: A orange on teal, B navy on
# parchment (the shape lighter than its ground in A, darker in B). The procedural background's
# faint tilt (±0.3 at the corners) stays visible on both.
PALETTE_A = ((0.15, 0.45, 0.48), (0.96, 0.58, 0.20))
PALETTE_B = ((0.85, 0.78, 0.62), (0.12, 0.16, 0.38))
# Domain B's compositions are drawn with this seed offset: other images than domain A's.
_DOMAIN_B_SEED_OFFSET = 0xB
# The permutation of domain B (see the module docstring) is seeded with this and data.seed.
_PAIRING_SEED = 0x5EED


class ListSource:
  """The examples of `source` at `indices`, in that order (one domain's split)."""

  def __init__(self, source, indices, what):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    self.name = f'{source.name} ({what})'
    self.num_classes = 0

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, index):
    return self.source[int(self.indices[index])]


class PaletteSource:
  """The procedural compositions of `seed` painted in `palette` (a domain of the embedded data)."""

  def __init__(self, resolution, num_images, seed, channels, palette, name):
    self.resolution, self.num_images = resolution, num_images
    self.seed, self.channels, self.palette = seed, channels, palette
    self.name = name
    self.num_classes = 0

  def __len__(self):
    return self.num_images

  def __getitem__(self, index):
    image, _ = procedural.render(int(index), self.resolution, self.seed, self.channels,
                                 self.palette)
    return {'image': image, 'label': np.int32(0)}


class UnpairedSource:
  """Random-access source of unpaired (A, B) examples (see the module docstring).

  Attributes:
    domain_a, domain_b: the two single-domain sources ({'image', 'label'} examples).
    truth_a: None, or a source aligned with domain_a whose images are the true translations
      f(a) (the embedded data).
  """

  def __init__(self, domain_a, domain_b, seed, truth_a=None, name=None):
    for side, domain in (('A', domain_a), ('B', domain_b)):
      if not len(domain):
        raise UserError(f'domain {side} of the unpaired data ({domain.name}) has no images: '
                        'give two non-empty image collections')
    self.domain_a, self.domain_b, self.truth_a = domain_a, domain_b, truth_a
    self.seed = seed
    self.name = name or f'unpaired:{domain_a.name},{domain_b.name}'
    self.num_classes = 0
    self.class_names = []
    self._b_order = np.random.default_rng([_PAIRING_SEED, seed]).permutation(len(domain_b))

  def __len__(self):
    return max(len(self.domain_a), len(self.domain_b))

  def __getitem__(self, index):
    index = int(index)
    a = self.domain_a[index % len(self.domain_a)]
    b = self.domain_b[int(self._b_order[index % len(self.domain_b)])]
    return {'input': a['image'], 'image': b['image'], 'label': np.int32(0)}

  def hold_out(self, count, seed):
    """(training source, held-out source): `count` images of each domain (a seeded choice) kept
    out of training. UserError when a domain has no more than `count` images."""
    for side, domain in (('A', self.domain_a), ('B', self.domain_b)):
      if count >= len(domain):
        raise UserError(f'data.holdout={count} leaves no training images of the {len(domain)} '
                        f'in domain {side} ({domain.name}): hold out fewer')
    parts = []
    for domain in (self.domain_a, self.domain_b):
      order = np.random.default_rng(seed).permutation(len(domain))
      parts.append((np.sort(order[count:]), np.sort(order[:count])))
    (train_a, held_a), (train_b, held_b) = parts

    def split(indices_a, indices_b, what):
      truth = None if self.truth_a is None else ListSource(self.truth_a, indices_a, what)
      return UnpairedSource(ListSource(self.domain_a, indices_a, what),
                            ListSource(self.domain_b, indices_b, what), self.seed, truth,
                            f'{self.name} ({what})')

    return (split(train_a, train_b, 'training part'),
            split(held_a, held_b, f'{count} of each domain held out'))


def embedded(resolution, num_images, seed, channels):
  """The embedded two-domain data (see the module docstring), `num_images` in each domain."""
  seed_b = seed + _DOMAIN_B_SEED_OFFSET
  domain_a = PaletteSource(resolution, num_images, seed, channels, PALETTE_A, 'embedded A')
  domain_b = PaletteSource(resolution, num_images, seed_b, channels, PALETTE_B, 'embedded B')
  truth_a = PaletteSource(resolution, num_images, seed, channels, PALETTE_B, 'embedded f(A)')
  return UnpairedSource(domain_a, domain_b, seed, truth_a=truth_a, name='unpaired:embedded')


def parse(spec):
  """The two domain specs of 'unpaired:SPEC_A,SPEC_B' (a bare path becomes 'folder:PATH').
  UserError unless there are exactly two non-empty ones."""
  rest = spec.partition(':')[2]
  parts = rest.split(',')
  if len(parts) != 2 or not all(p.strip() for p in parts):
    raise UserError(f'data.source={spec!r} needs two image collections, domain A and domain B, '
                    'separated by one comma: "unpaired:/data/horses,/data/zebras" (folder paths '
                    'or source specs such as "tfds:NAME:SPLIT"; or "unpaired:embedded")')
  return [_as_spec(p.strip()) for p in parts]


_KINDS = ('embedded', 'folder', 'tfds', 'pairs', 'unpaired')


def _as_spec(part):
  kind = part.partition(':')[0]
  return part if kind in _KINDS else f'folder:{part}'


def is_unpaired_spec(spec):
  """Whether a `data.source` spec names two-domain data (see the module docstring)."""
  kind, _, rest = spec.partition(':')
  name, _, split = rest.partition(':')
  return kind == 'unpaired' or (kind == 'tfds' and name.startswith('cycle_gan/')
                                and split in ('', 'train', 'test'))


def _to_input(image_uint8):
  return image_uint8.astype(np.float32) / 127.5 - 1.0


class UnpairedTask:
  """Unpaired translation between the two domains of an `UnpairedSource` (see the module
  docstring), for images of `channels` channels at `resolution`.

  task_config: `crop` (random training crops of this size, 0 = whole images; the official code
  loads 286² and crops 256²) and `flip` (random left-right flips, each domain its own).
  Raises UserError for a bad setting or a single-domain `source_spec`."""

  name = 'unpaired'
  evaluator = 'unpaired'  # jaxgen.evaluation.TASK_EVALUATORS
  apply_command = 'python -m jaxgen.translate {where} --input=PICTURES --outdir=OUT'
  scale = 1  # Outputs have the inputs' size.

  def __init__(self, task_config, channels, resolution, source_spec, model_name='cyclegan'):
    if not is_unpaired_spec(source_spec):
      raise UserError(f'model.name={model_name!r} learns from two unpaired domains, but '
                      f'data.source={source_spec!r} is one: use "unpaired:DIR_A,DIR_B", '
                      '"unpaired:embedded" or "tfds:cycle_gan/NAME"')
    self.channels = self.input_channels = channels
    self.resolution = resolution
    self.crop = int(task_config.get('crop', 0))
    self.flip = bool(task_config.get('flip', True))
    if not 0 <= self.crop <= resolution:
      raise UserError(f'task.crop={self.crop}: give a crop size from 1 to data.resolution='
                      f'{resolution} pixels, or 0 for whole images')

  @property
  def train_size(self):
    """Pixels per side of training images."""
    return self.crop or self.resolution

  def input_size(self, size):
    return size

  def _augment(self, image, rng):
    if self.crop:
      image = degrade.random_crop(rng, image, self.crop)
    if self.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    return np.ascontiguousarray(image)

  def train_example(self, example, rng):
    """{'input': float32 [c, c, C] an A image in [-1, 1], 'image': uint8 [c, c, C] a B image,
    'label'}: each cropped (task.crop) and flipped on its own, drawn with `rng`."""
    a = self._augment(example['input'], rng)
    b = self._augment(example['image'], rng)
    return {'input': _to_input(a), 'image': b, 'label': example['label']}

  def centre(self, image):
    """The centre crop of task.crop of a uint8 image [R, R, C] (the image itself when 0)."""
    if not self.crop:
      return image
    top, left = (image.shape[0] - self.crop) // 2, (image.shape[1] - self.crop) // 2
    return image[top:top + self.crop, left:left + self.crop]

  def user_input(self, image, mask=None):
    """The network input for a user's uint8 picture [H, W, C]: the picture in [-1, 1]."""
    del mask
    return _to_input(image)

  def finish(self, inputs, outputs):
    del inputs
    return outputs
