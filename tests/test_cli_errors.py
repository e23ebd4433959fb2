"""Bad input to `python -m jaxgen.main`: one error line, non-zero exit, existing data intact."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, env_with_devices, main_command, run_main, tree_digest


def _fails_cleanly(args, num_devices=1):
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                          env=env_with_devices(num_devices), timeout=300)
  assert result.returncode != 0
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  return errors[0]


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained'))
  run_main(workdir, **{'train.num_steps': 2, 'eval.every_steps': 2})
  return workdir


@pytest.mark.parametrize('override, expected', [
    ('--config.trian.num_steps=3', 'Did you mean "train"'),
    ('--config.train.num_steps=abc', "invalid literal for int() with base 10: 'abc'"),
])
def test_bad_config_override(trained_workdir, override, expected):
  before = tree_digest(trained_workdir)
  assert expected in _fails_cleanly(main_command(trained_workdir) + [override])
  assert tree_digest(trained_workdir) == before


def test_batch_not_divisible_by_devices(trained_workdir):
  before = tree_digest(trained_workdir)
  line = _fails_cleanly(main_command(trained_workdir, **{'train.batch_size': 6}), num_devices=4)
  assert 'not divisible by the 4 devices' in line
  assert tree_digest(trained_workdir) == before


def test_empty_folder_dataset(tmp_path):
  (tmp_path / 'images').mkdir()
  line = _fails_cleanly(main_command(str(tmp_path / 'work'),
                                     **{'data.source': f'folder:{tmp_path / "images"}'}))
  assert 'contains no image files' in line


def test_missing_tfds_data_offline(tmp_path):
  line = _fails_cleanly(main_command(str(tmp_path / 'work'), **{
      'data.source': 'tfds:mnist', 'data.tfds_data_dir': str(tmp_path / 'tfds'),
      'data.tfds_download': False}))
  assert 'tfds build mnist' in line


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  line = _fails_cleanly(main_command(str(blocker / 'work')))
  assert 'not writable' in line
  assert blocker.read_text() == 'not a folder'


def test_url_workdir_and_outdir_are_refused_without_making_local_folders(dcgan_run, tmp_path):
  """os.makedirs('gs://bucket/run') would make a local folder 'gs:' and train into it."""
  python = [sys.executable, '-m']
  commands = [
      main_command('gs://bucket/run', config=os.path.join(REPO, 'configs', 'dcgan.py')),
      python + ['jaxgen.generate', '--workdir=s3://bucket/run', f'--outdir={tmp_path}/out',
                '--seeds=0'],
      python + ['jaxgen.generate', f'--workdir={dcgan_run}', '--outdir=gs://bucket/images',
                '--seeds=0'],
      python + ['jaxgen.evaluate', '--workdir=gs://bucket/run', '--metrics=swd'],
      python + ['jaxgen.phema', f'--workdir={dcgan_run}', '--std=0.1', '--outdir=gs://b/phema'],
  ]
  before = tree_digest(dcgan_run)
  for args in commands:
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True,
                            env=env_with_devices(1), timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith('jaxgen: error: --')
    assert 'is a URL' in result.stderr and 'Traceback' not in result.stderr
  assert os.listdir(tmp_path) == []
  assert tree_digest(dcgan_run) == before
