"""Scores a trained run: `python -m jaxgen.evaluate --workdir=DIR --metrics=fid50k,kid50k`.

    python -m jaxgen.evaluate --workdir=/tmp/dcgan --metrics=fid50k,kid50k,is50k,pr50k3
    python -m jaxgen.evaluate --workdir=/tmp/dcgan --metrics=fid10k --best --output=fid.json
    python -m jaxgen.evaluate --workdir=/tmp/diffusion --metrics=fid50k --steps=18
    python -m jaxgen.evaluate --workdir=/tmp/superres --metrics=psnr,ssim,psnr_y,ssim_y
    python -m jaxgen.evaluate --network=/tmp/phema/phema-00000512-0.075.npz --metrics=fid50k

Rebuilds the experiment from DIR/config.json, restores a checkpoint (the newest; `--step=N`;
or `--best`, the best by the run's `checkpoint.best_metric`) and scores its EMA generator with
the metrics of `jaxgen.evaluation` (`swd`, and the Inception metrics `fidNk`, `kidNk`, `isNk`,
`prNkK`, `fidNk_full`: see `jaxgen/metrics/registry.py`) on the run's training data;
`--network=FILE` scores an exported generator (`jaxgen.export`, `jaxgen.phema`) on the data
its config names. Prints one `name: value` line per result (IS adds `_std`, precision/recall
give `_precision` and `_recall`). Diffusion runs sample with their `config.sampling`;
`--sampler`, `--steps`, `--guidance`, ... override it, and `--guide=RUN` guides them by
another run's denoiser (EDM2's autoguidance). Image-to-image runs are scored on their held-out pairs, each
metric beside the task's baseline (`baseline_psnr`, ...): `psnr`, `ssim`, `psnr_y`, `ssim_y`,
`lpips`, `fid` (jaxgen.evaluation.PairedEvaluator); unpaired (CycleGAN) runs translate held-out
A images and take `swd`, `fid` against B and, on the embedded two domains, `psnr`, `ssim`
against the known translation (UnpairedEvaluator). Reads the workdir and never writes to it
(except `--output`, if you point it there); real-data statistics are cached in
`$JAXGEN_CACHE/fid_stats`.

The FID Inception weights are found as in `jaxgen.metrics.inception_weights`: --weights, the
run's `eval.inception_weights`, $JAXGEN_INCEPTION_WEIGHTS, the cache, or a download.
"""

import argparse
import json
import logging
import os
import sys

from jaxgen import trained
from jaxgen.cli import add_checkpoint_choice, report_user_error, setup_logging
from jaxgen.errors import UserError


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.evaluate',
                                   description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a jaxgen.main workdir (config.json and checkpoints/)')
  source.add_argument('--network',
                      help='a generator file (`jaxgen.export`; `jaxgen.phema`\'s post-hoc EMAs), '
                      'scored on the data its config names')
  parser.add_argument('--metrics', required=True,
                      help='comma-separated, e.g. fid50k,kid50k,is50k,pr50k3 or swd')
  add_checkpoint_choice(parser, 'score')
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
  sampling = parser.add_argument_group(
      'diffusion sampling: override the run\'s config.sampling (as `jaxgen.generate`)')
  for flag, field, kind in SAMPLING_OVERRIDES:
    sampling.add_argument(flag, type=kind, default=None, help=f'config.sampling.{field}')
  sampling.add_argument('--guide', default=None,
                        help='a guiding diffusion run (workdir or .npz), as `jaxgen.generate '
                        '--guide` (EDM2\'s autoguidance)')
  args = parser.parse_args(argv)
  if args.network and (args.step is not None or args.best):
    parser.error('--step and --best pick a checkpoint of a --workdir; a --network has one')
  if args.batch_size is not None and args.batch_size < 1:
    parser.error('--batch_size must be positive')
  return args


# Flags that override the run's config.sampling fields: (flag, field, type).
SAMPLING_OVERRIDES = (('--sampler', 'sampler', str), ('--steps', 'num_steps', int),
                      ('--guidance', 'guidance', float), ('--S_churn', 'S_churn', float),
                      ('--S_min', 'S_min', float), ('--S_max', 'S_max', float),
                      ('--S_noise', 'S_noise', float), ('--eta', 'eta', float))


