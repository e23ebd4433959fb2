"""Training speed of a config: `python -m jaxgen.bench --config=configs/stylegan.py:bench256`.

Runs the real update step of the training loop — the recipe's jitted variants with the mesh's
shardings, as `jaxgen.train` builds them, so StyleGAN2's lazy R1 and path-length steps come at
their intervals and the EMA and ADA updates are included — on batches from the config's data
pipeline, and reports after warm-up:

  sec/kimg and images/s   wall time of `--steps` steps (a multiple of every regulariser
                          interval, so each variant runs in its real proportion);
  peak device memory      `memory_stats()['peak_bytes_in_use']` where the backend reports it;
  FLOPs and MFU           XLA's count of the compiled programs' floating-point operations,
                          per image, and that rate over the accelerator's dense bf16 peak
                          (`--peak_tflops`; known for recent NVIDIA GPUs and TPUs).

Then sampling: `--sample_batches` batches of `eval.batch_size` through the recipe's `generate`
with the run's sampling settings (a diffusion config's sampler: 35 network evaluations per image
for 18 Heun steps), as images/s, GFLOP per image and MFU (one network pass's FLOPs × the passes
per image, `recipe.evaluations_per_sample`).

No checkpoints, logs or evaluations. `--output=FILE` also writes the figures as JSON.

`--profile=N` then traces N steps of each step variant and prints where the device time goes,
weighted by how often each variant runs: by phase (Gmain, Greg, Dmain, Dreg, EMA), by model
scope and direction (e.g. `Gmain/Generator.synthesize/synthesis/b256 (bwd)`), and the top XLA
ops (jaxgen/profiling.py).
"""

import json
import sys
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with a preset: configs/x.py:preset.',
    lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 64, 'Timed steps (rounded up to a multiple of every '
                              'step-variant period, e.g. 16 for StyleGAN2\'s lazy R1).')
_WARMUP = flags.DEFINE_integer('warmup', 16, 'Untimed steps first (compilation, autotuning).')
_PEAK_TFLOPS = flags.DEFINE_float('peak_tflops', 0.0, 'Dense bf16 peak of one device, for MFU; '
                                  '0 = look it up from the device kind.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the figures to this JSON file.')
_SAMPLE_BATCHES = flags.DEFINE_integer('sample_batches', 3, 'Timed sampling batches of '
                                       'eval.batch_size after the training steps (0 = none).')
_PROFILE = flags.DEFINE_integer('profile', 0, 'After timing, trace this many steps of every '
                                'step variant and print where the time goes (0 = no trace).')
_PROFILE_DIR = flags.DEFINE_string('profile_dir', '/tmp/jaxgen_bench_profile',
                                   'Where the traces go (TensorBoard / Perfetto can open them).')
_PROFILE_DEPTH = flags.DEFINE_integer('profile_depth', 4, 'Name-stack levels per profile row.')
flags.mark_flags_as_required(['config'])

# Dense bf16 matrix peak per device (vendor figures), TFLOP/s.
PEAK_BF16_TFLOPS = {
    'H100': 989.4, 'H200': 989.4, 'H800': 989.4, 'GH200': 989.4, 'B200': 2250.0, 'A100': 312.0,
    'A10G': 125.0, 'L4': 121.0, 'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5e': 197.0,
    'TPU v5p': 459.0, 'TPU v6 lite': 918.0, 'TPU v6e': 918.0}


def peak_tflops(device):
  kind = getattr(device, 'device_kind', '')
  for name, tflops in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return tflops
  return None


def _period(recipe, limit=256):
  """Smallest p ≤ limit with step_variant(s) == step_variant(s + p) for s in [0, limit)."""
  variants = [recipe.step_variant(s) for s in range(2 * limit)]
  for p in range(1, limit + 1):
    if all(variants[s] == variants[s + p] for s in range(limit)):
      return p
  return limit


