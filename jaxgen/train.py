"""The one training loop: data → sharded jitted steps → logs, samples, metrics, checkpoints.

Follow a batch: `data.batches` yields this process's uint8 rows of the global batch at step s;
`parallel.global_batch` makes them one array sharded over the mesh's data axis; the recipe's
`train_step` (a pure function, jitted here with the shardings of `parallel`) returns the new
train state and scalar metrics. Every `log.every_steps` the metrics reach TensorBoard and the
progress bar; every `eval.every_steps` the EMA generator is scored and a checkpoint is written
with the score; every `checkpoint.every_steps` a checkpoint is written; SIGTERM or Ctrl-C writes
one and exits. The data position is the step, so a restart resumes exactly.

What protects the user's data (README, "Resuming and failures"): `prepare` checks everything
before the workdir is touched; the workdir is locked for the run's life; every step's metrics and,
before each save, the whole state are checked finite (`DivergenceCheck`); a failed checkpoint
write stops the run (`checkpoint.Saver`); damaged checkpoints are set aside on restore.
"""

import functools
import logging
import os
import signal
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxgen import checkpoint, data, parallel, summaries, trained, validation
from jaxgen.evaluation import create_evaluator
from jaxgen.errors import RunFailed, UserError, check_local
from jaxgen.recipes.adain import AdaIN
from jaxgen.recipes.cyclegan import CycleGAN
from jaxgen.recipes.dcgan import DCGAN
from jaxgen.recipes.diffusion import Diffusion
from jaxgen.recipes.stylegan2 import StyleGAN2
from jaxgen.recipes.translation import Translation

RECIPES = {'dcgan': DCGAN, 'stylegan2': StyleGAN2, 'diffusion': Diffusion,
           'translation': Translation, 'cyclegan': CycleGAN, 'adain': AdaIN}
SNAPSHOTS = 'snapshots'  # WORKDIR/snapshots/: what `recipe.snapshots` keeps (jaxgen.phema reads)

log = logging.getLogger(__name__)


class Preemption:
  """Notices SIGTERM and Ctrl-C (SIGINT); in multi-process runs all processes agree on the step
  to stop at (SIGTERM, through JAX's preemption sync point; launch/local.sh turns Ctrl-C into
  SIGTERM). A second Ctrl-C stops at once, without saving."""

  def __init__(self):
    self.signal = None
    if jax.process_count() == 1:
      signal.signal(signal.SIGTERM, self._handle)
      signal.signal(signal.SIGINT, self._handle)

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal = signum

  @property
  def exit_code(self):
    """128 + the signal, what a shell or scheduler expects: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (self.signal or signal.SIGTERM)

  def reached(self, step):
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signal is not None


def create_recipe(config, source, mesh=None):
  """The recipe named by `config.model.name`; `mesh` lets it shard arrays it creates itself."""
  if config.model.name not in RECIPES:
    raise UserError(f'unknown model.name {config.model.name!r}: choose one of {sorted(RECIPES)}')
  return RECIPES[config.model.name](config, source.num_classes, mesh)


def training_batches(config, source, recipe, start_step=0):
  """This process's share of every global training batch from `start_step` on (with the
  recipe's task, if any, making each example a training pair)."""
  return data.batches(source, config.train.batch_size, config.seed, xflip=config.data.xflip,
                      transform=recipe.task.train_example if recipe.task else None,
                      start_step=start_step, process_index=jax.process_index(),
                      process_count=jax.process_count(), num_threads=config.data.num_threads)


def jit_train_step(recipe, mesh, state_sharding, variant):
  """The recipe's update for one step variant, jitted with the mesh's shardings; the old state's
  buffers are donated to the new one."""
  return jax.jit(functools.partial(recipe.train_step, variant=variant),
                 in_shardings=(state_sharding, parallel.batch_sharding(mesh)),
                 out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0)


def make_train_step(recipe, mesh, state_sharding):
  """fn(state, batch, step) → (state, metrics). The step number picks the recipe's variant
  (e.g. which lazy regularisers run); each variant is compiled once, when first needed."""
  step_fns = {}

  def train_step(state, batch, step):
    variant = recipe.step_variant(step)
    if variant not in step_fns:
      step_fns[variant] = jit_train_step(recipe, mesh, state_sharding, variant)
    return step_fns[variant](state, batch)

  return train_step


def first_non_finite_metric(metrics):
  """The first (by name) of `metrics` (host scalars) that is NaN or Inf, or None."""
  return next((k for k in sorted(metrics) if not np.isfinite(metrics[k])), None)


