"""Pretrained weights: one way to find, check, convert and cache every published weight file.

Each network that needs published weights (the FID Inception, torchvision's VGG16/VGG19, the
LPIPS linear layers, the official AdaIN encoder and decoder) describes its file once, as a
`WeightsSpec`: the published file's name, SHA-256 and URL, the environment variable that may
point at a local copy, the cache sub-folder, and a converter from the PyTorch state_dict to
jaxgen's flat parameters (`{'conv1_1/kernel': array, ...}`, kernels already HWIO).
`resolve(spec)` then finds the weights, first match wins:

  1. an explicit path (a `weights=` argument, a `--weights` flag): a converted `.npz`, or the
     published `.pth` (SHA-256 checked) converted in memory;
  2. the environment variable `spec.env_var`, same meaning;
  3. the cache, `$JAXGEN_CACHE/<subdir>` (default `~/.cache/jaxgen/<subdir>`): the converted
     `.npz`, else the published `.pth` there (SHA-256 checked), converted into the cache;
  4. a download of the `.pth` into the cache (SHA-256 checked while it streams, written under a
     temporary name and renamed into place, so a cut download never looks complete), then
     converted. A file with no published SHA-256 (`sha256=''`: the official AdaIN release) is
     never downloaded: the missing-weights line says where to fetch it by hand, and a local
     copy is checked by its layout alone (names, shapes, finite values).

Nothing is downloaded at import time. A converted cache entry is checked every time it is
read (format tag, the SHA-256 of the file it came from, every name and shape, finite values);
one that fails is rebuilt from the `.pth` with a warning. Every write into the cache is atomic
(temporary file + rename), so processes that share a cache never see half a file. When the
weights are missing and cannot be downloaded (offline, `allow_download=False`), the error is
one `UserError` line naming the file, the environment variable, the cache folder and the URL.

By hand (e.g. on a machine with network, for one without):

    python -m jaxgen.pretrained list
    python -m jaxgen.pretrained fetch vgg19                 # download, check, convert
    python -m jaxgen.pretrained convert vgg19 --pth vgg19-dcbb9e9d.pth --out vgg19.npz

`load_torch_state_dict` reads a `torch.save`d state_dict without torch: a restricted unpickler
that understands both formats (the zip archive of PyTorch >= 1.6 and the older sequential
pickle) and rebuilds only tensors, storages and ordered dicts, so a `.pth` cannot run code.
"""

import argparse
import collections
import dataclasses
import hashlib
import importlib
import io
import os
import pathlib
import pickle
import sys
import tempfile
from typing import Callable, Mapping
import urllib.error
import urllib.request
import warnings
import zipfile

import numpy as np

from jaxgen.errors import UserError

ENV_CACHE = 'JAXGEN_CACHE'

