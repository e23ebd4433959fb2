"""EDM2's magnitude-preserving U-Net, its learned uncertainty and forced weight normalisation
(jaxgen/models/edm2unet.py, precond.Precond.logvar_channels, objectives 'edm2', the diffusion
recipe's step) held against NVlabs edm2's own code: parameter counts of its published presets,
outputs and force-normalised weights of small official networks (tests/data/edm2_unet.npz,
README_edm2_unet.md), and the magnitude-preserving operations' defining property.

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

from conftest import with_overrides
import diffusion as diffusion_config
from jaxgen.errors import UserError
from jaxgen.models import edm2unet as mp
from jaxgen.models import precond as pc
from jaxgen.objectives import diffusion as objective
from jaxgen.recipes.diffusion import Diffusion

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'edm2_unet.npz')
VARIANTS = ('cond', 'uncond')


@functools.lru_cache(maxsize=None)
def fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


def variant_net(name, dtype=jnp.float32):
  """The Precond + EDM2UNet of a fixture variant, from its recorded official keyword arguments."""
  cfg = json.loads(str(fixture()[f'{name}/config']))
  unet = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()
          if k not in ('img_resolution', 'img_channels', 'use_fp16', 'logvar_channels')}
  return pc.Precond(logvar_channels=cfg['logvar_channels'], model=mp.EDM2UNet(
      img_resolution=cfg['img_resolution'], in_channels=cfg['img_channels'],
      out_channels=cfg['img_channels'], dtype=dtype, **unet))


def official_variables(name, prefix='state'):
  start = f'{name}/{prefix}/'
  params, buffers = mp.params_from_official(
      {k[len(start):]: v for k, v in fixture().items() if k.startswith(start)})
  return {**params, **buffers}


def inputs(name):
  return (fixture()[f'{name}/x'], fixture()[f'{name}/sigma'],
          fixture().get(f'{name}/class_labels'))


def assert_close_per_image(got, want, rel):
  """|got − want| ≤ rel · (want's largest magnitude in the same image), everywhere."""
  scale = np.abs(want).max(axis=tuple(range(1, want.ndim)), keepdims=True)
  np.testing.assert_array_less(np.abs(np.asarray(got) - want),
                               np.broadcast_to(rel * scale + 1e-7, want.shape))


@functools.lru_cache(maxsize=None)
def apply_fn(net):
  return jax.jit(net.apply, static_argnames=('train', 'return_logvar'))


def num_params(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Parameter counts of EDM2's published networks (Precond: U-Net and uncertainty head, every
# trainable parameter), equal to the official code's (recorded in the fixture).


@pytest.mark.parametrize('name, kwargs, expected', [
    ('edm2-img512-xs', dict(img_resolution=64, in_channels=4, label_dim=1000,
                            model_channels=128), 124_713_253),
    ('edm2-img512-s', dict(img_resolution=64, in_channels=4, label_dim=1000,
                           model_channels=192), 280_212_837),
    ('edm2-img64-s', dict(img_resolution=64, in_channels=3, label_dim=1000,
                          model_channels=192), 280_209_381),
    ('edm2-img64-s-uncond', dict(img_resolution=64, in_channels=3, model_channels=192),
     279_441_381),
])
def test_param_counts_equal_official(name, kwargs, expected):
  official = dict(zip(fixture()['count_names'], fixture()['official_param_counts']))
  assert official[name] == expected
  net = pc.Precond(logvar_channels=128,
                   model=mp.EDM2UNet(out_channels=kwargs['in_channels'], **kwargs))
  x = jnp.zeros((1, 64, 64, kwargs['in_channels']))
  labels = jnp.zeros((1, kwargs['label_dim'])) if kwargs.get('label_dim') else None
  shapes = jax.eval_shape(net.init, jax.random.key(0), x, jnp.ones((1,)), labels)
  assert num_params(shapes['params']) == expected
  # The Fourier frequencies and phases are buffers, as officially (192 + 128 of each).
  assert num_params(shapes[mp.BUFFERS]) == 2 * (kwargs['model_channels'] + 128)


def test_edm2_preset_is_the_official_img64_s():
  config = diffusion_config.get_config('edm2_img64')
  recipe = Diffusion(config, 1000)
  state = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  assert recipe.param_count(state)['denoiser'] == 280_209_381
  o = config.optimizer
  assert (o.lr, o.b1, o.b2, o.lr_decay_kimg, o.lr_rampup_kimg) == (0.01, 0.9, 0.99,
                                                                    35_000 * 2048 / 1000, 10_000)
  assert (config.objective.P_mean, config.objective.P_std) == (-0.8, 1.6)
  assert config.train.batch_size * config.train.num_steps == 1024 << 20
  # EDM2's PowerFunctionEMA defaults and `--snapshot=8Mi`: a snapshot every 4,096 batches.
  assert recipe.ema_std == (0.05, 0.1) and recipe.snapshot_steps == 4096
  assert len(state.power_ema) == 2


# ------------------------------------------------------------------------------------------------
# Outputs of the official networks.


@pytest.mark.parametrize('name', VARIANTS)
def test_denoiser_and_uncertainty_match_official(name):
  net = variant_net(name)
  variables = official_variables(name)
  x, sigma, labels = inputs(name)
  # Every official tensor maps onto one of this network's, shape for shape, and no more.
  fresh = jax.eval_shape(net.init, jax.random.key(0), x, sigma, labels)
  assert (jax.tree.map(lambda a: a.shape, fresh) ==
          jax.tree.map(lambda a: a.shape, variables))
  denoised, logvar = apply_fn(net)(variables, x, sigma, labels, return_logvar=True)
  # float32 through ~20 layers, summed in another order than PyTorch's: measured 1–4e-7 of each
  # image's largest value; 1e-5 leaves margin, and one wrong weight or balance errs by far more.
  assert_close_per_image(denoised, fixture()[f'{name}/D'], 1e-5)
  np.testing.assert_allclose(logvar, fixture()[f'{name}/logvar'], rtol=1e-5, atol=1e-6)
  if labels is not None:  # No labels: the zero vector, as the official Precond.
    assert_close_per_image(apply_fn(net)(variables, x, sigma, None),
                           fixture()[f'{name}/D_nolabels'], 1e-5)


@pytest.mark.parametrize('name', VARIANTS)
def test_forced_weight_normalisation_matches_official(name):
  """One official training-mode forward pass rewrites every MPConv weight to unit RMS per output
  channel; force_weight_norm does the same to the same weights and nothing else."""
  forced = mp.force_weight_norm(official_variables(name)['params'])
  want = official_variables(name, 'forced')['params']
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), forced, want)
  before = official_variables(name)['params']
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), before, forced))
  assert sum(changed) == len(jax.tree.leaves(jax.tree_util.tree_map_with_path(
      lambda p, a: a, before, is_leaf=lambda x: False))) - count_gains(before)


