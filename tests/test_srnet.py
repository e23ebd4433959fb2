"""SRResNet, RRDBNet and the VGG-style discriminator (jaxgen/models/srnet.py) held against the
official BasicSR / ESRGAN code: outputs of small official networks on shared weights, the
discriminator's batch norm in train mode, parameter counts of the published networks, the
official initialisation's statistics, ESRGAN's two older naming schemes, PyTorch's pixel
shuffle and bilinear up-sampling (tests/data/srnet.npz, README_srnet.md), and the one-line
errors.

Full-size networks are only traced (`jax.eval_shape`); everything run is tiny.
"""

import functools
import json
import math
import os

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.models import srnet

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'srnet.npz')
NETWORKS = {'msrresnet': srnet.SRResNet, 'rrdbnet': srnet.RRDBNet,
            'disc': srnet.VGGStyleDiscriminator}
VARIANTS = {'msrresnet_x2': 'msrresnet', 'msrresnet_x3': 'msrresnet', 'msrresnet_x4': 'msrresnet',
            'rrdb_x4': 'rrdbnet', 'rrdb_x2': 'rrdbnet', 'disc': 'disc'}


@functools.lru_cache(maxsize=None)
def fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


def prefixed(prefix):
  return {k[len(prefix):]: v for k, v in fixture().items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=None)
def variant_net(name):
  config = json.loads(str(fixture()[f'{name}/config']))
  return NETWORKS[VARIANTS[name]](**config)


def variant_input(name):
  # The official run divided the uint8 images by 255 in float32, as here.
  return fixture()[f'{name}/x'].astype(np.float32) / np.float32(255)


@functools.lru_cache(maxsize=None)
def apply_fn(net, train=False):
  if train:
    return jax.jit(functools.partial(net.apply, train=True, mutable=['batch_stats']))
  return jax.jit(net.apply)


