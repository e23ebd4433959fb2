"""Workdir layout, its lock, the experiment guard, and Orbax checkpointing.

  DIR/config.json       the resolved config of the experiment that owns DIR (written once the
                        run has started: a failed start never claims a workdir)
  DIR/.lock             flock-ed by the one training process that owns DIR (process 0)
  DIR/checkpoints/<step>/  Orbax checkpoints: the last `checkpoint.keep` and the best by
                        `checkpoint.best_metric`, written asynchronously and atomically, each
                        checked finite before it is written; `<step>.damaged`: set aside
  DIR/samples/          PNG sample grids;   DIR/tensorboard/  event files

Re-running a command in its workdir resumes from the newest intact checkpoint. A checkpoint
killed mid-write stays a temporary folder that Orbax ignores, so a SIGKILL loses only the steps
since the last finished save; a damaged newest checkpoint is renamed aside and the one before
it is used; a failed write stops the run with the earlier checkpoints intact.
"""

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxgen.errors import RunFailed, UserError, check_local

log = logging.getLogger(__name__)

# Fields a resumed run may change without becoming another experiment: run length, how often
# things happen, and where output goes.
RESUMABLE_CHANGES = ('train.num_steps', 'log.', 'eval.every_steps', 'checkpoint.every_steps',
                     'checkpoint.keep', 'data.num_threads', 'data.cache_dir',
                     'data.tfds_data_dir')
# Settings added after runs were recorded whose new default is not the old behaviour in every
# config, with the value such runs had: a config.json without one is read as holding that value
# (so resuming it with another is a different experiment). Every other added setting keeps the
# old behaviour as its default and is only named in a warning.
ADDED_SETTINGS = {
    'data.rotation': 1.0,  # 2026-12-05: the diffusion CPU default draws upright shapes (0).
}


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


LOCK_FILE = '.lock'


