"""Input pipeline: the embedded, folder and tfds sources; order, sharding by process, resume."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxgen.data import batches, create_source, procedural
from jaxgen.data.folder import FolderSource
from jaxgen.errors import UserError

from conftest import tiny_config


def test_procedural_is_deterministic_and_labelled():
  a, la = procedural.render(123, 32, seed=0)
  b, lb = procedural.render(123, 32, seed=0)
  c, _ = procedural.render(123, 32, seed=1)
  assert a.shape == (32, 32, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert la == lb == 123 % procedural.NUM_CLASSES
  assert np.abs(a.astype(int) - c.astype(int)).mean() > 5  # Another seed, another image.


@pytest.mark.parametrize('resolution', [16, 64, 256])
def test_procedural_resolutions_and_variety(resolution):
  images = np.stack([procedural.render(i, resolution)[0] for i in range(20)])
  assert images.shape == (20, resolution, resolution, 3)
  # Every class draws something: no image is flat, and images differ from each other.
  assert (images.reshape(20, -1, 3).std(axis=1).max(axis=1) > 10).all()
  assert np.abs(np.diff(images.astype(int), axis=0)).mean() > 20


def _high_frequency_share(image):
  """Share of a grayscale image's AC power at radial frequencies above 6 of 8 cycles/image."""
  gray = image.astype(np.float64).mean(axis=-1)
  power = np.abs(np.fft.fft2(gray - gray.mean())) ** 2
  k = np.fft.fftfreq(gray.shape[0]) * gray.shape[0]
  return power[np.hypot(*np.meshgrid(k, k)) > 6].sum() / power.sum()


@pytest.mark.parametrize('label', [3, 4, 5, 9])  # stripes, rings, checkers, dot grid
def test_procedural_patterns_do_not_alias_at_16(label):
  # Without the 3-pixel period floor, patterns of 1.6–2.4 pixels put up to 88–98 % of an
  # image's power in the top frequencies (aliased moiré); with it, at most 39 % over these 200.
  shares = [_high_frequency_share(procedural.render(i, 16)[0]) for i in range(label, 2000, 10)]
  assert max(shares) < 0.45, max(shares)


def test_procedural_period_floor_leaves_32_and_up_unchanged():
  # tests/data/procedural_periodic.npz: these images as drawn before the floor existed.
  fixture = np.load(os.path.join(os.path.dirname(__file__), 'data', 'procedural_periodic.npz'))
  for name, resolution, count in (('res32', 32, 10), ('res64', 64, 2)):
    indices = [c + 10 * k for c in (3, 4, 5, 9) for k in range(count)]
    images = np.stack([procedural.render(i, resolution)[0] for i in indices])
    # ±1: another CPU's libm may round a coverage value to the neighbouring uint8.
    np.testing.assert_allclose(images.astype(int), fixture[name].astype(int), atol=1)


def _axis_aligned_fill(image):
  """Share of the foreground's bounding box that the foreground fills (1 for an upright box), in
  an image drawn white on black (whose background tilt stays under 0.3 · 255)."""
  foreground = image.mean(-1) > 127.5
  rows, cols = np.nonzero(foreground)
  box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
  return foreground.sum() / box


