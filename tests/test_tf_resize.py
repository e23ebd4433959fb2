"""TensorFlow 1.x's bilinear resize for the FID Inception (`eval.fid_resize='tf'`).

`inception.resize_bilinear_tf` against torch-fidelity 0.4.0's TF-compatible resize
(`tests/data/tf_resize.npz`, made by `tests/data/make_tf_resize_fixture.py`), its mapping in
closed form, how it differs from pytorch-fid's resize, and the option's plumbing: the
Inception input pipeline, the real-statistics cache key, the Evaluator and the CLI.
"""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from jaxgen import data, evaluation, parallel
from jaxgen import fid as fid_cli
from jaxgen.errors import UserError
from jaxgen.metrics import fid, inception, registry

FIXTURE = os.path.join(os.path.dirname(__file__), 'data', 'tf_resize.npz')
SIZE = inception.INPUT_SIZE

# Element-wise tolerance on the 0..255 scale: 4 float32 ulps of values in [128, 256)
# (ulp = 2^-16). TensorFlow evaluates three lerps a + (b - a) * t per output; a backend that
# contracts a multiply-add into an FMA (XLA does on CPU with LLVM optimisation, nvcc on GPUs)
# rounds each lerp once instead of twice, which moves the result by at most ~1 ulp per lerp,
# and the final convex blend does not amplify it: <= 3 ulps, measured 2. Any error in a tap
# (index or weight) moves values by whole gray levels. After the graph's (x - 128) / 128 this
# is 4.8e-7 in the network's input units.
ATOL = 4 * 2.0**-16


@pytest.fixture(scope='module')
def fixture():
  with np.load(FIXTURE) as f:
    return {k: f[k] for k in f.files}


def _resize_tf(x):
  return np.asarray(jax.jit(inception.resize_bilinear_tf, static_argnums=(1, 2))(
      jnp.asarray(x, jnp.float32), SIZE, SIZE))


def _resize_torch(x):
  return np.asarray(jax.jit(inception.resize_bilinear, static_argnums=(1, 2))(
      jnp.asarray(x, jnp.float32), SIZE, SIZE))


def _checksums(y):
  """As the fixture script: sum, sum of squares, sum weighted by (i % 97 - 48) / 48."""
  y = np.asarray(y, np.float64).reshape(-1)
  c = (np.arange(y.size) % 97 - 48) / 48.0
  return np.array([y.sum(), (y * y).sum(), (y * c).sum()])


@pytest.mark.parametrize('case', ['up32', 'up64', 'odd17x23', 'down300'])
def test_matches_torch_fidelity(fixture, case):
  image = fixture[f'{case}/input']
  out = _resize_tf(image)
  assert out.shape == (image.shape[0], SIZE, SIZE, 3) and out.dtype == np.float32
  # The stored positions include every pixel of the first and last output rows and columns:
  # as the resize is separable, those alone check every column tap (rows) and every row tap
  # (columns); the 4096 random positions check how the two are combined.
  np.testing.assert_allclose(out.reshape(-1)[fixture[f'{case}/index']], fixture[f'{case}/tf'],
                             rtol=0, atol=ATOL)
  # The whole output: hard bounds from ATOL per element (|weights| <= 1, |y + y'| <= 511), so
  # they can only catch systematic errors, e.g. a shifted grid (~1e6 off here).
  n = out.size
  np.testing.assert_array_less(np.abs(_checksums(out) - fixture[f'{case}/checksum']),
                               n * ATOL * np.array([1, 511, 1]))


@pytest.mark.parametrize('case', ['up32', 'odd17x23', 'down300'])
def test_differs_from_the_pytorch_fid_resize(fixture, case):
  image = fixture[f'{case}/input'].astype(np.float32)
  tf_out, torch_out = _resize_tf(image), _resize_torch(image)
  # Our PyTorch-convention resize is torch's (same tolerance argument), so the comparison
  # below is between the two references, not between two of our functions.
  np.testing.assert_allclose(torch_out.reshape(-1)[fixture[f'{case}/index']],
                             fixture[f'{case}/torch'], rtol=0, atol=ATOL)
  diff = np.abs(tf_out - torch_out)
  # Upsampling random pixels by ~10x with grids half a source pixel apart: ~30 gray levels on
  # average. 300 -> 299 moves the grid by at most 1/600 of a pixel: still far above ATOL.
  floor = 0.1 if case == 'down300' else 10.0
  assert diff.mean() > floor, diff.mean()


