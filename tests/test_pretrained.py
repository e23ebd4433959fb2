"""jaxgen.pretrained: the torch-free .pth reader, the resolver's order, its one-line failures,
hash checks, atomic cache writes, and the command line. No network: downloads come from
file:// URLs, and `urlopen` is replaced where the real URL would be tried.

The weight file used throughout is tests/data/tiny_state_dict.pth, a real `torch.save` (zip
format, torch 2.13) in the layout of lpips' linear-layer file (see README_vgg_lpips.md), with the
LPIPS spec's SHA-256 and URL replaced by the fixture's.
"""

import dataclasses
import hashlib
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import fixture_maker
from jaxgen import pretrained
from jaxgen.errors import UserError
from jaxgen.metrics import lpips
from jaxgen.models import vgg

DATA = pathlib.Path(__file__).parent / 'data'
TINY = DATA / 'tiny_state_dict.pth'
ROOT = pathlib.Path(__file__).parent.parent


@pytest.fixture(scope='module')
def tiny_values():
  """What tiny_state_dict.pth holds, drawn again with NumPy (lin1 was saved as float16)."""
  values = fixture_maker('vgg_lpips').tiny_state_dict_arrays()
  values['lin1.model.1.weight'] = values['lin1.model.1.weight'].astype(np.float16)
  return values


@pytest.fixture
def release(tmp_path, monkeypatch):
  """The LPIPS linear-weights spec pointed at a local 'release' of tiny_state_dict.pth."""
  folder = tmp_path / 'release'
  folder.mkdir()
  shutil.copy(TINY, folder / 'vgg.pth')
  spec = dataclasses.replace(lpips.LINEAR_WEIGHTS, sha256=pretrained.sha256_file(TINY),
                             url=(folder / 'vgg.pth').as_uri())
  monkeypatch.delenv(spec.env_var, raising=False)
  monkeypatch.setenv(pretrained.ENV_CACHE, str(tmp_path / 'default_cache'))
  return spec


def _counting_reader():
  reads = []

  def read(path):
    reads.append(pathlib.Path(path))
    return pretrained.load_torch_state_dict(path)

  return read, reads


class _Call:
  """Unpickles as a call of os.getcwd (harmless, but a call: a safe reader refuses it)."""

  def __reduce__(self):
    return os.getcwd, ()


def _leftovers(folder):
  return list(folder.glob('*.tmp')) + list(folder.glob('*.part'))


# ---------------------------------------------------------------------------------------------
# The torch-free reader.


def test_reader_reads_a_real_torch_file(tiny_values):
  sd = pretrained.load_torch_state_dict(TINY)
  assert list(sd) == [f'lin{k}.model.1.weight' for k in range(5)]
  for key, value in tiny_values.items():
    assert sd[key].dtype == value.dtype and sd[key].shape == value.shape, key
    np.testing.assert_array_equal(sd[key], value)
  # lin3, lin4: non-contiguous views (stride 2, offsets 0 and 1) of one shared storage,
  # copied out into arrays of their own.
  for key in ('lin3.model.1.weight', 'lin4.model.1.weight'):
    assert sd[key].flags['C_CONTIGUOUS'] and sd[key].flags['OWNDATA'], key


def test_reader_reads_the_legacy_format():
  sd = pretrained.load_torch_state_dict(DATA / 'torch_save_legacy.pth')
  base = np.arange(30, dtype=np.float32).reshape(5, 6) / np.float32(7)
  np.testing.assert_array_equal(sd['view.slice'], base[1:4, ::2])
  assert sd['c.half'].dtype == np.float16


def test_reader_refuses_what_is_not_a_state_dict(tmp_path):
  with pytest.raises(UserError, match='no such file'):
    pretrained.load_torch_state_dict(tmp_path / 'nope.pth')
  junk = tmp_path / 'junk.pth'
  junk.write_bytes(b'\x80\x02 not a pickle')
  with pytest.raises(UserError, match='junk.pth'):
    pretrained.load_torch_state_dict(junk)
  # Pickles that would call a function when unpickled freely: refused before anything runs,
  # as the header (the 'magic number') and as the state_dict after a valid header.
  call = _Call()
  for name, pickles in (('header', [call]), ('body', [0x1950a86a20f9469cfc6c, 1001, {}, call])):
    evil = tmp_path / f'evil_{name}.pth'
    evil.write_bytes(b''.join(pickle.dumps(obj, protocol=2) for obj in pickles))
    with pytest.raises(UserError, match='unexpected object'):
      pretrained.load_torch_state_dict(evil)
  a_list = tmp_path / 'list.pth'
  with open(a_list, 'wb') as f:  # a legacy-format header around a list, not a dict
    for obj in (0x1950a86a20f9469cfc6c, 1001, {}, [1, 2], []):
      pickle.dump(obj, f, protocol=2)
  with pytest.raises(UserError, match='does not hold a state_dict'):
    pretrained.load_torch_state_dict(a_list)


