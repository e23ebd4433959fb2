"""Scoring a generator during training: the metrics named in `config.eval.metrics`.

  swd                   sliced Wasserstein distance on `eval.num_images` images; no weights
  fid10k, kid10k, is10k, pr10k3, fid50k_full, ...
                        Inception metrics (`jaxgen/metrics/registry.py` explains the names)

The `Evaluator` generates images from the EMA generator (sharded over the mesh like training)
in batches of `eval.batch_size`. SWD gets them as uint8 [N, R, R, C]; the Inception metrics
stream them into the FID Inception batch by batch, so `fid50k` never holds 50k images.

Real images for the Inception metrics are the first N of a fixed permutation of the training
source (the whole source, in order, for `_full`); their features are cached per dataset,
resolution, count, Inception weights, precision and resize in `$JAXGEN_CACHE/fid_stats`
(default ~/.cache/jaxgen), so only the first evaluation of a run pays for them.

`eval.fid_resize` (optional, default 'torch') chooses how images reach the Inception's 299x299
input, and so which published numbers the Inception metrics are comparable with:

  'torch'  pytorch-fid's pipeline: PyTorch's bilinear resize with half-pixel centres
           (`F.interpolate(align_corners=False)`) of [0, 1] values, then 2x - 1.
  'tf'     the TensorFlow Inception graph's pipeline, behind the FIDs of TTUR, ADM,
           StyleGAN2-ADA and EDM: TF 1.x `resize_bilinear` (align_corners=False, no
           half-pixel centres: src = dst * in / out) of 0..255 values, then (x - 128) / 128.

The two give different FIDs for the same images (most for small images, which are upsampled
the most), so compare a number only with ones made the same way. Cached real statistics are
kept apart (`-tfresize` in the file name for 'tf').

The Inception weights are found by `inception_weights.load_params`: `eval.inception_weights`
(optional; '' = default lookup), `$JAXGEN_INCEPTION_WEIGHTS`, the cache, or a download. With
the default lookup and no weights to be had, the Inception metrics are skipped with one
warning and training goes on; an explicit path that does not work is an error.
"""

import concurrent.futures
import functools
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxgen import data, parallel, summaries
from jaxgen.errors import UserError
from jaxgen.metrics import fid as fid_lib
from jaxgen.metrics import inception as inception_lib
from jaxgen.metrics import inception_weights, registry
from jaxgen.metrics.swd import SlicedWassersteinDistance

log = logging.getLogger(__name__)

# Real images for an N-image metric: the first N of this permutation of the source. Fixed, not
# config.seed, so that the cached statistics depend only on the dataset and N.
REAL_ORDER_SEED = 0


def fid_resize(config):
  """`config.eval.fid_resize`: 'torch' (the default, also when the key is absent) or 'tf'.

  Raises:
    UserError: any other value.
  """
  value = config.eval.get('fid_resize', 'torch')
  if value not in inception_lib.RESIZES:
    raise UserError(f"eval.fid_resize={value!r}: use 'torch' (pytorch-fid's resize) or 'tf' "
                    '(TensorFlow 1.x resize, as the FIDs of ADM, StyleGAN2-ADA and EDM)')
  return value


def load_inception(config, mesh, allow_download=True):
  """The FID Inception for `config.eval.inception_weights` ('' = the default lookup), with
  the input pipeline of `config.eval.fid_resize`.

  Raises:
    UserError: no weights (the message names the file, the folder and the convert command),
      or a bad `eval.fid_resize`.
  """
  resize = fid_resize(config)
  weights = config.eval.get('inception_weights', '') or None
  return fid_lib.InceptionFeatures(weights=weights, mesh=mesh, allow_download=allow_download,
                                   resize=resize)


def optional_inception(config, mesh, metrics, inception=None):
  """The Inception network for 'fid' among `metrics` (`inception` if given); None when fid is
  not asked for, or when its weights are missing and were not named explicitly (fid is then
  skipped with one warning: the other metrics need no download)."""
  if inception is not None or 'fid' not in metrics:
    return inception
  try:
    return load_inception(config, mesh)
  except UserError as e:
    if config.eval.get('inception_weights', ''):
      raise
    log.warning('Skipping fid: %s', ' '.join(str(e).split()))
    return None


