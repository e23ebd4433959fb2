"""AdaIN style transfer (jaxgen/models/adain.py, jaxgen/recipes/adain.py): the official decoder's
size and its computation against numpy, AdaIN's statistics and losses against numpy, the shared
tiny run's logs, scores and grids, what `generate`'s α and style weights do, and
`python -m jaxgen.stylize --workdir/--network` on the run.

The VGG19 weights are a random file (conftest.write_random_vgg19): ImageNet weights are not
available to the tests; nothing here is a stylisation result."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import adain as adain_config
from conftest import REPO, fixture_maker, read_scalars
from jaxgen import data, stylize, trained
from jaxgen.errors import UserError
from jaxgen.models import adain
from jaxgen.objectives import style
from jaxgen.recipes.adain import AdaIN

# naoto0804/pytorch-AdaIN net.py's `decoder`: its nn.Conv2d layers (in, out channels, 3×3, with
# bias) in order; the rest of the list is ReflectionPad2d, ReLU and UpsamplingNearest2d, which have
# no parameters.
OFFICIAL_DECODER_CONVS = ((512, 256), (256, 256), (256, 256), (256, 256), (256, 128),
                          (128, 128), (128, 64), (64, 64), (64, 3))


def _official_fixture():
  """(recorded arrays, the official state_dicts they were made with): tests/data/adain_official.npz
  and make_adain_official_fixture.py's `state_dicts` (README_adain_official.md)."""
  script = fixture_maker('adain_official')
  with np.load(os.path.join(REPO, 'tests', 'data', 'adain_official.npz')) as f:
    recorded = dict(f)
  return recorded, script.state_dicts(int(recorded['seed']))


def test_official_encoder_and_decoder_match_the_official_networks():
  """The official AdaIN (naoto0804/pytorch-AdaIN net.py, vgg_normalised.pth's layout, shared
  random weights): the encoder's relu1_1..relu4_1 — through ceil-mode pooling of odd sides —,
  AdaIN and test.py's style transfer at α 1 and 0.6, from the converted state_dicts. Float32
  convolutions summed in another order: features agree to 1e-6 of each array's largest value,
  AdaIN (dividing by σ) and the outputs to 4.5e-6 (measured); tolerance 2e-5."""
  recorded, state_dicts = _official_fixture()
  enc = adain.encoder_params_from_official(state_dicts['vgg'])  # Ignores the layers after 29.
  dec = adain.decoder_params_from_official(state_dicts['decoder'])
  assert {k: v.shape for k, v in enc.items()} == adain.encoder_param_shapes('vgg_normalised')
  assert {k: v.shape for k, v in dec.items()} == adain.decoder_param_shapes()
  from jaxgen import pretrained
  enc, dec = pretrained.unflatten(enc), pretrained.unflatten(dec)
  to_ours = lambda x: jnp.asarray(x) * 2.0 - 1.0  # The official [0, 1] → jaxgen's [-1, 1].
  encoder = adain.encoder('vgg_normalised')
  feats = encoder.apply({'params': enc}, to_ours(recorded['content']))
  style_feats = encoder.apply({'params': enc}, to_ours(recorded['style']))

  def close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=0,
                               atol=2e-5 * np.abs(theirs).max())

  for name, step in (('relu1_1', 8), ('relu2_1', 8), ('relu3_1', 4), ('relu4_1', 4)):
    close(feats[name][..., ::step], recorded[f'content/{name}'])
  close(style_feats['relu4_1'][..., ::4], recorded['style/relu4_1'])
  t = adain.adain(feats['relu4_1'], style_feats['relu4_1'])
  close(t, recorded['t'])
  decoder = adain.Decoder()
  for alpha in (1.0, 0.6):
    out = decoder.apply({'params': dec}, adain.blend(feats['relu4_1'], [style_feats['relu4_1']],
                                                      [1.0], alpha))
    close((out + 1.0) / 2.0, recorded[f'out/alpha{alpha:g}'])  # Back to the official [0, 1].


