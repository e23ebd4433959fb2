"""What the command-line programs share: flag parsing with one-line errors, and logging."""

import difflib
import logging as py_logging
import os
import re
import sys
import sysconfig
import traceback

from absl import flags, logging

from jaxgen.errors import UserError


def parse_flags(argv):
  """absl's parser, but a bad config file or override is one line and exit status 2, no
  traceback."""
  config_parsers = _guard_config_files()
  try:
    return flags.FLAGS(argv)
  except _ConfigFileError as e:
    _fail(str(e))
  except (KeyError, AttributeError) as e:
    # ml_collections names only the last key it looked up ('bogus_key'), not the override.
    message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
    _fail(_unknown_key(config_parsers, argv)
          or f'bad flag or config override: {message} (see --helpfull)')
  except (flags.Error, TypeError, ValueError) as e:
    _fail(f'bad flag or config override: {e} (see --helpfull)')


def _fail(message):
  print(f'jaxgen: error: {" ".join(message.split())}', file=sys.stderr)  # One line.
  sys.exit(2)


class _ConfigFileError(flags.Error):
  """A config file that cannot be loaded or run; the message is the whole error line. A
  flags.Error, as absl re-raises a ValueError with the flag's name and value in front."""


class _ConfigFileParser:
  """Wraps ml_collections' parser of a config-file flag: it lets exceptions of the config's own
  code out as they are, with a traceback (or, for a ValueError, the traceback flattened into its
  message), and defers a missing file until the config is first read, in the middle of a run.
  This one raises a _ConfigFileError naming the file (and line) instead, and keeps the config it
  loaded, to name the full key of a bad override."""

  def __init__(self, parser):
    self._parser = parser
    self.name = parser.name
    self.config = None

  def __getattr__(self, name):  # flag_type, syntactic_help...: absl's help text.
    if name == '_parser':  # Not set yet (a copy being made): no endless recursion.
      raise AttributeError(name)
    return getattr(self._parser, name)

  def parse(self, argument):
    path = argument.split(':', 1)[0]  # configs/x.py:preset, as ml_collections splits it.
    if not os.path.isfile(path):
      raise _ConfigFileError(_missing_config(self.name, path))
    try:
      config = self._parser.parse(argument)
    except Exception as e:  # pylint: disable=broad-except; any bug of the config file's code.
      raise _ConfigFileError(_config_failure(path, e)) from e
    # ml_collections keeps an OSError (an unreadable file, one get_config opens) in a stand-in
    # config (its _ErrorConfig) that raises it at the first read, in the middle of a run.
    deferred = getattr(config, '_error', None)
    if isinstance(deferred, OSError):
      raise _ConfigFileError(_config_failure(path, deferred)) from deferred
    if config is None:
      raise _ConfigFileError(f'{path}: get_config() returned None (a missing return?)')
    self.config = config
    return config


def _guard_config_files():
  """Puts a _ConfigFileParser around the parser of each config-file flag (DEFINE_config_file)
  of absl's FLAGS, once; returns them."""
  from ml_collections.config_flags import config_flags  # pylint: disable=import-outside-toplevel
  guarded = []
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if isinstance(flag.parser, config_flags.ConfigFileFlagParser):
      flag.parser = _ConfigFileParser(flag.parser)
    if isinstance(flag.parser, _ConfigFileParser) and flag.parser not in guarded:
      guarded.append(flag.parser)
  return guarded


def _missing_config(flag_name, path):
  """The error line for --flag_name=path, a path that is no file: what the folder holds."""
  if not path:
    return f'--{flag_name} needs the path of a config file, e.g. configs/dcgan.py'
  if os.path.isdir(path):
    return f'{path} is a folder, not a config file (a .py with a get_config())'
  folder = os.path.dirname(path)
  if os.path.isdir(folder or '.'):
    names = sorted(n for n in os.listdir(folder or '.') if n.endswith('.py') and n[0] != '_')
    shown = ', '.join(names[:8]) + (', ...' if len(names) > 8 else '')
    where = f'{folder}/' if folder else 'this folder'
    return (f'{path}: no such config file ({where} holds {shown})' if names else
            f'{path}: no such config file ({where} holds no .py file)')
  # A relative path from another folder than the repository's: say where the configs are.
  own = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
  hint = f'; jaxgen\'s configs are in {own}' if os.path.isdir(own) else ''
  return f'{path}: no such config file (no folder {folder} in {os.getcwd()}{hint})'


