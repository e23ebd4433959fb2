"""The diffusion samplers (`jaxgen.samplers.diffusion`) against the official EDM sampler and against
closed-form answers for Gaussian data.

Data x₀ ~ N(μ, s²) per pixel has the ideal denoiser D(x; σ) = E[x₀ | x₀ + σn = x] =
(s²·x + σ²·μ)/(s² + σ²). Its probability-flow ODE dx/dσ = (x − D)/σ = (x − μ)·σ/(s² + σ²) gives
d ln(x − μ) = d ln √(s² + σ²), so the exact flow map from σ_max to 0 is
  x₀ = μ + (x_T − μ)·s/√(s² + σ_max²),
which the deterministic samplers approach at their order of accuracy.
"""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.samplers import diffusion

MU, S = 0.3, 0.5


def gaussian_denoiser(x, sigma):
  return (S ** 2 * x + sigma ** 2 * MU) / (S ** 2 + sigma ** 2)


@functools.lru_cache(maxsize=None)
def _compiled(denoise, settings):
  return jax.jit(lambda z, k: diffusion.sample(denoise, z, k, **dict(settings)))


def run(latents, key=None, denoise=gaussian_denoiser, **settings):
  """The jitted sampler's samples; one jitted function per (denoise, settings), so tests that
  repeat settings and shapes reuse its compiled program (compiles dominate this file's time)."""
  return np.asarray(_compiled(denoise, tuple(sorted(settings.items())))(latents, key))


def exact_flow(latents, sigma_max):
  return MU + (np.asarray(latents, np.float64) * sigma_max - MU) * S / np.hypot(S, sigma_max)


def sigma_max_of(sampler):
  return diffusion.default_sigma_range(sampler)[1]


@pytest.fixture(scope='module')
def latents():
  """4096 images of 8×8×1: 262,144 independent pixels."""
  return jax.random.normal(jax.random.key(1), (4096, 8, 8, 1))


# NVlabs edm's own `edm_sampler` / `ablation_sampler` (generate.py at commit 008a4e5, float64
# state), run on 4 one-pixel latents with the Gaussian denoiser evaluated in float32, as
# EDMPrecond does. Recorded once with torch 2.13.0+cpu, numpy 2.4.6, Python 3.11.7 by a script
# that takes the two functions from generate.py (ast) and calls them, nothing else:
#   latents = torch.tensor([-2.0, -0.5, 0.7, 1.9]).reshape(4, 1, 1, 1)
#   net: sigma_min = 0, sigma_max = inf, round_sigma = identity,
#        net(x, sigma) = (S²·x + σ²·MU)/(S² + σ²) with x and σ cast to float32
#   heun          edm_sampler(net, latents)
#   heun_2_steps  edm_sampler(net, latents, num_steps=2)
#   euler         ablation_sampler(net, latents, solver='euler', discretization='edm',
#                                  schedule='linear', scaling='none')
#   ddim          ablation_sampler(net, latents, solver='euler', discretization='vp',
#                                  schedule='linear', scaling='none')
#   heun_churn    edm_sampler(net, latents, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003,
#                             randn_like=<call i returns official_noise(i, 4)>)
OFFICIAL = {
    'heun': [-0.7572277784347534, 0.03420909494161606, 0.6673586964607239, 1.3005083799362183],
    'heun_2_steps': [-79.8501968383789, -19.84991455078125, 28.150314331054688,
                     76.15054321289062],
    'euler': [-0.5476492047309874, 0.08689793944358824, 0.5945356488227845, 1.1021733283996582],
    'ddim': [-0.5465593934059143, 0.08773486316204071, 0.5951703786849976, 1.1026058197021484],
    'heun_churn': [0.2349824160337448, 0.31950846314430237, 0.2992711067199707,
                   0.3280740976333618],
}
OFFICIAL_SETTINGS = {
    'heun': {},
    'heun_2_steps': {'num_steps': 2},
    'euler': {'sampler': 'euler'},
    'ddim': {'sampler': 'ddim'},
    'heun_churn': {'S_churn': 40, 'S_min': 0.05, 'S_max': 50, 'S_noise': 1.003},
}
OFFICIAL_LATENTS = jnp.array([-2.0, -0.5, 0.7, 1.9]).reshape(4, 1, 1, 1)


