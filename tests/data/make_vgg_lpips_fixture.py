"""Records tests/data/vgg_lpips.npz and tests/data/tiny_state_dict.pth for tests/test_vgg.py,
tests/test_lpips.py and tests/test_pretrained.py (which never import torch).

Run once with CPU PyTorch, torchvision's Python source and the lpips source on the path; see
README_vgg_lpips.md for the exact command and versions:

  TORCHVISION_SRC=/tmp/torchvision_src LPIPS_SRC=/tmp/lpips_src LPIPS_COMMIT=082bb24... \\
      /work/torchenv/bin/python tests/data/make_vgg_lpips_fixture.py

No weights are downloaded: every network gets the SHARED weights that `shared_weights(seed)`
draws with NumPy, and the tests draw the same ones by importing this file (torch is imported
only inside `main`). So the fixture holds only inputs and outputs.

Keys of vgg_lpips.npz (images NHWC, float32):

  versions                       string: python, torch, torchvision, numpy, lpips commit
  seed                           int: the seed of `shared_weights`
  vgg19/x                        [2, 32, 32, 3] inputs in [-1, 1]
  vgg19/LAYER                    torchvision vgg19().features (ImageNet-normalised input) at
                                 LAYER, channels [::VGG19_STEP[LAYER]]
  vgg16/LAYER                    the same for vgg16() on vgg19/x
  lpips/x0, lpips/x1             [3, 32, 32, 3]: pairs (a, a + small noise), (a, b), (a, a)
  lpips/d                        [3] lpips.LPIPS(net='vgg', version='0.1')(x0, x1), squeezed
  lpips/per_layer                [5, 3] its retPerLayer values
  lpips/d_swapped                [3] the same with x0 and x1 swapped

tiny_state_dict.pth: torch.save (zip format) of `tiny_state_dict_arrays()` in the layout of
lpips' linear-layer file: lin1 stored as float16, lin3 and lin4 as non-contiguous views (stride
2, offsets 0 and 1) of one shared [512, 2] storage.
"""

import importlib.machinery
import importlib.util
import os
import platform
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
VGG_CFG = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# Recorded layers and the channel step that keeps the file small.
VGG19_STEP = {'relu1_1': 8, 'relu1_2': 8, 'relu2_1': 8, 'relu3_1': 8, 'relu4_1': 16,
              'relu5_1': 16, 'conv5_4': 1, 'relu5_4': 1, 'pool5': 1}
VGG16_STEP = {'relu3_3': 8, 'conv5_3': 1, 'relu5_3': 1}


def vgg_layer_names(depth):
  names = []
  for block, convs in enumerate(VGG_CFG[depth], start=1):
    for k in range(1, convs + 1):
      names += [f'conv{block}_{k}', f'relu{block}_{k}']
    names.append(f'pool{block}')
  return names


def random_vgg_state_dict(rng, depth):
  """torchvision VGG`depth` `features.*` (OIHW float32): He-normal kernels (std sqrt(2 / fan_in),
  which keeps activations O(1) through 16 layers, as trained weights do), N(0, 0.1) biases."""
  sd, in_channels = {}, 3
  for i, name in enumerate(vgg_layer_names(depth)):
    if name.startswith('conv'):
      out_channels = CHANNELS[int(name[4]) - 1]
      fan_in = in_channels * 9
      sd[f'features.{i}.weight'] = rng.normal(
          0, np.sqrt(2 / fan_in), (out_channels, in_channels, 3, 3)).astype(np.float32)
      sd[f'features.{i}.bias'] = rng.normal(0, 0.1, out_channels).astype(np.float32)
      in_channels = out_channels
  return sd


def shared_weights(seed=SEED):
  """(vgg19 state_dict, vgg16 state_dict, lpips linear state_dict, images): the weights every
  network of the fixture gets, drawn in this order from np.random.default_rng(seed)."""
  rng = np.random.default_rng(seed)
  vgg19 = random_vgg_state_dict(rng, 19)
  vgg16 = random_vgg_state_dict(rng, 16)
  # Non-negative, like the trained ones (lpips clamps them at 0 while training).
  linear = {f'lin{k}.model.1.weight': rng.uniform(0, 0.5, (1, c, 1, 1)).astype(np.float32)
            for k, c in enumerate(LPIPS_CHANNELS)}
  a = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  noise = rng.normal(0, 0.05, (3, 32, 32, 3)).astype(np.float32)
  images = {
      'vgg19/x': a[:2],
      'lpips/x0': a,
      'lpips/x1': np.stack([np.clip(a[0] + noise[0], -1, 1), b[1], a[2]]),
  }
  return vgg19, vgg16, linear, images


