"""Do a conditional run's samples show their label's shape? Class accuracy on the embedded data.

    python tools/class_accuracy.py --workdir=/tmp/diffusion [--samples=128] [--option=guidance=3]
    python tools/class_accuracy.py --network=/tmp/phema/phema-00010000-0.075.npz

A run's workdir (its newest checkpoint, or `--best`), or a file of `jaxgen.export` or
`jaxgen.phema` (e.g. each post-hoc EMA length of a run, to choose one by class accuracy).

AC-GAN's "Inception accuracy" (Odena et al. 2017, the share of a class-conditional model's
samples that a classifier assigns to the class they were drawn for) with a judge made for the
embedded data: a small CNN trained on embedded images the run never saw (`data.seed` + 1), at
the run's resolution and classes and at every orientation, with Gaussian noise of a random
strength added (σ up to 0.15 of the [-1, 1] range) so that a sample's speckle does not decide.
The judge is cached under `$JAXGEN_CACHE/class_judge` (default `~/.cache/jaxgen`). On the
diffusion default's data (16×16, five classes) it is right about 99.3–100 % of held-out images
of each class; a first measurement takes 5.5 minutes on two CPU cores (the judge's training most
of it), a later one under a minute.

Prints the judge's accuracy on held-out real images, then for each label the share of its
samples judged as that label, the confusion row (which classes they were judged as) and the
intra-class Fréchet distance: intra-FID (Miyato & Koyama 2018, FID within each class) in the
judge's 128 hidden features instead of Inception's, between the label's samples and the held-out
real images of its class (--held_out over all classes, drawn at the run's `data.rotation`),
beside the same distance for as many other real images as samples (the floor; with 128 samples
in 128 dimensions the distance is biased upwards, so compare runs at the same --samples).
Accuracy is a forced choice — an irregular angular blob drawn for the square label is judged a
square rather than a disc — and the distance says how far the samples of a label are from the
real images of its class. The samples are drawn as `jaxgen.generate` draws them, seeds 0..N−1,
with the run's sampling settings unless overridden. A judge is a classifier, not a person: on a
shape it never saw (a round blob drawn for the square label) its answer is one of the classes it
knows, so read a label's row beside the rows of the classes it can be confused with (a square
label's samples judged square as often as a disc label's are: the label is not used).
`--output=FILE` also writes the figures as JSON.
"""

import argparse
import functools
import json
import os
import sys
import types

import numpy as np

JUDGE_VERSION = 1  # Part of the cache key: bump when the judge's network or training changes.


