"""Paints a photo in the style of a painting: Gatys et al.'s optimisation, or a trained AdaIN.

    python -m jaxgen.stylize --content=photo.jpg --style=painting.jpg --out=out.png
    python -m jaxgen.stylize --content=photo.jpg --style=a.jpg,b.jpg --style_weights=0.7,0.3 \\
        --out=out.png --size=384 --optimizer=adam --iterations=500 --preserve_colors
    python -m jaxgen.stylize --workdir=/tmp/adain --content=photo.jpg --style=painting.jpg \\
        --alpha=0.8 --out=out.png                      # one forward pass of a trained AdaIN run
    python -m jaxgen.stylize --network=adain.npz ...   # its file from `python -m jaxgen.export`
    python -m jaxgen.stylize --official --content=photo.jpg --style=painting.jpg --out=out.png
                                     # the official released AdaIN (vgg_normalised.pth, decoder.pth)

Without --workdir/--network: Gatys et al. (2016) as jcjohnson/neural-style — the output image,
`--size` pixels on its long side, is optimised from the content image (`--init`) by L-BFGS or
Adam for VGG19 content loss (`--content_layers`, relu4_2) + Gram-matrix style loss
(`--style_layers`, relu1_1 ... relu5_1) + total variation, with jcjohnson's weights; the style
images are scaled to `--style_scale` × `--size` and blended by `--style_weights`
(jaxgen/neural_style.py explains the losses and their units). It needs torchvision's ImageNet
VGG19 weights: `--vgg_weights=FILE` (the published vgg19-dcbb9e9d.pth or a converted .npz),
$JAXGEN_VGG19_WEIGHTS, the cache, or a download (`python -m jaxgen.pretrained fetch vgg19`).
A progress bar shows the loss; the end reports the iterations per second (measured on a shared
2-core CPU at --size=256: Adam 0.46, L-BFGS 0.09 iterations/s; at 512: 0.14 and 0.03 — see the
README; a GPU is the place for 1,000 iterations at 512).

With --workdir (a `python -m jaxgen.main --config=configs/adain.py` run; `--step`, `--best`),
--network, or --official (naoto0804/pytorch-AdaIN's released vgg_normalised.pth and decoder.pth:
`--vgg_weights` / `--decoder_weights`, $JAXGEN_ADAIN_VGG_WEIGHTS / $JAXGEN_ADAIN_DECODER_WEIGHTS,
or the cache; fetched by hand from the release, since no hash is published for them): AdaIN
(Huang & Belongie 2017) in one pass of the decoder, with the
content–style trade-off `--alpha` (1 = all style) and several styles blended by
`--style_weights`. The content is scaled to `--size` on its long side with its sides rounded to
multiples of 8 (the network's down-samplings); each style image is centre-cropped to the
content's aspect ratio and scaled to its size (AdaIN uses only its features' statistics).

`--preserve_colors` (either method): luminance-only transfer (Gatys et al. 2016, "Preserving
color"): the transfer runs on luminance and the output keeps the content's chroma (YIQ).

The output is written atomically (a temporary file renamed into place); an existing file is
kept unless `--overwrite`. Every check — files, weights, options, the run — is made before the
work starts and before anything is written.
"""

import argparse
import logging
import math
import os
import sys
import time
import types

from jaxgen.cli import add_checkpoint_choice, run_command
from jaxgen.errors import UserError

log = logging.getLogger('jaxgen')

# Pillow's format for each output extension.
OUTPUT_FORMATS = {'.png': 'PNG', '.jpg': 'JPEG', '.jpeg': 'JPEG', '.webp': 'WEBP',
                  '.bmp': 'BMP', '.tif': 'TIFF', '.tiff': 'TIFF'}
DEFAULT_SIZE = 512  # jcjohnson's -image_size; AdaIN's test-time content size.

