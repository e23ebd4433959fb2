"""Denoising score-matching objectives of EDM (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"; NVlabs `edm` `training/loss.py`), as pure functions.

All three train a denoiser D(x; σ) ≈ E[y | x = y + n], n ~ N(0, σ² I), the same way:

  σ ~ p_train(σ)                              (per image)
  y, a = augment(images)                      (a: augmentation labels; y = images without one)
  n ~ N(0, σ² I)
  loss = λ(σ) · (D(y + n; σ, labels, a) − y)²  (per element, [N, H, W, C])

and differ in p_train and λ:

  edm   ln σ ~ N(P_mean, P_std²) (−1.2, 1.2²); λ(σ) = (σ² + σ_data²) / (σ · σ_data)², which is
        1 / c_out(σ)² of EDM's preconditioning: for data of variance σ_data² the ideal denoiser's
        loss is 1 at every σ.
  vp    σ = σ_VP(t) = √(exp(½ β_d t² + β_min t) − 1), t ~ U(ε_t, 1] (Song et al.'s VP SDE,
        β_d 19.9, β_min 0.1, ε_t 1e-5); λ(σ) = 1/σ².
  ve    σ = σ_min · (σ_max/σ_min)^u, u ~ U[0, 1): log-uniform on [0.02, 100); λ(σ) = 1/σ².
  edm2  EDM2 (Karras et al. 2024, NVlabs `edm2` `training/training_loop.py` EDM2Loss): EDM's
        p_train and λ, divided by e^u(σ) of a learned uncertainty u and plus u (Eq. 21):
        λ/e^u · (D − y)² + u. Minimising over u makes e^u the expected weighted loss at σ, so
        every noise level contributes about equally to the gradient. The denoiser returns
        (D, u) (precond.Precond with logvar_channels > 0).

The network enters as a closure `denoise(noisy, sigma, labels, augment_labels) → D` (noisy
[N, H, W, C], sigma [N, 1, 1, 1], labels [N, label_dim] or None, augment_labels [N, augment_dim]
or None; D float32 [N, H, W, C]), so these functions know nothing of parameters or train state.
Images are in [−1, 1], NHWC.

What the optimiser sees: the official loop (`training/training_loop.py`) back-propagates
loss.sum() / batch_size (per GPU, the local sum over its batch_gpu images divided by them; DDP
averages over GPUs): a sum over pixels and channels, a mean over images — `reduce_loss`. It also
replaces NaN/±Inf gradients by 0/±1e5 before the Adam step; that belongs to the recipe. The
logged `Loss/loss` is the mean over all elements.
"""

import functools

import jax
import jax.numpy as jnp

from jaxgen.errors import UserError


# ------------------------------------------------------------------------------------------------
# Noise levels and weights.


def edm_sigma(key, n, P_mean=-1.2, P_std=1.2):  # noqa: N803 (the paper's names)
  """σ = exp(P_mean + P_std · ξ), ξ ~ N(0, 1): log-normal noise levels, [n, 1, 1, 1] float32."""
  xi = jax.random.normal(key, (n, 1, 1, 1), jnp.float32)
  return jnp.exp(xi * P_std + P_mean)


def edm_weight(sigma, sigma_data=0.5):
  """λ(σ) = (σ² + σ_data²) / (σ · σ_data)² = 1/σ² + 1/σ_data² (EDM's loss weight)."""
  return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def vp_sigma(t, beta_d=19.9, beta_min=0.1):
  """σ_VP(t) = √(exp(½ β_d t² + β_min t) − 1), the VP SDE's noise level at time t ∈ (0, 1].

  Computed with expm1: the official `exp() − 1` loses most digits near t = ε_t = 1e-5 in float32
  (σ² ≈ 1e-6 comes out 5 % off); the two agree to float32 rounding elsewhere.
  """
  t = jnp.asarray(t, jnp.float32)
  return jnp.sqrt(jnp.expm1(0.5 * beta_d * t ** 2 + beta_min * t))


def vp_time(key, n, epsilon_t=1e-5):
  """t = 1 + u · (ε_t − 1), u ~ U[0, 1): uniform times in (ε_t, 1], [n, 1, 1, 1] float32."""
  u = jax.random.uniform(key, (n, 1, 1, 1), jnp.float32)
  return 1 + u * (epsilon_t - 1)


def ve_sigma(key, n, sigma_min=0.02, sigma_max=100):
  """σ = σ_min · (σ_max/σ_min)^u, u ~ U[0, 1): log-uniform on [σ_min, σ_max), [n, 1, 1, 1]."""
  u = jax.random.uniform(key, (n, 1, 1, 1), jnp.float32)
  return sigma_min * (sigma_max / sigma_min) ** u


def inverse_variance_weight(sigma):
  """λ(σ) = 1/σ², the VP and VE losses' weight: with D = x − σ·ε̂ (ε-prediction),
  λ · (D − y)² = (ε̂ − ε)², the unweighted ε loss."""
  return 1 / sigma ** 2


# ------------------------------------------------------------------------------------------------
# Losses.


