"""The translation recipe (pix2pix, super-resolution) on the one loop: presets' official networks,
the shared tiny runs' logs and grids, exact resume after kill -9, and `jaxgen.translate` /
`evaluate` / `export` / `generate` on them."""

import collections
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import pix2pix
import superres
from conftest import (PIX2PIX_TINY, REPO, SUPERRES_TINY, env_with_devices,
                      kill_after_checkpoint, read_scalars, run_main, with_overrides)
from jaxgen.errors import UserError
from jaxgen.recipes.translation import Translation


def _counts(config):
  recipe = Translation(config, num_classes=0)
  return recipe.param_count(jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0)))


def test_presets_build_the_official_networks():
  # pix2pix facades: unet_256 and the 70×70 PatchGAN on (A, B) = 6 channels, as the official
  # `--model pix2pix` (junyanz/pytorch-CycleGAN-and-pix2pix).
  assert _counts(pix2pix.get_config('facades')) == {'generator': 54_413_955,
                                                    'discriminator': 2_768_705}
  # Sampled as the official test.py does without --eval: each image's own batch statistics.
  assert pix2pix.get_config('facades').sampling.norm == 'batch'
  # BasicSR's MSRResNet ×4 and ESRGAN's RRDBNet ×4 (RRDB_PSNR_x4 / RRDB_ESRGAN_x4).
  assert _counts(superres.get_config('msrresnet')) == {'generator': 1_517_571}
  assert _counts(superres.get_config('rrdb')) == {'generator': 16_697_987}


def test_colorize_predicts_chroma_and_keeps_the_luma():
  """pix2pix colourises L → ab: the generator has two output channels, and its images (in
  training, for D and the loss, and when sampled) carry the input's luma exactly; one training
  step moves them away from gray."""
  config = with_overrides(pix2pix.get_config('colorize'), {  # With pix2pix's conditional D.
      **PIX2PIX_TINY, 'task.name': 'colorize', 'model.discriminator': 'patchgan',
      'objective.gan_loss': 'vanilla'})
  recipe = Translation(config, num_classes=0)
  state = recipe.init_state(jax.random.PRNGKey(0))
  assert state.g_params['up0_conv']['kernel'].shape[-1] == 2  # The outermost layer.
  luma = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
  target = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  batch = {'input': luma, 'image': target}
  state, _ = jax.jit(recipe.train_step)(state, batch)
  for norm in ('running', 'batch'):
    images = np.asarray(recipe.generate(state, luma, norm=norm))
    assert images.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(images @ np.array([0.299, 0.587, 0.114]), luma[..., 0], atol=1e-5)
    assert np.abs(images - luma).max() > 1e-3  # Not gray.
  fake, _ = recipe._g_apply({'params': state.g_params, 'batch_stats': state.g_batch_stats}, luma,
                            train=True, rng=jax.random.PRNGKey(2))
  np.testing.assert_allclose(np.asarray(fake) @ np.array([0.299, 0.587, 0.114]), luma[..., 0],
                             atol=1e-5)


def test_esrgan_without_vgg_weights_is_one_line(tmp_path, monkeypatch):
  """Offline with an empty cache: the perceptual config stops before anything is built, with
  one line naming the weights file."""
  import urllib.error
  from jaxgen import pretrained

  def offline(*args, **kwargs):
    raise urllib.error.URLError('network unreachable')

  monkeypatch.setattr(pretrained.urllib.request, 'urlopen', offline)
  monkeypatch.setenv('JAXGEN_CACHE', str(tmp_path / 'empty-cache'))
  monkeypatch.delenv('JAXGEN_VGG19_WEIGHTS', raising=False)
  recipe = Translation(superres.get_config('esrgan'), num_classes=0)  # Sampling needs no VGG.
  with pytest.raises(UserError, match='vgg19-dcbb9e9d.pth') as error:
    recipe.prepare_training()
  assert '\n' not in str(error.value).strip()


def run_cli(module, *args, check=True):
  result = subprocess.run([sys.executable, '-m', f'jaxgen.{module}', *args], cwd=REPO,
                          capture_output=True, text=True, env=env_with_devices(1), timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def one_error_line(result):
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith('jaxgen: error:')]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


