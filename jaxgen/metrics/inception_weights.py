"""FID Inception weights: reading pytorch-fid's `.pth`, converting it, finding it at run time.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (TensorFlow's
`inception-2015-12-05` graph ported to PyTorch), a `torch.save`d state_dict with torchvision
`Inception3` key names. jaxgen converts it once into its own file, an `.npz` of the flattened
Flax parameters (`Mixed_5b/branch1x1/kernel`, ...), kernels transposed from PyTorch's
OIHW to HWIO.

Where the weights come from, first match wins (`resolve_weights`):

  1. an explicit path (`weights=` argument, `--weights` flag): a converted `.npz`, or a `.pth`
     that is converted in memory;
  2. the environment variable `JAXGEN_INCEPTION_WEIGHTS`, same meaning;
  3. the cache directory, `$JAXGEN_CACHE/inception` (default `~/.cache/jaxgen/inception`):
     the converted `fid_inception_v3.npz`, else the `.pth` there (SHA-256 checked), which is
     converted into the cache;
  4. a download of the `.pth` from pytorch-fid's GitHub release into the cache, SHA-256
     checked, then converted.

Nothing is downloaded at import time. A converted cache entry that fails validation is
rebuilt from the `.pth`. Convert by hand with

    python -m jaxgen.metrics.inception_weights convert \
        --pth pt_inception-2015-12-05-6726825d.pth --out fid_inception_v3.npz

Reading a `.pth` uses torch when it is importable, else a small restricted unpickler that
understands both `torch.save` formats (the zip archive of PyTorch >= 1.6 and the older
sequential pickle) and only rebuilds tensors, storages and ordered dicts.
"""

import argparse
import collections
import hashlib
import io
import os
import pathlib
import pickle
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile

import jax
import numpy as np

from jaxgen.errors import UserError
from jaxgen.metrics import inception

PTH_NAME = 'pt_inception-2015-12-05-6726825d.pth'
PTH_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'
PTH_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
           + PTH_NAME)
CONVERTED_NAME = 'fid_inception_v3.npz'
ENV_WEIGHTS = 'JAXGEN_INCEPTION_WEIGHTS'
ENV_CACHE = 'JAXGEN_CACHE'
FORMAT_TAG = 'jaxgen-fid-inception-v1'
CONVERT_COMMAND = ('python -m jaxgen.metrics.inception_weights convert --pth '
                   f'{PTH_NAME} --out {CONVERTED_NAME}')

# torchvision BatchNorm2d / Linear field -> jaxgen parameter name.
_BN_FIELDS = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}


def cache_dir():
  """`$JAXGEN_CACHE` or `~/.cache/jaxgen`."""
  root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser('~'), '.cache', 'jaxgen')
  return pathlib.Path(root)


def _missing_message(where):
  return (f'FID Inception weights not found ({where}): download {PTH_URL} '
          f'(SHA-256 {PTH_SHA256[:12]}...) into {where}, or convert it with `{CONVERT_COMMAND}` '
          f'and pass the .npz with --weights / ${ENV_WEIGHTS}')


# ---------------------------------------------------------------------------------------------
# Reading a torch.save file without torch.

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
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
    if self.offset < 0 or last >= flat.size:
      raise UserError('corrupt .pth file: a tensor reaches past the end of its storage')
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], self.size, [s * flat.itemsize for s in self.stride])
    return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


class _TorchUnpickler(pickle.Unpickler):
  """Rebuilds only what a state_dict holds; any other global is refused (safe loading)."""

  def __init__(self, file, storage_source):
    super().__init__(file)
    self._storage_source = storage_source  # persistent id -> _Storage
    self.storages = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
      return _rebuild_tensor
    if module == 'torch._utils' and name == '_rebuild_parameter':
      return _rebuild_parameter
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    if (module, name) == ('torch', 'Size'):
      return tuple
    raise UserError(f'unexpected object {module}.{name} in the .pth file: not a plain '
                    'state_dict of tensors')

  def persistent_load(self, pid):
    kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if kind != 'storage':
      raise UserError(f'unexpected persistent object {kind!r} in the .pth file')
    dtype, key = pid[1], str(pid[2])
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
      dt = storage.dtype.newbyteorder('>') if big_endian else storage.dtype
      storage.data = np.frombuffer(raw, dt).astype(storage.dtype)
      return storage

    unpickler = _TorchUnpickler(io.BytesIO(archive.read(pkl[0])), load_storage)
    result = unpickler.load()
  return result, unpickler.storages


