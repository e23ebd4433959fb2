"""Applies a trained image-to-image model to your pictures.

    python -m jaxgen.translate --workdir=/tmp/superres --input=photo.png --outdir=out
    python -m jaxgen.translate --workdir=RUN --input=folder/ --outdir=out --best
    python -m jaxgen.translate --workdir=/tmp/pix2pix --input=photo.png --mask=holes.png --outdir=out
    python -m jaxgen.translate --network=G.npz --input=scans/ --outdir=out   # jaxgen.export's file
    python -m jaxgen.translate --workdir=/tmp/cyclegan --input=zebras/ --outdir=out --direction=BtoA

Runs the EMA generator of a run (the newest checkpoint; `--step=N`; `--best`) or of an exported
`--network` on one picture or every picture in a folder (recursively), at any size and aspect
ratio: the picture is cut into `--tile`-pixel tiles that overlap by `--overlap` pixels and the
outputs are blended across the seams (jaxgen/tiling.py). What goes in depends on the run's
task: super-resolution and denoising take the picture itself (the output is `task.scale` times
larger for SR); colourisation takes its luma (colour or grayscale pictures); inpainting needs
holes — `--mask=FILE` (one picture) or `--mask=FOLDER` (a mask per picture, same relative name,
any image format; white = fill), or `--mask_color=#RRGGBB` (pixels of that colour, ±8 per
channel, are the holes); paired (pix2pix) models take the A image; unpaired (CycleGAN) models
translate A → B, or B → A with `--direction=BtoA`. Each output is OUT/<relative name>.png.
Existing files are never replaced without `--overwrite`; unreadable pictures are skipped with
one warning each. Reads the workdir and never writes to it.
"""

import argparse
import logging
import os
import sys

from jaxgen import trained
from jaxgen.cli import add_checkpoint_choice, run_command
from jaxgen.errors import UserError, check_local

log = logging.getLogger('jaxgen')


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.translate',
                                   description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a jaxgen.main workdir of an image-to-image run')
  source.add_argument('--network', help='a generator file written by `python -m jaxgen.export`')
  parser.add_argument('--input', required=True, help='a picture, or a folder of pictures')
  parser.add_argument('--outdir', required=True, help='folder for the outputs (created)')
  add_checkpoint_choice(parser, 'apply')
  parser.add_argument('--mask', default=None,
                      help='inpainting: a mask picture (white = fill) or a folder of them')
  parser.add_argument('--mask_color', default=None,
                      help='inpainting: the colour that marks holes in the pictures, #RRGGBB')
  parser.add_argument('--direction', default=None, choices=('AtoB', 'BtoA'),
                      help='unpaired (CycleGAN) models: translate A → B (default) or B → A')
  parser.add_argument('--tile', type=int, default=256,
                      help='input pixels per tile side (rounded up to what the network needs); '
                      'default 256')
  parser.add_argument('--overlap', type=int, default=None,
                      help='input pixels shared by neighbouring tiles; default tile / 4')
  parser.add_argument('--batch_size', type=int, default=4, help='tiles per network call')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace outputs of the same names already in OUTDIR')
  args = parser.parse_args(argv)
  if args.network and (args.step is not None or args.best):
    parser.error('--step and --best pick a checkpoint of a --workdir; a --network has one')
  if args.tile < 1 or args.batch_size < 1:
    parser.error('--tile and --batch_size must be positive')
  if args.mask and args.mask_color:
    parser.error('give --mask or --mask_color, not both')
  return args


# Flags that become keyword options of the recipe's `generate` (its `sampling_options`), by the
# option's name; a model whose recipe lacks one refuses its flag.
OPTIONS = ('direction',)


def _parse_colour(text):
  value = text.lstrip('#')
  if len(value) != 6 or any(c not in '0123456789abcdefABCDEF' for c in value):
    raise UserError(f'--mask_color={text!r} is not a colour: write it as #RRGGBB, e.g. #FF00FF')
  return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))


def list_inputs(path):
  """[(path, relative name without extension)] of the pictures at `path`."""
  from jaxgen.data.folder import IMAGE_EXTENSIONS, list_images  # pylint: disable=import-outside-toplevel
  if os.path.isdir(path):
    rels = list_images(path)
    if not rels:
      raise UserError(f'--input={path} holds no pictures ({"/".join(IMAGE_EXTENSIONS)})')
    return [(os.path.join(path, r), os.path.splitext(r)[0]) for r in rels]
  if not os.path.isfile(path):
    raise UserError(f'--input={path} does not exist: give a picture or a folder of pictures')
  return [(path, os.path.splitext(os.path.basename(path))[0])]


