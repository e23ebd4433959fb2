"""Post-hoc EMA (EDM2): `python -m jaxgen.phema --workdir=DIR --std=0.075 --outdir=OUT`.

    python -m jaxgen.phema --workdir=/tmp/edm2 --std=0.05,0.075,0.1 --outdir=/tmp/phema
    python -m jaxgen.generate --network=/tmp/phema/phema-00000512-0.075.npz --outdir=/tmp/s --seeds=0-63
    python -m jaxgen.evaluate --network=/tmp/phema/phema-00000512-0.075.npz --metrics=fid50k

Reconstructs the EMA of the weights with each relative standard deviation σ_rel in --std, at the
newest snapshot (or the one of --step), from the power-function EMA snapshots a run kept in
DIR/snapshots/ (configs with train.ema_std and train.ema_snapshot_kimg, e.g.
configs/diffusion.py:edm2_img64), as EDM2's reconstruct_phema.py (jaxgen/posthoc_ema.py).
Writes OUT/phema-<step>-<σ_rel>.npz per value, in `jaxgen.export`'s format. Reads the workdir
and never writes to it; existing outputs are kept unless --overwrite.
"""

import argparse
import sys

from jaxgen import posthoc_ema
from jaxgen.cli import run_command
from jaxgen.errors import UserError, check_local


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.phema',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='a jaxgen.main workdir with snapshots/ (train.ema_std)')
  parser.add_argument('--std', required=True,
                      help='comma-separated σ_rel to reconstruct, each in (0, 0.2887), e.g. '
                      '0.075 or 0.05,0.075,0.1')
  parser.add_argument('--outdir', required=True, help='folder for the .npz files')
  parser.add_argument('--step', type=int, default=None,
                      help='reconstruct at the snapshot of this step (default: the newest)')
  parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
  return parser.parse_args(argv)


def parse_stds(text):
  """'0.05, 0.075' -> (0.05, 0.075); UserError on anything else."""
  try:
    values = tuple(float(v) for v in text.split(',') if v.strip())
  except ValueError:
    raise UserError(f'--std={text} is not a comma-separated list of numbers, e.g. '
                    '--std=0.05,0.075') from None
  if not values:
    raise UserError('--std names no value: e.g. --std=0.075')
  return posthoc_ema.check_std(values, '--std')


def run(args):
  check_local(args.workdir, '--workdir')
  check_local(args.outdir, '--outdir')
  return posthoc_ema.write_reconstructions(args.workdir, parse_stds(args.std), args.outdir,
                                           args.step, args.overwrite)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args, lambda written: '\n'.join(
      f'wrote {path} (weights of the {len(weights)} snapshots: '
      f'{" ".join(f"{w:.4g}" for w in weights)})' for path, weights in written))


if __name__ == '__main__':
  sys.exit(main())