@functools.lru_cache(maxsize=None)
def judge_network():
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  class Judge(nn.Module):
    """Three levels of two 3×3 convolutions (32, 64, 128 channels) and max-pooling, global
    mean, a hidden layer of 128: about 290 k parameters."""
    num_classes: int

    @nn.compact
    def __call__(self, x, features=False):
      """Logits [N, K]; with `features`, (logits, the hidden layer [N, 128])."""
      for width in (32, 64, 128):
        x = nn.relu(nn.Conv(width, (3, 3))(x))
        x = nn.relu(nn.Conv(width, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
      head = nn.Dense(self.num_classes)  # Made first: Dense_0, as the cached judges have it.
      hidden = nn.relu(nn.Dense(128)(x.mean((1, 2))))
      logits = head(hidden)
      return (logits, hidden) if features else logits

  return Judge


def render(resolution, channels, classes, seed, count, rotation=1.0):
  """`count` embedded images in [-1, 1] and their labels (positions in `classes`)."""
  from jaxgen.data.procedural import ProceduralSource  # pylint: disable=import-outside-toplevel
  source = ProceduralSource(resolution, count, seed, channels, classes, rotation)
  examples = [source[i] for i in range(count)]
  images = np.stack([e['image'] for e in examples]).astype(np.float32) / 127.5 - 1.0
  return images, np.array([e['label'] for e in examples], np.int32)


def train_judge(resolution, channels, classes, seed, *, count=30000, epochs=10, batch=128,
                log=print):
  """Trains the judge on `count` embedded images of data seed `seed`; returns its params."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  images, labels = render(resolution, channels, classes, seed, count)
  net = judge_network()(num_classes=len(classes))
  params = net.init(jax.random.PRNGKey(0), images[:1])
  steps = epochs * (count // batch)
  tx = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y, key):
    strength_key, noise_key = jax.random.split(key)
    strength = jax.random.uniform(strength_key, (x.shape[0], 1, 1, 1), maxval=0.15)
    x = x + strength * jax.random.normal(noise_key, x.shape)

    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  for epoch in range(epochs):
    order = rng.permutation(count)
    for i in range(count // batch):
      key, sub = jax.random.split(key)
      chunk = order[i * batch:(i + 1) * batch]
      params, opt_state, loss = step(params, opt_state, images[chunk], labels[chunk], sub)
    log(f'judge epoch {epoch + 1}/{epochs}: loss {float(loss):.4f}')
  return params


@functools.lru_cache(maxsize=None)
def _judge_apply(num_classes):
  """The jitted fn(params, images) -> (class probabilities, hidden features), built once per
  class count."""
  import jax  # pylint: disable=import-outside-toplevel
  net = judge_network()(num_classes=num_classes)

  def apply(p, x):
    logits, hidden = net.apply(p, x, features=True)
    return jax.nn.softmax(logits), hidden

  return jax.jit(apply)


def judge(params, num_classes, images):
  """(class probabilities [N, K], the judge's hidden features [N, 128]) of images in [-1, 1]."""
  apply = _judge_apply(num_classes)
  outs = [apply(params, images[i:i + 512]) for i in range(0, len(images), 512)]
  return tuple(np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(2))


def predict(params, num_classes, images):
  """Class probabilities [N, K] of images in [-1, 1]."""
  return judge(params, num_classes, images)[0]


def load_or_train_judge(resolution, channels, classes, seed, cache, log=print):
  """The cached judge for these data, trained and cached first if there is none."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  name = (f'v{JUDGE_VERSION}_r{resolution}_c{channels}_s{seed}_'
          f'k{"-".join(map(str, classes))}.msgpack')
  path = os.path.join(cache, name)
  template = judge_network()(num_classes=len(classes)).init(
      jax.random.PRNGKey(0), np.zeros((1, resolution, resolution, channels), np.float32))
  if os.path.exists(path):
    with open(path, 'rb') as f:
      return flax.serialization.from_bytes(template, f.read()), path
  log(f'training the judge (cached as {path})')
  params = train_judge(resolution, channels, classes, seed, log=log)
  os.makedirs(cache, exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(flax.serialization.to_bytes(params))
  os.replace(tmp, path)
  return params, path


def make_sampler(run, options, mesh):
  """`jaxgen.generate`'s jitted fn(seeds, labels) for `run` with `options` ({generate's option
  field: value}; the rest as generate's defaults, i.e. the run's sampling settings), traced once
  so that a bad option value is a UserError before anything is trained or written."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgen import generate  # pylint: disable=import-outside-toplevel
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel
  refused = [f'--option={field}' for _, option, field, _ in generate.OPTION_FLAGS
             if field in options and option not in run.recipe.sampling_options]
  if refused:
    raise UserError(f'{", ".join(refused)}: this run ({run.config.model.name}) does not take '
                    'it; leave it out')
  args = types.SimpleNamespace(**{field: default for _, _, field, default
                                  in generate.OPTION_FLAGS})
  for field, value in options.items():
    setattr(args, field, value)
  sample = generate.make_generator(run, args, mesh)
  jax.eval_shape(sample, jax.ShapeDtypeStruct((mesh.devices.size,), np.uint32),
                 jax.ShapeDtypeStruct((mesh.devices.size,), np.int32))
  return sample


def class_accuracy(sample, num_classes, params, samples, mesh, batch=256):
  """Per label: the judge's (probabilities [samples, K], features [samples, 128]) for
  `sample`'s images of that label (seeds 0..samples−1)."""
  from jaxgen import parallel  # pylint: disable=import-outside-toplevel
  batch = parallel.device_batch(min(batch, samples), mesh)
  outputs = []
  for label in range(num_classes):
    images = []
    for start in range(0, samples, batch):
      seeds = np.arange(start, start + batch, dtype=np.uint32)
      out = np.asarray(sample(seeds, np.full((batch,), label, np.int32)))
      images.append(out[:min(batch, samples - start)])
    images = np.clip(np.concatenate(images), -1.0, 1.0).astype(np.float32)
    outputs.append(judge(params, num_classes, images))
  return outputs


def intra_class_fd(real_features, real_labels, sample_features):
  """Per label k: the Fréchet distance between Gaussians fitted to the judge's features of
  label k's samples and of the real images of class k — intra-FID (Miyato & Koyama 2018, FID
  within each class) with the judge in Inception's place. With as few samples as features the
  covariances are singular and the distance is biased upwards: read it beside the same
  distance for as many other real images (the floor), not as an absolute figure."""
  import warnings  # pylint: disable=import-outside-toplevel
  from jaxgen.metrics import fid  # pylint: disable=import-outside-toplevel

  def stats(features):
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)

  distances = []
  for k, fake in enumerate(sample_features):
    with warnings.catch_warnings():  # Singular covariances, expected here (see above).
      warnings.simplefilter('ignore')
      distances.append(fid.frechet_distance(*stats(real_features[real_labels == k]),
                                            *stats(fake)))
  return distances


