"""The StyleGAN2-ADA recipe: the update schedule, its state, the presets, and end-to-end runs of
`python -m jaxgen.main --config=configs/stylegan.py` (tiny), including an exact resume after
kill -9 and bad input refused before compilation."""

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import stylegan
from conftest import (REPO, STYLEGAN_RUN, STYLEGAN_TINY, check_samples_and_swd,
                      env_with_devices, kill_after_checkpoint, main_command, read_scalars,
                      run_main, tree_digest, with_overrides)
from jaxgen.errors import UserError
from jaxgen.recipes.stylegan2 import StyleGAN2

CONFIG = 'configs/stylegan.py'


def tiny_config(**overrides):
  return with_overrides(stylegan.get_config(), {**STYLEGAN_TINY, **overrides})


# ------------------------------------------------------------------------------------------------
# Presets and schedule (no compilation).


@pytest.mark.parametrize('preset, g_total, d_total', [
    ('stylegan2', 30_034_338, 28_864_129),   # the official networks' counts (REFERENCE.md)
    ('paper256', 24_767_458, 24_001_089),
    ('bench256', 30_034_338, 28_864_129),
])
def test_presets_build_the_official_networks(preset, g_total, d_total):
  config = stylegan.get_config(preset)
  recipe = StyleGAN2(config, num_classes=0)
  state = jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0))
  assert recipe.param_count(state) == {'generator': g_total, 'discriminator': d_total}
  assert recipe.generator.num_bf16_res == recipe.discriminator.num_bf16_res == 4
  assert recipe.generator.conv_clamp == 256


def test_official_hyperparameters_of_the_presets():
  cfg = stylegan.get_config('stylegan2')
  assert (cfg.train.batch_size, cfg.model.mbstd_group_size, cfg.optimizer.g_lr,
          cfg.objective.r1_gamma, cfg.train.ema_kimg) == (32, 4, 0.002, 10.0, 10.0)
  cfg = stylegan.get_config('paper256')
  assert (cfg.train.batch_size, cfg.model.mbstd_group_size, cfg.optimizer.g_lr,
          cfg.objective.r1_gamma, cfg.train.ema_kimg) == (64, 8, 0.0025, 1.0, 20.0)
  cfg = stylegan.get_config('cifar10')
  assert (cfg.data.resolution, cfg.model.num_mapping_layers, cfg.model.d_architecture,
          cfg.optimizer.g_lr, cfg.optimizer.d_lr, cfg.objective.pl_weight,
          cfg.objective.style_mixing_prob, cfg.objective.r1_gamma, cfg.train.ema_kimg,
          cfg.train.ema_rampup) == (32, 2, 'orig', 0.0025, 0.0025, 0.0, 0.0, 0.01, 500.0, 0.05)
  for preset, res, batch, gamma in (('bench256', 256, 32, 1.0), ('bench64', 64, 64, 0.05)):
    cfg = stylegan.get_config(preset)
    assert (cfg.data.resolution, cfg.train.batch_size, cfg.objective.r1_gamma,
            cfg.augment.mode) == (res, batch, gamma, 'noaug')
    assert (cfg.objective.r1_interval, cfg.objective.pl_interval, cfg.objective.pl_weight,
            cfg.objective.style_mixing_prob) == (16, 4, 2.0, 0.9)
  with pytest.raises(ValueError, match='unknown preset'):
    stylegan.get_config('stylegan3')


def test_lazy_regularisation_schedule():
  recipe = StyleGAN2(stylegan.get_config('stylegan2'), num_classes=0)
  variants = [recipe.step_variant(s) for s in range(32)]
  assert [s for s, (pl, _) in enumerate(variants) if pl] == list(range(0, 32, 4))
  assert [s for s, (_, r1) in enumerate(variants) if r1] == [0, 16]
  off = StyleGAN2(tiny_config(**{'objective.pl_weight': 0.0, 'objective.r1_gamma': 0.0}), 0)
  assert {off.step_variant(s) for s in range(32)} == {(False, False)}


