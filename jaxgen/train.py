"""The one training loop: data → sharded jitted steps → logs, samples, metrics, checkpoints.

Follow a batch: `data.batches` yields this process's uint8 rows of the global batch at step s;
`parallel.global_batch` makes them one array sharded over the mesh's data axis; the recipe's
`train_step` (a pure function, jitted here with the shardings of `parallel`) returns the new
train state and scalar metrics. Every `log.every_steps` the metrics reach TensorBoard and the
progress bar; every `eval.every_steps` the EMA generator is scored and a checkpoint is written
with the score; every `checkpoint.every_steps` a checkpoint is written; SIGTERM writes one and
exits. The data position is the step, so a restart resumes exactly.
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

from jaxgen import checkpoint, data, parallel, summaries
from jaxgen.evaluation import Evaluator
from jaxgen.errors import UserError
from jaxgen.recipes.dcgan import DCGAN
from jaxgen.recipes.stylegan2 import StyleGAN2

RECIPES = {'dcgan': DCGAN, 'stylegan2': StyleGAN2}

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a scheduler expects from a terminated job.

log = logging.getLogger(__name__)


class Preemption:
  """Notices SIGTERM; in multi-process runs all processes agree on the step to stop at."""

  def __init__(self):
    self.requested = False
    if jax.process_count() == 1:
      signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step):
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested


def create_recipe(config, source, mesh=None):
  """The recipe named by `config.model.name`; `mesh` lets it shard arrays it creates itself."""
  if config.model.name not in RECIPES:
    raise UserError(f'unknown model.name {config.model.name!r}: choose one of {sorted(RECIPES)}')
  return RECIPES[config.model.name](config, source.num_classes, mesh)


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


def train_and_evaluate(config, workdir, allow_config_change=False):
  """Trains `config`'s model in `workdir`, resuming from its newest checkpoint if any."""
  start_time = time.time()
  is_chief = jax.process_index() == 0
  mesh = parallel.create_mesh()
  batch_size = config.train.batch_size
  parallel.check_batch_size(batch_size, mesh)
  checkpoint.check_writable(workdir)
  source = data.create_source(config.data)
  recipe = create_recipe(config, source, mesh)
  resumed = checkpoint.guard_experiment(workdir, config.to_dict(), allow_config_change)

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

  batches = data.batches(source, batch_size, config.seed, xflip=config.data.xflip,
                         start_step=start_step, process_index=jax.process_index(),
                         process_count=jax.process_count(), num_threads=config.data.num_threads)
  train_step = make_train_step(recipe, mesh, state_sharding)

  evaluator = Evaluator(config, recipe, source, mesh)
  sample_key = jax.random.PRNGKey(config.seed + 1)
  best_metric = config.checkpoint.best_metric

  def evaluate_and_save(state, step):
    results = evaluator(state)
    writer.scalars(step, {f'eval/{k}': v for k, v in results.items()})
    if results:
      log.info('step %d: %s', step, ', '.join(f'{k} {v:.3f}' for k, v in results.items()))
    grid = evaluator.generate_uint8(state, config.log.num_samples, sample_key)
    writer.images(step, 'samples', grid.astype(np.float32) / 127.5 - 1.0, f'{step:08d}.png')
    checkpoint.save(manager, step, state, {best_metric: results[best_metric]}
                    if best_metric in results else None)
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
      if step % log_every == 0 or step == num_steps:
        metrics = jax.device_get(metrics)
        elapsed = time.time() - window_start
        metrics.update({'perf/step_time_s': elapsed / window_steps,
                        'perf/images_per_s': window_steps * batch_size / elapsed,
                        'progress/kimg': step * batch_size / 1000})
        if not all(np.isfinite(v) for v in metrics.values()):
          raise FloatingPointError(f'non-finite metrics at step {step}: {metrics}; lower the '
                                   'learning rate, or resume from an earlier checkpoint')
        writer.scalars(step, metrics)
        postfix = {'d': f'{metrics["loss/d"]:.3f}', 'g': f'{metrics["loss/g"]:.3f}'}
        if 'augment/p' in metrics:
          postfix['p'] = f'{metrics["augment/p"]:.3f}'
        postfix['img/s'] = f'{metrics["perf/images_per_s"]:.0f}'
        postfix['kimg'] = f'{metrics["progress/kimg"]:.1f}'
        bar.set_postfix(postfix, refresh=False)
        window_start, window_steps = time.time(), 0
      saved = True
      if step % config.eval.every_steps == 0 or step == num_steps:
        evaluate_and_save(state, step)
      elif step % config.checkpoint.every_steps == 0:
        checkpoint.save(manager, step, state)
      else:
        saved = False
      if saved:  # Evaluating and saving are not training: keep them out of the step time.
        window_start, window_steps = time.time(), 0
      if preemption.reached(step):
        if not saved:  # Orbax refuses a second save of the same step.
          checkpoint.save(manager, step, state)
        manager.wait_until_finished()
        log.warning('Terminated at step %d: checkpoint saved; re-run the same command to '
                    'resume.', step)
        writer.close()
        sys.exit(PREEMPTED_EXIT_CODE)
  finally:
    bar.close()
    manager.wait_until_finished()
    writer.flush()
  writer.close()
  manager.close()
  log.info('Finished %d steps in %.1f min; output in %s', num_steps,
           (time.time() - start_time) / 60, os.path.abspath(workdir))
  return state