def parse_options(given):
  """{generate's option field: value} from NAME=VALUE strings (numbers where they parse)."""
  from jaxgen import generate  # pylint: disable=import-outside-toplevel
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel
  fields = [field for _, _, field, _ in generate.OPTION_FLAGS if field != 'guide']
  options = {}
  for text in given:
    name, _, value = text.partition('=')
    if name not in fields or not value:
      raise UserError(f'--option={text}: give NAME=VALUE with NAME one of {", ".join(fields)}')
    for kind in (int, float, str):
      try:
        options[name] = kind(value)
        break
      except ValueError:
        continue
  return options


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a jaxgen.main workdir (its newest checkpoint)')
  source.add_argument('--network', help='a file of `jaxgen.export` or `jaxgen.phema`')
  parser.add_argument('--samples', type=int, default=128, help='samples per label')
  parser.add_argument('--best', action='store_true', help='the best checkpoint, not the latest')
  parser.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                      help="a sampling option as jaxgen.generate's flag of that name, e.g. "
                      '--option=guidance=1.5 --option=steps=40 --option=S_churn=40')
  parser.add_argument('--held_out', type=int, default=2000, help='real images for the judge')
  parser.add_argument('--cache', default='', help='default $JAXGEN_CACHE/class_judge')
  parser.add_argument('--output', default='', help='also write the figures to this JSON file')
  return parser.parse_args(argv)