# Options of one method only: (flag, args field). Their defaults are None, so that giving one to
# the other method is refused instead of ignored.
GATYS_ONLY = (('--style_scale', 'style_scale'), ('--content_layers', 'content_layers'),
              ('--style_layers', 'style_layers'), ('--content_weight', 'content_weight'),
              ('--style_weight', 'style_weight'), ('--tv_weight', 'tv_weight'),
              ('--optimizer', 'optimizer'), ('--iterations', 'iterations'),
              ('--learning_rate', 'learning_rate'), ('--lbfgs_memory', 'lbfgs_memory'),
              ('--init', 'init'), ('--seed', 'seed'))
ADAIN_ONLY = (('--alpha', 'alpha'), ('--decoder_weights', 'decoder_weights'))


def parse_args(argv):
  from jaxgen import neural_style  # pylint: disable=import-outside-toplevel
  d = neural_style.Settings()
  parser = argparse.ArgumentParser(prog='python -m jaxgen.stylize',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--content', required=True, help='the picture to repaint')
  parser.add_argument('--style', required=True,
                      help='the style picture, or several separated by commas')
  parser.add_argument('--style_weights', default=None,
                      help='one blending weight per style picture, e.g. 0.7,0.3 (normalised to '
                      'sum to 1); default equal')
  parser.add_argument('--out', required=True, help='the picture to write (.png, .jpg, ...)')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
  parser.add_argument('--size', type=int, default=DEFAULT_SIZE,
                      help=f'pixels on the output\'s long side (default {DEFAULT_SIZE})')
  parser.add_argument('--preserve_colors', action='store_true',
                      help='luminance-only transfer: keep the content\'s colours')
  gatys = parser.add_argument_group('Gatys et al. (without --workdir/--network)')
  gatys.add_argument('--style_scale', type=float, default=None,
                     help='style pictures\' long side as a multiple of --size (default 1)')
  gatys.add_argument('--content_layers', default=None,
                     help='VGG19 layers of the content loss (default '
                     f'{",".join(d.content_layers)})')
  gatys.add_argument('--style_layers', default=None,
                     help=f'VGG19 layers of the style loss (default {",".join(d.style_layers)})')
  gatys.add_argument('--content_weight', type=float, default=None,
                     help=f'α (default {d.content_weight:g})')
  gatys.add_argument('--style_weight', type=float, default=None,
                     help=f'β (default {d.style_weight:g})')
  gatys.add_argument('--tv_weight', type=float, default=None,
                     help=f'total variation weight γ, on 0–256 pixels (default {d.tv_weight:g})')
  gatys.add_argument('--optimizer', default=None, help=f'lbfgs or adam (default {d.optimizer})')
  gatys.add_argument('--iterations', type=int, default=None,
                     help=f'optimiser updates (default {d.iterations})')
  gatys.add_argument('--learning_rate', type=float, default=None,
                     help=f'Adam\'s, in 0–256 pixel units (default {d.learning_rate:g})')
  gatys.add_argument('--lbfgs_memory', type=int, default=None,
                     help=f'L-BFGS correction pairs (default {d.lbfgs_memory})')
  gatys.add_argument('--init', default=None,
                     help=f'content or random: where the optimisation starts (default {d.init})')
  gatys.add_argument('--seed', type=int, default=None, help='of --init=random (default 0)')
  parser.add_argument('--vgg_weights', default=None,
                      help='Gatys et al.: torchvision VGG19 weights, vgg19-dcbb9e9d.pth or a '
                      'converted .npz (default: $JAXGEN_VGG19_WEIGHTS, the cache, a download); '
                      '--official: the official vgg_normalised.pth (default: '
                      '$JAXGEN_ADAIN_VGG_WEIGHTS, the cache)')
  adain = parser.add_argument_group('AdaIN (a trained run, or the official release)')
  which = adain.add_mutually_exclusive_group()
  which.add_argument('--workdir', default=None, help='a jaxgen.main workdir of an adain run')
  which.add_argument('--network', default=None,
                     help='an adain generator file written by `python -m jaxgen.export`')
  which.add_argument('--official', action='store_true',
                     help='the official released AdaIN networks (vgg_normalised.pth, decoder.pth)')
  adain.add_argument('--decoder_weights', default=None,
                     help='--official: the official decoder.pth (default: '
                     '$JAXGEN_ADAIN_DECODER_WEIGHTS, the cache)')
  add_checkpoint_choice(adain, 'use')
  adain.add_argument('--alpha', type=float, default=None,
                     help='content–style trade-off in [0, 1], 1 = all style (default: the run\'s '
                     'sampling.alpha, 1)')
  args = parser.parse_args(argv)
  if args.network and (args.step is not None or args.best):
    parser.error('--step and --best pick a checkpoint of a --workdir; a --network has one')
  if not args.workdir and (args.step is not None or args.best):
    parser.error('--step and --best pick a checkpoint of an AdaIN --workdir')
  return args


# ------------------------------------------------------------------------------------------------
# Checks and pictures.


def check_out(path, overwrite):
  """UserError unless `path` can be written: a known extension, an existing folder, and no file
  there already (without --overwrite)."""
  from jaxgen.errors import check_local  # pylint: disable=import-outside-toplevel
  check_local(path, '--out')
  ext = os.path.splitext(path)[1].lower()
  if ext not in OUTPUT_FORMATS:
    raise UserError(f'--out={path}: unknown picture extension {ext or "(none)"!r}; use one of '
                    f'{", ".join(OUTPUT_FORMATS)}')
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f'--out={path}: its folder {folder} does not exist')
  if os.path.isdir(path):
    raise UserError(f'--out={path} is a folder: give a file name')
  if os.path.exists(path) and not overwrite:
    raise UserError(f'{path} already exists: choose another --out, or pass --overwrite to '
                    'replace it')