def test_procedural_rotation_narrows_orientations_and_keeps_the_rest():
  squares = range(1, 400, 10)  # Label 1, at 64² so that an edge's angle shows.
  white_on_black = ((0, 0, 0), (1, 1, 1))
  upright = [procedural.render(i, 64, palette=white_on_black, rotation=0.0) for i in squares]
  rotated = [procedural.render(i, 64, palette=white_on_black) for i in squares]
  assert [l for _, l in upright] == [l for _, l in rotated] == [1] * 40
  # An upright square fills its bounding box but for its anti-aliased rim.
  fills = [_axis_aligned_fill(im) for im, _ in upright]
  assert min(fills) > 0.9, fills  # 0.95 at the least (the rim), 0.998 on average.
  # A square at θ fills 1/(1 + sin 2θ) of its box, 2/π ≈ 0.64 on average over the angles.
  assert np.mean([_axis_aligned_fill(im) for im, _ in rotated]) < 0.8
  # The angle is scaled, not redrawn: the background, the square's size and its centre are the
  # same (none of these 40 touches the border; the thresholded areas differ by the rim, ≤ 7 %).
  for (a, _), (b, _) in zip(upright, rotated):
    np.testing.assert_array_equal(a[0, 0], b[0, 0])
    fa, fb = a.mean(-1) > 127.5, b.mean(-1) > 127.5
    assert abs(fa.sum() / fb.sum() - 1) < 0.1
    np.testing.assert_allclose(np.argwhere(fa).mean(0), np.argwhere(fb).mean(0), atol=1)
  # A disc, which has no orientation, is the same image (±1: rounding of rotated coordinates).
  np.testing.assert_allclose(procedural.render(20, 32, rotation=0.0)[0].astype(int),
                             procedural.render(20, 32)[0].astype(int), atol=1)
  # rotation=1 is the dataset itself, bit for bit.
  np.testing.assert_array_equal(procedural.render(31, 32, rotation=1.0)[0],
                                procedural.render(31, 32)[0])
  source = procedural.ProceduralSource(16, num_images=10, classes=(1,), rotation=0.0)
  np.testing.assert_array_equal(source[3]['image'], procedural.render(31, 16, rotation=0.0)[0])
  for bad in (-0.1, 1.01, True, '0'):
    with pytest.raises(UserError, match='data.rotation'):
      procedural.ProceduralSource(16, rotation=bad)
  # The config field reaches the source; configs without it (runs from before) get the dataset.
  config = tiny_config(**{'data.rotation': 0.0})
  assert create_source(config.data).rotation == 0.0
  del config.data.rotation
  assert create_source(config.data).rotation == 1.0


def test_procedural_grayscale_channel():
  image, _ = procedural.render(3, 16, channels=1)
  assert image.shape == (16, 16, 1)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_resume_exactly_and_split_by_process():
  source = procedural.ProceduralSource(16, num_images=40)
  full = _take(batches(source, 8, seed=3, num_threads=1), 8)  # 8 steps of 8 = 1.6 epochs.
  resumed = _take(batches(source, 8, seed=3, start_step=5, num_threads=1), 3)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Two processes each load half of every global batch; together they are the same batch.
  p0 = _take(batches(source, 8, seed=3, process_index=0, process_count=2, num_threads=1), 8)
  p1 = _take(batches(source, 8, seed=3, process_index=1, process_count=2, num_threads=1), 8)
  for step in range(8):
    assert p0[step]['image'].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(
        np.concatenate([p0[step]['image'], p1[step]['image']]), full[step]['image'])


def test_batches_cover_each_epoch_once_and_reshuffle():
  source = procedural.ProceduralSource(16, num_images=40)
  labels = [b['label'] for b in _take(batches(source, 8, seed=0, num_threads=1), 10)]
  epoch1 = np.concatenate(labels[:5])
  epoch2 = np.concatenate(labels[5:])
  # Each epoch holds every image once: 4 of each of the 10 classes.
  assert np.bincount(epoch1, minlength=10).tolist() == [4] * 10
  assert np.bincount(epoch2, minlength=10).tolist() == [4] * 10
  assert not np.array_equal(epoch1, epoch2)


def test_embedded_classes_keep_the_full_datasets_images_of_those_classes():
  full = procedural.ProceduralSource(16, num_images=40)
  kept = procedural.ProceduralSource(16, num_images=12, classes=[8, 0, 3])
  labels = [int(kept[i]['label']) for i in range(len(kept))]
  assert labels == [0, 1, 2] * 4  # Renumbered in the order of the sorted classes:
  assert (kept.num_classes, kept.class_names) == (3, ['disc', 'stripes', 'cross'])
  # Image i of the subset is the full dataset's image at index (i // 3) * 10 + classes[i % 3].
  for i, full_index in enumerate([0, 3, 8, 10, 13, 18, 20, 23, 28]):
    np.testing.assert_array_equal(kept[i]['image'], full[full_index]['image'])
  with pytest.raises(UserError, match='distinct labels'):
    procedural.ProceduralSource(16, classes=(1, 11))