@pytest.mark.parametrize('size', [1, 7, 32, 300])
def test_mapping_on_a_ramp_is_src_equals_dst_times_scale(size):
  """On an image whose value is its column index, the resize returns its sample coordinate:
  TF's s = d * in / out (clamped to the last pixel), PyTorch's (d + 0.5) * in / out - 0.5."""
  ramp = np.broadcast_to(np.arange(size, dtype=np.float32)[None, None, :, None],
                         (1, 3, size, 1))
  d = np.arange(SIZE)
  tf_row = np.asarray(inception.resize_bilinear_tf(jnp.asarray(ramp), 3, SIZE))[0, 1, :, 0]
  expected = np.minimum(d * size / SIZE, size - 1)
  # float32 coordinates up to 300: a few ulps (2^-15 each) of rounding in scale and product.
  np.testing.assert_allclose(tf_row, expected, rtol=0, atol=1e-4)
  torch_row = np.asarray(inception.resize_bilinear(jnp.asarray(ramp), 3, SIZE))[0, 1, :, 0]
  shift = tf_row - torch_row  # = 0.5 (1 - in / out) where neither coordinate is clamped
  torch_src = (d + 0.5) * size / SIZE - 0.5
  interior = (torch_src >= 0) & (torch_src <= size - 1) & (d * size / SIZE <= size - 1)
  assert interior.sum() > SIZE // 2 or size == 1  # (the comparison is not vacuous)
  np.testing.assert_allclose(shift[interior], 0.5 * (1 - size / SIZE), rtol=0, atol=1e-4)


def test_same_size_is_the_identity():
  x = jnp.ones((1, SIZE, SIZE, 3))
  assert inception.resize_bilinear_tf(x, SIZE, SIZE) is x


def test_preprocess_tf_is_the_graphs_pipeline(fixture):
  image = fixture['odd17x23/input']
  x = np.asarray(inception.preprocess(jnp.asarray(image), resize='tf'))
  # TF graph: resize the float32 0..255 image, then (x - 128) / 128 (so 255 -> 0.9921875).
  expected = (fixture['odd17x23/tf'] - 128.0) / 128.0
  np.testing.assert_allclose(x.reshape(-1)[fixture['odd17x23/index']], expected, rtol=0,
                             atol=ATOL / 128)
  # Floats in [-1, 1] reach the same 0..255 values up to float32 rounding of the rescale
  # (a few ulps of 255: 1e-5, / 128 after the normalisation).
  as_float = jnp.asarray(image / 127.5 - 1, jnp.float32)
  np.testing.assert_allclose(inception.preprocess(as_float, resize='tf'), x, rtol=0, atol=1e-6)
  # Not pytorch-fid's input: resize and normalisation differ.
  torch_x = np.asarray(inception.preprocess(jnp.asarray(image)))
  assert np.abs(torch_x - x).mean() > 0.05
  with pytest.raises(UserError, match="'torch'.*'tf'"):
    inception.preprocess(jnp.asarray(image), resize='bicubic')


def test_inception_features_validates_resize():
  with pytest.raises(UserError, match="unknown FID resize 'TF'"):
    fid.InceptionFeatures({}, resize='TF')


class _StandIn:
  """A cheap feature extractor with InceptionFeatures' cache-key attributes."""

  precision = 'fp32'
  weights_id = 'abc'

  def __init__(self, resize):
    self.resize = resize

  def __call__(self, images, pad_to=None):
    del pad_to
    x = np.asarray(images, np.float64).reshape(images.shape[0], -1)[:, :8]
    return x, x


