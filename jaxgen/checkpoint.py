"""Workdir layout, the experiment guard, and Orbax checkpointing.

  DIR/config.json       the resolved config of the experiment that owns DIR
  DIR/checkpoints/<step>/  Orbax checkpoints: the last `checkpoint.keep` and the best by
                        `checkpoint.best_metric`, written asynchronously and atomically
  DIR/samples/          PNG sample grids;   DIR/tensorboard/  event files

Re-running a command in its workdir resumes from the newest complete checkpoint. A checkpoint
killed mid-write stays a temporary folder that Orbax ignores, so a SIGKILL loses only the steps
since the last finished save.
"""

import json
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxgen.errors import UserError, check_local

# Fields a resumed run may change without becoming another experiment: run length, how often
# things happen, and where output goes.
RESUMABLE_CHANGES = ('train.num_steps', 'log.', 'eval.every_steps', 'checkpoint.every_steps',
                     'checkpoint.keep', 'data.num_threads', 'data.cache_dir',
                     'data.tfds_data_dir')


def check_writable(workdir):
  check_local(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write-test-{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'workdir {workdir!r} is not writable ({e.strerror}): choose a folder you '
                    'can write to') from e


def _flatten(tree, prefix=''):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def experiment_differences(saved, current):
  """Dotted keys whose values differ between two config dicts, ignoring RESUMABLE_CHANGES."""
  a, b = _flatten(saved), _flatten(current)
  keys = sorted(set(a) | set(b))
  return [k for k in keys if a.get(k, '<absent>') != b.get(k, '<absent>')
          and not any(k == r or (r.endswith('.') and k.startswith(r)) for r in RESUMABLE_CHANGES)]


def guard_experiment(workdir, config_dict, allow_change=False):
  """Refuses a workdir owned by another experiment; records the config otherwise.

  Returns True when the workdir already held this experiment (a resume).
  """
  path = os.path.join(workdir, 'config.json')
  current = json.loads(json.dumps(config_dict))  # Normalise tuples → lists, as saved.
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f'{path} is unreadable ({e}): move it away or use another workdir') from e
    diffs = experiment_differences(saved, current)
    if diffs and not allow_change:
      shown = ', '.join(f'{k}: {_flatten(saved).get(k, "<absent>")!r} → '
                        f'{_flatten(current).get(k, "<absent>")!r}' for k in diffs[:3])
      more = f' (+{len(diffs) - 3} more)' if len(diffs) > 3 else ''
      raise UserError(f'workdir {workdir!r} holds a different experiment ({shown}{more}): use '
                      'another --workdir, or pass --allow_config_change to continue it with '
                      'the new config')
    resumed = True
  else:
    resumed = False
  if jax.process_index() == 0:
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  return resumed


def create_manager(workdir, keep, best_metric=None, best_mode='min'):
  """Keeps the newest `keep` checkpoints plus the best one by `best_metric` (if set)."""
  policies = [checkpoint_managers.LatestN(n=keep)]
  best_fn = None
  if best_metric:
    best_fn = lambda metrics: metrics[best_metric]
    # BestN keeps the tail of the sorted order: descending for 'min' puts the lowest last.
    policies.append(checkpoint_managers.BestN(
        get_metric_fn=best_fn, reverse=best_mode == 'min', n=1,
        keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
      best_fn=best_fn, best_mode=best_mode,  # best_fn also makes Orbax write the metrics.
      enable_async_checkpointing=True, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(manager, step, state, metrics=None):
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def restore_latest(manager, abstract_state):
  """The newest checkpoint restored onto `abstract_state`'s shapes and shardings, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:  # noqa: BLE001 — surface as one line, leave the files alone.
    raise UserError(f'checkpoint {step} in {manager.directory} could not be restored onto this '
                    f'config ({type(e).__name__}: {str(e).splitlines()[0][:200]}): use another '
                    'workdir, or move that checkpoint away') from e


def open_read_only(workdir, best_metric=None, best_mode='min'):
  """A manager of DIR/checkpoints that restores but never writes, deletes or creates.

  `best_step()` ranks by `best_metric` (as `create_manager` does) when it is given.
  Raises UserError when there is no checkpoint folder.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise UserError(f'{workdir!r} has no checkpoints/ folder: train first with '
                    f'`python -m jaxgen.main --workdir={workdir} ...`')
  best_fn = (lambda metrics: metrics[best_metric]) if best_metric else None
  options = ocp.CheckpointManagerOptions(
      read_only=True, create=False, save_interval_steps=0, best_fn=best_fn,
      best_mode=best_mode, enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options)


def restore(manager, step, abstract_state):
  """Checkpoint `step` restored onto `abstract_state`'s shapes and shardings."""
  if step not in manager.all_steps():
    steps = ', '.join(map(str, sorted(manager.all_steps()))) or 'none'
    raise UserError(f'no checkpoint {step} in {manager.directory} (there are: {steps})')
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:  # noqa: BLE001 — surface as one line, leave the files alone.
    raise UserError(f'checkpoint {step} in {manager.directory} could not be restored onto this '
                    f'config ({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e
