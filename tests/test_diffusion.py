"""The diffusion recipe (EDM) on the one loop: presets, the update step, guidance, the shared tiny
run, generate/export/evaluate/bench on it, resuming after kill -9, and 1 vs 4 devices."""

import glob
import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import (DIFFUSION_TINY, REPO, check_samples_and_swd, env_with_devices,
                      kill_after_checkpoint, read_scalars, run_main, tree_digest,
                      with_overrides)
import diffusion as diffusion_config
from jaxgen.errors import UserError
from jaxgen.recipes.diffusion import Diffusion


def tiny_config(**overrides):
  values = {k: (eval(v) if isinstance(v, str) and v.startswith('(') else v)  # pylint: disable=eval-used
            for k, v in DIFFUSION_TINY.items()}
  return with_overrides(diffusion_config.get_config(), {**values, **overrides})


def param_count(config, num_classes=0):
  recipe = Diffusion(config, num_classes)
  state = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  return recipe.param_count(state)['denoiser']


# EDM's networks, everything included (EDMPrecond around SongUNet), as the official code counts
# them (tests/data/README_edm_songunet.md): without augmentation labels, and with the 9 that the
# official recipes feed the network when augmentation is on (a projection of 9 onto the noise
# embedding's 128 · channel_mult_noise channels more: 55,733,891 / 55,735,299 / 56,397,827 /
# 61,805,571 officially).
@pytest.mark.parametrize('preset,use_labels,expected', [
    ('cifar10', False, 55_732_739),
    ('cifar10', True, 55_734_147),
    ('ncsnpp', False, 56_395_523),
    ('ffhq64', False, 61_804_419),
])
def test_presets_have_the_official_parameter_counts(preset, use_labels, expected):
  config = diffusion_config.get_config(preset)
  config.data.use_labels = use_labels
  assert config.augment.p > 0  # The presets train as the paper, with augmentation.
  noise_channels = config.model.model_channels * config.model.channel_mult_noise
  assert param_count(config, 10 if use_labels else 0) == expected + 9 * noise_channels
  config.augment.p = 0.0
  assert param_count(config, 10 if use_labels else 0) == expected


def test_presets_hold_the_official_hyperparameters():
  c = diffusion_config.get_config('cifar10')
  assert (c.train.batch_size, c.optimizer.lr, c.optimizer.lr_rampup_kimg) == (512, 1e-3, 10_000)
  assert (c.model.dropout, c.augment.p, c.train.ema_kimg, c.train.ema_rampup) == (
      0.13, 0.12, 500, 0.05)
  assert c.train.num_steps * c.train.batch_size == pytest.approx(200e6, rel=1e-3)
  assert (c.optimizer.b1, c.optimizer.b2, c.optimizer.eps) == (0.9, 0.999, 1e-8)
  assert (c.sampling.sampler, c.sampling.num_steps, c.sampling.rho) == ('heun', 18, 7)
  assert Diffusion(c, 0).sigma_range(c.sampling.sampler) == (0.002, 80)
  # DDIM on the VP baseline: the VP SDE's own range, σ(ε_s = 1e-3) to σ(1) ≈ 152, clamped below
  # by the VP preconditioning's σ(ε_t = 1e-5)... which is smaller, so the sampler's holds.
  lo, hi = Diffusion(diffusion_config.get_config('vp'), 0).sigma_range('ddim')
  assert lo == pytest.approx(0.0105, abs=1e-4) and hi == pytest.approx(152.2, abs=0.1)
  assert (c.objective.P_mean, c.objective.P_std, c.model.sigma_data) == (-1.2, 1.2, 0.5)
  assert (c.data.resolution, c.model.model_channels, c.model.channel_mult, c.model.num_blocks,
          tuple(c.model.attn_resolutions)) == (32, 128, (2, 2, 2), 4, (16,))
  vp = diffusion_config.get_config('vp')
  assert (vp.model.precond, vp.objective.name) == ('vp', 'vp')
  assert diffusion_config.get_config('ve').model.encoder_type == 'residual'
  bench = diffusion_config.get_config('bench')
  assert (bench.model.dtype, bench.train.batch_size, bench.data.source) == (
      'bfloat16', 512, 'embedded')
  Diffusion(bench, 0)  # Builds (its settings pass every check).
  ffhq = diffusion_config.get_config('ffhq64')
  assert (ffhq.train.batch_size, ffhq.optimizer.lr, ffhq.model.dropout, ffhq.augment.p,
          ffhq.sampling.num_steps) == (256, 2e-4, 0.05, 0.15, 40)