def dataset_key(config, source):
  """Names the real images in the statistics cache, e.g. 'embedded-seed0-20000img-3ch'."""
  name = source.name
  if name == 'embedded':  # Procedural: which images depends on data.seed.
    name += f'-seed{config.data.seed}'
  return f'{name}-{len(source)}img-{config.data.channels}ch'


class Evaluator:
  """Scores the EMA generator with the metrics of `config.eval.metrics`.

  Args:
    config: the experiment config (`eval.*`, `seed`, `data.*`).
    recipe: gives `latents(key, n)`, `generate(state, z, labels)`, `num_classes`.
    source: the training source; real images for the metrics.
    mesh: the device mesh; generation and Inception are split over its data axis.
    inception: a loaded `fid.InceptionFeatures` (or any `(images, pad_to) -> (pool,
      logits)`); None: loaded here when an Inception metric is configured. Its `resize`, if
      it has one, must be `eval.fid_resize`.

  Raises:
    UserError: a bad `eval.fid_resize` or metric name, or an `inception` whose resize is not
      the config's (checked before anything is generated, loaded or written).
  """

  def __init__(self, config, recipe, source, mesh, inception=None, options=None):
    self.options = dict(options or {})
    self.fid_resize = fid_resize(config)
    given = getattr(inception, 'resize', self.fid_resize)
    if given != self.fid_resize:
      raise UserError(f'the FID Inception given resizes like {given!r}, but '
                      f'eval.fid_resize={self.fid_resize!r}: load it with the same resize')
    self.recipe = recipe
    self.mesh = mesh
    self.source = source
    self.num_images = config.eval.num_images
    self.batch_size = parallel.device_batch(config.eval.batch_size, mesh)
    self.num_classes = recipe.num_classes
    self.seed = config.seed
    self.num_threads = config.data.num_threads
    self.metrics = {}
    self.inception_metrics = []
    for name in config.eval.metrics:
      if name == 'swd':
        reals = data.fixed_examples(source, self.num_images, seed=config.seed)['image']
        self.num_images = reals.shape[0]
        self.metrics[name] = SlicedWassersteinDistance(reals, seed=config.seed)
      else:
        try:
          registry.parse_metric_name(name)
        except UserError as e:
          raise UserError(f'{e} in eval.metrics (or swd)') from None
        self.inception_metrics.append(name)
    self.dataset = dataset_key(config, source)
    self.resolution = config.data.resolution
    self.inception = inception
    if self.inception_metrics and inception is None:
      self.inception = self._load_inception_or_warn(config)
      if self.inception is None:
        self.inception_metrics = []
    self._generate = jax.jit(self._generate_batch, static_argnums=3,
                             out_shardings=parallel.batch_sharding(mesh))

  def _load_inception_or_warn(self, config):
    explicit = config.eval.get('inception_weights', '') or os.environ.get(
        inception_weights.ENV_WEIGHTS)
    try:
      return load_inception(config, self.mesh)
    except UserError as e:
      if explicit:  # The user named a file: a typo should stop the run, not hide a metric.
        raise
      best = config.checkpoint.get('best_metric', '')
      keys = [k for n in self.inception_metrics
              for k in registry.result_keys(registry.parse_metric_name(n))]
      unkept = f'; no best checkpoint by {best}' if best in keys else ''
      log.warning('Skipping %s%s: %s', ', '.join(self.inception_metrics), unkept,
                  ' '.join(str(e).split()))
      return None

  def _generate_batch(self, state, key, start, size):
    z = self.recipe.latents(key, size)
    labels = ((start + jnp.arange(size)) % max(self.num_classes, 1)).astype(jnp.int32)
    if 'noise_key' in self.recipe.sampling_options:  # E.g. a stochastic diffusion sampler.
      return self.recipe.generate(state, z, labels, noise_key=jax.random.fold_in(key, 1),
                                  **self.options)
    return self.recipe.generate(state, z, labels, **self.options)

  def generate_batches(self, state, count, key):
    """Yields ceil(count / batch_size) batches [batch_size, R, R, C] in [-1, 1], sharded."""
    for i, start in enumerate(range(0, count, self.batch_size)):
      key_i = np.asarray(jax.random.fold_in(key, i))  # Host value: valid input on any mesh.
      yield self._generate(state, key_i, np.int32(start), self.batch_size)

  @staticmethod
  def to_host_uint8(images):
    """A generated batch, gathered from every process, as uint8 numpy."""
    images = multihost_utils.process_allgather(images, tiled=True)
    return summaries.to_uint8(np.asarray(images))

  def generate_uint8(self, state, count, key):
    """`count` images from the EMA generator as uint8 [count, R, R, C] on every host."""
    batches = [self.to_host_uint8(b) for b in self.generate_batches(state, count, key)]
    return np.concatenate(batches)[:count]

  def fake_batches(self, state, key):
    """fn(num) -> generated batches for `registry.compute_metrics`, kept on the devices."""

    def batches(num):
      for images in self.generate_batches(state, num, key):
        # Within one process the Inception reads the sharded batch where it is; across
        # processes it needs every host to hold the same (gathered) batch.
        yield images if images.is_fully_addressable else self.to_host_uint8(images)

    return batches

  def real_batches(self, num):
    """uint8 batches of the first `num` reals of a fixed permutation (None: all, in order)."""
    size = len(self.source)
    if num is None:
      indices = np.arange(size)
    else:
      indices = np.random.default_rng(REAL_ORDER_SEED).permutation(size)[:num]
    with concurrent.futures.ThreadPoolExecutor(max(self.num_threads, 1)) as pool:
      for start in range(0, len(indices), self.batch_size):
        chunk = indices[start:start + self.batch_size]
        examples = pool.map(lambda i: self.source[int(i)]['image'], chunk)
        yield np.stack(list(examples))

  def __call__(self, state):
    key = jax.random.PRNGKey(self.seed + 7)
    results = {}
    if self.metrics:
      fakes = self.generate_uint8(state, self.num_images, key)
      for metric in self.metrics.values():
        results.update(metric(fakes))
    if self.inception_metrics:
      start = time.time()
      results.update(registry.compute_metrics(
          self.inception_metrics, self.inception, self.fake_batches(state, key),
          self.real_batches, dataset=self.dataset, resolution=self.resolution,
          seed=self.seed))
      log.info('%s took %.1f s', ', '.join(self.inception_metrics), time.time() - start)
    return results


