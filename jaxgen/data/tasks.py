"""Image-to-image tasks: how a source's examples become (input, target) pairs.

A task (`config.task.name`) turns each example of any source into a training pair, on the host,
inside the input pipeline:

  sr        super-resolution ×`task.scale` (2, 3, 4): the input is the target down-scaled with
            MATLAB's antialiased bicubic `imresize`, as the SR literature makes its LR images
            — or, from a source of real (LR, HR) pairs (`tfds:div2k/bicubic_x4`,
            jaxgen/data/tfds_source.py), the source's LR image, cropped in step with the target
  denoise   the input is the target plus Gaussian noise of σ `task.noise_sigma` (0–255 units;
            one value = fixed, two = uniform in that range), then JPEG-compressed with a quality
            drawn from `task.jpeg_quality` when that is a (low, high) pair
  inpaint   the input is the target with holes (random free-form strokes and boxes) set to 0,
            plus the hole mask (1 = fill) as one more channel
  colorize  the input is the target's luma (ITU-R BT.601); the network predicts the two chroma
            channels and the image is the input's luma with them (`compose`), as pix2pix
            colourises (L in, ab out; here BT.601 Y'CbCr, linear, so the luma is kept exactly)
  paired    the source holds real pairs (`pairs:DIR`): its 'input' image is the input

Training pairs are drawn afresh for every position of the shuffled stream (a random crop of
`task.crop` pixels when it is > 0, then the degradation), with the pipeline's per-position
generator: the batch at step s depends only on (seed, s), so resuming repeats it exactly.
Evaluation pairs are the held-out images (their centre crop of `task.crop`, when that is set),
each degraded with a generator seeded by its index alone, so every evaluation of every run
scores the same pairs.

A pair is {'input': float32 [h, w, c_in] (pixels in [-1, 1]; SR: h = H / scale),
'image': uint8 [H, W, C] the target, 'label': int32}. `baseline` is what a model must beat: the
bicubic up-scaling (SR), the noisy input (denoise), the holes filled with the mean of the known
pixels (inpaint), the gray image (colorize), the input itself (paired, when shapes agree).
"""

import numpy as np

from jaxgen.data import degrade
from jaxgen.errors import UserError

TASKS = ('sr', 'denoise', 'inpaint', 'colorize', 'paired')
# BT.601: Y' = 0.299 R' + 0.587 G' + 0.114 B'. Rows: what Cb and Cr add to (R', G', B').
CHROMA_TO_RGB = np.array([[0.0, -0.114 * 1.772 / 0.587, 1.772],
                          [1.402, -0.299 * 1.402 / 0.587, 0.0]], np.float32)
SCALES = (2, 3, 4)


def _to_input(image_uint8):
  return image_uint8.astype(np.float32) / 127.5 - 1.0


def _range(value, name):
  """A config value that is one number or a (low, high) pair → (low, high)."""
  values = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
  if len(values) == 1:
    values = values * 2
  if len(values) != 2 or values[0] > values[1]:
    raise UserError(f'task.{name}={value!r}: give one number or a (low, high) pair with '
                    'low ≤ high')
  return values


