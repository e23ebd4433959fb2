"""cli.parse_flags on config-file and override errors the table in test_bad_input.py leaves out:
each is one `jaxgen: error:` line and exit status 2, before any training (so no trained run)."""

import subprocess
import sys

import pytest

from conftest import REPO, env_with_devices


def _error_line(*args, module='jaxgen.main', cwd=REPO):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, capture_output=True,
                          text=True, env=env_with_devices(1), timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


CONFIGS = {  # The config file run, its source, other files beside it, the text of the error line.
    # get_config's own exceptions, where raised: in a module the config imports...
    'imports.py': ('import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\nimport helper\n'
                   '\ndef get_config():\n  return helper.make()\n',
                   {'helper.py': 'def make():\n  return 1 / 0\n'},
                   'imports.py (in {tmp}/helper.py, line 2): ZeroDivisionError: division by zero'),
    # ...or in no code of the user's at all.
    'no_get_config.py': ('x = 1\n', {}, 'no_get_config.py: defines no get_config()'),
    'returns_none.py': ('def get_config():\n  pass\n', {},
                        'returns_none.py: get_config() returned None'),
    # An OSError, which ml_collections keeps for the first read of the config.
    'opens.py': ('def get_config():\n  return open("absent.txt")\n', {},
                 "opens.py, line 2: FileNotFoundError: [Errno 2] No such file or directory: "
                 "'absent.txt'"),
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_file_errors(tmp_path, name):
  source, others, expected = CONFIGS[name]
  for file, text in {name: source, **others}.items():
    (tmp_path / file).write_text(text)
  line = _error_line(f'--config={tmp_path / name}', f'--workdir={tmp_path / "work"}')
  assert expected.format(tmp=tmp_path) in line, line
  assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('args, expected', [
    # The preset refused by dcgan.get_config, which dcgan_wide calls.
    (['--config=configs/dcgan_wide.py:bogus'], "configs/dcgan_wide.py: unknown preset 'bogus'"),
    (['--config', 'configs/nope.py'], 'configs/nope.py: no such config file'),
    (['--config=configs'], 'configs is a folder, not a config file'),
    (['--config=configs/dcgan.py', '--config.train.batch_size.x=1'],
     'unknown config key train.batch_size.x (train.batch_size is a value of type int'),
    (['--config=configs/dcgan.py', '--config.bogus=1'],
     'unknown config key bogus; the config has checkpoint, data,'),
    (['--config=configs/dcgan.py', '--noconfig.data.xflipp'],
     'unknown config key data.xflipp; Did you mean "xflip" instead of "xflipp"?'),
], ids=['preset-of-imported-config', 'missing-file-space-form', 'folder', 'key-below-a-value',
      'unknown-top-level-key', 'misspelled-bool-no-form'])
def test_main_flag_errors(tmp_path, args, expected):
  line = _error_line(*args, f'--workdir={tmp_path / "work"}')
  assert expected in line, line
  assert not (tmp_path / 'work').exists()


def test_missing_config_from_another_folder_says_where_the_configs_are(tmp_path):
  line = _error_line('--config=configs/dcgan.py', f'--workdir={tmp_path / "work"}', cwd=tmp_path)
  assert f'no folder configs in {tmp_path}' in line and f'{REPO}/configs' in line, line


def test_bench_reports_config_errors_the_same_way():
  line = _error_line('--config=configs/dcgan.py:bogus', module='jaxgen.bench')
  assert "configs/dcgan.py: unknown preset 'bogus'" in line, line
