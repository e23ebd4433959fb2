"""The matmul and convolution precision of the networks, from their compute dtype."""

import jax.numpy as jnp
from jax import lax


def matmul_precision(dtype):
  """float32 means float32: full precision on GPUs too, where XLA would otherwise use TF32 (the
  official EDM trains with TF32 disabled, and parity with official networks is checked in
  float32); bfloat16 and float16 compute use the default."""
  return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT
