"""Images from a trained run: `python -m jaxgen.generate --workdir=DIR --outdir=OUT --seeds=0-63`.

    python -m jaxgen.generate --workdir=/tmp/stylegan --outdir=/tmp/out --seeds=0-63 --grid
    python -m jaxgen.generate --workdir=/tmp/stylegan --outdir=/tmp/out --seeds=7 --trunc=0.7
    python -m jaxgen.generate --workdir=RUN --outdir=OUT --seeds=0-9 --class=3 --best
    python -m jaxgen.generate --workdir=/tmp/diffusion --outdir=OUT --seeds=0-63 --steps=18 \
        --sampler=heun [--guidance=1.5 --class=3]
    python -m jaxgen.generate --network=G.npz --outdir=OUT --seeds=0-63   # jaxgen.export's file

Rebuilds the experiment from DIR/config.json, restores a checkpoint (the newest; `--step=N`;
or `--best`, the best by the run's `checkpoint.best_metric`) and writes one PNG per seed from
its EMA generator, OUT/seed0007.png, and with `--grid` all of them in one OUT/grid.png. A
seed's latent z (and random noise) depends on the seed alone, so seed 7 is the same image
whichever seeds go with it and whatever the batch size. StyleGAN2 runs also take the truncation
trick (`--trunc=ψ`, `--trunc_cutoff`: ws ← w_avg + ψ (ws − w_avg), ψ < 1 trades variety for
typicality) and the noise inputs' mode. Diffusion runs take the sampler and its settings
(`--sampler=heun --steps=18`, `--guidance=1.5` for a conditional run, EDM's `--S_churn` ...);
by default the run's `config.sampling`; `--guide=RUN --guidance=w` guides by another run's
denoiser instead of the unconditional branch (EDM2's autoguidance; RUN a workdir or a `.npz`). Needs no training data, except a conditional model's
class count. Reads the workdir and never writes to it; existing files in OUT are kept unless
`--overwrite`. `--network=FILE` samples from a generator exported by `python -m jaxgen.export`
instead of a workdir.
"""

import argparse
import logging
import math
import os
import re
import sys

from jaxgen import trained
from jaxgen.cli import add_checkpoint_choice, run_command
from jaxgen.errors import UserError, check_local

NOISE_MODES = ('const', 'random', 'none')
MAX_SEED = 2**32 - 1


def parse_seeds(text):
  """'0-3,7' -> [0, 1, 2, 3, 7] (in order, each once); UserError on anything else."""
  seeds = []
  for part in text.split(','):
    part = part.strip()
    match = re.fullmatch(r'(\d+)(?:-(\d+))?', part)
    if not match:
      raise UserError(f'--seeds={text!r}: {part!r} is not a seed or a range; write e.g. '
                      '--seeds=0-63 or --seeds=1,5,10-12 (non-negative integers)')
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    if last < first:
      raise UserError(f'--seeds={text!r}: the range {part!r} ends before it starts')
    if last > MAX_SEED:
      raise UserError(f'--seeds={text!r}: seeds go up to {MAX_SEED}')
    if last - first >= 1_000_000:
      raise UserError(f'--seeds={text!r}: {part!r} asks for more than a million images')
    seeds.extend(range(first, last + 1))
  return list(dict.fromkeys(seeds))


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.generate',
                                   description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a jaxgen.main workdir (config.json and checkpoints/)')
  source.add_argument('--network', help='a generator file written by `python -m jaxgen.export`')
  parser.add_argument('--outdir', required=True,
                      help='folder for the PNGs (created if missing)')
  parser.add_argument('--seeds', required=True,
                      help='latent seeds: e.g. 0-63 or 1,5,10-12; one image each')
  add_checkpoint_choice(parser, 'sample')
  parser.add_argument('--trunc', type=float, default=1.0,
                      help='truncation ψ (StyleGAN2): 1 = none, 0 = every image is w_avg\'s; '
                      'default 1')
  parser.add_argument('--trunc_cutoff', type=int, default=None,
                      help='truncate only the first N ws, the coarse styles (StyleGAN2; '
                      'default: all)')
  parser.add_argument('--class', type=int, default=None, dest='class_index', metavar='K',
                      help='class index for a conditional model (required by one)')
  parser.add_argument('--noise_mode', choices=NOISE_MODES, default='const',
                      help='StyleGAN2 noise inputs: const (fixed at init, as in training '
                      'samples), random (drawn per seed), none; default const')
  sampler = parser.add_argument_group('diffusion sampling (default: the run\'s config.sampling)')
  sampler.add_argument('--sampler', default=None,
                       help='heun (EDM, deterministic), euler, ddim or ddpm')
  sampler.add_argument('--steps', type=int, default=None,
                       help='sampler steps (heun: 2·steps − 1 network evaluations); EDM uses 18 '
                       'at 32², 40 at 64²')
  sampler.add_argument('--guidance', type=float, default=None,
                       help='classifier-free guidance scale for a conditional run (1 = none)')
  sampler.add_argument('--S_churn', type=float, default=None,
                       help='EDM\'s stochastic sampler: noise added per step (0 = deterministic)')
  sampler.add_argument('--S_min', type=float, default=None, help='churn only for σ ≥ S_min')
  sampler.add_argument('--S_max', type=float, default=None, help='churn only for σ ≤ S_max')
  sampler.add_argument('--S_noise', type=float, default=None,
                       help='scale of the churn noise (EDM: 1.003 on ImageNet)')
  sampler.add_argument('--eta', type=float, default=None,
                       help='DDIM\'s η: 0 deterministic, 1 = DDPM\'s ancestral noise')
  sampler.add_argument('--guide', default=None,
                       help='a guiding diffusion run (workdir, or a .npz of jaxgen.export or '
                       'jaxgen.phema): --guidance extrapolates from its denoiser instead of the '
                       'unconditional one (EDM2\'s autoguidance: a smaller, less trained net)')
  parser.add_argument('--grid', action='store_true',
                      help='also write all images, in seed order, to OUTDIR/grid.png')
  parser.add_argument('--batch_size', type=int, default=32,
                      help='images per generator call (memory only; images do not depend on it)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace PNGs of the same names already in OUTDIR')
  args = parser.parse_args(argv)
  if args.network and (args.step is not None or args.best):
    parser.error('--step and --best pick a checkpoint of a --workdir; a --network has one')
  if args.batch_size < 1:
    parser.error('--batch_size must be positive')
  if args.trunc_cutoff is not None and args.trunc_cutoff < 0:
    parser.error('--trunc_cutoff must be ≥ 0')
  return args


def output_paths(args, seeds):
  """The files this command writes: {seed: path}, and the grid's path (or None)."""
  paths = {seed: os.path.join(args.outdir, f'seed{seed:04d}.png') for seed in seeds}
  return paths, (os.path.join(args.outdir, 'grid.png') if args.grid else None)


def check_outdir(args, paths):
  """UserError if OUTDIR is not a folder, or would lose files without --overwrite."""
  check_local(args.outdir, '--outdir')
  if os.path.exists(args.outdir) and not os.path.isdir(args.outdir):
    raise UserError(f'--outdir={args.outdir} is a file, not a folder: choose a folder')
  if args.overwrite:
    return
  existing = [p for p in paths if os.path.exists(p)]
  if existing:
    more = f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''
    raise UserError(f'{existing[0]} already exists{more}: choose another --outdir, other '
                    '--seeds, or pass --overwrite to replace them')


# Flags that become keyword options of the recipe's `generate`: (flag, option, args field,
# default). A recipe whose `sampling_options` lacks the option refuses its flag.
OPTION_FLAGS = (('--trunc', 'truncation_psi', 'trunc', 1.0),
                ('--trunc_cutoff', 'truncation_cutoff', 'trunc_cutoff', None),
                ('--noise_mode', 'noise_mode', 'noise_mode', 'const'),
                ('--sampler', 'sampler', 'sampler', None),
                ('--steps', 'num_steps', 'steps', None),
                ('--guidance', 'guidance', 'guidance', None),
                ('--S_churn', 'S_churn', 'S_churn', None),
                ('--S_min', 'S_min', 'S_min', None),
                ('--S_max', 'S_max', 'S_max', None),
                ('--S_noise', 'S_noise', 'S_noise', None),
                ('--eta', 'eta', 'eta', None),
                ('--guide', 'guide', 'guide', None))