def official_noise(step, num_samples):
  """The 'random' normals of step i given to the official sampler: 1.4·sin(1.7i + 2.3k + 0.5)."""
  k = jnp.arange(num_samples, dtype=jnp.float32)
  return 1.4 * jnp.sin(1.7 * step + 2.3 * k + 0.5)


@pytest.fixture
def official_noise_injected(monkeypatch):
  monkeypatch.setattr(diffusion, '_standard_normal', lambda key, step, shape, dtype: (
      official_noise(step, shape[0]).reshape(shape).astype(dtype)))


@pytest.mark.parametrize('case', sorted(OFFICIAL))
def test_matches_official_edm(case, official_noise_injected):
  # Not `run`: its cached programs must not keep the injected noise.
  settings = OFFICIAL_SETTINGS[case]
  sample = jax.jit(lambda z, k: diffusion.sample(gaussian_denoiser, z, k, **settings))
  out = np.asarray(sample(OFFICIAL_LATENTS, jax.random.key(0))).ravel()
  # Our float32 state against the official float64 one. Measured: ≤ 6e-7 for the 18-step runs
  # (outputs |x| ≤ 2; 1e-5 is ~80 float32 ulps there); 2.6e-4 for 2 steps, where the one Heun
  # step from |x| ≤ 160 at σ = 80 cancels most of x, so the bound is 1e-5 relative to 160.
  tolerance = 1e-5 * (160 if case == 'heun_2_steps' else 1)
  np.testing.assert_allclose(out, OFFICIAL[case], rtol=0, atol=tolerance)


def test_matches_official_edm_in_float64():
  with jax.enable_x64(True):
    out = diffusion.sample(gaussian_denoiser, OFFICIAL_LATENTS, None, num_steps=2)
    assert out.dtype == jnp.float64
  # With x64 the state is float64 as in the official code and the denoiser float32 in both: the
  # same arithmetic, so agreement to float64 rounding of |x| ≤ 160.
  np.testing.assert_allclose(np.ravel(out), OFFICIAL['heun_2_steps'], rtol=0, atol=1e-12)


def test_sigma_steps():
  sigmas = np.asarray(diffusion.sigma_steps(18))
  assert sigmas.shape == (19,) and sigmas.dtype == np.float32 and sigmas[-1] == 0
  np.testing.assert_allclose(sigmas[[0, 17]], [80, 0.002], rtol=1e-7)
  # EDM's spacing: σ^(1/ρ) is uniform in the step index.
  np.testing.assert_allclose(np.diff(sigmas[:-1].astype(np.float64) ** (1 / 7), 2), 0, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(diffusion.sigma_steps(1)), [80, 0])
  vp = np.asarray(diffusion.vp_steps(18), np.float64)
  t = np.linspace(1, 1e-3, 18)  # σ² = exp(½·19.9·t² + 0.1·t) − 1 of the VP SDE
  np.testing.assert_allclose(vp[:-1], np.sqrt(np.exp(0.5 * 19.9 * t ** 2 + 0.1 * t) - 1),
                             rtol=1e-6)
  assert vp[-1] == 0
  np.testing.assert_allclose(np.asarray(diffusion.vp_steps(5, 0.01, 100.))[[0, 4]], [100, 0.01],
                             rtol=1e-6)


def test_deterministic_samplers_follow_the_exact_flow(latents):
  errors = {}
  for sampler in ('heun', 'euler', 'ddim'):
    exact = exact_flow(latents, sigma_max_of(sampler))
    for num_steps in (18, 36):
      out = run(latents, sampler=sampler, num_steps=num_steps)
      errors[sampler, num_steps] = np.sqrt(np.mean(np.square(out - exact)))
  order = {s: np.log2(errors[s, 18] / errors[s, 36]) for s in ('heun', 'euler', 'ddim')}
  # Measured rms errors against the exact map: Heun 0.028 / 0.0061 (order 2.18), Euler 0.077 /
  # 0.039 (0.98), DDIM 0.077 / 0.039 (0.99). The orders are those of the methods (2 and 1) up to
  # the non-uniform steps; Heun's error at 18 steps is within 25 % of the measurement.
  assert 1.8 < order['heun'] < 2.5, order
  assert 0.8 < order['euler'] < 1.2 and 0.8 < order['ddim'] < 1.2, order
  assert errors['heun', 18] < 0.035, errors
  # Same steps, Euler (N evaluations) is worse than Heun (2N − 1) by more than their cost ratio.
  assert errors['euler', 18] > 2.5 * errors['heun', 18], errors


