"""Losses of paired image-to-image translation: pix2pix's and ESRGAN's, apart from the networks.

Adversarial losses on discriminator logits (`real`, `fake`: arrays of any shape, e.g. PatchGAN's
[B, h, w, 1] patch logits, averaged over every element as PyTorch's losses do):

  vanilla   pix2pix's `gan_mode='vanilla'`: binary cross-entropy with logits. D minimises
            ½·(BCE(real, 1) + BCE(fake, 0)) (pix2pix halves D's loss "to slow D down"); G
            minimises BCE(fake, 1), the non-saturating loss.
  lsgan     pix2pix's `gan_mode='lsgan'` (Mao et al. 2017): squared errors to 1 and 0 instead.
  hinge     the hinge loss (Miyato et al. 2018), D's loss halved in the same way.
            These three are jaxgen/objectives/gan_losses.py's 'nonsaturating', 'lsgan' and
            'hinge', D's loss times ½.
  ragan     ESRGAN's relativistic average GAN (Jolicoeur-Martineau 2018; Wang et al. 2018):
            D_Ra(a, b) = σ(C(a) − mean C(b)). D minimises ½·BCE(C(r) − E C(f), 1) +
            ½·BCE(C(f) − E C(r), 0); G the mirror image, ½·BCE(C(r) − E C(f), 0) +
            ½·BCE(C(f) − E C(r), 1), so G's gradients flow through both terms (as BasicSR's
            ESRGANModel weighs them).

Content losses: `l1` (mean absolute error, pix2pix's λ = 100, ESRGAN's 1e-2) and `l2`, and the
perceptual loss (ESRGAN: L1 between VGG19 `conv5_4` features, before the activation).
"""

import jax.numpy as jnp
import optax

from jaxgen.objectives import gan_losses

GAN_LOSSES = ('vanilla', 'lsgan', 'hinge', 'ragan', 'none')
# pix2pix's names for the losses of jaxgen/objectives/gan_losses.py.
_SHARED_LOSSES = {'vanilla': 'nonsaturating', 'lsgan': 'lsgan', 'hinge': 'hinge'}
PIXEL_LOSSES = ('l1', 'l2')


def _bce(logits, target):
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def d_loss(kind, real, fake):
  """The discriminator's loss on its logits for real and generated images."""
  real, fake = real.astype(jnp.float32), fake.astype(jnp.float32)
  if kind in _SHARED_LOSSES:
    return 0.5 * gan_losses.discriminator_loss(_SHARED_LOSSES[kind], real, fake)
  if kind == 'ragan':
    return 0.5 * (_bce(real - jnp.mean(fake), 1.0) + _bce(fake - jnp.mean(real), 0.0))
  raise ValueError(kind)


def g_loss(kind, real, fake):
  """The generator's adversarial loss (`real`: D's logits on the targets; only ragan reads it,
  the others take None)."""
  fake = fake.astype(jnp.float32)
  if kind in _SHARED_LOSSES:
    return gan_losses.generator_loss(_SHARED_LOSSES[kind], fake)
  if kind == 'ragan':
    real = real.astype(jnp.float32)
    return 0.5 * (_bce(real - jnp.mean(fake), 0.0) + _bce(fake - jnp.mean(real), 1.0))
  raise ValueError(kind)


def pixel_loss(kind, output, target):
  """Mean absolute (l1) or squared (l2) error over every pixel and channel."""
  diff = output.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == 'l1':
    return jnp.mean(jnp.abs(diff))
  if kind == 'l2':
    return jnp.mean(jnp.square(diff))
  raise ValueError(kind)


def perceptual_loss(features_fn, output, target):
  """L1 between the feature maps `features_fn` gives for output and target (summed over the
  layers it returns, each averaged over its elements)."""
  out, tgt = features_fn(output), features_fn(target)
  return sum(jnp.mean(jnp.abs(out[k].astype(jnp.float32) - tgt[k].astype(jnp.float32)))
             for k in sorted(out))
