"""Diffusion samplers in EDM's framework (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"; the maths of `edm_sampler` and `ablation_sampler` in NVlabs'
`generate.py`), each one compiled program: a `lax.fori_loop` over a σ table computed up front.

Coordinates. x is an image in EDM's unscaled ("variance exploding") coordinates, x = x₀ + σ·n,
n ~ N(0, I), and the model enters as its denoiser D(x; σ) ≈ E[x₀ | x] (a preconditioned network
such as EDMPrecond). The probability-flow ODE is then dx/dσ = (x − D(x; σ)) / σ. A VP model's
x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε is the same point divided by √(1 + σ²), with σ² = (1 − ᾱ)/ᾱ.

  heun   EDM's Algorithm 2: N steps on the σ discretisation
           σ_i = (σ_max^(1/ρ) + i/(N − 1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,  σ_N = 0,
         each an Euler step plus Heun's second-order correction, except the last (to σ = 0),
         so 2N − 1 evaluations of D. With S_churn > 0 the stochastic sampler: before step i,
         σ̂ = σ_i·(1 + γ) with γ = min(S_churn/N, √2 − 1) where S_min ≤ σ_i ≤ S_max (else 0),
         and x̂ = x + √(σ̂² − σ_i²)·S_noise·z.
  euler  the same discretisation and churn, first order only: N evaluations.
  ddim   DDIM (Song et al. 2021) with η on the VP discretisation of the ablation sampler: t
         uniform from 1 to ε_s, σ_i = σ_VP(t_i), σ_N = 0. In σ-space (see `ddim_coefficients`)
         η = 0 is exactly the Euler step x + (σ_next − σ)·(x − D)/σ: the deterministic DDIM is
         `ablation_sampler(solver='euler', discretization='vp', schedule='linear',
         scaling='none')`. N evaluations.
  ddpm   ancestral DDPM sampling (Ho et al. 2020, posterior variance β̃): DDIM with η = 1.

Every step's scalars (σ, σ̂, churn and DDIM coefficients) are computed once in float64 with NumPy
and stored in the state's dtype; the loop body does only element-wise arithmetic on x outside
`denoise`, so a batch sharded over devices stays sharded and the program is the same for every
batch. Noise for step i is drawn from `fold_in(key, i)` (or from each sample's own key): the
samples are a function of the latents and the key only. Every sampler starts at x = latents·σ_0,
as the official ones do (so x_T has variance σ_max², not σ_max² + Var x₀). One step (N = 1) goes
from σ_max straight to 0, one Euler step (the official formula would divide by N − 1 = 0).

Noise range. σ_min/σ_max default to the discretisation's own (`default_sigma_range`): EDM's
(0.002, 80) for heun and euler, the VP SDE's (σ(ε_s), σ(1)) ≈ (0.0105, 152) for ddim and ddpm. For
the VP discretisation a given range refits β_d and β_min through it, as `ablation_sampler` does.

Precision. The official code keeps x in float64 (the network itself runs in float32). JAX
computes in float32 unless `jax_enable_x64` is on; then the state is float64 as there. In float32
the σ table is the official one rounded to float32 (relative error ≤ 6e-8) and x accumulates one
float32 rounding per operation: against the official float64 sampler with the same float32
denoiser the samples differ by ~1e-6 of their scale (`tests/test_samplers.py` measures it), far
below what the float32 network itself contributes. With x64 they agree to float64 rounding.

Settings are Python numbers, fixed when the sampler is traced (`check_settings` refuses bad ones
with one line). The official code clamps σ_min and σ_max to what the network supports
(`max(sigma_min, net.sigma_min)`); callers do that before calling here.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import UserError

SAMPLERS = ('heun', 'euler', 'ddim', 'ddpm')

# EDM's defaults for its σ discretisation (Table 1 of the paper, `edm_sampler`).
EDM_SIGMA_MIN = 0.002
EDM_SIGMA_MAX = 80.0
# The VP SDE's schedule (Song et al. 2021b): σ(t)² = exp(½·β_d·t² + β_min·t) − 1, t ∈ [ε_s, 1].
VP_BETA_D = 19.9
VP_BETA_MIN = 0.1
VP_EPSILON_S = 1e-3


def vp_sigma(t, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN):
  """σ(t) of the VP SDE, √(exp(½·β_d·t² + β_min·t) − 1), in float64 (NumPy)."""
  t = np.asarray(t, np.float64)
  return np.sqrt(np.expm1(0.5 * beta_d * t ** 2 + beta_min * t))


def default_sigma_range(sampler):
  """(σ_min, σ_max) of a sampler's discretisation when none is given: EDM's (0.002, 80) for heun
  and euler, the VP SDE's (σ(ε_s), σ(1)) ≈ (0.0105, 152.2) for ddim and ddpm (as
  `ablation_sampler` chooses them). Callers clamp them to the network's range."""
  if sampler in ('heun', 'euler'):
    return EDM_SIGMA_MIN, EDM_SIGMA_MAX
  return float(vp_sigma(VP_EPSILON_S)), float(vp_sigma(1.0))


