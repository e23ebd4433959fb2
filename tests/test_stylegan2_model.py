"""StyleGAN2 networks: parameter counts equal to the official ones, the equalised-lr and
demodulation maths, mixed precision, truncation and w_avg, labels, and input errors.

Tiny networks (16×16, ≤ 16 channels) keep this on a CPU budget; PRNG keys use the 'unsafe_rbg'
implementation, whose random-number kernels compile much faster on CPU than threefry.
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.models import stylegan2 as sg
from stylegan2_testing import random_variables

TINY_G = dict(resolution=16, z_dim=8, w_dim=8, channel_base=128, channel_max=16,
              num_mapping_layers=2, num_bf16_res=0, noise_mode='const')
TINY_D = dict(resolution=16, channel_base=128, channel_max=16, num_mapping_layers=2,
              mbstd_group_size=2, num_bf16_res=0)


def key(seed):
  return jax.random.key(seed, impl='unsafe_rbg')


@functools.lru_cache(maxsize=None)
def generator_variables(c_dim=0):
  return random_variables(sg.Generator(**TINY_G, c_dim=c_dim), seed=c_dim)


@functools.lru_cache(maxsize=None)
def discriminator_variables(c_dim=0):
  return random_variables(sg.Discriminator(**TINY_D, c_dim=c_dim), seed=10 + c_dim)


@functools.lru_cache(maxsize=None)
def generator_fn(method=None, mutable=False, **overrides):
  """Jitted apply of a tiny generator (cached so each variant compiles once)."""
  g = sg.Generator(**{**TINY_G, **overrides})
  return jax.jit(functools.partial(g.apply, method=method, mutable=mutable),
                 static_argnames=('noise_mode', 'truncation_cutoff', 'update_w_avg'))


@functools.lru_cache(maxsize=None)
def discriminator_fn(**overrides):
  return jax.jit(sg.Discriminator(**{**TINY_D, **overrides}).apply)


# ------------------------------------------------------------------------------------------------
# Parameter counts: the official networks' numbers (REFERENCE.md), trainable parameters only.


@pytest.mark.parametrize('channel_base, g_total, mapping, synthesis, d_total', [
    (32768, 30_034_338, 2_101_248, 27_933_090, 28_864_129),   # --cfg=stylegan2
    (16384, 24_767_458, 2_101_248, 22_666_210, 24_001_089),   # --cfg=paper256
])
def test_parameter_counts_match_official(channel_base, g_total, mapping, synthesis, d_total):
  g = sg.Generator(resolution=256, channel_base=channel_base, channel_max=512,
                   num_mapping_layers=8)
  d = sg.Discriminator(resolution=256, channel_base=channel_base, channel_max=512,
                       architecture='resnet', mbstd_group_size=4)
  g_vars = jax.eval_shape(functools.partial(sg.init_generator, g), jax.random.key(0))
  d_vars = jax.eval_shape(functools.partial(sg.init_discriminator, d), jax.random.key(0))
  assert sg.count_params(g_vars['params']['mapping']) == mapping
  assert sg.count_params(g_vars['params']['synthesis']) == synthesis
  assert sg.count_params(g_vars['params']) == g_total
  assert sg.count_params(d_vars['params']) == d_total
  assert set(d_vars) == {'params'}
  # w_avg and the 13 noise_const buffers (one per synthesis conv) are not parameters.
  buffers = g_vars['buffers']
  assert buffers['mapping']['w_avg'].shape == (512,)
  assert len(jax.tree_util.tree_leaves(buffers['synthesis'])) == 13


# ------------------------------------------------------------------------------------------------
# Modulated convolution.


def test_demodulated_weights_have_unit_norm_per_output_channel():
  rs = np.random.RandomState(0)
  weight = jnp.asarray(rs.standard_normal((3, 3, 5, 7)), jnp.float32)
  styles = jnp.asarray(rs.standard_normal((4, 5)) * 3 + 1, jnp.float32)
  w = sg.modulated_weights(weight, styles, demodulate=True)
  assert w.shape == (4, 3, 3, 5, 7)
  norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)))       # [N, O]
  # 1 / √(‖w‖² + 1e-8) · ‖w‖ = 1 − O(1e-9) for ‖w‖² ≫ 1e-8; float32 rounding ~1e-7.
  np.testing.assert_allclose(np.asarray(norms), 1.0, atol=1e-5)
  undemodulated = jnp.sqrt(jnp.sum(jnp.square(sg.modulated_weights(weight, styles, False)),
                                   axis=(1, 2, 3)))
  assert float(jnp.min(jnp.abs(undemodulated - 1))) > 0.1


@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('demodulate', [True, False])
def test_fused_and_unfused_modulated_conv_agree(up, demodulate):
  rs = np.random.RandomState(1)
  x = jnp.asarray(rs.standard_normal((3, 6, 6, 4)), jnp.float32)
  weight = jnp.asarray(rs.standard_normal((3, 3, 4, 5)), jnp.float32)
  styles = jnp.asarray(rs.standard_normal((3, 4)) + 1, jnp.float32)
  noise = jnp.asarray(rs.standard_normal((3, 6 * up, 6 * up, 1)), jnp.float32)
  f = sg.setup_filter([1, 3, 3, 1])
  run = lambda fused: sg.modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1,
                                          resample_filter=f, demodulate=demodulate,
                                          flip_weight=up == 1, fused_modconv=fused)
  fused, unfused = run(True), run(False)
  assert fused.shape == (3, 6 * up, 6 * up, 5)
  # Same maths in a different order: float32 rounding of O(10) sums of O(1) terms.
  np.testing.assert_allclose(np.asarray(fused), np.asarray(unfused), atol=1e-4, rtol=1e-5)


def test_fused_generator_matches_unfused():
  variables = generator_variables()
  z = jax.random.normal(key(2), (2, 8))
  a = generator_fn()(variables, z)
  b = generator_fn(fused_modconv=True)(variables, z)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Equalised learning rate.


def test_dense_layer_equalised_learning_rate():
  layer = sg.FullyConnectedLayer(256, lr_multiplier=0.01, bias_init=0.5)
  x = jax.random.normal(key(3), (16, 512))
  variables = jax.jit(layer.init)(key(4), x)
  weight, bias = variables['params']['weight'], variables['params']['bias']
  # Stored weights ~ N(0, 1/lr²): 131k samples estimate the std within ~0.3 %.
  assert abs(float(jnp.std(weight)) - 100.0) < 2.0
  np.testing.assert_allclose(np.asarray(bias), 0.5)               # bias_init, stored raw
  # Run time: w · lr/√in and b · lr.
  want = x @ (weight * (0.01 / math.sqrt(512))) + bias * 0.01
  np.testing.assert_allclose(np.asarray(layer.apply(variables, x)), np.asarray(want),
                             rtol=1e-5, atol=1e-5)
  # So the effective weights have variance 1/in and unit-variance input keeps unit variance.
  assert 0.9 < float(jnp.var(layer.apply(variables, x) - bias * 0.01)) < 1.1
  # And the gradient of the stored weight carries the same run-time factor.
  grad = jax.grad(lambda p: jnp.sum(layer.apply({'params': p}, x[:1])))(variables['params'])
  np.testing.assert_allclose(np.asarray(grad['weight']),
                             np.broadcast_to(np.asarray(x[0])[:, None] * 0.01 / math.sqrt(512),
                                             (512, 256)), rtol=1e-5, atol=1e-8)


def test_conv_layer_equalised_learning_rate_and_gain():
  layer = sg.Conv2dLayer(6, 3, activation='lrelu', conv_clamp=0.5)
  x = jax.random.normal(key(5), (2, 5, 5, 4))
  variables = layer.init(key(6), x)
  weight = variables['params']['weight']
  assert weight.shape == (3, 3, 4, 6)
  y = layer.apply(variables, x, gain=0.5)
  pre = lax.conv_general_dilated(x, weight / math.sqrt(4 * 9), (1, 1), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  # lrelu · √2 · gain, clamped to ±conv_clamp · gain.
  want = np.clip(np.where(pre >= 0, pre, 0.2 * pre) * math.sqrt(2) * 0.5, -0.25, 0.25)
  np.testing.assert_allclose(np.asarray(y), want, atol=1e-5)
  assert float(jnp.max(jnp.abs(y))) == pytest.approx(0.25)         # the clamp is active


# ------------------------------------------------------------------------------------------------
# Forward passes, labels, mixed precision.


def test_initial_state_matches_official_initialisation():
  variables = jax.jit(functools.partial(sg.init_generator, sg.Generator(**TINY_G)))(key(7))
  params, buffers = variables['params'], variables['buffers']
  layer = params['synthesis']['b8']['conv0']
  np.testing.assert_array_equal(np.asarray(layer['affine']['bias']), 1.0)   # styles start at 1
  assert float(layer['noise_strength']) == 0.0
  np.testing.assert_array_equal(np.asarray(layer['bias']), 0.0)
  assert params['synthesis']['b4']['const'].shape == (4, 4, 16)
  assert buffers['synthesis']['b16']['conv1']['noise_const'].shape == (16, 16)
  np.testing.assert_array_equal(np.asarray(buffers['mapping']['w_avg']), 0.0)


@pytest.mark.parametrize('c_dim', [0, 3])
def test_generator_and_discriminator_forward(c_dim):
  g, d = generator_fn(c_dim=c_dim), discriminator_fn(c_dim=c_dim)
  g_vars, d_vars = generator_variables(c_dim), discriminator_variables(c_dim)
  z = jax.random.normal(key(8), (4, 8))
  c = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3) if c_dim else None
  img = g(g_vars, z, c)
  assert img.shape == (4, 16, 16, 3) and img.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(img))) and float(jnp.std(img)) > 1e-3
  logits = d(d_vars, img, c)
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  if c_dim:
    # Labels matter to both networks.
    c2 = jax.nn.one_hot(jnp.array([1, 2, 0, 1]), 3)
    assert float(jnp.max(jnp.abs(g(g_vars, z, c2) - img))) > 1e-3
    assert float(jnp.max(jnp.abs(d(d_vars, img, c2) - logits))) > 1e-4


def _conv_input_dtypes(fn, *args):
  """dtypes of the lhs of every convolution in fn's jaxpr (recursing into sub-jaxprs)."""
  dtypes = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        dtypes.append(eqn.invars[0].aval.dtype)
      for param in eqn.params.values():
        for sub in param if isinstance(param, (list, tuple)) else [param]:
          if hasattr(sub, 'jaxpr'):
            walk(sub.jaxpr)
          elif hasattr(sub, 'eqns'):
            walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return dtypes