def _flops(compiled):
  """XLA's FLOP count of one device's program (the SPMD-partitioned module: with the batch
  split over D devices it counts 1/D of the step's work)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX: one dict per computation.
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', 0.0))


def benchmark(config, steps=64, warmup=16, peak=None, profile_steps=0,
              profile_dir='/tmp/jaxgen_bench_profile', profile_depth=4, sample_batches=3):
  """Times `steps` training steps of `config` after `warmup` ones, then `sample_batches`
  batches of sampling; returns a dict of figures (with 'profile' when `profile_steps` > 0)."""
  import jax
  import numpy as np

  from jaxgen import data, parallel, train, validation

  validation.check_config(config)
  parallel.use_cpu_devices(config.train.get('cpu_devices', 0))  # As jaxgen.main lays it out.
  mesh = parallel.create_mesh()
  batch_size = config.train.batch_size
  parallel.check_batch_size(batch_size, mesh)
  source, _ = data.create_sources(config)
  recipe = train.create_recipe(config, source, mesh)
  recipe.prepare_training()
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(recipe.init_state, rng)
  state_sharding = parallel.state_sharding(mesh, abstract)
  state = jax.jit(recipe.init_state, out_shardings=state_sharding)(np.asarray(rng))
  period = _period(recipe)
  steps = -(-steps // period) * period
  batches = train.training_batches(config, source, recipe)

  compiled, flops = {}, {}
  compile_start = time.time()
  first = next(batches)
  batch = parallel.global_batch(first, mesh)
  for s in range(period):
    variant = recipe.step_variant(s)
    if variant not in compiled:
      fn = train.jit_train_step(recipe, mesh, state_sharding, variant)
      compiled[variant] = fn.lower(state, batch).compile()
      flops[variant] = _flops(compiled[variant])
  compile_s = time.time() - compile_start

  def run(num, first_step):
    nonlocal state
    metrics = None
    for s in range(first_step, first_step + num):
      batch = parallel.global_batch(next(batches), mesh)
      state, metrics = compiled[recipe.step_variant(s)](state, batch)
    jax.block_until_ready((state, metrics))
    return metrics

  run(warmup, 0)
  start = time.time()
  metrics = run(steps, warmup)
  elapsed = time.time() - start
  finite = all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())

  # Per device and step; the whole step's work is that times the devices (data parallelism).
  device_flops = sum(flops[recipe.step_variant(s)] for s in range(warmup, warmup + steps)) / steps
  images_per_s = steps * batch_size / elapsed
  device = jax.devices()[0]
  peak = peak or peak_tflops(device)
  memory = None
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    memory = max(d.memory_stats()['peak_bytes_in_use'] for d in jax.local_devices())
  achieved = device_flops * steps / elapsed  # FLOP/s per device.
  figures = {
      'device': f'{mesh.devices.size} × {device.device_kind}',
      'jax': jax.__version__,
      'resolution': config.data.resolution,
      'batch_size': batch_size,
      'timed_steps': steps,
      'warmup_steps': warmup,
      'variants': len(compiled),
      'compile_s': round(compile_s, 1),
      'sec_per_kimg': round(elapsed / (steps * batch_size) * 1000, 3),
      'images_per_s': round(images_per_s, 1),
      'step_ms': round(elapsed / steps * 1000, 2),
      'peak_memory_gib': None if memory is None else round(memory / 2**30, 2),
      'gflop_per_image': round(device_flops * mesh.devices.size / batch_size / 1e9, 3),
      'tflops_per_device': round(achieved / 1e12, 1),
      'mfu': None if not peak else round(achieved / (peak * 1e12), 4),
      'finite': finite,
  }
  if sample_batches > 0:
    figures.update(_sampling(recipe, state, config, mesh, sample_batches, peak,
                             first.get('input')))
  if profile_steps > 0:
    figures['profile'] = _profile(compiled, recipe, period, state, batches, mesh, profile_steps,
                                  profile_dir, profile_depth)
  return figures


def _sampling(recipe, state, config, mesh, num_batches, peak, task_inputs=None):
  """Sampling speed: `recipe.generate` (the run's sampling settings) on batches of
  `eval.batch_size`, as evaluations and `jaxgen.generate` run it, after one untimed batch.
  A recipe with a task translates `task_inputs` (a training batch's, repeated to the batch)."""
  import jax
  import numpy as np

  from jaxgen import parallel

  devices = mesh.devices.size
  n = parallel.device_batch(config.eval.batch_size, mesh)
  sharding = parallel.batch_sharding(mesh)
  labels = np.zeros((n,), np.int32)

  if recipe.task is not None:
    inputs = np.resize(task_inputs, (n,) + task_inputs.shape[1:])

  def sample(state, key, labels):
    if recipe.task is not None:
      return recipe.generate(state, inputs, labels)
    z = recipe.latents(key, labels.shape[0])
    if 'noise_key' in recipe.sampling_options:
      return recipe.generate(state, z, labels, noise_key=jax.random.fold_in(key, 1))
    return recipe.generate(state, z, labels)

  fn = jax.jit(sample, in_shardings=(None, None, sharding), out_shardings=sharding)
  start = time.time()
  fn = fn.lower(state, np.asarray(jax.random.PRNGKey(0)), labels).compile()
  compile_s = time.time() - start
  # XLA counts a sampler loop's body once: FLOPs are one network pass's × the passes.
  forward = jax.jit(recipe.network_forward, in_shardings=(None, sharding, sharding))
  if recipe.task is not None:
    z = jax.ShapeDtypeStruct(inputs.shape, inputs.dtype, sharding=sharding)
  else:
    z = jax.eval_shape(lambda key: recipe.latents(key, n), jax.random.PRNGKey(0))
    z = jax.ShapeDtypeStruct(z.shape, z.dtype, sharding=sharding)
  forward_flops = _flops(forward.lower(state, z, labels).compile())
  evaluations = recipe.evaluations_per_sample()
  jax.block_until_ready(fn(state, np.asarray(jax.random.PRNGKey(1)), labels))
  start = time.time()
  for i in range(num_batches):
    out = fn(state, np.asarray(jax.random.PRNGKey(2 + i)), labels)
  jax.block_until_ready(out)
  elapsed = time.time() - start
  images_per_s = num_batches * n / elapsed
  achieved = forward_flops * evaluations * num_batches / elapsed  # Per device.
  return {
      'sample_batch': n,
      'sample_evaluations': evaluations,
      'sample_compile_s': round(compile_s, 1),
      'sample_images_per_s': round(images_per_s, 1),
      'sample_gflop_per_image': round(forward_flops * devices * evaluations / n / 1e9, 3),
      'sample_tflops_per_device': round(achieved / 1e12, 1),
      'sample_mfu': None if not peak else round(achieved / (peak * 1e12), 4),
  }


def _profile(compiled, recipe, period, state, batches, mesh, num_steps, trace_dir, depth):
  """Per-variant traces, combined with the variants' shares of the schedule."""
  import collections
  import os

  import jax

  from jaxgen import parallel, profiling

  shares = collections.Counter(recipe.step_variant(s) for s in range(period))
  batch = parallel.global_batch(next(batches), mesh)
  summaries, weights, per_variant = [], [], {}
  current = [state]  # The step donates its input state: chain the calls.
  for variant, count in shares.items():
    def run(fn=compiled[variant]):
      metrics = None
      for _ in range(num_steps):
        current[0], metrics = fn(current[0], batch)  # One batch: timing, not training.
      jax.block_until_ready((current[0], metrics))

    run()  # Outside the trace: caches warm.
    name = '-'.join(str(v) for v in variant) if isinstance(variant, tuple) else str(variant)
    summary = profiling.profile_executable(compiled[variant], run, num_steps,
                                           os.path.join(trace_dir, name), depth)
    summaries.append(summary)
    weights.append(count / period)
    per_variant[name] = {'share': count / period, 'wall_ms_per_step': summary['wall_ms_per_step'],
                         'top_ops': summary['top_ops']}
  combined = profiling.combine(summaries, weights)
  combined['variants'] = per_variant
  combined['trace_dir'] = trace_dir
  return combined


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from jaxgen.errors import UserError
  from jaxgen.cli import setup_logging
  setup_logging()
  try:
    figures = benchmark(_CONFIG.value, _STEPS.value, _WARMUP.value, _PEAK_TFLOPS.value or None,
                        _PROFILE.value, _PROFILE_DIR.value, _PROFILE_DEPTH.value,
                        _SAMPLE_BATCHES.value)
  except UserError as e:
    print(f'jaxgen: error: {e}', file=sys.stderr)
    sys.exit(2)
  profile = figures.get('profile')
  shown = {k: v for k, v in figures.items() if k != 'profile'}
  width = max(len(k) for k in shown)
  for key, value in shown.items():
    print(f'{key:<{width}}  {value}')
  if profile:
    from jaxgen import profiling
    print(profiling.format_table(profile))
    for name, variant in profile['variants'].items():
      print(f"  variant {name} ({100 * variant['share']:.0f} % of steps, "
            f"{variant['wall_ms_per_step']:.2f} ms/step), top ops:")
      for op in variant['top_ops'][:8]:
        print(f"    {op['ms_per_step']:9.3f} ms  {op['kind']:<24.24} {op['op_name'][:90]}")
    print(f"  traces: {profile['trace_dir']}")
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      json.dump(figures, f, indent=2)


if __name__ == '__main__':
  from jaxgen.cli import parse_flags
  app.run(main, flags_parser=parse_flags)
