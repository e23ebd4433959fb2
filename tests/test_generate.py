"""`python -m jaxgen.generate`: PNGs from a trained run's EMA generator, per seed, with
truncation and noise modes; `python -m jaxgen.export`: that generator in one .npz file. The
workdir is read-only and existing outputs are kept."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, env_with_devices, tree_digest
from jaxgen import export, generate, summaries, trained
from jaxgen.errors import UserError


def _generate(workdir, outdir, *extra):
  args = generate.parse_args(['--workdir', workdir, '--outdir', str(outdir), *extra])
  return generate.run(args)


def _read(path):
  return np.asarray(Image.open(path)).astype(np.int16)


def test_parse_seeds():
  assert generate.parse_seeds('0-3,7') == [0, 1, 2, 3, 7]
  assert generate.parse_seeds(' 5, 2-3 ,5') == [5, 2, 3]  # In order, each once.
  assert generate.parse_seeds('4294967295') == [2**32 - 1]
  for bad, message in (('a', 'not a seed or a range'), ('3-1', 'ends before it starts'),
                       ('-2', 'not a seed'), ('1,,2', 'not a seed'), ('4294967296', 'go up to'),
                       ('0-2000000', 'more than a million')):
    with pytest.raises(UserError, match=message):
      generate.parse_seeds(bad)


def test_generate_seeds_grid_truncation_and_noise_modes(stylegan_run, tmp_path):
  before = tree_digest(stylegan_run)
  written = _generate(stylegan_run, tmp_path / 'a', '--seeds=0-3', '--grid', '--batch_size=3')
  names = sorted(os.listdir(tmp_path / 'a'))
  assert names == ['grid.png', 'seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0003.png']
  assert sorted(written) == sorted(str(tmp_path / 'a' / n) for n in names)
  images = [_read(tmp_path / 'a' / f'seed{s:04d}.png') for s in range(4)]
  assert images[0].shape == (16, 16, 3)
  # The grid is the seeds' images in order, 2×2.
  np.testing.assert_array_equal(_read(tmp_path / 'a' / 'grid.png'),
                                np.concatenate([np.concatenate(images[:2], 1),
                                                np.concatenate(images[2:], 1)], 0))

  # The images are the EMA generator's (const noise, no truncation) for the seeds' latents,
  # z = latents(PRNGKey(seed)), at the newest checkpoint. ≤ 1 level: float rounding between
  # the vmapped program and this batched one, before quantisation.
  restored = trained.restore(stylegan_run, need_data=False)
  assert restored.step == 6
  z = np.concatenate([restored.recipe.latents(jax.random.PRNGKey(s), 1) for s in range(4)])
  direct = summaries.to_uint8(restored.recipe.generate(restored.state, z, np.zeros(4, np.int32)))
  assert np.abs(np.stack(images) - direct).max() <= 1
  assert np.abs(images[0] - images[1]).max() > 10  # Different seeds, different images.

  # A seed's image does not depend on the seeds beside it (nor on the batch size).
  _generate(stylegan_run, tmp_path / 'b', '--seeds=2', '--batch_size=1')
  assert np.abs(_read(tmp_path / 'b' / 'seed0002.png') - images[2]).max() <= 1

  # ψ = 0: every image is the image of w_avg.
  _generate(stylegan_run, tmp_path / 'c', '--seeds=0-3', '--trunc=0')
  same = [_read(tmp_path / 'c' / f'seed{s:04d}.png') for s in range(4)]
  assert all(np.abs(x - same[0]).max() <= 1 for x in same)
  # A cutoff of 0 truncates no w: the untruncated images.
  _generate(stylegan_run, tmp_path / 'd', '--seeds=0-3', '--trunc=0', '--trunc_cutoff=0')
  for s in range(4):
    assert np.abs(_read(tmp_path / 'd' / f'seed{s:04d}.png') - images[s]).max() <= 1

  # Noise: random is drawn per seed (repeatable), and differs from const and from none. The
  # tiny run's noise strengths are small after 6 steps, so the differences are small too.
  _generate(stylegan_run, tmp_path / 'e', '--seeds=0-1', '--noise_mode=random')
  _generate(stylegan_run, tmp_path / 'f', '--seeds=0-1', '--noise_mode=random')
  _generate(stylegan_run, tmp_path / 'g', '--seeds=0-1', '--noise_mode=none')
  for s in range(2):
    name = f'seed{s:04d}.png'
    random_a, random_b = _read(tmp_path / 'e' / name), _read(tmp_path / 'f' / name)
    none = _read(tmp_path / 'g' / name)
    np.testing.assert_array_equal(random_a, random_b)
    assert np.abs(random_a - images[s]).max() > 0 and np.abs(none - images[s]).max() > 0
    assert np.abs(random_a - none).max() > 0

  # --best: the best checkpoint by the run's SWD.
  _generate(stylegan_run, tmp_path / 'h', '--seeds=0', '--best')
  assert os.path.exists(tmp_path / 'h' / 'seed0000.png')
  assert tree_digest(stylegan_run) == before


def test_generate_keeps_existing_files_and_refuses_bad_options(stylegan_run, tmp_path):
  before = tree_digest(stylegan_run)
  out = tmp_path / 'out'
  out.mkdir()
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(out / 'seed0001.png')
  kept = (out / 'seed0001.png').read_bytes()
  with pytest.raises(UserError, match='seed0001.png already exists.*--overwrite'):
    _generate(stylegan_run, out, '--seeds=0-2')
  assert sorted(os.listdir(out)) == ['seed0001.png']  # Refused before writing anything.
  assert (out / 'seed0001.png').read_bytes() == kept
  _generate(stylegan_run, out, '--seeds=0-2', '--overwrite')
  assert _read(out / 'seed0001.png').shape == (16, 16, 3)

  with pytest.raises(UserError, match='is a file, not a folder'):
    _generate(stylegan_run, out / 'seed0001.png', '--seeds=0')
  with pytest.raises(UserError, match='unconditional'):
    _generate(stylegan_run, tmp_path / 'x', '--seeds=0', '--class=1')
  with pytest.raises(UserError, match='no checkpoint 5 .* there are 4, 6'):
    _generate(stylegan_run, tmp_path / 'x', '--seeds=0', '--step=5')
  with pytest.raises(UserError, match='config.json does not exist'):
    _generate(str(tmp_path / 'nowhere'), tmp_path / 'x', '--seeds=0')
  assert not (tmp_path / 'x').exists()
  assert tree_digest(stylegan_run) == before


def _export(workdir, output, *extra):
  return export.run(export.parse_args(['--workdir', workdir, '--output', str(output), *extra]))


def test_export_writes_the_ema_generator_that_generate_samples_from(stylegan_run, tmp_path):
  before = tree_digest(stylegan_run)
  path = tmp_path / 'g.npz'
  assert _export(stylegan_run, path, '--step=4') == 4
  # numpy alone reads it: the EMA parameters, the buffers (w_avg, noise) and the config.
  with np.load(path) as f:
    meta = json.loads(str(f['__jaxgen__']))
    assert meta['step'] == 4 and meta['config']['model']['name'] == 'stylegan2'
    assert 'ema_params/mapping/fc0/weight' in f.files
    assert 'g_buffers/mapping/w_avg' in f.files
    assert not any(k.startswith(('d_params', 'g_params', 'g_opt', 'd_opt')) for k in f.files)
  # The same images (and truncation) as from the workdir's checkpoint 4.
  for flags in ([], ['--trunc=0.5']):
    _generate(stylegan_run, tmp_path / f'w{len(flags)}', '--seeds=0-3', '--step=4', *flags)
    generate.run(generate.parse_args(['--network', str(path), '--outdir',
                                      str(tmp_path / f'n{len(flags)}'), '--seeds=0-3', *flags]))
    for s in range(4):
      name = f'seed{s:04d}.png'
      np.testing.assert_array_equal(_read(tmp_path / f'n{len(flags)}' / name),
                                    _read(tmp_path / f'w{len(flags)}' / name))
  # An existing file is kept; --overwrite replaces it (here with the newest checkpoint).
  with pytest.raises(UserError, match='g.npz already exists'):
    _export(stylegan_run, path)
  assert _export(stylegan_run, path, '--overwrite') == 6
  with pytest.raises(UserError, match='must end in .npz'):
    _export(stylegan_run, tmp_path / 'g.pkl')
  with pytest.raises(UserError, match='its folder .* does not exist'):
    _export(stylegan_run, tmp_path / 'missing' / 'g.npz')
  assert tree_digest(stylegan_run) == before


def test_a_broken_network_file_is_one_clear_error(stylegan_run, tmp_path):
  good = tmp_path / 'good.npz'
  _export(stylegan_run, good)
  with np.load(good) as f:
    arrays = {k: f[k] for k in f.files}

  def fails(name, match, **changes):
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
    with pytest.raises(UserError, match=match):
      trained.load_generator(str(path))

  fails('shape.npz', r'ema_params/mapping/fc0/weight should be \(\d+, \d+\), is shape \(3,\)',
        **{'ema_params/mapping/fc0/weight': np.zeros(3, np.float32)})
  fails('missing.npz', 'g_buffers/mapping/w_avg should be .* is missing',
        **{'g_buffers/mapping/w_avg': None})
  fails('nometa.npz', 'not a generator exported by jaxgen', __jaxgen__=None)
  meta = json.loads(str(arrays['__jaxgen__']))
  fails('format.npz', 'export format 99', __jaxgen__=np.asarray(json.dumps({**meta,
                                                                            'format': 99})))
  (tmp_path / 'garbage.npz').write_bytes(b'not a zip file')
  with pytest.raises(UserError, match='garbage.npz is not a generator exported by jaxgen'):
    trained.load_generator(str(tmp_path / 'garbage.npz'))
  with pytest.raises(UserError, match='does not exist: export one'):
    trained.load_generator(str(tmp_path / 'absent.npz'))


def test_generate_from_a_dcgan_run(dcgan_run, tmp_path):
  before = tree_digest(dcgan_run)
  _generate(dcgan_run, tmp_path, '--seeds=0-2')
  images = np.stack([_read(tmp_path / f'seed{s:04d}.png') for s in range(3)])
  restored = trained.restore(dcgan_run, need_data=False)
  z = np.concatenate([restored.recipe.latents(jax.random.PRNGKey(s), 1) for s in range(3)])
  direct = summaries.to_uint8(restored.recipe.generate(restored.state, z, np.zeros(3, np.int32)))
  assert images.shape == (3, 16, 16, 3) and np.abs(images - direct).max() <= 1
  with pytest.raises(UserError, match="--trunc: only stylegan2 runs take them, and this run is "
                     "'dcgan'"):
    _generate(dcgan_run, tmp_path / 'x', '--seeds=0', '--trunc=0.5')
  # Exported (EMA parameters and BatchNorm statistics): the same images.
  _export(dcgan_run, tmp_path / 'g.npz')
  generate.run(generate.parse_args(['--network', str(tmp_path / 'g.npz'), '--outdir',
                                    str(tmp_path / 'n'), '--seeds=0-2']))
  for s in range(3):
    np.testing.assert_array_equal(_read(tmp_path / 'n' / f'seed{s:04d}.png'), images[s])
  assert tree_digest(dcgan_run) == before


def test_options_a_model_does_not_take_are_refused():
  def args(*extra):
    return generate.parse_args(['--workdir=w', '--outdir=o', '--seeds=0', *extra])

  def config(name, use_labels):
    return ml_collections.ConfigDict({'model': {'name': name}, 'data': {'use_labels': use_labels}})

  dcgan = config('dcgan', False)
  generate.check_options(args(), dcgan, 0)
  for flag in ('--trunc=0.7', '--trunc_cutoff=2', '--noise_mode=random'):
    with pytest.raises(UserError, match=f'{flag.split("=")[0]}: only stylegan2 runs'):
      generate.check_options(args(flag), dcgan, 0)
  conditional = config('stylegan2', True)
  generate.check_options(args('--class=9'), conditional, 10)
  with pytest.raises(UserError, match=r'conditional on 10 classes: choose one with --class=0\.\.9'):
    generate.check_options(args(), conditional, 10)
  with pytest.raises(UserError, match='--class=10 is out of range'):
    generate.check_options(args('--class=10'), conditional, 10)


def test_command_line_error_is_one_line_and_exit_status_2(stylegan_run, tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'jaxgen.generate', f'--workdir={stylegan_run}', f'--outdir={tmp_path}',
       '--seeds=0-x'], cwd=REPO, capture_output=True, text=True, env=env_with_devices(1),
      timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "jaxgen: error: --seeds='0-x': '0-x' is not a seed or a range; write e.g. --seeds=0-63 or "
      "--seeds=1,5,10-12 (non-negative integers)"]
  assert os.listdir(tmp_path) == []