# ---------------------------------------------------------------------------------------------
# The resolver.


def test_resolver_order(tmp_path, monkeypatch, release, tiny_values):
  """explicit path > environment variable > cache > download."""
  flat = pretrained.convert_pth(release, TINY, check_hash=True)

  def write(name, factor):
    path = tmp_path / name
    pretrained.save_converted(release, {k: v * factor for k, v in flat.items()}, path,
                              release.sha256)
    return path

  explicit, from_env = write('explicit.npz', 2.0), write('env.npz', 3.0)
  cache = tmp_path / 'cache'
  pretrained.save_converted(release, {k: v * 4.0 for k, v in flat.items()},
                            cache / 'lpips' / release.converted_name, release.sha256)
  lin0 = tiny_values['lin0.model.1.weight'].transpose(2, 3, 1, 0)
  scale = lambda result: float(np.mean(result['lin0/kernel'] / lin0))

  monkeypatch.setenv(release.env_var, str(from_env))
  assert scale(pretrained.resolve(release, explicit, cache=cache)) == pytest.approx(2.0)
  assert scale(pretrained.resolve(release, cache=cache)) == pytest.approx(3.0)
  monkeypatch.delenv(release.env_var)
  assert scale(pretrained.resolve(release, cache=cache, allow_download=False)) == 4.0
  # An empty cache: downloaded (from the file:// release), then converted into the cache.
  downloaded = pretrained.resolve(release, cache=tmp_path / 'empty')
  assert scale(downloaded) == 1.0
  # The published .pth itself, given explicitly, is converted in memory; nothing is written.
  assert scale(pretrained.resolve(release, TINY, cache=tmp_path / 'unused')) == 1.0
  assert not (tmp_path / 'unused').exists()
  # The default cache is $JAXGEN_CACHE.
  assert pretrained.cache_folder(release) == tmp_path / 'default_cache' / 'lpips'


def test_download_is_converted_into_the_cache_once(tmp_path, release, tiny_values):
  read, reads = _counting_reader()
  cache = tmp_path / 'cache'
  params = pretrained.load_params(release, cache=cache, reader=read)
  folder = cache / 'lpips'
  assert sorted(p.name for p in folder.iterdir()) == [release.converted_name, 'vgg.pth']
  assert len(reads) == 1
  np.testing.assert_array_equal(params['lin1']['kernel'][0, 0, :, 0],
                                tiny_values['lin1.model.1.weight'].reshape(-1))
  assert params['lin1']['kernel'].dtype == np.float32
  again = pretrained.resolve(release, cache=cache, url='file:///nowhere', reader=read)
  assert len(reads) == 1  # served from the converted entry
  np.testing.assert_array_equal(again['lin4/kernel'], params['lin4']['kernel'])
  assert not _leftovers(folder)


def test_missing_weights_is_one_line(tmp_path, release):
  folder = tmp_path / 'c' / 'lpips'
  with pytest.raises(UserError) as err:
    pretrained.resolve(release, cache=tmp_path / 'c', allow_download=False)
  message = str(err.value)
  assert '\n' not in message
  for needle in (release.filename, release.env_var, str(folder), release.url, release.command):
    assert needle in message, needle


def test_offline_download_names_file_variable_folder_and_url(tmp_path, monkeypatch):
  """The real spec and its real URL, with urlopen failing as it does offline."""
  spec = vgg.VGG19_WEIGHTS
  monkeypatch.delenv(spec.env_var, raising=False)
  tried = []

  def offline(url, timeout=None):
    tried.append(url)
    raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')

  monkeypatch.setattr(urllib.request, 'urlopen', offline)
  with pytest.raises(UserError) as err:
    vgg.load_params(19, cache=tmp_path)
  message = str(err.value)
  assert tried == ['https://download.pytorch.org/models/vgg19-dcbb9e9d.pth']
  assert '\n' not in message and 'cannot download' in message
  for needle in ('vgg19-dcbb9e9d.pth', 'JAXGEN_VGG19_WEIGHTS', str(tmp_path / 'vgg'),
                 spec.url):
    assert needle in message, needle
  assert not _leftovers(tmp_path / 'vgg')