def run(args):
  """Measures; returns the figures (a dict, as --output writes them)."""
  from jaxgen import parallel, pretrained, trained  # pylint: disable=import-outside-toplevel
  from jaxgen.data.procedural import CLASS_NAMES  # pylint: disable=import-outside-toplevel
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel

  if args.samples < 2 or args.held_out < 2:
    raise UserError(f'--samples={args.samples}, --held_out={args.held_out}: each must be at '
                    'least 2 (a covariance needs two or more)')
  options = parse_options(args.option)
  if args.output and os.path.isdir(args.output):
    raise UserError(f'--output={args.output} is a folder: give a file name')
  if args.network and args.best:
    raise UserError('--best picks a checkpoint of a --workdir; a --network has one')
  mesh = parallel.create_mesh()
  if args.network:
    restored = trained.load_generator(args.network)
  else:
    restored = trained.restore(args.workdir, best=args.best, mesh=mesh, need_data=False)
  config = restored.config
  if config.data.source != 'embedded' or not restored.recipe.num_classes:
    raise UserError(f'{args.network or args.workdir} is not a class-conditional run on the '
                    f'embedded data (data.source={config.data.source!r}, data.use_labels='
                    f'{config.data.use_labels}): the judge knows only the embedded shapes')
  classes = tuple(config.data.classes) or tuple(range(len(CLASS_NAMES)))
  if args.held_out < 2 * len(classes):
    raise UserError(f'--held_out={args.held_out}: give at least 2 per class, '
                    f'{2 * len(classes)} for these {len(classes)}')
  sample = make_sampler(restored, options, mesh)

  names = [CLASS_NAMES[c] for c in classes]
  resolution, channels = config.data.resolution, config.data.channels
  seed = config.data.seed + 1  # Images the run never saw; held-out ones from seed + 1 + 1.
  cache = args.cache or os.path.join(pretrained.cache_dir(), 'class_judge')
  log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
  params, _ = load_or_train_judge(resolution, channels, classes, seed, cache, log=log)

  # The judge knows every orientation; the real images it compares with are the run's own.
  rotation = config.data.get('rotation', 1.0)
  held_images, held_labels = render(resolution, channels, classes, seed + 1, args.held_out,
                                    rotation)
  held_probs, held_features = judge(params, len(classes), held_images)
  held = held_probs.argmax(-1)
  real = {names[k]: float((held[held_labels == k] == k).mean()) for k in range(len(classes))}
  outputs = class_accuracy(sample, len(classes), params, args.samples, mesh)
  distances = intra_class_fd(held_features, held_labels, [f for _, f in outputs])
  # The floor: as many other real images per class as there are samples per label.
  floor_images, floor_labels = render(resolution, channels, classes, seed + 2,
                                      args.samples * len(classes), rotation)
  floor_features = judge(params, len(classes), floor_images)[1]
  floors = intra_class_fd(held_features, held_labels,
                          [floor_features[floor_labels == k] for k in range(len(classes))])
  rows = {}
  for k, (p, _) in enumerate(outputs):
    judged = np.bincount(p.argmax(-1), minlength=len(classes))
    rows[names[k]] = {'accuracy': float(judged[k] / len(p)),
                      'judged_as': {names[j]: int(judged[j]) for j in range(len(classes))},
                      'fd': distances[k], 'fd_real': floors[k]}
  print('real images (the judge):  ' + '  '.join(f'{n} {a:.3f}' for n, a in real.items()))
  for name, row in rows.items():
    judged = ', '.join(f'{n} {c}' for n, c in row['judged_as'].items() if c)
    print(f'label {name:<8} samples judged {name}: {row["accuracy"]:.3f}   intra-class FD '
          f'{row["fd"]:6.1f} (real {row["fd_real"]:4.1f})   ({judged})')
  mean = float(np.mean([row['accuracy'] for row in rows.values()]))
  figures = {'run': args.network or args.workdir, 'step': int(restored.step),
             'samples_per_label': args.samples, 'options': options, 'judge_on_real': real,
             'labels': rows, 'mean': mean, 'mean_fd': float(np.mean(distances)),
             'mean_fd_real': float(np.mean(floors))}
  if args.output:
    with open(args.output, 'w', encoding='utf-8') as f:
      json.dump(figures, f, indent=2)
  return figures


def main(argv=None):
  from jaxgen.cli import run_command  # pylint: disable=import-outside-toplevel
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args, lambda figures: (
      f'mean class accuracy: {figures["mean"]:.3f}, intra-class FD {figures["mean_fd"]:.1f} '
      f'(real images: {figures["mean_fd_real"]:.1f}), over {figures["samples_per_label"]} '
      'samples per label'))


if __name__ == '__main__':
  sys.exit(main())