def test_adam_is_corrected_for_lazy_regularisation():
  # With β1 = 0 Adam's first step is lr · g/√(g²) = lr · sign(g): the step size shows the lr.
  config = stylegan.get_config()  # R1 every 16, PL every 4
  config.optimizer.g_lr, config.optimizer.d_lr = 0.002, 0.003  # Each network its own lr.
  recipe = StyleGAN2(config, num_classes=0)
  grads = {'w': jnp.array([0.3, -2.0])}
  params = {'w': jnp.zeros(2)}
  for tx, lr, ratio in ((recipe.d_tx, 0.003, 16 / 17), (recipe.g_tx, 0.002, 4 / 5)):
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates['w']), [-lr * ratio, lr * ratio], rtol=1e-4)
    # β2 is 0.99 ** ratio: the second moment after one step is (1 − β2) g².
    nu = jax.tree.leaves(state[0].nu)[0]
    np.testing.assert_allclose(np.asarray(nu), (1 - 0.99 ** ratio) * np.square([0.3, -2.0]),
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Bad input, refused before anything is compiled.


def test_bad_settings_are_refused_on_construction():
  with pytest.raises(UserError, match='not a power of two'):
    StyleGAN2(tiny_config(**{'data.resolution': 48}), 0)
  with pytest.raises(UserError, match='has no labels'):
    StyleGAN2(tiny_config(**{'data.use_labels': True}), 0)
  with pytest.raises(UserError, match=r'outside \(0, 1\)'):
    StyleGAN2(tiny_config(**{'augment.target': 1.5}), 0)
  with pytest.raises(UserError, match='mbstd_group_size'):
    StyleGAN2(tiny_config(**{'train.batch_size': 6}), 0)
  with pytest.raises(UserError, match='augmentation mode'):
    StyleGAN2(tiny_config(**{'augment.mode': 'sometimes'}), 0)
  # Minibatch-stddev splits (devices): 3 do not divide the batch of 8; 2 splits of 6 samples
  # cannot form groups of 4.
  with pytest.raises(UserError, match='mbstd_num_splits=3'):
    StyleGAN2(tiny_config(**{'model.mbstd_num_splits': 3}), 0)
  with pytest.raises(UserError, match='per-device batch is 6'):
    StyleGAN2(tiny_config(**{'train.batch_size': 12, 'model.mbstd_num_splits': 2}), 0)


def _fails_cleanly(args):
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                          env=env_with_devices(1), timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  return errors[0]


def test_cli_refuses_bad_input_and_leaves_the_workdir_alone(stylegan_run, tmp_path):
  before = tree_digest(stylegan_run)
  line = _fails_cleanly(main_command(str(tmp_path / 'a'), CONFIG, **{'data.resolution': 24}))
  assert 'resolution 24 is not a power of two' in line
  line = _fails_cleanly(main_command(str(tmp_path / 'b'), CONFIG, **{'augment.target': 1.5}))
  assert 'ADA target 1.5 is outside (0, 1)' in line
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(3):
    Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(images / f'{i}.png')
  line = _fails_cleanly(main_command(str(tmp_path / 'c'), CONFIG, **{
      'data.source': f'folder:{images}', 'data.use_labels': True,
      'data.cache_dir': str(tmp_path / 'cache')}))
  assert 'labels' in line
  # The same refusals on an existing run's workdir change nothing there.
  _fails_cleanly(main_command(stylegan_run, CONFIG, **{'data.resolution': 24}))
  assert tree_digest(stylegan_run) == before


# ------------------------------------------------------------------------------------------------
# The update step (tiny networks, every variant compiled once).


@pytest.fixture(scope='module')
def stepped():
  """A tiny recipe, its initial state, and the states after steps 0..4 (variants: PL+R1, none,
  PL, none, PL+R1) with ADA's p free to move."""
  config = tiny_config(**{'augment.p': 0.3, 'augment.interval': 2, 'augment.target': 0.5})
  recipe = StyleGAN2(config, num_classes=0)
  state0 = jax.jit(recipe.init_state)(jax.random.PRNGKey(0))
  rs = np.random.RandomState(0)
  batch = {'image': jnp.asarray(rs.randint(0, 256, (8, 16, 16, 3)), jnp.uint8),
           'label': jnp.zeros((8,), jnp.int32)}
  fns = {}
  states, metrics = [state0], []
  for step in range(5):
    variant = recipe.step_variant(step)
    if variant not in fns:
      fns[variant] = jax.jit(functools.partial(recipe.train_step, variant=variant))
    state, m = fns[variant](states[-1], batch)
    states.append(state)
    metrics.append(jax.device_get(m))
  return recipe, states, metrics


def test_step_metrics_are_finite_and_parameters_move(stepped):
  recipe, states, metrics = stepped
  assert [recipe.step_variant(s) for s in range(5)] == [
      (True, True), (False, False), (True, False), (False, False), (True, True)]
  for m in metrics:
    assert all(np.isfinite(v) for v in m.values()), m
  for tree in ('g_params', 'd_params'):
    before = jax.tree.leaves(getattr(states[0], tree))
    after = jax.tree.leaves(getattr(states[1], tree))
    assert any(float(jnp.max(jnp.abs(a - b))) > 0 for a, b in zip(before, after)), tree
  assert [int(s.step) for s in states] == [0, 1, 2, 3, 4, 5]


def test_regularisers_run_only_on_their_steps(stepped):
  _, states, _ = stepped
  pl_means = [float(s.pl_mean) for s in states]
  r1s = [float(s.last_r1) for s in states]
  # Path length on steps 0, 2, 4 (pl_interval 2): the running mean moves only then.
  assert pl_means[0] == 0 and pl_means[1] > 0
  assert pl_means[2] == pl_means[1] and pl_means[3] != pl_means[2]
  assert pl_means[4] == pl_means[3] and pl_means[5] != pl_means[4]
  # R1 on steps 0 and 4 (r1_interval 4).
  assert r1s[0] == 0 and r1s[1] > 0 and r1s[1] == r1s[2] == r1s[3] == r1s[4] != r1s[5]


def test_ema_w_avg_and_ada_bookkeeping(stepped):
  recipe, states, metrics = stepped
  # Ramp-up: at step 0 no images were shown yet, so β = 0 and the EMA copies G.
  assert metrics[0]['ema/beta'] == 0.0
  for e, g in zip(jax.tree.leaves(states[1].ema_params), jax.tree.leaves(states[1].g_params)):
    np.testing.assert_array_equal(np.asarray(e), np.asarray(g))
  assert 0 < metrics[1]['ema/beta'] < 1
  lagging = [float(jnp.max(jnp.abs(e - g))) for e, g in
             zip(jax.tree.leaves(states[2].ema_params), jax.tree.leaves(states[2].g_params))]
  assert max(lagging) > 0
  # Dmain's mapping pass tracks w_avg.
  w_avg = lambda s: np.asarray(s.g_buffers['mapping']['w_avg'])
  assert np.all(w_avg(states[0]) == 0) and np.any(w_avg(states[1]) != 0)
  # ADA: p changes only after steps 2 and 4 (interval 2), by ±batch·interval/(speed·1000),
  # towards more augmentation when the mean real sign exceeds the target; the counters reset.
  step = 8 * 2 / (0.5 * 1000)
  ps = [float(s.ada_p) for s in states]
  assert ps[0] == ps[1] == pytest.approx(0.3) and ps[3] == ps[2] and ps[5] == ps[4]
  assert abs(abs(ps[2] - ps[1]) - step) < 1e-6 and abs(abs(ps[4] - ps[3]) - step) < 1e-6
  assert float(states[2].ada_count) == 0 and float(states[1].ada_count) == 8 + 8  # Dmain + R1
  signs = (states[1].ada_sign_sum + metrics[1]['augment/real_sign'] * 8) / (16 + 8)
  assert np.sign(ps[2] - ps[1]) == np.sign(float(signs) - 0.5)


def test_generate_truncation_and_constant_noise(stepped):
  recipe, states, _ = stepped
  z = recipe.latents(jax.random.PRNGKey(3), 4)
  labels = jnp.zeros((4,), jnp.int32)
  a = recipe.generate(states[-1], z, labels)
  assert a.shape == (4, 16, 16, 3) and bool(jnp.all(jnp.isfinite(a)))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(recipe.generate(states[-1], z, labels)))
  # ψ = 0: every sample is the image of w_avg.
  t = np.asarray(recipe.generate(states[-1], z, labels, truncation_psi=0.0))
  np.testing.assert_allclose(t, np.broadcast_to(t[:1], t.shape), atol=1e-5)
  assert np.abs(np.asarray(a) - np.asarray(a)[:1]).max() > 1e-3