def _read_legacy(path):
  with open(path, 'rb') as f:
    try:
      magic = pickle.load(f)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'{path} is not a torch.save file ({type(e).__name__})') from None
    if magic != _LEGACY_MAGIC:
      raise UserError(f'{path} is not a torch.save file (bad magic number)')
    pickle.load(f)  # protocol version
    pickle.load(f)  # sys info (byte order, type sizes)
    unpickler = _TorchUnpickler(f, lambda key, dtype: _Storage(dtype))
    result = unpickler.load()
    keys = pickle.load(f)
    for key in keys:
      storage = unpickler.storages[str(key)]
      # Each storage: int64 element count, then the raw little-endian elements.
      (count,) = np.frombuffer(f.read(8), '<i8')
      raw = f.read(int(count) * storage.dtype.itemsize)
      if len(raw) != int(count) * storage.dtype.itemsize:
        raise UserError(f'{path} is truncated (storage {key} is incomplete)')
      storage.data = np.frombuffer(raw, storage.dtype.newbyteorder('<')).astype(storage.dtype)
  return result, unpickler.storages


def _read_pth_plain(path):
  result, _ = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  if not isinstance(result, dict):
    raise UserError(f'{path} does not hold a state_dict (found {type(result).__name__})')
  return _materialise(result)


def _read_pth_torch(path):
  import torch  # pylint: disable=import-outside-toplevel
  state = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state, dict):
    raise UserError(f'{path} does not hold a state_dict (found {type(state).__name__})')
  return collections.OrderedDict((k, v.detach().cpu().numpy()) for k, v in state.items())