def test_official_state_dicts_of_another_layout_are_refused():
  _, state_dicts = _official_fixture()
  broken = dict(state_dicts['vgg'])
  del broken['9.weight']
  with pytest.raises(ValueError, match='no 9.weight'):
    adain.encoder_params_from_official(broken)
  with pytest.raises(ValueError, match='decoder.pth'):
    adain.decoder_params_from_official(state_dicts['vgg'])


def test_decoder_has_the_official_parameter_count():
  official = sum(9 * c_in * c_out + c_out for c_in, c_out in OFFICIAL_DECODER_CONVS)
  assert official == 3_505_219
  recipe = AdaIN(adain_config.get_config(), num_classes=0)
  counts = recipe.param_count(jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0)))
  # The frozen encoder: torchvision VGG19's convolutions up to conv4_1 ...
  assert counts == {'decoder': official, 'encoder (frozen)': 3_505_728}
  # ... or the official one's, the same and its 1×1 input convolution (3·3 + 3).
  recipe = AdaIN(adain_config.get_config('official'), num_classes=0)
  counts = recipe.param_count(jax.eval_shape(recipe.init_state, jax.random.PRNGKey(0)))
  assert counts == {'decoder': official, 'encoder (frozen)': 3_505_740}
  assert adain.param_count() == official


def _numpy_decoder(params, t):
  """The official decoder written out: reflection pad 1, 3×3 conv, ReLU (not after the last),
  nearest ×2 up-sampling after the convs DECODER_PLAN marks."""
  x = np.asarray(t, np.float64)
  for i, (name, _, _, upsample) in enumerate(adain.DECODER_PLAN):
    kernel = np.asarray(params[name]['kernel'], np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
    h, w = x.shape[1:3]
    x = sum(np.einsum('bhwi,io->bhwo', padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
            for dy in range(3) for dx in range(3)) + np.asarray(params[name]['bias'])
    if i < len(adain.DECODER_PLAN) - 1:
      x = np.maximum(x, 0.0)
    if upsample:
      x = x.repeat(2, axis=1).repeat(2, axis=2)
  return x


def test_decoder_computes_the_official_layers():
  rng = np.random.default_rng(0)
  params = {name: {'kernel': rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c_out)),
                   'bias': rng.normal(0, 0.1, (c_out,))}
            for name, c_in, c_out, _ in adain.DECODER_PLAN}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  t = jax.random.normal(jax.random.PRNGKey(1), (1, 2, 3, 512))
  decoder = adain.Decoder()
  assert jax.tree.map(np.shape, params) == jax.tree.map(
      np.shape, jax.eval_shape(decoder.init, jax.random.PRNGKey(2), t)['params'])
  out = np.asarray(jax.jit(decoder.apply)({'params': params}, t))
  assert out.shape == (1, 16, 24, 3)
  ref = _numpy_decoder(params, t)
  # float32 sums of up to 9·512 products against float64: measured 3e-7 of the largest value.
  np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_decoder_init_is_pytorchs_default():
  """nn.Conv2d's default init: weights and biases uniform in ±1/√fan_in."""
  bound = 1 / np.sqrt(9 * 64)
  init = adain._torch_default_init(9 * 64)  # pylint: disable=protected-access
  w = np.asarray(jax.jit(init, static_argnums=1)(jax.random.PRNGKey(3), (3, 3, 64, 64)))
  assert np.abs(w).max() <= bound * (1 + 1e-6)  # float32 rounding of the bound.
  # Uniform: mean 0, variance bound²/3 (36,864 draws: both within 3 % of the bound's scale).
  assert abs(w.mean()) < 0.03 * bound and abs(w.var() / (bound ** 2 / 3) - 1) < 0.03