# Every spec by its command-line name, and where it is defined: beside the network that uses
# it, imported only when asked for.
SPECS = {
    'fid_inception': ('jaxgen.metrics.inception_weights', 'SPEC'),
    'vgg16': ('jaxgen.models.vgg', 'VGG16_WEIGHTS'),
    'vgg19': ('jaxgen.models.vgg', 'VGG19_WEIGHTS'),
    'lpips_vgg': ('jaxgen.metrics.lpips', 'LINEAR_WEIGHTS'),
    'adain_vgg': ('jaxgen.models.adain', 'ENCODER_WEIGHTS'),
    'adain_decoder': ('jaxgen.models.adain', 'DECODER_WEIGHTS'),
}


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
  """One published weight file and how jaxgen turns it into parameters.

  Attributes:
    name: the command-line name (`python -m jaxgen.pretrained fetch NAME`).
    title: what the weights are, for messages ('torchvision VGG19 weights').
    filename: the published `.pth`'s file name.
    sha256: the published file's SHA-256 (64 hex digits), or '' when none is published (e.g.
      the official AdaIN weights): such a file is never downloaded — the user fetches it by
      hand from `url` — and a local copy is taken on its layout alone (every parameter's name
      and shape, finite values).
    url: where to download it from (with no SHA-256: the page to fetch it from by hand).
    env_var: environment variable that may name a local `.pth` or converted `.npz`.
    subdir: the cache sub-folder.
    converted_name: the converted `.npz`'s file name in the cache.
    format_tag: written into the `.npz`; a file with another tag is refused.
    convert: state_dict (name -> np.ndarray) -> flat parameters {'a/b/kernel': array}; raises
      ValueError (a one-line reason) for a state_dict of another layout.
    shapes: () -> {flat name: shape}, the parameters a valid conversion holds.
    convert_command: the command that converts by hand (default: this module's CLI).
  """
  name: str
  title: str
  filename: str
  sha256: str
  url: str
  env_var: str
  subdir: str
  converted_name: str
  format_tag: str
  convert: Callable[[Mapping[str, np.ndarray]], dict]
  shapes: Callable[[], Mapping[str, tuple]]
  convert_command: str = ''

  @property
  def command(self):
    return self.convert_command or (f'python -m jaxgen.pretrained convert {self.name} --pth '
                                    f'{self.filename} --out {self.converted_name}')


def get_spec(name):
  """The `WeightsSpec` registered as `name` in SPECS."""
  if name not in SPECS:
    raise UserError(f'unknown pretrained weights {name!r}: use one of {sorted(SPECS)}')
  module, attr = SPECS[name]
  return getattr(importlib.import_module(module), attr)


def cache_dir():
  """`$JAXGEN_CACHE` or `~/.cache/jaxgen`."""
  root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser('~'), '.cache', 'jaxgen')
  return pathlib.Path(root)


def cache_folder(spec, cache=None):
  """Where `spec`'s files live in the cache `cache` (default `cache_dir()`)."""
  return pathlib.Path(cache or cache_dir()) / spec.subdir


def missing_message(spec, folder):
  """The one line that says where the weights were looked for and how to provide them."""
  where = (f'download {spec.url} (SHA-256 {spec.sha256[:12]}...)' if spec.sha256 else
           f'get {spec.filename} from {spec.url} (no SHA-256 is published, so jaxgen does not '
           'download it)')
  return (f'{spec.title} not found ({spec.filename} or {spec.converted_name} in {folder}, '
          f'${spec.env_var}): {where} into {folder}, or set ${spec.env_var} to a copy of it or '
          f'to the .npz made by `{spec.command}`')


# ---------------------------------------------------------------------------------------------
# Reading a torch.save file without torch.

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': None,  # no NumPy dtype: refused with a clear message below
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _Storage:
  """A torch storage: dtype now, flat data once read (legacy files put data after the pickle)."""

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)
    self.data = None


