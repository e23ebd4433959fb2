"""EDM2's power-function EMA and post-hoc EMA (jaxgen/posthoc_ema.py, the diffusion recipe's
power_ema, `python -m jaxgen.phema`): the maths against NVlabs edm2's training/phema.py
(tests/data/phema.npz, tests/data/README_phema.md), the reconstruction against a directly
tracked EMA, the recipe's update, and the shared tiny run's snapshots through the commands."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, tree_digest
from jaxgen import posthoc_ema as P
from jaxgen.errors import UserError
from jaxgen.recipes.diffusion import Diffusion
from test_diffusion import read_pngs, run_module, tiny_config

FIXTURE = np.load(os.path.join(REPO, 'tests', 'data', 'phema.npz'))


def test_exponents_and_widths_match_the_official_code():
  # The same float64 formulas (and numpy's cubic roots): equal to rounding.
  np.testing.assert_allclose(P.std_to_exp(FIXTURE['std']), FIXTURE['exp'], rtol=1e-12)
  np.testing.assert_allclose(P.exp_to_std(FIXTURE['exp_in']), FIXTURE['std_out'], rtol=1e-12)
  np.testing.assert_allclose(P.exp_to_std(P.std_to_exp(FIXTURE['std'])), FIXTURE['std'],
                             rtol=1e-10)
  assert P.std_to_exp(P.MAX_STD - 1e-9) == pytest.approx(0.0, abs=1e-6)  # γ = 0: a plain mean.
  got = [P.beta(s, t, d) for s, t, d in zip(FIXTURE['beta_std'], FIXTURE['beta_t_next'],
                                            FIXTURE['beta_t_delta'])]
  np.testing.assert_allclose(got, FIXTURE['beta'], rtol=1e-12)
  assert FIXTURE['beta'][0] == 0  # The first update (t_next = t_delta) copies the weights.


def test_profile_inner_products_and_coefficients_match_the_official_code():
  got = P.correlation(FIXTURE['corr_a_ofs'], FIXTURE['corr_a_std'], FIXTURE['corr_b_ofs'],
                      FIXTURE['corr_b_std'])
  np.testing.assert_allclose(got, FIXTURE['corr'], rtol=1e-12)
  # A linear solve of the 16×16 Gram matrix (condition number 535): agreement to 1e-12 of the
  # largest coefficient leaves a 500-fold margin over float64's (1.5e-15 measured).
  for coefs, out_ofs, n in ((FIXTURE['coefs'], FIXTURE['out_ofs'], 16),
                            (FIXTURE['coefs_mid'], FIXTURE['out_ofs_mid'], 10)):
    got = P.coefficients(FIXTURE['in_ofs'][:n], FIXTURE['in_std'][:n], out_ofs,
                         FIXTURE['out_std'])
    np.testing.assert_allclose(got, coefs, atol=1e-12 * np.abs(coefs).max())
    np.testing.assert_allclose(got.sum(axis=0), 1.0, rtol=1e-12)


def test_recipe_update_tracks_as_the_official_power_function_ema():
  """`Diffusion._power_ema_update` (float32, 1 − β through expm1/log1p) over the fixture's
  300-update trajectory gives the official float64 PowerFunctionEMA's values to float32
  rounding: 1e-7 measured (300 accumulations of ~6e-8 relative each)."""
  traj = FIXTURE['traj'].astype(np.float32)
  exps = P.std_to_exp(FIXTURE['traj_std'])
  ema = [jnp.float32(traj[0])] * len(exps)
  update = jax.jit(Diffusion._power_ema_update)  # pylint: disable=protected-access
  for k, value in enumerate(traj):
    ema = [update(e, jnp.float32(value), float(g), jnp.int32(k)) for e, g in zip(ema, exps)]
  np.testing.assert_allclose(np.array(ema), FIXTURE['traj_ema'], rtol=2e-6)


def _tracked(trajectory, std, batch=1):
  """The power-function EMA of σ_rel `std` after each update of `trajectory` [T, ...] (float64,
  β from posthoc_ema.beta): [T, ...]."""
  out, ema = [], trajectory[0]
  for k, value in enumerate(trajectory):
    b = P.beta(std, (k + 1) * batch, batch)
    ema = b * ema + (1 - b) * value
    out.append(ema)
  return np.array(out)


def test_reconstruction_matches_a_directly_tracked_ema():
  """Snapshots of σ_rel 0.05 and 0.10 every 100 of 2,000 updates of a smooth noisy trajectory
  reconstruct the σ_rel 0.075 and 0.15 EMAs at the end and at update 1,200. The reconstruction
  is a least-squares fit of profiles, not exact: here it is within 3.5e-4 of the trajectory's
  range of the tracked EMA (bound 1e-3), where the nearest snapshot (σ_rel 0.10) is 1e-2 to
  1.2e-1 away."""
  rng = np.random.default_rng(0)
  t = np.arange(2000)
  trajectory = np.stack([np.cos(t / 300), np.sin(t / 700) + 0.2 * t / 2000,
                         np.exp(-t / 500)], 1) + 0.05 * rng.standard_normal((2000, 3))
  tracked = {s: _tracked(trajectory, s) for s in (0.05, 0.075, 0.10, 0.15)}
  snapshots = [(k, s, {'w': tracked[s][k - 1]}) for k in range(100, 2001, 100)
               for s in (0.05, 0.10)]
  span = np.ptp(trajectory, axis=0)
  for step in (2000, 1200):
    for std in (0.075, 0.15):
      (got,), weights = P.reconstruct(snapshots, [std], step)
      assert weights.shape == (2 * step // 100, 1)
      err = np.abs(got['w'] - tracked[std][step - 1]) / span
      assert err.max() < 1e-3, (step, std, err)
      nearest = np.abs(tracked[0.10][step - 1] - tracked[std][step - 1]) / span
      assert nearest.max() > 5e-3  # A test that a snapshot itself would fail.
    # A σ_rel that was snapshotted comes back as that snapshot; several σ_rel in one pass, and
    # from snapshots read only when needed (one at a time), the same as one by one.
    outs, _ = P.reconstruct([(k, s, lambda a=a: a) for k, s, a in snapshots],
                            [0.05, 0.075, 0.15], step)
    np.testing.assert_allclose(outs[0]['w'], tracked[0.05][step - 1], atol=1e-9)
    for out, std in zip(outs[1:], (0.075, 0.15)):
      np.testing.assert_allclose(out['w'], P.reconstruct(snapshots, [std], step)[0][0]['w'],
                                 rtol=1e-12, atol=1e-12)
  with pytest.raises(UserError, match='no snapshot at 1250'):
    P.reconstruct(snapshots, [0.075], 1250)
  with pytest.raises(UserError, match=r'in \(0, 0.2887\)'):
    P.reconstruct(snapshots, [0.3])
  with pytest.raises(UserError, match='different networks'):
    P.reconstruct(snapshots[:-1] + [(2000, 0.10, {'w': np.zeros(4)})], [0.075])


def test_train_step_updates_each_power_ema_and_snapshots_on_schedule():
  """Three updates of the tiny recipe: each power EMA follows the weights as β_k = (1 −
  1/k)^(γ+1) over the update's weights (the first copies them), and `snapshots` names the
  EMAs at every 2nd step (16 images at batch 8)."""
  config = tiny_config()
  recipe = Diffusion(config, 0)
  assert recipe.ema_std == (0.05, 0.1) and recipe.snapshot_steps == 2
  state = jax.jit(recipe.init_state)(jax.random.PRNGKey(0))
  step = jax.jit(recipe.train_step)
  rng = np.random.default_rng(1)
  history = []
  for _ in range(3):
    batch = {'image': rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
             'label': np.zeros(8, np.int32)}
    state, _ = step(state, batch)
    history.append(jax.tree.leaves(state.params))
  for std, ema in zip(recipe.ema_std, state.power_ema):
    for i, leaf in enumerate(jax.tree.leaves(ema)):
      expected = _tracked(np.stack([np.asarray(h[i], np.float64) for h in history]), std)[-1]
      np.testing.assert_allclose(leaf, expected, rtol=1e-5, atol=1e-7)
  assert recipe.snapshots(state, 3) == {}
  snaps = recipe.snapshots(state, 4)
  assert sorted(snaps) == ['phema-00000004-0.050', 'phema-00000004-0.100']
  fields, info = snaps['phema-00000004-0.100']
  assert info == {'snapshot': {'nimg': 32, 'std': 0.1, 'averaged': ['ema_params']}}
  assert set(fields) == set(recipe.generator_fields)
  for kept, ema in zip(jax.tree.leaves(fields['ema_params']), jax.tree.leaves(state.power_ema[1])):
    # Kept in float16, as EDM2's training loop saves its snapshots.
    assert kept.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(ema).astype(np.float16))
  # Without train.ema_std the state has no power EMAs (runs saved before them restore).
  plain = Diffusion(tiny_config(**{'train.ema_std': (), 'train.ema_snapshot_kimg': 0.0}), 0)
  assert not hasattr(jax.eval_shape(plain.init_state, jax.random.PRNGKey(0)), 'power_ema')


def test_shared_run_snapshots_reconstruct_generate_and_evaluate(diffusion_run, tmp_path):
  """The shared tiny run kept both EMAs at steps 2, 4 and 6; `jaxgen.phema` reconstructs from
  them (σ_rel 0.05 at step 6 is that snapshot itself), `generate --network` samples the result
  as it samples the snapshot, and `evaluate --network` scores an export as `--workdir` scores
  its checkpoint."""
  snapdir = os.path.join(diffusion_run, 'snapshots')
  assert sorted(os.listdir(snapdir)) == [f'phema-{s:08d}-{v}.npz' for s in (2, 4, 6)
                                         for v in ('0.050', '0.100')]
  out = tmp_path / 'phema'
  result = run_module('jaxgen.phema', f'--workdir={diffusion_run}', '--std=0.05,0.075',
                      f'--outdir={out}')
  assert result.stdout.count('wrote') == 2
  assert sorted(os.listdir(out)) == ['phema-00000006-0.050.npz', 'phema-00000006-0.075.npz']
  with np.load(out / 'phema-00000006-0.050.npz') as made, \
       np.load(os.path.join(snapdir, 'phema-00000006-0.050.npz')) as snap:
    meta = json.loads(str(made['__jaxgen__']))
    assert meta['phema']['std'] == 0.05 and meta['step'] == 6
    for key in snap.files:
      if key != '__jaxgen__':
        # Snapshots and reconstructions are float16 (EDM2's); the float32 sum of coefficient ×
        # snapshot comes back to the same float16 but for rounding: one unit in the last place
        # (2⁻¹⁰ relative) at most. Buffers are copied, as the official code copies them.
        assert made[key].dtype == snap[key].dtype
        if snap[key].dtype == np.float16 and key.startswith('ema_params/'):
          got, want = made[key].astype(np.float32), snap[key].astype(np.float32)
          np.testing.assert_allclose(got, want, rtol=2.0 ** -10, atol=2.0 ** -24)
        else:
          np.testing.assert_array_equal(made[key], snap[key])
  # At step 4, from the four snapshots up to it.
  result = run_module('jaxgen.phema', f'--workdir={diffusion_run}', '--std=0.12', '--step=4',
                      f'--outdir={out}')
  assert (out / 'phema-00000004-0.120.npz').exists() and 'snapshots' in result.stdout
  args = ['--seeds=0-3', '--steps=2']
  run_module('jaxgen.generate', f'--network={out / "phema-00000006-0.050.npz"}',
             f'--outdir={tmp_path / "a"}', *args)
  run_module('jaxgen.generate', f'--network={os.path.join(snapdir, "phema-00000006-0.050.npz")}',
             f'--outdir={tmp_path / "b"}', *args)
  a, b = read_pngs(tmp_path / 'a'), read_pngs(tmp_path / 'b')
  assert len(a) == 4
  for name in a:  # Weights equal to 1e-6: images equal up to one level of 255.
    assert np.abs(a[name].astype(int) - b[name].astype(int)).max() <= 1
  npz = str(tmp_path / 'export.npz')
  run_module('jaxgen.export', f'--workdir={diffusion_run}', f'--output={npz}')
  scores = []
  for where in (f'--workdir={diffusion_run}', f'--network={npz}'):
    result = run_module('jaxgen.evaluate', where, '--metrics=swd', '--steps=2')
    scores.append(result.stdout)
  assert scores[0] == scores[1] and 'swd/avg' in scores[0]


def test_phema_refuses_bad_input_and_writes_nothing(diffusion_run, dcgan_run, tmp_path):
  out = tmp_path / 'out'
  runs_before = [tree_digest(run) for run in (diffusion_run, dcgan_run)]
  cases = [([f'--workdir={dcgan_run}', '--std=0.1'], 'holds no power-function EMA snapshots'),
           ([f'--workdir={tmp_path / "nowhere"}', '--std=0.1'], 'does not exist'),
           ([f'--workdir={diffusion_run}', '--std=0.3'], '--std=0.3'),
           ([f'--workdir={diffusion_run}', '--std=a'], 'not a comma-separated list'),
           ([f'--workdir={diffusion_run}', '--std=0.1', '--step=5'], 'steps 2, 4, 6')]
  for extra, expect in cases:
    result = run_module('jaxgen.phema', *extra, f'--outdir={out}', check=False)
    errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
    assert result.returncode == 2 and len(errors) == 1 and expect in errors[0], result.stderr
    assert not out.exists()
  out.mkdir()
  (out / 'phema-00000006-0.100.npz').write_bytes(b'mine')
  result = run_module('jaxgen.phema', f'--workdir={diffusion_run}', '--std=0.05,0.1',
                      f'--outdir={out}', check=False)
  assert result.returncode == 2 and 'already exists' in result.stderr
  assert os.listdir(out) == ['phema-00000006-0.100.npz']  # Nothing written, nothing replaced.
  assert (out / 'phema-00000006-0.100.npz').read_bytes() == b'mine'
  assert [tree_digest(run) for run in (diffusion_run, dcgan_run)] == runs_before
