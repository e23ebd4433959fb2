"""The FID Inception port: architecture, input pipeline, weights, and parity with pytorch-fid.

The parity tests at the bottom need torch, torchvision and pytorch_fid and are skipped
without them. They build pytorch-fid's own `InceptionV3` with a fixed random state_dict (no
machine here can download the real weights), convert the same state_dict with jaxgen's
converter, and compare on the same images.

tests/data/torch_save_{zip,legacy}.pth were written by torch 2.14 (both `torch.save`
formats) from this state_dict, so that the torch-free reader is checked against real files:

    sd = OrderedDict(); sd['a.weight'] = torch.arange(24.).reshape(2, 3, 2, 2)
    base = torch.arange(30.).reshape(5, 6) / 7; sd['view.t'] = base.t()
    sd['view.slice'] = base[1:4, ::2]; sd['b.double'] = torch.linspace(-1, 1, 5).double()
    sd['c.half'] = torch.tensor([0.5, -2.0, 3.25]).half()
    sd['bn.num_batches_tracked'] = torch.tensor(7)
    sd['p.param'] = torch.nn.Parameter(torch.ones(2, 2) * 1.5)
"""

import hashlib
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import UserError
from jaxgen.metrics import fid, inception, inception_weights
from jaxgen.metrics.inception_bench import synthetic_images

DATA = pathlib.Path(__file__).parent / 'data'


@pytest.fixture(scope='module')
def state_dict():
  return inception_weights.random_state_dict(seed=0)


@pytest.fixture(scope='module')
def params(state_dict):
  return inception_weights.convert_state_dict(state_dict)


# ---------------------------------------------------------------------------------------------
# Architecture (no torch needed).


def test_parameter_count_and_key_shapes():
  flat = inception_weights._flat_shapes()
  total = sum(int(np.prod(s)) for s in flat.values())
  stats = sum(int(np.prod(s)) for k, s in flat.items() if k.endswith(('/mean', '/var')))
  # Counted from pytorch-fid's fid_inception_v3() (torchvision 0.29): its state_dict holds
  # 23,885,392 values, of which 34,432 are BatchNorm running statistics and 23,850,960 are
  # `parameters()` (fc included: 1008 x 2048 + 1008).
  assert total == 23_885_392
  assert total - stats == 23_850_960
  assert sum(k.endswith('/kernel') for k in flat) == 95  # 94 convs + fc
  assert len(flat) == 94 * 5 + 2  # conv kernel + 4 BatchNorm arrays each; fc kernel, bias
  expected = {
      'Conv2d_1a_3x3/kernel': (3, 3, 3, 32),
      'Conv2d_4a_3x3/kernel': (3, 3, 80, 192),
      'Mixed_5b/branch_pool/kernel': (1, 1, 192, 32),
      'Mixed_5d/branch5x5_2/kernel': (5, 5, 48, 64),
      'Mixed_6a/branch3x3/kernel': (3, 3, 288, 384),
      'Mixed_6b/branch7x7_2/kernel': (1, 7, 128, 128),
      'Mixed_6e/branch7x7dbl_2/kernel': (7, 1, 192, 192),
      'Mixed_7a/branch7x7x3_4/kernel': (3, 3, 192, 192),
      'Mixed_7b/branch3x3_2b/kernel': (3, 1, 384, 384),
      'Mixed_7c/branch_pool/kernel': (1, 1, 2048, 192),
      'Mixed_7c/branch3x3dbl_1/var': (448,),
      'fc/kernel': (2048, 1008),
      'fc/bias': (1008,),
  }
  for name, shape in expected.items():
    assert flat[name] == shape, name


def test_linear_taps_reproduce_a_ramp():
  # Bilinear interpolation of a linear ramp returns the ramp at the source coordinate, so the
  # output must be clip((d + 0.5) * in / out - 0.5, 0, in - 1): PyTorch's align_corners=False
  # convention, written independently of the implementation.
  for in_size, out_size in [(64, 299), (512, 299), (300, 299), (7, 3)]:
    ramp = jnp.arange(in_size, dtype=jnp.float32)[None, :, None, None] * jnp.ones((1, 1, 2, 1))
    out = np.asarray(inception.resize_bilinear(ramp, out_size, 2))[0, :, 0, 0]
    src = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    np.testing.assert_allclose(out, np.clip(src, 0, in_size - 1), rtol=0, atol=1e-4)


def test_resize_is_identity_at_299():
  x = jax.random.uniform(jax.random.key(0), (1, 299, 299, 3))
  assert inception.resize_bilinear(x, 299, 299) is x


