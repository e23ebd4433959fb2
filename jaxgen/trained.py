"""A trained run read back from its workdir, read-only: its config, recipe and train state.

Shared by the programs that use a training's results: `jaxgen.evaluate` and `jaxgen.generate`.
Nothing here writes to the workdir.
"""

import dataclasses
import json
import os
from typing import Any

from jaxgen.errors import UserError


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


def restore(workdir, step=None, best=False, mesh=None, config=None, need_data=True,
            source=None):
  """Rebuilds a run from `workdir` and restores one checkpoint (`step`, the best, or the newest).

  `config`: the run's config, already loaded (and perhaps edited, e.g. eval settings); default
  DIR/config.json. `need_data=False` opens the training data only where the model needs it
  (a conditional model's class count), so that sampling works without the dataset; `source`:
  the run's data source, already opened.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgen import checkpoint, data, parallel, train  # pylint: disable=import-outside-toplevel

  config = load_config(workdir) if config is None else config
  manager = checkpoint.open_read_only(workdir, config.checkpoint.best_metric or None,
                                      config.checkpoint.best_mode)
  try:
    step = select_step(manager, config, step, best)
    mesh = parallel.create_mesh() if mesh is None else mesh
    if source is None and (need_data or config.data.use_labels):
      source = data.create_source(config.data)
    recipe = train.create_recipe(config, source or _Unlabelled())
    abstract = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(config.seed))
    shardings = parallel.state_sharding(mesh, abstract)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, shardings)
    state = checkpoint.restore(manager, step, abstract)
  finally:
    manager.close()
  return TrainedRun(config=config, recipe=recipe, state=state, step=step, source=source)


class _Unlabelled:
  """What a recipe asks of an unconditional run's data source."""
  num_classes = 0
