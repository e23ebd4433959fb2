"""Where a compiled step spends its time, from a `jax.profiler` trace, on any backend.

`profile_executable(compiled, run, num_steps, trace_dir)` traces `num_steps` calls of `run()`
and attributes every device event (a GPU kernel's XLA op, a CPU thunk) to the HLO instruction it
executes, and through that instruction's `op_name` metadata to the JAX name stack that created
it: the recipe's phase (`Gmain`, `Dmain`, ... from `jax.named_scope`), the Flax module path
(`Generator.synthesize/synthesis/b32`, `Discriminator/b64`), and whether it is a backward op
(`transpose(...)`). The trace files stay in `trace_dir` for TensorBoard or Perfetto.

Times are summed device time: on a GPU, kernels in one stream (their sum over the wall time is
how busy the GPU was; the rest is launch and host overhead); on a CPU, work on every thread
(the sum can exceed the wall time).
"""

import collections
import glob
import os
import re
import time

# Name-stack components that say how an op was traced, not which part of the model it is.
_NOISE = re.compile(r'^(cond|branch_\d+_fun|while|body|cond_fun|body_fun|closed_call|pjit|'
                    r'checkpoint|remat|rematted_computation|custom_jvp_call|custom_vjp_call|'
                    r'vmap\(\)|jvp\(\)|transpose\(jvp\(\)\)|jit\(.*\)|)$')
