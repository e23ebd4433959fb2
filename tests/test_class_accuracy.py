"""tools/class_accuracy.py: the judge that reads the embedded shapes, and its refusals.

The full measurement (a 30,000-image judge, 128 samples per label of a 10-minute run) is a
command, not a test; here the judge is trained small and the refusals run against the shared
tiny diffusion run.
"""

import importlib.util
import os

import numpy as np

from conftest import REPO, tree_digest


def _tool():
  spec = importlib.util.spec_from_file_location(
      'class_accuracy', os.path.join(REPO, 'tools', 'class_accuracy.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_judge_tells_embedded_classes_apart():
  """Trained on 1,024 images of discs and stripes at 8×8 (6 epochs), the judge is right about at
  least 90 % of each class on 400 images it never saw, where guessing is right about half; the
  full judge (30,000 images, 10 epochs) is right about 99.5 % of each of five classes at 16².
  Its features place other images of a class near the class and far from the other one."""
  tool = _tool()
  classes = (0, 3)
  params = tool.train_judge(8, 3, classes, seed=5, count=1024, epochs=6, batch=64,
                            log=lambda text: None)
  images, labels = tool.render(8, 3, classes, 6, 400)
  predicted = tool.predict(params, len(classes), images).argmax(-1)
  for k in range(len(classes)):
    assert (predicted[labels == k] == k).mean() >= 0.9, k
  # Intra-class FD in the judge's features: other real images of each class are near it, the
  # other class's are far (measured with judges of seeds 5, 8, 11: at most 0.35 against at
  # least 76.6, a ratio over 200; the bar asks for 20).
  other, other_labels = tool.render(8, 3, classes, 7, 400)
  real, others = tool.judge(params, 2, images)[1], tool.judge(params, 2, other)[1]
  same = tool.intra_class_fd(real, labels, [others[other_labels == k] for k in (0, 1)])
  swapped = tool.intra_class_fd(real, labels, [others[other_labels == k] for k in (1, 0)])
  assert 20 * max(same) < min(swapped), (same, swapped)


def test_refusals_are_one_line_and_write_nothing(diffusion_run, tmp_path, capsys):
  """An unconditional run (the shared tiny one), an unknown option, too few samples, a missing
  generator file, --best with a file: exit 2 with one error line, no judge trained or cached,
  the run untouched."""
  tool = _tool()
  before = tree_digest(diffusion_run)
  cache = tmp_path / 'cache'
  run = ['--workdir', diffusion_run]
  missing = str(tmp_path / 'absent.npz')
  cases = [
      (run, 'is not a class-conditional run on the embedded data'),
      (run + ['--option=speed=2'], '--option=speed=2: give NAME=VALUE with NAME one of'),
      (run + ['--samples=0'], '--samples=0'),
      (['--network', missing], f'--network={missing}'),
      (['--network', missing, '--best'], '--best picks a checkpoint of a --workdir'),
  ]
  for argv, message in cases:
    rc = tool.main(argv + ['--cache', str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, argv
    assert len(err) == 1 and message in err[0], (argv, err)
  assert not cache.exists()
  assert tree_digest(diffusion_run) == before


def test_options_parse_as_generate_takes_them():
  tool = _tool()
  assert tool.parse_options(['guidance=1.5', 'steps=40', 'sampler=euler']) == {
      'guidance': 1.5, 'steps': 40, 'sampler': 'euler'}
  assert isinstance(tool.parse_options(['steps=40'])['steps'], int)
  assert np.isinf(tool.parse_options(['S_max=inf'])['S_max'])