def _edm_sigmas(num_steps, sigma_min, sigma_max, rho):
  """[num_steps + 1] float64: EDM's discretisation and σ_N = 0. One step goes σ_max → 0 (the
  official formula divides by num_steps − 1)."""
  fraction = np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1)
  top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
  return np.append((top + fraction * (bottom - top)) ** rho, 0.0)


def _vp_sigmas(num_steps, sigma_min, sigma_max, epsilon_s):
  """[num_steps + 1] float64: the VP discretisation and σ_N = 0. β_d and β_min are those of the VP
  curve through (ε_s, σ_min) and (1, σ_max), as in `ablation_sampler`; with the default range
  they are 19.9 and 0.1 again."""
  log_top, log_bottom = np.log1p(sigma_max ** 2), np.log1p(sigma_min ** 2)
  beta_d = 2 * (log_bottom / epsilon_s - log_top) / (epsilon_s - 1)
  beta_min = log_top - 0.5 * beta_d
  t = 1 + np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1) * (epsilon_s - 1)
  return np.append(vp_sigma(t, beta_d, beta_min), 0.0)


def _state_dtype():
  return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def sigma_steps(num_steps, sigma_min=EDM_SIGMA_MIN, sigma_max=EDM_SIGMA_MAX, rho=7.0):
  """EDM's noise levels σ_0 = σ_max > … > σ_{N−1} = σ_min and σ_N = 0: [num_steps + 1], computed
  in float64 and returned in JAX's default float dtype (float32 unless x64 is on)."""
  return jnp.asarray(_edm_sigmas(num_steps, sigma_min, sigma_max, rho), _state_dtype())


def vp_steps(num_steps, sigma_min=None, sigma_max=None, epsilon_s=VP_EPSILON_S):
  """The VP discretisation (ddim, ddpm): σ_i = σ_VP(t_i) with t uniform from 1 to ε_s, then
  σ_N = 0: [num_steps + 1]. Without a range, β_d = 19.9 and β_min = 0.1; with one, the VP curve
  through (ε_s, σ_min) and (1, σ_max)."""
  default_min, default_max = default_sigma_range('ddim')
  sigmas = _vp_sigmas(num_steps, default_min if sigma_min is None else sigma_min,
                      default_max if sigma_max is None else sigma_max, epsilon_s)
  return jnp.asarray(sigmas, _state_dtype())


def ddim_coefficients(sigmas, eta):
  """Per-step (r, c) of the DDIM update in σ-space, x_next = D + r·(x − D) + c·z, z ~ N(0, I).

  DDIM's step on x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, with ε̂ its noise estimate and x̂₀ = D, is
    x_{t−1} = √ᾱ_{t−1}·x̂₀ + √(1 − ᾱ_{t−1} − s²)·ε̂ + s·z,
    s = η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}).
  Divide by √ᾱ_{t−1}: with ᾱ = 1/(1 + σ²) the point x/√ᾱ is x₀ + σ·ε (our x), (1 − ᾱ_{t−1})/ᾱ_{t−1}
  = σ_next², and ε̂ = (x − D)/σ, so
    x_next = D + √(σ_next² − c²)·(x − D)/σ + c·z,   c = s/√ᾱ_{t−1}.
  In c² = η²·σ_next²·(1 − ᾱ_t/ᾱ_{t−1})/(1 − ᾱ_t), the ratio is ((σ² − σ_next²)/(1 + σ²)) /
  (σ²/(1 + σ²)), hence c = η·σ_next·√(1 − σ_next²/σ²) and r = √(σ_next² − c²)/σ.

  η = 0: r = σ_next/σ, c = 0, the Euler step of the ODE. η = 1: r = σ_next²/σ² and
  c² = σ_next²(σ² − σ_next²)/σ², the Gaussian posterior of x_next given x and x₀ = D under the
  forward chain x = x_next + √(σ² − σ_next²)·z, which is DDPM's ancestral step. The last step
  (σ_next = 0) returns D for every η.

  Args:
    sigmas: [N + 1] float64, decreasing, σ_N = 0.
    eta: in [0, 1].

  Returns:
    (r [N], c [N]) float64.
  """
  sigma, sigma_next = sigmas[:-1], sigmas[1:]
  c = eta * sigma_next * np.sqrt(1 - (sigma_next / sigma) ** 2)
  r = np.sqrt(np.maximum(sigma_next ** 2 - c ** 2, 0.0)) / sigma
  return r, c


