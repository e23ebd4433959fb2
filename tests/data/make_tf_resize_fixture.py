"""Records tests/data/tf_resize.npz: torch-fidelity's TF 1.x-compatible bilinear resize.

Run once, in an environment with CPU PyTorch and torch-fidelity 0.4.0 (never in the tests,
which must not import torch):

    pip install torch-fidelity==0.4.0 --no-deps   # the module below needs only torch
    python tests/data/make_tf_resize_fixture.py

torch-fidelity's package `__init__` imports torchvision for other feature extractors, so the
one module used here, `torch_fidelity/interpolate_compat_tensorflow.py`, is loaded from the
installed package by its path. It is called exactly as torch-fidelity's FID Inception
(`FeatureExtractorInceptionV3.forward`) calls it: on the uint8 image cast to float32 (values
0..255, NCHW), `size=(299, 299)`, `align_corners=False`, the default method 'slow'.

For each case the file holds the input and, because 299x299x3 float32 outputs would take
1 MB each, the exact float32 output at a fixed set of positions (every pixel of the first
and last rows and columns, plus 4096 random positions) and float64 checksums of the whole
output. It also holds PyTorch's own `F.interpolate(bilinear, align_corners=False)` (the
pytorch-fid resize) at the same positions, to show that the two conventions differ.

Keys, for each case NAME in `cases`:
  NAME/input       uint8 [B, H, W, 3] (NHWC)
  NAME/index       int32 [K] sorted flat indices into the [B, 299, 299, 3] output
  NAME/tf          float32 [K] torch-fidelity's output there
  NAME/torch       float32 [K] F.interpolate(bilinear, align_corners=False) there
  NAME/checksum    float64 [3] of the whole torch-fidelity output y (float64):
                   sum(y), sum(y**2), sum(y * c) with c = (flat_index % 97 - 48) / 48
versions: torch and torch-fidelity versions; cases: the case names.
"""

import importlib.util
import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240601
SIZE = 299
NUM_RANDOM = 4096
CASES = {  # name -> (batch, height, width)
    'up32': (2, 32, 32),
    'up64': (1, 64, 64),
    'odd17x23': (1, 17, 23),
    'down300': (1, 300, 300),
}


def _load_torch_fidelity_resize():
  spec = importlib.util.find_spec('torch_fidelity')
  path = pathlib.Path(spec.submodule_search_locations[0]) / 'interpolate_compat_tensorflow.py'
  module_spec = importlib.util.spec_from_file_location('tf_compat_resize', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.interpolate_bilinear_2d_like_tensorflow1x


def checksums(y):
  """float64 [3] of an output array (any shape): sum, sum of squares, signed weighted sum."""
  y = np.asarray(y, np.float64).reshape(-1)
  c = (np.arange(y.size) % 97 - 48) / 48.0
  return np.array([y.sum(), (y * y).sum(), (y * c).sum()])


def main():
  from importlib.metadata import version  # pylint: disable=import-outside-toplevel
  resize_tf = _load_torch_fidelity_resize()
  rng = np.random.default_rng(SEED)
  arrays = {}
  for name, (b, h, w) in CASES.items():
    image = rng.integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(0, 3, 1, 2).to(torch.float32)  # as torch-fidelity
    with torch.no_grad():
      tf_out = resize_tf(x, size=(SIZE, SIZE), align_corners=False)
      torch_out = F.interpolate(x, size=(SIZE, SIZE), mode='bilinear', align_corners=False)
    tf_out = tf_out.permute(0, 2, 3, 1).numpy()
    torch_out = torch_out.permute(0, 2, 3, 1).numpy()
    assert tf_out.dtype == np.float32 and tf_out.shape == (b, SIZE, SIZE, 3)

    grid = np.zeros((b, SIZE, SIZE, 3), bool)
    grid[:, [0, -1], :, :] = True
    grid[:, :, [0, -1], :] = True
    edges = np.flatnonzero(grid)
    random = rng.choice(grid.size, NUM_RANDOM, replace=False)
    index = np.unique(np.concatenate([edges, random])).astype(np.int32)
    arrays[f'{name}/input'] = image
    arrays[f'{name}/index'] = index
    arrays[f'{name}/tf'] = tf_out.reshape(-1)[index]
    arrays[f'{name}/torch'] = torch_out.reshape(-1)[index]
    arrays[f'{name}/checksum'] = checksums(tf_out)
  arrays['cases'] = np.array(list(CASES))
  arrays['versions'] = np.array([f'torch=={torch.__version__}',
                                 f'torch-fidelity=={version("torch-fidelity")}'])
  out = pathlib.Path(__file__).with_name('tf_resize.npz')
  np.savez_compressed(out, **arrays)
  print(f'wrote {out} ({os.path.getsize(out)} bytes)')


if __name__ == '__main__':
  main()
