"""The preconditionings of EDM (Karras et al. 2022, Table 1): a raw network F made a denoiser

  D(x; σ) = c_skip(σ) · x + c_out(σ) · F(c_in(σ) · x; c_noise(σ)),

for x = y + n, n ~ N(0, σ² I). c_in scales the network's input to unit variance, c_out and
c_skip make F's target unit variance (EDM) or make F predict the noise (VP: −ε, VE: the score
direction), c_noise is the noise label F is conditioned on. As NVlabs `edm`'s `EDMPrecond`,
`VPPrecond` and `VEPrecond` (training/networks.py):

  kind  c_skip           c_out                c_in              c_noise
  vp    1                −σ                   1/√(σ² + 1)       (M − 1) · σ⁻¹(σ)
  ve    1                σ                    1                 ln(σ/2)
  edm   σd²/(σ² + σd²)   σ σd/√(σ² + σd²)     1/√(σ² + σd²)     ln(σ)/4

with VP's noise schedule σ(t) = √(exp(½ β_d t² + β_min t) − 1) and σ_d = sigma_data. Each kind
supports a σ range (`sigma_range`) that samplers clamp theirs to: VP [σ(ε_t), σ(1)], VE
[0.02, 100], EDM [0, ∞).

The coefficients and D are float32; F runs in its own compute dtype (SongUNet.dtype).

Usage:

  net = Precond(kind='edm', model=songunet.SongUNet(img_resolution=32, in_channels=3,
                                                    out_channels=3, channel_mult=(2, 2, 2)))
  variables = songunet.init_songunet(net, jax.random.key(0))
  denoised = net.apply(variables, x, sigma)          # x [N, 32, 32, 3], sigma [N] → [N, 32, 32, 3]
"""

import math
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.errors import UserError
from jaxgen.models import edm2unet

KINDS = ('edm', 'vp', 've')

# The official defaults.
SIGMA_DATA = 0.5
VP_BETA_D, VP_BETA_MIN, VP_M, VP_EPSILON_T = 19.9, 0.1, 1000, 1e-5
VE_SIGMA_MIN, VE_SIGMA_MAX = 0.02, 100.0
EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.0, math.inf


def check_kind(kind):
  if kind not in KINDS:
    raise UserError(f'preconditioning {kind!r} is not one of {", ".join(KINDS)}')


def vp_sigma(t, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN):
  """VP's noise level at time t ∈ [0, 1]: σ(t) = √(exp(½ β_d t² + β_min t) − 1).

  expm1 here and log1p in `vp_sigma_inv` where the official code writes exp(·) − 1 and
  log(1 + ·): the same functions, without float32's cancellation at small t (σ(ε_t) ≈ 0.001
  would otherwise carry a ~1% error)."""
  t = jnp.asarray(t, jnp.float32)
  return jnp.sqrt(jnp.expm1(0.5 * beta_d * t ** 2 + beta_min * t))


def vp_sigma_inv(sigma, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN):
  """t(σ), the inverse of `vp_sigma`: (√(β_min² + 2 β_d ln(1 + σ²)) − β_min) / β_d, the root of
  ½ β_d t² + β_min t = ln(1 + σ²).

  Computed as 2 ln(1 + σ²) / (√(β_min² + 2 β_d ln(1 + σ²)) + β_min), the same number without
  the subtraction of two nearly equal square roots at small σ."""
  sigma = jnp.asarray(sigma, jnp.float32)
  u = jnp.log1p(sigma ** 2)
  return 2 * u / (jnp.sqrt(beta_min ** 2 + 2 * beta_d * u) + beta_min)


def sigma_range(kind, sigma_min=None, sigma_max=None, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN,
                epsilon_t=VP_EPSILON_T):
  """(σ_min, σ_max) as Python floats, the noise levels a kind supports (the official Precond's
  `sigma_min`/`sigma_max`): EDM [0, ∞) and VE [0.02, 100] unless given; VP [σ(ε_t), σ(1)]."""
  check_kind(kind)
  if kind == 'vp':
    return (float(vp_sigma(epsilon_t, beta_d, beta_min)), float(vp_sigma(1.0, beta_d, beta_min)))
  lo, hi = (EDM_SIGMA_MIN, EDM_SIGMA_MAX) if kind == 'edm' else (VE_SIGMA_MIN, VE_SIGMA_MAX)
  return (float(lo if sigma_min is None else sigma_min),
          float(hi if sigma_max is None else sigma_max))