def apply_sampling_overrides(args, config, skip=()):
  """Sets config.sampling fields from the flags given (but those in `skip`); UserError for a
  run without them."""
  given = [(flag, field) for flag, field, _ in SAMPLING_OVERRIDES
           if getattr(args, flag[2:]) is not None and field not in skip]
  if given and 'sampling' not in config:
    raise UserError(f'{", ".join(f for f, _ in given)}: only runs with a sampler (diffusion) '
                    f'take them, and this run is {config.model.name!r}; leave them out')
  for flag, field in given:
    config.sampling[field] = getattr(args, flag[2:])


def metric_names(text):
  """'fid50k, kid50k' -> ['fid50k', 'kid50k']; UserError when it names none."""
  names = [n.strip() for n in text.split(',') if n.strip()]
  if not names:
    raise UserError('--metrics names no metric: e.g. --metrics=fid50k,kid50k (image-to-image '
                    'runs: --metrics=psnr,ssim)')
  return names


def parse_metrics(text, allowed=None):
  """'fid50k, kid50k' -> ['fid50k', 'kid50k']; UserError on an unknown or missing name.
  `allowed`: the names the evaluator of a run with a task computes (its `METRICS`, e.g. psnr,
  ssim; jaxgen/evaluation.py); None: a run that samples from latents (swd, Inception metrics)."""
  from jaxgen.metrics import registry  # pylint: disable=import-outside-toplevel
  names = metric_names(text)
  if allowed is not None:
    unknown = [n for n in names if n not in allowed]
    if unknown:
      raise UserError(f'--metrics has {", ".join(unknown)}, which an image-to-image run does '
                      f'not compute: choose from {", ".join(allowed)}')
    return names
  for name in names:
    if name != 'swd':
      registry.parse_metric_name(name)
  return names


def run(args, inception=None):
  """Executes the parsed command. Returns (step, {result name: float}).

  `inception`: an already loaded `fid.InceptionFeatures` (e.g. another precision); default:
  loaded from --weights and the usual lookup.
  """
  config = (trained.load_config(args.workdir) if args.workdir else
             trained.generator_config(args.network))
  metric_names(args.metrics)
  if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
    raise UserError(f'--output={args.output}: its folder does not exist')
  # Imported here so that --help and bad arguments answer quickly.
  from jaxgen import evaluation, parallel

  # With a guide, --guidance goes to `generate` with it: the recipe checks the pair there (an
  # unconditional run takes guidance only from a guiding network).
  apply_sampling_overrides(args, config, skip=('guidance',) if args.guide else ())
  if args.batch_size:
    config.eval.batch_size = args.batch_size
  if args.weights:
    config.eval.inception_weights = args.weights
  mesh = parallel.create_mesh()
  if args.network:
    restored = trained.load_generator(args.network, config=config, need_data=True)
  else:
    restored = trained.restore(args.workdir, args.step, args.best, mesh, config)
  options = {}
  if args.guide:
    if 'guide' not in restored.recipe.sampling_options:
      raise UserError(f'--guide: only diffusion runs take a guiding network, and this run is '
                      f'{config.model.name!r}; leave it out')
    options['guide'] = trained.load_run(args.guide, '--guide', mesh)
    if args.guidance is not None:
      options['guidance'] = args.guidance
    restored.recipe.check_sampling(**options)
  # The names a run's evaluator computes depend on its recipe: checked once it is built.
  task = restored.recipe.task
  names = parse_metrics(args.metrics, None if task is None else
                        evaluation.TASK_EVALUATORS[task.evaluator].METRICS)
  config.eval.metrics = tuple(names)
  if inception is None and task is None and any(n != 'swd' for n in names):
    inception = evaluation.load_inception(config, mesh, allow_download=not args.no_download)
  step = restored.step
  logging.getLogger('jaxgen').info('Scoring step %d of %s with %s.', step,
                                   args.workdir or args.network, ', '.join(names))
  evaluator = evaluation.create_evaluator(config, restored.recipe, restored.eval_source, mesh,
                                          inception=inception, options=options)
  results = {k: float(v) for k, v in evaluator(restored.state).items()}
  return step, results


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  setup_logging(quiet=True)
  try:
    step, results = run(args)
  except UserError as e:
    return report_user_error(e)
  for name, value in results.items():
    print(f'{name}: {value:.6g}')
  if args.output:
    with open(args.output, 'w') as f:
      where = ({'workdir': os.path.abspath(args.workdir)} if args.workdir else
               {'network': os.path.abspath(args.network)})
      json.dump({**where, 'step': step, 'results': results}, f, indent=2)
      f.write('\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