def test_hash_mismatch_is_refused(tmp_path, release):
  wrong = dataclasses.replace(release, sha256='0' * 64)
  # A download with another hash: refused, nothing kept.
  with pytest.raises(UserError, match='SHA-256'):
    pretrained.resolve(wrong, cache=tmp_path / 'c1')
  assert not any((tmp_path / 'c1' / 'lpips').iterdir())
  # A cached .pth with another hash (a truncated download): refused, named.
  (tmp_path / 'c2' / 'lpips').mkdir(parents=True)
  (tmp_path / 'c2' / 'lpips' / 'vgg.pth').write_bytes(TINY.read_bytes()[:4000])
  with pytest.raises(UserError, match='wrong SHA-256'):
    pretrained.resolve(release, cache=tmp_path / 'c2')
  # An explicit .pth that is not the published file.
  with pytest.raises(UserError, match='not vgg.pth\'s'):
    pretrained.resolve(wrong, TINY)
  # A converted file made from another source is rebuilt, not trusted.
  cache = tmp_path / 'c3'
  pretrained.resolve(release, cache=cache)
  converted = cache / 'lpips' / release.converted_name
  flat, _ = pretrained.load_converted(release, converted)
  pretrained.save_converted(release, {k: v + 1 for k, v in flat.items()}, converted, 'f' * 64)
  with pytest.warns(UserWarning, match='not converted from the official weights'):
    rebuilt = pretrained.resolve(release, cache=cache)
  np.testing.assert_array_equal(rebuilt['lin0/kernel'], flat['lin0/kernel'])


