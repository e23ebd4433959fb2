"""LPIPS (VGG16, v0.1): equal to the lpips package on shared weights (tests/data/vgg_lpips.npz,
recorded by make_vgg_lpips_fixture.py from richzhang/PerceptualSimilarity's own code; the weights
are drawn again here with NumPy by the same function), its metric properties, and its weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vgg_lpips_testing
from jaxgen import pretrained
from jaxgen.errors import UserError
from jaxgen.metrics import lpips
from jaxgen.models import vgg


@pytest.fixture(scope='module')
def fixture():
  _, recorded, (_, vgg16_sd, linear_sd, _) = vgg_lpips_testing.load()
  return recorded, vgg16_sd, linear_sd


@pytest.fixture(scope='module')
def params(fixture):
  _, vgg16_sd, linear_sd = fixture
  return lpips.params_from_torch(vgg16_sd, linear_sd)


@pytest.fixture(scope='module')
def distances(fixture, params):
  """(d, per_layer) of the recorded pairs (near, different, identical), and d of them swapped."""
  recorded, _, _ = fixture
  x0, x1 = recorded['lpips/x0'], recorded['lpips/x1']
  d, per_layer = lpips.distance(params, x0, x1, per_layer=True)
  swapped, _ = lpips.distance(params, x1, x0, per_layer=True)  # the same compiled program
  return np.asarray(d), np.asarray(per_layer), np.asarray(swapped)


def test_equals_the_lpips_package(fixture, distances):
  recorded, _, _ = fixture
  d, per_layer, _ = distances
  assert d.shape == (3,) and per_layer.shape == (5, 3)
  # Measured: 2e-9 absolute on distances 5e-3 and 0.4 (float32 rounding of the features).
  np.testing.assert_allclose(d, recorded['lpips/d'], rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(per_layer, recorded['lpips/per_layer'], rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(d, per_layer.sum(0), rtol=1e-6)


def test_metric_properties(fixture, distances):
  recorded, _, _ = fixture
  d, _, swapped = distances  # pairs: near (noise of std 0.05), different, identical
  # Identical images: 0 up to the last bit of the features (compiled, the two halves of the
  # batch may round differently), far below any real distance (here 5e-3 and 0.4).
  assert abs(d[2]) < 1e-12 and abs(swapped[2]) < 1e-12
  np.testing.assert_allclose(swapped, d, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(swapped, recorded['lpips/d_swapped'], rtol=1e-5, atol=1e-8)
  assert d[0] > 1e-4 and d[1] > 10 * d[0]  # a slightly noisy copy is far closer than another


def test_scaling_layer_is_torchvision_normalisation():
  # LPIPS's shift/scale are torchvision's ImageNet mean/std written for [-1, 1] inputs.
  np.testing.assert_allclose(lpips.SHIFT, 2 * np.array(vgg.IMAGENET_MEAN) - 1, atol=1e-12)
  np.testing.assert_allclose(lpips.SCALE, 2 * np.array(vgg.IMAGENET_STD), atol=1e-12)


def test_unit_normalize():
  f = jnp.array([[3.0, 4.0], [0.0, 0.0]])
  np.testing.assert_allclose(lpips.unit_normalize(f), [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_weights_and_parameters(fixture, params, tmp_path, monkeypatch):
  _, vgg16_sd, linear_sd = fixture
  shapes = jax.eval_shape(lpips.LPIPS().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                          jnp.zeros((1, 32, 32, 3)))['params']
  assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(params)
  assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, params)
  assert sum(np.prod(p.shape) for p in jax.tree.leaves(params)) == 14_714_688 + 1472
  # load_params finds both files, each as its spec says: here through the environment.
  vgg_file, linear_file = tmp_path / 'vgg16.npz', tmp_path / 'lin.npz'
  for spec, sd, path in ((vgg.VGG16_WEIGHTS, vgg16_sd, vgg_file),
                         (lpips.LINEAR_WEIGHTS, linear_sd, linear_file)):
    pretrained.save_converted(spec, pretrained.convert_state_dict(spec, sd), path, spec.sha256)
    monkeypatch.setenv(spec.env_var, str(path))
  loaded = lpips.load_params(cache=tmp_path / 'empty', allow_download=False)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  monkeypatch.delenv(lpips.LINEAR_WEIGHTS.env_var)
  with pytest.raises(UserError, match='JAXGEN_LPIPS_VGG_WEIGHTS'):
    lpips.load_params(cache=tmp_path / 'empty', allow_download=False)
  with pytest.raises(UserError, match='one shape'):
    lpips.distance(params, jnp.zeros((1, 32, 32, 3)), jnp.zeros((2, 32, 32, 3)))