def _config_failure(path, error):
  """The error line for `error`, raised while config file `path` was loaded or its get_config
  ran: the innermost message, and where (for a ValueError, the config's way of refusing a
  preset, the message alone)."""
  # ml_collections re-raises a ValueError or TypeError with the traceback as its message.
  while str(error).startswith('Error whilst parsing config file') and error.__context__:
    error = error.__context__
  kind = type(error).__name__
  if isinstance(error, SyntaxError) and error.filename:
    text = (error.text or '').strip()
    shown = f' in "{text}"' if text and len(text) <= 60 else ''
    return f'{_where(path, error.filename, error.lineno)}: {kind}: {error.msg}{shown}'
  if isinstance(error, ValueError):
    return f'{path}: {error}'
  frame = _innermost_own_frame(error.__traceback__)
  if frame is None and isinstance(error, AttributeError) and error.name == 'get_config':
    return f'{path}: defines no get_config() (a config file returns its config from one)'
  if frame is None:
    return f'{path}: {kind}: {error}'
  return f'{_where(path, frame.filename, frame.lineno)}: {kind}: {error}'


def _where(path, filename, lineno):
  """'configs/x.py, line 4', or, for a module the config imports, 'configs/x.py (in FILE,
  line 4)'."""
  if os.path.abspath(filename) == os.path.abspath(path):
    return f'{path}, line {lineno}'
  shown = os.path.relpath(filename) if filename.startswith(os.getcwd() + os.sep) else filename
  return f'{path} (in {shown}, line {lineno})'


def _innermost_own_frame(tb):
  """The innermost frame of `tb` in code of the user's (the config, what it imports), not of
  Python, the libraries, or this module; None when there is none."""
  library = tuple(os.path.join(p, '') for p in {
      sysconfig.get_path(k) for k in ('stdlib', 'platstdlib', 'purelib', 'platlib')})
  own = [f for f in traceback.extract_tb(tb)
         if not f.filename.startswith(library + ('<',)) and
         os.path.abspath(f.filename) != os.path.abspath(__file__)]
  return own[-1] if own else None


def _unknown_key(config_parsers, argv):
  """The error line for the first --config.KEY=... whose KEY the loaded config lacks, naming
  the full dotted key (and a close match, or what its group holds); None when there is none."""
  argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)  # As ml_collections reads it.
  for parser in config_parsers:
    if parser.config is None:
      continue
    pattern = re.compile(rf'--?(?:no)?{re.escape(parser.name)}\.([\w.]+)(=|$)')
    for arg in argv:
      match = pattern.match(arg)
      if match is None:
        continue
      node, keys = parser.config, match.group(1).split('.')
      for i, key in enumerate(keys):
        group = '.'.join(keys[:i])
        if not hasattr(node, 'keys'):
          return (f'--{parser.name}.{match.group(1)}: unknown config key {".".join(keys[:i + 1])}'
                  f' ({group} is a value of type {type(node).__name__}, not a group of keys)')
        if key not in node:
          names = sorted(str(k) for k in node.keys())
          close = difflib.get_close_matches(key, names, 1, 0.75)  # As ml_collections guesses.
          hint = (f'Did you mean "{close[0]}" instead of "{key}"?' if close else
                  f'{group or "the config"} has {", ".join(names)}')
          return (f'--{parser.name}.{match.group(1)}: unknown config key '
                  f'{".".join(keys[:i + 1])}; {hint}')
        node = node[key]
  return None


def _quiet_orbax(record):
  """Drops two kinds of Orbax log records: the warning about every save between evaluations (they
  carry no metric by design), and its errors with tracebacks about a failed or unreadable
  checkpoint, which jaxgen reports itself in one line (checkpoint.Saver, restore_latest)."""
  if 'tracked_metric' in record.getMessage():
    return False
  return not (record.levelno >= py_logging.ERROR and f'{os.sep}orbax{os.sep}' in record.pathname)


def setup_logging(quiet=False):
  """jaxgen's own progress lines at INFO on stderr; libraries (Orbax logs every save) at WARNING,
  or at ERROR when `quiet` (the read-only programs: Orbax's notes on a read-only manager)."""
  logging.set_verbosity(logging.ERROR if quiet else logging.WARNING)
  logger = py_logging.getLogger('jaxgen')
  if logger.handlers:
    return  # Set up already (a second call in one process).
  logging.get_absl_logger().addFilter(_quiet_orbax)
  # After a failed checkpoint write, Orbax's abandoned asyncio tasks log the same error again
  # when they are collected ("Task exception was never retrieved"); jaxgen has no asyncio code.
  py_logging.getLogger('asyncio').setLevel(py_logging.CRITICAL)
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


def run_command(run, args, summary):
  """The body of a command's `main`: quiet logging, `run(args)`, then one `summary(result)` line
  on stdout (exit 0), or a UserError as one error line (exit 2)."""
  setup_logging(quiet=True)
  try:
    result = run(args)
  except UserError as error:
    return report_user_error(error)
  print(summary(result))
  return 0