# ------------------------------------------------------------------------------------------------
# Image-to-image runs: outputs against held-out targets.

PAIRED_METRICS = ('psnr', 'ssim', 'psnr_y', 'ssim_y', 'lpips', 'fid', 'swd')


class PairedEvaluator:
  """Scores an image-to-image run (a recipe with a `task`) on held-out pairs.

  The pairs are the first `eval.num_images` examples of the evaluation source (data.holdout's
  images, or eval.source), each degraded by `task.eval_example` with a generator seeded by its
  index: the same pairs at every evaluation and in every run of the config. Metrics
  (`eval.metrics`), each reported for the model and, as `baseline_<name>`, for the task's trivial
  answer on the same images (bicubic up-scaling, the noisy input, the gray image, ...):

    psnr, ssim      on RGB uint8 outputs (as saved), data range 255 (jaxgen/metrics/image_quality)
    psnr_y, ssim_y  on the Y channel of MATLAB's rgb2ycbcr with a border of `task.scale` pixels
                    cropped, as super-resolution papers report
    lpips           LPIPS (VGG16, v0.1) when its weights are found; else skipped with a warning
    fid             FID of the outputs against the targets (few images: biased upwards, but
                    model and baseline see the same targets); skipped without Inception weights
    swd             SWD (×10³, per level and 'swd/avg') of the outputs against the targets as
                    sets: how far the outputs are from looking like targets, whichever target
                    each matches; for one-to-many tasks (a label map → a photograph, whose
                    colours the input does not hold), where PSNR rewards the average answer

  The sample grid shows input | output | target triplets of the first `log.num_samples` pairs.
  """

  METRICS = PAIRED_METRICS

  def __init__(self, config, recipe, source, mesh, inception=None):
    self.recipe = recipe
    self.task = recipe.task
    self.mesh = mesh
    metrics = tuple(config.eval.metrics)
    unknown = [m for m in metrics if m not in PAIRED_METRICS]
    if unknown:
      raise UserError(f'eval.metrics has {", ".join(map(repr, unknown))}, which image-to-image '
                      f'runs do not compute: choose from {", ".join(PAIRED_METRICS)}')
    self.metric_names = metrics
    self.border = self.task.scale if self.task.scale > 1 else 0
    count = min(config.eval.num_images, len(source))
    self.batch_size = parallel.device_batch(min(config.eval.batch_size, count), mesh)
    pairs = [self.task.eval_example(source[i], i, seed=config.seed) for i in range(count)]
    self.inputs = np.stack([p['input'] for p in pairs])
    self.targets = np.stack([p['image'] for p in pairs])
    side = min(self.targets.shape[1:3])
    for names, size, what in ((('ssim',), side, ''),
                              (('ssim_y',), side - 2 * self.border, ' after the border crop')):
      if set(names) & set(metrics) and size < 11:
        raise UserError(f'eval.metrics has {names[0]}, whose 11×11 window needs images of at '
                        f'least 11 pixels, but the evaluation images are {size}{what}: '
                        'evaluate larger images (task.crop, data.resolution) or drop it')
    # (H, W) of the targets: data.resolution², or task.crop's centre crop of it.
    self.target_shape = self.targets.shape[1:3]
    baseline = self.task.baseline(self.inputs, self.target_shape)
    self.baseline = None if baseline is None else summaries.to_uint8(baseline)
    self.num_samples = config.log.num_samples
    self.lpips = self._load_lpips(config) if 'lpips' in metrics else None
    self.inception = optional_inception(config, mesh, metrics, inception)
    self.swd = (SlicedWassersteinDistance(self.targets, seed=config.seed)
                if 'swd' in metrics else None)
    self._generate = jax.jit(recipe.generate, out_shardings=parallel.batch_sharding(mesh))
    self._baseline_results = None

  @staticmethod
  def _load_lpips(config):
    """fn(x0, x1) → LPIPS [B], or None (with a warning) when the default lookup finds no
    weights; a named file that is missing stops the run."""
    from jaxgen.metrics import lpips  # pylint: disable=import-outside-toplevel
    explicit = config.eval.get('lpips_weights', '')
    try:
      params = lpips.load_params(linear_weights=explicit or None)
    except UserError as e:
      if explicit:
        raise
      log.warning('Skipping lpips: %s', ' '.join(str(e).split()))
      return None
    distance = jax.jit(lpips.distance)
    return lambda x0, x1: distance(params, x0, x1)

  def outputs_uint8(self, state, inputs=None):
    """The EMA generator's outputs for `inputs` (default: every held-out input), uint8."""
    inputs = self.inputs if inputs is None else inputs
    out = []
    for start in range(0, len(inputs), self.batch_size):
      chunk = inputs[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)
      if pad:  # One compiled shape: pad the last batch with copies of its first input.
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      images = self._generate(state, jnp.asarray(chunk), None)
      out.append(Evaluator.to_host_uint8(images)[:len(chunk) - pad])
    return np.concatenate(out)

  def _y(self, images):
    """The Y channel (MATLAB's rgb2ycbcr) of uint8 RGB images, `border` pixels cropped."""
    from jaxgen.data import degrade  # pylint: disable=import-outside-toplevel
    y = degrade.rgb_to_ycbcr_y(images)[..., 0]
    if self.border:
      y = y[:, self.border:-self.border, self.border:-self.border]
    return y.astype(np.float32)

  def _score(self, images):
    from jaxgen.metrics import image_quality  # pylint: disable=import-outside-toplevel
    results = {}
    names = self.metric_names
    if 'psnr' in names:
      results['psnr'] = float(np.mean(image_quality.psnr(images, self.targets)))
    if 'ssim' in names:
      results['ssim'] = float(np.mean(image_quality.ssim(images, self.targets)))
    if ('psnr_y' in names or 'ssim_y' in names) and images.shape[-1] == 3:
      y, y_ref = self._y(images), self._y(self.targets)
      if 'psnr_y' in names:
        results['psnr_y'] = float(np.mean(image_quality.psnr(y, y_ref, data_range=255.0)))
      if 'ssim_y' in names:
        results['ssim_y'] = float(np.mean(image_quality.ssim(y, y_ref, data_range=255.0)))
    if 'lpips' in names and self.lpips is not None:
      to_float = lambda x: jnp.asarray(x, jnp.float32) / 127.5 - 1.0
      results['lpips'] = float(np.mean(np.concatenate([
          np.asarray(self.lpips(to_float(images[i:i + self.batch_size]),
                                to_float(self.targets[i:i + self.batch_size])))
          for i in range(0, len(images), self.batch_size)])))
    if 'fid' in names and self.inception is not None and len(images) >= 2:
      fake = fid_lib.extract(self.inception, [images[i:i + self.batch_size]
                                              for i in range(0, len(images), self.batch_size)])
      if self._real_features is None:
        self._real_features = fid_lib.extract(
            self.inception, [self.targets[i:i + self.batch_size]
                             for i in range(0, len(images), self.batch_size)])
      real = self._real_features
      results['fid'] = float(fid_lib.frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma))
    if self.swd is not None:
      results.update(self.swd(images))
    return results

  _real_features = None

  def __call__(self, state):
    results = self._score(self.outputs_uint8(state))
    if self._baseline_results is None:
      self._baseline_results = ({} if self.baseline is None else
                                {f'baseline_{k}': v for k, v in self._score(self.baseline).items()})
    results.update(self._baseline_results)
    return results

  def generate_uint8(self, state, count, key):
    """Sample-grid panels: input | output | target of the first `count` held-out pairs, each
    [R, 3R, C] uint8 (`key` is unused: the pairs are fixed)."""
    del key
    count = min(count, len(self.inputs))
    inputs = self.inputs[:count]
    outputs = self.outputs_uint8(state, inputs)
    shown = self.task.display(inputs, self.target_shape)
    if shown is None:  # e.g. a paired task whose input has another size: leave it black.
      shown = np.zeros_like(outputs)
    else:
      shown = summaries.to_uint8(shown)
    return np.concatenate([shown, outputs, self.targets[:count]], axis=2)


