"""Image-to-image pairs (jaxgen/data/tasks.py), paired sources (jaxgen/data/pairs.py), held-out
splits, the translation losses and the tiler: host-side, no training."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxgen.data import degrade, pairs, pipeline, tasks
from jaxgen.data.procedural import ProceduralSource
from jaxgen.errors import UserError
from jaxgen.objectives import translation as objective
from jaxgen import tiling


def task_config(**overrides):
  t = ml_collections.ConfigDict({
      'name': 'sr', 'crop': 0, 'scale': 4, 'noise_sigma': (25.0,), 'jpeg_quality': (),
      'mask_strokes': 4, 'mask_boxes': 2, 'direction': 'AtoB'})
  t.update(overrides)
  return t


def make_task(resolution=32, channels=3, **overrides):
  return tasks.Task(task_config(**overrides), channels, resolution)


SOURCE = ProceduralSource(32, 64, seed=0)


def test_sr_input_is_matlab_bicubic_of_the_uint8_target():
  task = make_task(name='sr', scale=4)
  pair = task.eval_example(SOURCE[3], 3)
  target = SOURCE[3]['image']
  assert pair['image'] is target or np.array_equal(pair['image'], target)
  expected = degrade.imresize(target, scale=0.25).astype(np.float32) / 127.5 - 1.0
  assert pair['input'].shape == (8, 8, 3) and pair['input'].dtype == np.float32
  np.testing.assert_array_equal(pair['input'], expected)
  # The baseline is bicubic up-scaling of that input, at the target's size.
  base = task.baseline(pair['input'][None], (32, 32))
  np.testing.assert_allclose(base[0], degrade.imresize(pair['input'], size=(32, 32)), atol=1e-6)
  # Any aspect ratio: the baseline has the (not square) target's size.
  wide = degrade.imresize(np.tile(target, (1, 2, 1)), scale=0.25).astype(np.float32) / 127.5 - 1
  base = task.baseline(wide[None], (32, 64))
  assert base.shape == (1, 32, 64, 3)
  np.testing.assert_allclose(base[0], degrade.imresize(wide, size=(32, 64)), atol=1e-6)
  assert task.display(wide[None], (32, 64)).shape == (1, 32, 64, 3)


def test_denoise_noise_has_the_configured_sigma():
  task = make_task(name='denoise', noise_sigma=(25.0,))
  rng = np.random.default_rng(0)
  diffs = []
  for i in range(16):
    pair = task.train_example(SOURCE[i], rng)
    diffs.append((pair['input'] + 1.0) * 127.5 - SOURCE[i]['image'].astype(np.float32))
  diffs = np.concatenate([d.ravel() for d in diffs])
  # 16·32·32·3 = 49,152 samples: the std's standard error is σ/√(2n) ≈ 0.08; 5 of them.
  assert abs(diffs.std() - 25.0) < 0.4 and abs(diffs.mean()) < 0.4


def test_denoise_sigma_range_and_jpeg():
  task = make_task(name='denoise', noise_sigma=(5.0, 50.0))
  rng = np.random.default_rng(1)
  stds = [((task.train_example(SOURCE[i], rng)['input'] + 1) * 127.5
           - SOURCE[i]['image']).std() for i in range(24)]
  assert 3.0 < min(stds) and max(stds) < 52.0 and max(stds) - min(stds) > 15.0
  jpeg_task = make_task(name='denoise', noise_sigma=(0.0,), jpeg_quality=(10, 10))
  pair = jpeg_task.train_example(SOURCE[0], np.random.default_rng(2))
  expected = degrade.jpeg(SOURCE[0]['image'], 10).astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(pair['input'], expected)


def test_inpaint_input_is_the_masked_image_and_the_mask():
  task = make_task(name='inpaint')
  pair = task.train_example(SOURCE[5], np.random.default_rng(3))
  x = pair['input']
  assert x.shape == (32, 32, 4) and task.input_channels == 4
  mask = x[..., 3:]
  assert set(np.unique(mask)) <= {0.0, 1.0} and 0 < mask.mean() < 0.6
  image = SOURCE[5]['image'].astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(x[..., :3], image * (1 - mask))
  # finish() keeps the known pixels and takes the holes from the output.
  output = np.full((32, 32, 3), 0.25, np.float32)
  done = task.finish(x, output)
  np.testing.assert_allclose(done, np.where(mask > 0, 0.25, image), atol=1e-7)
  # The baseline fills the holes with the mean of the known pixels.
  base = task.baseline(x[None], (32, 32))[0]
  known_mean = (image * (1 - mask)).sum(axis=(0, 1)) / (1 - mask).sum()
  np.testing.assert_allclose(base[mask[..., 0] > 0], np.broadcast_to(
      known_mean, base[mask[..., 0] > 0].shape), atol=1e-5)


def test_colorize_input_is_bt601_luma():
  task = make_task(name='colorize')
  pair = task.eval_example(SOURCE[7], 7)
  rgb = SOURCE[7]['image'].astype(np.float32)
  luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
  np.testing.assert_allclose((pair['input'][..., 0] + 1) * 127.5, luma, atol=1e-3)
  assert task.baseline(pair['input'][None], (32, 32)).shape == (1, 32, 32, 3)


def test_colorize_composes_the_inputs_luma_with_the_predicted_chroma():
  """The network's two channels are BT.601 chroma: a target's own (Cb, Cr) = ((B − Y)/1.772,
  (R − Y)/1.402) joined to its luma give it back; any chroma keeps the input's luma; zero chroma
  is the gray baseline."""
  task = make_task(name='colorize')
  assert task.output_channels == 2 and task.input_channels == 1
  rgb = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
  y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
  chroma = np.stack([(rgb[..., 2] - y) / 1.772, (rgb[..., 0] - y) / 1.402], axis=-1)
  assert np.abs(chroma).max() <= 1.0
  np.testing.assert_allclose(task.compose(y[..., None], chroma), rgb, atol=1e-6)
  other = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 2)).astype(np.float32)
  np.testing.assert_allclose(task.compose(y[..., None], other) @ np.array([0.299, 0.587, 0.114]),
                             y, atol=1e-6)
  np.testing.assert_allclose(task.compose(y[..., None], np.zeros_like(other)),
                             task.baseline(y[..., None], (8, 8)), atol=1e-6)
  assert make_task(name='denoise').output_channels == 3


def test_training_pairs_are_deterministic_and_crops_are_aligned():
  task = make_task(name='denoise', crop=16)
  a = task.train_example(SOURCE[1], np.random.default_rng(5))
  b = task.train_example(SOURCE[1], np.random.default_rng(5))
  np.testing.assert_array_equal(a['input'], b['input'])
  assert a['image'].shape == (16, 16, 3)
  # The crop is a window of the image: find it.
  image = SOURCE[1]['image']
  found = [(y, x) for y in range(17) for x in range(17)
           if np.array_equal(image[y:y + 16, x:x + 16], a['image'])]
  assert found
  # Evaluation pairs depend on the index alone.
  np.testing.assert_array_equal(task.eval_example(SOURCE[2], 2)['input'],
                                task.eval_example(SOURCE[2], 2)['input'])


def test_pipeline_with_a_task_resumes_at_any_step_exactly():
  task = make_task(name='inpaint', crop=16)
  full = pipeline.batches(SOURCE, 4, seed=3, xflip=True, transform=task.train_example,
                          num_threads=1)
  first = [next(full) for _ in range(5)]
  resumed = pipeline.batches(SOURCE, 4, seed=3, xflip=True, transform=task.train_example,
                             start_step=3, num_threads=1)
  again = next(resumed)
  for key in ('input', 'image'):
    np.testing.assert_array_equal(again[key], first[3][key])
  # Epochs re-draw the degradation: the same image appears with another mask later.
  assert not np.array_equal(first[0]['input'], first[1]['input'])


def test_paired_task_direction_swaps_the_roles():
  a = np.full((32, 32, 3), 10, np.uint8)
  b = np.full((32, 32, 3), 200, np.uint8)
  example = {'input': a, 'image': b, 'label': np.int32(0)}
  forward = make_task(name='paired').eval_example(example, 0)
  backward = make_task(name='paired', direction='BtoA').eval_example(example, 0)
  assert forward['image'][0, 0, 0] == 200 and backward['image'][0, 0, 0] == 10
  np.testing.assert_allclose(backward['input'], 200 / 127.5 - 1.0)


@pytest.mark.parametrize('overrides, message', [
    (dict(name='sr', scale=5), 'task.scale=5'),
    (dict(name='sr', crop=30), 'not divisible by task.scale=4'),
    (dict(name='sr', crop=64), 'larger than data.resolution=32'),
    (dict(name='denoise', noise_sigma=(30.0, 10.0)), 'low ≤ high'),
    (dict(name='denoise', jpeg_quality=(0, 99)), 'within 1..95'),
    (dict(name='inpaint', mask_strokes=0, mask_boxes=0), 'inpainting needs holes'),
    (dict(name='paired', direction='up'), 'task.direction'),
])
def test_bad_task_settings(overrides, message):
  with pytest.raises(UserError, match=message):
    make_task(**overrides)


def _save(path, value, size=(8, 8)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path)


def test_pairs_source_folders_and_side_by_side(tmp_path):
  for name, v in (('x.png', 50), ('y.png', 90)):
    _save(tmp_path / 'ab' / 'A' / name, v)
    _save(tmp_path / 'ab' / 'B' / name, v + 100)
  source = pairs.PairsSource(str(tmp_path / 'ab'), 8)
  assert len(source) == 2
  assert source[1]['input'][0, 0, 0] == 90 and source[1]['image'][0, 0, 0] == 190
  side = np.zeros((8, 16, 3), np.uint8)
  side[:, :8] = 30
  side[:, 8:] = 220
  (tmp_path / 'sbs').mkdir()
  Image.fromarray(side).save(tmp_path / 'sbs' / 'p.png')
  source = pairs.PairsSource(str(tmp_path / 'sbs'), 8)
  assert source[0]['input'].max() == 30 and source[0]['image'].min() == 220


def test_embedded_pairs_are_the_cyclegan_domains_paired():
  """pairs:embedded: input and target are one composition in domain A's and in domain B's
  palette — exactly the CycleGAN embedded data's A image and its true translation f(a)."""
  from jaxgen.data import unpaired
  config = dict(resolution=32, channels=3, num_images=40, seed=0, classes=(), use_labels=False)
  source = pipeline.create_source(ml_collections.ConfigDict(dict(config,
                                                                 source='pairs:embedded')))
  two_domains = unpaired.embedded(32, 40, 0, 3)
  assert len(source) == 40 and source.name == 'pairs:embedded'
  for index in (0, 1, 3, 8, 13):
    example = source[index]
    np.testing.assert_array_equal(example['input'], two_domains.domain_a[index]['image'])
    np.testing.assert_array_equal(example['image'], two_domains.truth_a[index]['image'])
    # Teal ground, orange shape in A; parchment ground, navy shape in B.
    assert np.abs(example['input'].astype(int) - example['image']).mean() > 50
  gray = pipeline.create_source(ml_collections.ConfigDict(dict(
      config, source='pairs:embedded', resolution=16, channels=1)))
  assert gray[2]['input'].shape == gray[2]['image'].shape == (16, 16, 1)


