"""EDM's SongUNet and EDM/VP/VE preconditioning (jaxgen/models/songunet.py, precond.py) held
against NVlabs edm's own code: parameter counts of the published networks, outputs of small
official networks (tests/data/edm_songunet.npz, README_edm_songunet.md), the official
initialisation's statistics, the preconditioning formulas of EDM's Table 1, bf16, dropout,
and the one-line errors for architectures the official network cannot run.

Full-size networks are only traced (`jax.eval_shape`); everything run is tiny.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.models import precond as pc
from jaxgen.models import songunet as su

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'edm_songunet.npz')


@functools.lru_cache(maxsize=None)
def fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


VARIANTS = ('ddpmpp_edm', 'ncsnpp_ve', 'skip_vp')


def variant_net(name, dtype=jnp.float32, **overrides):
  """The Precond + SongUNet of a fixture variant, built from its recorded official config."""
  cfg = json.loads(str(fixture()[f'{name}/config']))
  model = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg['model'].items()}
  model.update(overrides)
  return pc.Precond(kind=cfg['kind'], model=su.SongUNet(
      img_resolution=16, in_channels=3, out_channels=3,
      label_dim=cfg['precond'].get('label_dim', 0), dtype=dtype, **model))


def official_state(name):
  prefix = f'{name}/state/'
  return {k[len(prefix):]: v for k, v in fixture().items() if k.startswith(prefix)}


def variant_inputs(name):
  get = lambda key: fixture().get(f'{name}/{key}')
  return get('x'), get('sigma'), get('class_labels'), get('augment_labels')


@functools.lru_cache(maxsize=None)
def apply_fn(net):
  return jax.jit(net.apply, static_argnames='train')


def assert_close_per_image(got, want, rel):
  """|got − want| ≤ rel · (want's largest magnitude in the same image), everywhere."""
  scale = np.abs(want).max(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_array_less(np.abs(np.asarray(got) - want), np.broadcast_to(rel * scale,
                                                                               want.shape))


def num_params(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Parameter counts of EDM's published SongUNets (EDMPrecond, all trainable parameters), equal to
# the official networks' (`sum(p.numel() for p in net.parameters())`, recorded in the fixture).

CIFAR = dict(img_resolution=32, model_channels=128, channel_mult=(2, 2, 2), dropout=0.13)
DDPMPP = dict(embedding_type='positional', encoder_type='standard', decoder_type='standard',
              channel_mult_noise=1, resample_filter=(1, 1))
NCSNPP = dict(embedding_type='fourier', encoder_type='residual', decoder_type='standard',
              channel_mult_noise=2, resample_filter=(1, 3, 3, 1))


@pytest.mark.parametrize('name, kwargs, expected', [
    ('ddpmpp32', dict(CIFAR, **DDPMPP), 55_732_739),
    ('ddpmpp32_cond10', dict(CIFAR, **DDPMPP, label_dim=10), 55_734_147),
    ('ncsnpp32', dict(CIFAR, **NCSNPP), 56_395_523),
    ('ddpmpp64', dict(CIFAR, **DDPMPP, img_resolution=64, channel_mult=(1, 2, 2, 2)), 61_804_419),
])
def test_param_counts_equal_official(name, kwargs, expected):
  official = dict(zip(fixture()['count_names'], fixture()['official_param_counts']))
  assert official[name] == expected
  net = pc.Precond(kind='edm', model=su.SongUNet(in_channels=3, out_channels=3, **kwargs))
  shapes = jax.eval_shape(lambda: su.init_songunet(net, jax.random.key(0)))
  assert num_params(shapes['params']) == expected
  # NCSN++'s Fourier frequencies are a buffer, as officially: 256 noise channels → 128.
  assert num_params(shapes.get(su.BUFFERS, {})) == (128 if 'ncsnpp' in name else 0)


# ------------------------------------------------------------------------------------------------
# Outputs of the official networks.


@pytest.mark.parametrize('name', VARIANTS)
def test_denoiser_matches_official(name):
  net = variant_net(name)
  # With `net`, every official tensor must map onto one of this network's, shape for shape.
  variables = su.params_from_official(official_state(name), net)
  x, sigma, labels, augment = variant_inputs(name)
  denoised = np.asarray(apply_fn(net)(variables, x, sigma, labels, augment))
  reference = fixture()[f'{name}/D']
  # float32 on both sides, summed in different orders through ~40 layers: the errors seen are
  # ≤ 5e-6 of each image's largest value (≤ 1e-4 absolute at VE/VP σ = 60–80, where D reaches
  # ~300); 2e-5 of it leaves margin while any wrong layer, filter or coefficient errs by > 1e-3.
  assert_close_per_image(denoised, reference, 2e-5)
  if f'{name}/D_nolabels' in fixture():
    # Officially D(x; σ) without labels: zero class labels and no augmentation. Here the same
    # compiled function with zeros for both (class_labels=None ≡ zeros is tested below).
    zeros = np.zeros_like
    denoised = apply_fn(net)(variables, x, sigma, zeros(labels), zeros(augment))
    assert_close_per_image(denoised, fixture()[f'{name}/D_nolabels'], 2e-5)


def conv_cases():
  return sorted({k.split('/')[1] for k in fixture() if k.startswith('conv/')})


@pytest.mark.parametrize('case', conv_cases())
def test_conv2d_resampling_matches_official(case):
  """Every up/down-sampling path of Conv2d (fused and not, kernels 3, 1 and 0, both filters),
  including the fused up-sampling SongUNet itself never uses."""
  data = {k.split('/')[2]: v for k, v in fixture().items() if k.startswith(f'conv/{case}/')}
  fields = case.split('_')
  kernel = int(fields[0][1:])
  conv = su.Conv2d(out_channels=data['y'].shape[-1], kernel=kernel, up='up' in fields,
                   down='down' in fields, fused_resample='fused' in fields,
                   resample_filter=(1, 3, 3, 1) if 'f1331' in fields else (1, 1))
  params = {}
  if kernel:
    params = {'weight': data['weight'].transpose(2, 3, 1, 0), 'bias': data['bias']}
  y = conv.apply({'params': params}, data['x'])
  assert y.shape == data['y'].shape
  # A handful of float32 products per output: agreement to a few ulps of O(1) values.
  np.testing.assert_allclose(np.asarray(y), data['y'], rtol=1e-5, atol=1e-5)


def test_params_from_official_refuses_another_architecture():
  state = official_state('ddpmpp_edm')
  with pytest.raises(UserError, match=r"no tensor for .*_16x16_block"):
    su.params_from_official(state, variant_net('ddpmpp_edm', num_blocks=2))
  with pytest.raises(UserError, match=r'resample_filter.*\(1, 3, 3, 1\)'):
    su.params_from_official(state, variant_net('ddpmpp_edm', resample_filter=(1, 3, 3, 1)))
  converted = su.params_from_official(state)
  # Layouts: conv OIHW → HWIO, dense [out, in] → [in, out]; buffers of filters dropped.
  conv = converted['params']['model']['enc_16x16_conv']['weight']
  np.testing.assert_array_equal(conv, state['model.enc.16x16_conv.weight'].transpose(2, 3, 1, 0))
  dense = converted['params']['model']['map_layer0']['weight']
  np.testing.assert_array_equal(dense, state['model.map_layer0.weight'].T)
  assert not any('resample_filter' in jax.tree_util.keystr(p)
                 for p, _ in jax.tree_util.tree_leaves_with_path(converted))


# ------------------------------------------------------------------------------------------------
# Initialisation: distributed like the official one, tensor by tensor.


def test_initialisation_matches_official_statistics():
  """A one-level SongUNet with 10 classes, augment labels and attention in EDMPrecond: few
  layers (fast to compile) holding every kind of initialisation, with ≥ 576 values each for
  tight statistics. NCSN++'s Fourier frequencies are checked below; its aux convolutions use the
  same Xavier initialiser as every block's convolutions."""
  cfg = json.loads(str(fixture()['init/config']))
  cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
  net = pc.Precond(kind='edm', model=su.SongUNet(in_channels=3, out_channels=3, **cfg))
  # unsafe_rbg: the same distributions; its random kernels compile faster on CPU.
  variables = jax.jit(functools.partial(su.init_songunet, net))(
      jax.random.key(1, impl='unsafe_rbg'))
  ours = {}
  for path, value in jax.tree_util.tree_leaves_with_path(variables):
    ours[tuple(getattr(k, 'key', k) for k in path[1:])] = np.asarray(value, np.float64)
  names = [str(n) for n in fixture()['init/names']]
  checked = 0
  for official_name, (mean, std, max_abs, n) in zip(names, fixture()['init/stats']):
    if official_name.endswith('resample_filter'):
      continue
    value = ours[su._flax_path(official_name)]
    assert value.size == n, official_name
    if std == 0:  # Constants: zero biases, unit GroupNorm scales.
      np.testing.assert_array_equal(value, mean, err_msg=official_name)
      continue
    # Two independent draws of one distribution (every random tensor here is uniform): the
    # sample std of n values has a relative spread of 0.45/√n, the mean a spread of std/√n;
    # 6 spreads of the difference of two draws leave a negligible false-failure chance and are
    # ≤ 16% of the std for every tensor here (≥ 576 values), while a wrong mode (Xavier vs
    # Kaiming, fan-in vs fan-out) or scale (1e-5, √0.2) is off by far more.
    assert abs(value.std() - std) <= 6 * 0.64 / math.sqrt(n) * std, official_name
    assert abs(value.mean() - mean) <= 6 * 1.42 / math.sqrt(n) * std, official_name
    # The same bound b of U(−b, b) (not a normal of the same std): the max of ≥ 576 draws is
    # within 5% of b.
    assert 0.9 * max_abs <= np.abs(value).max() <= max_abs / 0.95, official_name
    checked += 1
  assert checked >= 20
  assert len(ours) == len([n for n in names if not n.endswith('resample_filter')])


def test_fourier_frequencies_are_untrained_normal_draws():
  embedding = su.FourierEmbedding(num_channels=2000)
  variables = embedding.init(jax.random.key(2, impl='unsafe_rbg'), jnp.zeros((1,)))
  assert set(variables) == {su.BUFFERS}  # Not trained, not counted: a buffer, as officially.
  freqs = np.asarray(variables[su.BUFFERS]['freqs'])
  # N(0, 16²): 1000 draws put the sample std within 16·(1 ± 0.12) (5 spreads of 0.71/√1000).
  assert freqs.shape == (1000,) and abs(freqs.std() - 16) < 0.12 * 16
  x = jnp.array([0.3, -1.2])
  want = 2 * np.pi * np.asarray(x)[:, None] * freqs[None, :]
  np.testing.assert_allclose(embedding.apply(variables, x),
                             np.concatenate([np.cos(want), np.sin(want)], axis=1), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Preconditioning (EDM Table 1).


SIGMAS = np.geomspace(1e-3, 300, 23)


def table1(kind, sigma, sigma_data=0.5, beta_d=19.9, beta_min=0.1, M=1000):
  """EDM's Table 1 in float64, written directly."""
  s = np.asarray(sigma, np.float64)
  if kind == 'edm':
    return (sigma_data ** 2 / (s ** 2 + sigma_data ** 2),
            s * sigma_data / np.sqrt(s ** 2 + sigma_data ** 2),
            1 / np.sqrt(sigma_data ** 2 + s ** 2), np.log(s) / 4)
  if kind == 'vp':
    t = (np.sqrt(beta_min ** 2 + 2 * beta_d * np.log(1 + s ** 2)) - beta_min) / beta_d
    return np.ones_like(s), -s, 1 / np.sqrt(s ** 2 + 1), (M - 1) * t
  return np.ones_like(s), s, np.ones_like(s), np.log(0.5 * s)


@pytest.mark.parametrize('kind', pc.KINDS)
def test_coefficients_follow_table1(kind):
  for got, want in zip(pc.coefficients(kind, SIGMAS), table1(kind, SIGMAS)):
    assert got.dtype == jnp.float32
    # A few float32 operations on each: ≤ 1e-6 relative (VP's c_noise too, thanks to
    # log1p and the cancellation-free root; its official float32 form errs by ~1% at σ=1e-3).
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
  # Non-default hyper-parameters reach the formulas.
  for got, want in zip(pc.coefficients(kind, SIGMAS, sigma_data=0.7, beta_d=10.0,
                                       beta_min=0.5, M=500),
                       table1(kind, SIGMAS, sigma_data=0.7, beta_d=10.0, beta_min=0.5, M=500)):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)


def test_vp_schedule_and_sigma_ranges():
  t = np.linspace(1e-5, 1, 50)
  want = np.sqrt(np.exp(0.5 * 19.9 * t ** 2 + 0.1 * t) - 1)
  np.testing.assert_allclose(np.asarray(pc.vp_sigma(t)), want, rtol=1e-6)
  # float32 round trip; t ≥ 1e-5 keeps the relative error of t ≲ 1e-6 · a few.
  np.testing.assert_allclose(np.asarray(pc.vp_sigma_inv(pc.vp_sigma(t))), t, rtol=1e-5)
  # VP's range is [σ(ε_t), σ(1)] = [0.0010005, 152.167]. The official VPPrecond computes it in
  # float32 as √(exp(x) − 1), which rounds σ(ε_t) to 2⁻¹⁰ = 0.00097656 (recorded); σ(1) agrees.
  lo, hi = pc.sigma_range('vp')
  np.testing.assert_allclose([lo, hi], np.sqrt(np.expm1([0.5 * 19.9e-10 + 1e-6, 10.05])),
                             rtol=1e-6)
  official_lo, official_hi = fixture()['vp_sigma_range']
  assert official_lo == 2 ** -10 and abs(hi - official_hi) < 1e-6 * hi
  assert pc.sigma_range('edm') == (0.0, math.inf)
  assert pc.sigma_range('ve') == (0.02, 100.0)
  assert pc.sigma_range('ve', sigma_max=50) == (0.02, 50.0)
  model = su.SongUNet(img_resolution=8, in_channels=3, out_channels=3)
  assert pc.Precond(model=model, kind='ve', sigma_min=0.1).sigma_range() == (0.1, 100.0)
  with pytest.raises(UserError, match="'iddpm' is not one of edm, vp, ve"):
    pc.sigma_range('iddpm')


# ------------------------------------------------------------------------------------------------
# bf16, dropout, labels.


# A one-level conditional SongUNet (3 blocks, 2 with attention: quick to compile) with dropout,
# for the bf16, dropout and label tests; random weights so its output is not ≈ 0.
TINY = dict(img_resolution=8, in_channels=3, out_channels=3, label_dim=3, model_channels=8,
            channel_mult=(1,), num_blocks=0, attn_resolutions=(8,), dropout=0.5)


def rbg_key(seed):
  """A key whose random kernels (dropout masks) compile much faster on CPU than threefry."""
  return jax.random.key(seed, impl='unsafe_rbg')


@functools.lru_cache(maxsize=None)
def tiny_variables():
  """Weights N(0, 1/fan_in), GroupNorm scales 1 + 0.2 N, biases 0.2 N, as the fixture's (the
  initialisation's 1e-5-scaled output layer would make every output ≈ 0)."""
  shapes = jax.eval_shape(lambda: su.init_songunet(su.SongUNet(**TINY), jax.random.key(0)))
  rs = np.random.RandomState(3)

  def draw(path, leaf):
    noise = rs.standard_normal(leaf.shape).astype(np.float32)
    if jax.tree_util.keystr(path).endswith("['bias']"):
      return 0.2 * noise
    if len(leaf.shape) == 1:
      return 1 + 0.2 * noise
    return noise / np.sqrt(np.prod(leaf.shape[:-1]))

  return jax.tree_util.tree_map_with_path(draw, shapes)


def tiny_inputs(n=16):
  x = jax.random.normal(rbg_key(4), (n, 8, 8, 3))
  return x, jnp.linspace(-2, 2, n), jax.nn.one_hot(jnp.arange(n) % 3, 3)


@functools.lru_cache(maxsize=None)
def tiny_eval():
  """The tiny network in eval mode, with its labels and with zero labels (one batch): the
  reference of the tests below. No 'dropout' rng is given: with dropout 0.5, Flax would refuse
  to run if eval mode drew any dropout mask."""
  x, noise, labels = tiny_inputs()
  out = apply_fn(su.SongUNet(**TINY))(
      tiny_variables(), jnp.concatenate([x, x]), jnp.concatenate([noise, noise]),
      jnp.concatenate([labels, jnp.zeros_like(labels)]))
  return np.asarray(out[:len(x)]), np.asarray(out[len(x):])


def test_bfloat16_stays_close_to_float32():
  net = su.SongUNet(**TINY, dtype=jnp.bfloat16)
  shapes = jax.eval_shape(lambda: su.init_songunet(net, jax.random.key(0)))
  assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}  # Masters.
  x, noise, labels = tiny_inputs()
  out = apply_fn(net)(tiny_variables(), x, noise, labels)
  assert out.dtype == jnp.float32
  reference, _ = tiny_eval()
  err = np.asarray(out) - reference
  rel_rms = np.sqrt(np.mean(err ** 2, axis=(1, 2, 3)) / np.mean(reference ** 2, axis=(1, 2, 3)))
  # bf16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 0.2% per operation) through ~15
  # layers: measured 0.9–2.0% RMS here (the fixture's deeper networks: 0.7–1.4% of c_out·F);
  # 5% bounds that with margin; a wrong layer errs by far more. The lower bound proves the
  # network really computed in bf16.
  assert np.all(rel_rms < 0.05) and np.all(rel_rms > 1e-4), rel_rms


def test_dropout_acts_only_when_training():
  variables = tiny_variables()
  x, noise, labels = tiny_inputs()
  apply = apply_fn(su.SongUNet(**TINY))
  evaluated, _ = tiny_eval()  # Ran without a 'dropout' rng: eval mode drew no mask.
  trained = [apply(variables, x, noise, labels, train=True, rngs={'dropout': rbg_key(k)})
             for k in (5, 6)]
  scale = np.abs(evaluated).max()
  assert np.abs(trained[0] - evaluated).max() > 0.05 * scale
  assert np.abs(trained[0] - trained[1]).max() > 0.05 * scale
  with pytest.raises(Exception, match='dropout'):
    apply(variables, x, noise, labels, train=True)  # Training needs the rng.


def test_label_dropout_zeroes_whole_label_vectors_when_training():
  net = su.SongUNet(**{**TINY, 'dropout': 0.0, 'label_dropout': 0.5})
  x, noise, labels = tiny_inputs()
  conditional, unconditional = tiny_eval()  # Eval mode: the same for any dropout rates.
  assert np.all(np.abs(conditional - unconditional).max(axis=(1, 2, 3)) > 1e-3)
  trained = apply_fn(net)(tiny_variables(), x, noise, labels, train=True,
                          rngs={'dropout': rbg_key(7)})
  # Each image saw either its label or none, and with p = 0.5 over 16 images both happen.
  # (Batches of 16 and 32 images may sum in different orders: 1e-5 tolerance.)
  kept = np.all(np.isclose(trained, conditional, rtol=1e-5, atol=1e-5), axis=(1, 2, 3))
  dropped = np.all(np.isclose(trained, unconditional, rtol=1e-5, atol=1e-5), axis=(1, 2, 3))
  assert np.all(kept ^ dropped) and kept.any() and dropped.any(), (kept, dropped)


def test_precond_without_labels_is_the_unconditional_denoiser():
  """class_labels=None on a conditional network means zero labels (the unconditional branch of
  classifier-free guidance), as the official Precond. VE (c_skip = c_in = 1, c_out = σ,
  c_noise = ln(σ/2)) at σ = 2·exp(noise) makes D = x + σ·F(x; noise) of the network above."""
  x, noise, _ = tiny_inputs()
  sigma = 2 * jnp.exp(noise)
  net = pc.Precond(kind='ve', label_dim=3, model=su.SongUNet(**TINY))
  denoised = apply_fn(net)({'params': {'model': tiny_variables()['params']}}, x, sigma, None)
  _, unconditional = tiny_eval()
  want = np.asarray(x) + np.asarray(sigma)[:, None, None, None] * unconditional
  # float32 through ln(σ/2) = noise (1 ulp) and the network: 1e-5 of each image's scale.
  assert_close_per_image(denoised, want, 1e-5)


# ------------------------------------------------------------------------------------------------
# Architectures the official network cannot run: one line each.


def test_check_architecture_accepts_the_published_configs():
  su.check_architecture(32, (2, 2, 2), (16,))
  su.check_architecture(64, (1, 2, 2, 2), (16,))
  su.check_architecture(7, (1,), ())  # One level: nothing to halve.
  su.check_architecture(24, (1, 2, 2, 2), (24, 12, 6, 3))
  assert su.resolutions(24, (1, 2, 2, 2)) == (24, 12, 6, 3)


@pytest.mark.parametrize('args, message', [
    ((20, (1, 2, 2, 2), (10,)), 'resolution 20 cannot be halved 3 times .* multiple of 8'),
    ((10, (1, 2, 2), ()), 'multiple of 4'),
    ((32, (2, 2, 2), (16, 12)), r'attention resolution\(s\) \[12\] .* \[32, 16, 8\]'),
    ((64, (1, 2, 2, 2), (4,)), r'\[64, 32, 16, 8\]'),
    ((32, (), ()), 'channel_mult is empty'),
    ((32, (2, 2, 2), (16,), 'sinusoidal'), "embedding_type='sinusoidal'"),
    ((32, (2, 2, 2), (16,), 'positional', 'progressive'), "encoder_type='progressive'"),
    ((32, (2, 2, 2), (16,), 'positional', 'standard', 'residual'), "decoder_type='residual'"),
])
def test_check_architecture_refuses(args, message):
  with pytest.raises(UserError, match=message) as info:
    su.check_architecture(*args)
  assert '\n' not in str(info.value)


def test_network_refuses_bad_shapes_and_group_counts():
  net = su.SongUNet(img_resolution=16, in_channels=3, out_channels=3, channel_mult=(1, 2),
                    model_channels=8)
  with pytest.raises(UserError, match=r'input of shape \(1, 8, 8, 3\) .* \[N, 16, 16, 3\]'):
    jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,)))
  # 2 channels: EDM's GroupNorm would have min(32, 2 // 4) = 0 groups.
  net = su.SongUNet(img_resolution=16, in_channels=3, out_channels=3, channel_mult=(1, 2),
                    model_channels=2)
  with pytest.raises(UserError, match='GroupNorm .* 2 channels'):
    jax.eval_shape(functools.partial(su.init_songunet, net), jax.random.key(0))
  with pytest.raises(UserError, match='label_dim=3 but its model has label_dim=0'):
    jax.eval_shape(functools.partial(su.init_songunet, pc.Precond(model=net, label_dim=3)),
                   jax.random.key(0))
