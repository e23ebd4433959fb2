"""Entry point: `python -m jaxgen.main --config=configs/dcgan.py --workdir=DIR`.

Override any config field on the command line (`--config.train.batch_size=128`), pick a preset
with `--config=configs/dcgan.py:cifar10`. Re-running a command in the same workdir resumes it.

Multi-process: JAX auto-detects Cloud TPU pods, SLURM and Open MPI jobs; elsewhere start one
process per host with --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxgen.cli import parse_flags, report_user_error, setup_logging

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with a preset: configs/x.py:preset.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints, logs and samples.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Continue a workdir whose saved config differs from this one.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'Multi-process: HOST:PORT of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-process: process count.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-process: this process, 0..N-1.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from jaxgen import validation
  from jaxgen.errors import RunFailed, UserError
  try:  # Before JAX is imported: a bad config value is reported in about a second.
    validation.check_config(_CONFIG.value)
  except UserError as e:
    sys.exit(report_user_error(e))
  # Imported here so that flag and config errors are reported before JAX starts.
  from jaxgen import parallel, train

  setup_logging()
  try:
    parallel.use_cpu_devices(_CONFIG.value.train.get('cpu_devices', 0))
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _ALLOW_CONFIG_CHANGE.value)
  except UserError as e:
    sys.exit(report_user_error(e))
  except RunFailed as e:
    print(f'jaxgen: error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:  # Before training started, or a second Ctrl-C: nothing saved.
    print('jaxgen: error: interrupted (Ctrl-C) before a checkpoint could be saved; re-run the '
          'same command to resume from the newest checkpoint', file=sys.stderr)
    sys.exit(130)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