class Task:
  """The pairs of `config.task` for images of `channels` channels (see the module docstring).

  Raises UserError for a bad task setting (checked here, before anything is written)."""

  # Which evaluator scores a recipe with this task (jaxgen.evaluation.TASK_EVALUATORS): outputs
  # against held-out targets, beside the task's baseline.
  evaluator = 'paired'
  # How a user applies a trained model to pictures ({where}: --workdir=RUN or --network=FILE).
  apply_command = 'python -m jaxgen.translate {where} --input=PICTURES --outdir=OUT'

  def __init__(self, task_config, channels, resolution):
    t = task_config
    if t.name not in TASKS:
      raise UserError(f'unknown task.name {t.name!r}: choose one of {", ".join(TASKS)}')
    self.name = t.name
    self.channels = channels
    self.resolution = resolution
    self.scale = int(t.get('scale', 1)) if t.name == 'sr' else 1
    if t.name == 'sr' and self.scale not in SCALES:
      raise UserError(f'task.scale={t.get("scale")} is not supported: super-resolution '
                      'scales are 2, 3 or 4')
    self.crop = int(t.get('crop', 0))
    if self.crop < 0:
      raise UserError(f'task.crop={self.crop} is negative: give a crop size in pixels, or 0 for '
                      'whole images')
    if self.crop > resolution:
      raise UserError(f'task.crop={self.crop} is larger than data.resolution={resolution}: crop '
                      'at most the whole image, or raise data.resolution')
    for size, name in ((self.crop, 'task.crop'), (resolution, 'data.resolution')):
      if size and size % self.scale:
        raise UserError(f'{name}={size} is not divisible by task.scale={self.scale}: the '
                        'low-resolution input must have a whole number of pixels; choose a '
                        f'multiple of {self.scale}')
    if t.name == 'sr' and min(self.crop or resolution, resolution) // self.scale < 4:
      raise UserError(f'an image of {self.crop or resolution} pixels is too small for '
                      f'super-resolution ×{self.scale}: its input would be under 4 pixels; '
                      'raise task.crop or data.resolution')
    self.noise_sigma = _range(t.get('noise_sigma', 25.0), 'noise_sigma')
    if self.noise_sigma[0] < 0:
      raise UserError(f'task.noise_sigma={t.get("noise_sigma")!r} is negative: give σ ≥ 0 in '
                      '0–255 units (e.g. 25)')
    quality = tuple(t.get('jpeg_quality', ()))
    if quality:
      low, high = _range(quality, 'jpeg_quality')
      if not 1 <= low <= high <= 95:
        raise UserError(f'task.jpeg_quality={quality!r}: give a (low, high) pair within 1..95, '
                        'or () for no JPEG')
      self.jpeg_quality = (int(low), int(high))
    else:
      self.jpeg_quality = None
    self.max_strokes = int(t.get('mask_strokes', 4))
    self.max_boxes = int(t.get('mask_boxes', 2))
    if t.name == 'inpaint' and self.max_strokes + self.max_boxes < 1:
      raise UserError('task.mask_strokes + task.mask_boxes is 0: inpainting needs holes; allow at '
                      'least one stroke or box')
    direction = t.get('direction', 'AtoB')
    if direction not in ('AtoB', 'BtoA'):
      raise UserError(f'task.direction={direction!r}: use "AtoB" or "BtoA"')
    self.reverse = direction == 'BtoA'
    if t.name == 'colorize' and channels != 3:
      raise UserError(f'task colorize needs colour targets, not data.channels={channels}: set '
                      'data.channels=3')

  # ----------------------------------------------------------------------------------------------
  # Shapes.

  @property
  def input_channels(self):
    """Channels of the network's input."""
    return {'inpaint': self.channels + 1, 'colorize': 1}.get(self.name, self.channels)

  @property
  def output_channels(self):
    """Channels of the network's output: colourisation's two chroma channels, else the image's."""
    return 2 if self.name == 'colorize' else self.channels

  def compose(self, inputs, outputs):
    """The image [..., H, W, C] in [-1, 1] units from the network's input and output (numpy or
    jnp arrays; traced in training): colourisation joins the input's luma Y' to the predicted
    chroma (Cb, Cr) = ((B' − Y') / 1.772, (R' − Y') / 1.402), each in [-1, 1] for colours in
    [-1, 1], by the inverse of BT.601's Y'CbCr (`CHROMA_TO_RGB`); every other task's output is
    the image itself."""
    if self.name != 'colorize':
      return outputs
    return inputs[..., :1] * np.ones(3, np.float32) + outputs @ CHROMA_TO_RGB

  def input_size(self, size):
    """Input pixels per side for a target of `size`."""
    return size // self.scale

  @property
  def train_size(self):
    """Target pixels per side of training pairs."""
    return self.crop or self.resolution

  # ----------------------------------------------------------------------------------------------
  # Pairs.

  def degrade(self, target, rng):
    """The network input for a uint8 target [H, W, C], drawn with `rng`."""
    if self.name == 'sr':
      # uint8 in, uint8 out, rounded as MATLAB's imresize does: the LR images of SR benchmarks.
      low = degrade.imresize(target, scale=1.0 / self.scale)
      return low.astype(np.float32) / 127.5 - 1.0
    if self.name == 'denoise':
      sigma = rng.uniform(*self.noise_sigma)
      noisy = degrade.add_gaussian_noise(target.astype(np.float32), sigma, rng)
      if self.jpeg_quality:
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        noisy = degrade.jpeg(np.clip(np.round(noisy), 0, 255).astype(np.uint8), quality)
      return np.asarray(noisy, np.float32) / 127.5 - 1.0
    if self.name == 'inpaint':
      h, w = target.shape[:2]
      mask = degrade.free_form_mask(rng, h, w, max_strokes=self.max_strokes,
                                    max_boxes=self.max_boxes)
      return self.masked_input(target, mask)
    if self.name == 'colorize':
      return degrade.luma(target.astype(np.float32)) / 127.5 - 1.0
    raise ValueError(self.name)  # 'paired' inputs come from the source.

  @staticmethod
  def masked_input(image, mask):
    """Inpainting's input: the image in [-1, 1] with holes (mask 1) set to 0, and the mask."""
    mask = np.asarray(mask, np.float32)
    return np.concatenate([_to_input(image) * (1.0 - mask), mask], axis=-1)

  def _pair(self, example, target, source_input, rng):
    if self.name == 'paired' and self.reverse:
      target, source_input = source_input, target
    if self.name == 'sr' and source_input is not None:
      self._check_low_resolution(source_input, target)
    if self.name == 'paired' or (self.name == 'sr' and source_input is not None):
      inputs = _to_input(source_input)
    else:
      inputs = np.asarray(self.degrade(target, rng), np.float32)
    return {'input': inputs, 'image': target, 'label': example['label']}

  def _check_low_resolution(self, low, high):
    (h, w), (big_h, big_w) = low.shape[:2], high.shape[:2]
    if (h * self.scale, w * self.scale) != (big_h, big_w):
      raise UserError(f'task sr ×{self.scale}: the source gives {w}×{h} inputs for {big_w}×'
                      f'{big_h} targets, not {self.scale} times smaller: set task.scale to the '
                      'dataset\'s (e.g. 4 for tfds:div2k/bicubic_x4)')

  def _source_low_resolution(self, example):
    """The LR image of a source of real SR pairs (its 'input'), checked to be the target
    `scale` times smaller; None for every other task or source."""
    low = example.get('input') if self.name == 'sr' else None
    if low is not None:
      self._check_low_resolution(low, example['image'])
    return low

  def _crop_grid(self, example):
    """The grid a crop's corner lies on: the scale for SR pairs (the source's LR image is
    cropped in step), else 1."""
    return self.scale if self._source_low_resolution(example) is not None else 1

  def _crop(self, example, top, left, grid):
    """The task.crop window at (top, left) of the target and its counterpart in the source's
    input, if any: the same pixels, or for SR pairs (grid = scale) the window `grid` times
    smaller."""
    size = self.crop
    target, source_input = example['image'], example.get('input')
    if source_input is not None:
      source_input = source_input[top // grid:(top + size) // grid,
                                  left // grid:(left + size) // grid]
    return target[top:top + size, left:left + size], source_input

  def train_example(self, example, rng):
    """A training pair from a source example: random crop (task.crop), then the degradation.
    With an LR image from the source (SR pairs), the crop's corner lies on its grid."""
    target, source_input = example['image'], example.get('input')
    if self.crop:
      grid = self._crop_grid(example)
      top = grid * int(rng.integers(0, (target.shape[0] - self.crop) // grid + 1))
      left = grid * int(rng.integers(0, (target.shape[1] - self.crop) // grid + 1))
      target, source_input = self._crop(example, top, left, grid)
    return self._pair(example, target, source_input, rng)

  def eval_example(self, example, index, seed=0):
    """The evaluation pair of the `index`-th held-out example: the centre crop of task.crop
    (whole images when 0), degraded with a generator seeded by (seed, index) alone."""
    rng = np.random.default_rng([seed, index, 0x5EED])
    target, source_input = example['image'], example.get('input')
    if self.crop:
      grid = self._crop_grid(example)
      top = (target.shape[0] - self.crop) // 2 // grid * grid
      left = (target.shape[1] - self.crop) // 2 // grid * grid
      target, source_input = self._crop(example, top, left, grid)
    return self._pair(example, target, source_input, rng)

  def user_input(self, image, mask=None):
    """The network input for a user's uint8 image [H, W, C] (translate): SR and denoising take
    it as it is, colourisation its luma, inpainting the image with `mask` (float [H, W, 1],
    1 = fill)."""
    if self.name == 'colorize':
      return degrade.luma(image.astype(np.float32)) / 127.5 - 1.0
    if self.name == 'inpaint':
      return self.masked_input(image, mask)
    return _to_input(image)

  def finish(self, inputs, outputs):
    """A model's final image from its raw output (numpy or jnp arrays): inpainting keeps the
    known pixels of the input and takes only the holes from the output, as inpainting models
    are used (and the baseline is); every other task returns the output itself."""
    if self.name != 'inpaint':
      return outputs
    mask = inputs[..., -1:]
    return outputs * mask + inputs[..., :-1]  # The input's holes are already 0.

  # ----------------------------------------------------------------------------------------------
  # What a model must beat, and what a grid shows.

  def baseline(self, inputs, target_shape):
    """The trivial answer for a batch of inputs [N, h, w, c_in] → [N, H, W, C] in [-1, 1],
    (H, W) = `target_shape`, the targets' size (any aspect ratio)."""
    inputs = np.asarray(inputs, np.float32)
    if self.name == 'sr':
      return np.stack([degrade.imresize(x, size=tuple(target_shape)) for x in inputs])
    if self.name == 'inpaint':
      image, mask = inputs[..., :-1], inputs[..., -1:]
      known = np.maximum((1.0 - mask).sum(axis=(1, 2), keepdims=True), 1.0)
      mean = (image * (1.0 - mask)).sum(axis=(1, 2), keepdims=True) / known
      return image * (1.0 - mask) + mean * mask
    if self.name == 'colorize':
      return np.repeat(inputs, 3, axis=-1)
    if inputs.shape[-1] != self.channels:  # paired A → B of other channels: no baseline.
      return None
    return inputs

  def display(self, inputs, target_shape):
    """Inputs as images of the targets' (H, W) for sample grids (SR: nearest-neighbour
    up-scaling; inpainting: holes shown in gray), or None when they cannot be shown at it."""
    inputs = np.asarray(inputs, np.float32)
    if self.name == 'sr':
      inputs = inputs.repeat(self.scale, axis=1).repeat(self.scale, axis=2)
    if self.name == 'inpaint':
      inputs = inputs[..., :-1]
    if inputs.shape[-1] == 1 and self.channels == 3:
      inputs = np.repeat(inputs, 3, axis=-1)
    if inputs.shape[1:3] != tuple(target_shape):
      return None
    return inputs


def create_task(config):
  """The Task of `config.task`, or None for a config without one."""
  if 'task' not in config or not config.task.get('name'):
    return None
  return Task(config.task, config.data.channels, config.data.resolution)