def num_evaluations(sampler, num_steps):
  """Denoiser evaluations per sample: 2N − 1 for heun, N for the others."""
  return 2 * num_steps - 1 if sampler == 'heun' else num_steps


def check_settings(sampler='heun', num_steps=18, sigma_min=None, sigma_max=None, rho=7.0,
                   S_churn=0.0, S_min=0.0, S_max=float('inf'), S_noise=1.0, eta=0.0,
                   epsilon_s=VP_EPSILON_S, prefix=''):
  """Raises UserError (one line naming the setting, `prefix` before its name, e.g. 'sample.')
  for settings no sampler runs with; σ_min/σ_max None mean `default_sigma_range(sampler)`.
  Options that another sampler would ignore are refused too (eta ≠ 0 with heun, S_churn > 0
  with ddim), rather than silently doing nothing."""
  if sampler not in SAMPLERS:
    raise UserError(f'{prefix}sampler={sampler!r} is unknown: choose one of {", ".join(SAMPLERS)}')
  if not isinstance(num_steps, numbers.Integral) or isinstance(num_steps, bool) or num_steps < 1:
    raise UserError(f'{prefix}num_steps={num_steps!r} must be an integer >= 1 (noise levels '
                    'from sigma_max down to sigma_min)')
  default_min, default_max = default_sigma_range(sampler)
  low = default_min if sigma_min is None else sigma_min
  high = default_max if sigma_max is None else sigma_max
  if not low > 0:  # also refuses NaN
    raise UserError(f'{prefix}sigma_min={low} must be > 0 (the lowest noise level before the '
                    'final step to 0)')
  if not (math.isfinite(high) and high > low):
    raise UserError(f'{prefix}sigma_max={high} must be finite and > sigma_min={low}')
  if not rho > 0:
    raise UserError(f'{prefix}rho={rho} must be > 0 (the exponent of the noise-level spacing)')
  for name, value in (('S_churn', S_churn), ('S_min', S_min), ('S_max', S_max),
                      ('S_noise', S_noise)):
    if not value >= 0:
      raise UserError(f'{prefix}{name}={value} must be >= 0')
  if S_min > S_max:
    raise UserError(f'{prefix}S_min={S_min} > S_max={S_max}: no noise level could get churn')
  if S_churn > 0 and sampler not in ('heun', 'euler'):
    raise UserError(f'{prefix}S_churn={S_churn} applies to heun and euler only, not {sampler} '
                    '(ddim has eta; ddpm is always stochastic)')
  if not 0 <= eta <= 1:
    raise UserError(f'{prefix}eta={eta} is outside [0, 1] (0: deterministic DDIM, 1: DDPM)')
  if eta != 0 and sampler != 'ddim':
    raise UserError(f'{prefix}eta={eta} applies to the ddim sampler only, not {sampler}')
  if sampler in ('ddim', 'ddpm') and not 0 < epsilon_s < 1:
    raise UserError(f'{prefix}epsilon_s={epsilon_s} must be in (0, 1) (the VP time of the '
                    'lowest noise level)')


def _standard_normal(key, step, shape, dtype):
  """z ~ N(0, I) of `shape` for loop step `step`: from fold_in(key, step), or with one key per
  sample ([N] keys) from each sample's own key, so that a sample does not depend on its batch."""
  if key.ndim == 0:
    return jax.random.normal(jax.random.fold_in(key, step), shape, dtype)
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), shape[1:], dtype))(key)