# ------------------------------------------------------------------------------------------------
# End to end.


STATE_TAGS = ('loss/d', 'loss/g', 'augment/p', 'pl/mean', 'loss/r1_penalty')


def test_run_writes_samples_metrics_and_regulariser_logs(stylegan_run):
  scalars = check_samples_and_swd(stylegan_run)
  for tag in STATE_TAGS + ('grad_norm/g', 'grad_norm/d', 'logits/real', 'ema/beta'):
    assert set(scalars[tag]) == set(range(1, 7)), tag
  p = [scalars['augment/p'][s] for s in range(1, 7)]
  assert p[0] == 0 and p[1] > 0  # Target 0.05: D's reals are above it, so ADA augments.


def test_kill_9_then_rerun_resumes_exactly_including_ada_p_and_pl_mean(stylegan_run, tmp_path):
  workdir = str(tmp_path)
  kill_after_checkpoint(workdir, 4, CONFIG, **STYLEGAN_RUN)
  result = run_main(workdir, config=CONFIG, **STYLEGAN_RUN)
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = read_scalars(stylegan_run), read_scalars(workdir)
  for tag in STATE_TAGS:
    # Steps after the resume are all logged (the killed run's last events may not have been
    # flushed). The same programs on the same data, keys and restored state (ADA p and its
    # counters, pl_mean, EMA, w_avg): equal up to float reassociation.
    assert set(range(resumed_from + 1, 7)) <= set(got[tag]), tag
    for step in sorted(got[tag]):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-5, abs=1e-7), (tag, step)
  for step in (3, 6):
    assert got['eval/swd/avg'][step] == pytest.approx(expected['eval/swd/avg'][step], rel=1e-4)