def test_pairs_source_refuses_unreadable_files(tmp_path):
  _save(tmp_path / 'A' / 'a.png', 1)
  (tmp_path / 'B').mkdir()
  (tmp_path / 'B' / 'a.png').write_bytes(b'not an image')
  with pytest.raises(UserError, match='1 unreadable image'):
    pairs.PairsSource(str(tmp_path), 8)


def _div2k_examples(count, scale, seed=0):
  """Stand-ins for tfds div2k examples: HR images of several sizes (not multiples of the
  scale) and LR = MATLAB bicubic of HR's top-left multiple of the scale, as DIV2K's."""
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(count):
    h, w = 44 + 3 * i, 50 + 5 * i
    high = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    low = degrade.imresize(high[:h // scale * scale, :w // scale * scale], scale=1 / scale)
    examples.append({'hr': high, 'lr': low})
  return examples


def test_div2k_pairs_give_the_datasets_low_resolution_inputs(caplog):
  """tfds:div2k/bicubic_x4 (mocked: no download): the centre windows of HR and of LR, aligned
  on the LR grid, neither resampled; task sr takes the dataset's LR image as its input (cropped
  in step with the target), not a degradation of its own."""
  import tensorflow_datasets as tfds
  examples = _div2k_examples(3, 4)
  examples.append(_div2k_examples(1, 4, seed=1)[0])
  examples[3] = {'hr': examples[3]['hr'][:20, :24], 'lr': examples[3]['lr'][:5, :6]}
  data_config = ml_collections.ConfigDict({
      'source': 'tfds:div2k/bicubic_x4:train', 'resolution': 32, 'channels': 3,
      'use_labels': False, 'tfds_data_dir': '', 'tfds_download': True})
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kwargs: examples):
    source = pipeline.create_source(data_config)
    assert len(source) == 4 and source.scale == 4
    pair = source[2]
    # A pair smaller than data.resolution is resized, both images, with a warning.
    small = source[3]
    assert small['input'].shape == (8, 8, 3) and small['image'].shape == (32, 32, 3)
    assert 'smaller than data.resolution=32' in caplog.text
    wrong = ml_collections.ConfigDict(dict(data_config, resolution=30))
    with pytest.raises(UserError, match='data.resolution=30 is not divisible by the ×4'):
      pipeline.create_source(wrong)
  high, low = examples[2]['hr'], examples[2]['lr']  # HR 50×60, LR 12×15.
  top, left = (12 - 8) // 2, (15 - 8) // 2
  np.testing.assert_array_equal(pair['input'], low[top:top + 8, left:left + 8])
  np.testing.assert_array_equal(pair['image'], high[4 * top:4 * top + 32, 4 * left:4 * left + 32])
  task = make_task(name='sr', scale=4, crop=16)
  train = task.train_example(pair, np.random.default_rng(0))
  assert train['image'].shape == (16, 16, 3) and train['input'].shape == (4, 4, 3)
  found = [(y, x) for y in range(0, 17, 4) for x in range(0, 17, 4)
           if np.array_equal(pair['image'][y:y + 16, x:x + 16], train['image'])]
  assert len(found) == 1
  y, x = found[0]
  np.testing.assert_array_equal(train['input'], pair['input'][y // 4:y // 4 + 4, x // 4:x // 4 + 4]
                                .astype(np.float32) / 127.5 - 1)
  held = task.eval_example(pair, 0)
  np.testing.assert_array_equal(held['image'], pair['image'][8:24, 8:24])
  np.testing.assert_array_equal(held['input'],
                                pair['input'][2:6, 2:6].astype(np.float32) / 127.5 - 1)
  with pytest.raises(UserError, match='set task.scale to the dataset'):
    make_task(name='sr', scale=2).eval_example(pair, 0)


def test_holdout_is_a_fixed_disjoint_split():
  config = ml_collections.ConfigDict({
      'data': {'source': 'embedded', 'resolution': 16, 'channels': 3, 'num_images': 100,
               'seed': 0, 'holdout': 10},
      'eval': {'source': ''}})
  train, held = pipeline.create_sources(config)
  assert (len(train), len(held)) == (90, 10)
  assert not set(train.indices) & set(held.indices)
  again = pipeline.create_sources(config)[1]
  np.testing.assert_array_equal(again.indices, held.indices)
  np.testing.assert_array_equal(held[0]['image'],
                                ProceduralSource(16, 100)[held.indices[0]]['image'])


# ------------------------------------------------------------------------------------------------
# Losses against direct formulas.


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_gan_losses_match_their_formulas():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(3, 4, 4, 1)), rng.normal(size=(3, 4, 4, 1))
  bce = lambda p, t: -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
  np.testing.assert_allclose(objective.d_loss('vanilla', real, fake),
                             0.5 * (bce(_sigmoid(real), 1) + bce(_sigmoid(fake), 0)), rtol=1e-5)
  np.testing.assert_allclose(objective.g_loss('vanilla', None, fake), bce(_sigmoid(fake), 1),
                             rtol=1e-5)
  np.testing.assert_allclose(objective.d_loss('lsgan', real, fake),
                             0.5 * (np.mean((real - 1) ** 2) + np.mean(fake ** 2)), rtol=1e-5)
  np.testing.assert_allclose(objective.g_loss('lsgan', None, fake), np.mean((fake - 1) ** 2),
                             rtol=1e-5)
  rel_r, rel_f = real - fake.mean(), fake - real.mean()
  np.testing.assert_allclose(objective.d_loss('ragan', real, fake),
                             0.5 * (bce(_sigmoid(rel_r), 1) + bce(_sigmoid(rel_f), 0)), rtol=1e-5)
  np.testing.assert_allclose(objective.g_loss('ragan', real, fake),
                             0.5 * (bce(_sigmoid(rel_r), 0) + bce(_sigmoid(rel_f), 1)), rtol=1e-5)
  np.testing.assert_allclose(objective.pixel_loss('l1', real, fake), np.mean(np.abs(real - fake)),
                             rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Tiling.


def _box3(batch):
  """A local network: 3×3 mean filter with edge padding (receptive field 3)."""
  padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  h, w = batch.shape[1:3]
  return sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9


def test_one_tile_is_one_pass_and_seams_vanish_with_enough_overlap():
  rng = np.random.default_rng(0)
  image = rng.normal(size=(32, 32, 3)).astype(np.float32)
  calls = []

  def fn(batch):
    calls.append(batch.shape)
    return _box3(batch)

  # A picture of exactly one tile: one pass, the same values.
  np.testing.assert_array_equal(tiling.translate_tiled(fn, image, 32, 8, batch_size=2),
                                _box3(image[None])[0])
  assert calls == [(2, 32, 32, 3)]
  # A larger picture: away from the picture's own edge, a tile's border pixels are blended with
  # a neighbour whose output there is exact; with overlap ≥ 2 (one pixel of padding each side)
  # every blended pixel is exact except at tile borders' padding, which get weight ≤ 1/16.
  big = rng.normal(size=(70, 53, 3)).astype(np.float32)
  whole = _box3(big[None])[0]
  tiled = tiling.translate_tiled(_box3, big, 16, 8, batch_size=5)
  assert tiled.shape == whole.shape
  # A tile-border pixel (edge padding) is off by up to ~the signal; its ramp weight is
  # 0.5/8 = 1/16 of the blend, so seams stay under ~1/8 of the signal's range at most.
  err = np.abs(tiled - whole)
  assert err.max() < 0.2 * np.abs(big).max()
  assert err.mean() < 1e-2
  # Output size for super-resolution: nearest up-scaling ×2 as the network.
  up = lambda b: b.repeat(2, axis=1).repeat(2, axis=2)
  out = tiling.translate_tiled(up, big, 16, 4, scale=2)
  np.testing.assert_allclose(out, up(big[None])[0], atol=1e-6)


def test_a_picture_smaller_than_a_tile_is_padded_then_cropped():
  image = np.arange(5 * 7 * 1, dtype=np.float32).reshape(5, 7, 1)
  out = tiling.translate_tiled(lambda b: b * 2, image, 16, 4)
  np.testing.assert_array_equal(out, image * 2)
