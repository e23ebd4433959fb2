"""Scores a trained run: `python -m jaxgen.evaluate --workdir=DIR --metrics=fid50k,kid50k`.

    python -m jaxgen.evaluate --workdir=/tmp/dcgan --metrics=fid50k,kid50k,is50k,pr50k3
    python -m jaxgen.evaluate --workdir=/tmp/dcgan --metrics=fid10k --best --output=fid.json

Rebuilds the experiment from DIR/config.json, restores a checkpoint (the newest; `--step=N`;
or `--best`, the best by the run's `checkpoint.best_metric`) and scores its EMA generator with
the metrics of `jaxgen.evaluation` (`swd`, and the Inception metrics `fidNk`, `kidNk`, `isNk`,
`prNkK`, `fidNk_full`: see `jaxgen/metrics/registry.py`) on the run's training data. Prints
one `name: value` line per result (IS adds `_std`, precision/recall give `_precision` and
`_recall`). Reads the workdir and never writes to it (except `--output`, if you point it
there); real-data statistics are cached in `$JAXGEN_CACHE/fid_stats`.

The FID Inception weights are found as in `jaxgen.metrics.inception_weights`: --weights, the
run's `eval.inception_weights`, $JAXGEN_INCEPTION_WEIGHTS, the cache, or a download.
"""

import argparse
import json
import logging
import os
import sys

from jaxgen.errors import UserError

PROG = 'jaxgen'


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.evaluate',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='a jaxgen.main workdir (config.json and checkpoints/)')
  parser.add_argument('--metrics', required=True,
                      help='comma-separated, e.g. fid50k,kid50k,is50k,pr50k3 or swd')
  which = parser.add_mutually_exclusive_group()
  which.add_argument('--step', type=int, default=None,
                     help='the checkpoint to score (default: the newest)')
  which.add_argument('--best', action='store_true',
                     help='score the best checkpoint by the run\'s checkpoint.best_metric')
  parser.add_argument('--weights', default=None,
                      help='FID Inception weights: a converted .npz or pytorch-fid\'s .pth '
                      '(default: eval.inception_weights, $JAXGEN_INCEPTION_WEIGHTS, the '
                      'cache, or a download)')
  parser.add_argument('--no_download', action='store_true',
                      help='never download the Inception weights')
  parser.add_argument('--batch_size', type=int, default=None,
                      help='images per generator and Inception batch (default: the run\'s '
                      'eval.batch_size)')
  parser.add_argument('--output', default=None,
                      help='also write the results, the step and the workdir as JSON here')
  args = parser.parse_args(argv)
  if args.batch_size is not None and args.batch_size < 1:
    parser.error('--batch_size must be positive')
  return args


def parse_metrics(text):
  """'fid50k, kid50k' -> ['fid50k', 'kid50k']; UserError on an unknown or missing name."""
  from jaxgen.metrics import registry  # pylint: disable=import-outside-toplevel
  names = [n.strip() for n in text.split(',') if n.strip()]
  if not names:
    raise UserError('--metrics names no metric: e.g. --metrics=fid50k,kid50k')
  for name in names:
    if name != 'swd':
      registry.parse_metric_name(name)
  return names


def load_config(workdir):
  """DIR/config.json as a ConfigDict; UserError when it is missing or unreadable."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise UserError(f'{path} does not exist: --workdir must be a folder that '
                    '`python -m jaxgen.main` trained in')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is unreadable ({e})') from None


def select_step(manager, config, step=None, best=False):
  """The checkpoint step to score: `step`, the best by the run's metric, or the newest."""
  steps = sorted(manager.all_steps())
  if not steps:
    raise UserError(f'no checkpoints in {manager.directory}: train first, or wait for the '
                    'first save')
  if step is not None:
    if step not in steps:
      raise UserError(f'no checkpoint {step} in {manager.directory}: there are '
                      f'{", ".join(map(str, steps))}')
    return step
  if best:
    metric = config.checkpoint.best_metric
    if not metric:
      raise UserError('--best needs the run\'s checkpoint.best_metric, which is empty')
    try:
      chosen = manager.best_step()
    except KeyError:
      chosen = None
    if chosen is None:
      raise UserError(f'no checkpoint in {manager.directory} carries {metric!r}: use --step')
    return chosen
  return steps[-1]


def run(args, inception=None):
  """Executes the parsed command. Returns (step, {result name: float}).

  `inception`: an already loaded `fid.InceptionFeatures` (e.g. another precision); default:
  loaded from --weights and the usual lookup.
  """
  names = parse_metrics(args.metrics)
  config = load_config(args.workdir)
  if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
    raise UserError(f'--output={args.output}: its folder does not exist')
  # Imported here so that --help and bad arguments answer quickly.
  import jax
  from jaxgen import checkpoint, data, evaluation, parallel, train

  config.eval.metrics = tuple(names)
  if args.batch_size:
    config.eval.batch_size = args.batch_size
  if args.weights:
    config.eval.inception_weights = args.weights
  manager = checkpoint.open_read_only(args.workdir, config.checkpoint.best_metric or None,
                                      config.checkpoint.best_mode)
  step = select_step(manager, config, args.step, args.best)
  mesh = parallel.create_mesh()
  if inception is None and any(n != 'swd' for n in names):
    inception = evaluation.load_inception(config, mesh, allow_download=not args.no_download)
  source = data.create_source(config.data)
  recipe = train.create_recipe(config, source)
  abstract = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(config.seed))
  shardings = parallel.state_sharding(mesh, abstract)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  state = checkpoint.restore(manager, step, abstract)
  manager.close()
  logging.getLogger('jaxgen').info('Scoring step %d of %s with %s.', step, args.workdir,
                                   ', '.join(names))
  evaluator = evaluation.Evaluator(config, recipe, source, mesh, inception=inception)
  results = {k: float(v) for k, v in evaluator(state).items()}
  return step, results


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's notes on a read-only manager.
  logger = logging.getLogger('jaxgen')
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname).1s %(message)s',
                                           '%H:%M:%S'))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
  try:
    step, results = run(args)
  except UserError as e:
    print(f'{PROG}: error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  for name, value in results.items():
    print(f'{name}: {value:.6g}')
  if args.output:
    with open(args.output, 'w') as f:
      json.dump({'workdir': os.path.abspath(args.workdir), 'step': step,
                 'results': results}, f, indent=2)
      f.write('\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
