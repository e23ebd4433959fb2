"""StyleGAN2-ADA's objective and schedule, as pure functions (NVlabs' `training/loss.py` and the
update rules of `training/training_loop.py`).

  * Non-saturating logistic loss: G minimises softplus(−D(G(z))); D minimises
    softplus(D(G(z))) + softplus(−D(x)) (or, by choice, hinge or least squares).
  * Lazy R1 on reals: every `interval` D steps add (γ/2)·E‖∇ₓD(x)‖² · interval.
  * Path-length regularisation: every `interval` G steps, on batch/pl_batch_shrink samples, add
    pl_weight · E(‖J_wᵀ y‖ − a)² · interval, with y ~ N(0, 1/(H·W)) images and `a` (pl_mean) a
    running mean of the lengths (decay pl_decay), kept in the train state.
  * Lazy regularisation runs with Adam's lr · c and betas ** c, c = interval / (interval + 1).
  * Style mixing: with probability 0.9, ws[:, k:] come from a second z, k uniform in [1, num_ws).
  * Generator EMA: β = 0.5 ** (batch / (ema_kimg · 1000)), with optional ramp-up.

Networks enter as closures (`d_fn(images) → logits`, `synthesis_fn(ws) → images`), so these
functions are independent of any train state or loop; augmentation, labels and parameters are
whatever the closure captures. Logits are [N] (or [N, 1]); images [N, H, W, C].
"""

import math

import jax
import jax.numpy as jnp

from jaxgen.objectives import gan_losses

# The adversarial losses StyleGAN2 can train with (`objective.loss`): the official
# non-saturating logistic loss, or hinge / least squares, each with R1 as usual. Not WGAN-GP:
# its critic loss needs the interpolates' gradient penalty and n_critic (DCGAN's recipe).
LOSSES = ('nonsaturating', 'hinge', 'lsgan')

# ADA's overfitting heuristic r_t = E sign(D(x) − m) needs the logit halfway between the losses'
# real and fake targets: 0 for the logistic and hinge losses, ½ for LSGAN's 1 and 0.
LOGIT_MIDPOINT = {'nonsaturating': 0.0, 'hinge': 0.0, 'lsgan': 0.5}


def discriminator_loss(real_logits, fake_logits, loss='nonsaturating'):
  """Dmain's loss (jaxgen.objectives.gan_losses; the official one is 'nonsaturating')."""
  return gan_losses.discriminator_loss(loss, real_logits, fake_logits)


def generator_loss(fake_logits, loss='nonsaturating'):
  """Gmain's loss (jaxgen.objectives.gan_losses; the official one is 'nonsaturating')."""
  return gan_losses.generator_loss(loss, fake_logits)


def r1_penalty(d_fn, real_images):
  """R1 gradient penalty ‖∇ₓ Σ D(x)‖² per image.

  Args:
    d_fn: images [N, H, W, C] → logits [N] (the discriminator, with augmentation and labels
      applied inside, as in the official loss).
    real_images: [N, H, W, C].

  Returns:
    (penalty [N], logits [N]): the logits are those of the same forward pass, reusable for the
    main D loss and ADA's sign statistics. Differentiate (γ/2) · mean(penalty) · interval with
    respect to D's parameters for the lazy R1 term.
  """
  logits, vjp = jax.vjp(d_fn, real_images)
  (grads,) = vjp(jnp.ones_like(logits))
  penalty = jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, grads.ndim)))
  return penalty, logits


def path_length_penalty(synthesis_fn, ws, pl_mean, rng, pl_decay=0.01):
  """Path-length penalty (‖J_wᵀ y‖ − a)² per sample, and the updated running mean a.

  Args:
    synthesis_fn: ws [N, num_ws, w_dim] → images [N, H, W, C].
    ws: the (style-mixed) ws of the regularisation batch.
    pl_mean: running mean `a` of the path lengths (scalar; 0 at the start of training).
    rng: PRNG key for the image-space noise y ~ N(0, 1) / √(H·W).
    pl_decay: a ← a + pl_decay · (mean length − a).

  Returns:
    (penalty [N], new_pl_mean, lengths [N]). The penalty uses the updated mean *with* its
    gradient (as the official code does); new_pl_mean is stop-gradient'ed for the train state.
    Differentiate pl_weight · mean(penalty) · interval with respect to G's parameters.
  """
  images, vjp = jax.vjp(synthesis_fn, ws)
  height, width = images.shape[1], images.shape[2]
  noise = jax.random.normal(rng, images.shape, images.dtype) / math.sqrt(height * width)
  (grads,) = vjp(noise)                                           # ∇_ws Σ images · noise
  lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))
  new_pl_mean = pl_mean + pl_decay * (jnp.mean(lengths) - pl_mean)
  penalty = jnp.square(lengths - new_pl_mean)
  return penalty, jax.lax.stop_gradient(new_pl_mean), lengths


def mixing_cutoff(rng, num_ws, prob=0.9):
  """Where the second latent takes over: uniform in [1, num_ws) with probability `prob`, else
  num_ws (no mixing). One cutoff per batch, as in the official code. int32 scalar."""
  cutoff_key, apply_key = jax.random.split(rng)
  cutoff = jax.random.randint(cutoff_key, (), 1, num_ws)
  return jnp.where(jax.random.uniform(apply_key, ()) < prob, cutoff, num_ws)


def mix_styles(ws, ws_mix, cutoff):
  """ws[:, :cutoff] from `ws`, ws[:, cutoff:] from `ws_mix` (both [N, num_ws, w_dim])."""
  layer = jnp.arange(ws.shape[1])[None, :, None]
  return jnp.where(layer < cutoff, ws, ws_mix)


def style_mix(rng, ws, ws_mix, prob=0.9):
  """`mix_styles` with a random `mixing_cutoff`: ws_mix is the mapping of a second z (the official
  code maps it without updating w_avg and without truncation)."""
  return mix_styles(ws, ws_mix, mixing_cutoff(rng, ws.shape[1], prob))


def lazy_regularization_adam_hparams(lr, betas, interval):
  """Adam's (lr, betas) for lazy regularisation every `interval` steps.

  The main and regularisation steps share one optimiser that takes interval + 1 updates per
  `interval` minibatches; scaling lr by c = interval/(interval + 1) and raising betas to the
  power c keeps the effective step size and averaging horizon. interval None or 0 = no lazy
  regularisation (unchanged).
  """
  if not interval:
    return lr, tuple(betas)
  ratio = interval / (interval + 1)
  return lr * ratio, tuple(beta ** ratio for beta in betas)


def ema_beta(batch_size, ema_kimg, ema_rampup=None, cur_nimg=0):
  """Decay of the generator EMA for one step: 0.5 ** (batch / ema_nimg).

  ema_nimg = ema_kimg · 1000 (the half-life in images), or min(that, cur_nimg · ema_rampup)
  with a ramp-up, cur_nimg being the images shown before this step. Works on Python numbers and
  traced arrays.
  """
  ema_nimg = ema_kimg * 1000
  if ema_rampup is not None:
    ema_nimg = jnp.minimum(ema_nimg, cur_nimg * ema_rampup)
  return 0.5 ** (batch_size / jnp.maximum(ema_nimg, 1e-8))


def ema_update(ema_params, params, beta):
  """params_ema ← params + β · (params_ema − params), leaf by leaf (β from `ema_beta`).

  Buffers (w_avg, noise_const) are not averaged: the official loop copies them from G.
  """
  return jax.tree_util.tree_map(lambda e, p: p + beta * (e - p), ema_params, params)