def count_gains(params):
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  return sum(1 for path, _ in paths if path[-1].key.endswith('_gain'))


# ------------------------------------------------------------------------------------------------
# The magnitude-preserving operations and the untrained network.


def test_mp_operations_keep_unit_variance():
  """The property that names them: unit-variance inputs give unit-variance outputs. 2¹⁸ samples
  estimate a variance to ±0.3% (one standard error ≈ √(2/n)); 2% is far outside that and far
  inside what a missing factor would do (mp_silu without 0.596: 2.8×)."""
  a, b = jax.random.normal(jax.random.key(1), (2, 1 << 12, 64))
  for t in (0.3, 0.5, 0.7):
    assert abs(float(jnp.var(mp.mp_sum(a, b, t))) - 1) < 0.02
    assert abs(float(jnp.mean(jnp.square(mp.mp_cat(a[:, :16], b, t)))) - 1) < 0.02
  assert abs(float(jnp.mean(jnp.square(mp.mp_silu(a)))) - 1) < 0.02
  w = mp.normalize_weight(jax.random.normal(jax.random.key(2), (3, 3, 40, 8)) * 7)
  np.testing.assert_allclose(np.sqrt(np.mean(np.square(w), axis=(0, 1, 2))), 1, rtol=1e-4)


def test_untrained_denoiser_is_c_skip_times_x():
  """out_gain starts at 0, so a fresh network outputs 0 and D = c_skip·x exactly."""
  net = variant_net('cond')
  x, sigma, labels = inputs('cond')
  variables = net.init(jax.random.key(3), x, sigma, labels)
  c_skip = pc.coefficients('edm', sigma)[0]
  np.testing.assert_array_equal(apply_fn(net)(variables, x, sigma, labels),
                                np.asarray(c_skip)[:, None, None, None] * x)


