"""Neural style transfer by optimisation (Gatys, Ecker & Bethge 2016), as jcjohnson/neural-style.

The output image x is optimised, starting from the content image (or from noise), to minimise

  L(x) = α Σ_{l ∈ content} MSE(F_l(x), F_l(c))                       content (relu4_2)
       + β Σ_{l ∈ style}   MSE(G_l(x), Σ_i w_i G_l(s_i))              style (relu1_1 ... relu5_1)
       + γ ½ Σ (x[i, j] − x[i, j+1])² + (x[i, j] − x[i+1, j])²        total variation

with F_l the VGG19 activations of layer l, G_l = F_lᵀ F_l / (C·H·W) their Gram matrix, the
style images s_i blended with weights w_i normalised to sum to 1 (jaxgen/objectives/style.py has
the terms). What follows jcjohnson/neural-style (`neural_style.lua`) exactly: the layers, the
Gram normalisation by the number of elements, the means of the squared errors, the blend, the
total-variation term, the defaults α = 5, β = 100, γ = 1e-3, 1,000 iterations, Adam's learning
rate 10 and L-BFGS's 100 correction pairs, the output's long side 512 (bilinear scaling there,
Lanczos here) and style images scaled to `style_scale` × that. One default differs: the
optimisation starts from the content image (jcjohnson's `-init image`; his default is noise,
`init='random'` here).

Units. jcjohnson optimises the image in Caffe's units — pixels 0–256, the mean pixel subtracted —
and reads Caffe's VGG19, whose input is those pixels. jaxgen's VGG19 is torchvision's, whose
input is (x − μ) / σ per channel for x in [0, 1]: about 256·σ ≈ 58 times smaller. So the image is
optimised here in 0–256 pixel units too (the total-variation term and Adam's learning rate mean
what they mean there), and the VGG activations are multiplied by 256·mean(σ) (FEATURE_SCALE)
before the losses: for a ReLU network, which is positively homogeneous apart from its biases,
that puts torchvision's activations on Caffe's scale, so that α, β, γ keep their balance (the
style term, of fourth order in the activations, would otherwise be 58² times weaker relative to
the content term). The two VGG19s are separate trainings, so the balance carries over only as
far as their activations agree (not checked: Caffe's VGG19 is not at hand here).
Iteration counts differ in kind: jcjohnson counts function evaluations of torch's L-BFGS
(which has no line search); here an iteration is one update of optax's L-BFGS with its zoom line
search (one or more evaluations), or one Adam update. Each iteration is one jitted function.

Colour preservation (`preserve_colors`): Gatys, Bethge, Hertzmann & Shechtman (2016),
"Preserving color in neural artistic style transfer", luminance-only transfer: the transfer runs
on the luminance Y of the YIQ space (the images given to VGG are gray, Y in all three channels),
the style's luminance matched to the content's first (Y_s ← σ_c/σ_s (Y_s − μ_s) + μ_c), and the
output's Y is joined with the content image's I and Q (its chroma) before the conversion back to
RGB. (jcjohnson's `-original_colors` only swaps the chroma after a colour transfer.)

Usage:

  params = vgg.load_params(19)
  out = neural_style.transfer(params, content, [style], settings=neural_style.Settings())
  out.image                                     # float32 [H, W, 3] in [0, 1]

`python -m jaxgen.stylize` is the command line.
"""

import dataclasses
import functools
import math
import re
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.errors import UserError
from jaxgen.models import vgg
from jaxgen.objectives import style as style_losses

CONTENT_LAYERS = ('relu4_2',)
STYLE_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1')
OPTIMIZERS = ('lbfgs', 'adam')
INITS = ('content', 'random')
# Pixels are optimised in Caffe's units (0–256), as jcjohnson's image; VGG takes [-1, 1].
PIXEL_SCALE = 256.0
# torchvision VGG activations × this ≈ Caffe VGG activations (see the module docstring).
FEATURE_SCALE = PIXEL_SCALE * float(np.mean(vgg.IMAGENET_STD))