def read(path, flag):
  """uint8 [H, W, 3] of a picture; UserError naming the flag when it is missing or unreadable."""
  from jaxgen import tiling  # pylint: disable=import-outside-toplevel
  if not os.path.exists(path):
    raise UserError(f'{flag}={path} does not exist: give a picture file')
  if os.path.isdir(path):
    raise UserError(f'{flag}={path} is a folder: give a picture file')
  image = tiling.read_picture(path, 3)
  if image is None:
    raise UserError(f'{flag}={path} is not a readable picture (jpg, png, webp, bmp, tiff, ...)')
  return image


def style_paths(spec):
  paths = [p.strip() for p in spec.split(',')]
  if not all(paths):
    raise UserError(f'--style={spec!r} has an empty name: separate style pictures with commas')
  return paths


def style_weights(spec, count):
  """The weights of --style_weights (None: equal), one per style picture."""
  if spec is None:
    return [1.0] * count
  try:
    weights = [float(w) for w in spec.split(',')]
  except ValueError:
    raise UserError(f'--style_weights={spec!r} is not a list of numbers: write e.g. 0.7,0.3') \
        from None
  if len(weights) != count:
    raise UserError(f'--style_weights={spec} has {len(weights)} weight(s) for {count} style '
                    'picture(s) in --style: give one weight per style picture')
  if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
    raise UserError(f'--style_weights={spec}: give finite weights ≥ 0 with a positive sum')
  return weights


def scaled_size(shape, long_side, multiple=1):
  """(H, W) of a picture of `shape` scaled to `long_side` pixels on its long side, each side
  rounded to a multiple of `multiple` (at least one multiple)."""
  h, w = shape[:2]
  scale = long_side / max(h, w)
  return tuple(max(multiple, int(round(n * scale / multiple)) * multiple) for n in (h, w))