# ------------------------------------------------------------------------------------------------
# The shared runs.


def test_pix2pix_run_logs_losses_scores_baseline_and_triplet_grids(pix2pix_run):
  scalars = read_scalars(pix2pix_run)
  for tag in ('loss/d', 'loss/gan', 'loss/pixel', 'loss/g', 'grad_norm/g', 'grad_norm/d'):
    assert set(scalars[tag]) == set(range(1, 7)), tag
    assert all(np.isfinite(v) for v in scalars[tag].values()), tag
  assert set(scalars['eval/psnr']) == {3, 6}
  # The baseline (mean fill) is scored on the same pairs every time.
  base = scalars['eval/baseline_psnr']
  assert base[3] == base[6] and 5 < base[3] < 60
  assert 0 < scalars['eval/ssim'][6] <= 1
  # lr: constant for the first half (decay_start 0.5 of 6 steps), then linear to 0. The step
  # logged as s is update s − 1: counts 0..3 at the config's lr, then 2/3 and 1/3 of it.
  lr, base_lr = scalars['lr'], pix2pix.get_config().optimizer.lr
  assert lr[1] == lr[4] == pytest.approx(base_lr)
  assert (lr[5], lr[6]) == (pytest.approx(base_lr * 2 / 3), pytest.approx(base_lr / 3))
  grid = np.asarray(Image.open(os.path.join(pix2pix_run, 'samples', '00000006.png')))
  # 4 panels of input | output | target (32 × 96 each) in a 2 × 2 grid.
  assert grid.shape == (64, 192, 3)
  targets = grid[:32, 64:96]
  assert targets.std() > 0
  assert set(os.listdir(os.path.join(pix2pix_run, 'checkpoints'))) >= {'4', '6'}


def test_pix2pix_kill_9_then_rerun_resumes_exactly(pix2pix_run, tmp_path):
  """Killed right after checkpoint 4 and run again: the later steps' losses (the same crops,
  masks, flips and dropout; restored batch-norm statistics and both optimisers) and the final
  PSNR equal the uninterrupted run's."""
  workdir = str(tmp_path / 'killed')
  kill_after_checkpoint(workdir, 4, config='configs/pix2pix.py')
  result = run_main(workdir, config='configs/pix2pix.py')
  resumed_from = int(result.stderr.split('Resuming at step ')[1].split()[0])
  assert 4 <= resumed_from < 6
  expected, got = read_scalars(pix2pix_run), read_scalars(workdir)
  for tag in ('loss/d', 'loss/g', 'loss/pixel', 'grad_norm/g'):
    for step in range(resumed_from + 1, 7):
      assert got[tag][step] == pytest.approx(expected[tag][step], rel=1e-5, abs=1e-7), (tag, step)
  assert got['eval/psnr'][6] == pytest.approx(expected['eval/psnr'][6], rel=1e-5)


def test_evaluate_rescores_the_logged_figures(superres_run, tmp_path):
  out = tmp_path / 'e.json'
  run_cli('evaluate', f'--workdir={superres_run}', '--metrics=psnr,psnr_y,ssim_y',
          f'--output={out}')
  figures = json.loads(out.read_text())['results']
  logged = read_scalars(superres_run)
  for name in ('psnr', 'psnr_y', 'ssim_y', 'baseline_psnr_y'):
    assert figures[name] == pytest.approx(logged[f'eval/{name}'][6], rel=1e-5), name
  bad = run_cli('evaluate', f'--workdir={superres_run}', '--metrics=fid50k', check=False)
  assert 'choose from psnr' in one_error_line(bad)


def test_generate_refuses_a_translation_run(superres_run, tmp_path):
  result = run_cli('generate', f'--workdir={superres_run}', f'--outdir={tmp_path}',
                   '--seeds=0-3', check=False)
  assert 'jaxgen.translate' in one_error_line(result)
  assert not os.listdir(tmp_path)