def test_avg_pool_excludes_padding():
  x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5, 6, 3)))
  out = np.asarray(inception.avg_pool_exclude_pad(jnp.asarray(x)))
  expected = np.empty_like(x)
  for i in range(5):
    for j in range(6):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      expected[:, i, j] = window.mean(axis=(1, 2))  # only unpadded values
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_max_pool_padding_never_wins():
  x = -1.0 - jax.random.uniform(jax.random.key(2), (1, 4, 4, 2))  # all negative
  out = np.asarray(inception.max_pool(x, 3, 1, padding=1))
  xn = np.asarray(x)
  assert out[0, 0, 0, 0] == xn[0, :2, :2, 0].max()  # zero padding would have given 0
  assert out.shape == x.shape


def test_preprocess_input_conventions():
  rgb = np.asarray(jax.random.randint(jax.random.key(3), (2, 20, 24, 3), 0, 256), np.uint8)
  ref = np.asarray(inception.preprocess(jnp.asarray(rgb)))
  assert ref.shape == (2, 299, 299, 3) and ref.min() >= -1 and ref.max() <= 1
  as_pm1 = inception.preprocess(jnp.asarray(rgb / 127.5 - 1, jnp.float32), (-1, 1))
  as_01 = inception.preprocess(jnp.asarray(rgb / 255.0, jnp.float32), (0, 1))
  np.testing.assert_allclose(as_pm1, ref, atol=1e-6)  # float32 rounding of the rescale
  np.testing.assert_allclose(as_01, ref, atol=1e-6)
  gray = rgb[..., :1]
  np.testing.assert_array_equal(inception.preprocess(jnp.asarray(gray)),
                                inception.preprocess(jnp.asarray(np.repeat(gray, 3, -1))))
  np.testing.assert_array_equal(inception.preprocess(jnp.asarray(gray[..., 0])),
                                inception.preprocess(jnp.asarray(gray)))
  with pytest.raises(UserError, match='expects images'):
    inception.preprocess(jnp.zeros((2, 8, 8, 4), jnp.uint8))


def test_to_uint8_rounds_like_saving_png():
  x = jnp.array([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5, -3.0])
  # (x + 1) * 127.5 rounded half up, clipped: 0, 0.1275 -> 0, 127.5 -> 128, 191.25 -> 191.
  np.testing.assert_array_equal(inception.to_uint8(x), [0, 0, 128, 191, 255, 255, 0])


def test_network_output_shapes_and_bias_free_logits(params):
  images = synthetic_images(2, 75)
  pool, logits = jax.jit(inception.apply, static_argnums=2)(params, images, 'fp32')
  assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
  assert pool.dtype == jnp.float32 and np.all(np.asarray(pool) >= 0)  # mean of ReLUs
  # The logits carry no bias: they are exactly pool @ fc.kernel.
  np.testing.assert_allclose(logits, np.asarray(pool) @ params['fc']['kernel'], rtol=1e-4,
                             atol=1e-4 * np.abs(logits).max())


# ---------------------------------------------------------------------------------------------
# Converter and the torch-free .pth reader.


def test_converter_transposes_and_renames(state_dict, params):
  w = state_dict['Mixed_6b.branch7x7_2.conv.weight']  # OIHW [128, 128, 1, 7]
  k = params['Mixed_6b']['branch7x7_2']['kernel']  # HWIO [1, 7, 128, 128]
  assert k.shape == (1, 7, 128, 128)
  assert k[0, 5, 3, 9] == w[9, 3, 0, 5]
  np.testing.assert_array_equal(params['fc']['kernel'], state_dict['fc.weight'].T)
  np.testing.assert_array_equal(params['Mixed_7c']['branch1x1']['var'],
                                state_dict['Mixed_7c.branch1x1.bn.running_var'])


