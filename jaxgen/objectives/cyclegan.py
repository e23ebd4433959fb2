"""CycleGAN's losses (Zhu et al. 2017) and its history of generated images, apart from the networks.

Two generators, G_A: A → B and G_B: B → A, and two discriminators, D_A on domain B (real b
against G_A's fakes) and D_B on domain A, named as the official code names them
(junyanz/pytorch-CycleGAN-and-pix2pix, `models/cycle_gan_model.py`). With real a, b:

  G minimises   L_GAN(D_A(G_A(a))) + L_GAN(D_B(G_B(b)))                        adversarial
              + λ_A·‖G_B(G_A(a)) − a‖₁ + λ_B·‖G_A(G_B(b)) − b‖₁                  cycle
              + λ_idt·(λ_B·‖G_A(b) − b‖₁ + λ_A·‖G_B(a) − a‖₁)                   identity
  D_A minimises ½·L_D(D_A(b), D_A(pool_B(G_A(a)))), D_B likewise on a and pool_A(G_B(b)).

‖·‖₁ is the mean absolute error over every pixel and channel (torch's L1Loss); the paper's
λ_A = λ_B = 10 and λ_idt = 0.5 (the identity weight is relative to λ: 5 in absolute terms). The
adversarial terms are jaxgen/objectives/gan_losses.py's (CycleGAN: 'lsgan', squared errors to 1
and 0); D's loss is halved as the official code halves it. Fakes reach D through a history pool
(Shrivastava et al. 2017), so D also sees what G made in the last steps, not only now.

The history pool (the official `util/image_pool.py`), as a pure function of arrays held in the
train state, so a resumed run continues with the same pool. For each image of the batch in turn:
while fewer than `pool_size` images are stored, the image is stored and returned; once full,
with probability ½ a uniformly chosen stored image is returned and the new one takes its place,
else the new image is returned and the pool is unchanged. pool_size 0 returns the batch.
"""

import jax
import jax.numpy as jnp

from jaxgen.objectives import gan_losses


def l1(x, y):
  """Mean absolute error over every element (torch's L1Loss), float32."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def cycle_losses(real_a, rec_a, real_b, rec_b, lambda_a, lambda_b):
  """{'cycle_A': λ_A·‖rec_a − a‖₁, 'cycle_B': λ_B·‖rec_b − b‖₁}: rec_a = G_B(G_A(a)),
  rec_b = G_A(G_B(b))."""
  return {'cycle_A': lambda_a * l1(rec_a, real_a), 'cycle_B': lambda_b * l1(rec_b, real_b)}


def identity_losses(real_a, idt_b, real_b, idt_a, lambda_a, lambda_b, lambda_idt):
  """{'idt_A': λ_idt·λ_B·‖G_A(b) − b‖₁, 'idt_B': λ_idt·λ_A·‖G_B(a) − a‖₁}: idt_a = G_A(b) (G_A
  should leave what is already B alone), idt_b = G_B(a)."""
  return {'idt_A': lambda_idt * lambda_b * l1(idt_a, real_b),
          'idt_B': lambda_idt * lambda_a * l1(idt_b, real_a)}


def generator_adversarial(gan_loss, d_a_fake_b, d_b_fake_a):
  """{'G_A': L_GAN(D_A(G_A(a))), 'G_B': L_GAN(D_B(G_B(b)))} on D's logits."""
  return {'G_A': gan_losses.generator_loss(gan_loss, d_a_fake_b),
          'G_B': gan_losses.generator_loss(gan_loss, d_b_fake_a)}


def discriminator_loss(gan_loss, real_logits, fake_logits):
  """One discriminator's loss, halved as the official `backward_D_basic`."""
  return 0.5 * gan_losses.discriminator_loss(gan_loss, real_logits, fake_logits)


def empty_pool(pool_size, image_shape):
  """(images float32 [pool_size, H, W, C] zeros, count int32 0): a pool with nothing stored."""
  return jnp.zeros((pool_size,) + tuple(image_shape), jnp.float32), jnp.zeros((), jnp.int32)


def query_pool(pool, count, images, key):
  """The history pool's answer to a batch of generated images (see the module docstring).

  Args:
    pool: float32 [P, H, W, C], the stored images (slots ≥ count are unused).
    count: int32 [], how many are stored (≤ P).
    images: [B, H, W, C], the batch of new fakes (constants: no gradient flows into the pool).
    key: PRNG key of this query.

  Returns:
    (images for D [B, H, W, C] float32, new pool, new count).
  """
  images = jax.lax.stop_gradient(images).astype(jnp.float32)
  size = pool.shape[0]
  if size == 0:
    return images, pool, count

  def one(carry, inputs):
    pool, count = carry
    image, key = inputs
    coin_key, slot_key = jax.random.split(key)
    filling = count < size
    swap = jax.random.uniform(coin_key) > 0.5  # The official `p > 0.5`.
    slot = jnp.where(filling, count, jax.random.randint(slot_key, (), 0, size))
    stored = pool[slot]
    returned = jnp.where(filling | ~swap, image, stored)
    pool = pool.at[slot].set(jnp.where(filling | swap, image, stored))
    return (pool, count + filling.astype(jnp.int32)), returned

  keys = jax.random.split(key, images.shape[0])
  (pool, count), returned = jax.lax.scan(one, (pool, count), (images, keys))
  return returned, pool, count