def test_cpu_default_is_edm2s_net_with_a_4x4_level_and_the_previous_one_a_preset():
  """The net, loss, optimiser and data the README's CPU figures were measured with (five
  upright classes); the previous default on the dataset's shapes at any angle, as measured."""
  config = diffusion_config.get_config()
  assert (config.model.arch, config.objective.name, config.optimizer.lr, config.optimizer.b2,
          config.model.channel_mult) == ('edm2', 'edm2', 0.03, 0.99, (1, 2, 2))
  assert config.data.classes == (0, 1, 3, 4, 8) and config.train.num_steps == 10_000
  assert config.data.rotation == 0.0
  assert param_count(config, 5) == 298_944
  previous = diffusion_config.get_config('songunet_cpu')
  assert (previous.model.arch, previous.objective.name, previous.optimizer.lr,
          previous.optimizer.b2, previous.data.rotation) == ('songunet', 'edm', 4e-3, 0.999, 1.0)
  assert param_count(previous, 5) == 182_246


def test_the_cpu_default_trains_and_samples_each_label(tmp_path):
  """The shipped default end to end — EDM2's U-Net and loss, five classes, guidance 3 — with
  only its length and evaluation sizes cut: it trains, and `generate --class` draws each label
  from the same latents differently."""
  workdir = tmp_path / 'run'
  sizes = {'train.batch_size': 8, 'train.num_steps': 4, 'data.num_images': 200,
           'data.num_threads': 1, 'eval.num_images': 32, 'eval.batch_size': 32,
           'eval.every_steps': 4, 'sampling.num_steps': 3, 'checkpoint.every_steps': 4,
           'log.every_steps': 1, 'log.num_samples': 10, 'optimizer.lr_rampup_kimg': 0.008}
  # Not run_main: its tiny overrides pin the SongUNet, and this is the shipped default's net.
  result = run_module('jaxgen.main', '--config=configs/diffusion.py', f'--workdir={workdir}',
                      *[f'--config.{k}={v}' for k, v in sizes.items()])
  assert "'denoiser': 298944" in result.stderr + result.stdout
  scalars = read_scalars(workdir)
  assert set(scalars['eval/swd/avg']) == {4} and math.isfinite(scalars['eval/swd/avg'][4])
  images = {}
  for label in (0, 1):
    outdir = tmp_path / f'class{label}'
    run_module('jaxgen.generate', f'--workdir={workdir}', f'--outdir={outdir}', '--seeds=0-1',
               '--steps=3', f'--class={label}')
    images[label] = read_pngs(outdir)
    assert sorted(images[label]) == ['seed0000.png', 'seed0001.png']
    assert images[label]['seed0000.png'].shape == (16, 16, 3)
  # 4 steps from an init whose label embedding is small: the labels move pixels by a few levels
  # at least (guidance 3 amplifies their difference), not by nothing.
  for name in images[0]:
    assert np.abs(images[0][name].astype(int) - images[1][name].astype(int)).max() >= 1, name