def test_bf16_in_the_highest_resolutions_only():
  variables = generator_variables()
  z = jax.random.normal(key(9), (2, 8))
  fp32, mixed = generator_fn(), generator_fn(num_bf16_res=2)   # 16×16 and 8×8 in bfloat16
  g_dtypes = _conv_input_dtypes(mixed, variables, z)
  # 8×8 and 16×16: conv0, conv1, torgb each; 4×4: conv1, torgb.
  assert g_dtypes.count(jnp.bfloat16) == 6 and g_dtypes.count(jnp.float32) == 2
  assert jnp.bfloat16 not in _conv_input_dtypes(fp32, variables, z)

  img32 = fp32(variables, z)
  img16 = mixed(variables, z)
  assert img16.dtype == jnp.float32                                 # parameters/outputs fp32
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda p: p.dtype == jnp.float32,
                                                       variables['params']))
  # bfloat16 keeps 8 significant bits (~0.4 % per rounding) through six layers.
  scale = float(jnp.std(img32))
  assert float(jnp.max(jnp.abs(img16 - img32))) < 0.1 * scale
  assert float(jnp.max(jnp.abs(img16 - img32))) > 0                 # it really ran in bf16

  d_mixed = discriminator_fn(num_bf16_res=2)
  d_dtypes = _conv_input_dtypes(d_mixed, discriminator_variables(), img32)
  # Blocks 16 and 8 (fromrgb, conv0, conv1, skip / conv0, conv1, skip) in bf16; epilogue fp32.
  assert d_dtypes.count(jnp.bfloat16) == 7 and d_dtypes.count(jnp.float32) == 1
  logits16 = d_mixed(discriminator_variables(), img32)
  logits32 = discriminator_fn()(discriminator_variables(), img32)
  assert float(jnp.max(jnp.abs(logits16 - logits32))) < 0.1 * float(jnp.std(logits32)) + 1e-3