def tiny_state_dict_arrays(seed=1):
  """The values of tiny_state_dict.pth: lpips' linear layout, {lin{k}.model.1.weight: [1, C, 1,
  1] float32} (lin1 is stored as float16: compare with the float16 rounding)."""
  rng = np.random.default_rng(seed)
  return {f'lin{k}.model.1.weight': rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
          for k, c in enumerate(LPIPS_CHANNELS)}


def _import_reference():
  """torchvision.models and lpips from source. The torchvision package's __init__ loads its C
  extension, which only exists for the CUDA builds reachable here, so the package is entered
  through a bare module: vgg.py and lpips use none of the extension."""
  tv_src = os.environ.get('TORCHVISION_SRC')
  if tv_src:
    sys.path.insert(0, tv_src)
  spec = importlib.util.find_spec('torchvision')
  package = types.ModuleType('torchvision')
  package.__path__ = list(spec.submodule_search_locations)
  sys.modules['torchvision'] = package
  sys.path.insert(0, os.environ.get('LPIPS_SRC', '/tmp/lpips_src'))
  try:
    import tqdm  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:  # lpips.trainer imports it; nothing here uses it
    stub = types.ModuleType('tqdm')
    stub.__spec__ = importlib.machinery.ModuleSpec('tqdm', None)
    stub.tqdm = lambda iterable, *args, **kwargs: iterable
    sys.modules['tqdm'] = stub
  from torchvision import models  # pylint: disable=import-outside-toplevel
  import lpips  # pylint: disable=import-outside-toplevel
  return models, lpips


def main():
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_grad_enabled(False)
  models, lpips = _import_reference()
  vgg19_sd, vgg16_sd, linear_sd, images = shared_weights()
  out = {'seed': np.int64(SEED)}
  out.update(images)
  nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
  nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)

  mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
  std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
  x = (nchw(images['vgg19/x']) + 1) / 2
  x = (x - mean) / std
  for depth, sd, steps in ((19, vgg19_sd, VGG19_STEP), (16, vgg16_sd, VGG16_STEP)):
    net = getattr(models, f'vgg{depth}')(weights=None).eval()
    missing = net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    assert not missing.unexpected_keys and all(k.startswith('classifier')
                                                for k in missing.missing_keys)
    h = x
    for name, module in zip(vgg_layer_names(depth), net.features):
      # In-place ReLUs overwrite their input: record a copy.
      h = module(h.clone())
      if name in steps:
        out[f'vgg{depth}/{name}'] = nhwc(h)[..., ::steps[name]].copy()

  model = lpips.LPIPS(net='vgg', version='0.1', pretrained=False, pnet_rand=True,
                      verbose=False).eval()
  for name, module in model.net.named_modules():
    if isinstance(module, torch.nn.Conv2d):  # slice{s}.{features index}
      index = int(name.split('.')[-1])
      module.weight.copy_(torch.from_numpy(vgg16_sd[f'features.{index}.weight']))
      module.bias.copy_(torch.from_numpy(vgg16_sd[f'features.{index}.bias']))
  for k, lin in enumerate(model.lins):
    lin.model[-1].weight.copy_(torch.from_numpy(linear_sd[f'lin{k}.model.1.weight']))
  x0, x1 = nchw(images['lpips/x0']), nchw(images['lpips/x1'])
  d, per_layer = model(x0, x1, retPerLayer=True)
  out['lpips/d'] = d.numpy().reshape(-1)
  out['lpips/per_layer'] = np.stack([r.numpy().reshape(-1) for r in per_layer])
  out['lpips/d_swapped'] = model(x1, x0).numpy().reshape(-1)

  import torchvision.version  # pylint: disable=import-outside-toplevel
  commit = os.environ.get('LPIPS_COMMIT', 'unknown')
  out['versions'] = np.array(
      f'python {platform.python_version()}, torch {torch.__version__}, torchvision '
      f'{torchvision.version.__version__}, numpy {np.__version__}, lpips '
      f'(richzhang/PerceptualSimilarity) {commit}')
  path = os.path.join(HERE, 'vgg_lpips.npz')
  np.savez_compressed(path, **out)
  print('wrote', path, os.path.getsize(path), 'bytes')

  tiny = {k: torch.from_numpy(v) for k, v in tiny_state_dict_arrays().items()}
  tiny['lin1.model.1.weight'] = tiny['lin1.model.1.weight'].half()
  shared = torch.stack([tiny['lin3.model.1.weight'].reshape(512),
                        tiny['lin4.model.1.weight'].reshape(512)], dim=1)  # [512, 2]
  tiny['lin3.model.1.weight'] = shared[:, 0][None, :, None, None]
  tiny['lin4.model.1.weight'] = shared[:, 1][None, :, None, None]
  assert not tiny['lin3.model.1.weight'].is_contiguous()
  assert tiny['lin4.model.1.weight'].storage_offset() == 1
  path = os.path.join(HERE, 'tiny_state_dict.pth')
  torch.save(tiny, path)
  print('wrote', path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
  main()