def denoising_loss(denoise, images, labels, sigma, weight, key, augment=None):
  """λ · (D(y + n; σ) − y)² per element, for given noise levels σ and weights λ ([N, 1, 1, 1]).

  Args:
    denoise: (noisy, sigma, labels, augment_labels) → D, float32 [N, H, W, C].
    images: clean images [N, H, W, C] in [−1, 1].
    labels: class labels passed through to `denoise` (or None).
    sigma, weight: [N, 1, 1, 1].
    key: PRNG key for the augmentation and the noise.
    augment: (images, key) → (images, augment_labels), e.g. an `jaxgen.augment.edm.AugmentPipe`,
      or None (then augment_labels is None).

  Returns:
    float32 [N, H, W, C]; `reduce_loss` gives what the official optimiser sees.
  """
  d, y = _denoise_noisy(denoise, images, labels, sigma, key, augment)
  return weight * jnp.square(jnp.asarray(d, jnp.float32) - y)


def _denoise_noisy(denoise, images, labels, sigma, key, augment):
  """(whatever `denoise` returns for y + n, y): the augmented clean images y (float32) and the
  denoiser's output on them with noise n ~ N(0, σ²) added; the draws of `denoising_loss`."""
  augment_key, noise_key = jax.random.split(key)
  if augment is not None:
    y, augment_labels = augment(images, augment_key)
  else:
    y, augment_labels = images, None
  y = jnp.asarray(y, jnp.float32)
  n = jax.random.normal(noise_key, y.shape, jnp.float32) * sigma
  return denoise(y + n, sigma, labels, augment_labels), y


def edm_loss(denoise, images, labels, key, *, P_mean=-1.2, P_std=1.2,  # noqa: N803
             sigma_data=0.5, augment=None):
  """EDM's loss: log-normal σ, λ = (σ² + σ_data²)/(σ σ_data)². Per element [N, H, W, C]."""
  sigma_key, key = jax.random.split(key)
  sigma = edm_sigma(sigma_key, images.shape[0], P_mean, P_std)
  return denoising_loss(denoise, images, labels, sigma, edm_weight(sigma, sigma_data), key,
                        augment)


def vp_loss(denoise, images, labels, key, *, beta_d=19.9, beta_min=0.1, epsilon_t=1e-5,
            augment=None):
  """The VP SDE's loss: σ = σ_VP(t), t ~ U(ε_t, 1], λ = 1/σ². Per element [N, H, W, C]."""
  time_key, key = jax.random.split(key)
  sigma = vp_sigma(vp_time(time_key, images.shape[0], epsilon_t), beta_d, beta_min)
  return denoising_loss(denoise, images, labels, sigma, inverse_variance_weight(sigma), key,
                        augment)


def ve_loss(denoise, images, labels, key, *, sigma_min=0.02, sigma_max=100, augment=None):
  """The VE SDE's loss: σ log-uniform on [σ_min, σ_max), λ = 1/σ². Per element [N, H, W, C]."""
  sigma_key, key = jax.random.split(key)
  sigma = ve_sigma(sigma_key, images.shape[0], sigma_min, sigma_max)
  return denoising_loss(denoise, images, labels, sigma, inverse_variance_weight(sigma), key,
                        augment)


def edm2_loss(denoise, images, labels, key, *, P_mean=-0.4, P_std=1.0,  # noqa: N803
              sigma_data=0.5, augment=None):
  """EDM2's loss: EDM's σ and λ with the learned uncertainty u(σ) (`denoise` returns (D, u),
  u [N, 1, 1, 1]): λ/e^u · (D − y)² + u per element [N, H, W, C]."""
  sigma_key, key = jax.random.split(key)
  sigma = edm_sigma(sigma_key, images.shape[0], P_mean, P_std)
  (d, u), y = _denoise_noisy(denoise, images, labels, sigma, key, augment)
  d, u = jnp.asarray(d, jnp.float32), jnp.asarray(u, jnp.float32)
  return edm_weight(sigma, sigma_data) / jnp.exp(u) * jnp.square(d - y) + u


def reduce_loss(per_element):
  """The scalar the official optimiser differentiates: Σ over pixels and channels, mean over
  images (loss.sum() / batch_size). [N, ...] → scalar float32."""
  per_element = jnp.asarray(per_element, jnp.float32)
  return jnp.sum(per_element) / per_element.shape[0]


# `train.py --precond=NAME`'s loss, with its hyper-parameters as keyword arguments.
LOSSES = {'edm': edm_loss, 'vp': vp_loss, 've': ve_loss, 'edm2': edm2_loss}
# Losses whose denoiser returns (D, u(σ)): precond.Precond(logvar_channels > 0, return_logvar).
LEARNED_UNCERTAINTY = ('edm2',)


def make_loss(name, **kwargs):
  """LOSSES[name] with keyword arguments bound (e.g. P_mean, augment): a function
  (denoise, images, labels, key) → per-element loss. UserError on an unknown name or argument."""
  if name not in LOSSES:
    raise UserError(f'diffusion loss {name!r} is unknown; use one of {sorted(LOSSES)}.')
  fn = LOSSES[name]
  allowed = fn.__kwdefaults__
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise UserError(f'the {name!r} loss has no setting {", ".join(unknown)}; its settings are '
                    f'{", ".join(sorted(allowed))}.')
  return functools.partial(fn, **kwargs)