def resize(image, size):
  """uint8 [H, W, 3] → float32 [size[0], size[1], 3] in [0, 1] (Lanczos)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if image.shape[:2] != tuple(size):
    image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.LANCZOS))
  return np.asarray(image, np.float32) / 255.0


def crop_to_aspect(image, size):
  """The centred crop of `image` with the aspect ratio of `size` (H, W)."""
  h, w = image.shape[:2]
  target = size[1] / size[0]
  if w / h > target:
    new_w = max(1, int(round(h * target)))
    left = (w - new_w) // 2
    return image[:, left:left + new_w]
  new_h = max(1, int(round(w / target)))
  top = (h - new_h) // 2
  return image[top:top + new_h]


def write(image, path):
  """Writes float [H, W, 3] in [0, 1] to `path` atomically (a temporary file in the same folder,
  renamed into place)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
  ext = os.path.splitext(path)[1].lower()
  tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                     f'.{os.path.basename(path)}.tmp-{os.getpid()}{ext}')
  try:
    Image.fromarray(pixels).save(tmp, format=OUTPUT_FORMATS[ext])
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _refuse_other_method(args, flags, method):
  given = [flag for flag, field in flags if getattr(args, field) is not None]
  if given:
    one = len(given) == 1
    raise UserError(f'{", ".join(given)} {"is" if one else "are"} for {method} only: leave '
                    f'{"it" if one else "them"} out')


# ------------------------------------------------------------------------------------------------
# The two methods.


def gatys_settings(args):
  """neural_style.Settings from the flags (None: the default)."""
  from jaxgen import neural_style  # pylint: disable=import-outside-toplevel
  given = {field: getattr(args, field) for _, field in GATYS_ONLY
           if field not in ('style_scale', 'vgg_weights') and getattr(args, field) is not None}
  for key in ('content_layers', 'style_layers'):
    if key in given:
      given[key] = tuple(n.strip() for n in given[key].split(',') if n.strip())
  settings = neural_style.Settings(**given)
  settings.check()
  return settings


def run_gatys(args, content, styles, weights):
  """Gatys et al.'s optimisation; returns (image [H, W, 3] in [0, 1], summary text)."""
  from jaxgen import neural_style, summaries  # pylint: disable=import-outside-toplevel
  from jaxgen.models import vgg  # pylint: disable=import-outside-toplevel
  _refuse_other_method(args, ADAIN_ONLY, 'AdaIN (--workdir/--network/--official)')
  settings = gatys_settings(args)
  style_scale = 1.0 if args.style_scale is None else args.style_scale
  if not math.isfinite(style_scale) or style_scale <= 0:
    raise UserError(f'--style_scale={args.style_scale} must be a finite number > 0')
  size = scaled_size(content.shape, args.size)
  neural_style.check_size(size, settings.layers, f'the output at --size={args.size}')
  style_long = math.ceil(style_scale * args.size)
  style_sizes = [scaled_size(s.shape, style_long) for s in styles]
  for i, s in enumerate(style_sizes):
    neural_style.check_size(s, settings.style_layers, f'style picture {i + 1} at --style_scale='
                            f'{style_scale:g}')
  params = vgg.load_params(19, weights=args.vgg_weights)  # UserError naming the file.
  bar = summaries.progress_bar(settings.iterations, 0)
  bar.set_description(settings.optimizer)

  def progress(iteration, loss):
    del iteration
    bar.update(1)
    bar.set_postfix({'loss': f'{loss:.4g}'}, refresh=False)

  try:
    result = neural_style.transfer(params, resize(content, size),
                                   [resize(s, z) for s, z in zip(styles, style_sizes)], weights,
                                   settings, args.preserve_colors, progress)
  finally:
    bar.close()
  terms = ', '.join(f'{k} {v:.4g}' for k, v in result.losses.items() if k != 'total')
  return result.image, (
      f'{settings.iterations} {settings.optimizer} iterations in {result.seconds:.1f} s, '
      f'{result.iterations_per_second:.2f} it/s after the first (which compiles); loss '
      f'{result.initial_loss:.4g} → {result.losses["total"]:.4g} ({terms})')