# YIQ (NTSC), rows Y, I, Q, for RGB in [0, 1].
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the image is optimised (defaults: jcjohnson/neural-style's; see the module docstring).

  Attributes:
    content_layers, style_layers: VGG19 layer names (jaxgen.models.vgg.layer_names(19)).
    content_weight, style_weight, tv_weight: α, β, γ (γ on pixels in 0–256 units).
    optimizer: 'lbfgs' (optax.lbfgs with its zoom line search) or 'adam'.
    iterations: optimiser updates.
    learning_rate: Adam's, in 0–256 pixel units (L-BFGS's step comes from its line search).
    lbfgs_memory: L-BFGS's stored (s, y) pairs (torch's default, 100).
    init: 'content' (the content image) or 'random' (the mean pixel plus 0.001·N(0, 1) noise in
      0–256 units, jcjohnson's -init random).
    seed: of the random init.
  """
  content_layers: Sequence[str] = CONTENT_LAYERS
  style_layers: Sequence[str] = STYLE_LAYERS
  content_weight: float = 5.0
  style_weight: float = 100.0
  tv_weight: float = 1e-3
  optimizer: str = 'lbfgs'
  iterations: int = 1000
  learning_rate: float = 10.0
  lbfgs_memory: int = 100
  init: str = 'content'
  seed: int = 0

  def check(self):
    """Raises UserError for a bad setting (named as the command-line flag)."""
    for flag, layers in (('--content_layers', self.content_layers),
                         ('--style_layers', self.style_layers)):
      try:
        vgg.check_outputs(19, tuple(layers))
      except UserError as e:
        raise UserError(f'{flag}={",".join(layers) if layers else ""}: {e}') from None
    for flag, value in (('--content_weight', self.content_weight),
                        ('--style_weight', self.style_weight), ('--tv_weight', self.tv_weight)):
      if not math.isfinite(value) or value < 0:
        raise UserError(f'{flag}={value} must be a finite number ≥ 0')
    if self.optimizer not in OPTIMIZERS:
      raise UserError(f'--optimizer={self.optimizer!r}: use {" or ".join(OPTIMIZERS)}')
    if self.init not in INITS:
      raise UserError(f'--init={self.init!r}: use {" or ".join(INITS)}')
    if self.iterations < 1:
      raise UserError(f'--iterations={self.iterations}: give at least 1')
    if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
      raise UserError(f'--learning_rate={self.learning_rate} must be a finite number > 0')
    if self.lbfgs_memory < 1:
      raise UserError(f'--lbfgs_memory={self.lbfgs_memory}: give at least 1')

  @property
  def layers(self):
    """Every VGG layer the losses read, deepest last."""
    order = vgg.layer_names(19)
    return tuple(sorted(set(self.content_layers) | set(self.style_layers), key=order.index))


def min_size(layers):
  """The fewest pixels per side an image needs for VGG19 to give every layer of `layers` at least
  one position: each 2×2 max-pool floors the size, and block b's layers follow b − 1 of them
  (pool b itself, b)."""
  def pools(name):
    block = int(re.match(r'[a-z]+(\d+)', name).group(1))
    return block if name.startswith('pool') else block - 1
  return max(2 ** pools(name) for name in layers)


def check_size(shape, layers, what):
  """UserError when an image of `shape` (H, W, ...) is too small for `layers`."""
  need = min_size(layers)
  if min(shape[:2]) < need:
    deepest = max(layers, key=vgg.layer_names(19).index)
    raise UserError(f'{what} is {shape[1]}×{shape[0]} px, too small for VGG19 layer {deepest} '
                    f'(at least {need} px per side): raise --size (or --style_scale)')


# ------------------------------------------------------------------------------------------------
# Colour.


def rgb_to_yiq(rgb):
  """[..., 3] RGB in [0, 1] → YIQ (Y in [0, 1])."""
  return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq):
  return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def luminance_only_inputs(content, styles):
  """The gray images luminance-only transfer runs on: the content's Y, and each style's Y matched
  to the content's mean and standard deviation; each [H, W, 3] with Y in all channels."""
  y_c = rgb_to_yiq(content)[..., 0]
  mu_c, sigma_c = y_c.mean(), y_c.std()
  gray = lambda y: np.repeat(y[..., None], 3, axis=-1).astype(np.float32)
  matched = []
  for s in styles:
    y_s = rgb_to_yiq(s)[..., 0]
    matched.append(gray((y_s - y_s.mean()) * (sigma_c / max(y_s.std(), 1e-8)) + mu_c))
  return gray(y_c), matched


def restore_colors(output, content):
  """The output's luminance Y with the content's chroma (I, Q), as RGB (not clipped)."""
  yiq = rgb_to_yiq(content)
  yiq[..., 0] = rgb_to_yiq(output)[..., 0]
  return yiq_to_rgb(yiq).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The objective and its optimisation.


def _features_fn(layers):
  """fn(vgg_params, pixels [B, H, W, 3] in 0–256 units) → {layer: activations × FEATURE_SCALE}.
  (The parameters are an argument, not a constant of the compiled programs: XLA would spend
  minutes folding 20 M constants.)"""
  net = vgg.VGG(depth=19, outputs=tuple(layers))

  def features(vgg_params, pixels):
    out = net.apply({'params': vgg_params}, pixels / (PIXEL_SCALE / 2) - 1.0)
    return {k: v * FEATURE_SCALE for k, v in out.items()}

  return features


@functools.lru_cache(maxsize=None)
def features_program(layers):
  """`_features_fn(layers)` jitted, one per tuple of layers: every image of a shape compiles once
  (the content, each style size), however many calls."""
  return jax.jit(_features_fn(layers))


def style_targets(vgg_params, styles, weights, layers):
  """{layer: Σ_i w_i G_layer(s_i)} [C, C] for style images `styles` (each [H_i, W_i, 3] in 0–256
  units, sizes may differ) blended with `weights` (normalised here to sum to 1)."""
  features_fn = features_program(tuple(layers))
  weights = np.asarray(weights, np.float64)
  weights = weights / weights.sum()
  targets = {k: 0.0 for k in layers}
  for image, w in zip(styles, weights):
    feats = features_fn(vgg_params, jnp.asarray(image, jnp.float32)[None])
    for k in layers:
      targets[k] = targets[k] + float(w) * style_losses.gram_matrix(feats[k])[0]
  return targets


def make_objective(vgg_params, content, styles, weights, settings):
  """(objective, targets): objective(pixels [1, H, W, 3] in 0–256 units, targets) → (L,
  {'content', 'style', 'tv'}: the weighted terms), and its targets (the VGG parameters, the
  content's activations, the blended Gram matrices), a pytree to pass to it.

  content: [H, W, 3] in 0–256 units; styles: a list of such (any sizes); weights: one per style."""
  vgg_params = jax.device_put(vgg_params)  # Once, not at every call.
  features_fn = _features_fn(settings.layers)
  content_feats = features_program(tuple(settings.content_layers))(
      vgg_params, jnp.asarray(content, jnp.float32)[None])
  targets = {'vgg': vgg_params, 'content': content_feats,
             'grams': style_targets(vgg_params, styles, weights, settings.style_layers)}

  def objective(pixels, targets):
    feats = features_fn(targets['vgg'], pixels)
    terms = {
        'content': settings.content_weight * sum(
            style_losses.content_loss(feats[k], targets['content'][k])
            for k in settings.content_layers),
        'style': settings.style_weight * style_losses.style_loss(feats, targets['grams']),
        'tv': settings.tv_weight * jnp.sum(style_losses.total_variation(pixels)),
    }
    return terms['content'] + terms['style'] + terms['tv'], terms

  return objective, targets


def make_step(objective, settings):
  """(init(pixels) → optimiser state, step(pixels, state, targets) → (pixels, state, L before the
  step)): one optimiser update as one jitted function."""
  if settings.optimizer == 'adam':
    # jcjohnson: torch optim.adam with its defaults (β 0.9, 0.999, ε 1e-8) and -learning_rate.
    tx = optax.adam(settings.learning_rate)

    def step(pixels, state, targets):
      loss, grad = jax.value_and_grad(lambda x: objective(x, targets)[0])(pixels)
      updates, state = tx.update(grad, state, pixels)
      return optax.apply_updates(pixels, updates), state, loss
  else:
    tx = optax.lbfgs(memory_size=settings.lbfgs_memory)

    def step(pixels, state, targets):
      value_fn = lambda x: objective(x, targets)[0]
      # The line search has evaluated L and ∇L at the accepted point: reused from the state.
      loss, grad = optax.value_and_grad_from_state(value_fn)(pixels, state=state)
      updates, state = tx.update(grad, state, pixels, value=loss, grad=grad, value_fn=value_fn)
      return optax.apply_updates(pixels, updates), state, loss

  def init(pixels):
    # Strongly typed leaves: optax's initial line-search info holds weakly typed scalars, which
    # its updates do not, and the step would compile twice.
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), tx.init(pixels))

  return init, jax.jit(step)


