"""Losses of neural style transfer, apart from the networks: Gatys et al.'s and AdaIN's.

Features are VGG activations F [B, H, W, C] (NHWC; N = H·W positions). Means below are over
every element of their argument, as PyTorch's `MSELoss` and Torch7's `nn.MSECriterion`.

Gatys et al. (2016), normalised as jcjohnson/neural-style does:

  gram_matrix(F)     G = Fᵀ F / (C·H·W)   [B, C, C]: the channels' co-activations, divided by the
                     number of elements of F (jcjohnson's `G:div(input:nElement())`), so a layer's
                     Gram matrix does not grow with the image size.
  content_loss       mean over elements of (F − F_content)², one layer (relu4_2).
  style_loss         Σ_layers  mean over the C² entries of (G(F) − G_target)², the target a Gram
                     matrix per layer (several style images: their grams blended with weights).
  total_variation    ½ Σ_{i<H−1, j<W−1} (x[i, j] − x[i, j+1])² + (x[i, j] − x[i+1, j])² per
                     image [B]: the squared-gradient smoothness term whose gradient jcjohnson's
                     TVLoss writes out (over the (H−1)×(W−1) window, in the image's own units).

AdaIN (Huang & Belongie 2017), as naoto0804/pytorch-AdaIN's `net.py` and `function.py`:

  mean_std(F)        μ, σ [B, C]: per channel over space; σ = √(unbiased variance + ε), ε = 1e-5
                     (torch's `var` divides by N − 1).
  adain_content_loss mean over elements of (f(g(t)) − t)²: the decoded image's relu4_1 features
                     against the AdaIN target t they were decoded from.
  adain_style_loss   Σ_layers  mean_{B,C} (μ(F) − μ(S))² + mean_{B,C} (σ(F) − σ(S))² over
                     relu1_1, relu2_1, relu3_1, relu4_1 (S: the style image's features).
"""

import jax.numpy as jnp

# AdaIN's ε, added to the variance (pytorch-AdaIN `calc_mean_std`).
ADAIN_EPS = 1e-5


def gram_matrix(features):
  """features [B, H, W, C] → G [B, C, C] = Fᵀ F / (C·H·W) (see the module docstring)."""
  f = features.astype(jnp.float32)
  b, h, w, c = f.shape
  flat = f.reshape(b, h * w, c)
  return jnp.einsum('bnc,bnd->bcd', flat, flat) / (c * h * w)


def content_loss(features, target):
  """Mean squared error between feature maps of the same shape."""
  return jnp.mean(jnp.square(features.astype(jnp.float32) - target.astype(jnp.float32)))


def style_loss(features, target_grams):
  """Σ over the layers of `target_grams` ({name: [C, C] or [B, C, C]}) of the mean squared error
  between the Gram matrix of `features[name]` and the target."""
  return sum(jnp.mean(jnp.square(gram_matrix(features[k]) - target_grams[k]))
             for k in sorted(target_grams))


def total_variation(images):
  """images [B, H, W, C] → [B]: ½ Σ of squared right and down differences over the (H−1)×(W−1)
  window (jcjohnson's TVLoss, whose gradient is what it computes)."""
  x = images.astype(jnp.float32)
  core = x[:, :-1, :-1]
  dx = core - x[:, :-1, 1:]
  dy = core - x[:, 1:, :-1]
  return 0.5 * jnp.sum(jnp.square(dx) + jnp.square(dy), axis=(1, 2, 3))


def mean_std(features, eps=ADAIN_EPS):
  """features [B, H, W, C] → (μ, σ), each [B, C]: per channel over the H·W positions, σ the
  square root of the unbiased variance + eps (needs H·W ≥ 2)."""
  f = features.astype(jnp.float32)
  b, h, w, c = f.shape
  flat = f.reshape(b, h * w, c)
  mean = jnp.mean(flat, axis=1)
  var = jnp.sum(jnp.square(flat - mean[:, None]), axis=1) / (h * w - 1)
  return mean, jnp.sqrt(var + eps)


def adain_content_loss(features, target):
  """AdaIN's content loss: MSE between the output's relu4_1 features and the AdaIN target t."""
  return content_loss(features, target)


def adain_style_loss(features, style_features, layers):
  """AdaIN's style loss: Σ over `layers` of MSE(μ(F), μ(S)) + MSE(σ(F), σ(S)) ({name: [B, H, W,
  C]} dicts; the two may differ in H, W)."""
  total = 0.0
  for name in layers:
    mean, std = mean_std(features[name])
    s_mean, s_std = mean_std(style_features[name])
    total = total + jnp.mean(jnp.square(mean - s_mean)) + jnp.mean(jnp.square(std - s_std))
  return total