def test_xflip_is_deterministic_and_flips_some():
  source = procedural.ProceduralSource(16, num_images=64)
  a = next(batches(source, 64, seed=1, xflip=True, num_threads=1))
  b = next(batches(source, 64, seed=1, xflip=True, num_threads=1))
  plain = next(batches(source, 64, seed=1, xflip=False, num_threads=1))
  np.testing.assert_array_equal(a['image'], b['image'])
  flipped = [not np.array_equal(x, y) for x, y in zip(a['image'], plain['image'])]
  assert 10 < sum(flipped) < 54  # ~Binomial(64, 0.5): outside this is a 1-in-10^5 event.
  for x, y, f in zip(a['image'], plain['image'], flipped):
    if f:
      np.testing.assert_array_equal(x, y[:, ::-1])


def test_batch_not_divisible_by_processes():
  with pytest.raises(UserError, match='not divisible'):
    batches(procedural.ProceduralSource(16, 32), 9, seed=0, process_count=2)


@pytest.fixture
def art_folder(tmp_path):
  root = tmp_path / 'art'
  (root / 'cats').mkdir(parents=True)
  (root / 'dogs').mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (40, 60, 3), np.uint8)).save(root / 'cats' / 'a.png')
  Image.fromarray(rng.integers(0, 255, (50, 30, 3), np.uint8)).save(root / 'cats' / 'b.jpg')
  Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8), 'L').save(root / 'dogs' / 'gray.png')
  Image.fromarray(rng.integers(0, 255, (24, 24, 4), np.uint8), 'RGBA').save(
      root / 'dogs' / 'alpha.webp')
  (root / 'dogs' / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
  (root / 'notes.txt').write_text('not an image, not even a candidate')
  return root


def test_folder_source_modes_labels_and_corrupt_files(art_folder, tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    source = FolderSource(str(art_folder), 16, use_labels=True, cache_dir=str(tmp_path / 'c'))
  assert len(source) == 4
  assert source.class_names == ['cats', 'dogs'] and source.num_classes == 2
  assert sorted(int(source[i]['label']) for i in range(4)) == [0, 0, 1, 1]
  warnings = [r for r in caplog.records if 'unreadable' in r.getMessage()]
  assert len(warnings) == 1 and 'Skipped 1 ' in warnings[0].getMessage()
  for i in range(4):
    assert source[i]['image'].shape == (16, 16, 3) and source[i]['image'].dtype == np.uint8
  # The grayscale file becomes RGB with equal channels.
  gray = next(source[i]['image'] for i in range(4)
              if np.array_equal(source[i]['image'][..., 0], source[i]['image'][..., 1]))
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_folder_cache_is_reused_and_rebuilt_when_corrupt(art_folder, tmp_path):
  cache = tmp_path / 'cache'
  first = np.array(FolderSource(str(art_folder), 16, cache_dir=str(cache)).images)
  (entry,) = [p for p in cache.iterdir() if not p.name.startswith('.')]
  mtime = (entry / 'images.npy').stat().st_mtime_ns
  FolderSource(str(art_folder), 16, cache_dir=str(cache))
  assert (entry / 'images.npy').stat().st_mtime_ns == mtime  # Reused, not rewritten.
  (entry / 'images.npy').write_bytes(b'garbage')
  again = FolderSource(str(art_folder), 16, cache_dir=str(cache))
  np.testing.assert_array_equal(first, np.asarray(again.images))
  # The source folder was only read.
  assert sorted(os.listdir(art_folder)) == ['cats', 'dogs', 'notes.txt']


def test_folder_errors(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(UserError, match='contains no image files'):
    FolderSource(str(empty), 16, cache_dir=str(tmp_path / 'c'))
  broken = tmp_path / 'broken'
  broken.mkdir()
  (broken / 'x.png').write_bytes(b'not a png')
  with pytest.raises(UserError, match='no usable image'):
    FolderSource(str(broken), 16, cache_dir=str(tmp_path / 'c'))
  with pytest.raises(UserError, match='not a directory'):
    FolderSource(str(tmp_path / 'missing'), 16)


def test_create_source_errors():
  with pytest.raises(UserError, match='unknown data.source'):
    create_source(tiny_config(**{'data.source': 'imagenet'}).data)
  with pytest.raises(UserError, match='renders 16..256'):
    create_source(tiny_config(**{'data.resolution': 8}).data)


def test_tfds_source_with_mock_data():
  import tensorflow_datasets as tfds
  config = tiny_config(**{'data.source': 'tfds:mnist:train', 'data.channels': 1,
                          'data.use_labels': True})
  with tfds.testing.mock_data(num_examples=12):
    source = create_source(config.data)
    assert len(source) == 12 and source.num_classes == 10
    batch = next(batches(source, 4, seed=0, num_threads=1))
  assert batch['image'].shape == (4, 16, 16, 1) and batch['image'].dtype == np.uint8
  assert batch['label'].dtype == np.int32 and ((0 <= batch['label']) & (batch['label'] < 10)).all()


def test_tfds_missing_data_offline_is_one_clear_error(tmp_path):
  config = tiny_config(**{'data.source': 'tfds:mnist', 'data.tfds_data_dir': str(tmp_path),
                          'data.tfds_download': False})
  with pytest.raises(UserError) as info:
    create_source(config.data)
  message = str(info.value)
  assert '\n' not in message
  assert "'mnist'" in message and str(tmp_path) in message and 'tfds build mnist' in message


def _write_png16(path, array):
  """A 16-bit PNG of uint16 [H, W] (gray) or [H, W, 3] (RGB): Pillow cannot write 16-bit RGB."""
  import struct
  import zlib
  h, w = array.shape[:2]
  color_type = 0 if array.ndim == 2 else 2
  raw = b''.join(b'\0' + array[y].astype('>u2').tobytes() for y in range(h))

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  path.write_bytes(b'\x89PNG\r\n\x1a\n'
                   + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, color_type, 0, 0, 0))
                   + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def _high_bit_image(kind, path):
  """Writes a 16×16 image of `kind` to `path`; returns its values as a numpy array."""
  rng = np.random.default_rng(0)
  if kind == 'png-gray16':
    values = rng.integers(0, 65536, (16, 16), dtype=np.uint16)
    values[0, :4] = [0, 255, 32768, 65535]  # Mean ~32768: white under the old 255 clip.
    Image.fromarray(values).save(path)
  elif kind == 'png-rgb16':
    values = rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    _write_png16(path, values)
  elif kind == 'tiff-int32':
    values = rng.integers(-2**31, 2**31, (16, 16), dtype=np.int32)  # Negatives become 0.
    Image.fromarray(values).save(path)
  elif kind == 'tiff-float32':
    values = rng.uniform(-0.2, 1.2, (16, 16)).astype(np.float32)  # Clipped to [0, 1].
    Image.fromarray(values).save(path)
  else:  # tifffile writes what Pillow cannot: signed 16-bit and unsigned 32-bit TIFFs.
    tifffile = pytest.importorskip('tifffile')
    dtype = {'tiff-int16': np.int16, 'tiff-uint32': np.uint32}[kind]
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, (16, 16), dtype=np.int64).astype(dtype)
    tifffile.imwrite(path, values)
  return values


@pytest.mark.parametrize('kind', ['png-gray16', 'png-rgb16', 'tiff-int32', 'tiff-float32',
                                  'tiff-int16', 'tiff-uint32'])
def test_folder_high_bit_depth_images_scale_to_8_bits(kind, tmp_path):
  from skimage.util import img_as_ubyte
  root = tmp_path / 'deep'
  root.mkdir()
  values = _high_bit_image(kind, root / ('image.png' if kind.startswith('png') else 'image.tif'))
  # img_as_ubyte refuses floats outside [-1, 1] and scales integers only when their maximum
  # is ≥ 256 (true here): the rule itself is clip to [0, 1], then ×255.
  expected = img_as_ubyte(np.clip(values, 0, 1) if kind == 'tiff-float32' else values)
  if expected.ndim == 2:
    expected = np.repeat(expected[..., None], 3, axis=-1)  # Gray is repeated to RGB.
  image = FolderSource(str(root), 16, cache_dir=str(tmp_path / 'c'))[0]['image']
  # The image is already 16², so no Lanczos resize: the bytes are the 8-bit rule's own. ±1 level
  # allows for rounding (v/65535·255 rounded vs img_as_ubyte's v >> 8 differ by at most 1).
  assert image.shape == (16, 16, 3) and image.dtype == np.uint8
  assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_mode_i_from_a_16_bit_png_is_read_as_16_bits(tmp_path):
  # Older Pillows open a 16-bit grayscale PNG as mode 'I' (0..65535), not 'I;16' (13 does): the
  # file's format, not the mode, says the samples are 16-bit.
  from jaxgen.data.folder import to_training_image
  values = np.full((16, 16), 32768, np.uint16)
  Image.fromarray(values).save(tmp_path / 'gray.png')
  with Image.open(tmp_path / 'gray.png') as image:
    as_i = image.convert('I')
  as_i.format = 'PNG'
  np.testing.assert_array_equal(to_training_image(as_i, 16, 1), np.full((16, 16, 1), 128))


def test_unwritable_cache_is_one_user_error(art_folder, tmp_path, monkeypatch, caplog):
  # A folder under a regular file cannot be created, even by root (the tests run as root).
  blocker = tmp_path / 'afile'
  blocker.write_text('in the way')
  with caplog.at_level(logging.WARNING), pytest.raises(UserError) as info:
    FolderSource(str(art_folder), 16, cache_dir=str(blocker / 'cache'))
  message = str(info.value)
  assert '\n' not in message and str(blocker / 'cache') in message
  assert 'Not a directory' in message and 'data.cache_dir' in message
  assert not [r for r in caplog.records if 'Rebuilding' in r.getMessage()]
  monkeypatch.setenv('JAXGEN_CACHE', str(blocker / 'cache'))
  with pytest.raises(UserError, match=r'could not write the dataset cache .*\$JAXGEN_CACHE'):
    create_source(tiny_config(**{'data.source': f'folder:{art_folder}'}).data)


def test_use_labels_on_a_flat_folder_names_the_real_key(tmp_path):
  root = tmp_path / 'flat'
  root.mkdir()
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / 'a.png')
  with pytest.raises(UserError, match='data.use_labels=False') as info:
    FolderSource(str(root), 16, use_labels=True, cache_dir=str(tmp_path / 'c'))
  assert 'folder_labels' not in str(info.value)