# ------------------------------------------------------------------------------------------------
# Unpaired translation (CycleGAN): translations against the other domain.

UNPAIRED_METRICS = ('swd', 'fid', 'psnr', 'ssim')


class UnpairedEvaluator:
  """Scores an unpaired translation run (a recipe whose task is jaxgen.data.unpaired's) on
  fixed held-out images of both domains: the evaluation source's domains (data.holdout's
  images, eval.source, e.g. CycleGAN's testA/testB; else the training images), the first
  N = min(`eval.num_images`, |A|, |B|) of a fixed permutation of each, centre-cropped to
  task.crop. Metrics (`eval.metrics`), each also reported for the trivial answer, the A image
  itself untranslated, as `baseline_<name>`:

    swd         SWD of G_A(A) against the B images (baseline: A against B, how far apart the
                domains are to begin with)
    fid         FID of G_A(A) against the B images (few images: biased upwards, but model and
                baseline see the same B); skipped without Inception weights
    psnr, ssim  G_A(a) against the true translation f(a), where the source knows it (the
                embedded two-domain data, whose B is a known restyling; CycleGAN never sees
                f(a)); on uint8 images as saved, data range 255

  The sample grid's panels hold two rows, real A | G_A(A) | G_B(G_A(A)) over
  real B | G_B(B) | G_A(G_B(B)), of the first `log.num_samples` images.
  """

  METRICS = UNPAIRED_METRICS

  def __init__(self, config, recipe, source, mesh, inception=None):
    self.recipe = recipe
    self.task = recipe.task
    metrics = tuple(config.eval.metrics)
    unknown = [m for m in metrics if m not in UNPAIRED_METRICS]
    if unknown:
      raise UserError(f'eval.metrics has {", ".join(map(repr, unknown))}, which unpaired '
                      f'translation runs do not compute: choose from {", ".join(UNPAIRED_METRICS)}')
    if not hasattr(source, 'domain_a'):
      raise UserError(f'the evaluation source {source.name!r} has one domain; unpaired runs '
                      'evaluate on two: set eval.source to "unpaired:DIR_A,DIR_B" (or use '
                      'data.holdout)')
    truth = getattr(source, 'truth_a', None)
    if truth is None and {'psnr', 'ssim'} & set(metrics):
      raise UserError(f'eval.metrics has psnr/ssim, which compare translations with the true '
                      f'ones, but {source.name!r} does not know them (only "unpaired:embedded" '
                      'does): use swd or fid')
    self.metric_names = metrics
    count = min(config.eval.num_images, len(source.domain_a), len(source.domain_b))
    order_a = np.random.default_rng(REAL_ORDER_SEED).permutation(len(source.domain_a))[:count]
    order_b = np.random.default_rng(REAL_ORDER_SEED).permutation(len(source.domain_b))[:count]
    centre = self.task.centre
    self.reals_a = np.stack([centre(source.domain_a[int(i)]['image']) for i in order_a])
    self.reals_b = np.stack([centre(source.domain_b[int(i)]['image']) for i in order_b])
    self.truths = (None if truth is None else
                   np.stack([centre(truth[int(i)]['image']) for i in order_a]))
    if 'ssim' in metrics and self.reals_a.shape[1] < 11:
      raise UserError(f'eval.metrics has ssim, whose 11×11 window needs images of at least 11 '
                      f'pixels, but the evaluation images are {self.reals_a.shape[1]}: evaluate '
                      'larger images (task.crop, data.resolution) or drop it')
    self.batch_size = parallel.device_batch(min(config.eval.batch_size, count), mesh)
    self.swd = (SlicedWassersteinDistance(self.reals_b, seed=config.seed)
                if 'swd' in metrics else None)
    self.inception = optional_inception(config, mesh, metrics, inception)
    sharding = parallel.batch_sharding(mesh)
    self._translate = {d: jax.jit(functools.partial(recipe.generate, direction=d),
                                  out_shardings=sharding) for d in ('AtoB', 'BtoA')}
    self._baseline_results = None
    self._real_features = None

  def translate_uint8(self, state, images, direction):
    """uint8 images [N, c, c, C] translated ('AtoB' with G_A, 'BtoA' with G_B), as uint8."""
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)
      if pad:  # One compiled shape: pad the last batch with copies of its first image.
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      inputs = jnp.asarray(chunk, jnp.float32) / 127.5 - 1.0
      translated = self._translate[direction](state, inputs, None)
      out.append(Evaluator.to_host_uint8(translated)[:len(chunk) - pad])
    return np.concatenate(out)

  def _score(self, images):
    from jaxgen.metrics import image_quality  # pylint: disable=import-outside-toplevel
    results = {}
    if self.swd is not None:
      results.update(self.swd(images))
    if 'psnr' in self.metric_names:
      results['psnr'] = float(np.mean(image_quality.psnr(images, self.truths)))
    if 'ssim' in self.metric_names:
      results['ssim'] = float(np.mean(image_quality.ssim(images, self.truths)))
    if 'fid' in self.metric_names and self.inception is not None and len(images) >= 2:
      batches = lambda x: [x[i:i + self.batch_size] for i in range(0, len(x), self.batch_size)]
      if self._real_features is None:
        self._real_features = fid_lib.extract(self.inception, batches(self.reals_b))
      fake, real = fid_lib.extract(self.inception, batches(images)), self._real_features
      results['fid'] = float(fid_lib.frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma))
    return results

  def __call__(self, state):
    results = self._score(self.translate_uint8(state, self.reals_a, 'AtoB'))
    if self._baseline_results is None:
      self._baseline_results = {f'baseline_{k}': v for k, v in self._score(self.reals_a).items()}
    results.update(self._baseline_results)
    return results

  def generate_uint8(self, state, count, key):
    """Sample-grid panels [2c, 3c, C] uint8: real A | G_A(A) | G_B(G_A(A)) over
    real B | G_B(B) | G_A(G_B(B)) for the first `count` images (`key` is unused: the images
    are fixed)."""
    del key
    count = min(count, len(self.reals_a))
    rows = []
    for reals, there, back in ((self.reals_a[:count], 'AtoB', 'BtoA'),
                               (self.reals_b[:count], 'BtoA', 'AtoB')):
      fakes = self.translate_uint8(state, reals, there)
      rows.append(np.concatenate([reals, fakes, self.translate_uint8(state, fakes, back)],
                                 axis=2))
    return np.concatenate(rows, axis=1)