def test_learning_rate_warmup_and_ema_of_the_shared_run(diffusion_run):
  """The lr and EMA decay every step of the shared run logged (log.every_steps = 1): EDM's
  ramp lr·min(images shown before the step / warm-up images, 1), 16 warm-up images at batch 8,
  times the cool-down's min((num_steps − step) / (lr_cooldown · num_steps), 1),
  and β = 0.5^(batch / max(h, 1e-8)) with h = min(20 images, 5 % of the images shown)."""
  config = tiny_config()
  lr, cooldown = config.optimizer.lr, config.optimizer.lr_cooldown
  assert cooldown > 0  # The shared run decays the lr to 0 over its last steps too:
  scalars = read_scalars(diffusion_run)
  for step in range(1, 7):  # TensorBoard step s holds update s − 1's metrics.
    shown = (step - 1) * 8
    decay = min(max((6 - (step - 1)) / (cooldown * 6), 0.0), 1.0)  # Linear to 0 at step 6.
    assert scalars['lr'][step] == pytest.approx(lr * min(shown / 16, 1.0) * decay, rel=1e-6)
    h = min(20.0, shown * 0.05)
    assert scalars['ema/beta'][step] == pytest.approx(0.5 ** (8 / max(h, 1e-8)), rel=1e-6)
    assert math.isfinite(scalars['grad_norm'][step]) and scalars['grad_norm'][step] > 0


@pytest.fixture(scope='module')
def conditional():
  """A conditional tiny recipe and a state whose weights are perturbed away from the init (whose
  output layers are ~0, so labels would hardly matter)."""
  config = tiny_config(**{'data.use_labels': True, 'model.label_dropout': 0.2})
  recipe = Diffusion(config, 10)
  state = jax.jit(recipe.init_state)(jax.random.PRNGKey(0))
  leaves, tree = jax.tree.flatten(state.ema_params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return recipe, state.replace(ema_params=jax.tree.unflatten(tree, leaves))


def test_guidance_scale_one_is_plain_conditional_sampling(conditional):
  recipe, state = conditional
  z = recipe.latents(jax.random.PRNGKey(3), 4)
  labels = jnp.arange(4, dtype=jnp.int32)
  one_hot = jax.nn.one_hot(labels, 10)
  from jaxgen.samplers import diffusion as samplers
  run = lambda guidance: samplers.sample(
      recipe.guided_denoiser(state, one_hot, guidance), z, jax.random.PRNGKey(0),
      sampler='heun', num_steps=4, sigma_min=0.002, sigma_max=80.0)
  plain, guided_1, guided_2 = run(None), run(1.0), run(2.0)
  # Scale 1 through the two-branch formula d_u + 1·(d_c − d_u): the same up to float32 rounding
  # of that sum (|d| ≲ 80 at σ_max, a few ulps each of 7 evaluations).
  np.testing.assert_allclose(guided_1, plain, atol=1e-4)
  assert float(jnp.max(jnp.abs(guided_2 - plain))) > 1e-3  # And scale 2 is not.
  # The recipe's own path: guidance 1 (the default) is the plain conditional sampler.
  np.testing.assert_array_equal(recipe.generate(state, z, labels, num_steps=4), plain)


def _perturbed(state, scale, seed):
  leaves, tree = jax.tree.flatten(state.ema_params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return state.replace(ema_params=jax.tree.unflatten(
      tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]))


def test_autoguidance_extrapolates_from_the_guiding_network(conditional):
  """EDM2's guidance by another network: D_ref + w·(D − D_ref) with D_ref the guide's denoiser
  on the same labels (none if the guide is unconditional). Guided by itself, sampling is the
  plain conditional sampler at any w."""
  recipe, state = conditional
  z = recipe.latents(jax.random.PRNGKey(3), 4)
  labels = jnp.arange(4, dtype=jnp.int32)
  one_hot = jax.nn.one_hot(labels, 10)
  itself = types.SimpleNamespace(recipe=recipe, state=state)
  plain = recipe.generate(state, z, labels, num_steps=4)
  # d + w·(d − d) rounds to d: equal to float32 rounding of 7 evaluations (|d| ≲ 80 at σ_max).
  np.testing.assert_allclose(recipe.generate(state, z, labels, num_steps=4, guidance=2.5,
                                             guide=itself), plain, atol=1e-4)
  weaker = types.SimpleNamespace(recipe=recipe, state=_perturbed(state, 0.05, 7))
  uncond_recipe = Diffusion(tiny_config(), 0)
  uncond = types.SimpleNamespace(recipe=uncond_recipe, state=_perturbed(
      jax.jit(uncond_recipe.init_state)(jax.random.PRNGKey(5)), 0.1, 8))
  x = z * 2.0
  sigma = jnp.float32(2.0)
  d = recipe.denoise(state.ema_params, state.buffers, x, jnp.full((4,), sigma), one_hot)
  for guide, guide_labels in ((weaker, one_hot), (uncond, None)):
    ref = guide.recipe.denoise(guide.state.ema_params, guide.state.buffers, x,
                               jnp.full((4,), sigma), guide_labels)
    got = recipe.guided_denoiser(state, one_hot, 2.5, guide)(x, sigma)
    np.testing.assert_allclose(got, ref + 2.5 * (d - ref), rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(got - d))) > 1e-2  # The guide matters.
  cfg = recipe.guided_denoiser(state, one_hot, 2.5)(x, sigma)
  assert float(jnp.max(jnp.abs(cfg - recipe.guided_denoiser(state, one_hot, 2.5, weaker)(
      x, sigma)))) > 1e-2  # Not classifier-free guidance.
  assert recipe.evaluations_per_sample(num_steps=4, guidance=2.5, guide=weaker) == 14
  # An unconditional run takes guidance from a guide (EDM2's uncond-autog presets), not alone.
  z1 = uncond_recipe.latents(jax.random.PRNGKey(4), 2)
  out = uncond_recipe.generate(uncond.state, z1, jnp.zeros(2, jnp.int32), num_steps=3,
                               guidance=2.0, guide=uncond)
  assert out.shape == z1.shape and bool(jnp.all(jnp.isfinite(out)))
  with pytest.raises(UserError, match='guide it with another run'):
    uncond_recipe.check_sampling(guidance=2.0)