def test_converter_rejects_wrong_state_dicts(state_dict):
  bad = dict(state_dict)
  del bad['Mixed_5b.branch1x1.bn.running_mean']
  with pytest.raises(UserError, match='1 parameters missing'):
    inception_weights.convert_state_dict(bad)
  bad = dict(state_dict, **{'Mixed_5b.branch1x1.conv.weight': np.zeros((64, 192, 3, 3))})
  with pytest.raises(UserError, match='shape'):
    inception_weights.convert_state_dict(bad)
  bad = dict(state_dict, **{'AuxLogits.fc.weight': np.zeros((1008, 768))})
  with pytest.raises(UserError, match='unexpected'):
    inception_weights.convert_state_dict(bad)
  # num_batches_tracked (written by torchvision BatchNorm) is ignored.
  ok = dict(state_dict, **{'Conv2d_1a_3x3.bn.num_batches_tracked': np.array(0)})
  inception_weights.convert_state_dict(ok)


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_plain_reader_reads_torch_files(fmt):
  sd = inception_weights.read_pth(DATA / f'torch_save_{fmt}.pth', use_torch=False)
  base = np.arange(30, dtype=np.float32).reshape(5, 6) / np.float32(7)
  np.testing.assert_array_equal(sd['a.weight'],
                                np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2))
  np.testing.assert_array_equal(sd['view.t'], base.T)
  np.testing.assert_array_equal(sd['view.slice'], base[1:4, ::2])
  np.testing.assert_allclose(sd['b.double'], np.linspace(-1, 1, 5), rtol=0, atol=1e-15)
  assert sd['b.double'].dtype == np.float64
  np.testing.assert_array_equal(sd['c.half'], np.array([0.5, -2.0, 3.25], np.float16))
  assert sd['bn.num_batches_tracked'].shape == () and int(sd['bn.num_batches_tracked']) == 7
  np.testing.assert_array_equal(sd['p.param'], np.full((2, 2), 1.5, np.float32))


def test_plain_reader_rejects_other_files(tmp_path):
  junk = tmp_path / 'junk.pth'
  junk.write_bytes(b'not a torch file at all')
  with pytest.raises(UserError, match='junk.pth'):
    inception_weights.read_pth(junk, use_torch=False)
  import pickle
  import os
  evil = tmp_path / 'evil.pth'
  evil.write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a global that is not a tensor
  with pytest.raises(UserError):
    inception_weights.read_pth(evil, use_torch=False)


# ---------------------------------------------------------------------------------------------
# Finding the weights: explicit path, environment, cache, download (with a local fake).


@pytest.fixture
def fake_release(tmp_path, monkeypatch, state_dict):
  """A stand-in for the release .pth: bytes with a known hash, read as `state_dict`."""
  pth = tmp_path / 'release' / inception_weights.PTH_NAME
  pth.parent.mkdir()
  pth.write_bytes(b'fake pt_inception weights ' * 100)
  digest = hashlib.sha256(pth.read_bytes()).hexdigest()
  monkeypatch.setattr(inception_weights, 'PTH_SHA256', digest)
  reads = []

  def fake_read(path, use_torch=None):
    reads.append(path)
    return state_dict

  monkeypatch.setattr(inception_weights, 'read_pth', fake_read)
  monkeypatch.delenv(inception_weights.ENV_WEIGHTS, raising=False)
  return pth.as_uri(), reads


def test_missing_weights_message(tmp_path, monkeypatch):
  monkeypatch.delenv(inception_weights.ENV_WEIGHTS, raising=False)
  with pytest.raises(UserError) as err:
    inception_weights.load_params(cache=tmp_path, allow_download=False)
  message = str(err.value)
  assert '\n' not in message
  assert inception_weights.PTH_NAME in message
  assert str(tmp_path / 'inception') in message
  assert 'python -m jaxgen.metrics.inception_weights convert' in message


def test_download_converts_into_cache_once(tmp_path, fake_release):
  url, reads = fake_release
  cache = tmp_path / 'cache'
  params = inception_weights.load_params(cache=cache, url=url)
  assert (cache / 'inception' / inception_weights.PTH_NAME).is_file()
  assert (cache / 'inception' / inception_weights.CONVERTED_NAME).is_file()
  assert len(reads) == 1
  again = inception_weights.load_params(cache=cache, url='file:///nowhere')
  assert len(reads) == 1  # served from the converted cache entry
  np.testing.assert_array_equal(again['fc']['kernel'], params['fc']['kernel'])
  assert not list((cache / 'inception').glob('*.tmp')) + list((cache / 'inception').glob('*.part'))


def test_download_hash_mismatch_is_an_error(tmp_path, fake_release, monkeypatch):
  url, _ = fake_release
  monkeypatch.setattr(inception_weights, 'PTH_SHA256', '0' * 64)
  with pytest.raises(UserError, match='SHA-256'):
    inception_weights.load_params(cache=tmp_path / 'cache', url=url)
  assert not any((tmp_path / 'cache' / 'inception').iterdir())  # nothing half-written kept


def test_unreachable_download_names_the_file(tmp_path, fake_release):
  with pytest.raises(UserError) as err:
    inception_weights.load_params(cache=tmp_path / 'c', url=(tmp_path / 'missing').as_uri())
  assert 'cannot download' in str(err.value) and inception_weights.PTH_NAME in str(err.value)