@dataclasses.dataclass
class Result:
  image: np.ndarray          # float32 [H, W, 3] in [0, 1] (clipped), colours restored if asked
  losses: dict               # the final weighted terms and 'total', floats
  initial_loss: float        # L at the start
  iterations: int
  seconds: float             # the whole optimisation, compilation included
  iterations_per_second: float  # after the first iteration (which compiles the step)


def initial_pixels(content, settings):
  """The starting image in 0–256 units [1, H, W, 3]."""
  if settings.init == 'content':
    return jnp.asarray(content, jnp.float32)[None]
  noise = np.random.default_rng(settings.seed).standard_normal(content.shape)
  mean = PIXEL_SCALE * np.asarray(vgg.IMAGENET_MEAN)
  return jnp.asarray(mean + 0.001 * noise, jnp.float32)[None]


def transfer(vgg_params, content, styles, style_weights=None, settings=Settings(),
             preserve_colors=False, callback: Optional[Callable[[int, float], None]] = None):
  """Gatys et al.'s style transfer of `styles` onto `content`.

  Args:
    vgg_params: VGG19 parameters (jaxgen.models.vgg.load_params(19)).
    content: float [H, W, 3] RGB in [0, 1]; the output has its size.
    styles: a list of float [H_i, W_i, 3] RGB in [0, 1], any sizes.
    style_weights: one blending weight per style (normalised to sum to 1); default equal.
    settings: a `Settings`.
    preserve_colors: luminance-only transfer (see the module docstring).
    callback: called as callback(iteration, L) after each iteration (1-based; L before it).

  Returns:
    a `Result`.

  Raises:
    UserError: a bad setting, weight list, or an image too small for the layers.
  """
  settings.check()
  styles = list(styles)
  if not styles:
    raise UserError('give at least one style image')
  weights = [1.0] * len(styles) if style_weights is None else [float(w) for w in style_weights]
  if len(weights) != len(styles):
    raise UserError(f'{len(weights)} style weights for {len(styles)} style images: give one '
                    'weight per style image')
  if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
    raise UserError(f'style weights {weights}: give finite weights ≥ 0 with a positive sum')
  check_size(np.shape(content), settings.layers, 'the content image')
  for i, s in enumerate(styles):
    check_size(np.shape(s), settings.style_layers, f'style image {i + 1}')
  rgb_content = np.asarray(content, np.float32)
  if preserve_colors:
    content, styles = luminance_only_inputs(rgb_content, styles)
  to_pixels = lambda x: np.asarray(x, np.float32) * PIXEL_SCALE
  objective, targets = make_objective(vgg_params, to_pixels(content),
                                      [to_pixels(s) for s in styles], weights, settings)
  init, step = make_step(objective, settings)
  pixels = initial_pixels(to_pixels(content), settings)
  state = init(pixels)
  start = time.perf_counter()
  first_done = None
  initial_loss = None
  for i in range(settings.iterations):
    pixels, state, loss = step(pixels, state, targets)
    if i == 0:
      initial_loss = float(loss)
      first_done = time.perf_counter()
    if callback is not None:
      callback(i + 1, float(loss))
  jax.block_until_ready(pixels)
  end = time.perf_counter()
  total, terms = jax.jit(objective)(pixels, targets)
  losses = {k: float(v) for k, v in terms.items()}
  losses['total'] = float(total)
  rest = settings.iterations - 1
  rate = rest / (end - first_done) if rest and end > first_done else float('nan')
  image = np.asarray(pixels[0], np.float32) / PIXEL_SCALE
  if preserve_colors:
    image = restore_colors(image, rgb_content)
  return Result(image=np.clip(image, 0.0, 1.0), losses=losses, initial_loss=initial_loss,
                iterations=settings.iterations, seconds=end - start,
                iterations_per_second=rate)