_WRAPPER = re.compile(r'^(?:transpose\(|jvp\(|vmap\()+(.*?)\)+$')
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([a-z][\w\-]*)\((.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_HEAVY = ('dot', 'convolution')


def hlo_instructions(hlo_text):
  """{instruction name: (opcode or custom-call target, op_name)} of an HLO module's text.

  A fusion is named after the op that does its work: the op_name of a dot or convolution it
  contains, else its most common op_name (its own metadata is that of its root, often a
  trailing reduce or add of some other scope).
  """
  table, computations, calls = {}, collections.defaultdict(list), {}
  current = None
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      header = _COMPUTATION.match(line)
      if header and ' = ' not in line:
        current = header.group(1)
      continue
    name, opcode, rest = match.groups()
    target = re.search(r'custom_call_target="([^"]+)"', rest)
    kind = re.search(r'kind=(k\w+)', rest)
    called = re.search(r'calls=%?([\w.\-]+)', rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    op_name = op_name.group(1) if op_name else ''
    computations[current].append((opcode, op_name))
    if target:
      opcode = target.group(1)
    elif kind and opcode == 'fusion':
      opcode = f'fusion:{kind.group(1)}'
    if called and opcode.startswith('fusion'):
      calls[name] = called.group(1)
    table[name] = (opcode, op_name)
  for name, computation in calls.items():
    inner = [(op, n) for op, n in computations.get(computation, []) if n and op != 'parameter']
    heavy = [n for op, n in inner if op in _HEAVY]
    names = heavy or [n for _, n in inner]
    if names:
      table[name] = (table[name][0], collections.Counter(names).most_common(1)[0][0])
  return table


def scope(op_name, depth=4):
  """'jit(step)/Gmain/transpose(jvp(Generator.synthesize))/synthesis/b32/conv0/mul' →
  ('Gmain/Generator.synthesize/synthesis/b32', 'bwd') for depth 4."""
  parts = op_name.split('/')[1:-1]  # Drop the outer jit and the primitive itself.
  kept = []
  for part in parts:
    unwrapped = _WRAPPER.sub(r'\1', part)
    if not _NOISE.match(unwrapped) and '->' not in unwrapped:  # Not an einsum's own scope.
      kept.append(unwrapped)
  direction = 'bwd' if 'transpose(' in op_name else 'fwd'
  return '/'.join(kept[:depth]) or '(top level)', direction


def device_events(trace_dir):
  """[(HLO instruction name, duration ns)] of the newest trace under `trace_dir`.

  Device planes (GPU/TPU) contribute their 'XLA Ops' line when they have one (its events are
  HLO ops; kernel lines would count the same work twice), otherwise every line; the host
  plane of a CPU backend contributes the XLA threads' events.
  """
  from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True),
                 key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f'no *.xplane.pb trace under {trace_dir}')
  events = []
  for plane in ProfileData.from_file(paths[-1]).planes:
    lines = list(plane.lines)
    if plane.name.startswith('/device:'):
      ops = [line for line in lines if line.name == 'XLA Ops']
      lines = ops or [line for line in lines if line.name != 'XLA Modules']
    elif plane.name.startswith('/host:'):
      lines = [line for line in lines if line.name.startswith('tf_XLA')]
    else:
      continue
    for line in lines:
      for event in line.events:
        stats = dict(event.stats)
        name = stats.get('hlo_op') or event.name
        events.append((str(name).lstrip('%'), event.duration_ns))
  return events


def summarize(events, instructions, num_steps, depth=4):
  """Milliseconds per step by scope, by phase, and by HLO instruction (the attributed events
  only: those naming an instruction of this module)."""
  by_scope, by_phase, by_op = (collections.Counter(), collections.Counter(),
                               collections.Counter())
  attributed = unattributed = 0
  for name, ns in events:
    if name not in instructions:
      unattributed += ns
      continue
    attributed += ns
    where, direction = scope(instructions[name][1], depth)
    by_scope[f'{where} ({direction})'] += ns
    by_phase[where.split('/')[0]] += ns
    by_op[name] += ns
  ms = lambda ns: ns / 1e6 / num_steps
  return {
      'attributed_ms_per_step': ms(attributed),
      'unattributed_ms_per_step': ms(unattributed),
      'by_phase': {k: ms(v) for k, v in by_phase.most_common()},
      'by_scope': {k: ms(v) for k, v in by_scope.most_common()},
      'top_ops': [{'op': k, 'kind': instructions[k][0], 'ms_per_step': ms(v),
                   'op_name': instructions[k][1]} for k, v in by_op.most_common(15)],
  }


def profile_executable(compiled, run, num_steps, trace_dir, depth=4):
  """Traces `num_steps` calls of `run()` (which must block until done) and summarises them
  against `compiled`'s HLO. Returns the summary with 'wall_ms_per_step' added."""
  import jax  # pylint: disable=import-outside-toplevel
  os.makedirs(trace_dir, exist_ok=True)
  jax.profiler.start_trace(trace_dir)
  start = time.perf_counter()
  try:
    run()
  finally:
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
  summary = summarize(device_events(trace_dir), hlo_instructions(compiled.as_text()),
                      num_steps, depth)
  summary['wall_ms_per_step'] = wall * 1e3 / num_steps
  return summary


def combine(summaries, weights):
  """Weighted sum of per-variant summaries (weights: each variant's share of the steps)."""
  total = {'wall_ms_per_step': 0.0, 'attributed_ms_per_step': 0.0,
           'unattributed_ms_per_step': 0.0, 'by_phase': collections.Counter(),
           'by_scope': collections.Counter()}
  for summary, weight in zip(summaries, weights):
    for key in ('wall_ms_per_step', 'attributed_ms_per_step', 'unattributed_ms_per_step'):
      total[key] += weight * summary[key]
    for key in ('by_phase', 'by_scope'):
      for name, value in summary[key].items():
        total[key][name] += weight * value
  for key in ('by_phase', 'by_scope'):
    total[key] = dict(total[key].most_common())
  return total


def format_table(summary, top=20):
  """Text tables of a (combined) summary."""
  lines = []
  busy = summary['attributed_ms_per_step']
  lines.append(f"profile: {summary['wall_ms_per_step']:.2f} ms/step wall, {busy:.2f} ms/step "
               'of device time in XLA ops (shares below are of this); '
               f"{summary['unattributed_ms_per_step']:.2f} ms/step in other events (runtime "
               'spans, kernels of no op of this program)')
  for key in ('by_phase', 'by_scope'):
    lines.append(f'  {key.replace("_", " ")}:')
    for name, value in list(summary[key].items())[:top]:
      share = 100 * value / busy if busy else 0.0
      lines.append(f'    {value:9.3f} ms  {share:5.1f} %  {name}')
  return '\n'.join(lines)