def test_adain_statistics_against_numpy():
  rng = np.random.default_rng(0)
  c = rng.normal(1.0, 2.0, (2, 3, 4, 5)).astype(np.float32)
  s = rng.normal(-1.0, 0.5, (2, 6, 2, 5)).astype(np.float32)
  eps = 1e-5  # pytorch-AdaIN calc_mean_std's, added to the unbiased variance.

  def stats(x):
    flat = x.astype(np.float64).reshape(x.shape[0], -1, x.shape[-1])
    return flat.mean(axis=1), np.sqrt(flat.var(axis=1, ddof=1) + eps)

  (mean, std), (c_mean, c_std), (s_mean, s_std) = style.mean_std(c), stats(c), stats(s)
  np.testing.assert_allclose(mean, c_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(std, c_std, rtol=1e-5)
  expected = (c - c_mean[:, None, None]) / c_std[:, None, None] * s_std[:, None, None] + \
      s_mean[:, None, None]
  np.testing.assert_allclose(adain.adain(c, s), expected, rtol=1e-5, atol=1e-5)
  # The output carries the style's mean, and its std up to eps: σ_s · σ_c / √(σ_c² + eps)... .
  out_mean, out_std = stats(np.asarray(adain.adain(c, s)))
  np.testing.assert_allclose(out_mean, s_mean, atol=1e-5)
  np.testing.assert_allclose(out_std, s_std, rtol=1e-4)
  # The losses: MSE of relu4_1 against t; Σ over layers of MSE(μ) + MSE(σ) over [B, C].
  np.testing.assert_allclose(style.adain_content_loss(c, expected),
                             np.mean((c - expected) ** 2), rtol=1e-5)
  feats, style_feats = {'a': c, 'b': s}, {'a': s, 'b': c}
  loss = sum(np.mean((stats(feats[k])[0] - stats(style_feats[k])[0]) ** 2) +
             np.mean((stats(feats[k])[1] - stats(style_feats[k])[1]) ** 2) for k in 'ab')
  np.testing.assert_allclose(style.adain_style_loss(feats, style_feats, 'ab'), loss, rtol=1e-5)


def test_recipe_refuses_what_it_cannot_train():
  config = adain_config.get_config()
  config.data.source = 'embedded'
  with pytest.raises(UserError, match='two unpaired domains'):
    AdaIN(config, num_classes=0)
  config = adain_config.get_config()
  config.data.resolution = 20
  with pytest.raises(UserError, match='multiple of 8'):
    AdaIN(config, num_classes=0)
  config = adain_config.get_config()
  config.sampling.alpha = 1.5
  with pytest.raises(UserError, match=r'sampling.alpha=1.5 must be in \[0, 1\]'):
    AdaIN(config, num_classes=0)


# ------------------------------------------------------------------------------------------------
# The shared run.


def test_run_logs_losses_lr_scores_and_grids(adain_run):
  scalars = read_scalars(adain_run)
  for tag in ('loss/content', 'loss/style', 'loss/total', 'grad_norm/decoder'):
    assert set(scalars[tag]) == set(range(1, 7)), tag
    assert all(np.isfinite(v) for v in scalars[tag].values()), tag
  # The official decay: lr / (1 + 5e-5 · i) at update i (logged at step i + 1).
  for step, lr in scalars['lr'].items():
    np.testing.assert_allclose(lr, 1e-3 / (1 + 5e-5 * (step - 1)), rtol=1e-6)
  for key in ('loss', 'content_loss', 'style_loss'):
    assert set(scalars[f'eval/{key}']) == {3, 6}
    assert set(scalars[f'eval/baseline_{key}']) == {3, 6}
  for step in (3, 6):  # The evaluator's loss is the training objective: content + 10 · style.
    np.testing.assert_allclose(scalars['eval/loss'][step], scalars['eval/content_loss'][step] +
                               10 * scalars['eval/style_loss'][step], rtol=1e-5)
  assert sorted(os.listdir(os.path.join(adain_run, 'samples'))) == [
      '00000003.png', '00000006.png', 'reals.png']
  # Two panels content | style | output side by side; the first pair is held-out example 0.
  grid = np.asarray(Image.open(os.path.join(adain_run, 'samples', '00000006.png')))
  assert grid.shape == (16, 96, 3)
  config = trained.load_config(adain_run)
  _, held_out = data.create_sources(config)
  assert np.array_equal(grid[:, :16], held_out[0]['input'])
  assert np.array_equal(grid[:, 16:32], held_out[0]['image'])


def test_generate_blends_styles_and_alpha(adain_run):
  restored = trained.restore(adain_run, need_data=False)
  recipe, state = restored.recipe, restored.state
  rng = np.random.default_rng(1)
  c, s1, s2 = (jnp.asarray(rng.uniform(-1, 1, (1, 16, 24, 3)), jnp.float32) for _ in range(3))
  cat = lambda *x: jnp.concatenate(x, axis=-1)

  def variants(state):
    g = recipe.generate
    encode = lambda x: recipe.encoder.apply({'params': state.encoder_params}, x)['relu4_1']
    f_c = encode(c)
    t = 0.5 * (0.3 * adain.adain(f_c, encode(s1)) + 0.7 * adain.adain(f_c, encode(s2))) + 0.5 * f_c
    return {'one_of_two': g(state, cat(c, s1, s2), style_weights=(1.0, 0.0)),
            'one': g(state, cat(c, s1)), 'config_alpha': g(state, cat(c, s1), alpha=1.0),
            'alpha0_s1': g(state, cat(c, s1), alpha=0.0),
            'alpha0_s2': g(state, cat(c, s2), alpha=0.0),
            'blend': g(state, cat(c, s1, s2), alpha=0.5, style_weights=(3.0, 7.0)),
            'manual_blend': recipe.decoder.apply({'params': state.decoder_params}, t)}

  out = jax.device_get(jax.jit(variants)(state))
  assert out['one'].shape == (1, 16, 24, 3)
  # Equal computations in a different order of float32 operations: 1e-5 of the values' range.
  close = lambda a, b: np.testing.assert_allclose(out[a], out[b], rtol=0,
                                                  atol=1e-5 * np.abs(out[b]).max() + 1e-6)
  close('one_of_two', 'one')            # A weight of 0 removes a style.
  close('config_alpha', 'one')          # sampling.alpha = 1 is the default.
  close('alpha0_s1', 'alpha0_s2')       # α = 0: the content's features alone.
  close('blend', 'manual_blend')        # α Σ w_k AdaIN(c, s_k) + (1 − α) f(c), w normalised.
  assert not np.allclose(out['alpha0_s1'], out['one'])
  with pytest.raises(UserError, match=r'alpha=2.0 must be in \[0, 1\]'):
    jax.eval_shape(lambda s: recipe.generate(s, cat(c, s1), alpha=2.0), state)
  with pytest.raises(UserError, match='1 style weights for 2 style images'):
    jax.eval_shape(lambda s: recipe.generate(s, cat(c, s1, s2), style_weights=(1.0,)), state)


def _run(capsys, module, *argv):
  code = module.main(list(argv))
  out, err = capsys.readouterr()
  assert code == 0, err
  return out


def test_stylize_with_the_run_and_its_export(adain_run, capsys, tmp_path):
  """One pass of the run's decoder on a 20×28 content picture and two styles; the exported file
  gives the same picture."""
  from jaxgen import export
  rng = np.random.default_rng(2)
  paths = []
  for name, shape in (('content.png', (20, 28, 3)), ('a.png', (40, 12, 3)), ('b.png', (9, 9, 3))):
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / name)
    paths.append(str(tmp_path / name))
  common = [f'--content={paths[0]}', f'--style={paths[1]},{paths[2]}', '--style_weights=2,1',
            '--alpha=0.8', '--size=30']
  out = _run(capsys, stylize, f'--workdir={adain_run}', *common, f'--out={tmp_path / "w.png"}')
  # 30 px on the long side, sides rounded to multiples of 8: 28 → 32, 20 → 21.4 → 24.
  assert f'({32}×{24})' in out and 'AdaIN step 6' in out
  network = tmp_path / 'adain.npz'
  _run(capsys, export, f'--workdir={adain_run}', f'--output={network}')
  _run(capsys, stylize, f'--network={network}', *common, f'--out={tmp_path / "n.png"}')
  from_workdir = np.asarray(Image.open(tmp_path / 'w.png'))
  assert from_workdir.shape == (24, 32, 3) and from_workdir.std() > 0
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'n.png')), from_workdir)