class DivergenceCheck:
  """Every step's metrics are checked for NaN/Inf, one step late so the host never waits for
  the device (step s's scalars are read while step s+1 runs); `state(...)` checks the whole
  train state before it is evaluated or saved. Either raises RunFailed naming the step."""

  def __init__(self, newest_saved):
    self.newest_saved = newest_saved
    self._pending = None

  def metrics(self, step, metrics, now=False):
    """Queues step `step`'s device metrics and checks the previous ones (or these, `now`)."""
    if not now:
      self._pending, (step, metrics) = (step, metrics), (self._pending or (None, None))
    elif self._pending is not None and self._pending[0] == step:
      self._pending = None  # Checked here (a log step): no second read of the same step.
    if step is not None:
      host = jax.device_get(metrics)
      bad = first_non_finite_metric(host)
      if bad:
        self._fail(step, f'{bad} is {host[bad]}')

  def state(self, step, state):
    """Checks what is about to be saved: the metrics not yet read, then every float leaf."""
    if self._pending is not None:
      self.metrics(*self._pending, now=True)
      self._pending = None
    bad = checkpoint.first_non_finite(state)
    if bad:
      self._fail(step, f'the train state\'s {bad} is not finite')

  def snapshots(self, step, state, snapshots):
    """Checks the state (`state`), then each snapshot as it will be kept: a finite float32
    weight beyond float16's 65,504 is not finite in a float16 snapshot."""
    self.state(step, state)
    for name, (fields, _) in snapshots.items():
      bad = checkpoint.first_non_finite(fields)
      if bad:
        self._fail(step, f'snapshot {name}\'s {bad} is not finite as the snapshot keeps it '
                   '(e.g. beyond float16\'s 65,504)')

  def saved(self, step):
    self.newest_saved = step

  def _fail(self, step, what):
    newest = (f'the newest checkpoint, {self.newest_saved}, is finite and a re-run resumes '
              'from it' if self.newest_saved is not None else 'no checkpoint was written')
    raise RunFailed(f'training diverged at step {step}: {what}; nothing non-finite was saved '
                    f'({newest}); lower the learning rate (optimizer.*) and re-run with '
                    '--allow_config_change') from None


def write_snapshots(snapshots, recipe, step, config, workdir, is_chief):
  """Writes a recipe's `snapshots` at `step` (`recipe.snapshots`; e.g. EDM2's power-function
  EMAs) to WORKDIR/snapshots/<name>.npz in the export format, on the chief process; a repeated
  step (a resumed run) rewrites the same file."""
  if not snapshots or not is_chief:
    return
  folder = os.path.join(workdir, SNAPSHOTS)
  os.makedirs(folder, exist_ok=True)
  for name, (fields, info) in snapshots.items():
    trained.write_generator(os.path.join(folder, f'{name}.npz'), config, recipe, step, fields,
                            info)
  log.info('step %d: wrote snapshot(s) %s', step, ', '.join(snapshots))


def prepare(config, workdir, allow_config_change=False):
  """Everything that can refuse a run, before anything is written: returns what the run needs.

  Checks the config (jaxgen/validation.py), the mesh, the data source, the recipe's own
  settings, the metrics, the workdir's experiment and `model.init_from` (the other run's weights
  are read here: `init`, or None). Writes nothing, compiles nothing."""
  validation.check_config(config)
  check_local(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} is a file, not a folder: choose a folder')
  mesh = parallel.create_mesh()
  parallel.check_batch_size(config.train.batch_size, mesh)
  source, eval_source = data.create_sources(config)
  recipe = create_recipe(config, source, mesh)
  recipe.prepare_training()
  evaluator = create_evaluator(config, recipe, eval_source, mesh)
  resumed = checkpoint.check_experiment(workdir, config.to_dict(), allow_config_change)
  init = trained.read_init_from(config, recipe, mesh, workdir)  # model.init_from, if any.
  if len(source) < config.train.batch_size:
    log.warning('The dataset has %d images, fewer than the batch of %d: every batch repeats '
                'images; add images or lower train.batch_size.', len(source),
                config.train.batch_size)
  return mesh, source, recipe, evaluator, resumed, init