def test_bfloat16_stays_close_to_float32():
  x, sigma, labels = inputs('cond')
  variables = official_variables('cond')
  reference = np.asarray(apply_fn(variant_net('cond'))(variables, x, sigma, labels))
  got = np.asarray(apply_fn(variant_net('cond', jnp.bfloat16))(variables, x, sigma, labels))
  c_skip = np.asarray(pc.coefficients('edm', sigma)[0])[:, None, None, None]
  # Compare the network's share c_out·F (c_skip·x is float32 in both): bf16 rounds to 2⁻⁹ per
  # operation; measured ~1% RMS through this network; 5% bounds that, the floor proves bf16 ran.
  err = got - reference
  share = reference - c_skip * x
  rel = np.sqrt(np.mean(err ** 2, axis=(1, 2, 3)) / np.mean(share ** 2, axis=(1, 2, 3)))
  assert np.all(rel < 0.05) and np.all(rel > 1e-4), rel


def test_label_dropout_zeroes_whole_label_vectors_when_training():
  cfg = json.loads(str(fixture()['cond/config']))
  net = pc.Precond(logvar_channels=cfg['logvar_channels'], model=mp.EDM2UNet(
      img_resolution=16, in_channels=3, out_channels=3, label_dim=3, model_channels=8,
      channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,), channels_per_head=8,
      label_dropout=0.5))
  variables = official_variables('cond')
  x, sigma, labels = inputs('cond')
  x, sigma, labels = (np.concatenate([a] * 6) for a in (x, sigma, labels))
  conditional = np.asarray(apply_fn(net)(variables, x, sigma, labels))
  unconditional = np.asarray(apply_fn(net)(variables, x, sigma, None))
  trained = np.asarray(apply_fn(net)(variables, x, sigma, labels, train=True,
                                 rngs={'dropout': jax.random.key(4)}))
  kept = np.all(np.isclose(trained, conditional, rtol=1e-5, atol=1e-5), axis=(1, 2, 3))
  dropped = np.all(np.isclose(trained, unconditional, rtol=1e-5, atol=1e-5), axis=(1, 2, 3))
  assert np.all(kept ^ dropped) and kept.any() and dropped.any(), (kept, dropped)


@pytest.mark.parametrize('args, message', [
    ((20, (1, 2, 2, 2), ()), 'multiple of 8'),
    ((32, (1, 2), (4,)), r'EDM2UNet: attention resolution\(s\) \[4\] .* \[32, 16\]'),
    ((32, (), ()), 'channel_mult is empty'),
    ((16, (1, 2), (8,), 16, 64), r'attention at 8x8 would have no heads: .* 32 channels'),
    ((16, (1, 2), (8,), 16, 0), 'channels_per_head=0 must be at least 1'),
])
def test_check_architecture_refuses(args, message):
  with pytest.raises(UserError, match=message) as info:
    mp.check_architecture(*args)
  assert '\n' not in str(info.value)