class _LazyTensor:
  """A tensor's view (offset, size, stride, in elements) of a storage, materialised later."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def numpy(self):
    flat = self.storage.data
    if flat is None:
      raise UserError('corrupt .pth file: a tensor refers to a storage that has no data')
    if 0 in self.size:
      return np.zeros(self.size, flat.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
      raise UserError('corrupt .pth file: a tensor reaches past the end of its storage')
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], self.size, [s * flat.itemsize for s in self.stride])
    return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


def _storage_dtype(name):
  if _STORAGE_DTYPES[name] is None:
    raise UserError(f'the .pth holds {name} tensors, which NumPy cannot represent: save them '
                    'as float32 first')
  return _STORAGE_DTYPES[name]


class _TorchUnpickler(pickle.Unpickler):
  """Rebuilds only what a state_dict holds; any other global is refused (safe loading)."""

  def __init__(self, file, storage_source):
    super().__init__(file)
    self._storage_source = storage_source  # (persistent key, dtype) -> _Storage
    self.storages = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
      return _rebuild_tensor
    if module == 'torch._utils' and name == '_rebuild_parameter':
      return _rebuild_parameter
    if module == 'torch' and name in _STORAGE_DTYPES:
      return name  # resolved to a dtype in persistent_load
    if (module, name) == ('torch', 'Size'):
      return tuple
    raise UserError(f'unexpected object {module}.{name} in the .pth file: not a plain '
                    'state_dict of tensors')

  def persistent_load(self, pid):
    kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if kind != 'storage':
      raise UserError(f'unexpected persistent object {kind!r} in the .pth file')
    dtype, key = _storage_dtype(pid[1]), str(pid[2])
    if key not in self.storages:
      self.storages[key] = self._storage_source(key, dtype)
    if len(pid) > 5 and pid[5] is not None:  # storage views: only PyTorch < 1.0 wrote them
      raise UserError('unsupported .pth: written by PyTorch < 1.0 (storage views)')
    return self.storages[key]


def _materialise(obj):
  if isinstance(obj, _LazyTensor):
    return obj.numpy()
  if isinstance(obj, dict):
    return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
  return obj


def _read_zip(path):
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith('data.pkl')]
    if not pkl:
      raise UserError(f'{path} is a zip file but not a torch.save archive (no data.pkl)')
    prefix = pkl[0][:-len('data.pkl')]
    big_endian = (prefix + 'byteorder' in names
                  and archive.read(prefix + 'byteorder').strip() == b'big')

    def load_storage(key, dtype):
      storage = _Storage(dtype)
      raw = archive.read(f'{prefix}data/{key}')
      dt = storage.dtype.newbyteorder('>') if big_endian else storage.dtype.newbyteorder('<')
      storage.data = np.frombuffer(raw, dt).astype(storage.dtype)
      return storage

    unpickler = _TorchUnpickler(io.BytesIO(archive.read(pkl[0])), load_storage)
    result = unpickler.load()
  return result


class _DataUnpickler(pickle.Unpickler):
  """Plain data only (numbers, strings, lists, dicts): every global is refused."""

  def find_class(self, module, name):
    raise UserError(f'unexpected object {module}.{name} in the .pth file: not a plain '
                    'state_dict of tensors')


def _read_legacy(path):
  with open(path, 'rb') as f:
    try:
      magic = _DataUnpickler(f).load()
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'{path} is not a torch.save file ({type(e).__name__})') from None
    if magic != _LEGACY_MAGIC:
      raise UserError(f'{path} is not a torch.save file (bad magic number)')
    _DataUnpickler(f).load()  # protocol version
    _DataUnpickler(f).load()  # sys info (byte order, type sizes)
    unpickler = _TorchUnpickler(f, lambda key, dtype: _Storage(dtype))
    result = unpickler.load()
    keys = _DataUnpickler(f).load()
    for key in keys:
      storage = unpickler.storages[str(key)]
      # Each storage: int64 element count, then the raw little-endian elements.
      (count,) = np.frombuffer(f.read(8), '<i8')
      raw = f.read(int(count) * storage.dtype.itemsize)
      if len(raw) != int(count) * storage.dtype.itemsize:
        raise UserError(f'{path} is truncated (storage {key} is incomplete)')
      storage.data = np.frombuffer(raw, storage.dtype.newbyteorder('<')).astype(storage.dtype)
  return result


def _read_plain(path):
  result = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  if not isinstance(result, dict):
    raise UserError(f'{path} does not hold a state_dict (found {type(result).__name__})')
  return _materialise(result)


def _read_with_torch(path):
  import torch  # pylint: disable=import-outside-toplevel
  state = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state, dict):
    raise UserError(f'{path} does not hold a state_dict (found {type(state).__name__})')
  return collections.OrderedDict((k, v.detach().cpu().numpy()) for k, v in state.items())


def load_torch_state_dict(path, use_torch=False):
  """Reads a `torch.save`d state_dict into NumPy arrays.

  Args:
    path: the `.pth` file (either `torch.save` format).
    use_torch: False (default): the built-in reader, no torch needed; True: `torch.load`
      (weights_only); None: torch when it is importable.

  Returns:
    OrderedDict name -> np.ndarray, in the file's order and dtypes (views are copied out:
    every array is contiguous and owns its data).

  Raises:
    UserError: no such file, not a torch.save file, or a pickle that holds anything but a
      state_dict of tensors.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f'no such file: {path}')
  if use_torch is None:
    try:
      import torch  # pylint: disable=import-outside-toplevel,unused-import
      use_torch = True
    except ImportError:
      use_torch = False
  try:
    return _read_with_torch(path) if use_torch else _read_plain(path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'cannot read {path} as a PyTorch state_dict: {type(e).__name__}: '
                    f'{e}'.splitlines()[0]) from None


