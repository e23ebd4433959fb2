"""Adversarial losses of every GAN recipe, and WGAN-GP's gradient penalty, on D's logits.

Logits are arrays of any shape (DCGAN's [B], PatchGAN's [B, h, w, 1]); every expectation is a
mean over all their elements, so each loss is a scalar. D minimises `discriminator_loss`, G
minimises `generator_loss`:

  nonsaturating  Goodfellow et al. 2014, as DCGAN and StyleGAN2 use it (binary cross-entropy
                 with real = 1, fake = 0; G's −log σ(D(G(z))) is the non-saturating form):
                   D: E softplus(−D(x)) + E softplus(D(G(z)))      G: E softplus(−D(G(z)))
  wgan-gp        Gulrajani et al. 2017 (the critic's Wasserstein estimate; add λ·gradient_penalty
                 to D's loss, λ = 10 in the paper):
                   D: E D(G(z)) − E D(x)                            G: −E D(G(z))
  hinge          Lim & Ye 2017; Miyato et al. 2018; Zhang et al. 2019 (SAGAN):
                   D: E max(0, 1 − D(x)) + E max(0, 1 + D(G(z)))   G: −E D(G(z))
  lsgan          Mao et al. 2017 with targets b = 1 (real), a = 0 (fake), c = 1 (G), the paper's
                 0-1 coding and pix2pix's/CycleGAN's `gan_mode='lsgan'` (MSE to 1 and 0):
                   D: E (D(x) − 1)² + E D(G(z))²                   G: E (D(G(z)) − 1)²

The paper's ½ in front of LSGAN's squares is left out, as it is from the other losses' two terms
(pix2pix and CycleGAN halve D's whole loss themselves, for every `gan_mode`). Logits are read
in float32.
"""

import jax
import jax.numpy as jnp

LOSSES = ('nonsaturating', 'wgan-gp', 'hinge', 'lsgan')


def _mean(x):
  return jnp.mean(x.astype(jnp.float32))


def discriminator_loss(name, real_logits, fake_logits):
  """D's (the critic's) loss on its logits for real and generated images; scalar."""
  real, fake = jnp.asarray(real_logits), jnp.asarray(fake_logits)
  if name == 'nonsaturating':
    return _mean(jax.nn.softplus(-real)) + _mean(jax.nn.softplus(fake))
  if name == 'wgan-gp':
    return _mean(fake) - _mean(real)
  if name == 'hinge':
    return _mean(jax.nn.relu(1.0 - real)) + _mean(jax.nn.relu(1.0 + fake))
  if name == 'lsgan':
    return _mean(jnp.square(real - 1.0)) + _mean(jnp.square(fake))
  raise ValueError(f'unknown GAN loss {name!r}: one of {LOSSES}')


def generator_loss(name, fake_logits):
  """G's loss on D's logits for its images; scalar."""
  fake = jnp.asarray(fake_logits)
  if name == 'nonsaturating':
    return _mean(jax.nn.softplus(-fake))
  if name in ('wgan-gp', 'hinge'):
    return -_mean(fake)
  if name == 'lsgan':
    return _mean(jnp.square(fake - 1.0))
  raise ValueError(f'unknown GAN loss {name!r}: one of {LOSSES}')


def _safe_norm(x, axes):
  """‖x‖₂ over `axes`, with gradient 0 (not NaN) where x = 0."""
  sq = jnp.sum(jnp.square(x), axis=axes)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def gradient_penalty(critic_fn, real, fake, rng, target=1.0):
  """WGAN-GP's penalty E_x̂ (‖∇_x̂ D(x̂)‖₂ − target)² on random interpolates (Gulrajani et al.).

  x̂ = ε·x + (1 − ε)·x̃ with one ε ~ U[0, 1] per example, x real and x̃ = G(z) generated (both
  held constant: only D's parameters get the penalty's gradient). The gradient norm is per
  example, over all its pixels and channels. ∇ Σ_b D(x̂_b) gives every example's own gradient
  only when D treats examples independently — not with batch norm, which is why WGAN-GP's
  critic has layer norm or none.

  Args:
    critic_fn: images [B, H, W, C] → logits [B] (D with its parameters and labels closed over).
    real, fake: [B, H, W, C].
    rng: PRNG key for ε.
    target: the gradient norm aimed at (1: the 1-Lipschitz constraint).

  Returns:
    The penalty, a float32 scalar (multiply by λ and add it to D's loss).
  """
  real = jax.lax.stop_gradient(real.astype(jnp.float32))
  fake = jax.lax.stop_gradient(fake.astype(jnp.float32))
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1))
  interpolates = eps * real + (1.0 - eps) * fake
  logits, vjp = jax.vjp(critic_fn, interpolates)
  (grads,) = vjp(jnp.ones_like(logits))
  norms = _safe_norm(grads.astype(jnp.float32), tuple(range(1, grads.ndim)))
  return jnp.mean(jnp.square(norms - target))