def test_heun_matches_the_data_distribution(latents):
  out = run(latents, num_steps=64)
  n = out.size
  exact = exact_flow(latents, 80.)
  flow_rms = np.sqrt(np.mean(np.square(out - exact)))
  assert flow_rms < 0.004  # second order: 0.028·(18/64)² ≈ 0.0022 expected
  # Tolerances: 4 standard errors of the estimate (s/√n, s/√(2n)) plus the known biases. The
  # mean: latents·σ_max have variance σ_max², not s² + σ_max², so even the exact flow gives
  # μ·(1 − s/√(s² + σ_max²)) = μ − 0.0019. The std: |std(out) − std(exact)| ≤ rms(out − exact).
  assert abs(out.mean() - MU) < 4 * S / np.sqrt(n) + MU * S / np.hypot(S, 80.)
  assert abs(out.std() - S) < 4 * S / np.sqrt(2 * n) + flow_rms


def edm_sigmas(num_steps):
  """EDM's discretisation (σ_max = 80, σ_min = 0.002, ρ = 7) and σ_N = 0, from the paper."""
  fraction = np.arange(num_steps) / max(num_steps - 1, 1)
  return np.append((80 ** (1 / 7) + fraction * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7, 0)


def edm_moments(sigmas, gamma, mean, var, S_noise=1.0, second_order=True):
  """Mean and variance of the output of EDM's Algorithm 2 for the Gaussian data, written from
  the paper: per step σ̂ = (1 + γ_i)·σ_i, x̂ = x + √(σ̂² − σ_i²)·S_noise·z, d = (x̂ − D(x̂; σ̂))/σ̂,
  x' = x̂ + (σ_{i+1} − σ̂)·d and, unless σ_{i+1} = 0 (or first order), x = x̂ + (σ_{i+1} − σ̂)·
  (d + d')/2 with d' the slope at (x', σ_{i+1}). With the ideal denoiser the step is an affine
  map f of x̂: the mean goes to f(mean), the variance is scaled by (f(1) − f(0))²."""
  slope = lambda x, sigma: (x - gaussian_denoiser(x, sigma)) / sigma
  for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
    sigma_hat = sigma * (1 + gamma[i])
    var = var + (sigma_hat ** 2 - sigma ** 2) * S_noise ** 2

    def f(x):
      x_euler = x + (sigma_next - sigma_hat) * slope(x, sigma_hat)
      if sigma_next == 0 or not second_order:
        return x_euler
      slopes = slope(x, sigma_hat) + slope(x_euler, sigma_next)
      return x + (sigma_next - sigma_hat) * 0.5 * slopes

    mean, var = f(mean), (f(1.0) - f(0.0)) ** 2 * var
  return mean, var


def churn(sigmas, S_churn, S_min=0.0, S_max=np.inf):
  num_steps = len(sigmas) - 1
  inside = (S_min <= sigmas[:-1]) & (sigmas[:-1] <= S_max)
  return np.where(inside, min(S_churn / num_steps, np.sqrt(2) - 1), 0.0)


def ddim_moments(sigmas, eta, mean, var):
  """Mean and variance of DDIM's output for the Gaussian data, from DDIM's own formulation
  (Song et al. 2021, eq. 12) in VP coordinates x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε with ᾱ = 1/(1 + σ²):
    x_{t−1} = √ᾱ_{t−1}·x̂₀ + √(1 − ᾱ_{t−1} − s_t²)·ε̂ + s_t·z,
    s_t = η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}).
  With the ideal denoiser x̂₀ is affine in x_t, so each step is x ← A·x + B + s_t·z. `mean` and
  `var` are those of the sampler's start, x = latents·σ_0, in EDM's coordinates."""
  alpha = 1 / (1 + np.asarray(sigmas, np.float64) ** 2)
  mean, var = mean * np.sqrt(alpha[0]), var * alpha[0]
  for sigma, a_t, a_prev in zip(sigmas[:-1], alpha[:-1], alpha[1:]):
    gain, offset = S ** 2 / (S ** 2 + sigma ** 2), sigma ** 2 * MU / (S ** 2 + sigma ** 2)
    x0_a, x0_b = gain / np.sqrt(a_t), offset                     # x̂₀ = D(x_t/√ᾱ_t; σ)
    eps_a = (1 - np.sqrt(a_t) * x0_a) / np.sqrt(1 - a_t)          # ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t)
    eps_b = -np.sqrt(a_t) * x0_b / np.sqrt(1 - a_t)
    s_t = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)
    direction = np.sqrt(1 - a_prev - s_t ** 2)
    a = np.sqrt(a_prev) * x0_a + direction * eps_a
    b = np.sqrt(a_prev) * x0_b + direction * eps_b
    mean, var = a * mean + b, a ** 2 * var + s_t ** 2
  return mean, var  # ᾱ = 1 at σ = 0: EDM's coordinates again