def test_a_guide_that_cannot_guide_is_refused(conditional):
  recipe, _ = conditional
  other_size = Diffusion(tiny_config(**{'data.resolution': 32, 'model.attn_resolutions': ()}),
                         10)
  other_classes = Diffusion(tiny_config(**{'data.use_labels': True}), 5)
  not_diffusion = types.SimpleNamespace(recipe=object(), config=types.SimpleNamespace(
      model=types.SimpleNamespace(name='dcgan')))
  for guide, expect in ((types.SimpleNamespace(recipe=other_size), 'same images'),
                        (types.SimpleNamespace(recipe=other_classes), 'on 5 classes'),
                        (not_diffusion, "'dcgan' run")):
    with pytest.raises(UserError, match=expect):
      recipe.check_sampling(guidance=2.0, guide=guide)


def test_sampling_options_are_checked_before_compiling(conditional):
  recipe, state = conditional
  z = recipe.latents(jax.random.PRNGKey(0), 2)
  labels = jnp.zeros((2,), jnp.int32)
  with pytest.raises(UserError, match='sampler'):
    jax.eval_shape(lambda: recipe.generate(state, z, labels, sampler='rk45'))
  with pytest.raises(UserError, match='steps'):
    jax.eval_shape(lambda: recipe.generate(state, z, labels, num_steps=0))
  unconditional = Diffusion(tiny_config(), 0)
  with pytest.raises(UserError, match='unconditional'):
    unconditional.check_sampling(guidance=2.0)


def test_run_writes_samples_metrics_and_checkpoints(diffusion_run):
  scalars = check_samples_and_swd(diffusion_run)  # Grids at 0, 3, 6; SWD at each.
  assert set(scalars['loss/denoise']) == set(range(1, 7))
  assert all(math.isfinite(v) for v in scalars['loss/denoise'].values())
  assert sorted(os.listdir(os.path.join(diffusion_run, 'checkpoints'))) == ['4', '6']


