"""jaxgen.profiling: device time attributed to the name stack that created each XLA op."""

import jax
import jax.numpy as jnp
import pytest

from jaxgen import profiling


def test_scope_strips_tracing_wrappers_and_marks_backward_ops():
  name = ('jit(train_step)/Gmain/transpose(jvp(Generator.synthesize))/synthesis/b32/conv0/'
          'conv_general_dilated')
  assert profiling.scope(name) == ('Gmain/Generator.synthesize/synthesis/b32', 'bwd')
  assert profiling.scope(name, depth=2) == ('Gmain/Generator.synthesize', 'bwd')
  ada = 'jit(train_step)/Dmain/jvp(ADA)/cond/branch_1_fun/jit(_uniform)/vmap()/bol,nhblc->nhboc/dot'
  assert profiling.scope(ada) == ('Dmain/ADA', 'fwd')
  assert profiling.scope('jit(f)/add') == ('(top level)', 'fwd')
  assert profiling.scope('') == ('(top level)', 'fwd')


def test_hlo_instructions_carry_the_named_scopes():
  def f(x):
    with jax.named_scope('small'):
      a = jnp.tanh(x @ x)
    with jax.named_scope('large'):
      b = jnp.sin(jnp.tile(x, (4, 4)) @ jnp.tile(x, (4, 4)))
    return a.sum() + b.sum()

  compiled = jax.jit(f).lower(jnp.ones((64, 64))).compile()
  table = profiling.hlo_instructions(compiled.as_text())
  scopes = {profiling.scope(op_name)[0] for _, op_name in table.values()}
  assert {'small', 'large'} <= scopes
  assert all(isinstance(opcode, str) and opcode for opcode, _ in table.values())


def test_profile_attributes_time_to_the_scope_that_does_the_work(tmp_path):
  """Scope 'large' multiplies 16× bigger matrices (16,384× the FLOPs over its four products)
  than 'small': the trace must put nearly all attributed time there. (With 8× bigger ones,
  about 1 MFLOP against 66 kFLOP, a 2-core CPU once timed 'large' at 1.37 ms and 'small' at
  0.82: per-op overhead, not work.)"""

  def f(x, y):
    with jax.named_scope('small'):
      a = jnp.tanh(x @ x)
    with jax.named_scope('large'):
      b = y
      for _ in range(4):
        b = jnp.tanh(b @ y)
    return a.sum() + b.sum()

  x, y = jnp.ones((32, 32)) / 32, jnp.ones((512, 512)) / 512
  fn = jax.jit(f)
  compiled = fn.lower(x, y).compile()

  def run():
    for _ in range(5):
      out = compiled(x, y)
    out.block_until_ready()

  run()
  summary = profiling.profile_executable(compiled, run, 5, str(tmp_path / 'trace'))
  phases = summary['by_phase']
  assert summary['attributed_ms_per_step'] > 0 and summary['wall_ms_per_step'] > 0
  assert phases.get('large', 0) > 5 * phases.get('small', 0), phases
  assert summary['top_ops'][0]['op_name'].split('/')[1] == 'large', summary['top_ops'][:3]
  assert list(tmp_path.glob('trace/**/*.xplane.pb'))
  text = profiling.format_table(profiling.combine([summary, summary], [0.5, 0.5]))
  assert 'large' in text and 'ms/step wall' in text
  combined = profiling.combine([summary, summary], [0.25, 0.75])
  assert combined['by_phase']['large'] == pytest.approx(phases['large'])


def test_device_events_needs_a_trace(tmp_path):
  with pytest.raises(FileNotFoundError, match='no \\*.xplane.pb trace'):
    profiling.device_events(str(tmp_path))