def _bench(tmp_path, num_devices, *extra):
  out = tmp_path / f'bench{num_devices}.json'
  # The shared run's settings: its programs are in the compilation cache when this runs.
  args = [a for a in main_command(str(tmp_path), CONFIG, **STYLEGAN_RUN)
          if not a.startswith('--workdir')]
  args[2] = 'jaxgen.bench'
  result = subprocess.run(args + ['--steps=3', '--warmup=1', f'--output={out}', *extra], cwd=REPO,
                          capture_output=True, text=True, env=env_with_devices(num_devices),
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sec_per_kimg' in result.stdout
  return json.loads(out.read_text()), result.stdout


def test_bench_command_reports_its_figures(tmp_path):
  """`python -m jaxgen.bench` runs the training step variants and reports (speed not judged:
  a CPU under a test runner says nothing about it)."""
  # Sampling's timing is tested with diffusion's bench (tests/test_diffusion.py): skipped here.
  figures, stdout = _bench(tmp_path, 1, '--profile=2', f'--profile_dir={tmp_path / "traces"}',
                           '--sample_batches=0')
  assert figures['timed_steps'] == 4  # Rounded up to the schedule's period (PL every 2, R1 4).
  assert figures['variants'] == 3 and figures['finite'] is True
  # --profile: every phase's ops are found in the traces of the variants that run them.
  profile = figures['profile']
  assert {'Gmain', 'Greg', 'Dmain', 'Dreg'} <= set(profile['by_phase'])
  assert sum(v['share'] for v in profile['variants'].values()) == pytest.approx(1.0)
  assert profile['by_phase']['Gmain'] > 0 and profile['attributed_ms_per_step'] > 0
  assert any(k.startswith('Dmain/Discriminator') for k in profile['by_scope'])
  assert 'by phase:' in stdout and list((tmp_path / 'traces').glob('**/*.xplane.pb'))
  assert figures['images_per_s'] > 0 and figures['gflop_per_image'] > 0
  assert figures['sec_per_kimg'] == pytest.approx(1000 / figures['images_per_s'], rel=0.01)


def test_bench_counts_the_flops_of_every_device():
  """XLA's cost analysis of a sharded program counts one device's share; bench multiplies it
  back (GFLOP/image must not shrink with the device count)."""
  code = (
      'import jax, jax.numpy as jnp, numpy as np\n'
      'from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n'
      'from jaxgen import bench\n'
      'def flops(devices):\n'
      '  mesh = Mesh(np.asarray(devices), ("data",))\n'
      '  spec = lambda *axes: NamedSharding(mesh, P(*axes))\n'
      '  x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=spec("data"))\n'
      '  w = jax.ShapeDtypeStruct((128, 128), jnp.float32, sharding=spec())\n'
      '  f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w)\n'
      '  return bench._flops(f.lower(x, w).compile())\n'
      'one, two = flops(jax.devices()[:1]), flops(jax.devices())\n'
      'print(one, two)\n'
      'assert abs(2 * 64 * 128 * 128 * 2 / one - 1) < 0.05, one\n'
      'assert abs(2 * two / one - 1) < 0.05, (one, two)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          env=env_with_devices(2), timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]


def test_four_devices_match_one_device(stylegan_run, tmp_path):
  """The batch split over 4 devices (latents sharded by parallel.batch_constraint, minibatch
  stddev grouped within each device) computes the single-device step with 4 stddev splits
  (the shared run's STYLEGAN_RUN)."""
  assert STYLEGAN_RUN == {'model.mbstd_num_splits': 4}
  four = str(tmp_path / 'four')
  # Default: one split per device. Steps 1-5 run every variant of the update (PL on 1, 3, 5; R1
  # on 1 and 5; ADA's p every 2 steps); one evaluation, at the end, is enough here.
  run_main(four, num_devices=4, config=CONFIG, **{
      'train.num_steps': 5, 'eval.at_start': False, 'eval.every_steps': 5})
  expected, got = read_scalars(stylegan_run), read_scalars(four)
  for tag in ('loss/d', 'loss/g', 'pl/mean', 'loss/r1_penalty'):
    # Step 1 is the same maths on the same inputs: float32 reassociation only.
    assert got[tag][1] == pytest.approx(expected[tag][1], rel=1e-5), tag
    # Later steps drift: Adam with β1 = 0 turns a rounding-level difference in a near-zero
    # gradient entry into a full-lr step (observed: ≤ 1.2e-2 relative by step 6).
    for step in range(2, 6):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=5e-2), (tag, step)
  for step in range(1, 6):  # p moves in fixed increments: the same decisions on 4 devices.
    assert got['augment/p'][step] == pytest.approx(expected['augment/p'][step], abs=1e-6)
