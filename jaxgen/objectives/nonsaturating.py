"""The non-saturating logistic GAN loss (Goodfellow et al. 2014), as used by DCGAN.

D minimises  softplus(−D(x)) + softplus(D(G(z)))   (binary cross-entropy, real = 1, fake = 0);
G minimises  softplus(−D(G(z)))                   (−log σ(D(G(z))), the non-saturating form).
Logits are [B]; losses are batch means (scalars).
"""

import jax
import jax.numpy as jnp


def discriminator_loss(real_logits, fake_logits):
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits):
  return jnp.mean(jax.nn.softplus(-fake_logits))
