"""pix2pix's U-Net and PatchGAN (jaxgen/models/pix2pix.py) and CycleGAN's ResNet generator
(jaxgen/models/resnet_generator.py) held against the official code
(junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`): parameter counts of the published
networks, outputs and batch-norm running statistics of small official networks loaded with
`params_from_official` (tests/data/pix2pix_nets.npz, README_pix2pix_nets.md), the official
initialisation, dropout, the PatchGAN's 70×70 receptive field, and the one-line errors.

Full-size networks are only traced (`jax.eval_shape`); everything run is tiny, one compilation
per official case.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.models import pix2pix as pp
from jaxgen.models import resnet_generator as rg

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'pix2pix_nets.npz')
CASES = ('unet_batch', 'unet_instance', 'unet_none', 'patch_batch', 'patch_instance',
         'resnet_instance', 'resnet_batch_zero', 'resnet_none_replicate')

# Both sides compute in float32 from the same float16-exact weights and inputs; they differ only
# in the order of the convolutions' sums and of the norm statistics (observed ≤ 1.2e-6 on
# outputs of magnitude ≤ 1, ≤ 1.2e-7 on running statistics). 2e-5 is ~20 float32 ulps at 1 and
# still 1000× below what one wrong layer, transposed kernel or norm rule changes.
ATOL = 2e-5


@functools.lru_cache(maxsize=None)
def fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


def case_config(case):
  return json.loads(str(fixture()[f'{case}/config']))


def network(config, **overrides):
  """Our network for an official constructor's arguments."""
  args = dict(config['args'])
  if config['kind'] == 'unet':
    kwargs = dict(out_channels=args['output_nc'], num_downs=args['num_downs'], ngf=args['ngf'],
                  norm=args['norm'], use_dropout=args['use_dropout'])
    return pp.UNetGenerator(**{**kwargs, **overrides})
  if config['kind'] == 'patch':
    kwargs = dict(ndf=args['ndf'], n_layers=args['n_layers'], norm=args['norm'])
    return pp.PatchDiscriminator(**{**kwargs, **overrides})
  kwargs = dict(out_channels=args['output_nc'], ngf=args['ngf'], n_blocks=args['n_blocks'],
                norm=args['norm'], use_dropout=args['use_dropout'],
                padding_type=args['padding_type'])
  return rg.ResnetGenerator(**{**kwargs, **overrides})


def prefixed(prefix):
  return {k[len(prefix):]: v for k, v in fixture().items() if k.startswith(prefix)}


def param_count(net, in_channels):
  shapes = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False),
                          net.example_input(in_channels))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes['params']))


# ------------------------------------------------------------------------------------------------
# Parameter counts.

# The official define_G / define_D names → our network and its input channels.
FULL_SIZE = {
    'unet_256_batch': (pp.UNetGenerator(num_downs=pp.UNET_PRESETS['unet_256']), 3),
    'unet_256_instance': (pp.UNetGenerator(num_downs=8, norm='instance'), 3),
    'unet_256_none': (pp.UNetGenerator(num_downs=8, norm='none'), 3),
    'unet_128_batch': (pp.UNetGenerator(num_downs=pp.UNET_PRESETS['unet_128']), 3),
    'patch_6ch_batch': (pp.PatchDiscriminator(), 6),
    'patch_3ch_batch': (pp.PatchDiscriminator(), 3),
    'patch_3ch_instance': (pp.PatchDiscriminator(norm='instance'), 3),
    'resnet_9blocks_instance': (rg.ResnetGenerator(n_blocks=rg.RESNET_PRESETS['resnet_9blocks']),
                                3),
    'resnet_6blocks_instance': (rg.ResnetGenerator(n_blocks=rg.RESNET_PRESETS['resnet_6blocks']),
                                3),
    'resnet_9blocks_batch': (rg.ResnetGenerator(norm='batch'), 3),
}


def test_parameter_counts_equal_the_official():
  names = [str(n) for n in fixture()['count_names']]
  official = dict(zip(names, fixture()['official_param_counts'].tolist()))
  assert set(names) == set(FULL_SIZE)
  # The published figures, as torch counted them from the official modules.
  assert official['unet_256_batch'] == 54_413_955
  assert official['patch_6ch_batch'] == 2_768_705          # pix2pix's D: input ‖ output
  assert official['patch_3ch_instance'] == 2_764_737       # CycleGAN's D
  assert official['resnet_9blocks_instance'] == 11_378_179
  for name, (net, in_channels) in FULL_SIZE.items():
    assert param_count(net, in_channels) == official[name], name