def train_and_evaluate(config, workdir, allow_config_change=False):
  """Trains `config`'s model in `workdir`, resuming from its newest intact checkpoint if any.

  Order matters for the user's data: everything is checked first (`prepare`); then the workdir
  is created and locked, re-checked under the lock, the state restored (or initialised), and
  only then is config.json written and the run's logs begun."""
  start_time = time.time()
  is_chief = jax.process_index() == 0
  mesh, source, recipe, evaluator, resumed, init = prepare(config, workdir, allow_config_change)
  batch_size = config.train.batch_size

  checkpoint.check_writable(workdir)
  lock = checkpoint.lock_workdir(workdir)  # Held until this process ends.
  # Another run may have claimed the workdir between the check above and the lock.
  resumed = checkpoint.check_experiment(workdir, config.to_dict(), allow_config_change)
  rng = jax.random.PRNGKey(config.seed)
  abstract_state = jax.eval_shape(recipe.init_state, rng)
  state_sharding = parallel.state_sharding(mesh, abstract_state)
  manager = checkpoint.create_manager(workdir, config.checkpoint.keep,
                                      config.checkpoint.best_metric or None,
                                      config.checkpoint.best_mode)
  state = checkpoint.restore_latest(
      manager, parallel.with_shardings(abstract_state, state_sharding))
  if state is None:
    state = jax.jit(recipe.init_state, out_shardings=state_sharding)(np.asarray(rng))
    if init:  # Another run's weights (model.init_from), read and checked by `prepare`.
      state = state.replace(**init)
      log.info('Starting from the %s of %s.', ', '.join(init), config.model.init_from)
  checkpoint.record_config(workdir, config.to_dict())
  start_step = int(jax.device_get(state.step))
  num_steps = config.train.num_steps
  log.info('%s at step %d of %d on %d device(s) in %d process(es); dataset %s (%d images).',
           'Resuming' if start_step else 'Starting', start_step, num_steps,
           mesh.devices.size, jax.process_count(), source.name, len(source))
  if resumed and not start_step:
    log.info('The workdir holds this experiment but no checkpoint yet: starting over.')

  writer = summaries.Writer(workdir, enabled=is_chief)
  if start_step == 0:
    writer.text(0, 'config', '```\n' + str(config) + '\n```')
    sizes = recipe.param_count(state)
    writer.text(0, 'parameters', str(sizes))
    log.info('Parameters: %s', sizes)
    reals = data.fixed_examples(source, config.log.num_samples, seed=config.seed)['image']
    writer.images(0, 'reals', reals.astype(np.float32) / 127.5 - 1.0, 'reals.png')

  batches = training_batches(config, source, recipe, start_step)
  train_step = make_train_step(recipe, mesh, state_sharding)

  sample_key = jax.random.PRNGKey(config.seed + 1)
  best_metric = config.checkpoint.best_metric
  saver = checkpoint.Saver(manager, checkpoint.state_bytes(abstract_state))
  divergence = DivergenceCheck(manager.latest_step())

  def save(state, step, results=None):
    divergence.state(step, state)
    saver.save(step, state, {best_metric: results[best_metric]}
               if results and best_metric in results else None)
    divergence.saved(step)

  def evaluate_and_save(state, step):
    divergence.state(step, state)  # Never score (or save) a diverged state.
    results = evaluator(state)
    writer.scalars(step, {f'eval/{k}': v for k, v in results.items()})
    if results:
      log.info('step %d: %s', step, ', '.join(f'{k} {v:.3f}' for k, v in results.items()))
    grid = evaluator.generate_uint8(state, config.log.num_samples, sample_key)
    writer.images(step, 'samples', grid.astype(np.float32) / 127.5 - 1.0, f'{step:08d}.png',
                  columns=summaries.grid_columns(len(grid), recipe.num_classes))
    save(state, step, results)
    return results

  if start_step == 0 and config.eval.at_start:
    evaluate_and_save(state, 0)

  preemption = Preemption()
  bar = summaries.progress_bar(num_steps, start_step, enabled=is_chief)
  log_every = config.log.every_steps
  window_start, window_steps = time.time(), 0
  step = start_step
  try:
    while step < num_steps:
      batch = parallel.global_batch(next(batches), mesh)
      state, metrics = train_step(state, batch, step)
      step += 1
      window_steps += 1
      bar.update(1)
      divergence.metrics(step, metrics)
      saver.check()
      if step % log_every == 0 or step == num_steps:
        metrics = jax.device_get(metrics)
        divergence.metrics(step, metrics, now=True)
        elapsed = time.time() - window_start
        metrics.update({'perf/step_time_s': elapsed / window_steps,
                        'perf/images_per_s': window_steps * batch_size / elapsed,
                        'progress/kimg': step * batch_size / 1000})
        writer.scalars(step, metrics)
        postfix = {k.rsplit('/', 1)[-1]: f'{metrics[k]:.3f}' for k in recipe.progress_metrics}
        if 'augment/p' in metrics:
          postfix['p'] = f'{metrics["augment/p"]:.3f}'
        postfix['img/s'] = f'{metrics["perf/images_per_s"]:.0f}'
        postfix['kimg'] = f'{metrics["progress/kimg"]:.1f}'
        bar.set_postfix(postfix, refresh=False)
        window_start, window_steps = time.time(), 0
      snapshots = recipe.snapshots(state, step) if hasattr(recipe, 'snapshots') else {}
      if snapshots:
        divergence.snapshots(step, state, snapshots)  # As checkpoints: nothing non-finite.
        write_snapshots(snapshots, recipe, step, config, workdir, is_chief)
      saved = True
      if step % config.eval.every_steps == 0 or step == num_steps:
        evaluate_and_save(state, step)
      elif step % config.checkpoint.every_steps == 0:
        save(state, step)
      else:
        saved = False
      if saved:  # Evaluating and saving are not training: keep them out of the step time.
        window_start, window_steps = time.time(), 0
      if preemption.reached(step):
        if not saved:  # Orbax refuses a second save of the same step.
          save(state, step)
        saver.check(block=True)
        bar.close()
        log.warning('%s at step %d: checkpoint saved; re-run the same command to resume.',
                    'Interrupted (Ctrl-C)' if preemption.signal == signal.SIGINT else
                    'Terminated', step)
        writer.close()
        sys.exit(preemption.exit_code)
    saver.check(block=True)
  finally:
    bar.close()
    writer.flush()
    saver.wait_quietly()
  writer.close()
  manager.close()
  if lock is not None:
    lock.release()
  log.info('Finished %d steps in %.1f min; output in %s', num_steps,
           (time.time() - start_time) / 60, os.path.abspath(workdir))
  return state
