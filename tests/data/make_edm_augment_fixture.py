"""Records NVlabs EDM's `AugmentPipe` (training/augment.py) on a few small batches, with every
random number it draws, into tests/data/edm_augment.npz (see README_edm_augment.md).

Needs PyTorch and a checkout of https://github.com/NVlabs/edm; never imported by the tests.

  python tests/data/make_edm_augment_fixture.py --edm=/path/to/edm --out=tests/data/edm_augment.npz
"""

import argparse
import json
import sys
import types

import numpy as np

# Each case: settings of AugmentPipe, the images' shape [N, H, W, C] (NHWC, as jaxgen), and the
# seed of its images (NumPy) and draws (torch.manual_seed).
CASES = {
    # EDM's CIFAR-10 pipeline as trained (p = 0.12): most geometric draws do not fire.
    'cifar': (dict(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
                   translate_frac=1), (8, 16, 16, 3), 0),
    # Every transform the pipeline has, p = 0.6 (some fire, some not), RGB.
    'all_rgb': (dict(p=0.6, xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1,
                     rotate_frac=1, aniso=1, translate_frac=1, brightness=1, contrast=1,
                     lumaflip=1, hue=1, saturation=1), (6, 16, 16, 3), 1),
    # One channel (the colour matrix's mean row), non-square (x and y conventions), non-default
    # ranges; strong zooms (scale_std 1) make output pixels near the border read the zeros
    # beyond the batch's reflect-padded margin, which tells the exact padding from a fixed one
    # (seed 11 of 0–11 is one where this matters most: 2e-3 without the margin's zeros).
    'gray_rect': (dict(p=0.8, xflip=1, yflip=1, translate_int=1, scale=1, rotate_frac=1,
                       aniso=1, translate_frac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
                       saturation=1, translate_int_max=0.2, scale_std=1.0,
                       rotate_frac_max=0.25, aniso_std=0.3, aniso_rotate_prob=0.9,
                       translate_frac_std=0.2, brightness_std=0.3, contrast_std=0.4,
                       hue_max=0.5, saturation_std=0.8), (6, 12, 20, 1), 11),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--edm', required=True, help='path to a checkout of NVlabs/edm')
  parser.add_argument('--out', default='tests/data/edm_augment.npz')
  args = parser.parse_args()

  sys.path.insert(0, args.edm)
  try:
    import requests  # noqa: F401  (dnnlib imports it; augment.py never uses it)
  except ImportError:
    sys.modules['requests'] = types.ModuleType('requests')
  import torch
  from training import augment

  # Record every draw: the wrappers return the real random tensors and keep a copy.
  recorded = []
  originals = {name: getattr(torch, name) for name in ('rand', 'randn', 'randint')}

  def recorder(name):
    def wrapped(*a, **kw):
      out = originals[name](*a, **kw)
      recorded.append((name, out.detach().cpu().numpy().copy()))
      return out
    return wrapped

  arrays = {'versions': np.array(json.dumps({'torch': torch.__version__,
                                               'numpy': np.__version__}))}
  for case, (settings, shape, seed) in CASES.items():
    images = np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)
    pipe = augment.AugmentPipe(**settings)
    torch.manual_seed(seed)
    recorded.clear()
    for name in originals:
      setattr(torch, name, recorder(name))
    try:
      out, labels = pipe(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    finally:
      for name, fn in originals.items():
        setattr(torch, name, fn)
    arrays[f'{case}/settings'] = np.array(json.dumps(settings))
    arrays[f'{case}/images'] = images
    arrays[f'{case}/output'] = out.permute(0, 2, 3, 1).numpy()
    arrays[f'{case}/labels'] = labels.numpy()
    arrays[f'{case}/draw_kinds'] = np.array([name for name, _ in recorded])
    for i, (_, value) in enumerate(recorded):
      arrays[f'{case}/draw{i:02d}'] = value
    print(f'{case}: {len(recorded)} draws, labels {tuple(labels.shape)}')
  np.savez_compressed(args.out, **arrays)


if __name__ == '__main__':
  main()