def test_damaged_cache_entry_is_rebuilt(tmp_path, release):
  read, reads = _counting_reader()
  cache = tmp_path / 'cache'
  pretrained.resolve(release, cache=cache, reader=read)
  converted = cache / 'lpips' / release.converted_name
  blob = bytearray(converted.read_bytes())
  blob[len(blob) // 2:len(blob) // 2 + 64] = b'\x00' * 64  # the CRC check fails
  converted.write_bytes(bytes(blob))
  with pytest.warns(UserWarning, match='rebuilding'):
    pretrained.resolve(release, cache=cache, url='file:///nowhere', reader=read)
  assert len(reads) == 2  # converted again from the cached .pth, not downloaded
  pretrained.load_converted(release, converted)  # valid again
  # A file of another format, given explicitly, is refused with the command that makes one.
  other = tmp_path / 'other.npz'
  np.savez(other, __format__=np.array('something-else'))
  with pytest.raises(UserError, match='not a jaxgen LPIPS'):
    pretrained.resolve(release, other)
  with pytest.raises(UserError, match='do not exist'):
    pretrained.resolve(release, tmp_path / 'missing.npz')


def test_converter_checks_names_and_shapes(release, tiny_values):
  sd = dict(tiny_values)
  sd['lin5.model.1.weight'] = np.ones((1, 8, 1, 1), np.float32)
  with pytest.raises(UserError, match='unexpected key'):
    pretrained.convert_state_dict(release, sd)
  sd = dict(tiny_values)
  del sd['lin2.model.1.weight']
  with pytest.raises(UserError, match='1 parameters missing'):
    pretrained.convert_state_dict(release, sd)
  sd = dict(tiny_values, **{'lin0.model.1.weight': np.ones((1, 32, 1, 1))})
  with pytest.raises(UserError, match='shape'):
    pretrained.convert_state_dict(release, sd)
  sd = dict(tiny_values, **{'lin0.model.1.weight': np.full((1, 64, 1, 1), np.nan)})
  with pytest.raises(UserError, match='non-finite'):
    pretrained.convert_state_dict(release, sd)


def test_every_spec_is_complete():
  specs = [pretrained.get_spec(name) for name in pretrained.SPECS]
  assert [s.name for s in specs] == list(pretrained.SPECS)
  for spec in specs:
    if spec.sha256:
      assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0, spec.name
      assert spec.url.startswith('https://') and spec.url.endswith(spec.filename), spec.name
    else:  # No published SHA-256 (the official AdaIN files): a page to fetch them from by hand.
      assert spec.name.startswith('adain_') and spec.url.startswith('https://'), spec.name
    assert spec.env_var.startswith('JAXGEN_') and spec.converted_name.endswith('.npz')
    assert all(len(shape) >= 1 for shape in spec.shapes().values())
  # torchvision names its files by the SHA-256's first 8 hex digits.
  for spec in (vgg.VGG16_WEIGHTS, vgg.VGG19_WEIGHTS):
    assert spec.filename.split('-')[1][:8] == spec.sha256[:8]
  assert len({s.env_var for s in specs}) == len({s.format_tag for s in specs}) == len(specs)
  assert len({(s.subdir, s.converted_name) for s in specs}) == len(specs)
  with pytest.raises(UserError, match='unknown pretrained weights'):
    pretrained.get_spec('resnet50')


def test_weights_without_a_published_hash_are_never_downloaded(tmp_path, monkeypatch, release,
                                                               tiny_values):
  """A spec with no SHA-256 (sha256=''): nothing found is one line that says to fetch the file by
  hand, without a download; a copy given, or put in the cache, is taken on its layout alone and
  converted into the cache once."""
  import urllib.request
  unpublished = dataclasses.replace(release, sha256='', url='https://example.org/releases')

  def no_download(*args, **kwargs):
    raise AssertionError('a file without a published SHA-256 was downloaded')

  monkeypatch.setattr(urllib.request, 'urlopen', no_download)
  cache = tmp_path / 'cache'
  with pytest.raises(UserError, match='no SHA-256 is published') as error:
    pretrained.resolve(unpublished, cache=cache)
  assert '\n' not in str(error.value) and 'https://example.org/releases' in str(error.value)
  with pytest.raises(UserError, match='no SHA-256 is published'):
    pretrained.download(unpublished, cache / 'x.pth')
  assert not cache.exists()
  flat = pretrained.resolve(unpublished, weights=str(TINY), cache=cache)  # Explicit: no hash.
  assert flat.keys() == pretrained.resolve(release, weights=str(TINY), cache=cache).keys()
  folder = pretrained.cache_folder(unpublished, cache)
  folder.mkdir(parents=True)
  shutil.copy(TINY, folder / unpublished.filename)
  cached = pretrained.resolve(unpublished, cache=cache)
  assert (folder / unpublished.converted_name).is_file()
  for name in flat:
    np.testing.assert_array_equal(cached[name], flat[name])
  (folder / unpublished.filename).unlink()  # The converted file now serves alone.
  assert pretrained.resolve(unpublished, cache=cache).keys() == flat.keys()


# ---------------------------------------------------------------------------------------------
# Command line.


def test_cli(tmp_path, monkeypatch, capsys, release):
  out = tmp_path / 'out.npz'
  assert pretrained.main(['convert', 'lpips_vgg', '--pth', str(TINY), '--out', str(out)]) == 2
  assert 'SHA-256' in capsys.readouterr().err and not out.exists()
  assert pretrained.main(['convert', 'lpips_vgg', '--pth', str(TINY), '--out', str(out),
                          '--no-hash-check']) == 0
  flat, source = pretrained.load_converted(lpips.LINEAR_WEIGHTS, out)
  assert source == hashlib.sha256(TINY.read_bytes()).hexdigest() and len(flat) == 5
  # fetch: through the resolver, into the cache.
  monkeypatch.setattr(lpips, 'LINEAR_WEIGHTS', release)
  assert pretrained.main(['fetch', 'lpips_vgg', '--cache', str(tmp_path / 'c')]) == 0
  assert (tmp_path / 'c' / 'lpips' / release.converted_name).is_file()
  assert pretrained.main(['list']) == 0
  listing = capsys.readouterr().out
  assert all(name in listing for name in pretrained.SPECS)
  assert pretrained.main(['fetch', 'nonesuch']) == 2
  assert capsys.readouterr().err.count('\n') == 1


def test_nothing_is_downloaded_at_import():
  code = ('import urllib.request\n'
          'def refuse(*a, **k): raise SystemExit("urlopen called at import")\n'
          'urllib.request.urlopen = refuse\n'
          'import jaxgen.pretrained, jaxgen.models.vgg, jaxgen.metrics.lpips\n'
          'import jaxgen.metrics.inception_weights\n'
          'for name in jaxgen.pretrained.SPECS: jaxgen.pretrained.get_spec(name)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr
