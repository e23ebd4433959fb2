"""Neural style transfer by optimisation (jaxgen/objectives/style.py, jaxgen/neural_style.py and
`python -m jaxgen.stylize`): the losses against direct numpy computations, the style loss of an
image with itself, colour preservation, the optimisation lowering the loss with both optimisers,
and the command line end to end and on bad input.

The VGG19 weights are a random file (conftest.write_random_vgg19): ImageNet weights are not
available to the tests, and none of these checks needs them. Optimisations use the shallow
layers (SHALLOW) so that they compile in seconds; the code path is the default one's."""

import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from jaxgen import neural_style, stylize
from jaxgen.errors import UserError
from jaxgen.models import vgg
from jaxgen.objectives import style

SHALLOW = {'content_layers': ('relu1_2',), 'style_layers': ('relu1_1', 'relu1_2')}
SHALLOW_FLAGS = ('--content_layers=relu1_2', '--style_layers=relu1_1,relu1_2')


@pytest.fixture(scope='module')
def vgg_params(random_vgg19):
  return vgg.load_params(19, weights=random_vgg19)


def _picture(path, height, width, seed, low=0, high=256):
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(low, high, (height, width, 3), dtype=np.uint8)).save(path)
  return str(path)


# ------------------------------------------------------------------------------------------------
# The losses.