def run_adain(args, content, styles, weights):
  """A trained AdaIN decoder, one pass; returns (image [H, W, 3] in [0, 1], summary text)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jaxgen import neural_style, parallel, trained  # pylint: disable=import-outside-toplevel
  _refuse_other_method(args, GATYS_ONLY, 'Gatys et al. (without --workdir/--network/--official)')
  if not args.official:
    for flag, value in (('--vgg_weights', args.vgg_weights),
                        ('--decoder_weights', args.decoder_weights)):
      if value is not None:
        users = 'Gatys et al. or --official' if flag == '--vgg_weights' else '--official'
        raise UserError(f'{flag} names weights for {users}; an AdaIN --workdir or --network '
                        'holds its own networks: leave it out')
  alpha = args.alpha  # None: the run's sampling.alpha.
  if alpha is not None and not 0.0 <= alpha <= 1.0:  # Also refuses NaN.
    raise UserError(f'--alpha={args.alpha} must be in [0, 1] (1 = all style, 0 = the content)')
  name = args.network or args.workdir or 'the official AdaIN release'
  if args.official:
    from jaxgen.recipes import adain  # pylint: disable=import-outside-toplevel
    restored = adain.official_pretrained(args.vgg_weights, args.decoder_weights)
  elif args.network:
    restored = trained.load_generator(args.network)
  else:
    restored = trained.restore(args.workdir, args.step, args.best, parallel.create_mesh(),
                               need_data=False)
  task = restored.recipe.task
  if getattr(task, 'name', None) != 'style':
    raise UserError(f'{name} is a {restored.config.model.name!r} run, '
                    'not a style-transfer (adain) run: train one with configs/adain.py, or leave '
                    '--workdir/--network out for Gatys et al.\'s method')
  size = scaled_size(content.shape, args.size, task.size_multiple)
  if (size[0] // task.size_multiple) * (size[1] // task.size_multiple) < 2:
    raise UserError(f'--size={args.size} makes the content {size[1]}×{size[0]} px, too small '
                    f'for AdaIN (its relu4_1 features, 1/{task.size_multiple} of each side, need '
                    'at least 2 positions): raise --size')
  rgb_content = resize(content, size)
  rgb_styles = [resize(crop_to_aspect(s, size), size) for s in styles]
  if args.preserve_colors:
    net_content, net_styles = neural_style.luminance_only_inputs(rgb_content, rgb_styles)
  else:
    net_content, net_styles = rgb_content, rgb_styles
  inputs = np.concatenate([net_content] + list(net_styles), axis=-1)[None] * 2.0 - 1.0
  total = sum(weights)
  # The fields `generate` reads, as a dict: a restored TrainState or an export's namespace.
  fields = {f: getattr(restored.state, f) for f in restored.recipe.generator_fields}
  generate = jax.jit(lambda fields, x: restored.recipe.generate(
      types.SimpleNamespace(**fields), x, None, alpha=alpha,
      style_weights=tuple(w / total for w in weights)))
  start = time.perf_counter()
  out = np.asarray(jax.device_get(generate(fields, inputs)))[0]
  seconds = time.perf_counter() - start
  image = (out + 1.0) / 2.0
  if args.preserve_colors:
    image = neural_style.restore_colors(image, rgb_content)
  shown = restored.config.sampling.alpha if alpha is None else alpha
  what = ('AdaIN, the official release' if args.official else
          f'AdaIN step {restored.step} of {name}')
  return np.clip(image, 0.0, 1.0), (f'{what}, α {shown:g}, in {seconds:.1f} s (compilation '
                                    'included)')


def run(args):
  """Executes the parsed command; returns the summary line."""
  check_out(args.out, args.overwrite)
  if args.size < 1:
    raise UserError(f'--size={args.size}: give the output\'s long side in pixels')
  content = read(args.content, '--content')
  paths = style_paths(args.style)
  styles = [read(p, '--style') for p in paths]
  weights = style_weights(args.style_weights, len(paths))
  if args.workdir or args.network or args.official:
    image, summary = run_adain(args, content, styles, weights)
  else:
    image, summary = run_gatys(args, content, styles, weights)
  if os.path.exists(args.out) and not args.overwrite:  # Appeared while we worked.
    raise UserError(f'{args.out} appeared while stylising: choose another --out, or pass '
                    '--overwrite to replace it')
  write(image, args.out)
  return f'wrote {args.out} ({image.shape[1]}×{image.shape[0]}): {summary}'


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args, lambda summary: summary)


if __name__ == '__main__':
  sys.exit(main())