def coefficients(kind, sigma, sigma_data=SIGMA_DATA, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN,
                 M=VP_M):
  """(c_skip, c_out, c_in, c_noise), each float32 of sigma's shape (see the module's table)."""
  check_kind(kind)
  sigma = jnp.asarray(sigma, jnp.float32)
  one = jnp.ones_like(sigma)
  if kind == 'vp':
    return one, -sigma, 1 / jnp.sqrt(sigma ** 2 + 1), (M - 1) * vp_sigma_inv(sigma, beta_d,
                                                                              beta_min)
  if kind == 've':
    return one, sigma, one, jnp.log(0.5 * sigma)
  sd2 = sigma_data ** 2
  return (sd2 / (sigma ** 2 + sd2), sigma * sigma_data / jnp.sqrt(sigma ** 2 + sd2),
          1 / jnp.sqrt(sd2 + sigma ** 2), jnp.log(sigma) / 4)


class Precond(nn.Module):
  """The denoiser D(x; σ) of a preconditioning `kind` around a network `model` (a SongUNet).

  `model` is a submodule, so its variables sit under 'model' as the official Precond's state
  dict puts them under 'model.'. label_dim (None = the model's) must match the model's.
  sigma_min/sigma_max (EDM and VE) only change `sigma_range`, as in the official code.
  """
  model: nn.Module
  kind: str = 'edm'
  label_dim: Optional[int] = None
  sigma_data: float = SIGMA_DATA
  sigma_min: Optional[float] = None
  sigma_max: Optional[float] = None
  beta_d: float = VP_BETA_D
  beta_min: float = VP_BETA_MIN
  M: int = VP_M
  epsilon_t: float = VP_EPSILON_T
  # EDM2's learned uncertainty u(σ) (Karras et al. 2024, Eq. 21): a linear map of this many
  # magnitude-preserving Fourier features of c_noise (0 = none, as EDM). Its loss is 'edm2'.
  logvar_channels: int = 0

  def sigma_range(self):
    """(σ_min, σ_max) of this preconditioning (works on an unbound module)."""
    return sigma_range(self.kind, self.sigma_min, self.sigma_max, self.beta_d, self.beta_min,
                       self.epsilon_t)

  @nn.compact
  def __call__(self, x, sigma, class_labels=None, augment_labels=None, train=False,
               return_logvar=False):
    """x [N, R, R, C] noisy images, sigma [N] or scalar noise levels, class_labels one-hot
    [N, label_dim] (None = zeros, the unconditional branch of classifier-free guidance),
    augment_labels [N, augment_dim] or None → D(x; σ) float32 [N, R, R, C]; with
    `return_logvar` (needs logvar_channels > 0), (D, u(σ) float32 [N, 1, 1, 1])."""
    check_kind(self.kind)
    model_labels = self.model.label_dim
    if self.label_dim is not None and self.label_dim != model_labels:
      raise UserError(f'Precond: label_dim={self.label_dim} but its model has label_dim='
                      f'{model_labels}')
    x = x.astype(jnp.float32)
    n = x.shape[0]
    sigma = jnp.broadcast_to(jnp.reshape(jnp.asarray(sigma, jnp.float32), (-1,)), (n,))
    if not model_labels:
      class_labels = None
    elif class_labels is None:
      class_labels = jnp.zeros((n, model_labels), jnp.float32)
    else:
      class_labels = jnp.asarray(class_labels, jnp.float32).reshape(-1, model_labels)
    c_skip, c_out, c_in, c_noise = coefficients(self.kind, sigma, self.sigma_data, self.beta_d,
                                                self.beta_min, self.M)
    per_image = lambda c: c[:, None, None, None]
    F = self.model((per_image(c_in) * x).astype(self.model.dtype), c_noise, class_labels,
                   augment_labels, train=train)
    denoised = per_image(c_skip) * x + per_image(c_out) * F.astype(jnp.float32)
    if return_logvar and not self.logvar_channels:
      raise UserError('Precond: return_logvar needs logvar_channels > 0 (EDM2\'s uncertainty)')
    # Computed when asked for, and at init so that its weights exist (sampling never asks).
    if self.logvar_channels and (return_logvar or self.is_initializing()):
      features = edm2unet.MPFourier(self.logvar_channels, name='logvar_fourier')(c_noise)
      logvar = edm2unet.MPConv(1, 0, name='logvar_linear')(features).reshape(-1, 1, 1, 1)
      if return_logvar:
        return denoised, logvar
    return denoised