def find_masks(args, inputs):
  """{input path: mask path} for --mask (a file for one input, or a folder by relative name)."""
  from jaxgen.data.folder import IMAGE_EXTENSIONS  # pylint: disable=import-outside-toplevel
  if os.path.isfile(args.mask):
    if len(inputs) != 1:
      raise UserError(f'--mask={args.mask} is one file but --input has {len(inputs)} pictures: '
                      'give a folder of masks named as the pictures')
    return {inputs[0][0]: args.mask}
  if not os.path.isdir(args.mask):
    raise UserError(f'--mask={args.mask} does not exist: give a mask picture or a folder')
  masks, missing = {}, []
  for path, rel in inputs:
    found = [os.path.join(args.mask, rel + ext) for ext in IMAGE_EXTENSIONS
             if os.path.isfile(os.path.join(args.mask, rel + ext))]
    if found:
      masks[path] = found[0]
    else:
      missing.append(rel)
  if missing:
    raise UserError(f'--mask={args.mask} has no mask for {len(missing)} picture(s) (first: '
                    f'{missing[0]}): add masks with the pictures\' names, any image format')
  return masks


def check_outputs(args, inputs):
  """{input path: output path}; UserError when two inputs share an output or files would be
  replaced without --overwrite."""
  check_local(args.outdir, '--outdir')
  if os.path.exists(args.outdir) and not os.path.isdir(args.outdir):
    raise UserError(f'--outdir={args.outdir} is a file, not a folder: choose a folder')
  outputs, seen = {}, {}
  for path, rel in inputs:
    out = os.path.join(args.outdir, rel + '.png')
    if out in seen:
      raise UserError(f'{seen[out]} and {path} would both be written to {out}: rename one')
    seen[out] = path
    outputs[path] = out
  existing = [o for o in outputs.values() if os.path.exists(o)]
  if existing and not args.overwrite:
    more = f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''
    raise UserError(f'{existing[0]} already exists{more}: choose another --outdir or pass '
                    '--overwrite to replace')
  return outputs


def run(args):
  """Executes the parsed command; returns the paths written."""
  inputs = list_inputs(args.input)
  outputs = check_outputs(args, inputs)
  colour = _parse_colour(args.mask_color) if args.mask_color else None
  from jaxgen import parallel, tiling  # pylint: disable=import-outside-toplevel

  mesh = parallel.create_mesh()
  if args.network:
    restored = trained.load_generator(args.network)
  else:
    restored = trained.restore(args.workdir, args.step, args.best, mesh, need_data=False)
  task = restored.recipe.task
  if task is None:
    raise UserError(f'{args.network or args.workdir} is a {restored.config.model.name} model '
                    'that samples from seeds, not an image-to-image model: use python -m '
                    'jaxgen.generate')
  masks = {}
  if task.name == 'inpaint':
    if not args.mask and not colour:
      raise UserError('this model inpaints: give the holes with --mask=MASK (white = fill; a '
                      'folder for several pictures) or --mask_color=#RRGGBB')
    if args.mask:
      masks = find_masks(args, inputs)
  elif args.mask or colour:
    raise UserError(f'--mask/--mask_color are for inpainting; this model does {task.name!r}: '
                    'leave them out')
  options = {option: getattr(args, option) for option in OPTIONS
             if getattr(args, option) is not None}
  refused = [f'--{option}' for option in options
             if option not in restored.recipe.sampling_options]
  if refused:
    raise UserError(f'{", ".join(refused)}: this model ({task.name}) translates one way only; '
                    'leave it out')
  translator = tiling.Translator(restored, mesh, args.tile, args.overlap, args.batch_size,
                                 options)
  log.info('Translating %d picture(s) with step %d of %s (%s, tiles of %d px).', len(inputs),
           restored.step, args.network or args.workdir, task.name, translator.tile)
  return tiling.translate_files(translator, [path for path, _ in inputs], outputs, masks,
                                colour)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return run_command(run, args,
                     lambda written: f'wrote {len(written)} picture(s) to {args.outdir}')


if __name__ == '__main__':
  sys.exit(main())