def vp_sigmas(num_steps):
  t = np.linspace(1, 1e-3, num_steps)
  return np.append(np.sqrt(np.exp(0.5 * 19.9 * t ** 2 + 0.1 * t) - 1), 0)


def test_reference_moments_converge_to_the_data():
  # The two yardsticks above are consistent samplers: with many steps they reach N(μ, s²), so
  # they are fair references, with the rates of their orders (measured: stochastic Heun's std
  # +0.062, +0.0010, +6e-5 at 18, 256, 1024 steps; stochastic Euler −0.11, −0.0063 at 18, 1024).
  sigmas = edm_sigmas(1024)
  for second_order, tolerance in ((True, 2e-4), (False, 0.008)):
    mean, var = edm_moments(sigmas, churn(sigmas, 40), 0.0, 80.0 ** 2, second_order=second_order)
    assert abs(mean - MU) < 1e-6 and abs(np.sqrt(var) - S) < tolerance, (second_order, var)
  sigmas = vp_sigmas(4096)
  for eta in (0, 0.5, 1):
    # The deterministic flow keeps the start's prior mismatch, μ·s/σ_max ≈ 0.001 in the mean.
    mean, var = ddim_moments(sigmas, eta, 0.0, sigmas[0] ** 2)
    assert abs(mean - MU) < 0.0015 and abs(np.sqrt(var) - S) < 0.003, (eta, mean, var)


def assert_moments(out, mean, var):
  """Sample moments of `out` against a Gaussian's, within 4 standard errors: √(var/n) for the
  mean and √(var/(2n)) for the std (≤ 0.0014 for 65,536 pixels). A wrong noise scale would
  show: the stds of the stochastic variants here differ from the deterministic ones' by 0.008
  (ddim with η = 0.5) to 0.044, 6 to 30 standard errors."""
  n = out.size
  assert abs(out.mean() - mean) < 4 * np.sqrt(var / n), (out.mean(), mean)
  assert abs(out.std() - np.sqrt(var)) < 4 * np.sqrt(var / (2 * n)), (out.std(), np.sqrt(var))


@pytest.mark.parametrize('sampler', ['heun', 'euler'])
def test_stochastic_edm_matches_algorithm_2s_distribution(latents, sampler):
  """The churned sampler (the paper's ImageNet-64 settings) with real noise against its exact
  output distribution; 18 steps leave it 0.06 (Heun) or 0.11 (Euler) from s, which is what
  the samples must show: 1024 images, 65,536 pixels."""
  settings = {'S_churn': 40, 'S_min': 0.05, 'S_max': 50, 'S_noise': 1.003}
  out = run(latents[:1024], jax.random.key(3), sampler=sampler, num_steps=18, **settings)
  start = np.asarray(latents[:1024], np.float64) * 80
  sigmas = edm_sigmas(18)
  mean, var = edm_moments(sigmas, churn(sigmas, 40, 0.05, 50), start.mean(), start.var(),
                          S_noise=1.003, second_order=sampler == 'heun')
  assert_moments(out, mean, var)


