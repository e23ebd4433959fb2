"""colab/jaxgen.ipynb, executed cell by cell in IPython (as Colab's kernel runs it: `!` shell
lines, `{var}` expansion, `%cd`), on the CPU with the tiny StyleGAN2 settings. Cells tagged
`colab-only` (pip install, TensorBoard) need Colab or the network and are left out."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, STYLEGAN_RUN, STYLEGAN_TINY, env_with_devices, read_scalars

NOTEBOOK = os.path.join(REPO, 'colab', 'jaxgen.ipynb')
PARAM = re.compile(r'^(\w+) = (.+?)  # @param\b.*$', re.M)

# Runs a list of cells in one IPython shell; stops at the first that fails.
RUNNER = '''
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for i, source in enumerate(json.load(open(sys.argv[1]))):
  print(f'--- cell {i}', flush=True)
  if not shell.run_cell(source).success:
    sys.exit(f'cell {i} failed')
'''


def _cells():
  with open(NOTEBOOK) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4
  return [(''.join(c['source']), c['metadata'].get('tags', []))
          for c in notebook['cells'] if c['cell_type'] == 'code']


def _with_settings(source, values):
  """The settings cell with each `NAME = ...  # @param` set to values[NAME] (all must exist)."""
  found = PARAM.findall(source)
  assert {name for name, _ in found} == set(values), found
  return PARAM.sub(lambda m: f'{m.group(1)} = {values[m.group(1)]!r}', source)


def _run_notebook(tmp_path, settings):
  """Runs every cell but the `colab-only` ones in IPython with `settings` (in a subprocess, so
  that `%cd` stays there); returns the finished process and the number of cells."""
  cells = [source for source, tags in _cells() if 'colab-only' not in tags]
  assert cells[0].startswith('# @title Settings')
  cells[0] = _with_settings(cells[0], settings)
  (tmp_path / 'cells.json').write_text(json.dumps(cells))
  # The notebook's `!python` is this interpreter, as the kernel's python is on Colab.
  env = env_with_devices(1)
  env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env['PATH']
  result = subprocess.run([sys.executable, '-c', RUNNER, str(tmp_path / 'cells.json')],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
  return result, len(cells)


def test_only_install_and_tensorboard_need_colab():
  tagged = [source for source, tags in _cells() if 'colab-only' in tags]
  assert len(tagged) == 2
  assert 'pip install' in tagged[0] and '%tensorboard' in tagged[1]


@pytest.mark.slow
def test_notebook_trains_samples_scores_and_exports(stylegan_run, tmp_path):
  """Every other cell, in order, with the source tree as JAXGEN_SOURCE and the shared tiny run's
  settings as OVERRIDES, its workdir already holding a copy of the shared run (so that the suite
  does not train it twice): the training cell resumes it at its last step — which it only can
  when the overrides reached it, since another config is refused as another experiment — and
  the images, score and export cells find what it wrote."""
  runs = tmp_path / 'runs'
  shutil.copytree(stylegan_run, runs / 'tiny')
  config_before = (runs / 'tiny' / 'config.json').read_bytes()
  overrides = {**STYLEGAN_TINY, **STYLEGAN_RUN}
  settings = {
      'JAXGEN_SOURCE': REPO, 'CONFIG': 'configs/stylegan.py',
      'OVERRIDES': ' '.join(f'--config.{k}={v}' for k, v in overrides.items()),
      'IMAGES': '', 'RUNS_DIR': str(runs), 'RUN_NAME': 'tiny', 'TRUNCATION': 0.5, 'NUM_SEEDS': 4,
  }
  result, num_cells = _run_notebook(tmp_path, settings)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  assert f'--- cell {num_cells - 1}' in result.stdout
  assert 'cpu [CpuDevice(id=0)]' in result.stdout

  workdir = runs / 'tiny'
  assert 'Resuming at step 6 of 6' in result.stdout + result.stderr
  assert (workdir / 'config.json').read_bytes() == config_before
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4', '6']
  expected = read_scalars(stylegan_run)
  assert sorted(os.listdir(runs / 'tiny-images')) == [
      'grid.png', 'seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0003.png']
  grid = np.asarray(Image.open(runs / 'tiny-images' / 'grid.png'))
  assert grid.shape == (32, 32, 3) and grid.std() > 0
  swd = re.search(r'^swd/avg: ([0-9.]+)$', result.stdout, re.M)
  assert swd and float(swd.group(1)) == pytest.approx(expected['eval/swd/avg'][6], rel=1e-3)
  with np.load(runs / 'tiny-generator.npz') as network:
    assert '__jaxgen__' in network.files


def test_a_source_that_cannot_be_cloned_stops_run_all(tmp_path):
  settings = {
      'JAXGEN_SOURCE': str(tmp_path / 'no-such-repository'), 'CONFIG': 'configs/stylegan.py',
      'OVERRIDES': '', 'IMAGES': '', 'RUNS_DIR': str(tmp_path / 'runs'), 'RUN_NAME': 'x',
      'TRUNCATION': 1.0, 'NUM_SEEDS': 1,
  }
  result, _ = _run_notebook(tmp_path, settings)
  assert result.returncode != 0 and 'cell 1 failed' in result.stderr
  assert 'set JAXGEN_SOURCE to a git URL' in result.stdout
  assert '--- cell 2' not in result.stdout