def test_noise_modes():
  variables = generator_variables()
  z = jax.random.normal(key(10), (2, 8))
  run = generator_fn()
  const_a, const_b = run(variables, z, noise_mode='const'), run(variables, z, noise_mode='const')
  none = run(variables, z, noise_mode='none')
  rand_a = run(variables, z, noise_mode='random', rngs={'noise': key(11)})
  rand_b = run(variables, z, noise_mode='random', rngs={'noise': key(12)})
  np.testing.assert_array_equal(np.asarray(const_a), np.asarray(const_b))
  for a, b in [(const_a, none), (rand_a, rand_b), (rand_a, const_a)]:
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


# ------------------------------------------------------------------------------------------------
# Mapping: w_avg tracking and truncation.


def test_truncation_psi_zero_returns_w_avg():
  variables = generator_variables()
  w_avg = jax.random.normal(key(13), (8,))
  variables = {'params': variables['params'],
               'buffers': {**variables['buffers'], 'mapping': {'w_avg': w_avg}}}
  z = jax.random.normal(key(14), (3, 8))
  mapping = generator_fn(method='map')
  ws = mapping(variables, z, truncation_psi=0.0)
  assert ws.shape == (3, sg.Generator(**TINY_G).num_ws, 8) == (3, 6, 8)
  np.testing.assert_allclose(np.asarray(ws), np.broadcast_to(np.asarray(w_avg), ws.shape),
                             atol=1e-6)
  plain = mapping(variables, z, truncation_psi=1.0)
  assert float(jnp.max(jnp.abs(plain - ws))) > 0.1
  cut = mapping(variables, z, truncation_psi=0.0, truncation_cutoff=2)
  np.testing.assert_allclose(np.asarray(cut[:, :2]), np.asarray(ws[:, :2]), atol=1e-6)
  np.testing.assert_allclose(np.asarray(cut[:, 2:]), np.asarray(plain[:, 2:]), atol=1e-6)
  half = mapping(variables, z, truncation_psi=0.5)
  np.testing.assert_allclose(np.asarray(half), np.asarray(w_avg + 0.5 * (plain - w_avg)),
                             atol=1e-5)