def test_ddim_and_ddpm_match_ddims_own_formulation(latents):
  """18 steps leave the std far from s (−0.078 for η = 0, −0.12 for DDPM): the samples must show
  this discrete chain's moments, computed from the start's sample moments."""
  sigmas = vp_sigmas(18)
  start = np.asarray(latents[:1024], np.float64) * sigmas[0]
  outputs = {}
  for eta, settings in ((0.0, {'sampler': 'ddim'}), (0.5, {'sampler': 'ddim', 'eta': 0.5}),
                        (1.0, {'sampler': 'ddim', 'eta': 1.0}), (1.0, {'sampler': 'ddpm'})):
    out = run(latents[:1024], jax.random.key(4), num_steps=18, **settings)
    assert_moments(out, *ddim_moments(sigmas, eta, start.mean(), start.var()))
    outputs[settings['sampler'], eta] = out
  np.testing.assert_array_equal(outputs['ddpm', 1.0], outputs['ddim', 1.0])  # DDPM is η = 1


def test_key_determines_the_samples(latents):
  z = latents[:8]
  for settings in ({'S_churn': 10.0, 'num_steps': 6},
                   {'sampler': 'ddim', 'eta': 0.5, 'num_steps': 6}):
    first = run(z, jax.random.key(7), **settings)
    np.testing.assert_array_equal(first, run(z, jax.random.key(7), **settings))
    other = run(z, jax.random.key(8), **settings)
    assert np.all(np.abs(first - other).max(axis=(1, 2, 3)) > 1e-3)  # every sample changes
  np.testing.assert_array_equal(first, run(z, jax.random.PRNGKey(7), **settings))  # a raw key


def test_per_sample_keys_make_samples_independent_of_the_batch(latents):
  z, keys = latents[:8], jax.random.split(jax.random.key(9), 8)
  settings = {'sampler': 'ddim', 'eta': 0.5, 'num_steps': 6}
  whole = run(z, keys, **settings)
  # Samples 0-3 keep their latents and keys; the rest of the batch is replaced and reordered.
  others = jax.random.split(jax.random.key(10), 4)
  mixed = run(jnp.concatenate([z[:4], latents[8:12]]), jnp.concatenate([keys[:4], others]),
              **settings)
  np.testing.assert_array_equal(mixed[:4], whole[:4])
  assert np.abs(mixed[4:] - whole[4:]).max() > 1e-3 and np.abs(whole[0] - whole[1]).max() > 1e-3


def test_stochastic_settings_need_a_key(latents):
  with pytest.raises(ValueError, match='PRNG key'):
    diffusion.sample(gaussian_denoiser, latents[:2], None, sampler='ddpm', num_steps=3)


@pytest.mark.parametrize('settings', [
    {'num_steps': 4, 'S_churn': 3.0}, {'num_steps': 1}, {'sampler': 'euler', 'num_steps': 3},
    {'sampler': 'ddim', 'num_steps': 3}])
def test_num_evaluations_counts_denoiser_calls(settings):
  """Counts the calls the compiled program makes (an ordered host callback in the denoiser, so
  a call in Heun's skipped last correction would show) and the σ each one sees."""
  calls = []

  def counting_denoiser(x, sigma):
    jax.debug.callback(lambda s: calls.append(float(s)), sigma, ordered=True)
    return gaussian_denoiser(x, sigma)

  run(jnp.ones((2, 2, 2, 1)), jax.random.key(0), denoise=counting_denoiser, **settings)
  sampler, num_steps = settings.get('sampler', 'heun'), settings['num_steps']
  assert len(calls) == diffusion.num_evaluations(sampler, num_steps)
  sigmas = edm_sigmas(num_steps) if sampler in ('heun', 'euler') else vp_sigmas(num_steps)
  # σ̂_i = (1 + γ_i)·σ_i for the first evaluation of step i; Heun's second is at σ_{i+1}.
  first = sigmas[:-1] * (1 + churn(sigmas, settings.get('S_churn', 0.0)))
  expected = []
  for i in range(num_steps):
    expected += [first[i], sigmas[i + 1]] if sampler == 'heun' else [first[i]]
  if sampler == 'heun':
    expected = expected[:-1]  # no correction at σ_N = 0
  np.testing.assert_allclose(calls, expected, rtol=1e-6)