# ------------------------------------------------------------------------------------------------
# Style transfer (AdaIN): stylisations of fixed content × style pairs, by the method's own losses.

STYLE_METRICS = ('loss', 'content_loss', 'style_loss')


class StyleEvaluator:
  """Scores a style-transfer run (a recipe whose task's evaluator is 'style': AdaIN) on fixed
  held-out content × style pairs: the first `eval.num_images` examples of the evaluation source
  (data.holdout's images of both domains, or eval.source), content from domain A and style from
  domain B, centre-cropped by `task.eval_example`. Each output is scored by the recipe's
  `style_scores` with the run's frozen encoder — the content loss (its relu4_1 features against
  the AdaIN target) and the style loss (its feature means and standard deviations against the
  style image's), and `loss`, the training objective — averaged over the pairs. Each is also
  reported for the content image itself as the output (`baseline_<name>`: no stylisation at all),
  which a decoder has to beat on style_loss. All are always computed; `eval.metrics` may name
  only these.

  The sample grid's panels are content | style | output of the first `log.num_samples` pairs.
  """

  METRICS = STYLE_METRICS

  def __init__(self, config, recipe, source, mesh, inception=None):
    del inception  # No Inception metrics here.
    unknown = [m for m in config.eval.metrics if m not in STYLE_METRICS]
    if unknown:
      raise UserError(f'eval.metrics has {", ".join(map(repr, unknown))}, which style-transfer '
                      f'runs do not compute: choose from {", ".join(STYLE_METRICS)}')
    self.recipe = recipe
    count = min(config.eval.num_images, len(source))
    pairs = [recipe.task.eval_example(source[i], i, seed=config.seed) for i in range(count)]
    self.inputs = np.stack([p['input'] for p in pairs])
    self.batch_size = parallel.device_batch(min(config.eval.batch_size, count), mesh)
    sharding = parallel.batch_sharding(mesh)
    self._generate = jax.jit(recipe.generate, out_shardings=sharding)
    self._scores = jax.jit(recipe.style_scores)
    self._baseline_results = None

  def _batches(self, inputs):
    """(chunk padded to the batch size with copies of its first row, real rows) over inputs."""
    for start in range(0, len(inputs), self.batch_size):
      chunk = inputs[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)
      if pad:  # One compiled shape for every batch.
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      yield jnp.asarray(chunk), len(chunk) - pad

  def _score(self, state, outputs_fn):
    totals = {name: [] for name in STYLE_METRICS}
    for chunk, real in self._batches(self.inputs):
      scores = jax.device_get(self._scores(state, chunk, outputs_fn(chunk)))
      for name in STYLE_METRICS:
        totals[name].append(np.asarray(scores[name])[:real])
    return {name: float(np.mean(np.concatenate(v))) for name, v in totals.items()}

  def __call__(self, state):
    results = self._score(state, lambda chunk: self._generate(state, chunk, None))
    if self._baseline_results is None:  # The encoder is frozen: computed once.
      self._baseline_results = {f'baseline_{k}': v for k, v in
                                self._score(state, lambda chunk: chunk[..., :3]).items()}
    results.update(self._baseline_results)
    return results

  def generate_uint8(self, state, count, key):
    """Sample-grid panels [c, 3c, 3] uint8: content | style | output of the first `count` pairs
    (`key` is unused: the pairs are fixed)."""
    del key
    inputs = self.inputs[:min(count, len(self.inputs))]
    outputs = []
    for chunk, real in self._batches(inputs):
      outputs.append(Evaluator.to_host_uint8(self._generate(state, chunk, None))[:real])
    shown = summaries.to_uint8(inputs)
    return np.concatenate([shown[..., :3], shown[..., 3:6], np.concatenate(outputs)], axis=2)


# The evaluators of recipes with a task, by the task's `evaluator` name (jaxgen/recipes/__init__.py).
TASK_EVALUATORS = {'paired': PairedEvaluator, 'unpaired': UnpairedEvaluator,
                   'style': StyleEvaluator}


def create_evaluator(config, recipe, source, mesh, inception=None, options=None):
  """The evaluator of `recipe`: `Evaluator` (samples from latents against the source's
  distribution) when it has no task, else the one its task names (`task.evaluator`, a key of
  TASK_EVALUATORS: 'paired' scores outputs against held-out targets, 'unpaired' translations
  against the other domain, 'style' stylisations by the method's losses). `options`: keyword
  options of the recipe's `generate` beyond its config (e.g. a diffusion `guide`); latent
  samplers only."""
  if recipe.task is None:
    return Evaluator(config, recipe, source, mesh, inception, options)
  if options:
    raise UserError(f'{", ".join(options)}: runs with a task take no sampling options')
  return TASK_EVALUATORS[recipe.task.evaluator](config, recipe, source, mesh, inception)
