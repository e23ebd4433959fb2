"""VGG16/VGG19 features: torchvision's layout, parameter counts, and outputs equal to torchvision's
on shared weights (tests/data/vgg_lpips.npz, recorded by make_vgg_lpips_fixture.py; the
weights are drawn again here with NumPy by the same function, so the fixture holds only inputs
and outputs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vgg_lpips_testing
from jaxgen import pretrained
from jaxgen.errors import UserError
from jaxgen.models import vgg


@pytest.fixture(scope='module')
def fixture():
  script, recorded, (vgg19_sd, vgg16_sd, _, _) = vgg_lpips_testing.load()
  return script, recorded, vgg19_sd, vgg16_sd


def _flat_shapes(tree):
  return {'/'.join(k.key for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_layers_and_parameter_counts():
  # torchvision's vgg16().features / vgg19().features: 31 / 37 modules; the convolutions'
  # parameters (the classifier excluded) number 14,714,688 / 20,024,384.
  assert len(vgg.layer_names(16)) == 31 and len(vgg.layer_names(19)) == 37
  assert vgg.param_count(16) == 14_714_688
  assert vgg.param_count(19) == 20_024_384
  index19, index16 = vgg.torchvision_index(19), vgg.torchvision_index(16)
  assert index19['conv5_4'] == 34 and index19['conv4_1'] == 19 and index19['conv3_4'] == 16
  assert index16['conv5_3'] == 28 and index16['conv4_1'] == 17 and 'conv3_4' not in index16
  # The Flax module declares exactly those parameters (shapes only, nothing computed).
  for depth in (16, 19):
    net = vgg.VGG(depth, outputs=('pool5',))
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert _flat_shapes(shapes['params']) == vgg.param_shapes(depth)


def test_stops_after_the_deepest_requested_layer():
  net = vgg.VGG(19, outputs=('relu2_1', 'relu1_1'))
  x = jnp.zeros((1, 16, 16, 3))
  params = jax.eval_shape(net.init, jax.random.key(0), x)['params']
  assert sorted(params) == ['conv1_1', 'conv1_2', 'conv2_1']
  jaxpr = str(jax.make_jaxpr(lambda p: net.apply({'params': p}, x))(params))
  assert jaxpr.count('conv_general_dilated') == 3
  out = jax.eval_shape(lambda p: net.apply({'params': p}, x), params)
  assert {k: v.shape for k, v in out.items()} == {'relu1_1': (1, 16, 16, 64),
                                                  'relu2_1': (1, 8, 8, 128)}


def test_bad_arguments():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(UserError, match='conv3_4'):
    jax.eval_shape(vgg.VGG(16, outputs=('conv3_4',)).init, jax.random.key(0), x)
  with pytest.raises(UserError, match='non-empty list'):
    jax.eval_shape(vgg.VGG(19, outputs='relu1_1').init, jax.random.key(0), x)
  with pytest.raises(UserError, match='16 or 19'):
    vgg.layer_names(11)
  with pytest.raises(UserError, match='RGB'):
    jax.eval_shape(vgg.VGG(19, outputs=('relu1_1',)).init, jax.random.key(0),
                   jnp.zeros((1, 8, 8, 1)))


def test_torchvision_state_dict_conversion(fixture):
  _, _, vgg19_sd, vgg16_sd = fixture
  with_classifier = dict(vgg19_sd)
  with_classifier['classifier.6.weight'] = np.zeros((1000, 4096), np.float32)  # ignored
  with_classifier['features.34.weight'] = vgg19_sd['features.34.weight'].astype(np.float16)
  params = vgg.params_from_torchvision(with_classifier)
  assert sorted(params) == sorted(vgg.torchvision_index(19))
  np.testing.assert_array_equal(params['conv3_2']['kernel'],
                                vgg19_sd['features.12.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params['conv5_4']['bias'], vgg19_sd['features.34.bias'])
  assert params['conv5_4']['kernel'].dtype == np.float32
  assert sorted(vgg.params_from_torchvision(vgg16_sd)) == sorted(vgg.torchvision_index(16))
  with pytest.raises(UserError, match='unexpected key'):
    vgg.params_from_torchvision(dict(vgg19_sd, **{'features.1.weight': np.zeros(3)}), depth=19)
  with pytest.raises(UserError, match='VGG16 .13 convolutions'):
    vgg.params_from_torchvision({'features.0.weight': np.zeros((64, 3, 3, 3))})
  with pytest.raises(UserError, match='unexpected key'):  # VGG16 weights as VGG19
    vgg.params_from_torchvision(vgg16_sd, depth=19)


def test_outputs_equal_torchvision_vgg19(fixture):
  script, recorded, vgg19_sd, _ = fixture
  params = vgg.params_from_torchvision(vgg19_sd)
  layers = tuple(script.VGG19_STEP)
  out = jax.jit(vgg.VGG(19, outputs=layers).apply)({'params': params}, recorded['vgg19/x'])
  assert set(out) == set(layers)
  for name, step in script.VGG19_STEP.items():
    ref = recorded[f'vgg19/{name}']
    got = np.asarray(out[name])[..., ::step]
    assert got.shape == ref.shape, name
    # float32 on both sides; sums of up to 4,608 products in another order through up to 16
    # layers: measured 2.7e-6 of the largest value (at pool5). 2e-5 leaves room across CPUs.
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max(), err_msg=name)


def test_outputs_equal_torchvision_vgg16(fixture, tmp_path):
  script, recorded, _, vgg16_sd = fixture
  # Through the weight file, as load_params would find it (an explicit converted .npz).
  weights = tmp_path / 'vgg16.npz'
  flat = pretrained.convert_state_dict(vgg.VGG16_WEIGHTS, vgg16_sd)
  pretrained.save_converted(vgg.VGG16_WEIGHTS, flat, weights, vgg.VGG16_WEIGHTS.sha256)
  params = vgg.load_params(16, weights=weights)
  layers = tuple(script.VGG16_STEP)
  out = jax.jit(vgg.VGG(16, outputs=layers).apply)({'params': params}, recorded['vgg19/x'])
  for name, step in script.VGG16_STEP.items():
    ref = recorded[f'vgg16/{name}']
    # As for VGG19 (13 layers here).
    np.testing.assert_allclose(np.asarray(out[name])[..., ::step], ref, rtol=0,
                               atol=2e-5 * np.abs(ref).max(), err_msg=name)


def test_bfloat16_compute_is_close(fixture):
  _, recorded, vgg19_sd, _ = fixture
  params = vgg.params_from_torchvision(vgg19_sd)
  x = recorded['vgg19/x']
  ref = recorded['vgg19/relu2_1']
  net = vgg.VGG(19, outputs=('relu2_1',), dtype=jnp.bfloat16)
  out = jax.jit(net.apply)({'params': params}, x)
  assert out['relu2_1'].dtype == jnp.float32
  got = np.asarray(out['relu2_1'])[..., ::8]
  # bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2%) per input and kernel;
  # after 3 convolutions the error stays within 2% of the largest activation.
  np.testing.assert_allclose(got, ref, rtol=0, atol=2e-2 * np.abs(ref).max())
  assert np.abs(got - ref).max() > 0  # it did compute in bfloat16
