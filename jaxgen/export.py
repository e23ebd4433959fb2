"""A trained generator in one file: `python -m jaxgen.export --workdir=DIR --output=G.npz`.

    python -m jaxgen.export --workdir=/tmp/stylegan --output=/tmp/stylegan_g.npz --best
    python -m jaxgen.generate --network=/tmp/stylegan_g.npz --outdir=/tmp/out --seeds=0-63

Restores a checkpoint of the run in DIR (the newest; `--step=N`; or `--best`, the best by the
run's `checkpoint.best_metric`) and writes its EMA generator — the parameters and buffers that
sampling reads, not D, the optimiser or the raw G — with the run's config to a NumPy `.npz`
file: plain arrays named by their parameter paths (`ema_params/synthesis/b32/conv0/weight`)
and the config and step as JSON under `__jaxgen__`: 4 bytes per generator parameter (~120 MB
for the 30 M of StyleGAN2 at 256²), a fraction of a checkpoint, which also holds D, the raw G
and both optimisers' moments. `jaxgen.generate --network=FILE` samples
from it without the workdir or the dataset; numpy alone reads it. Reads the workdir and never
writes to it; an existing output file is kept unless `--overwrite`.
"""

import argparse
import os
import sys

from jaxgen import trained
from jaxgen.cli import add_checkpoint_choice, run_command
from jaxgen.errors import UserError


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.export',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='a jaxgen.main workdir (config.json and checkpoints/)')
  parser.add_argument('--output', required=True, help='the .npz file to write')
  add_checkpoint_choice(parser, 'export')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing --output')
  return parser.parse_args(argv)


def run(args):
  """Executes the parsed command; returns the step exported."""
  if not args.output.endswith('.npz'):
    raise UserError(f'--output={args.output} must end in .npz (a NumPy archive)')
  folder = os.path.dirname(os.path.abspath(args.output))
  if not os.path.isdir(folder):
    raise UserError(f'--output={args.output}: its folder {folder} does not exist')
  if os.path.exists(args.output) and not args.overwrite:
    raise UserError(f'{args.output} already exists: choose another --output, or pass '
                    '--overwrite to replace it')
  restored = trained.restore(args.workdir, args.step, args.best, need_data=False)
  trained.export_generator(restored, args.output)
  return restored.step


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args, lambda step: (
      f'wrote the EMA generator of step {step} of {args.workdir} to {args.output} '
      f'({os.path.getsize(args.output) / 2**20:.1f} MiB)'))


if __name__ == '__main__':
  sys.exit(main())
