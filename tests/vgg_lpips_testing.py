"""The VGG/LPIPS parity fixture that tests/test_vgg.py and tests/test_lpips.py share: the recorded
inputs and outputs (tests/data/vgg_lpips.npz) and the weights they were recorded with, drawn
again with NumPy by tests/data/make_vgg_lpips_fixture.py (README_vgg_lpips.md)."""

import pathlib

import numpy as np

from conftest import fixture_maker

DATA = pathlib.Path(__file__).parent / 'data'


def load():
  """(script, recorded, weights): make_vgg_lpips_fixture.py as a module (its layer tables), the
  recorded arrays {name: array}, and `script.shared_weights(seed)` of the recorded seed — the
  (vgg19, vgg16, lpips linear) state dicts and the images."""
  script = fixture_maker('vgg_lpips')
  with np.load(DATA / 'vgg_lpips.npz') as data:
    recorded = dict(data)
  return script, recorded, script.shared_weights(int(recorded['seed']))