class WorkdirLock:
  """DIR/.lock held with `flock` for the life of the process that trains in DIR.

  The operating system releases the lock when the process ends, however it ends (kill -9
  included), so no stale lock can outlive its run. The file holds the owner's PID and host for
  the message a second run gets; the file itself is never deleted (deleting a lock file races
  with a process that has just opened it).
  """

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = self._read_owner()
      os.close(self._fd)
      raise UserError(f'workdir {workdir!r} is in use by another run ({owner}): wait for it to '
                      'finish or stop it, or use another --workdir') from None
    except OSError as e:  # A filesystem without locks (some FUSE mounts): go on, but say so.
      log.warning('Cannot lock %s (%s): make sure no other run uses this workdir.', self.path,
                  e.strerror)
    os.ftruncate(self._fd, 0)
    os.write(self._fd, f'pid {os.getpid()} on host {socket.gethostname()} since '
                       f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n'.encode())

  def _read_owner(self):
    try:
      os.lseek(self._fd, 0, os.SEEK_SET)
      owner = os.read(self._fd, 500).decode(errors='replace').strip()
    except OSError:
      owner = ''
    return owner or 'an unknown process that is still starting'

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # Closing the descriptor releases the flock.
      self._fd = None


def lock_workdir(workdir):
  """Makes this process the workdir's one owner (on process 0; UserError when another run holds
  it). Every process learns whether process 0 got the lock, so all stop together if not."""
  error, lock = None, None
  if jax.process_index() == 0:
    try:
      lock = WorkdirLock(workdir)
    except UserError as e:
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not ok and error is None:
      error = UserError(f'workdir {workdir!r} is in use by another run (see process 0\'s error)')
  if error is not None:
    raise error
  return lock


def _flatten(tree, prefix=''):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _as_recorded(saved, current):
  """`saved` flattened, with ADDED_SETTINGS that it lacks and `current` has at their old value."""
  flat = _flatten(saved)
  return {**{k: v for k, v in ADDED_SETTINGS.items() if k in _flatten(current)}, **flat}


def experiment_differences(saved, current):
  """Dotted keys whose values differ between two config dicts, ignoring RESUMABLE_CHANGES and
  keys that only one of them has (see `settings_added_or_removed`) but for ADDED_SETTINGS, which
  a config without them held at their old value."""
  a, b = _as_recorded(saved, current), _flatten(current)
  keys = sorted(set(a) & set(b))
  return [k for k in keys if a[k] != b[k]
          and not any(k == r or (r.endswith('.') and k.startswith(r)) for r in RESUMABLE_CHANGES)]


def settings_added_or_removed(saved, current):
  """Dotted keys in only one of two config dicts. A run started by an older jaxgen lacks the
  settings added since (their defaults keep the old behaviour), so these are no reason to refuse
  a resume; `check_experiment` names them in a warning."""
  a, b = _flatten(saved), _flatten(current)
  return sorted(set(a) ^ set(b))


def check_experiment(workdir, config_dict, allow_change=False):
  """Refuses a workdir owned by another experiment (UserError); writes nothing.

  Returns True when the workdir already holds this experiment's config (a resume).
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return False
  current = json.loads(json.dumps(config_dict))  # Normalise tuples → lists, as saved.
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is unreadable ({e}): move it away or use another workdir') from e
  diffs = experiment_differences(saved, current)
  changed = settings_added_or_removed(saved, current)
  if changed and not diffs:
    log.warning('%s predates (or postdates) these settings of this jaxgen: %s; continuing '
                    'with their current values', path, ', '.join(changed))
  if diffs and not allow_change:
    recorded, now = _flatten(saved), _flatten(current)
    before = lambda k: (repr(recorded[k]) if k in recorded  # noqa: E731
                        else f'absent, so {ADDED_SETTINGS[k]!r}')
    shown = ', '.join(f'{k}: {before(k)} → {now[k]!r}' for k in diffs[:3])
    more = f' (+{len(diffs) - 3} more)' if len(diffs) > 3 else ''
    raise UserError(f'workdir {workdir!r} holds a different experiment ({shown}{more}): use '
                    'another --workdir, or pass --allow_config_change to continue it with '
                    'the new config')
  return True


def record_config(workdir, config_dict):
  """Writes DIR/config.json atomically (a temporary file renamed into place), on process 0.

  Called once the run can start (config checked, workdir locked, state restored), so a failed
  start never claims or rewrites a workdir."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, 'config.json')
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(json.loads(json.dumps(config_dict)), f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def create_manager(workdir, keep, best_metric=None, best_mode='min'):
  """Keeps the newest `keep` checkpoints plus the best one by `best_metric` (if set)."""
  if keep < 1:  # LatestN(0) would delete the newest checkpoint right after writing it.
    raise UserError(f'checkpoint.keep={keep} must be >= 1')
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
                               item_handlers=ocp.StandardCheckpointHandler(), options=options)


def save(manager, step, state, metrics=None):
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def _short(error):
  """An exception as one short line: its type and the part that says why (TensorStore's errors
  are pages long)."""
  text = ' '.join(str(error).split())
  os_error = re.search(r'Failed[^:]*: "[^"]*": (.*?\[os_error_code=\S+\])', text)
  if os_error:
    text = os_error.group(1)
  return f'{type(error).__name__}: {text[:200]}'


def _free_bytes(directory):
  try:
    return shutil.disk_usage(directory).free
  except OSError:
    return None


def state_bytes(abstract_state):
  """Bytes of every array of a (possibly abstract) state: a checkpoint's uncompressed size."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(abstract_state))


class Saver:
  """Writes checkpoints in the background and stops the run at the first one that fails.

  Orbax reports a failed asynchronous write only when it is next waited for; `check()` (cheap,
  every step) waits as soon as the write has ended, so a full disk stops the run within a step
  of the failure instead of training on until the next save. The failed write stays a temporary
  folder that restores ignore; the checkpoints before it are untouched.
  """

  def __init__(self, manager, state_bytes=0):
    self.manager = manager
    self.state_bytes = state_bytes  # Uncompressed size of one checkpoint, for the space check.
    self._pending = None

  def save(self, step, state, metrics=None):
    self.check(block=True)
    self._pending = step
    free = _free_bytes(str(self.manager.directory))
    if free is not None and free < self.state_bytes:
      # Refused before writing a byte: a write that runs out of space mid-way also fails, but
      # only after Orbax's background threads have printed their own tracebacks.
      self._failed(OSError(f'{self.state_bytes / 2**20:.1f} MiB needed, '
                           f'{free / 2**20:.1f} MiB free'))
    try:
      save(self.manager, step, state, metrics)
    except Exception as e:  # noqa: BLE001 — any failed write is reported the same way.
      self._failed(e)
    self.check()

  def check(self, block=False):
    """Raises RunFailed when the latest write failed; waits for it when `block`."""
    if self._pending is None or (not block and self.manager.is_saving_in_progress()):
      return
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      self._failed(e)
    self._pending = None

  def wait_quietly(self):
    """Lets a write in flight finish (on the way out after another error); a failure of it is
    not reported: the error being raised already says why the run stopped."""
    try:
      self.manager.wait_until_finished()
    except Exception:  # noqa: BLE001
      pass
    self._pending = None

  def _failed(self, error):
    step, self._pending = self._pending, None
    directory = str(self.manager.directory)
    free = _free_bytes(directory)
    free = 'free space unknown' if free is None else f'{free / 2**30:.1f} GiB free there'
    kept = sorted(s for s in self.manager.all_steps() if s != step)
    resume = (f're-run the same command to resume from step {kept[-1]}' if kept else
              're-run the same command to start again')
    raise RunFailed(f'writing checkpoint {step} to {directory} failed ({_short(error)}; {free}): '
                    f'the earlier checkpoints are intact; fix the cause (e.g. free disk space) '
                    f'and {resume}') from None


# ------------------------------------------------------------------------------------------------
# Reading checkpoints back: damaged ones (unreadable files) are told apart from ones that do not
# fit the config (other shapes or parameters), and non-finite states are never trusted.

def _path_name(path):
  parts = []
  for key in path:
    parts.append(str(getattr(key, 'name', getattr(key, 'key', getattr(key, 'idx', key)))))
  return '/'.join(parts)


@jax.jit
def _first_non_finite_index(leaves):
  """Index of the first leaf holding NaN/Inf, or len(leaves): a scalar, so it is replicated on
  any mesh and every process can read it."""
  finite = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
  return jnp.where(jnp.all(finite), len(leaves), jnp.argmin(finite))


def first_non_finite(tree):
  """The path ('g_params/b8/conv0/weight') of the first float leaf of `tree` holding NaN or Inf,
  or None when all are finite. One small jitted reduction: cheap next to a checkpoint write."""
  named = [(_path_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
           if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not named:
    return None
  index = _first_non_finite_index([x for _, x in named])
  index = int(np.asarray(index.addressable_data(0)))
  return named[index][0] if index < len(named) else None


def _shapes(tree):
  return {_path_name(p): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _misfit(manager, step, abstract_state):
  """How checkpoint `step` differs from `abstract_state` ('' when its metadata fits).

  Raises when the metadata itself cannot be read (a damaged checkpoint)."""
  metadata = manager.item_metadata(step)
  tree = getattr(metadata, 'tree', metadata)
  if tree is None:
    raise ValueError('no tree metadata')
  saved, wanted = _shapes(tree), _shapes(abstract_state)
  for name in sorted(set(saved) | set(wanted)):
    if saved.get(name) != wanted.get(name):
      has = saved.get(name, 'absent')
      return f'{name} is {has} in the checkpoint, {wanted.get(name, "absent")} in this config'
  return ''


def restore_latest(manager, abstract_state):
  """The newest intact, finite checkpoint restored onto `abstract_state`, or None if there is none.

  A checkpoint whose files cannot be read, or whose values are not finite (saved by an older
  jaxgen from a diverged run), is damaged: it is renamed aside (`checkpoints/8.damaged`, never
  deleted), one warning says so, and the next newest is tried. A checkpoint that does not fit
  the config (other shapes, other parameters) is the user's choice of config, not damage:
  UserError, and nothing is renamed. If every checkpoint is damaged, UserError, nothing renamed.
  """
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      misfit = _misfit(manager, step, abstract_state)
    except Exception as e:  # noqa: BLE001 — unreadable metadata: damaged.
      damaged.append((step, f'unreadable metadata, {_short(e)}'))
      continue
    if misfit:
      raise UserError(f'checkpoint {step} in {manager.directory} does not fit this config '
                      f'({misfit}): it was trained with another model config; use another '
                      'workdir, or the config it was trained with')
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # noqa: BLE001 — the metadata fits but the data does not read.
      damaged.append((step, f'unreadable, {_short(e)}'))
      continue
    bad_leaf = first_non_finite(state)
    if bad_leaf:
      damaged.append((step, f'non-finite values in {bad_leaf}'))
      continue
    if damaged:
      _set_aside(manager, damaged, step)
    return state
  if damaged:
    listed = '; '.join(f'{s}: {why}' for s, why in damaged)
    raise UserError(f'every checkpoint in {manager.directory} is damaged ({listed}): nothing '
                    'was changed; move the checkpoints/ folder away to start over')
  return None


def _set_aside(manager, damaged, resumed_step):
  """Renames damaged checkpoint folders to <step>.damaged[-N] (process 0), then reloads."""
  directory = str(manager.directory)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices('jaxgen: checkpoints read before renaming')
  moved = []
  if jax.process_index() == 0:
    for step, _ in damaged:
      target = os.path.join(directory, f'{step}.damaged')
      n = 1
      while os.path.exists(target):
        n += 1
        target = os.path.join(directory, f'{step}.damaged-{n}')
      os.rename(os.path.join(directory, str(step)), target)
      moved.append(os.path.basename(target))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('jaxgen: damaged checkpoints renamed')
  manager.reload()
  what = '; '.join(f'checkpoint {s} ({why})' for s, why in damaged)
  log.warning('Damaged %s in %s: renamed aside to %s, resuming from checkpoint %d.', what,
              directory, ', '.join(moved) or '<step>.damaged', resumed_step)


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
  return ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler(),
                               options=options)


def restore(manager, step, abstract_state):
  """Checkpoint `step` restored onto `abstract_state`'s shapes and shardings."""
  if step not in manager.all_steps():
    steps = ', '.join(map(str, sorted(manager.all_steps()))) or 'none'
    raise UserError(f'no checkpoint {step} in {manager.directory} (there are: {steps})')
  try:
    misfit = _misfit(manager, step, abstract_state)
  except Exception as e:  # noqa: BLE001
    raise UserError(f'checkpoint {step} in {manager.directory} is damaged (unreadable '
                    f'metadata, {_short(e)}): choose another with --step') from None
  if misfit:
    raise UserError(f'checkpoint {step} in {manager.directory} does not fit its run\'s config '
                    f'({misfit})')
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:  # noqa: BLE001 — surface as one line, leave the files alone.
    raise UserError(f'checkpoint {step} in {manager.directory} is damaged ({_short(e)}): '
                    'choose another with --step') from None