def check_options(args, config, num_classes):
  """UserError for options the run's model does not take."""
  from jaxgen.train import RECIPES  # pylint: disable=import-outside-toplevel
  takes = RECIPES[config.model.name].sampling_options
  given = [flag for flag, option, field, default in OPTION_FLAGS
           if option not in takes and getattr(args, field) != default]
  if given:
    takers = sorted(n for n, r in RECIPES.items() if set(r.sampling_options) & {
        option for flag, option, _, _ in OPTION_FLAGS if flag in given})
    raise UserError(f'{", ".join(given)}: only {"/".join(takers)} runs take them, and this run '
                    f'is {config.model.name!r}; leave them out')
  if config.data.use_labels:
    if args.class_index is None:
      raise UserError(f'this run is conditional on {num_classes} classes: choose one with '
                      f'--class=0..{num_classes - 1}')
    if not 0 <= args.class_index < num_classes:
      raise UserError(f'--class={args.class_index} is out of range: this run has '
                      f'{num_classes} classes, 0..{num_classes - 1}')
  elif args.class_index is not None:
    raise UserError('--class: this run is unconditional (data.use_labels=False); leave it out')


def make_generator(restored, args, mesh, guide=None):
  """A jitted fn(seeds uint32 [N], labels int32 [N]) → uint8-ready floats [N, R, R, C].

  Each image is generated on its own (vmap) from keys derived from its seed alone.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgen import parallel  # pylint: disable=import-outside-toplevel

  recipe, state = restored.recipe, restored.state
  options = {option: getattr(args, field) for _, option, field, _ in OPTION_FLAGS
             if option in recipe.sampling_options}
  if 'guide' in options:
    options['guide'] = guide  # The run loaded from --guide (or None).

  def one(seed, label):
    key = jax.random.PRNGKey(seed)
    z = recipe.latents(key, 1)
    if 'noise_key' in recipe.sampling_options:  # Random noise inputs drawn from the seed too.
      return recipe.generate(state, z, label[None], noise_key=jax.random.fold_in(key, 1),
                             **options)[0]
    return recipe.generate(state, z, label[None], **options)[0]

  sharding = parallel.batch_sharding(mesh)
  return jax.jit(jax.vmap(one), in_shardings=(sharding, sharding), out_shardings=sharding)


def run(args):
  """Executes the parsed command; returns the paths written."""
  if not math.isfinite(args.trunc):
    raise UserError(f'--trunc={args.trunc} is not a finite number: give ψ, e.g. --trunc=0.7 '
                    '(1 = no truncation)')
  seeds = parse_seeds(args.seeds)
  paths, grid_path = output_paths(args, seeds)
  check_outdir(args, list(paths.values()) + ([grid_path] if grid_path else []))
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jaxgen import parallel, summaries  # pylint: disable=import-outside-toplevel

  mesh = parallel.create_mesh()
  if args.network:
    restored = trained.load_generator(args.network)
  else:
    restored = trained.restore(args.workdir, args.step, args.best, mesh, need_data=False)
  if restored.recipe.task is not None:
    where = f'--network={args.network}' if args.network else f'--workdir={args.workdir}'
    task = restored.recipe.task
    raise UserError(f'{args.network or args.workdir} is an image-to-image model ({task.name}): '
                    'it translates pictures instead of sampling seeds; run '
                    + task.apply_command.format(where=where))
  check_options(args, restored.config, restored.recipe.num_classes)
  guide = trained.load_run(args.guide, '--guide', mesh) if args.guide else None
  logging.getLogger('jaxgen').info('Generating %d image(s) from step %d of %s.', len(seeds),
                                   restored.step, args.network or args.workdir)
  generate = make_generator(restored, args, mesh, guide)
  # Whole batches, a multiple of the device count, so that one program serves every call.
  batch = parallel.device_batch(min(args.batch_size, len(seeds)), mesh)
  label = 0 if args.class_index is None else args.class_index
  # Tracing (not compiling) checks the recipe's sampling options before anything is written.
  jax.eval_shape(generate, jax.ShapeDtypeStruct((batch,), np.uint32),
                 jax.ShapeDtypeStruct((batch,), np.int32))
  os.makedirs(args.outdir, exist_ok=True)
  images = []
  for start in range(0, len(seeds), batch):
    chunk = seeds[start:start + batch]
    padded = np.asarray(chunk + [chunk[-1]] * (batch - len(chunk)), np.uint32)
    out = jax.device_get(generate(padded, np.full((batch,), label, np.int32)))
    for seed, image in zip(chunk, summaries.to_uint8(out)):
      summaries.save_png(image, paths[seed])
      if grid_path:
        images.append(image)
  written = list(paths.values())
  if grid_path:
    summaries.save_png(summaries.image_grid(np.stack(images)), grid_path)
    written.append(grid_path)
  return written


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args, lambda written: f'wrote {len(written)} PNG(s) to {args.outdir}')


if __name__ == '__main__':
  sys.exit(main())