def run_module(module, *args, num_devices=1, check=True):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True,
                          text=True, env=env_with_devices(num_devices), timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def read_pngs(outdir):
  return {os.path.basename(p): np.asarray(Image.open(p))
          for p in sorted(glob.glob(os.path.join(outdir, 'seed*.png')))}


def test_generate_is_the_same_on_one_and_four_devices_and_from_an_export(diffusion_run, tmp_path):
  """Same seeds, same samples: on 1 and 4 devices (the batch split over them), and from the
  exported EMA denoiser; a stochastic sampler too (its noise comes from the seed)."""
  args = ['--seeds=0-7', '--steps=3', '--sampler=heun', '--S_churn=5']
  one, four, export = tmp_path / 'one', tmp_path / 'four', tmp_path / 'export'
  run_module('jaxgen.generate', f'--workdir={diffusion_run}', f'--outdir={one}', *args)
  run_module('jaxgen.generate', f'--workdir={diffusion_run}', f'--outdir={four}', *args,
             num_devices=4)
  npz = str(tmp_path / 'd.npz')
  run_module('jaxgen.export', f'--workdir={diffusion_run}', f'--output={npz}')
  run_module('jaxgen.generate', f'--network={npz}', f'--outdir={export}', *args)
  a, b, c = read_pngs(one), read_pngs(four), read_pngs(export)
  assert sorted(a) == [f'seed{i:04d}.png' for i in range(8)]
  for name in a:
    # uint8 images: on 4 devices XLA may order float sums differently (1 level at most).
    assert np.abs(a[name].astype(int) - b[name].astype(int)).max() <= 1, name
    np.testing.assert_array_equal(a[name], c[name])
  assert len({v.tobytes() for v in a.values()}) == 8  # Different seeds, different images.


def test_generate_refuses_bad_sampling_flags_and_writes_nothing(diffusion_run, tmp_path):
  # (The config's own bad values are rows of tests/test_bad_input.py.)
  cases = [(['--sampler=rk4'], 'rk4'), (['--guidance=2'], 'unconditional')]
  for extra, expect in cases:
    outdir = tmp_path / 'out'
    result = run_module('jaxgen.generate', f'--workdir={diffusion_run}', f'--outdir={outdir}',
                        '--seeds=0', *extra, check=False)
    errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
    assert result.returncode == 2 and len(errors) == 1 and expect in errors[0], result.stderr
    assert 'Traceback' not in result.stderr
    assert not outdir.exists()


def test_generate_and_evaluate_with_a_guiding_run(diffusion_run, dcgan_run, tmp_path):
  """`--guide` on the command line: the shared (unconditional) run guided by its own export at
  w = 2 samples and scores as the run alone (D + 2·(D − D) = D); a guide that cannot guide, or
  a run that takes none, is one error line."""
  npz = str(tmp_path / 'guide.npz')
  run_module('jaxgen.export', f'--workdir={diffusion_run}', f'--output={npz}')
  args = ['--seeds=0-3', '--steps=3']
  run_module('jaxgen.generate', f'--workdir={diffusion_run}', f'--outdir={tmp_path / "a"}', *args)
  run_module('jaxgen.generate', f'--workdir={diffusion_run}', f'--outdir={tmp_path / "b"}', *args,
             f'--guide={npz}', '--guidance=2')
  a, b = read_pngs(tmp_path / 'a'), read_pngs(tmp_path / 'b')
  assert sorted(a) == sorted(b) and len(a) == 4
  for name in a:
    assert np.abs(a[name].astype(int) - b[name].astype(int)).max() <= 1, name
  scores = [run_module('jaxgen.evaluate', f'--workdir={diffusion_run}', '--metrics=swd',
                       '--steps=3', *extra).stdout
            for extra in ([], [f'--guide={diffusion_run}', '--guidance=2'])]
  assert float(scores[0].split('swd/avg: ')[1].split()[0]) == pytest.approx(
      float(scores[1].split('swd/avg: ')[1].split()[0]), rel=1e-3)
  cases = [(['generate', f'--workdir={diffusion_run}', f'--guide={dcgan_run}', '--guidance=2'],
            "--guide must be a diffusion run; it is a 'dcgan' run"),
           (['generate', f'--workdir={diffusion_run}', f'--guide={tmp_path / "no.npz"}'],
            '--guide=' + str(tmp_path / 'no.npz') + ' does not exist'),
           (['generate', f'--workdir={dcgan_run}', f'--guide={npz}'],
            '--guide: only diffusion runs take them'),
           (['evaluate', f'--workdir={dcgan_run}', f'--guide={npz}'],
            '--guide: only diffusion runs take a guiding network')]
  runs_before = [tree_digest(run) for run in (diffusion_run, dcgan_run)]
  for (verb, *extra), expect in cases:
    more = ['--metrics=swd'] if verb == 'evaluate' else [f'--outdir={tmp_path / "c"}', '--seeds=0']
    result = run_module(f'jaxgen.{verb}', *extra, *more, check=False)
    errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
    assert result.returncode == 2 and len(errors) == 1 and expect in errors[0], result.stderr
    assert not (tmp_path / 'c').exists()
  assert [tree_digest(run) for run in (diffusion_run, dcgan_run)] == runs_before


def test_evaluate_with_a_sampler_override(diffusion_run, tmp_path):
  out = tmp_path / 'r.json'
  run_module('jaxgen.evaluate', f'--workdir={diffusion_run}', '--metrics=swd', '--steps=2',
             '--sampler=euler', f'--output={out}')
  results = json.loads(out.read_text())['results']
  assert math.isfinite(results['swd/avg']) and results['swd/avg'] > 0


def test_kill_9_then_rerun_resumes_exactly(diffusion_run, tmp_path):
  """Killed right after checkpoint 4 and run again: every later step's loss and gradient norm,
  and the SWD of the final EMA denoiser, equal the uninterrupted run's (the same noise levels,
  dropout and augmentation at every step)."""
  workdir = str(tmp_path / 'killed')
  kill_after_checkpoint(workdir, 4, config='configs/diffusion.py')
  result = run_main(workdir, config='configs/diffusion.py')
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = read_scalars(diffusion_run), read_scalars(workdir)
  for tag in ('loss/denoise', 'grad_norm'):
    assert set(range(resumed_from + 1, 7)) <= set(got[tag]), tag
    for step in sorted(got[tag]):
      # The same programs on the same data, keys and restored state: equal up to float
      # reassociation.
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-5, abs=1e-7), (tag, step)
  assert got['eval/swd/avg'][6] == pytest.approx(expected['eval/swd/avg'][6], rel=1e-4)
  # EDM2's power-function EMAs are state too: the resumed run's last snapshots are the same.
  for name in ('phema-00000006-0.050.npz', 'phema-00000006-0.100.npz'):
    with np.load(os.path.join(workdir, 'snapshots', name)) as a, \
         np.load(os.path.join(diffusion_run, 'snapshots', name)) as b:
      assert a.files == b.files
      for key in a.files:
        if key != '__jaxgen__':
          np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_bench_reports_training_and_sampling_speed(tmp_path):
  out = tmp_path / 'bench.json'
  overrides = [f'--config.{k}={v}' for k, v in DIFFUSION_TINY.items()]
  result = subprocess.run(
      [sys.executable, '-m', 'jaxgen.bench', '--config=configs/diffusion.py', *overrides,
       '--steps=2', '--warmup=1', '--sample_batches=1', f'--output={out}'],
      cwd=REPO, capture_output=True, text=True, env=env_with_devices(1), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert figures['finite'] and figures['images_per_s'] > 0
  assert figures['sample_evaluations'] == 5  # Heun, 3 steps: 2·3 − 1.
  assert figures['sample_images_per_s'] > 0
  # One pass of the tiny U-Net on a 16² image is tens of MFLOP; 5 passes per image.
  assert 0.01 < figures['sample_gflop_per_image'] < 10
