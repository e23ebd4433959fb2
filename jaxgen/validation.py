"""One place that checks an experiment config before anything is written or compiled.

`check_config(config)` covers what every recipe shares (data, train, optimizer, eval, log,
checkpoint); each recipe's constructor then checks its own model and objective (e.g.
`recipes.stylegan2.validate`), and the data source and evaluator check what only they can see
(files, metric names). `jaxgen.main` and `jaxgen.bench` run all of them before they create,
lock or write anything in a workdir, so a bad value is one `UserError` line naming its key and
leaves existing runs as they were.
"""

import math
import numbers

from jaxgen.errors import UserError

COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')
# Floats for which +inf means "no bound" (EDM's S_max default).
MAY_BE_INFINITE = ('sampling.S_max',)

# (key, smallest allowed value, what the value means): integers every recipe reads.
_AT_LEAST = (
    ('data.resolution', 1, 'pixels per side'),
    ('train.batch_size', 1, 'images per step, over all devices'),
    ('train.num_steps', 0, 'steps to train'),
    ('train.cpu_devices', 0, 'XLA devices a CPU-only host is split into; 0 = JAX\'s one'),
    ('eval.num_images', 1, 'images per evaluation'),
    ('eval.batch_size', 1, 'images per generator call in evaluations'),
    ('eval.every_steps', 1, 'steps between evaluations'),
    ('log.every_steps', 1, 'steps between log lines'),
    ('log.num_samples', 1, 'images per sample grid'),
    ('checkpoint.every_steps', 1, 'steps between checkpoints'),
    ('checkpoint.keep', 1, 'newest checkpoints kept; fewer than 1 would delete the newest'),
)


def _get(config, dotted):
  node = config
  for part in dotted.split('.'):
    if part not in node:
      return None
    node = node[part]
  return node


def _leaves(tree, prefix=''):
  for key in tree.keys():
    value = tree[key]
    if hasattr(value, 'keys'):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def check_config(config):
  """Raises UserError for the first value of `config` that no recipe can run with."""
  for key, value in _leaves(config):
    if key in MAY_BE_INFINITE and value == math.inf:
      continue
    if isinstance(value, float) and not math.isfinite(value):
      raise UserError(f'{key}={value} is not a finite number: give a finite value')
  for key, minimum, meaning in _AT_LEAST:
    value = _get(config, key)
    if value is None:
      continue
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
      raise UserError(f'{key}={value!r} must be an integer >= {minimum} ({meaning})')
  optimizer = config.get('optimizer', {})
  for key, value in _leaves(optimizer, 'optimizer.'):
    name = key.rsplit('.', 1)[-1]
    if (name == 'lr' or name.endswith('_lr')) and value < 0:
      raise UserError(f'{key}={value} is negative: a learning rate must be >= 0')
    if name in ('b1', 'b2') and not 0 <= value < 1:
      raise UserError(f'{key}={value} is outside [0, 1): Adam\'s moment decay')
    if name == 'eps' and value <= 0:
      raise UserError(f'{key}={value} must be > 0 (Adam\'s denominator offset)')
  ema = _get(config, 'train.ema_kimg')
  if ema is not None and ema < 0:
    raise UserError(f'train.ema_kimg={ema} is negative: the EMA half-life in kimg (0 = off)')
  dtype = _get(config, 'model.dtype')
  if dtype is not None and dtype not in COMPUTE_DTYPES:
    raise UserError(f'model.dtype={dtype!r} is not a compute dtype: use one of '
                    f'{", ".join(COMPUTE_DTYPES)}')
  mode = _get(config, 'checkpoint.best_mode')
  if mode is not None and mode not in ('min', 'max'):
    raise UserError(f'checkpoint.best_mode={mode!r}: use "min" (lower is better) or "max"')