def assert_close_per_image(got, want, rel):
  """|got − want| ≤ rel · (want's largest magnitude in the same image), everywhere; for logits
  [N, 1], the largest in the batch (a logit near 0 is a sum of terms of ordinary size, whose
  rounding errors do not shrink with it)."""
  want = np.asarray(want)
  if want.ndim == 2:
    scale = np.abs(want).max()
  else:
    scale = np.abs(want).max(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_array_less(np.abs(np.asarray(got) - want),
                               np.broadcast_to(rel * scale, want.shape))


# The resampling functions compiled once per shape (run eagerly, each of their few ops would
# compile on its own).
pixel_shuffle = jax.jit(srnet.pixel_shuffle, static_argnums=1)
pixel_unshuffle = jax.jit(srnet.pixel_unshuffle, static_argnums=1)
upsample_bilinear = jax.jit(srnet.upsample_bilinear, static_argnums=1)


def num_params(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Resampling: PyTorch's pixel shuffle channel order and bilinear interpolation.


@pytest.mark.parametrize('r', [2, 3])
def test_pixel_shuffle_is_torch_channel_order(r):
  rng = np.random.default_rng(r)
  n, h, w, c = 2, 3, 4, 5
  x = rng.normal(size=(n, h, w, c * r * r)).astype(np.float32)
  y = np.asarray(pixel_shuffle(x, r))
  assert y.shape == (n, h * r, w * r, c)
  # PyTorch (NCHW): out[n, c, r·h + i, r·w + j] = in[n, c·r² + i·r + j, h, w], index by index.
  want = np.zeros_like(y)
  for hh in range(h * r):
    for ww in range(w * r):
      for ch in range(c):
        want[:, hh, ww, ch] = x[:, hh // r, ww // r, ch * r * r + (hh % r) * r + ww % r]
  np.testing.assert_array_equal(y, want)
  np.testing.assert_array_equal(pixel_unshuffle(y, r), x)
  # And torch.nn.PixelShuffle's own output (an arange, so every element is distinct).
  torch_x = fixture()['pixel_shuffle/x']
  np.testing.assert_array_equal(pixel_shuffle(torch_x, r), fixture()[f'pixel_shuffle/y{r}'])


@pytest.mark.parametrize('r', [2, 4])
def test_pixel_unshuffle_matches_basicsr(r):
  y = pixel_unshuffle(fixture()['pixel_unshuffle/x'], r)
  np.testing.assert_array_equal(y, fixture()[f'pixel_unshuffle/y{r}'])


@pytest.mark.parametrize('r', [2, 3, 4])
def test_bilinear_matches_torch_interpolate(r):
  y = upsample_bilinear(fixture()['bilinear/x'], r)
  # Two-tap lerps in float32 (weights computed as PyTorch does), one rounding apart: ≤ 2 ulp of
  # values ≤ 3.
  np.testing.assert_allclose(y, fixture()[f'bilinear/y{r}'], rtol=0, atol=1e-6)


def test_nearest_repeats_pixels():
  x = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)
  y = np.asarray(jax.jit(srnet.upsample_nearest, static_argnums=1)(x, 2))
  np.testing.assert_array_equal(y[:, 1::2, ::2], x)
  np.testing.assert_array_equal(y[:, ::2, 1::2], x)


# ------------------------------------------------------------------------------------------------
# Outputs of the official networks on shared weights.


@pytest.mark.parametrize('name', list(VARIANTS))
def test_outputs_match_official(name):
  net = variant_net(name)
  variables = srnet.params_from_official(prefixed(f'{name}/state/'), net)
  y = apply_fn(net)(variables, variant_input(name))
  # float32 on both sides with the same weights (exact float16 values) and inputs; the sums run
  # in different orders through up to 40 convolutions: the errors seen are ≤ 1e-6 of each
  # image's largest value (of the largest logit). 1e-5 leaves margin, while a wrong layer,
  # channel order, padding or interpolation errs by more than 1e-3 of it.
  assert_close_per_image(y, fixture()[f'{name}/y'], 1e-5)


def test_generators_take_and_ignore_train():
  """SRResNet and RRDBNet are called as every generator is, G(x, train); with neither batch
  norm nor dropout, train changes nothing: the traced programs are the same (traced only)."""
  for name in ('msrresnet_x4', 'rrdb_x4'):
    net = variant_net(name)
    variables = srnet.params_from_official(prefixed(f'{name}/state/'), net)
    trace = lambda **kw: str(jax.make_jaxpr(functools.partial(net.apply, **kw))(
        variables, variant_input(name)))
    assert trace(train=True) == trace(train=False) == trace()


def test_discriminator_train_mode_matches_official():
  """PyTorch's train mode: batch statistics (biased variance) for the output; running
  statistics updated with momentum 0.1 and the unbiased variance."""
  net = variant_net('disc')
  variables = srnet.params_from_official(prefixed('disc/state/'), net)
  y, updates = apply_fn(net, train=True)(variables, variant_input('disc'))
  # Normalising by statistics of the batch itself adds rounding: the errors seen are ≤ 2e-6 of
  # the largest logit; normalising by the unbiased variance instead errs by > 1e-3 of it.
  assert_close_per_image(y, fixture()['disc/y_train'], 1e-5)
  stats = updates['batch_stats']
  for name, value in prefixed('disc/train_state/').items():
    module, field = name.split('.')
    got = stats[module][{'running_mean': 'mean', 'running_var': 'var'}[field]]
    # Means and variances of O(1) activations over 2·h·w values, summed in another order.
    np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6, err_msg=name)
  # The variables given are left as they were (the new statistics are returned, not stored).
  assert_close_per_image(apply_fn(net)(variables, variant_input('disc')), fixture()['disc/y'],
                         1e-5)


# ------------------------------------------------------------------------------------------------
# ESRGAN's own state-dict names.


def test_esrgan_names_load_as_basicsr():
  """xinntao/ESRGAN's RRDBNet_arch names (RRDB_ESRGAN_x4.pth): the fixture's script loaded the
  BasicSR weights into the official ESRGAN network position by position and checked it computes
  the same; so the same weights under ESRGAN's names must give the BasicSR output."""
  basicsr_state = prefixed('rrdb_x4/state/')
  names = dict(zip(fixture()['names/basicsr'], fixture()['names/xinntao']))
  esrgan_state = {names[k]: v for k, v in basicsr_state.items()}
  assert 'RRDB_trunk.1.RDB3.conv5.weight' in esrgan_state and 'HRconv.bias' in esrgan_state
  net = variant_net('rrdb_x4')
  variables = srnet.params_from_official(esrgan_state, net)
  y = apply_fn(net)(variables, variant_input('rrdb_x4'))
  assert_close_per_image(y, fixture()['rrdb_x4/y'], 1e-5)  # as test_outputs_match_official


def test_legacy_esrgan_names_load_as_basicsr():
  """ESRGAN's first release ('model.0', 'model.1.sub.N.RDBk.convj.0', …, 'model.10'): matched
  position by position against BasicSR's in the fixture's script (same function, checked there
  in torch); each tensor must land where its BasicSR counterpart does."""
  shapes = json.loads(str(fixture()['names/shapes_gc32']))
  rng = np.random.default_rng(0)
  values = {k: rng.normal(size=shape).astype(np.float32) for k, shape in shapes.items()}
  legacy = dict(zip(fixture()['names/basicsr_gc32'], fixture()['names/legacy']))
  net = srnet.RRDBNet(num_feat=8, num_block=2, num_grow_ch=32)
  want = srnet.params_from_official(values, net)
  got = srnet.params_from_official({legacy[k]: v for k, v in values.items()}, net)
  assert 'model.1.sub.2.weight' in legacy.values()  # the trunk's conv: sub.<num_block>
  jax.tree.map(np.testing.assert_array_equal, got, want)
  wrapped = srnet.params_from_official({f'module.{legacy[k]}': v for k, v in values.items()}, net)
  jax.tree.map(np.testing.assert_array_equal, wrapped, want)


def test_basicsr_checkpoint_layout():
  """BasicSR saves {'params': …, 'params_ema': …}, sometimes under DataParallel's 'module.'."""
  net = variant_net('msrresnet_x2')
  state = prefixed('msrresnet_x2/state/')
  plain = srnet.params_from_official(state, net)
  other = {k: np.zeros_like(v) for k, v in state.items()}
  ema = srnet.params_from_official({'params': other, 'params_ema': state}, net)
  jax.tree.map(np.testing.assert_array_equal, ema, plain)
  chosen = srnet.params_from_official({'params': state, 'params_ema': other}, net,
                                      param_key='params')
  jax.tree.map(np.testing.assert_array_equal, chosen, plain)
  module = srnet.params_from_official({f'module.{k}': v for k, v in state.items()}, net)
  jax.tree.map(np.testing.assert_array_equal, module, plain)
  with pytest.raises(UserError, match="no state dict under 'params_ema'"):
    srnet.params_from_official({'params': state}, net, param_key='params_ema')


# ------------------------------------------------------------------------------------------------
# Parameter counts of the published networks (`sum(p.numel() for p in net.parameters())` of the
# official modules, recorded in the fixture).


@pytest.mark.parametrize('name, network, expected', [
    ('msrresnet_x4', srnet.SRResNet(upscale=4), 1_517_571),
    ('msrresnet_x3', srnet.SRResNet(upscale=3), 1_554_499),
    ('msrresnet_x2', srnet.SRResNet(upscale=2), 1_369_859),
    ('rrdbnet_x4', srnet.RRDBNet(), 16_697_987),  # ESRGAN
    ('disc128', srnet.VGGStyleDiscriminator(), 14_499_401),
    ('disc256', srnet.VGGStyleDiscriminator(input_size=256), 21_055_049),
])
def test_param_counts_equal_official(name, network, expected):
  official = dict(zip(fixture()['count_names'], fixture()['official_param_counts']))
  assert official[name] == expected
  if name == 'rrdbnet_x4':  # xinntao/ESRGAN's own RRDBNet: the same network
    assert official['esrgan_xinntao_x4'] == expected
  shapes = jax.eval_shape(lambda: srnet.init_variables(network, jax.random.key(0)))
  assert num_params(shapes['params']) == expected
  # BatchNorm's running mean and variance are buffers, not parameters, as officially.
  widths = {'disc128': (1, 2, 2, 4, 4, 8, 8, 8, 8), 'disc256': (1, 2, 2, 4, 4, 8, 8, 8, 8, 8, 8)}
  bn_channels = sum(64 * w for w in widths.get(name, ()))
  assert num_params(shapes.get('batch_stats', {})) == 2 * bn_channels


def test_rrdbnet_scale_2_and_1_param_counts_equal_official():
  """Real-ESRGAN's ×2 (16,703,171) and ×1 (16,723,907): BasicSR's RRDBNet with the input
  pixel-unshuffled, so only conv_first differs from ×4 (12 and 48 input channels). The
  difference is counted on one-block networks (the 23-block trunk is traced once, above)."""
  official = dict(zip(fixture()['count_names'], fixture()['official_param_counts']))
  assert (official['rrdbnet_x2'], official['rrdbnet_x1']) == (16_703_171, 16_723_907)
  count = lambda scale: num_params(jax.eval_shape(
      lambda: srnet.init_variables(srnet.RRDBNet(scale=scale, num_block=1), jax.random.key(0))))
  x4 = count(4)
  assert count(2) - x4 == official['rrdbnet_x2'] - official['rrdbnet_x4'] == 9 * 64 * (12 - 3)
  assert count(1) - x4 == official['rrdbnet_x1'] - official['rrdbnet_x4'] == 9 * 64 * (48 - 3)


# ------------------------------------------------------------------------------------------------
# Initialisation: BasicSR's default_init_weights(…, 0.1) (Kaiming normal × 0.1, zero bias) and
# PyTorch's defaults (uniform), tensor by tensor, against a fresh official network's statistics.


def _stats(v):
  v = np.asarray(v, np.float64).ravel()
  mean, std = v.mean(), v.std()
  kurtosis = np.mean(((v - mean) / std) ** 4) - 3 if std > 0 else 0.0
  return mean, std, kurtosis


def _official_init_stats(kind):
  names, stats = fixture()[f'init/{kind}/names'], fixture()[f'init/{kind}/stats']
  return {str(k): v for k, v in zip(names, stats)}


def _assert_init_like_official(variables, official, prefix=''):
  """Every parameter of `variables` against the statistics of the official tensor named
  prefix + its BasicSR name."""
  leaves = jax.tree_util.tree_leaves_with_path(variables['params'])
  assert leaves
  for path, value in leaves:
    name = prefix + srnet._official_name(('params',) + tuple(k.key for k in path))
    mean, std, kurtosis, n = official[name]
    assert value.size == n, name
    got_mean, got_std, got_kurtosis = _stats(value)
    if n == 1:  # linear2's one bias: U(±0.1), no spread to compare
      assert abs(got_mean) <= 0.1, name
    elif std == 0:  # zero biases, BatchNorm scale 1 and shift 0: exactly
      assert got_std == 0 and got_mean == mean, name
    else:
      # Two independent samples of n values: their std's differ by ~√(1/n) relatively, their
      # means by ~std·√(2/n), their excess kurtoses (normal 0, uniform −1.2) by ~√(48/n). Six
      # standard errors: a wrong scale (the 0.1, the gain √2, k² in fan_in) or distribution
      # still fails.
      assert abs(got_std / std - 1) < 6 / math.sqrt(n), (name, got_std, std)
      assert abs(got_mean - mean) < 6 * std * math.sqrt(2 / n), (name, got_mean, mean)
      if n >= 10_000:
        assert abs(got_kurtosis - kurtosis) < 0.5, (name, got_kurtosis, kurtosis)


def _mix(x):
  """lowbias32 (C. Wellons): a bijective uint32 hash with full avalanche."""
  x = (x ^ (x >> 16)) * jnp.uint32(0x7feb352d)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846ca68b)
  return x ^ (x >> 16)


_GOLDEN = 0x9e3779b9


def _hash_split(key, shape):
  counters = jax.lax.iota(jnp.uint32, math.prod(shape)) + jnp.uint32(1)
  return _mix(key[0] + jnp.uint32(_GOLDEN) * counters).reshape(*shape, 1)


def _hash_bits(key, bit_width, shape):
  bits = _mix(_mix(jax.lax.iota(jnp.uint32, math.prod(shape)) ^ key[0]) + key[0])
  return bits.astype({8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bit_width]).reshape(shape)


# A counter-based hash PRNG for the initialisation tests. Threefry's programs take ~0.15 s each
# to compile per parameter tensor (10 s for these tests); hashed counters are a few integer ops,
# 3× cheaper, and random enough for means, deviations and kurtoses of thousands of values. The
# initialisers under test turn the bits into distributions exactly as with any other key.
HASH_PRNG = jax.extend.random.define_prng_impl(
    key_shape=(1,), split=_hash_split, random_bits=_hash_bits,
    seed=lambda s: _mix(jnp.asarray(s, jnp.uint32) ^ jnp.uint32(_GOLDEN)).reshape(1),
    fold_in=lambda key, data: _mix(key ^ _mix(jnp.asarray(data, jnp.uint32))), name='hash32')


def _init(module, *inputs):
  return jax.jit(lambda k: module.init(k, *inputs))(jax.random.key(3, impl=HASH_PRNG))


def test_srresnet_init_matches_official_statistics():
  """BasicSR's default_init_weights(…, 0.1) everywhere: N(0, 2/fan_in)·0.1, zero biases."""
  net = srnet.SRResNet(**json.loads(str(fixture()['init/msrresnet/config'])))
  variables = _init(net, np.zeros((1, 4, 4, 3), np.float32))
  _assert_init_like_official(variables, _official_init_stats('msrresnet'))


def test_rrdbnet_init_matches_official_statistics():
  """Dense blocks: default_init_weights(…, 0.1); the other convs: PyTorch's default. The
  official network has one RRDB (three dense blocks alike); here one dense block and the
  network around an empty trunk, the same layers at a third of the compile time."""
  config = json.loads(str(fixture()['init/rrdbnet/config']))
  official = _official_init_stats('rrdbnet')
  x = np.zeros((1, 4, 4, config['num_feat']), np.float32)
  rdb = srnet.ResidualDenseBlock(config['num_feat'], config['num_grow_ch'])
  _assert_init_like_official(_init(rdb, x), official, prefix='body.0.rdb2.')
  outer = srnet.RRDBNet(**{**config, 'num_block': 0})
  variables = _init(outer, np.zeros((1, 4, 4, 3), np.float32))
  assert len(jax.tree.leaves(variables)) == 12
  _assert_init_like_official(variables, official)


def test_discriminator_init_matches_official_statistics():
  """PyTorch's defaults: convs and linears U(±1/√fan_in), BatchNorm scale 1, shift 0, running
  mean 0, variance 1."""
  net = srnet.VGGStyleDiscriminator(**json.loads(str(fixture()['init/disc/config'])))
  variables = _init(net, np.zeros((1, 128, 128, 3), np.float32))
  _assert_init_like_official(variables, _official_init_stats('disc'))
  stats = variables['batch_stats']
  assert all(np.all(s['mean'] == 0) and np.all(s['var'] == 1) for s in stats.values())


# ------------------------------------------------------------------------------------------------
# One-line errors.


def test_unsupported_configurations_are_user_errors():
  x = np.zeros((1, 8, 8, 3), np.float32)
  with pytest.raises(UserError, match='upscale=8 is not supported'):
    srnet.SRResNet(upscale=8).init(jax.random.key(0), x)
  with pytest.raises(UserError, match='scale=3 is not supported'):
    srnet.RRDBNet(scale=3).init(jax.random.key(0), x)
  with pytest.raises(UserError, match=r'expected images \[N, H, W, 3\]'):
    srnet.SRResNet().init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  with pytest.raises(UserError, match='does not split into 4×4 blocks'):
    srnet.RRDBNet(scale=1, num_block=1).init(jax.random.key(0), np.zeros((1, 6, 8, 3)))
  with pytest.raises(UserError, match='takes 128×128'):
    srnet.VGGStyleDiscriminator().init(jax.random.key(0), np.zeros((1, 96, 96, 3)))
  with pytest.raises(UserError, match='input_size=64 is not supported'):
    srnet.VGGStyleDiscriminator(input_size=64).init(jax.random.key(0), np.zeros((1, 64, 64, 3)))


def test_mismatched_weights_are_user_errors():
  state = prefixed('msrresnet_x2/state/')
  with pytest.raises(UserError, match=r"'upconv1.(weight|bias)' has shape .* architecture differs"):
    srnet.params_from_official(state, variant_net('msrresnet_x3'))
  with pytest.raises(UserError, match=r"no tensor 'body.1.conv2.weight' \(for params/body_1/"):
    srnet.params_from_official({k: v for k, v in state.items() if k != 'body.1.conv2.weight'},
                               variant_net('msrresnet_x2'))
  with pytest.raises(UserError, match="unexpected tensor 'body.2.conv1.weight'"):
    srnet.params_from_official({**state, 'body.2.conv1.weight': state['body.1.conv1.weight']},
                               variant_net('msrresnet_x2'))
  with pytest.raises(UserError, match='unexpected tensor'):  # MSRResNet weights, RRDBNet
    srnet.params_from_official(state, srnet.RRDBNet(num_feat=8, num_block=2))
