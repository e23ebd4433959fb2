"""FID Inception weights: pytorch-fid's `.pth`, its conversion, and where it is found.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (TensorFlow's
`inception-2015-12-05` graph ported to PyTorch), a `torch.save`d state_dict with torchvision
`Inception3` key names. jaxgen converts it once into its own file, an `.npz` of the flattened
Flax parameters (`Mixed_5b/branch1x1/kernel`, ...), kernels transposed from PyTorch's
OIHW to HWIO.

This module is the weight file's `WeightsSpec` (`SPEC`) and its converter; finding, checking,
downloading and caching are `jaxgen.pretrained`'s, the same for every pretrained network.
Where the weights come from, first match wins (`load_params`):

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

(or `python -m jaxgen.pretrained convert fid_inception --pth ... --out ...`). Reading a `.pth`
uses torch when it is importable, else `jaxgen.pretrained.load_torch_state_dict`, a restricted
unpickler that needs no torch.
"""

import collections
import dataclasses
import functools
import sys

import jax
import numpy as np

from jaxgen import pretrained
from jaxgen.metrics import inception

PTH_NAME = 'pt_inception-2015-12-05-6726825d.pth'
PTH_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'
PTH_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
           + PTH_NAME)
CONVERTED_NAME = 'fid_inception_v3.npz'
ENV_WEIGHTS = 'JAXGEN_INCEPTION_WEIGHTS'
ENV_CACHE = pretrained.ENV_CACHE
FORMAT_TAG = 'jaxgen-fid-inception-v1'
CONVERT_COMMAND = ('python -m jaxgen.metrics.inception_weights convert --pth '
                   f'{PTH_NAME} --out {CONVERTED_NAME}')

# torchvision BatchNorm2d / Linear field -> jaxgen parameter name.
_BN_FIELDS = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}

cache_dir = pretrained.cache_dir
sha256_file = pretrained.sha256_file
unflatten = pretrained.unflatten


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


@functools.lru_cache(maxsize=None)
def _flat_shapes_cached():
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(inception.param_shapes())[0]:
    flat['/'.join(k.key for k in path)] = tuple(leaf.shape)
  return flat


def _flat_shapes():
  """{flat parameter name: shape} of the Flax FID Inception."""
  return dict(_flat_shapes_cached())


def _to_flat(state_dict):
  """pytorch-fid state_dict -> flat parameters, unchecked (the spec's converter)."""
  flat = {}
  for key, value in state_dict.items():
    try:
      mapped = _param_path(key)
    except (KeyError, ValueError):
      raise ValueError(f'unexpected key {key!r}; expected the torchvision Inception3 names of '
                       'pytorch-fid\'s FID Inception') from None
    if mapped is None:
      continue
    path, transpose = mapped
    value = np.asarray(value)
    if transpose:
      value = value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    flat['/'.join(path)] = value
  return flat


SPEC = pretrained.WeightsSpec(
    name='fid_inception', title='FID Inception weights', filename=PTH_NAME,
    sha256=PTH_SHA256, url=PTH_URL, env_var=ENV_WEIGHTS, subdir='inception',
    converted_name=CONVERTED_NAME, format_tag=FORMAT_TAG, convert=_to_flat,
    shapes=_flat_shapes, convert_command=CONVERT_COMMAND)


def _spec():
  """SPEC with this module's current constants (they stay the one place to change them)."""
  return dataclasses.replace(SPEC, sha256=PTH_SHA256, url=PTH_URL, filename=PTH_NAME)


def _check_flat(flat, source):
  """Raises UserError unless `flat` has exactly the expected names, shapes, finite values."""
  pretrained.check_flat(_spec(), flat, source)


def state_dict_to_flat(state_dict, source='state_dict'):
  """pytorch-fid state_dict (numpy arrays) -> flat jaxgen parameters {'a/b/kernel': array}."""
  return pretrained.convert_state_dict(_spec(), state_dict, source)


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


def save_converted(flat, path, source_sha256=''):
  """Writes flat parameters to a jaxgen weight file (atomically)."""
  pretrained.save_converted(_spec(), flat, path, source_sha256)


def load_converted(path):
  """Reads and validates a jaxgen weight file. Returns (nested params, source sha256)."""
  flat, source = pretrained.load_converted(_spec(), path)
  return unflatten(flat), source


def read_pth(path, use_torch=None):
  """Reads a `torch.save`d state_dict into NumPy arrays.

  Args:
    path: the `.pth` file.
    use_torch: True: read with torch; False: with the built-in reader; None: torch when it
      is importable.

  Returns:
    OrderedDict name -> np.ndarray.
  """
  return pretrained.load_torch_state_dict(path, use_torch)


def convert_pth(pth, out, check_hash=True, use_torch=None):
  """Converts pytorch-fid's `.pth` into a jaxgen weight file. Returns the nested params."""
  flat = pretrained.convert_pth(_spec(), pth, out, check_hash,
                                reader=lambda path: read_pth(path, use_torch))
  return unflatten(flat)


# ---------------------------------------------------------------------------------------------
# Finding the weights at run time.


def download(url, dest, expected_sha256=None, timeout=60):
  """Downloads `url` to `dest` atomically, checking its SHA-256 (default: pytorch-fid's).

  Raises UserError when the download fails or the hash differs; nothing is left behind then.
  """
  spec = dataclasses.replace(_spec(), sha256=expected_sha256 or PTH_SHA256)
  return pretrained.download(spec, dest, url, timeout)


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
  return pretrained.load_params(_spec(), weights, cache, allow_download, url,
                                reader=lambda path: read_pth(path))


# ---------------------------------------------------------------------------------------------
# Command line.


def main(argv=None):
  """`convert --pth FILE --out FILE.npz` and `fetch [--cache DIR]` for the FID Inception weights:
  jaxgen.pretrained's command line for this one file. Returns the exit status."""
  return pretrained.main(argv, spec=_spec(), prog='python -m jaxgen.metrics.inception_weights',
                         reader=lambda path, use_torch: read_pth(path, use_torch))


if __name__ == '__main__':
  sys.exit(main())