def test_corrupt_cache_entry_is_rebuilt(tmp_path, fake_release):
  url, reads = fake_release
  cache = tmp_path / 'cache'
  inception_weights.load_params(cache=cache, url=url)
  converted = cache / 'inception' / inception_weights.CONVERTED_NAME
  blob = bytearray(converted.read_bytes())
  blob[len(blob) // 2:len(blob) // 2 + 64] = b'\x00' * 64  # corrupt the middle (CRC fails)
  converted.write_bytes(bytes(blob))
  with pytest.warns(UserWarning, match='rebuilding'):
    params = inception_weights.load_params(cache=cache, url='file:///nowhere')
  assert len(reads) == 2  # converted again from the cached .pth, not downloaded
  inception_weights.load_converted(converted)  # valid again
  assert params['fc']['kernel'].shape == (2048, 1008)


def test_corrupt_cached_pth_is_an_error(tmp_path, fake_release):
  url, _ = fake_release
  cache = tmp_path / 'cache'
  (cache / 'inception').mkdir(parents=True)
  (cache / 'inception' / inception_weights.PTH_NAME).write_bytes(b'truncated')
  with pytest.raises(UserError, match='wrong SHA-256'):
    inception_weights.load_params(cache=cache, url=url)


def test_explicit_path_and_environment(tmp_path, monkeypatch, state_dict):
  out = tmp_path / 'w.npz'
  inception_weights.save_converted(inception_weights.state_dict_to_flat(state_dict), out)
  monkeypatch.setenv(inception_weights.ENV_WEIGHTS, str(out))
  from_env = inception_weights.load_params(cache=tmp_path / 'empty', allow_download=False)
  np.testing.assert_array_equal(from_env['fc']['bias'], state_dict['fc.bias'])
  with pytest.raises(UserError, match='do not exist'):
    inception_weights.load_params(weights=tmp_path / 'nope.npz')
  # A converted file that is damaged is reported, naming the command to redo it.
  out.write_bytes(out.read_bytes()[:1000])
  with pytest.raises(UserError, match='corrupt'):
    inception_weights.load_params(weights=out)


def test_convert_cli(tmp_path, monkeypatch, state_dict):
  monkeypatch.setattr(inception_weights, 'read_pth', lambda path, use_torch=None: state_dict)
  pth = tmp_path / 'x.pth'
  pth.write_bytes(b'stand-in')
  out = tmp_path / 'x.npz'
  assert inception_weights.main(['convert', '--pth', str(pth), '--out', str(out)]) == 2
  assert not out.exists()  # hash mismatch: refused
  assert inception_weights.main(['convert', '--pth', str(pth), '--out', str(out),
                                 '--no-hash-check']) == 0
  params, source = inception_weights.load_converted(out)
  assert source == hashlib.sha256(b'stand-in').hexdigest()
  np.testing.assert_array_equal(params['Conv2d_1a_3x3']['kernel'],
                                state_dict['Conv2d_1a_3x3.conv.weight'].transpose(2, 3, 1, 0))


# ---------------------------------------------------------------------------------------------
# Parity with the real pytorch-fid package (skipped without torch, torchvision, pytorch_fid).


@pytest.fixture(scope='module')
def torch_model(state_dict):
  torch = pytest.importorskip('torch', reason='parity with pytorch-fid needs torch')
  pytest.importorskip('torchvision', reason='parity with pytorch-fid needs torchvision')
  pfi = pytest.importorskip('pytorch_fid.inception', reason='parity needs pytorch-fid')
  sd = {k: torch.from_numpy(v) for k, v in state_dict.items()}
  original = pfi.load_state_dict_from_url
  pfi.load_state_dict_from_url = lambda *args, **kwargs: sd  # no download: our weights
  try:
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  finally:
    pfi.load_state_dict_from_url = original
  return model


def _torch_features(model, images, batch_size=50):
  """pytorch-fid's get_activations on uint8 [N, H, W, 3] (ToTensor: /255), fp32 CPU."""
  import torch  # pylint: disable=import-outside-toplevel
  pools = []
  with torch.no_grad():
    for start in range(0, len(images), batch_size):
      x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255
      pools.append(model(x)[0][:, :, 0, 0].numpy())
  return np.concatenate(pools)


def test_resize_matches_torch(torch_model):
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for h, w in [(64, 80), (512, 400), (256, 256), (299, 299), (300, 17)]:
    x = rng.uniform(0, 1, (2, h, w, 3)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299),
                        mode='bilinear', align_corners=False).permute(0, 2, 3, 1).numpy()
    out = np.asarray(inception.resize_bilinear(jnp.asarray(x), 299, 299))
    # The weights are bit-identical (PyTorch's fused multiply-add source index); only the
    # rounding of the two-term blends may differ, by an ulp or two of values <= 1. (Without
    # the FMA-exact index the error was 3.7e-6, so this bound can fail.)
    np.testing.assert_allclose(out, ref, rtol=0, atol=5e-7)