def test_w_avg_tracks_the_batch_mean():
  variables = generator_variables()
  old = jax.random.normal(key(16), (8,))
  variables = {'params': variables['params'],
               'buffers': {**variables['buffers'], 'mapping': {'w_avg': old}}}
  z = jax.random.normal(key(15), (5, 8))
  mapping = generator_fn(method='map', mutable=('buffers',))
  ws, updates = mapping(variables, z, update_w_avg=True)
  batch_mean = jnp.mean(ws[:, 0], axis=0)
  np.testing.assert_allclose(np.asarray(updates['buffers']['mapping']['w_avg']),
                             np.asarray(batch_mean + 0.995 * (old - batch_mean)), atol=1e-5)
  # Without update_w_avg nothing changes.
  _, same = mapping(variables, z, update_w_avg=False)
  np.testing.assert_array_equal(np.asarray(same['buffers']['mapping']['w_avg']), np.asarray(old))


def test_minibatch_stddev_matches_numpy():
  x = np.random.RandomState(2).standard_normal((4, 3, 3, 6)).astype(np.float32)
  y = np.asarray(sg.minibatch_stddev(jnp.asarray(x), group_size=2, num_channels=2))
  assert y.shape == (4, 3, 3, 8)
  np.testing.assert_array_equal(y[..., :6], x)
  for i in range(4):
    group = x[[i % 2, i % 2 + 2]]                     # samples i and i + N/G share a group
    std = np.sqrt(group.var(axis=0) + 1e-8)           # [3, 3, 6]
    for f in range(2):
      np.testing.assert_allclose(y[i, :, :, 6 + f], std[..., 3 * f:3 * f + 3].mean(), rtol=1e-5)


def test_minibatch_stddev_groups_within_each_split_as_on_each_gpu():
  """num_splits = S: the official per-GPU computation on each of S contiguous sub-batches."""
  x = np.random.RandomState(3).standard_normal((16, 2, 2, 4)).astype(np.float32)
  y = np.asarray(sg.minibatch_stddev(jnp.asarray(x), group_size=2, num_splits=4))
  for part in range(4):
    sub = x[4 * part:4 * part + 4]
    expected = np.asarray(sg.minibatch_stddev(jnp.asarray(sub), group_size=2))
    np.testing.assert_allclose(y[4 * part:4 * part + 4], expected, rtol=1e-6)
  # Groups really are per part: the whole-batch grouping (samples i, i + 8) gives other values.
  whole = np.asarray(sg.minibatch_stddev(jnp.asarray(x), group_size=2))
  assert np.abs(whole[..., 4] - y[..., 4]).max() > 0.1
  # A group larger than a part shrinks to the part (min(G, per-device batch), as officially).
  y8 = np.asarray(sg.minibatch_stddev(jnp.asarray(x), group_size=8, num_splits=4))
  np.testing.assert_allclose(y8, np.asarray(sg.minibatch_stddev(jnp.asarray(x), 4, 1, 4)))


# ------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize('resolution', [48, 100, 4, 0])
def test_resolution_must_be_a_power_of_two(resolution):
  for network in (sg.Generator, sg.Discriminator):
    with pytest.raises(UserError, match='power of two'):
      network(resolution=resolution)


def test_labels_requested_on_unlabelled_dataset():
  with pytest.raises(UserError, match='no labels'):
    sg.conditioning_dim(True, 0)
  assert sg.conditioning_dim(True, 10) == 10
  assert sg.conditioning_dim(False, 10) == 0
  with pytest.raises(UserError, match='without labels'):
    jax.eval_shape(sg.Generator(**TINY_G, c_dim=3).apply, generator_variables(3),
                   jnp.zeros((2, 8)))


def test_integer_labels_are_one_hot():
  np.testing.assert_array_equal(np.asarray(sg._labels(jnp.array([0, 2]), 3, 'G')),
                                np.eye(3, dtype=np.float32)[[0, 2]])


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_discriminator_architectures(architecture):
  d = sg.Discriminator(**TINY_D, architecture=architecture, c_dim=2)
  variables = jax.eval_shape(functools.partial(sg.init_discriminator, d), jax.random.key(0))
  params = variables['params']
  assert ('skip' in params['b16']) == (architecture == 'resnet')
  assert ('fromrgb' in params['b8']) == (architecture == 'skip')
  assert ('fromrgb' in params['b4']) == (architecture == 'skip')
  logits = jax.eval_shape(d.apply, variables, jnp.zeros((4, 16, 16, 3)), jnp.zeros((4, 2)))
  assert logits.shape == (4,)


def test_other_bad_settings():
  with pytest.raises(UserError, match='noise_mode'):
    sg.Generator(noise_mode='fixed')
  with pytest.raises(UserError, match='architecture'):
    sg.Discriminator(architecture='dense')
  with pytest.raises(UserError, match='multiple of mbstd_group_size'):
    sg.minibatch_stddev(jnp.zeros((6, 4, 4, 2)), group_size=4)
  with pytest.raises(UserError, match='does not split into 4'):
    sg.minibatch_stddev(jnp.zeros((6, 4, 4, 2)), group_size=2, num_splits=4)
