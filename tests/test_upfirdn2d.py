"""FIR resampling ops against a direct NumPy computation (zero insertion, padding, scipy 2-D
convolution, decimation) in float64.

Tolerances: the ops compute in float32 with a handful of taps per output on O(1) inputs, so
errors are ~1e-6; 1e-5 absolute leaves margin and is far below any indexing or gain mistake
(those change outputs by O(0.1) or more).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxgen.ops.bias_act import bias_act
from jaxgen.ops.conv2d_resample import conv2d_resample, transposed_conv_polyphase
from jaxgen.ops.upfirdn2d import (downsample2d, setup_filter, upfirdn1d_matrix, upfirdn2d,
                                  upsample2d)

ATOL = 1e-5


def _pads(padding):
  if isinstance(padding, int):
    padding = (padding, padding)
  if len(padding) == 2:
    padding = (padding[0], padding[0], padding[1], padding[1])
  return padding


def upfirdn2d_reference(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
  """The definition, literally: x [N, H, W, C] float64, f a `setup_filter` result."""
  upx, upy = (up, up) if isinstance(up, int) else up
  downx, downy = (down, down) if isinstance(down, int) else down
  px0, px1, py0, py1 = _pads(padding)
  f = np.ones((1, 1)) if f is None else np.asarray(f, np.float64)
  f2 = (np.outer(f, f) if f.ndim == 1 else f) * gain
  n, h, w, c = x.shape
  xu = np.zeros((n, h * upy, w * upx, c))
  xu[:, ::upy, ::upx] = x
  xu = np.pad(xu, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
  xu = xu[:, max(-py0, 0):xu.shape[1] - max(-py1, 0), max(-px0, 0):xu.shape[2] - max(-px1, 0)]
  kernel = f2[::-1, ::-1] if flip_filter else f2   # convolve2d convolves; flip = correlate
  out = np.stack([np.stack([scipy.signal.convolve2d(xu[i, :, :, j], kernel, mode='valid')
                            for j in range(c)], -1) for i in range(n)])
  return out[:, ::downy, ::downx]


def conv2d_resample_reference(x, w, f, up=1, down=1, padding=0, groups=1, flip_weight=True):
  """The unoptimised formulation: FIR up-sample, dense 'valid' convolution, FIR down-sample."""
  kh, kw = w.shape[:2]
  fw = 1 if f is None else np.asarray(f).shape[-1]
  px0, px1, py0, py1 = _pads(padding)
  if up > 1:
    px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
    py0, py1 = py0 + (fw + up - 1) // 2, py1 + (fw - up) // 2
  if down > 1:
    px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
    py0, py1 = py0 + (fw - down + 1) // 2, py1 + (fw - down) // 2
  x = upfirdn2d_reference(x, f if up > 1 else None, up=up, padding=(px0, px1, py0, py1),
                          gain=up * up)
  kernel = w if flip_weight else w[::-1, ::-1]
  out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  in_g, out_g = w.shape[2], w.shape[3] // groups
  outs = []
  for g in range(groups):
    xg = x[..., g * in_g:(g + 1) * in_g]
    kg = kernel[..., g * out_g:(g + 1) * out_g]
    y = sum(np.einsum('nhwi,io->nhwo', xg[:, a:a + out_h, b:b + out_w], kg[a, b])
            for a in range(kh) for b in range(kw))
    outs.append(y)
  y = np.concatenate(outs, -1)
  if down > 1:
    y = upfirdn2d_reference(y, f, down=down)
  return y


def _rand(shape, seed=0):
  return np.random.RandomState(seed).standard_normal(shape)


@pytest.mark.parametrize('filt, separable, up, down, padding, flip, gain', [
    ([1, 3, 3, 1], True, 2, 1, (2, 1, 2, 1), False, 4),      # StyleGAN2's upsample2d
    ([1, 3, 3, 1], True, 1, 2, 1, False, 1),                 # ... and downsample2d
    ([1, 2, 5, 3], True, 2, 1, (3, 0, 1, 2), False, 2),      # asymmetric taps and padding
    ([1, 2, 5, 3], True, 2, 1, (3, 0, 1, 2), True, 2),       # correlation instead
    ([1, 2, 5, 3], False, 1, 2, (1, 2, 0, -1), False, 1),    # 2-D filter, cropping
    ([1, 4, 6, 4, 1], True, 3, 2, 2, False, 1),              # other ratios
    ([1, 4, 6, 4, 1], True, (2, 1), (1, 2), (1, 2, 3, 0), False, 1),  # per-axis factors
])
@pytest.mark.parametrize('impl', ['slices', 'conv'])
def test_upfirdn2d_matches_direct_computation(filt, separable, up, down, padding, flip, gain,
                                              impl):
  x = _rand((2, 7, 6, 3))
  f = setup_filter(filt, separable=separable)
  got = jax.jit(lambda v: upfirdn2d(v, f, up=up, down=down, padding=padding, flip_filter=flip,
                                    gain=gain, impl=impl))(jnp.asarray(x, jnp.float32))
  want = upfirdn2d_reference(x, f, up, down, padding, flip, gain)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL)


@pytest.mark.parametrize('impl', ['slices', 'conv'])
def test_non_separable_filter(impl):
  x = _rand((1, 6, 6, 2))
  f = setup_filter(_rand((3, 4), seed=1), normalize=False)
  got = upfirdn2d(jnp.asarray(x, jnp.float32), f, up=2, padding=(1, 2, 2, 1), impl=impl)
  np.testing.assert_allclose(np.asarray(got), upfirdn2d_reference(x, f, up=2, padding=(1, 2, 2, 1)),
                             atol=ATOL)


def test_up_and_down_sampling_keep_size_and_dc():
  f = setup_filter([1, 3, 3, 1])
  x = _rand((2, 8, 8, 3))
  up = upsample2d(jnp.asarray(x, jnp.float32), f)
  down = downsample2d(jnp.asarray(x, jnp.float32), f)
  assert up.shape == (2, 16, 16, 3) and down.shape == (2, 4, 4, 3)
  want_up = upfirdn2d_reference(x, f, up=2, padding=(2, 1, 2, 1), gain=4)
  np.testing.assert_allclose(np.asarray(up), want_up, atol=ATOL)
  # Filters are normalised: a constant stays constant away from the zero-padded border.
  const = jnp.full((1, 8, 8, 1), 0.7, jnp.float32)
  np.testing.assert_allclose(np.asarray(upsample2d(const, f))[0, 2:-2, 2:-2], 0.7, atol=ATOL)
  np.testing.assert_allclose(np.asarray(downsample2d(const, f))[0, 1:-1, 1:-1], 0.7, atol=ATOL)


def test_bfloat16_input_keeps_dtype():
  f = setup_filter([1, 3, 3, 1])
  x = jnp.asarray(_rand((1, 4, 4, 2)), jnp.bfloat16)
  y = upsample2d(x, f)
  assert y.dtype == jnp.bfloat16
  want = upfirdn2d_reference(np.asarray(x, np.float64), f, up=2, padding=(2, 1, 2, 1), gain=4)
  np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=0.02)   # bf16 rounding: 2^-8


@pytest.mark.parametrize('kernel, up, down, groups, flip', [
    (3, 2, 1, 1, False),   # synthesis conv0: transposed convolution + FIR
    (3, 2, 1, 2, False),   # ... grouped, as in the fused modulated convolution
    (3, 1, 2, 1, True),    # discriminator conv1: FIR + strided convolution
    (1, 1, 2, 1, True),    # discriminator skip: FIR down-sampling + 1×1
    (1, 2, 1, 1, True),    # 1×1 + up-sampling
    (3, 1, 1, 1, True),    # plain 'same' convolution
    (3, 1, 1, 1, False),
])
def test_conv2d_resample_matches_direct_computation(kernel, up, down, groups, flip):
  f = setup_filter([1, 3, 3, 1])
  x = _rand((2, 6, 6, 4))
  w = _rand((kernel, kernel, 4 // groups, 6), seed=2) / 3
  conv = jax.jit(lambda a, b: conv2d_resample(a, b, f=f, up=up, down=down, padding=kernel // 2,
                                              groups=groups, flip_weight=flip))
  got = conv(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32))
  want = conv2d_resample_reference(x, w, f, up, down, kernel // 2, groups, flip)
  assert got.shape == want.shape == (2, 6 * up // down, 6 * up // down, 6)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)  # sums of ~100 float32 products


@pytest.mark.parametrize('kernel, up', [(3, 2), (1, 2), (4, 2), (3, 4), (5, 3), (2, 2)])
def test_polyphase_transposed_convolution_equals_zero_stuffing(kernel, up):
  # The full transposed convolution, literally: zero insertion, pad k − 1, correlate.
  x = _rand((2, 5, 7, 3))
  w = _rand((kernel, kernel, 3, 4), seed=5)
  got = jax.jit(transposed_conv_polyphase, static_argnums=2)(
      jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), up)
  stuffed = np.zeros((2, 4 * up + 1, 6 * up + 1, 3))
  stuffed[:, ::up, ::up] = x
  stuffed = np.pad(stuffed, ((0, 0), (kernel - 1,) * 2, (kernel - 1,) * 2, (0, 0)))
  out_h, out_w = stuffed.shape[1] - kernel + 1, stuffed.shape[2] - kernel + 1
  want = np.zeros((2, out_h, out_w, 4))
  for i in range(kernel):
    for j in range(kernel):
      want += np.einsum('nhwc,co->nhwo', stuffed[:, i:i + out_h, j:j + out_w], w[i, j])
  assert got.shape == want.shape == (2, 4 * up + kernel, 6 * up + kernel, 4)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


@pytest.mark.parametrize('up, down, padding, flip, gain', [
    (2, 1, (6, 5), False, 2.0),    # ADA's 2× up-sampling with sym6 (upsample2d's padding)
    (1, 2, (-1, -1), True, 1.0),   # ADA's 2× down-sampling with a crop
    (1, 1, (3, -2), False, 1.0),
    (3, 2, (0, 4), True, 0.5),
])
def test_upfirdn1d_matrix_matches_upfirdn2d_along_each_axis(up, down, padding, flip, gain):
  f = setup_filter(np.arange(1, 13) % 5 + 1.0)   # asymmetric 12 taps: flips and offsets show
  x = _rand((2, 17, 19, 3))
  rows = upfirdn1d_matrix(17, f, up, down, padding, flip, gain)
  cols = upfirdn1d_matrix(19, f, up, down, padding, flip, gain)
  got = np.einsum('oh,nhwc->nowc', rows, x)
  got = np.einsum('ow,nhwc->nhoc', cols, got)
  want = upfirdn2d_reference(x, f, up, down, (padding[0], padding[1]) * 2, flip, gain * gain)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_flip_weight_matters_for_asymmetric_kernels():
  # Guards the test above: correlation and convolution differ, so a wrong flip would be caught.
  f = setup_filter([1, 3, 3, 1])
  x = jnp.asarray(_rand((1, 6, 6, 2)), jnp.float32)
  w = jnp.asarray(_rand((3, 3, 2, 2), seed=3), jnp.float32)
  a = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=True)
  b = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
  assert float(jnp.max(jnp.abs(a - b))) > 0.1


def test_bias_act_lrelu_gain_clamp():
  x = jnp.asarray([[-3.0, -0.5, 0.5, 300.0]], jnp.float32)
  b = jnp.asarray([1.0, 0.0, 0.0, 0.0], jnp.float32)
  y = bias_act(x, b, act='lrelu', gain=np.sqrt(2), clamp=256)
  want = np.array([[-2 * 0.2, -0.5 * 0.2, 0.5, 300.0]]) * np.sqrt(2)
  want = np.clip(want, -256, 256)
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
  assert bias_act(x.astype(jnp.bfloat16), act='linear').dtype == jnp.bfloat16
