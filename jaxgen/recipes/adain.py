"""AdaIN (Huang & Belongie 2017): fast arbitrary style transfer, a decoder trained on the one loop.

As naoto0804/pytorch-AdaIN (`train.py`, `net.py`, `function.py`): a frozen VGG19 encoder f to
relu4_1, t = AdaIN(f(c), f(s)), a decoder g (jaxgen/models/adain.py), and the loss

  L = λ_c · MSE(f(g(t)), t) + λ_s · Σ_{relu1_1, relu2_1, relu3_1, relu4_1} MSE(μ(f(g(t))), μ(f(s)))
                                                                   + MSE(σ(f(g(t))), σ(f(s)))

with λ_c = 1, λ_s = 10 (`objective.content_weight`, `objective.style_weight`), minimised over the
decoder alone by Adam (lr 1e-4, β 0.9, 0.999) with the official decay lr / (1 + 5e-5 · step),
batch 8 (jaxgen/objectives/style.py has the losses). Content images c come from domain A and
style images s from domain B of a two-domain source, `data.source = 'unpaired:SPEC_A,SPEC_B'`
(any two sources; jaxgen/data/unpaired.py), each randomly cropped to `task.crop` on its own (the
official code resizes to 512² and crops 256²). The encoder (`model.encoder`) is torchvision's
ImageNet VGG19 ('vgg19', the default: `objective.vgg_weights`, $JAXGEN_VGG19_WEIGHTS, the cache, a
download) or the official `vgg_normalised.pth` ('vgg_normalised': `objective.vgg_weights`,
$JAXGEN_ADAIN_VGG_WEIGHTS or the cache; never downloaded, no hash being published), both found by
jaxgen.pretrained; jaxgen/models/adain.py says how they differ. `official_pretrained` runs the
official released networks (vgg_normalised.pth and decoder.pth) without training:
`python -m jaxgen.stylize --official`.

How it fits the recipe interface (jaxgen/recipes/__init__.py): the task is a `StyleTask`, whose
inputs carry the content and the style images stacked on the channel axis, [N, H, W, 3 + 3k]
in [-1, 1] (k ≥ 1 style images); `generate(state, inputs, labels, alpha=, style_weights=)` is
one pass: the k styles' AdaIN outputs blended by `style_weights` (default equal), pulled towards
the content by α (`sampling.alpha` when None). The frozen encoder's weights are part of the train
state (`encoder_params`, not trained), so a checkpoint or an exported file stylises on its own,
without the VGG weights file. The evaluator ('style', jaxgen.evaluation.StyleEvaluator) scores
fixed held-out content × style pairs with `style_scores` — the content and style losses of the
outputs — beside the content image itself as the output (`baseline_*`).
"""

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen import recipes
from jaxgen.data import unpaired
from jaxgen.errors import UserError
from jaxgen.models import adain as adain_models
from jaxgen.objectives import style as style_losses


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 [], completed updates
  rng: jax.Array             # uint32 [2], base key (the update itself is deterministic)
  decoder_params: Any        # g, trained
  opt_state: Any             # Adam's, of the decoder
  encoder_params: Any        # f: VGG19 to conv4_1, frozen (ImageNet weights)


def _to_input(image_uint8):
  return image_uint8.astype(np.float32) / 127.5 - 1.0


class StyleTask(unpaired.UnpairedTask):
  """Style transfer's examples from a two-domain source: the content image (domain A) and the
  style image (domain B), each cropped and flipped on its own (task.crop, task.flip), stacked on
  the channel axis as the network input. Evaluation pairs are held-out (A, B) examples, centre
  cropped; a user's pictures go through `python -m jaxgen.stylize`."""

  name = 'style'
  evaluator = 'style'  # jaxgen.evaluation.TASK_EVALUATORS
  apply_command = ('python -m jaxgen.stylize {where} --content=PHOTO --style=PAINTING '
                   '--out=OUT.png')
  size_multiple = adain_models.SIZE_MULTIPLE  # Sides that come back at their size.

  def __init__(self, task_config, channels, resolution, source_spec):
    super().__init__(task_config, channels, resolution, source_spec, model_name='adain')
    self.input_channels = 2 * channels  # Content, then one style image.

  def train_example(self, example, rng):
    """{'input': float32 [c, c, 6] content ‖ style in [-1, 1], 'image': uint8 [c, c, 3] the
    style crop, 'label'}."""
    pair = super().train_example(example, rng)
    return {'input': np.concatenate([pair['input'], _to_input(pair['image'])], axis=-1),
            'image': pair['image'], 'label': pair['label']}

  def eval_example(self, example, index, seed=0):
    """The `index`-th held-out pair: the centre crops (task.crop) of its A and B images."""
    del index, seed  # The pairing is the source's fixed one.
    content, style = self.centre(example['input']), self.centre(example['image'])
    return {'input': np.concatenate([_to_input(content), _to_input(style)], axis=-1),
            'image': style, 'label': example['label']}

  def user_input(self, image, mask=None):
    raise UserError('this is a style-transfer run, which needs a content and a style picture: '
                    'use python -m jaxgen.stylize --workdir=RUN --content=PHOTO --style=PAINTING '
                    '--out=OUT.png')