def _picture(path, h, w, seed=0):
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_translate_super_resolves_any_size_and_keeps_files(superres_run, tmp_path):
  pictures = tmp_path / 'in'
  (pictures / 'sub').mkdir(parents=True)
  _picture(pictures / 'a.png', 16, 16)
  _picture(pictures / 'sub' / 'b.jpg', 21, 13, seed=1)
  (pictures / 'broken.png').write_bytes(b'not a picture')
  out = tmp_path / 'out'
  result = run_cli('translate', f'--workdir={superres_run}', f'--input={pictures}',
                   f'--outdir={out}', '--tile=8', '--overlap=4')
  assert 'Skipped' in result.stderr and 'broken.png' in result.stderr
  a = np.asarray(Image.open(out / 'a.png'))
  b = np.asarray(Image.open(out / 'sub' / 'b.png'))
  assert a.shape == (64, 64, 3) and b.shape == (84, 52, 3)
  # One tile of the whole picture is one generator pass: the same bytes as --tile=16.
  single = tmp_path / 'single'
  run_cli('translate', f'--workdir={superres_run}', f'--input={pictures / "a.png"}',
          f'--outdir={single}', '--tile=16')
  whole = np.asarray(Image.open(single / 'a.png')).astype(np.int32)
  # Tiles of 8 with 4 overlap vs one pass: an SRResNet of 1 block sees ±4 LR pixels (4 convs
  # of 3×3 at LR plus the up-sampling convs), so blended seams differ only by tile-edge padding,
  # down-weighted by the ramps; measured max 6, mean 0.4 levels.
  diff = np.abs(a.astype(np.int32) - whole)
  assert diff.mean() < 2.0 and diff.max() < 40
  # Existing outputs are kept without --overwrite, and nothing is written.
  before = (out / 'a.png').read_bytes()
  again = run_cli('translate', f'--workdir={superres_run}', f'--input={pictures}',
                  f'--outdir={out}', check=False)
  assert 'already exists' in one_error_line(again)
  assert (out / 'a.png').read_bytes() == before
  # An exported network translates the same.
  network = tmp_path / 'g.npz'
  run_cli('export', f'--workdir={superres_run}', f'--output={network}')
  exported = tmp_path / 'exported'
  run_cli('translate', f'--network={network}', f'--input={pictures / "a.png"}',
          f'--outdir={exported}', '--tile=16')
  np.testing.assert_array_equal(np.asarray(Image.open(exported / 'a.png')), whole)


def test_translate_inpaints_with_a_mask_or_a_colour_key(pix2pix_run, tmp_path):
  picture = tmp_path / 'photo.png'
  image = np.full((32, 40, 3), 120, np.uint8)
  image[4:8, 4:12] = (255, 0, 255)  # The colour key marks the holes.
  Image.fromarray(image).save(picture)
  missing = run_cli('translate', f'--workdir={pix2pix_run}', f'--input={picture}',
                    f'--outdir={tmp_path / "o1"}', check=False)
  assert '--mask' in one_error_line(missing)
  assert not (tmp_path / 'o1').exists()
  run_cli('translate', f'--workdir={pix2pix_run}', f'--input={picture}',
          f'--outdir={tmp_path / "o2"}', '--mask_color=#FF00FF', '--tile=32')
  keyed = np.asarray(Image.open(tmp_path / 'o2' / 'photo.png'))
  assert keyed.shape == image.shape
  hole = np.zeros(image.shape[:2], bool)
  hole[4:8, 4:12] = True
  # Known pixels are kept exactly; the holes are the generator's.
  np.testing.assert_array_equal(keyed[~hole], image[~hole])
  mask = tmp_path / 'mask.png'
  Image.fromarray((hole * 255).astype(np.uint8)).save(mask)
  run_cli('translate', f'--workdir={pix2pix_run}', f'--input={picture}',
          f'--outdir={tmp_path / "o3"}', f'--mask={mask}', '--tile=32')
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'o3' / 'photo.png')), keyed)


def test_translate_bad_input_is_one_line(superres_run, tmp_path):
  result = run_cli('translate', f'--workdir={superres_run}', f'--input={tmp_path / "nope.png"}',
                   f'--outdir={tmp_path / "out"}', check=False)
  assert 'does not exist' in one_error_line(result)
  _picture(tmp_path / 'x.png', 8, 8)
  result = run_cli('translate', f'--workdir={superres_run}', f'--input={tmp_path / "x.png"}',
                   f'--outdir={tmp_path / "out"}', '--mask_color=#00FF00', check=False)
  assert 'for inpainting' in one_error_line(result)
  assert not (tmp_path / 'out').exists()