def test_real_stats_cache_is_keyed_by_resize(tmp_path):
  assert fid.real_stats_path('d', 32, 50, '/c', 'fp32', 'abc').name == 'd-32px-50-wabc.npz'
  assert (fid.real_stats_path('d', 32, 50, '/c', 'fp32', 'abc', 'torch')
          == fid.real_stats_path('d', 32, 50, '/c', 'fp32', 'abc'))
  assert (fid.real_stats_path('d', 32, None, '/c', 'bf16', 'abc', 'tf').name
          == 'd-32px-full-bf16-tfresize-wabc.npz')
  with pytest.raises(UserError):
    fid.real_stats_path('d', 32, 50, '/c', resize='nearest')

  rng = np.random.default_rng(0)
  reals = rng.integers(0, 256, (1000, 4, 4, 3), np.uint8)
  fakes = rng.integers(0, 256, (1000, 4, 4, 3), np.uint8)
  calls = []

  def real_batches(num):
    calls.append(num)
    return iter([reals[:num]])

  results = {}
  for resize in ('torch', 'tf', 'tf'):
    results[resize] = registry.compute_metrics(
        ['fid1k'], _StandIn(resize), lambda n: iter([fakes[:n]]), real_batches,
        dataset='d', resolution=4, cache=tmp_path)
  names = sorted(p.name for p in (tmp_path / 'fid_stats').iterdir())
  assert names == ['d-4px-1000-tfresize-wabc.npz', 'd-4px-1000-wabc.npz']
  assert calls == [1000, 1000]  # 'tf' did not reuse the 'torch' entry; its second call did
  assert results['tf'] == results['torch']  # (the stand-in ignores the resize)


def _evaluator_inputs(**overrides):
  """A tiny config and source, and the only recipe attribute the constructor reads."""
  config = tiny_config(**overrides)
  source = data.create_source(config.data)
  return config, types.SimpleNamespace(num_classes=0), source, parallel.create_mesh()


def test_evaluator_reads_fid_resize(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXGEN_CACHE', str(tmp_path / 'cache'))
  loaded = []

  class Recording(_StandIn):
    def __init__(self, **kwargs):
      super().__init__(kwargs['resize'])
      loaded.append(kwargs)

  monkeypatch.setattr(evaluation.fid_lib, 'InceptionFeatures', Recording)
  config, recipe, source, mesh = _evaluator_inputs(**{'eval.metrics': ('fid1k',)})
  assert 'fid_resize' not in config.eval  # configs without the key keep today's pipeline
  assert evaluation.Evaluator(config, recipe, source, mesh).inception.resize == 'torch'
  config.eval.fid_resize = 'tf'
  evaluator = evaluation.Evaluator(config, recipe, source, mesh)
  assert evaluator.fid_resize == 'tf' and loaded[-1]['resize'] == 'tf'

  config.eval.fid_resize = 'pil'
  with pytest.raises(UserError) as e:
    evaluation.Evaluator(config, recipe, source, mesh)
  assert "eval.fid_resize='pil'" in str(e.value) and "'torch'" in str(e.value)
  assert "'tf'" in str(e.value) and '\n' not in str(e.value)
  with pytest.raises(UserError, match='eval.fid_resize'):  # even with a network given
    evaluation.Evaluator(config, recipe, source, mesh, inception=_StandIn('torch'))
  assert len(loaded) == 2 and not (tmp_path / 'cache').exists()

  config.eval.fid_resize = 'tf'
  with pytest.raises(UserError, match="resizes like 'torch'"):
    evaluation.Evaluator(config, recipe, source, mesh, inception=_StandIn('torch'))


def test_cli_resize_flag(tmp_path, monkeypatch, capsys):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  for name in ('a', 'b'):
    (tmp_path / name).mkdir()
    for i in range(12):  # more images than the stand-in's 8 features: a full-rank covariance
      Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).save(
          tmp_path / name / f'{i}.png')
  made = []

  def fake_features(**kwargs):
    made.append(kwargs)
    return _StandIn(kwargs['resize'])

  monkeypatch.setattr(fid, 'InceptionFeatures', fake_features)
  folders = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert fid_cli.main(folders) == 0 and made[-1]['resize'] == 'torch'
  assert fid_cli.main(['--resize=tf', *folders]) == 0 and made[-1]['resize'] == 'tf'
  assert capsys.readouterr().out.count('FID: ') == 2
  with pytest.raises(SystemExit):
    fid_cli.parse_args(['--resize=bilinear', *folders])
  assert 'invalid choice' in capsys.readouterr().err