def read_pth(path, use_torch=None):
  """Reads a `torch.save`d state_dict into NumPy arrays.

  Args:
    path: the `.pth` file.
    use_torch: True: read with torch; False: with the built-in reader; None: torch when it
      is importable.

  Returns:
    OrderedDict name -> np.ndarray.
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
    return _read_pth_torch(path) if use_torch else _read_pth_plain(path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'cannot read {path} as a PyTorch state_dict: {type(e).__name__}: '
                    f'{e}'.splitlines()[0]) from None


# ---------------------------------------------------------------------------------------------
# Conversion.


def _param_path(torch_key):
  """torchvision key -> (jaxgen parameter path, transpose) or None for keys to drop."""
  parts = torch_key.split('.')
  if parts[-1] == 'num_batches_tracked':
    return None
  if parts[0] == 'fc':
    return ('fc', {'weight': 'kernel', 'bias': 'bias'}[parts[1]]), parts[1] == 'weight'
  *modules, layer, field = parts
  if layer == 'conv' and field == 'weight':
    return tuple(modules) + ('kernel',), True
  if layer == 'bn' and field in _BN_FIELDS:
    return tuple(modules) + (_BN_FIELDS[field],), False
  raise KeyError(torch_key)


def _flat_shapes():
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(inception.param_shapes())[0]:
    flat['/'.join(k.key for k in path)] = tuple(leaf.shape)
  return flat


def _check_flat(flat, source):
  """Raises UserError unless `flat` has exactly the expected names, shapes, finite values."""
  expected = _flat_shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise UserError(f'{source} is not the FID Inception: {len(missing)} parameters missing '
                    f'(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})')
  for name, shape in expected.items():
    if tuple(flat[name].shape) != shape:
      raise UserError(f'{source}: parameter {name} has shape {tuple(flat[name].shape)}, '
                      f'expected {shape}')
    if not np.all(np.isfinite(flat[name])):
      raise UserError(f'{source}: parameter {name} has non-finite values')


def state_dict_to_flat(state_dict, source='state_dict'):
  """pytorch-fid state_dict (numpy arrays) -> flat jaxgen parameters {'a/b/kernel': array}."""
  flat = {}
  for key, value in state_dict.items():
    value = np.asarray(value)
    try:
      mapped = _param_path(key)
    except KeyError:
      raise UserError(f'{source}: unexpected key {key!r}; expected the torchvision Inception3 '
                      'names of pytorch-fid\'s FID Inception') from None
    if mapped is None:
      continue
    path, transpose = mapped
    if transpose:
      value = value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    flat['/'.join(path)] = np.ascontiguousarray(value, np.float32)
  _check_flat(flat, source)
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


def convert_state_dict(state_dict):
  """pytorch-fid state_dict (name -> array) -> Flax parameter pytree of numpy arrays."""
  return unflatten(state_dict_to_flat(state_dict))


def torch_key_shapes():
  """pytorch-fid's state_dict layout, {torchvision key: shape}, derived from the Flax model.

  The inverse of the converter's renaming (without `num_batches_tracked`); kernels in
  PyTorch's OIHW order, `fc.weight` as [1008, 2048].
  """
  fields = {'kernel': 'conv.weight', 'scale': 'bn.weight', 'bias': 'bn.bias',
            'mean': 'bn.running_mean', 'var': 'bn.running_var'}
  shapes = {}
  for name, shape in _flat_shapes().items():
    *modules, leaf = name.split('/')
    if modules == ['fc']:
      shapes['fc.' + {'kernel': 'weight', 'bias': 'bias'}[leaf]] = shape[::-1]
    elif len(shape) == 4:
      shapes['.'.join(modules + [fields[leaf]])] = (shape[3], shape[2], shape[0], shape[1])
    else:
      shapes['.'.join(modules + [fields[leaf]])] = shape
  return shapes


def random_state_dict(seed=0):
  """A random state_dict in pytorch-fid's layout, for parity tests and benchmarks.

  Scales keep activations O(1) through the 94 layers, as trained weights do (He-normal
  kernels, BatchNorm with random affine and running statistics), so that comparisons
  exercise realistic magnitudes rather than exploding or vanishing ones.

  Returns:
    OrderedDict {torchvision key: float32 array}.
  """
  rng = np.random.default_rng(seed)
  out = collections.OrderedDict()
  for key, shape in torch_key_shapes().items():
    if key.endswith('conv.weight'):
      value = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
    elif key.endswith('bn.weight'):
      value = rng.uniform(0.5, 1.5, shape)
    elif key.endswith('running_var'):
      value = rng.uniform(0.5, 2.0, shape)
    elif key == 'fc.weight':
      value = rng.normal(0, 1 / np.sqrt(shape[1]), shape)
    else:  # BatchNorm bias and running mean, fc bias
      value = rng.normal(0, 0.2, shape)
    out[key] = value.astype(np.float32)
  return out


def _atomic_savez(path, arrays):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_converted(flat, path, source_sha256=''):
  """Writes flat parameters to a jaxgen weight file (atomically)."""
  arrays = dict(flat)
  arrays['__format__'] = np.array(FORMAT_TAG)
  arrays['__source_sha256__'] = np.array(source_sha256)
  _atomic_savez(path, arrays)


def load_converted(path):
  """Reads and validates a jaxgen weight file. Returns (nested params, source sha256)."""
  path = pathlib.Path(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      if '__format__' not in data.files or str(data['__format__']) != FORMAT_TAG:
        raise UserError(f'{path} is not a jaxgen FID Inception weight file; make one with '
                        f'`{CONVERT_COMMAND}`')
      source = str(data['__source_sha256__']) if '__source_sha256__' in data.files else ''
      flat = {k: data[k] for k in data.files if not k.startswith('__')}
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (bad zip, CRC error, truncation)
    raise UserError(f'{path} is corrupt ({type(e).__name__}); delete it and convert again '
                    f'with `{CONVERT_COMMAND}`') from None
  _check_flat(flat, path)
  return unflatten(flat), source


def sha256_file(path):
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def convert_pth(pth, out, check_hash=True, use_torch=None):
  """Converts pytorch-fid's `.pth` into a jaxgen weight file. Returns the nested params."""
  digest = sha256_file(pth)
  if check_hash and digest != PTH_SHA256:
    raise UserError(f'{pth} has SHA-256 {digest[:12]}..., not pytorch-fid\'s '
                    f'{PTH_SHA256[:12]}...: the file is corrupt or a different model '
                    '(re-download it; pass --no-hash-check only for a deliberate other file)')
  flat = state_dict_to_flat(read_pth(pth, use_torch), source=str(pth))
  if out is not None:
    save_converted(flat, out, digest)
  return unflatten(flat)


# ---------------------------------------------------------------------------------------------
# Finding the weights at run time.


