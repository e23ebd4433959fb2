"""A trained run read back from its workdir, read-only: its config, recipe and train state.

Shared by the programs that use a training's results: `jaxgen.evaluate` and `jaxgen.generate`.
Nothing here writes to the workdir.
"""

import collections
import dataclasses
import json
import os
import types
from typing import Any

from jaxgen.errors import UserError, check_local


def load_config(workdir):
  """DIR/config.json as a ConfigDict; UserError when it is missing or unreadable."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  check_local(workdir)
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
  """The checkpoint step to use: `step`, the best by the run's metric, or the newest."""
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


@dataclasses.dataclass
class TrainedRun:
  config: Any   # ml_collections.ConfigDict, as the run saved it
  recipe: Any   # the recipe (model + objective) the run trained
  state: Any    # its train state at `step`, sharded over the mesh (EMA generator included)
  step: int
  source: Any   # the run's data source, or None where it was not needed
  eval_source: Any = None  # what its evaluations score on (held-out images; else `source`)


def restore(workdir, step=None, best=False, mesh=None, config=None, need_data=True):
  """Rebuilds a run from `workdir` and restores one checkpoint (`step`, the best, or the newest).

  `config`: the run's config, already loaded (and perhaps edited, e.g. eval settings); default
  DIR/config.json. `need_data=False` opens the training data only where the model needs it
  (a conditional model's class count), so that sampling works without the dataset.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgen import checkpoint, data, parallel, train  # pylint: disable=import-outside-toplevel

  config = load_config(workdir) if config is None else config
  manager = checkpoint.open_read_only(workdir, config.checkpoint.best_metric or None,
                                      config.checkpoint.best_mode)
  try:
    step = select_step(manager, config, step, best)
    mesh = parallel.create_mesh() if mesh is None else mesh
    source = eval_source = None
    if need_data or config.data.use_labels:
      source, eval_source = data.create_sources(config)
    # An unconditional recipe asks no more of its source than its (zero) class count.
    recipe = train.create_recipe(config, source or types.SimpleNamespace(num_classes=0))
    abstract = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(config.seed))
    abstract = parallel.with_shardings(abstract, parallel.state_sharding(mesh, abstract))
    state = checkpoint.restore(manager, step, abstract)
    # A generator with NaN/Inf weights gives images of one flat colour: refuse it.
    bad = checkpoint.first_non_finite({f: getattr(state, f) for f in recipe.generator_fields})
    if bad:
      others = ', '.join(str(s) for s in sorted(manager.all_steps()) if s != step) or 'none'
      raise UserError(f'checkpoint {step} in {workdir} holds non-finite values ({bad}): it was '
                      'saved by a run that diverged; choose another with --step (there are: '
                      f'{others})')
  finally:
    manager.close()
  return TrainedRun(config=config, recipe=recipe, state=state, step=step, source=source,
                    eval_source=eval_source)


# ------------------------------------------------------------------------------------------------
# Exported generators: the EMA generator of one checkpoint in a single .npz file, with the
# config that builds it (like the official code's network pickles, but plain arrays + JSON).

EXPORT_FORMAT = 1
_META_KEY = '__jaxgen__'


def _flatten(tree, prefix):
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  return {f'{prefix}/{k}': v for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def host_array(x):
  """A (replicated) jax.Array or array-like as numpy, on any process of a multi-host run."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  if getattr(x, 'is_fully_addressable', True):
    return np.asarray(x)
  return np.asarray(x.addressable_data(0))  # The train state is replicated (parallel.py).