def test_images_far_smaller_than_the_resolution_warn(tmp_path, caplog):
  root = tmp_path / 'tiny'
  root.mkdir()
  for i, size in enumerate([(6, 9), (7, 7), (30, 7), (8, 40)]):  # 3 of 4 under 16/2 = 8 px.
    Image.fromarray(np.full(size[::-1] + (3,), 50 * i, np.uint8)).save(root / f'{i}.png')
  for attempt in ('built', 'reused'):  # The cache's meta.json keeps what the warning needs.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      FolderSource(str(root), 16, cache_dir=str(tmp_path / 'c'))
    (warning,) = [r.getMessage() for r in caplog.records if 'upscaled' in r.getMessage()]
    assert '3 of 4 images' in warning and 'smallest: 6 px' in warning, attempt
    assert 'data.resolution' in warning
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    FolderSource(str(root), 13, cache_dir=str(tmp_path / 'c'))  # Only 6 px < 13/2: 1 of 4.
  assert not [r for r in caplog.records if 'upscaled' in r.getMessage()]


@pytest.mark.parametrize('resolution', [0, -16])
def test_folder_resolution_below_one_is_refused_before_reading(art_folder, tmp_path, resolution):
  cache = tmp_path / 'c'
  with pytest.raises(UserError, match=f'data.resolution={resolution} ') as info:
    FolderSource(str(art_folder), resolution, cache_dir=str(cache))
  assert 'unreadable' not in str(info.value) and not cache.exists()
  with pytest.raises(UserError, match='data.resolution'):
    create_source(tiny_config(**{'data.source': f'folder:{art_folder}',
                                 'data.resolution': resolution, 'data.cache_dir': str(cache)}).data)
