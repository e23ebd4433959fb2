"""What the command-line programs share: flag parsing with one-line errors, and logging."""

import logging as py_logging
import sys

from absl import flags, logging


def parse_flags(argv):
  """absl's parser, but a bad config override is one line and exit status 2, no traceback."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
    message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
    message = ' '.join(message.split())  # One line.
    print(f'jaxgen: error: bad flag or config override: {message} (see --helpfull)',
          file=sys.stderr)
    sys.exit(2)


def setup_logging(quiet=False):
  """jaxgen's own progress lines at INFO on stderr; libraries (Orbax logs every save) at WARNING,
  or at ERROR when `quiet` (the read-only programs: Orbax's notes on a read-only manager)."""
  logging.set_verbosity(logging.ERROR if quiet else logging.WARNING)
  logger = py_logging.getLogger('jaxgen')
  if logger.handlers:
    return  # Set up already (a second call in one process).
  # Saves between evaluations carry no metric by design; Orbax warns about each one.
  logging.get_absl_logger().addFilter(lambda r: 'tracked_metric' not in r.getMessage())
  handler = py_logging.StreamHandler(sys.stderr)
  handler.setFormatter(py_logging.Formatter('%(asctime)s %(levelname).1s %(message)s',
                                            '%H:%M:%S'))
  logger.addHandler(handler)
  logger.setLevel(py_logging.INFO)
  logger.propagate = False


def add_checkpoint_choice(parser, verb):
  """`--step=N` or `--best`: which checkpoint of a workdir to `verb` (default: the newest)."""
  which = parser.add_mutually_exclusive_group()
  which.add_argument('--step', type=int, default=None,
                     help=f'the checkpoint to {verb} (default: the newest)')
  which.add_argument('--best', action='store_true',
                     help=f'{verb} the best checkpoint by the run\'s checkpoint.best_metric')


def report_user_error(error):
  """A UserError as one `jaxgen: error: ...` line on stderr; returns the exit status, 2."""
  print(f'jaxgen: error: {" ".join(str(error).split())}', file=sys.stderr)
  return 2