def write_generator(path, config, recipe, step, fields, info=None):
  """Writes generator `fields` ({field: pytree} over `recipe.generator_fields`) of `config`'s
  run at `step` to the .npz file `path` in the export format, atomically (a temporary file
  renamed into place). `info`: more JSON-able metadata (e.g. a snapshot's images and σ_rel)."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  arrays = {}
  for field in recipe.generator_fields:
    arrays.update({k: host_array(v) for k, v in _flatten(fields[field], field).items()})
  meta = {'format': EXPORT_FORMAT, 'step': int(step), 'num_classes': int(recipe.num_classes),
          'fields': list(recipe.generator_fields), 'config': config.to_dict(), **(info or {})}
  arrays[_META_KEY] = np.asarray(json.dumps(meta))
  tmp = f'{path}.tmp-{os.getpid()}.npz'
  try:
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def export_generator(restored, path):
  """Writes `restored`'s generator (the fields of its state that `recipe.generate` reads: the
  EMA parameters and buffers or batch statistics) and its config to the .npz file `path`."""
  fields = {f: getattr(restored.state, f) for f in restored.recipe.generator_fields}
  write_generator(path, restored.config, restored.recipe, restored.step, fields)


def read_generator_file(path, flag='--network', metadata_only=False):
  """({array name: numpy array}, metadata) of a file written by `write_generator`, its arrays
  checked finite; with `metadata_only`, ({}, metadata) without reading the arrays. UserError
  (naming `flag`) when it is missing or not such a file."""
  import zipfile  # pylint: disable=import-outside-toplevel

  import numpy as np  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise UserError(f'{flag}={path} does not exist: export one with `python -m '
                    'jaxgen.export --workdir=DIR --output=FILE.npz`')
  try:
    with np.load(path, allow_pickle=False) as f:
      names = [_META_KEY] if metadata_only else f.files
      arrays = {k: f[k] for k in names}
    meta = json.loads(str(arrays.pop(_META_KEY)))
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
    raise UserError(f'{path} is not a generator exported by jaxgen ({type(e).__name__}: {e}); '
                    'export one with `python -m jaxgen.export`') from None
  if meta.get('format') != EXPORT_FORMAT:
    raise UserError(f'{path} has export format {meta.get("format")!r}; this jaxgen reads '
                    f'format {EXPORT_FORMAT}: export it again with this version')
  for key, value in arrays.items():
    if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
      raise UserError(f'{path} holds non-finite values ({key}): it was exported from a run that '
                      'diverged; export a finite checkpoint with `python -m jaxgen.export --step`')
  return arrays, meta


def load_run(path, flag, mesh=None):
  """A run named on the command line by `flag` (e.g. --guide): a workdir (its newest checkpoint)
  or a generator file (`jaxgen.export`, `jaxgen.phema`), as a TrainedRun without data."""
  check_local(path, flag)
  if os.path.isdir(path):
    return restore(path, mesh=mesh, need_data=False)
  if not os.path.isfile(path):
    raise UserError(f'{flag}={path} does not exist: give a jaxgen.main workdir or a .npz written '
                    'by `python -m jaxgen.export` or `python -m jaxgen.phema`')
  return load_generator(path, flag)


def generator_config(path, flag='--network'):
  """The config saved in a generator file (e.g. to edit its eval settings before
  `load_generator(path, config=...)`)."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  meta = read_generator_file(path, flag, metadata_only=True)[1]
  return ml_collections.ConfigDict(meta['config'])


def load_generator(path, flag='--network', config=None, need_data=False):
  """A generator exported by `export_generator` as a TrainedRun whose `state` holds only the
  generator's fields (a pytree: it can be passed to jitted functions). `config`: the file's
  config, already read and perhaps edited (default: as saved); `need_data`: also open the data
  sources it names (to score it). UserError when the file is missing, not an export, or does
  not fit the networks its config builds."""
  import jax  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  from jaxgen import data, train  # pylint: disable=import-outside-toplevel

  arrays, meta = read_generator_file(path, flag)
  config = ml_collections.ConfigDict(meta['config']) if config is None else config
  source = eval_source = None
  if need_data:
    source, eval_source = data.create_sources(config)
    if source.num_classes != meta['num_classes'] and config.data.use_labels:
      raise UserError(f'{path} was trained on {meta["num_classes"]} classes, but its data '
                      f'{config.data.source!r} has {source.num_classes} here')
  recipe = train.create_recipe(config, types.SimpleNamespace(num_classes=meta['num_classes']))
  abstract = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  fields = {}
  for field in recipe.generator_fields:
    expected = _flatten(getattr(abstract, field), field)
    got = {k: v for k, v in arrays.items() if k.startswith(field + '/')}
    for key, spec in expected.items():
      if key not in got or got[key].shape != spec.shape:
        found = 'missing' if key not in got else f'shape {got[key].shape}'
        raise UserError(f'{path} does not fit the networks of its config: {key} should be '
                        f'{spec.shape}, is {found}; was the file edited or truncated?')
    fields[field] = traverse_util.unflatten_dict(
        {tuple(k[len(field) + 1:].split('/')): jax.numpy.asarray(v, expected[k].dtype)
         for k, v in got.items()})
  return TrainedRun(config=config, recipe=recipe, state=generator_state(recipe, fields),
                    step=meta['step'], source=source, eval_source=eval_source)


def generator_state(recipe, fields):
  """The generator `fields` ({field: pytree} over `recipe.generator_fields`) as a named tuple:
  read by attribute as a train state, and a pytree that jit can take."""
  return collections.namedtuple('GeneratorState', recipe.generator_fields)(**fields)


# ------------------------------------------------------------------------------------------------
# A new run that starts from another run's weights: `model.init_from` (e.g. ESRGAN's GAN stage
# from a trained PSNR-oriented RRDB run).


def _init_source(path):
  """(workdir, step or None) of a model.init_from path: a workdir (its newest checkpoint), or
  one of its `checkpoints/<step>` folders (that step)."""
  path = os.path.normpath(path)
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and os.path.basename(parent) == 'checkpoints':
    return os.path.dirname(parent), int(os.path.basename(path))
  return path, None


def _has_checkpoints(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def read_init_from(config, recipe, mesh, workdir):
  """The state fields a new run in `workdir` takes from the run `config.model.init_from`.

  init_from is a workdir of a run of the same recipe (its newest checkpoint) or one of its
  `checkpoints/<step>` folders. Returns {field: array tree} for the fields the recipe names in
  `init_fields` (the generator's weights and their EMA; optimiser states and any discriminator
  start afresh), sharded over `mesh` as the new state is; or None when init_from is empty or
  `workdir` already holds checkpoints (a resumed run restores its own).

  Raises UserError (one line naming model.init_from), before anything is written: no such run,
  a run of another recipe, a field whose shapes differ from this config's (another generator or
  scale: the first misfit parameter is named), or a checkpoint that cannot be restored.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgen import train  # pylint: disable=import-outside-toplevel

  path = config.model.get('init_from', '')
  if not path or _has_checkpoints(workdir):
    return None
  key = f'model.init_from={path}'
  fields = tuple(getattr(recipe, 'init_fields', ()))
  if not fields:
    raise UserError(f'{key}: {config.model.name} runs cannot start from another run\'s weights '
                    '(the recipe names no init_fields); leave model.init_from empty')
  source_dir, step = _init_source(path)
  if not os.path.isfile(os.path.join(source_dir, 'config.json')):
    raise UserError(f'{key} is not a training run (no {os.path.join(source_dir, "config.json")})'
                    ': give the workdir of a finished run of the same recipe, or one of its '
                    'checkpoints/<step> folders')
  try:
    source_config = load_config(source_dir)
  except UserError as e:
    raise UserError(f'{key}: {e}') from None
  try:
    source_recipe = train.create_recipe(source_config, types.SimpleNamespace(num_classes=0))
  except UserError as e:
    raise UserError(f'{key}: its config.json no longer builds ({e})') from None
  # The same recipe: the class the registry built, whatever the configs call it.
  if type(source_recipe) is not type(recipe):
    raise UserError(f'{key} is a {type(source_recipe).__name__} run and this is a '
                    f'{type(recipe).__name__} run: start from a run of the same recipe')
  want = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  have = jax.eval_shape(source_recipe.init_state, jax.random.PRNGKey(0))
  for field in fields:
    expected, got = _flatten(getattr(want, field), field), _flatten(getattr(have, field), field)
    for name, spec in expected.items():
      if name not in got or got[name].shape != spec.shape:
        found = 'has none' if name not in got else f'has {got[name].shape}'
        raise UserError(f'{key} does not fit this config: {name} should be {spec.shape}, that '
                        f'run {found} (another generator, size or scale); start from a run of '
                        'the same networks')
    extra = sorted(set(got) - set(expected))
    if extra:
      raise UserError(f'{key} does not fit this config: that run has {extra[0]}, which this '
                      'config\'s networks lack; start from a run of the same networks')
  try:
    restored = restore(source_dir, step, mesh=mesh, config=source_config, need_data=False)
  except UserError as e:
    raise UserError(f'{key}: {e}') from None
  return {field: getattr(restored.state, field) for field in fields}