# ---------------------------------------------------------------------------------------------
# Conversion and the converted file.


def flatten(tree, prefix=''):
  """Nested dict pytree -> {'a/b/kernel': leaf}."""
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(flatten(value, name + '/'))
    else:
      flat[name] = value
  return flat


def unflatten(flat):
  """{'a/b/kernel': array} -> nested dict pytree."""
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def check_flat(spec, flat, source):
  """Raises UserError unless `flat` has exactly `spec`'s names and shapes, all finite."""
  expected = spec.shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise UserError(f'{source} is not the {spec.title}: {len(missing)} parameters missing '
                    f'(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})')
  for name, shape in expected.items():
    if tuple(flat[name].shape) != tuple(shape):
      raise UserError(f'{source}: parameter {name} has shape {tuple(flat[name].shape)}, '
                      f'expected {tuple(shape)}')
    if not np.all(np.isfinite(flat[name])):
      raise UserError(f'{source}: parameter {name} has non-finite values')


def convert_state_dict(spec, state_dict, source='state_dict'):
  """A published state_dict (name -> array) -> `spec`'s checked flat parameters (float32)."""
  try:
    flat = spec.convert(collections.OrderedDict((k, np.asarray(v)) for k, v in
                                                state_dict.items()))
  except ValueError as e:
    raise UserError(f'{source}: {e}') from None
  flat = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}
  check_flat(spec, flat, source)
  return flat


def _atomic_write(path, write):
  """Calls write(file) on a temporary file beside `path`, then renames it into place."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_converted(spec, flat, path, source_sha256=''):
  """Writes flat parameters to a jaxgen weight file (atomically), tagged with `spec`'s format
  and the SHA-256 of the file they were converted from."""
  arrays = dict(flat)
  arrays['__format__'] = np.array(spec.format_tag)
  arrays['__source_sha256__'] = np.array(source_sha256)
  _atomic_write(path, lambda f: np.savez(f, **arrays))


def load_converted(spec, path):
  """Reads and checks a jaxgen weight file. Returns (flat parameters, source SHA-256)."""
  path = pathlib.Path(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      if '__format__' not in data.files or str(data['__format__']) != spec.format_tag:
        raise UserError(f'{path} is not a jaxgen {spec.title} file; make one with '
                        f'`{spec.command}`')
      source = str(data['__source_sha256__']) if '__source_sha256__' in data.files else ''
      flat = {k: data[k] for k in data.files if not k.startswith('__')}
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (bad zip, CRC error, truncation)
    raise UserError(f'{path} is corrupt ({type(e).__name__}); delete it and convert again '
                    f'with `{spec.command}`') from None
  check_flat(spec, flat, path)
  return flat, source


def sha256_file(path):
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _wrong_hash(spec, path, digest):
  return UserError(f'{path} has SHA-256 {digest[:12]}..., not {spec.filename}\'s '
                   f'{spec.sha256[:12]}...: the file is corrupt or a different model '
                   '(re-download it; pass --no-hash-check only for a deliberate other file)')


def convert_pth(spec, pth, out=None, check_hash=True, reader=None, digest=None):
  """Converts the published `.pth` into flat parameters, and into a weight file when `out`.

  Args:
    spec: the WeightsSpec.
    pth: the `.pth` file.
    out: the `.npz` to write (atomically), or None.
    check_hash: refuse a file whose SHA-256 is not `spec.sha256`.
    reader: path -> state_dict; default `load_torch_state_dict`.
    digest: the file's SHA-256 when the caller has just computed it (not hashed again).

  Returns:
    The flat parameters {'a/b/kernel': float32 array}.
  """
  digest = digest or sha256_file(pth)
  if check_hash and spec.sha256 and digest != spec.sha256:
    raise _wrong_hash(spec, pth, digest)
  flat = convert_state_dict(spec, (reader or load_torch_state_dict)(pth), source=str(pth))
  if out is not None:
    save_converted(spec, flat, out, digest)
  return flat


# ---------------------------------------------------------------------------------------------
# Finding the weights at run time.


def download(spec, dest, url=None, timeout=60):
  """Downloads `url` (default `spec.url`) to `dest`, checking `spec.sha256` as it streams.

  The bytes go to a temporary file beside `dest` that is renamed into place only once the
  whole file is there and its hash is right.

  Raises:
    UserError: the download failed or the hash differs; nothing is left behind then.
  """
  if not spec.sha256:  # Nothing unchecked is downloaded.
    raise UserError(missing_message(spec, pathlib.Path(dest).parent))
  url = url or spec.url
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + '.', suffix='.part')
  digest = hashlib.sha256()
  try:
    with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(url, timeout=timeout) as response:
      for block in iter(lambda: response.read(1 << 20), b''):
        digest.update(block)
        f.write(block)
    if digest.hexdigest() != spec.sha256:
      raise UserError(f'downloaded {url} has SHA-256 {digest.hexdigest()[:12]}..., expected '
                      f'{spec.sha256[:12]}...: the download is corrupt; try again')
    os.replace(tmp, dest)
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = ' '.join(str(e).split())
    raise UserError(f'cannot download {url} ({reason}); '
                    + missing_message(spec, dest.parent)) from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def _load_explicit(spec, path, source, cache, reader):
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise UserError(f'{spec.title} {path} (from {source}) do not exist; '
                    + missing_message(spec, cache_folder(spec, cache)))
  if path.suffix == '.pth':
    return convert_pth(spec, path, out=None, check_hash=True, reader=reader)
  return load_converted(spec, path)[0]


def resolve(spec, weights=None, cache=None, allow_download=True, url=None, reader=None):
  """Finds, checks and loads `spec`'s weights (see the module docstring for the order).

  Args:
    spec: the WeightsSpec.
    weights: explicit path to a converted `.npz` or the published `.pth`; overrides the rest.
    cache: the cache root; default `cache_dir()`.
    allow_download: try the download when nothing is found locally.
    url: where to download the `.pth` from; default `spec.url`.
    reader: path -> state_dict; default `load_torch_state_dict` (no torch needed).

  Returns:
    The flat parameters {'a/b/kernel': float32 array}; `unflatten` makes the pytree.

  Raises:
    UserError: nothing found (one line naming the file, the environment variable, the cache
      folder and the URL), a hash mismatch, or an invalid file.
  """
  if weights:
    return _load_explicit(spec, weights, 'the weights argument', cache, reader)
  if os.environ.get(spec.env_var):
    return _load_explicit(spec, os.environ[spec.env_var], f'${spec.env_var}', cache, reader)

  folder = cache_folder(spec, cache)
  converted = folder / spec.converted_name
  pth = folder / spec.filename
  if converted.is_file():
    try:
      flat, source = load_converted(spec, converted)
      if source == spec.sha256 or not spec.sha256:
        return flat
      problem = 'it was not converted from the official weights'
    except UserError as e:
      problem = str(e)
    warnings.warn(f'rebuilding the cached {spec.title}: {problem}')
    converted.unlink(missing_ok=True)
  if not pth.is_file():
    if not allow_download or not spec.sha256:
      raise UserError(missing_message(spec, folder))
    download(spec, pth, url)  # hash checked while it streams
  elif spec.sha256 and sha256_file(pth) != spec.sha256:
    raise UserError(f'{pth} has the wrong SHA-256 (corrupt or incomplete download): delete it '
                    f'and run again to re-download, or replace it with {spec.url}')
  return convert_pth(spec, pth, converted, reader=reader, digest=spec.sha256 or None)


def load_params(spec, weights=None, cache=None, allow_download=True, url=None, reader=None):
  """`resolve`, as the nested parameter pytree (numpy arrays)."""
  return unflatten(resolve(spec, weights, cache, allow_download, url, reader))


# ---------------------------------------------------------------------------------------------
# Command line.


def main(argv=None, spec=None, prog='python -m jaxgen.pretrained', reader=load_torch_state_dict):
  """The command line: `list`, `convert NAME --pth FILE --out FILE.npz`, `fetch NAME...`.

  With `spec`, the command line of that one weight file, as the module that defines it runs it
  (`python -m jaxgen.metrics.inception_weights convert --pth FILE --out FILE.npz`, `fetch`): no
  NAME arguments and no `list`. `reader(path, use_torch)` reads a .pth; `--reader` chooses
  use_torch (plain: False, torch: True, auto: torch when importable). Returns the exit status:
  0, or 2 after one error line."""
  title = spec.title if spec else 'the pretrained weights jaxgen uses'
  parser = argparse.ArgumentParser(
      prog=prog, description=f'Find, download, check and convert {title}.')
  sub = parser.add_subparsers(dest='command', required=True)
  if spec is None:
    sub.add_parser('list', help='the known weights, their files and where they are looked for')
  conv = sub.add_parser('convert', help='a published .pth state_dict -> jaxgen .npz')
  fetch = sub.add_parser('fetch', help='download, check and convert into the cache')
  if spec is None:
    conv.add_argument('name', help=f'one of {", ".join(SPECS)}')
    fetch.add_argument('names', nargs='+', help=f'any of {", ".join(SPECS)}')
  conv.add_argument('--pth', required=True,
                    help=f'the published .pth file{f" ({spec.filename})" if spec else ""}')
  conv.add_argument('--out', required=True,
                    help=f'the .npz to write{f", e.g. {spec.converted_name}" if spec else ""}')
  conv.add_argument('--no-hash-check', action='store_true',
                    help='accept a .pth whose SHA-256 is not the published one (tests only)')
  fetch.add_argument('--cache', default=None,
                     help=f'cache directory (default ${ENV_CACHE} or ~/.cache/jaxgen)')
  for command in (conv, fetch):
    command.add_argument('--reader', choices=('plain', 'torch', 'auto'), default='plain',
                         help='read the .pth with the built-in reader (default), with torch, or '
                         'with torch when it is importable (auto)')
  args = parser.parse_args(argv)
  use_torch = {'plain': False, 'torch': True, 'auto': None}[getattr(args, 'reader', 'plain')]
  read = lambda path: reader(path, use_torch)
  try:
    if args.command == 'list':
      for name in SPECS:
        one = get_spec(name)
        print(f'{name}: {one.title}; {one.filename} (SHA-256 {one.sha256}) from {one.url}; '
              f'${one.env_var}; cache {cache_folder(one)}')
    elif args.command == 'convert':
      convert_pth(spec or get_spec(args.name), args.pth, args.out,
                  check_hash=not args.no_hash_check, reader=read)
      print(f'wrote {args.out}')
    else:
      for one in [spec] if spec else [get_spec(name) for name in args.names]:
        resolve(one, cache=args.cache, reader=read)
        print(f'{one.title} ready in {cache_folder(one, args.cache)}')
  except UserError as e:
    print(f'{parser.prog}: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