def test_batch_stats_only_for_batch_norm():
  for norm, has_stats in (('batch', True), ('instance', False), ('none', False)):
    net = pp.UNetGenerator(num_downs=5, ngf=2, norm=norm)
    shapes = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False),
                            net.example_input(3))
    assert ('batch_stats' in shapes) == has_stats
    # The official bias rule: convs followed by a norm have a bias only with instance norm.
    assert ('bias' in shapes['params']['down1_conv']) == (norm == 'instance')
    assert 'bias' in shapes['params']['up0_conv']


# ------------------------------------------------------------------------------------------------
# Outputs of the official networks.


@functools.lru_cache(maxsize=None)
def forward(net):
  """One compiled function: eval output, and for batch norm the train output and updated stats."""
  def run(variables, x):
    y_eval = net.apply(variables, x, train=False)
    if 'batch_stats' not in variables:
      return y_eval, None, None
    y_train, updates = net.apply(variables, x, train=True, mutable=['batch_stats'])
    return y_eval, y_train, updates['batch_stats']
  return jax.jit(run)


@pytest.mark.parametrize('case', CASES)
def test_matches_official(case):
  config = case_config(case)
  net = network(config)
  state = prefixed(f'{case}/state/')
  variables = pp.params_from_official(state, net)
  x = fixture()[f'{case}/x'].astype(np.float32)
  y_eval, y_train, stats = forward(net)(variables, x)

  want = fixture()[f'{case}/y_eval']
  assert y_eval.shape == want.shape and y_eval.dtype == jnp.float32
  np.testing.assert_allclose(y_eval, want, rtol=0, atol=ATOL)
  assert np.abs(want).max() > 0.05  # the case is not degenerate
  if config['args']['norm'] != 'batch':
    assert y_train is None and f'{case}/y_train' not in fixture()
    return
  np.testing.assert_allclose(y_train, fixture()[f'{case}/y_train'], rtol=0, atol=ATOL)
  # The running statistics after one train-mode pass: torch's update, unbiased variance.
  after = pp.params_from_official({**state, **prefixed(f'{case}/stats_after/')}, net)
  before = variables['batch_stats']
  for got, expected, old in zip(jax.tree.leaves(stats), jax.tree.leaves(after['batch_stats']),
                                jax.tree.leaves(before)):
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert np.abs(expected - old).max() > 1e-3


def test_resnet_generator_output_size_as_official():
  # Two stride-2 convs give ⌈⌈H/2⌉/2⌉, the transposed convs double it twice: 18 → 5 → 20.
  net = rg.ResnetGenerator(ngf=2, n_blocks=1)
  x = jax.ShapeDtypeStruct((1, 18, 16, 1), jnp.float32)
  y = jax.eval_shape(lambda x: net.init_with_output(jax.random.key(0), x, train=False)[0], x)
  assert y.shape == (1, 20, 16, 3)
  d = pp.PatchDiscriminator()
  logits = jax.eval_shape(
      lambda x: d.init_with_output(jax.random.key(0), x, train=False)[0],
      jax.ShapeDtypeStruct((1, 256, 256, 6), jnp.float32))
  assert logits.shape == (1, 30, 30, 1)


# ------------------------------------------------------------------------------------------------
# params_from_official: what it accepts and refuses.


def test_params_from_official_names_and_layouts():
  state = prefixed('unet_batch/state/')
  net = network(case_config('unet_batch'))
  variables = pp.params_from_official(state, net)
  # Conv OIHW → HWIO; transposed conv [in, out, k, k] → [k, k, in, out] (not flipped).
  np.testing.assert_array_equal(variables['params']['down0_conv']['kernel'],
                                state['model.model.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['params']['up1_conv']['kernel'],
                                state['model.model.1.model.5.weight'].transpose(2, 3, 0, 1))
  np.testing.assert_array_equal(variables['batch_stats']['up4_norm']['var'],
                                state['model.model.1.model.3.model.3.model.3.model.4.running_var'])
  # A DataParallel 'module.' prefix is dropped.
  wrapped = pp.params_from_official({'module.' + k: v for k, v in state.items()}, net)
  assert jax.tree.all(jax.tree.map(np.array_equal, wrapped, variables))


def test_params_from_official_ignores_old_instance_norm_buffers():
  # Old official checkpoints carry running statistics for InstanceNorm layers; the official
  # loader deletes them, and so does the conversion.
  state = prefixed('resnet_instance/state/')
  net = network(case_config('resnet_instance'))
  old = {**state, 'model.2.running_mean': np.zeros(4), 'model.2.running_var': np.ones(4),
         'model.2.num_batches_tracked': np.array(5)}
  assert jax.tree.all(jax.tree.map(np.array_equal, pp.params_from_official(old, net),
                                   pp.params_from_official(state, net)))


def test_params_from_official_refuses_other_architectures():
  state = prefixed('unet_batch/state/')
  config = case_config('unet_batch')
  with pytest.raises(UserError, match='model.model.0.weight'):
    pp.params_from_official({k: v for k, v in state.items() if k != 'model.model.0.weight'},
                            network(config))
  with pytest.raises(UserError, match='no place for'):
    pp.params_from_official({**state, 'model.extra.weight': np.zeros(3)}, network(config))
  with pytest.raises(UserError, match='no place for|bias'):         # batch-norm weights
    pp.params_from_official(state, network(config, norm='instance'))
  with pytest.raises(UserError, match='shape'):                      # ngf 4 weights, ngf 8 net
    pp.params_from_official(state, network(config, ngf=8))
  with pytest.raises(UserError):                                     # 5 levels, not 6
    pp.params_from_official(state, network(config, num_downs=6))
  # With dropout the official ResnetBlock's second conv moves one index down.
  resnet_state = prefixed('resnet_instance/state/')
  with pytest.raises(UserError):
    pp.params_from_official(resnet_state, network(case_config('resnet_instance'),
                                                  use_dropout=False))


# ------------------------------------------------------------------------------------------------
# Initialisation, dropout, receptive field, precision.


def test_initialisation_is_the_official_normal_0_02():
  # Few layers (each parameter's normal draw costs compile time): a one-layer PatchGAN (conv0,
  # conv1 + batch norm, conv2) and one transposed conv, initialised by one compiled `init`.
  d, deconv = pp.PatchDiscriminator(ndf=64, n_layers=1), pp.ConvTranspose2d(64, 4, 2, 1)
  init = lambda key: (d.init(key, jnp.zeros((1, 6, 6, 3)), train=False),
                      deconv.init(jax.random.fold_in(key, 1), jnp.zeros((1, 1, 1, 64))))
  d_vars, deconv_vars = jax.jit(init)(jax.random.key(3))
  layers = list(d_vars['params'].values())
  kernels = np.concatenate([np.ravel(p['kernel']) for p in layers if 'kernel' in p])
  scales = np.concatenate([np.ravel(p['scale']) for p in layers if 'scale' in p])
  deconv_kernel = np.ravel(deconv_vars['params']['kernel'])
  # The standard error of a sample std is std/√(2N): 0.19% for the N = 136k conv kernel entries,
  # 0.28% for the 65k transposed-conv ones, 6.3% for the 128 batch-norm scales; of a mean,
  # 0.02/√N: 5e-5, 8e-5, 0.0018. The bounds are ≥ 5 standard errors wide (the scales' std
  # still tells N(1, 0.02²) from a constant 1 or another spread).
  assert kernels.size == 136_192 and deconv_kernel.size == 65_536 and scales.size == 128
  assert abs(kernels.mean()) < 3e-4 and abs(kernels.std() / pp.INIT_STD - 1) < 0.01
  assert abs(deconv_kernel.mean()) < 4e-4 and abs(deconv_kernel.std() / pp.INIT_STD - 1) < 0.015
  assert abs(scales.mean() - 1) < 0.009 and abs(scales.std() / pp.INIT_STD - 1) < 0.32
  for p in [*layers, deconv_vars['params']]:
    if 'bias' in p:  # conv biases and batch-norm shifts
      np.testing.assert_array_equal(p['bias'], 0)
  for s in d_vars['batch_stats'].values():
    np.testing.assert_array_equal(s['mean'], 0)
    np.testing.assert_array_equal(s['var'], 1)


def random_variables(net, x, seed):
  """Variables of `net` for input x drawn with numpy (no compiled init): N(0, 0.2²) each."""
  shapes = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False), x)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes)


def test_dropout_only_in_training():
  # The U-Net drops half its units at level 4 (of 6), the ResNet in its block.
  unet = pp.UNetGenerator(out_channels=2, num_downs=6, ngf=4, norm='instance', use_dropout=True)
  resnet = rg.ResnetGenerator(ngf=4, n_blocks=1, use_dropout=True)
  x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
  x_small = x[:, :16, :16]
  v_unet, v_resnet = random_variables(unet, x, 0), random_variables(resnet, x_small, 1)
  assert 'up4_dropout' not in v_unet['params']  # dropout has no variables

  @jax.jit
  def two_masks(v_unet, v_resnet, keys):
    unet_train = lambda key: unet.apply(v_unet, x, train=True, rngs={'dropout': key})
    resnet_train = lambda key: resnet.apply(v_resnet, x_small, train=True, rngs={'dropout': key})
    return jax.vmap(unet_train)(keys), jax.vmap(resnet_train)(keys)

  keys = jax.random.wrap_key_data(np.array([[0, 5], [0, 6]], np.uint32))
  for a, b in two_masks(v_unet, v_resnet, keys):
    assert np.abs(a - b).max() > 1e-2  # another dropout rng, another output
  with pytest.raises(Exception, match='dropout'):  # train=True needs the 'dropout' rng
    jax.eval_shape(lambda v: unet.apply(v, x, train=True), v_unet)
  # In eval mode dropout is the identity: the same computation as without it, step by step.
  for net, v, inp in ((unet, v_unet, x), (resnet, v_resnet, x_small)):
    traced = lambda net: str(jax.make_jaxpr(lambda v: net.apply(v, inp, train=False))(v))
    assert traced(net) == traced(net.clone(use_dropout=False))
  # Without dropout, training needs no rng; with instance norm it is then the same as eval.
  plain = unet.clone(use_dropout=False)
  assert (str(jax.make_jaxpr(lambda v: plain.apply(v, x, train=True))(v_unet))
          == str(jax.make_jaxpr(lambda v: plain.apply(v, x, train=False))(v_unet)))


def test_patchgan_receptive_field_is_70():
  assert [pp.receptive_field(n) for n in (1, 2, 3, 4, 5)] == [16, 34, 70, 142, 286]
  # The input pixels one logit depends on, with the official 3-layer PatchGAN's weights: the
  # gradient's support is a 70×70 square.
  d = network(case_config('patch_batch'))
  variables = pp.params_from_official(prefixed('patch_batch/state/'), d)
  x = np.random.default_rng(0).standard_normal((1, 96, 96, 6)).astype(np.float32)
  grad = jax.jit(jax.grad(lambda x: d.apply(variables, x, train=False)[0, 5, 5, 0]))(x)
  rows, cols = np.nonzero(np.abs(np.asarray(grad[0])).max(-1) > 0)
  assert rows.min() > 0 and cols.min() > 0 and rows.max() < 95 and cols.max() < 95
  assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_bfloat16_compute():
  net = network(case_config('patch_instance'), dtype=jnp.bfloat16)
  variables = pp.params_from_official(prefixed('patch_instance/state/'), net)
  y = jax.jit(lambda v, x: net.apply(v, x, train=False))(
      variables, fixture()['patch_instance/x'].astype(np.float32))
  assert y.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  # bfloat16 keeps 8 significant bits (relative rounding 2⁻⁹ per op); through 4 convs and 2
  # norms the logits (|y| ≤ 0.25) stay within 0.02 (observed 0.003).
  np.testing.assert_allclose(y, fixture()['patch_instance/y_eval'], rtol=0, atol=2e-2)


# ------------------------------------------------------------------------------------------------
# One-line errors.


def _trace(net, shape):
  return jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False),
                        jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize('net, shape, message', [
    (pp.UNetGenerator(num_downs=5), (1, 48, 48, 3), 'multiples of 32'),
    (pp.UNetGenerator(num_downs=4), (1, 32, 32, 3), 'at least 5 levels'),
    (pp.UNetGenerator(norm='group'), (1, 256, 256, 3), 'norm'),
    (pp.UNetGenerator(), (256, 256, 3), 'NHWC'),
    (pp.PatchDiscriminator(), (1, 20, 64, 6), 'at least 24×24'),
    (rg.ResnetGenerator(), (1, 4, 16, 3), 'at least 5×5'),
    (rg.ResnetGenerator(padding_type='circular'), (1, 16, 16, 3), 'padding_type'),
])
def test_bad_configurations_are_one_line_errors(net, shape, message):
  with pytest.raises(UserError, match=message) as info:
    _trace(net, shape)
  assert '\n' not in str(info.value)


def test_batch_norm_training_needs_two_values_per_channel():
  with pytest.raises(UserError, match='more than one value'):
    jax.eval_shape(lambda x: pp.BatchNorm().init(jax.random.key(0), x, train=True),
                   jax.ShapeDtypeStruct((1, 1, 1, 4), jnp.float32))