def test_features_and_logits_match_pytorch_fid(torch_model, state_dict, params):
  images = np.concatenate([synthetic_images(6, 64, seed=1), synthetic_images(6, 64, seed=2,
                                                                             style=1)])
  ref_pool = _torch_features(torch_model, images)
  ref_logits = ref_pool @ state_dict['fc.weight'].T  # fc without its bias
  pool, logits = jax.jit(inception.apply, static_argnums=2)(params, images, 'fp32')
  pool, logits = np.asarray(pool), np.asarray(logits)
  print(f'max rel error: pool3 {np.abs(pool - ref_pool).max() / np.abs(ref_pool).max():.2e} '
        f'logits {np.abs(logits - ref_logits).max() / np.abs(ref_logits).max():.2e}')
  # 1e-4 relative (of the largest value) is the bound; float32 rounding through
  # 94 layers measures ~1e-6 here.
  assert np.abs(pool - ref_pool).max() <= 1e-4 * np.abs(ref_pool).max()
  assert np.abs(logits - ref_logits).max() <= 1e-4 * np.abs(ref_logits).max()
  # Also elementwise: every feature within 1e-4 relative or 1e-5 of the scale absolute.
  np.testing.assert_allclose(pool, ref_pool, rtol=1e-4, atol=1e-5 * np.abs(ref_pool).max())


def test_fid_matches_pytorch_fid(torch_model, params):
  from pytorch_fid import fid_score  # pylint: disable=import-outside-toplevel
  n = 150  # per set: 300 images in all
  set_a = synthetic_images(n, 64, seed=3, style=0)
  set_b = synthetic_images(n, 64, seed=4, style=1)
  feats = [_torch_features(torch_model, s) for s in (set_a, set_b)]
  stats = [(np.mean(f, 0), np.cov(f, rowvar=False)) for f in feats]  # as pytorch-fid
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ref = fid_score.calculate_frechet_distance(*stats[0], *stats[1])

  net = fid.InceptionFeatures(params, precision='fp32')
  ours = [fid.extract(net, (s[i:i + 50] for i in range(0, n, 50))) for s in (set_a, set_b)]
  value = fid.frechet_distance(ours[0].mu, ours[0].sigma, ours[1].mu, ours[1].sigma)
  print(f'FID pytorch-fid={ref:.6f} jaxgen={value:.6f} rel={abs(value - ref) / ref:.2e}')
  assert ref > 1.0  # the two sets differ: the comparison is not trivially 0 vs 0
  assert abs(value - ref) <= 1e-3 * ref


def test_frechet_distance_matches_pytorch_fid():
  fid_score = pytest.importorskip('pytorch_fid.fid_score', reason='needs pytorch-fid')
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(200, 32)), rng.normal(0.3, 1.2, size=(300, 32))
  args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ref = fid_score.calculate_frechet_distance(*args)
  assert fid.frechet_distance(*args) == pytest.approx(ref, rel=1e-10)


def test_reader_matches_torch_on_a_full_state_dict(tmp_path, state_dict):
  torch = pytest.importorskip('torch', reason='needs torch')
  sd = {k: torch.from_numpy(v) for k, v in state_dict.items()}
  for legacy in (False, True):
    path = tmp_path / f'sd_{legacy}.pth'
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    plain = inception_weights.read_pth(path, use_torch=False)
    with_torch = inception_weights.read_pth(path, use_torch=True)
    assert list(plain) == list(state_dict)
    for key, value in state_dict.items():
      np.testing.assert_array_equal(plain[key], value)
      np.testing.assert_array_equal(with_torch[key], value)
    out = tmp_path / 'converted.npz'
    inception_weights.convert_pth(path, out, check_hash=False, use_torch=False)
    loaded, _ = inception_weights.load_converted(out)
    expected = state_dict['Mixed_7c.branch_pool.conv.weight'].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(loaded['Mixed_7c']['branch_pool']['kernel'], expected)