@pytest.mark.parametrize('settings, message', [
    ({'sampler': 'dpm'}, "sampler='dpm' is unknown: choose one of heun, euler, ddim, ddpm"),
    ({'num_steps': 0}, 'num_steps=0 must be an integer >= 1'),
    ({'num_steps': 2.5}, 'num_steps=2.5 must be an integer >= 1'),
    ({'sigma_min': 0.0}, 'sigma_min=0.0 must be > 0'),
    ({'sigma_min': -1.0}, 'sigma_min=-1.0 must be > 0'),
    ({'sigma_min': 80.0, 'sigma_max': 80.0}, 'sigma_max=80.0 must be finite and > sigma_min=80.0'),
    ({'sigma_max': float('inf')}, 'sigma_max=inf must be finite'),
    ({'sampler': 'ddim', 'sigma_min': 200.0}, 'sigma_max=152.166'),
    ({'rho': 0.0}, 'rho=0.0 must be > 0'),
    ({'S_churn': -1.0}, 'S_churn=-1.0 must be >= 0'),
    ({'S_noise': -0.5}, 'S_noise=-0.5 must be >= 0'),
    ({'S_min': 2.0, 'S_max': 1.0}, 'S_min=2.0 > S_max=1.0'),
    ({'sampler': 'ddim', 'eta': 1.5}, 'eta=1.5 is outside [0, 1]'),
    ({'sampler': 'ddim', 'eta': -0.1}, 'eta=-0.1 is outside [0, 1]'),
    ({'sampler': 'ddim', 'eta': float('nan')}, 'eta=nan is outside [0, 1]'),
    ({'sampler': 'heun', 'eta': 0.5}, 'eta=0.5 applies to the ddim sampler only, not heun'),
    ({'sampler': 'ddpm', 'eta': 0.5}, 'eta=0.5 applies to the ddim sampler only, not ddpm'),
    ({'sampler': 'ddim', 'S_churn': 1.0}, 'S_churn=1.0 applies to heun and euler only'),
    ({'sampler': 'ddpm', 'epsilon_s': 1.0}, 'epsilon_s=1.0 must be in (0, 1)'),
])
def test_check_settings_refuses_with_one_line(settings, message):
  with pytest.raises(UserError) as raised:
    diffusion.check_settings(**settings, prefix='sample.')
  assert str(raised.value).startswith('sample.') and message in str(raised.value)
  assert '\n' not in str(raised.value)
  with pytest.raises(UserError):  # sample() checks too, before tracing anything
    diffusion.sample(gaussian_denoiser, jnp.zeros((1, 1, 1, 1)), None, **settings)


def test_check_settings_accepts_the_defaults():
  for sampler in diffusion.SAMPLERS:
    diffusion.check_settings(sampler)
  diffusion.check_settings('heun', num_steps=1, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)
  diffusion.check_settings('ddim', num_steps=50, eta=1.0, sigma_min=0.002, sigma_max=80.0)


def test_batch_sharded_over_devices(repo):
  """On 4 (CPU) devices a batch sharded along N stays sharded through the sampler and gives the
  samples of the unsharded batch."""
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from jaxgen.samplers import diffusion
      assert jax.device_count() == 4
      denoise = lambda x, sigma: (0.25 * x + sigma ** 2 * 0.3) / (0.25 + sigma ** 2)
      fn = jax.jit(lambda z, k: diffusion.sample(denoise, z, k, sampler='ddpm', num_steps=4))
      z, key = jax.random.normal(jax.random.key(0), (8, 4, 4, 1)), jax.random.key(1)
      sharding = NamedSharding(Mesh(np.array(jax.devices()), ('data',)), P('data'))
      sharded = fn(jax.device_put(z, sharding), key)
      assert sharded.sharding.is_equivalent_to(sharding, 4), sharded.sharding
      np.testing.assert_allclose(np.asarray(sharded), np.asarray(fn(jax.device_put(
          z, jax.devices()[0]), key)), rtol=0, atol=1e-6)
      print('ok')
  ''')
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count=4 {env.get("XLA_FLAGS", "")}'
  env['JAX_PLATFORMS'] = 'cpu'
  result = subprocess.run([sys.executable, '-c', script], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]