def test_esrgan_losses_train_on_a_tiny_model(tmp_path):
  """The ESRGAN objective — relativistic GAN on an unconditional D, L1 and a VGG perceptual
  term (weights from an explicit converted file: random, not ImageNet) — gives finite losses
  and moves both networks; the perceptual term is zero for a perfect output."""
  from jaxgen import pretrained
  from jaxgen.models import vgg

  rng = np.random.default_rng(0)
  flat = {k: (rng.normal(size=s) * (0.05 if k.endswith('kernel') else 0.0)).astype(np.float32)
          for k, s in vgg.param_shapes(16).items()}
  weights = tmp_path / 'vgg16.npz'
  pretrained.save_converted(vgg.VGG16_WEIGHTS, flat, str(weights))
  config = with_overrides(superres.get_config(), {
      **{k: v for k, v in SUPERRES_TINY.items() if not k.startswith(('eval.', 'log.',
                                                                       'checkpoint.'))},
      'model.discriminator': 'patchgan', 'model.d_conditional': False, 'model.n_layers': 2,
      'model.ndf': 4, 'objective.gan_loss': 'ragan', 'objective.gan_weight': 5e-3,
      'objective.pixel_weight': 1e-2, 'objective.perceptual_weight': 1.0,
      'objective.perceptual_network': 'vgg16', 'objective.perceptual_layers': ('conv1_2',),
      'objective.vgg_weights': str(weights)})
  recipe = Translation(config, num_classes=0)
  recipe.prepare_training()
  state = recipe.init_state(jax.random.PRNGKey(0))
  target = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  batch = {'input': rng.normal(size=(4, 8, 8, 3)).astype(np.float32), 'image': target,
           'label': np.zeros(4, np.int32)}
  new, metrics = jax.jit(recipe.train_step)(state, batch)
  for key in ('loss/d', 'loss/gan', 'loss/pixel', 'loss/perceptual', 'loss/g'):
    assert np.isfinite(float(metrics[key])), key
  assert float(metrics['loss/perceptual']) > 0
  moved = lambda a, b: any(np.any(np.asarray(x) != np.asarray(y))
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert moved(state.g_params, new.g_params) and moved(state.d_params, new.d_params)
  images = target.astype(np.float32) / 127.5 - 1
  assert float(objective_perceptual(recipe, images, images)) == 0.0


def objective_perceptual(recipe, output, target):
  from jaxgen.objectives import translation as objective
  return objective.perceptual_loss(recipe.perceptual, output, target)


def test_bench_reports_training_and_translation_speed(tmp_path):
  out = tmp_path / 'bench.json'
  overrides = [f'--config.{k}={v}' for k, v in PIX2PIX_TINY.items()]
  run_cli('bench', '--config=configs/pix2pix.py', *overrides, '--steps=2', '--warmup=1',
          '--sample_batches=1', f'--output={out}')
  figures = json.loads(out.read_text())
  assert figures['finite'] and figures['images_per_s'] > 0
  assert figures['sample_evaluations'] == 1 and figures['sample_images_per_s'] > 0
  assert figures['sample_gflop_per_image'] > 0


def test_paired_evaluator_matches_direct_computations():
  """PSNR, PSNR-Y, FID (with a stand-in feature net) and SWD of the outputs and of the baseline,
  as the evaluator reports them, against the same formulas applied here to its images."""
  from test_evaluation import _FeatureNet
  from jaxgen import data, evaluation, parallel
  from jaxgen.data import degrade
  from jaxgen.metrics import fid as fid_lib
  from jaxgen.metrics.swd import SlicedWassersteinDistance

  config = with_overrides(superres.get_config(), {
      **SUPERRES_TINY,
      'eval.metrics': ('psnr', 'psnr_y', 'fid', 'swd'), 'eval.num_images': 8,
      'data.resolution': 48, 'task.crop': 32})  # Pairs are the centre 32² of 48² images.
  train_source, eval_source = data.create_sources(config)
  recipe = Translation(config, num_classes=0)
  mesh = parallel.create_mesh()
  state = recipe.init_state(jax.random.PRNGKey(0))
  net = _FeatureNet()
  evaluator = evaluation.create_evaluator(config, recipe, eval_source, mesh, inception=net)
  assert isinstance(evaluator, evaluation.PairedEvaluator)
  results = evaluator(state)
  outputs, targets = evaluator.outputs_uint8(state), evaluator.targets
  assert outputs.shape == targets.shape == (8, 32, 32, 3)

  def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2, axis=(1, 2, 3))
    return np.mean(10 * np.log10(255.0 ** 2 / mse))

  def fid(a, b):
    fa, fb = net(a)[0], net(b)[0]
    return fid_lib.frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0),
                                    np.cov(fb, rowvar=False))

  y = lambda x: degrade.rgb_to_ycbcr_y(x)[:, 4:-4, 4:-4]
  for prefix, images in (('', outputs), ('baseline_', evaluator.baseline)):
    assert results[f'{prefix}psnr'] == pytest.approx(psnr(images, targets), rel=1e-5)
    assert results[f'{prefix}psnr_y'] == pytest.approx(psnr(y(images), y(targets)), rel=1e-5)
    assert results[f'{prefix}fid'] == pytest.approx(fid(images, targets), rel=1e-4)
    swd = SlicedWassersteinDistance(targets, seed=config.seed)(images)
    assert {k: results[prefix + k] for k in swd} == pytest.approx(swd, rel=1e-5)
  # The baseline is bicubic up-scaling of the held-out inputs.
  np.testing.assert_array_equal(
      evaluator.baseline[0],
      np.clip(np.round((degrade.imresize(evaluator.inputs[0], size=(32, 32)) + 1) * 127.5),
              0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------
# model.init_from: a run that starts from another run's generator (ESRGAN from the PSNR model).


def test_init_from_starts_with_the_other_runs_generator_and_trains(superres_run, tmp_path):
  from jaxgen import trained
  workdir = str(tmp_path / 'fine_tuned')
  result = run_main(workdir, config='configs/superres.py', **{
      'model.init_from': superres_run, 'train.num_steps': 2, 'eval.at_start': True})
  assert 'Starting from the g_params, g_batch_stats, ema_params of' in result.stderr
  source = trained.restore(superres_run, need_data=False)  # Its newest checkpoint, step 6.
  start = trained.restore(workdir, step=0, need_data=False)
  end = trained.restore(workdir, step=2, need_data=False)
  leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]
  for field in ('g_params', 'ema_params'):
    for a, b in zip(leaves(getattr(start.state, field)), leaves(getattr(source.state, field))):
      np.testing.assert_array_equal(a, b)
  # A fresh run of the same seed starts from the initialisation, which 6 steps have left.
  fresh = jax.jit(Translation(start.config, num_classes=0).init_state)(jax.random.PRNGKey(0))
  assert any(np.any(a != b) for a, b in zip(leaves(start.state.g_params),
                                            leaves(fresh.g_params)))
  # The optimiser starts afresh (Adam's step count 0), then trains the loaded weights.
  assert {int(x) for x in leaves(start.state.g_opt_state) if x.dtype == np.int32} == {0}
  assert any(np.any(a != b) for a, b in zip(leaves(end.state.g_params),
                                            leaves(start.state.g_params)))
  # A checkpoint folder names one step of a run; resuming never reads the other run again.
  config = with_overrides(superres.get_config(), {**SUPERRES_TINY, 'model.init_from': os.path.join(
      superres_run, 'checkpoints', '4')})
  from jaxgen import parallel
  init = trained.read_init_from(config, Translation(config, 0), parallel.create_mesh(),
                                str(tmp_path / 'new'))
  at_4 = trained.restore(superres_run, step=4, need_data=False)
  for a, b in zip(leaves(init['g_params']), leaves(at_4.state.g_params)):
    np.testing.assert_array_equal(a, b)
  assert trained.read_init_from(config, Translation(config, 0), parallel.create_mesh(),
                                workdir) is None


def test_init_from_a_run_of_another_recipe_is_refused(dcgan_run, tmp_path):
  from jaxgen import parallel, trained
  config = with_overrides(superres.get_config(), {**SUPERRES_TINY, 'model.init_from': dcgan_run})
  with pytest.raises(UserError, match='is a DCGAN run and this is a Translation run: start from '
                     'a run of the same recipe'):
    trained.read_init_from(config, Translation(config, 0), parallel.create_mesh(),
                           str(tmp_path / 'new'))
  assert not (tmp_path / 'new').exists()


# ------------------------------------------------------------------------------------------------
# sampling.norm: batch norm's statistics at sampling time.


def _with_unit_affine_batch_norm(tree):
  """G's parameters with every batch norm's scale 1 and shift 0."""
  def fix(path, leaf):
    names = [getattr(p, 'key', '') for p in path]
    if any(n.endswith('_norm') for n in names):
      return jax.numpy.ones_like(leaf) if names[-1] == 'scale' else jax.numpy.zeros_like(leaf)
    return leaf
  return jax.tree_util.tree_map_with_path(fix, tree)


def test_sampling_norm_batch_normalises_each_image_by_its_own_statistics():
  """norm='batch' (pix2pix's test.py without --eval, dropout off): with batch norm's affine at
  identity, the U-Net equals the same U-Net with parameter-free instance norm (each image's own
  mean and variance over H, W, computed directly) and no dropout; an image's output does not
  depend on the others in its batch; 'running' differs. The run's sampling.norm is the
  default."""
  from jaxgen.models import pix2pix as nets
  # Six levels at 64²: level 4 of the decoder has dropout (pix2pix's U-Net: levels 4 … n − 2).
  # Denoising: the output is the generator's alone (inpainting would keep the known pixels).
  tiny = {**PIX2PIX_TINY, 'task.name': 'denoise', 'data.resolution': 64, 'model.num_downs': 6}
  config = with_overrides(pix2pix.get_config(), tiny)
  recipe = Translation(config, num_classes=0)
  assert recipe.norm == 'running' and recipe.sampling_options == ('norm',)
  assert recipe.generator.use_dropout
  x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype(np.float32)
  # What `generate` reads of a train state (as an exported generator holds it): G alone.
  g_vars = jax.jit(lambda key: recipe.generator.init(key, x, train=False))(jax.random.key(0))
  state = collections.namedtuple('Generator', 'ema_params g_batch_stats')(
      _with_unit_affine_batch_norm(g_vars['params']), g_vars['batch_stats'])
  generate = jax.jit(recipe.generate, static_argnames='norm')
  own = np.asarray(generate(state, x, norm='batch'))
  running = np.asarray(generate(state, x, norm='running'))
  instance = nets.UNetGenerator(out_channels=3, num_downs=6, ngf=4, norm='instance')
  biases = jax.eval_shape(instance.init, jax.random.key(0), x, train=False)['params']
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), biases)
  params = jax.tree_util.tree_map_with_path(
      lambda path, z: state.ema_params.get(path[0].key, {}).get(path[1].key, z), params)
  expected = np.asarray(jax.jit(instance.apply, static_argnames='train')({'params': params}, x,
                                                                          train=False))
  # Measured: equal, bit for bit (the same operations); 1e-6 (of outputs in (−1, 1)) leaves room
  # for another fusion order, while using other statistics moves outputs by 0.24 here.
  np.testing.assert_allclose(own, expected, atol=1e-6)
  # Alone or in a batch of 3: measured 1.3e-7 (the batch's convolutions are tiled differently).
  np.testing.assert_allclose(own[:1], np.asarray(generate(state, x[:1], norm='batch')), atol=1e-6)
  assert np.abs(own - running).max() > 0.05
  batch_config = with_overrides(pix2pix.get_config(), {**tiny, 'sampling.norm': 'batch'})
  np.testing.assert_array_equal(
      np.asarray(jax.jit(Translation(batch_config, num_classes=0).generate)(state, x)), own)
  with pytest.raises(UserError, match="sampling.norm='instance'"):
    recipe.generate(state, x, norm='instance')
  with pytest.raises(UserError, match='sampling.sampler is not a setting of translation runs'):
    Translation(with_overrides(pix2pix.get_config(), {'sampling.sampler': 'heun'}), 0)