def test_gram_matrix_content_and_tv_losses_against_numpy():
  rng = np.random.default_rng(0)
  f = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
  g = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
  f64 = f.astype(np.float64)
  # jcjohnson: F Fᵀ over the C × (H·W) matrix, divided by its number of elements C·H·W.
  gram = np.stack([x.reshape(-1, 4).T @ x.reshape(-1, 4) for x in f64]) / (4 * 3 * 5)
  np.testing.assert_allclose(style.gram_matrix(f), gram, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(style.content_loss(f, g), np.mean((f64 - g) ** 2), rtol=1e-5)
  targets = {'a': gram[1]}
  np.testing.assert_allclose(style.style_loss({'a': f}, targets),
                             np.mean((gram - gram[1]) ** 2), rtol=1e-5)
  # ½ Σ over the (H−1)×(W−1) window of squared right and down differences, per image.
  x = rng.standard_normal((2, 4, 6, 3))
  tv = np.zeros(2)
  for b in range(2):
    for i in range(3):
      for j in range(5):
        right, down = x[b, i, j] - x[b, i, j + 1], x[b, i, j] - x[b, i + 1, j]
        tv[b] += 0.5 * np.sum(right ** 2 + down ** 2)
  np.testing.assert_allclose(style.total_variation(x.astype(np.float32)), tv, rtol=1e-5)


def test_style_loss_of_an_image_with_itself_is_zero(vgg_params):
  """On VGG19's default style layers (relu1_1 ... relu5_1), with style_targets' blending."""
  rng = np.random.default_rng(1)
  a, b = (rng.uniform(0, 256, (16, 16, 3)).astype(np.float32) for _ in range(2))
  layers = neural_style.STYLE_LAYERS
  features = neural_style.features_program(layers)
  grams_a = neural_style.style_targets(vgg_params, [a], [1.0], layers)
  grams_ab = neural_style.style_targets(vgg_params, [a, b], [3.0, 1.0], layers)
  grams_b = neural_style.style_targets(vgg_params, [b], [1.0], layers)
  feats_a, feats_b = features(vgg_params, a[None]), features(vgg_params, b[None])
  assert float(style.style_loss(feats_a, grams_a)) == 0.0
  assert float(style.style_loss(feats_b, grams_a)) > 0.0
  assert float(style.style_loss(feats_a, grams_b)) > 0.0
  for k in layers:  # The blend is Σ w_i G(s_i) with the weights normalised to sum to 1.
    np.testing.assert_allclose(grams_ab[k], 0.75 * grams_a[k] + 0.25 * grams_b[k], rtol=1e-5,
                               atol=1e-6 * float(np.abs(grams_a[k]).max()))


def test_smallest_image_for_the_layers():
  assert neural_style.min_size(('relu1_1',)) == 1
  assert neural_style.min_size(('relu4_2',)) == 8  # After three 2×2 pools.
  assert neural_style.min_size(neural_style.STYLE_LAYERS) == 16
  assert neural_style.min_size(('pool5',)) == 32
  neural_style.check_size((16, 40, 3), neural_style.STYLE_LAYERS, 'x')
  with pytest.raises(UserError, match='relu5_1'):
    neural_style.check_size((15, 40, 3), neural_style.STYLE_LAYERS, 'x')


def test_colour_helpers_keep_the_content_chroma():
  rng = np.random.default_rng(2)
  content = rng.uniform(0.2, 0.8, (6, 7, 3))
  output = rng.uniform(0.2, 0.8, (6, 7, 3))
  styles = [rng.uniform(0.0, 1.0, (5, 9, 3))]
  joined = neural_style.restore_colors(output, content)
  yiq, yiq_c, yiq_o = (neural_style.rgb_to_yiq(x) for x in (joined, content, output))
  # float32 results of float64 arithmetic: 1e-6 is float32's resolution at these values.
  np.testing.assert_allclose(yiq[..., 1:], yiq_c[..., 1:], atol=1e-6)
  np.testing.assert_allclose(yiq[..., 0], yiq_o[..., 0], atol=1e-6)
  gray_c, (gray_s,) = neural_style.luminance_only_inputs(content, styles)
  np.testing.assert_allclose(gray_c[..., 0], yiq_c[..., 0], atol=1e-6)
  assert np.all(gray_c[..., 0] == gray_c[..., 2]) and np.all(gray_s[..., 0] == gray_s[..., 1])
  # The style's luminance matched to the content's mean and standard deviation.
  np.testing.assert_allclose([gray_s[..., 0].mean(), gray_s[..., 0].std()],
                             [yiq_c[..., 0].mean(), yiq_c[..., 0].std()], rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# The optimisation.


@pytest.mark.parametrize('optimizer', ['lbfgs', 'adam'])
def test_optimisation_lowers_the_loss(vgg_params, optimizer):
  rng = np.random.default_rng(3)
  content = rng.uniform(0, 1, (16, 20, 3)).astype(np.float32)
  styles = [rng.uniform(0, 1, (24, 16, 3)).astype(np.float32),
            rng.uniform(0, 1, (12, 12, 3)).astype(np.float32)]
  seen = []
  # Adam's step is lr·sign(∇L) at first: jcjohnson's 10 (0–256 units) overshoots on a noise
  # picture, whose total variation is huge, before it settles; 3 descends from the first step.
  settings = neural_style.Settings(**SHALLOW, optimizer=optimizer, iterations=4, learning_rate=3.0)
  result = neural_style.transfer(vgg_params, content, styles, [0.7, 0.3], settings,
                                 callback=lambda i, loss: seen.append((i, loss)))
  assert [i for i, _ in seen] == [1, 2, 3, 4]
  assert seen[0][1] == result.initial_loss
  # Measured: L-BFGS 0.67×, Adam 0.74× the initial loss after 4 iterations; 0.95 leaves room.
  assert result.losses['total'] < 0.95 * result.initial_loss, (result.initial_loss, result.losses)
  np.testing.assert_allclose(result.losses['total'], sum(
      result.losses[k] for k in ('content', 'style', 'tv')), rtol=1e-5)
  assert result.image.shape == content.shape and result.image.dtype == np.float32
  assert 0.0 <= result.image.min() and result.image.max() <= 1.0
  assert result.iterations_per_second > 0
  assert not np.allclose(result.image, content, atol=1e-3)


def test_bad_settings_and_weights():
  content = np.zeros((16, 16, 3), np.float32)
  with pytest.raises(UserError, match='2 style weights for 1 style images'):
    neural_style.transfer({}, content, [content], [0.5, 0.5])
  with pytest.raises(UserError, match='--optimizer'):
    neural_style.Settings(optimizer='sgd').check()
  with pytest.raises(UserError, match='unknown VGG19 layer'):
    neural_style.Settings(style_layers=('relu6_1',)).check()
  with pytest.raises(UserError, match='--style_weight=-1'):
    neural_style.Settings(style_weight=-1.0).check()


# ------------------------------------------------------------------------------------------------
# The command line.


def _run(capsys, *argv):
  code = stylize.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_stylize_command_end_to_end_with_colour_preservation(capsys, tmp_path, random_vgg19):
  """Two styles blended, Adam, --preserve_colors: one output of the content's size whose YIQ chroma
  is the content's."""
  content = _picture(tmp_path / 'content.png', 18, 24, seed=4, low=60, high=200)
  style_a = _picture(tmp_path / 'a.png', 30, 20, seed=5)
  style_b = _picture(tmp_path / 'b.jpg', 16, 16, seed=6)
  out = tmp_path / 'out.png'
  code, stdout, err = _run(capsys, f'--content={content}', f'--style={style_a},{style_b}',
                           '--style_weights=0.7,0.3', f'--out={out}', '--size=24',
                           '--optimizer=adam', '--iterations=3', '--preserve_colors',
                           f'--vgg_weights={random_vgg19}', *SHALLOW_FLAGS)
  assert code == 0, err
  assert f'wrote {out} (24×18)' in stdout and 'it/s after the first' in stdout
  assert sorted(os.listdir(tmp_path)) == ['a.png', 'b.jpg', 'content.png', 'out.png']  # No tmp.
  got = np.asarray(Image.open(out), np.float64) / 255.0
  want = np.asarray(Image.open(content), np.float64) / 255.0  # 24 px already: not resized.
  yiq, yiq_c = neural_style.rgb_to_yiq(got), neural_style.rgb_to_yiq(want)
  assert np.abs(yiq[..., 0] - yiq_c[..., 0]).mean() > 0.01  # The luminance was restyled.
  # Pixels no channel of which was clipped to 0 or 255 (clipping moves a colour out of gamut back
  # into it, changing its chroma): there I and Q are the content's up to the output's rounding
  # to 8 bits, |ΔI| ≤ (0.596 + 0.274 + 0.321)·0.5/255 = 2.34e-3 and |ΔQ| ≤ 2.05e-3.
  inside = np.all((got > 0) & (got < 1), axis=-1)
  assert inside.mean() > 0.5
  assert np.abs(yiq[..., 1:] - yiq_c[..., 1:])[inside].max() <= 2.4e-3


def _digest(path):
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


# (id, arguments ({c}: a content picture, {s}: a style picture, {bad}: a text file named .png,
# {t}: the test's folder), text of the one error line).
BAD_INPUT = [
    ('content-missing', ('--content={t}/nope.png',), '--content={t}/nope.png does not exist'),
    ('content-unreadable', ('--content={bad}',), 'is not a readable picture'),
    ('content-is-a-folder', ('--content={t}',), 'is a folder'),
    ('style-missing', ('--style={s},{t}/gone.jpg',), '--style={t}/gone.jpg does not exist'),
    ('style-unreadable', ('--style={bad}',), 'is not a readable picture'),
    ('style-weights-do-not-match', ('--style={s},{s}', '--style_weights=1,2,3'),
     'has 3 weight(s) for 2 style picture(s)'),
    ('style-weights-not-numbers', ('--style_weights=a',), 'is not a list of numbers'),
    ('style-weights-negative', ('--style={s},{s}', '--style_weights=1,-1'), 'weights ≥ 0'),
    ('out-unknown-extension', ('--out={t}/out.xyz',), "unknown picture extension '.xyz'"),
    ('out-folder-missing', ('--out={t}/no/out.png',), 'does not exist'),
    ('size-too-small-for-the-layers', ('--size=12',), 'too small for VGG19 layer relu5_1'),
    ('unknown-layer', ('--style_layers=relu1_1,relu9_1',), "unknown VGG19 layer(s) ['relu9_1']"),
    ('unknown-optimizer', ('--optimizer=sgd',), "--optimizer='sgd'"),
    ('iterations-zero', ('--iterations=0',), '--iterations=0'),
    ('style-scale-zero', ('--style_scale=0',), '--style_scale=0'),
    ('vgg-weights-missing', ('--vgg_weights={t}/vgg19.npz',), 'vgg19-dcbb9e9d.pth'),
    ('alpha-without-a-run', ('--alpha=0.5',), '--alpha is for AdaIN'),
    ('gatys-options-with-a-run', ('--workdir={t}', '--optimizer=adam', '--iterations=3'),
     '--optimizer, --iterations are for Gatys'),
    ('alpha-out-of-range', ('--workdir={t}', '--alpha=1.5'), '--alpha=1.5 must be in [0, 1]'),
    ('workdir-not-a-run', ('--workdir={t}',), 'config.json does not exist'),
    ('official-encoder-missing', ('--official', '--vgg_weights={t}/vgg_normalised.pth'),
     "the official AdaIN encoder's weights not found (vgg_normalised.pth"),
    ('decoder-weights-with-a-run', ('--workdir={t}', '--decoder_weights={t}/d.pth'),
     '--decoder_weights names weights for --official; an AdaIN --workdir'),
    ('vgg-weights-with-a-run', ('--workdir={t}', '--vgg_weights={t}/v.pth'),
     '--vgg_weights names weights for Gatys et al. or --official; an AdaIN --workdir'),
    ('decoder-weights-for-gatys', ('--decoder_weights={t}/d.pth',), '--decoder_weights is for'),
    ('gatys-options-with-official', ('--official', '--iterations=3'), '--iterations is for Gatys'),
]


@pytest.mark.parametrize('case', BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_and_writes_nothing(case, capsys, tmp_path):
  _, extra, expect = case
  names = {'c': _picture(tmp_path / 'c.png', 20, 20, seed=7),
           's': _picture(tmp_path / 's.png', 20, 20, seed=8),
           'bad': str(tmp_path / 'bad.png'), 't': str(tmp_path)}
  (tmp_path / 'bad.png').write_text('not a picture')
  args = {'--content': '{c}', '--style': '{s}', '--out': '{t}/out.png'}
  for arg in extra:
    flag, _, value = arg.partition('=')
    args[flag] = value
  argv = [f'{k}={v.format(**names)}' if v else k for k, v in args.items()]
  before = {n: _digest(tmp_path / n) for n in os.listdir(tmp_path)}
  code, out, err = _run(capsys, *argv)
  assert code == 2, err
  assert 'Traceback' not in err and out == ''
  errors = [l for l in err.splitlines() if l.startswith('jaxgen: error:')]
  assert len(errors) == 1, err
  assert expect.format(**names) in errors[0], errors[0]
  assert {n: _digest(tmp_path / n) for n in os.listdir(tmp_path)} == before


def test_existing_out_is_kept_without_overwrite(capsys, tmp_path):
  content = _picture(tmp_path / 'c.png', 20, 20, seed=9)
  out = tmp_path / 'out.png'
  out.write_bytes(b'the user\'s file')
  code, _, err = _run(capsys, f'--content={content}', f'--style={content}', f'--out={out}')
  assert code == 2 and f'{out} already exists' in err and 'pass --overwrite' in err
  assert out.read_bytes() == b'the user\'s file'


def test_missing_vgg_weights_offline_is_one_line(capsys, tmp_path, monkeypatch):
  """No --vgg_weights, an empty cache and no network: one line naming the file to get."""
  import urllib.error
  from jaxgen import pretrained

  def offline(*args, **kwargs):
    raise urllib.error.URLError('network unreachable')

  monkeypatch.setattr(pretrained.urllib.request, 'urlopen', offline)
  monkeypatch.setenv('JAXGEN_CACHE', str(tmp_path / 'empty-cache'))
  monkeypatch.delenv('JAXGEN_VGG19_WEIGHTS', raising=False)
  content = _picture(tmp_path / 'c.png', 20, 20, seed=10)
  code, _, err = _run(capsys, f'--content={content}', f'--style={content}',
                      f'--out={tmp_path / "out.png"}')
  errors = [l for l in err.splitlines() if l.startswith('jaxgen: error:')]
  assert code == 2 and len(errors) == 1 and 'vgg19-dcbb9e9d.pth' in errors[0], err
  assert not (tmp_path / 'out.png').exists()