def test_stylize_with_the_official_release(capsys, tmp_path):
  """`stylize --official` with the official files (here the fixture's shared weights, converted
  as jaxgen.pretrained converts vgg_normalised.pth and decoder.pth): the encoder and decoder
  weights go to their networks, α and the style reach them — the picture is the networks'
  output on the resized pictures (1 level of 255 for rounding) — and a missing decoder file is
  one line naming it."""
  from jaxgen import pretrained
  from jaxgen.recipes import adain as adain_recipe
  _, state_dicts = _official_fixture()
  files = {}
  for key, spec in (('vgg', adain.ENCODER_WEIGHTS), ('decoder', adain.DECODER_WEIGHTS)):
    files[key] = tmp_path / f'{key}.npz'
    pretrained.save_converted(spec, pretrained.convert_state_dict(spec, state_dicts[key]),
                              files[key])
  rng = np.random.default_rng(3)
  for name, shape in (('c.png', (20, 28, 3)), ('s.png', (30, 30, 3))):
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / name)
  out = _run(capsys, stylize, '--official', f'--vgg_weights={files["vgg"]}',
             f'--decoder_weights={files["decoder"]}', f'--content={tmp_path / "c.png"}',
             f'--style={tmp_path / "s.png"}', '--alpha=0.6', '--size=30',
             f'--out={tmp_path / "o.png"}')
  assert 'AdaIN, the official release, α 0.6' in out and '(32×24)' in out
  size = (24, 32)
  content = stylize.resize(np.asarray(Image.open(tmp_path / 'c.png')), size) * 2 - 1
  style_image = np.asarray(Image.open(tmp_path / 's.png'))
  style_image = stylize.resize(stylize.crop_to_aspect(style_image, size), size) * 2 - 1
  enc = pretrained.load_params(adain.ENCODER_WEIGHTS, weights=str(files['vgg']))
  dec = pretrained.load_params(adain.DECODER_WEIGHTS, weights=str(files['decoder']))
  encoder = adain.encoder('vgg_normalised')
  c, s = (encoder.apply({'params': enc}, jnp.asarray(x)[None])['relu4_1']
          for x in (content, style_image))
  expected = adain.Decoder().apply({'params': dec}, adain.blend(c, [s], [1.0], 0.6))[0]
  expected = np.clip(np.round((np.asarray(expected) + 1) / 2 * 255), 0, 255)
  got = np.asarray(Image.open(tmp_path / 'o.png')).astype(float)
  assert got.shape == (24, 32, 3) and np.abs(got - expected).max() <= 1
  assert adain_recipe.official_pretrained(str(files['vgg']), str(files['decoder'])).step == 0
  code = stylize.main(['--official', f'--vgg_weights={files["vgg"]}',
                       f'--decoder_weights={tmp_path / "decoder.pth"}',
                       f'--content={tmp_path / "c.png"}', f'--style={tmp_path / "s.png"}',
                       f'--out={tmp_path / "o2.png"}'])
  err = capsys.readouterr().err
  assert code == 2 and "the official AdaIN decoder's weights" in err and err.count('\n') == 1
  assert not (tmp_path / 'o2.png').exists()