def lr_schedule(lr, lr_decay):
  """The official `adjust_learning_rate`: lr / (1 + lr_decay · i) for update i = 0, 1, ...."""
  return lambda count: lr / (1.0 + lr_decay * count)


class AdaIN(recipes.OnePassSampling):
  """Builds the encoder, decoder, losses and optimiser from a config (configs/adain.py)."""

  # The parts of the train state `generate` reads (what `jaxgen.export` writes): the decoder and
  # the frozen encoder, so an export stylises without the VGG weights file.
  generator_fields = ('decoder_params', 'encoder_params')
  # Keyword options of `generate` beyond (state, inputs, labels).
  sampling_options = ('alpha', 'style_weights')
  # What `model.init_from` takes from another adain run (jaxgen.trained.read_init_from).
  init_fields = ('decoder_params',)

  def __init__(self, config, num_classes, mesh=None):
    del num_classes, mesh  # Conditioned on images, not classes.
    obj, o = config.objective, config.optimizer
    if config.data.use_labels:
      raise UserError('AdaIN stylises images, it does not condition on classes: set '
                      'data.use_labels=False')
    if config.data.channels != 3:
      raise UserError(f'AdaIN\'s VGG19 encoder takes RGB images, not data.channels='
                      f'{config.data.channels}: set data.channels=3')
    self.num_classes = 0
    self.task = StyleTask(config.get('task', {}), config.data.channels, config.data.resolution,
                          config.data.source)
    multiple = adain_models.SIZE_MULTIPLE
    # relu4_1 has 1/8 of the pixels per side, and σ needs at least 2 of its positions.
    for key, size in (('task.crop' if self.task.crop else 'data.resolution',
                       self.task.train_size), ('data.resolution', config.data.resolution)):
      if size % multiple or size < 2 * multiple:
        raise UserError(f'{key}={size}: AdaIN\'s encoder halves the image three times and the '
                        f'decoder doubles it back, so give a multiple of {multiple} of at '
                        f'least {2 * multiple} pixels')
    for key in ('content_weight', 'style_weight'):
      if obj[key] < 0:
        raise UserError(f'objective.{key}={obj[key]} is negative: give a weight ≥ 0')
    if o.lr_decay < 0:
      raise UserError(f'optimizer.lr_decay={o.lr_decay} is negative: the official decay is '
                      'lr / (1 + lr_decay · step), lr_decay ≥ 0 (5e-5)')
    self.alpha = self._check_alpha(config.sampling.alpha, 'sampling.alpha')
    self.content_weight = float(obj.content_weight)
    self.style_weight = float(obj.style_weight)
    self.vgg_weights = obj.get('vgg_weights', '') or None
    self.encoder_kind = config.model.get('encoder', 'vgg19')
    if self.encoder_kind not in adain_models.ENCODERS:
      raise UserError(f'model.encoder={self.encoder_kind!r}: use "vgg19" (torchvision\'s ImageNet '
                      'VGG19) or "vgg_normalised" (the official AdaIN encoder, '
                      'vgg_normalised.pth)')
    dtype = jnp.dtype(config.model.dtype)
    self.decoder = adain_models.Decoder(dtype=dtype)
    self.encoder = adain_models.encoder(self.encoder_kind, dtype=dtype)
    self.learning_rate = lr_schedule(o.lr, o.lr_decay)
    self.tx = optax.adam(self.learning_rate, o.b1, o.b2, eps=o.eps)
    self.train_size = self.task.train_size
    self._encoder_params = None  # Loaded by prepare_training.

  @staticmethod
  def _check_alpha(alpha, key):
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # Also refuses NaN.
      raise UserError(f'{key}={alpha} must be in [0, 1] (1 = all style, 0 = the content)')
    return alpha

  # ----------------------------------------------------------------------------------------------
  # Training.

  def prepare_training(self):
    """Loads the encoder's weights (`model.encoder`): UserError naming the file when they cannot
    be found."""
    if self._encoder_params is None:
      if self.encoder_kind == 'vgg_normalised':
        self._encoder_params = adain_models.load_official_encoder(self.vgg_weights)
        return
      from jaxgen.models import vgg  # pylint: disable=import-outside-toplevel
      self._encoder_params = adain_models.encoder_params(
          vgg.load_params(19, weights=self.vgg_weights))

  def step_variant(self, step):
    """One update program for every step."""
    del step
    return ()

  def init_state(self, rng):
    """The decoder's initial weights and the encoder's: the loaded VGG19 weights after
    `prepare_training`, else zeros of their shapes (what `jax.eval_shape` and a restore need;
    training always prepares first)."""
    size = self.train_size // adain_models.SIZE_MULTIPLE
    decoder_params = self.decoder.init(jax.random.fold_in(rng, 1 << 30),
                                       jnp.zeros((1, size, size, 512)))['params']
    if self._encoder_params is not None:
      encoder_params = jax.tree.map(jnp.asarray, self._encoder_params)
    else:
      from jaxgen import pretrained  # pylint: disable=import-outside-toplevel
      encoder_params = pretrained.unflatten({
          k: jnp.zeros(s, jnp.float32)
          for k, s in adain_models.encoder_param_shapes(self.encoder_kind).items()})
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, decoder_params=decoder_params,
                      opt_state=self.tx.init(decoder_params), encoder_params=encoder_params)

  def _encode(self, encoder_params, images):
    return self.encoder.apply({'params': encoder_params}, images)

  def train_step(self, state, batch, variant=()):
    """One Adam update of the decoder. batch: {'input': float32 [B, c, c, 6] content ‖ style in
    [-1, 1], ...}."""
    del variant
    inputs = batch['input'].astype(jnp.float32)
    content, style = inputs[..., :3], inputs[..., 3:6]
    style_feats = self._encode(state.encoder_params, style)
    t = adain_models.adain(self._encode(state.encoder_params, content)['relu4_1'],
                           style_feats['relu4_1'])

    def loss_fn(decoder_params):
      images = self.decoder.apply({'params': decoder_params}, t)
      feats = self._encode(state.encoder_params, images)
      loss_c = style_losses.adain_content_loss(feats['relu4_1'], t)
      loss_s = style_losses.adain_style_loss(feats, style_feats, adain_models.ENCODER_LAYERS)
      return self.content_weight * loss_c + self.style_weight * loss_s, (loss_c, loss_s)

    (loss, (loss_c, loss_s)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.decoder_params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.decoder_params)
    new_state = state.replace(step=state.step + 1,
                              decoder_params=optax.apply_updates(state.decoder_params, updates),
                              opt_state=opt_state)
    # As the official log: the weighted terms.
    metrics = {'loss/content': self.content_weight * loss_c,
               'loss/style': self.style_weight * loss_s, 'loss/total': loss,
               'grad_norm/decoder': optax.global_norm(grads),
               'lr': self.learning_rate(state.step)}
    return new_state, metrics

  # ----------------------------------------------------------------------------------------------
  # Sampling.

  progress_metrics = ('loss/content', 'loss/style')

  def _style_weights(self, count, style_weights):
    if style_weights is None:
      return (1.0 / count,) * count
    weights = tuple(float(w) for w in style_weights)
    if len(weights) != count:
      raise UserError(f'{len(weights)} style weights for {count} style images: give one weight '
                      'per style image')
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
      raise UserError(f'style weights {weights}: give finite weights ≥ 0 with a positive sum')
    return tuple(w / sum(weights) for w in weights)

  def generate(self, state, inputs, labels=None, alpha=None, style_weights=None):
    """inputs [N, H, W, 3 + 3k] in [-1, 1]: the content image and k ≥ 1 style images (H, W
    multiples of 8) → images [N, H, W, 3] in ≈ [-1, 1]: the decoded α Σ w_k AdaIN(f(c), f(s_k))
    + (1 − α) f(c). alpha: None = sampling.alpha; style_weights: one per style (normalised to sum
    to 1), None = equal. UserError (while tracing) for bad options or inputs."""
    del labels
    inputs = jnp.asarray(inputs, jnp.float32)
    channels = inputs.shape[-1]
    if channels < 6 or channels % 3:
      raise UserError(f'AdaIN takes a content and at least one style image stacked on the channel '
                      f'axis (3 + 3k channels), not {channels} channels')
    h, w = inputs.shape[1:3]
    m = adain_models.SIZE_MULTIPLE
    if h % m or w % m or (h // m) * (w // m) < 2:
      raise UserError(f'AdaIN takes images whose sides are multiples of {m} with at least 2 '
                      f'positions at relu4_1 (1/{m} of each side), not {w}×{h}')
    alpha = self.alpha if alpha is None else self._check_alpha(alpha, 'alpha')
    weights = self._style_weights(channels // 3 - 1, style_weights)
    encode = lambda x: self._encode(state.encoder_params, x)['relu4_1']
    content_feat = encode(inputs[..., :3])
    style_feats = [encode(inputs[..., 3 * k:3 * k + 3]) for k in range(1, channels // 3)]
    t = adain_models.blend(content_feat, style_feats, weights, alpha)
    return self.decoder.apply({'params': state.decoder_params}, t)

  def style_scores(self, state, inputs, images):
    """Per-pair scores of `images` [N, H, W, 3] as stylisations of `inputs` [N, H, W, 6]
    (content ‖ style): {'content_loss', 'style_loss', 'loss'} each [N] — AdaIN's content loss
    against t = AdaIN(f(c), f(s)), its style loss against the style image, and λ_c·content +
    λ_s·style (the training objective, per pair)."""
    inputs = jnp.asarray(inputs, jnp.float32)
    style_feats = self._encode(state.encoder_params, inputs[..., 3:6])
    t = adain_models.adain(self._encode(state.encoder_params, inputs[..., :3])['relu4_1'],
                           style_feats['relu4_1'])
    feats = self._encode(state.encoder_params, jnp.asarray(images, jnp.float32))
    content = jnp.mean(jnp.square(feats['relu4_1'] - t), axis=(1, 2, 3))
    style = 0.0
    for name in adain_models.ENCODER_LAYERS:
      mean, std = style_losses.mean_std(feats[name])
      s_mean, s_std = style_losses.mean_std(style_feats[name])
      style = style + jnp.mean(jnp.square(mean - s_mean), axis=1) + jnp.mean(
          jnp.square(std - s_std), axis=1)
    return {'content_loss': content, 'style_loss': style,
            'loss': self.content_weight * content + self.style_weight * style}

  def param_count(self, state):
    return {'decoder': recipes.count_params(state.decoder_params),
            'encoder (frozen)': recipes.count_params(state.encoder_params)}


def official_config():
  """The settings of the official test.py, as a config of this recipe: the official encoder,
  α 1 (`official_pretrained`). Training settings are the official train.py's
  (configs/adain.py:official); they are unused at test time. The source names the official
  training data for the record; it is never opened."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict({
      'seed': 0,
      'data': {'source': 'unpaired:coco/train2014,wikiart/train', 'resolution': 512,
               'channels': 3, 'use_labels': False},
      'task': {'crop': 256, 'flip': False},
      'model': {'name': 'adain', 'dtype': 'float32', 'encoder': 'vgg_normalised',
                'init_from': ''},
      'objective': {'content_weight': 1.0, 'style_weight': 10.0, 'vgg_weights': ''},
      'optimizer': {'lr': 1e-4, 'lr_decay': 5e-5, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8},
      'sampling': {'alpha': 1.0}})


def official_pretrained(vgg_weights=None, decoder_weights=None):
  """The official released AdaIN (naoto0804/pytorch-AdaIN v0.0.0: vgg_normalised.pth and
  decoder.pth, found by jaxgen.pretrained: the given files, $JAXGEN_ADAIN_VGG_WEIGHTS /
  $JAXGEN_ADAIN_DECODER_WEIGHTS, or the cache) as a jaxgen.trained.TrainedRun at step 0, whose
  `generate` stylises as the official test.py (tests/test_adain.py checks the networks against
  the official code). UserError naming the file when one is missing."""
  from jaxgen import trained  # pylint: disable=import-outside-toplevel
  config = official_config()
  recipe = AdaIN(config, num_classes=0)
  encoder = adain_models.load_official_encoder(vgg_weights)
  decoder = adain_models.load_official_decoder(decoder_weights)
  state = trained.generator_state(recipe, {
      'decoder_params': jax.tree.map(jnp.asarray, decoder),
      'encoder_params': jax.tree.map(jnp.asarray, encoder)})
  return trained.TrainedRun(config=config, recipe=recipe, state=state, step=0, source=None)