def sample(denoise, latents, key, *, sampler='heun', num_steps=18, sigma_min=None,
           sigma_max=None, rho=7.0, S_churn=0.0, S_min=0.0, S_max=float('inf'), S_noise=1.0,
           eta=0.0, epsilon_s=VP_EPSILON_S):
  """Samples x₀ from the denoiser: x at σ_0 = σ_max is latents·σ_max, then `num_steps` steps.

  Jit the caller with `denoise` closed over (parameters, class labels, guidance): everything
  here traces into one program, a `lax.fori_loop` over the steps.

  Args:
    denoise: (x float32 [N, H, W, C], sigma float32 scalar) → D(x; σ) [N, H, W, C] (any float
      dtype), the denoised image in the same unscaled coordinates as x (x = x₀ + σ·n).
    latents: [N, H, W, C] standard normal (one image shape per sample).
    key: a PRNG key (typed or raw), or [N] keys, one per sample (each sample's noise then
      depends on its own key only). Only the stochastic settings use it (S_churn > 0, ddim with
      eta > 0, ddpm); None is allowed for the deterministic ones.
    sampler: one of SAMPLERS (see the module docstring).
    num_steps: N noise levels before the final 0.
    sigma_min, sigma_max: the discretisation's range; None: `default_sigma_range(sampler)`.
    rho: EDM's spacing exponent (heun, euler).
    S_churn, S_min, S_max, S_noise: EDM's stochastic sampler (heun, euler).
    eta: DDIM's stochasticity in [0, 1] (ddim; ddpm is η = 1).
    epsilon_s: the VP time of σ_min (ddim, ddpm).

  Returns:
    x₀ [N, H, W, C], float32 (float64 when x64 is on).
  """
  check_settings(sampler, num_steps, sigma_min, sigma_max, rho, S_churn, S_min, S_max, S_noise,
                 eta, epsilon_s)
  default_min, default_max = default_sigma_range(sampler)
  sigma_min = default_min if sigma_min is None else float(sigma_min)
  sigma_max = default_max if sigma_max is None else float(sigma_max)
  dtype = _state_dtype()
  x = jnp.asarray(latents).astype(dtype)

  if sampler in ('heun', 'euler'):
    sigmas = _edm_sigmas(num_steps, sigma_min, sigma_max, rho)
    sigma = sigmas[:-1]
    gamma = np.where((S_min <= sigma) & (sigma <= S_max),
                     min(S_churn / num_steps, math.sqrt(2) - 1), 0.0)
    sigma_hat = sigma + gamma * sigma
    churn = np.sqrt(sigma_hat ** 2 - sigma ** 2) * S_noise
    stochastic = bool(np.any(churn > 0))
  else:
    sigmas = _vp_sigmas(num_steps, sigma_min, sigma_max, epsilon_s)
    r, c = ddim_coefficients(sigmas, 1.0 if sampler == 'ddpm' else eta)
    stochastic = bool(np.any(c > 0))
  if stochastic and key is None:
    raise ValueError(f'sampler {sampler!r} with these settings is stochastic: give a PRNG key')
  if stochastic and not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)

  table = lambda values: jnp.asarray(values, dtype)
  sigmas_t = table(sigmas)

  def denoised(x, sigma):
    return denoise(x.astype(jnp.float32), sigma.astype(jnp.float32)).astype(dtype)

  if sampler in ('heun', 'euler'):
    sigma_hat_t, churn_t = table(sigma_hat), table(churn)

    def step(i, x):
      sigma_next, sigma_hat = sigmas_t[i + 1], sigma_hat_t[i]
      if stochastic:  # x at σ̂ ≥ σ_i: add the missing noise
        x = x + churn_t[i] * _standard_normal(key, i, x.shape, dtype)
      slope = (x - denoised(x, sigma_hat)) / sigma_hat        # dx/dσ at (x̂, σ̂)
      x_euler = x + (sigma_next - sigma_hat) * slope
      if sampler == 'euler':
        return x_euler

      def heun():  # the trapezoidal rule with the slope at the Euler point
        slope_next = (x_euler - denoised(x_euler, sigma_next)) / sigma_next
        return x + (sigma_next - sigma_hat) * (0.5 * slope + 0.5 * slope_next)

      # No correction on the last step: the slope at σ = 0 is undefined.
      return jax.lax.cond(i < num_steps - 1, heun, lambda: x_euler)
  else:
    r_t, c_t = table(r), table(c)

    def step(i, x):
      d = denoised(x, sigmas_t[i])
      x_next = d + r_t[i] * (x - d)
      if stochastic:
        x_next = x_next + c_t[i] * _standard_normal(key, i, x.shape, dtype)
      return x_next

  return jax.lax.fori_loop(0, num_steps, step, x * sigmas_t[0])