def test_evaluate_reproduces_the_runs_scores(adain_run, capsys):
  from jaxgen import evaluate
  out = _run(capsys, evaluate, f'--workdir={adain_run}', '--metrics=loss,style_loss')
  results = dict(line.split(': ') for line in out.strip().splitlines())
  logged = read_scalars(adain_run)
  for key in ('loss', 'content_loss', 'style_loss', 'baseline_loss'):
    # The same program on the same pairs as the run's evaluation at step 6.
    np.testing.assert_allclose(float(results[key]), logged[f'eval/{key}'][6], rtol=1e-5)


def test_translate_points_to_stylize(adain_run, capsys, tmp_path):
  from jaxgen import translate
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / 'x.png')
  code = translate.main([f'--workdir={adain_run}', f'--input={tmp_path / "x.png"}',
                         f'--outdir={tmp_path / "out"}'])
  err = capsys.readouterr().err
  assert code == 2 and 'python -m jaxgen.stylize' in err, err
  assert not (tmp_path / 'out').exists()
  # generate too points to stylize (task.apply_command), not to translate.
  from jaxgen import generate
  code = generate.main([f'--workdir={adain_run}', f'--outdir={tmp_path / "gen"}', '--seeds=0'])
  err = capsys.readouterr().err
  assert code == 2 and 'python -m jaxgen.stylize --workdir=' in err, err
  assert not (tmp_path / 'gen').exists()