def download(url, dest, expected_sha256=None, timeout=60):
  """Downloads `url` to `dest` atomically, checking its SHA-256 (default: pytorch-fid's).

  Raises UserError when the download fails or the hash differs; nothing is left behind then.
  """
  expected_sha256 = expected_sha256 or PTH_SHA256
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + '.', suffix='.part')
  digest = hashlib.sha256()
  try:
    with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(url, timeout=timeout) as response:
      for block in iter(lambda: response.read(1 << 20), b''):
        digest.update(block)
        f.write(block)
    if digest.hexdigest() != expected_sha256:
      raise UserError(f'downloaded {url} has SHA-256 {digest.hexdigest()[:12]}..., expected '
                      f'{expected_sha256[:12]}...: the download is corrupt; try again')
    os.replace(tmp, dest)
  except (urllib.error.URLError, OSError, ValueError) as e:
    raise UserError(f'cannot download {url} ({e}); ' + _missing_message(dest.parent)) from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def _load_explicit(path, source):
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise UserError(f'Inception weights {path} (from {source}) do not exist; '
                    + _missing_message(cache_dir() / 'inception'))
  if path.suffix == '.pth':
    return convert_pth(path, out=None, check_hash=True)
  return load_converted(path)[0]


def load_params(weights=None, cache=None, allow_download=True, url=PTH_URL):
  """Finds, checks and loads the FID Inception parameters (see the module docstring).

  Args:
    weights: explicit path to a converted `.npz` or pytorch-fid's `.pth`; overrides the rest.
    cache: cache directory; default `cache_dir()`.
    allow_download: try the download when nothing is found locally.
    url: where to download the `.pth` from.

  Returns:
    The nested parameter pytree (numpy arrays).

  Raises:
    UserError: nothing found (the message names the file, the folder and the command), a
      hash mismatch, or an invalid file.
  """
  if weights:
    return _load_explicit(weights, 'the weights argument')
  if os.environ.get(ENV_WEIGHTS):
    return _load_explicit(os.environ[ENV_WEIGHTS], f'${ENV_WEIGHTS}')

  folder = pathlib.Path(cache or cache_dir()) / 'inception'
  converted = folder / CONVERTED_NAME
  pth = folder / PTH_NAME
  if converted.is_file():
    try:
      params, source = load_converted(converted)
      if source == PTH_SHA256:
        return params
      problem = 'was not converted from the official weights'
    except UserError as e:
      problem = str(e)
    warnings.warn(f'rebuilding the cached Inception weights: {problem}')
    converted.unlink()
  if not pth.is_file():
    if not allow_download:
      raise UserError(_missing_message(folder))
    download(url, pth)
  elif sha256_file(pth) != PTH_SHA256:
    raise UserError(f'{pth} has the wrong SHA-256 (corrupt or incomplete download): delete it '
                    'and run again to re-download, or replace it with ' + PTH_URL)
  return convert_pth(pth, converted, check_hash=True)


# ---------------------------------------------------------------------------------------------
# Command line.


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m jaxgen.metrics.inception_weights',
      description='Convert pytorch-fid\'s FID Inception weights into jaxgen\'s weight file.')
  sub = parser.add_subparsers(dest='command', required=True)
  conv = sub.add_parser('convert', help='.pth state_dict -> jaxgen .npz')
  conv.add_argument('--pth', required=True, help=f'pytorch-fid\'s {PTH_NAME}')
  conv.add_argument('--out', required=True, help=f'output .npz, e.g. {CONVERTED_NAME}')
  conv.add_argument('--no-hash-check', action='store_true',
                    help='accept a .pth whose SHA-256 is not the official one (tests only)')
  conv.add_argument('--reader', choices=('auto', 'torch', 'plain'), default='auto',
                    help='how to read the .pth: torch if importable (auto), or the built-in '
                    'reader')
  fetch = sub.add_parser('fetch', help='download, check and convert into the cache')
  fetch.add_argument('--cache', default=None, help='cache directory (default $JAXGEN_CACHE or '
                     '~/.cache/jaxgen)')
  args = parser.parse_args(argv)
  try:
    if args.command == 'convert':
      use_torch = {'auto': None, 'torch': True, 'plain': False}[args.reader]
      convert_pth(args.pth, args.out, check_hash=not args.no_hash_check, use_torch=use_torch)
      print(f'wrote {args.out}')
    else:
      load_params(cache=args.cache)
      print(f'Inception weights ready in {pathlib.Path(args.cache or cache_dir()) / "inception"}')
  except UserError as e:
    print(f'{parser.prog}: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