def test_narrow_heads_give_attention_that_changes_the_output():
  """channels_per_head below EDM2's 64 gives a 32-channel level a head: the attention blocks'
  parameters exist, and the net's output differs from the same weights without them."""
  kwargs = dict(img_resolution=8, in_channels=3, out_channels=3, model_channels=16,
                channel_mult=(1, 2), num_blocks=1)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  sigma = jnp.array([0.5, 2.0])
  plain = mp.EDM2UNet(**kwargs, attn_resolutions=())  # 64 per head: no heads anywhere.
  attended = mp.EDM2UNet(**kwargs, attn_resolutions=(4,), channels_per_head=16)
  variables = attended.init(jax.random.key(1), x, sigma)
  params = dict(variables['params'])
  with_heads = sorted(k for k, v in params.items() if isinstance(v, dict) and 'attn_qkv' in v)
  assert with_heads == ['dec_4x4_block0', 'dec_4x4_block1', 'dec_4x4_in0', 'enc_4x4_block0']
  params['out_gain'] = jnp.ones(())  # Zero at initialisation, which would hide the net.
  stripped = {k: ({n: w for n, w in v.items() if not n.startswith('attn_')}
                  if isinstance(v, dict) else v) for k, v in params.items()}
  assert jax.tree_util.tree_structure(stripped) == jax.tree_util.tree_structure(
      dict(plain.init(jax.random.key(1), x, sigma)['params']))
  with_attention = attended.apply({**variables, 'params': params}, x, sigma)
  without_attention = plain.apply({**variables, 'params': stripped}, x, sigma)
  assert float(jnp.abs(with_attention - without_attention).max()) > 1e-3


# ------------------------------------------------------------------------------------------------
# The loss and the recipe's step.


def test_edm2_loss_is_the_uncertainty_weighted_edm_loss():
  """λ/e^u·(D − y)² + u with EDM's σ and λ, against a direct computation with the same draws."""
  images = jax.random.uniform(jax.random.key(5), (4, 8, 8, 3), minval=-1, maxval=1)
  key = jax.random.key(6)

  def denoise(x, sigma, labels, augment_labels):
    del labels, augment_labels
    return 0.8 * x, 0.3 * jnp.log(sigma) - 0.1

  got = objective.edm2_loss(denoise, images, None, key, P_mean=-0.4, P_std=1.0)
  sigma_key, noise_key = jax.random.split(key)
  sigma = jnp.exp(jax.random.normal(sigma_key, (4, 1, 1, 1)) * 1.0 - 0.4)
  noise = jax.random.normal(jax.random.split(noise_key)[1], images.shape) * sigma
  u = 0.3 * jnp.log(sigma) - 0.1
  weight = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
  want = weight / jnp.exp(u) * jnp.square(0.8 * (images + noise) - images) + u
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def tiny_edm2_config(**overrides):
  return with_overrides(diffusion_config.get_config(), {
      'model.arch': 'edm2', 'objective.name': 'edm2', 'data.resolution': 16,
      'model.model_channels': 8, 'model.channel_mult': (1, 2), 'train.batch_size': 4,
      'optimizer.lr_decay_kimg': 0.016, 'optimizer.lr_rampup_kimg': 0.008,
      'optimizer.lr': 0.01, 'optimizer.lr_cooldown': 0.0, **overrides})


def test_step_force_normalises_then_updates_and_the_lr_decays_as_edm2():
  recipe = Diffusion(tiny_edm2_config(), 5)
  state = recipe.init_state(jax.random.PRNGKey(0))
  grown = jax.tree_util.tree_map_with_path(
      lambda p, a: a * 3 if p[-1].key == mp.MP_WEIGHT else a, state.params)
  batch = {'image': jnp.full((4, 16, 16, 3), 90, jnp.uint8), 'label': jnp.arange(4)}
  step = jax.jit(recipe.train_step)
  # Step 0: the lr ramp is at 0, so the update is the forced normalisation alone.
  new, metrics = step(state.replace(params=grown), batch)
  assert float(metrics['lr']) == 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new.params, mp.force_weight_norm(grown))
  np.testing.assert_allclose(new.params['logvar_linear'][mp.MP_WEIGHT],
                             mp.normalize_weight(grown['logvar_linear'][mp.MP_WEIGHT]),
                             rtol=1e-6)
  # EDM2's schedule: lr · min(images / ramp, 1) / √max(images / decay, 1), batch 4.
  for count, want in ((1, 0.01 * 4 / 8), (2, 0.01), (4, 0.01), (8, 0.01 / math.sqrt(2)),
                      (16, 0.005)):
    np.testing.assert_allclose(float(recipe.learning_rate(count)), want, rtol=1e-6)
  # Later steps train: the loss's uncertainty head and the network both move.
  for _ in range(3):
    new, metrics = step(new, batch)
  assert np.isfinite(float(metrics['loss/denoise']))
  assert float(jnp.abs(new.params['model']['out_gain'])) > 0
