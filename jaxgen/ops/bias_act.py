"""Bias + activation + gain + clamp, StyleGAN2's `bias_act`, as plain jnp ops.

NVlabs fuse these four steps into a CUDA kernel; here XLA fuses them (and usually the
convolution epilogue before them) on its own. The arithmetic is float32 whatever the input dtype,
as in that kernel, and the result has the input's dtype.
"""

import math

import jax
import jax.numpy as jnp

# name → (function(x, alpha), default alpha, default gain). The √2 gains keep the activations'
# second moment at 1 for unit-variance input ("equalised" networks).
ACTIVATIONS = {
    'linear': (lambda x, alpha: x, 0.0, 1.0),
    'relu': (lambda x, alpha: jax.nn.relu(x), 0.0, math.sqrt(2)),
    'lrelu': (lambda x, alpha: jnp.where(x >= 0, x, x * alpha), 0.2, math.sqrt(2)),
    'tanh': (lambda x, alpha: jnp.tanh(x), 0.0, 1.0),
    'sigmoid': (lambda x, alpha: jax.nn.sigmoid(x), 0.0, 1.0),
    'softplus': (lambda x, alpha: jax.nn.softplus(x), 0.0, 1.0),
}


def default_gain(act):
  """The gain `bias_act` applies by default after activation `act`."""
  return ACTIVATIONS[act][2]


def bias_act(x, b=None, act='linear', alpha=None, gain=None, clamp=None):
  """Adds a bias, applies an activation, scales by `gain`, clamps to ±`clamp`.

  Args:
    x: [..., C] activations (channel-last), any float dtype.
    b: optional bias [C].
    act: one of `ACTIVATIONS`.
    alpha: activation shape parameter (leaky ReLU slope); None = the activation's default.
    gain: output scale; None = the activation's default (√2 for (leaky) ReLU).
    clamp: clamp the output to [−clamp, clamp]; None = no clamping.

  Returns:
    Array of x's shape and dtype.
  """
  if act not in ACTIVATIONS:
    raise ValueError(f'unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}')
  func, default_alpha, default_act_gain = ACTIVATIONS[act]
  alpha = default_alpha if alpha is None else alpha
  gain = default_act_gain if gain is None else gain
  dtype = x.dtype
  x = x.astype(jnp.float32)
  if b is not None:
    x = x + b.astype(jnp.float32)
  x = func(x, alpha)
  if gain != 1:
    x = x * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x.astype(dtype)
