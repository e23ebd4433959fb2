"""FID between two image folders or statistics files, like pytorch-fid, in JAX.

    python -m jaxgen.fid path/to/images path/to/other_images
    python -m jaxgen.fid path/to/images dataset_stats.npz
    python -m jaxgen.fid --save-stats path/to/images out_stats.npz

Each PATH is a folder of images (.bmp .jpg .jpeg .pgm .png .ppm .tif .tiff .webp, taken
directly in the folder as pytorch-fid does, or in all subfolders with --recursive, in sorted
order) or an `.npz` with `mu` and `sigma` (pytorch-fid's statistics files work both ways).
Images of any size are read as RGB and resized to 299x299 inside the network exactly as
pytorch-fid does, or with --resize=tf exactly as TensorFlow 1.x does in the Inception graph
behind the FIDs of TTUR, ADM, StyleGAN2-ADA and EDM (compare only numbers made the same way:
statistics files do not record which). The FID Inception weights are found as described in
`jaxgen.metrics.inception_weights` (--weights, $JAXGEN_INCEPTION_WEIGHTS, the cache, or a
download). Prints `FID: <value>`.
"""

import argparse
import concurrent.futures
import os
import pathlib
import sys

import numpy as np

from jaxgen.errors import UserError

IMAGE_EXTENSIONS = {'bmp', 'jpg', 'jpeg', 'pgm', 'png', 'ppm', 'tif', 'tiff', 'webp'}
PROG = 'jaxgen.fid'


def list_images(folder, recursive=False):
  """Sorted image files of `folder`. UserError if it is missing or holds no images."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise UserError(f'{folder} is neither an image folder nor an .npz statistics file')
  entries = folder.rglob('*') if recursive else folder.iterdir()
  files, others = [], []
  for p in entries:
    if p.is_file():
      (files if p.suffix[1:].lower() in IMAGE_EXTENSIONS else others).append(p)
  if not files:
    found = (f'only {len(others)} non-image files, e.g. {others[0].name}' if others
             else 'it is empty')
    hint = '' if recursive else ' (use --recursive for images in subfolders)'
    raise UserError(f'no images in {folder}: {found}; expected '
                    f'{", ".join(sorted(IMAGE_EXTENSIONS))} files{hint}')
  return sorted(files)


def read_image(path):
  """An image file as uint8 [H, W, 3] (RGB, as pytorch-fid's `Image.open(p).convert('RGB')`)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as img:
      return np.asarray(img.convert('RGB'), np.uint8)
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many kinds)
    raise UserError(f'cannot read image {path}: {type(e).__name__}: '
                    f'{str(e).splitlines()[0] if str(e) else "unreadable"}') from None


def image_batches(files, batch_size, workers=None):
  """Yields uint8 batches [B, H, W, 3]; a batch ends early where the image size changes."""
  workers = workers or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    batch = []
    for image in pool.map(read_image, files):
      if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
        yield np.stack(batch)
        batch = []
      batch.append(image)
    if batch:
      yield np.stack(batch)


def folder_statistics(net, folder, batch_size, num_samples=None, recursive=False,
                      workers=None):
  """(mu [2048], sigma [2048, 2048]) float64 of the images in `folder`."""
  from jaxgen.metrics import fid  # pylint: disable=import-outside-toplevel
  files = list_images(folder, recursive)
  if num_samples is not None:
    if len(files) < num_samples:
      raise UserError(f'{folder} has {len(files)} images, fewer than --num-samples='
                      f'{num_samples}')
    files = files[:num_samples]
  progress = _progress(len(files), str(folder))
  batches = (progress(b) for b in image_batches(files, batch_size, workers))
  features = fid.extract(net, batches)
  progress(None)
  return features.mu, features.sigma


def _progress(total, label):
  """Counts images on stderr when it is a terminal."""
  if not sys.stderr.isatty():
    return lambda batch: batch
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  bar = tqdm(total=total, desc=label, unit='img', file=sys.stderr)

  def update(batch):
    if batch is None:
      bar.close()
    else:
      bar.update(len(batch))
    return batch

  return update


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog=f'python -m {PROG}', description=__doc__.split('\n\n')[0])
  parser.add_argument('path', nargs=2, help='two image folders or .npz statistics files '
                      '(with --save-stats: an image folder and the .npz to write)')
  parser.add_argument('--save-stats', action='store_true',
                      help='write the statistics of the first path (a folder) to the second '
                      '(an .npz that must not exist) instead of computing an FID')
  parser.add_argument('--batch-size', type=int, default=50, help='images per batch (default 50)')
  parser.add_argument('--num-samples', type=int, default=None,
                      help='use the first N images (sorted by path) of each folder; '
                      'default: all')
  parser.add_argument('--weights', default=None,
                      help='FID Inception weights: a converted .npz or pytorch-fid\'s .pth '
                      '(default: $JAXGEN_INCEPTION_WEIGHTS, the cache, or a download)')
  parser.add_argument('--device', choices=('cpu', 'gpu', 'cuda', 'tpu'), default=None,
                      help='JAX platform to run on (default: JAX\'s choice)')
  parser.add_argument('--precision', choices=('fp32', 'tf32', 'bf16'), default='fp32',
                      help='Inception compute precision (default fp32): fp32 matches '
                      'pytorch-fid\'s float32 results to rounding; tf32 is PyTorch\'s GPU default '
                      'for convolutions; bf16 is the fastest')
  parser.add_argument('--resize', choices=('torch', 'tf'), default='torch',
                      help='how images reach the 299x299 input (default torch): torch is '
                      'pytorch-fid\'s (PyTorch bilinear, half-pixel centres, 2x-1); tf is the '
                      'TensorFlow graph\'s, as ADM, StyleGAN2-ADA and EDM (TF 1.x '
                      'resize_bilinear without half-pixel centres, (x-128)/128)')
  parser.add_argument('--recursive', action='store_true',
                      help='also take images in subfolders (pytorch-fid does not)')
  parser.add_argument('--no-download', action='store_true',
                      help='never download the Inception weights')
  parser.add_argument('--workers', type=int, default=None,
                      help='image decoding threads (default: min(8, CPUs))')
  args = parser.parse_args(argv)
  if args.batch_size < 1:
    parser.error('--batch-size must be positive')
  if args.num_samples is not None and args.num_samples < 2:
    parser.error('--num-samples must be at least 2')
  return args


def run(args):
  """Executes the parsed command; returns the FID (or None with --save-stats)."""
  if args.device:
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update('jax_platforms', 'cuda' if args.device == 'gpu' else args.device)
  from jaxgen.metrics import fid  # pylint: disable=import-outside-toplevel

  paths = [pathlib.Path(p) for p in args.path]
  for p in (paths[:1] if args.save_stats else paths):
    if not p.exists():
      raise UserError(f'no such file or folder: {p}')
  if args.save_stats:
    if paths[0].suffix == '.npz':
      raise UserError(f'--save-stats needs an image folder first, got {paths[0]}')
    if paths[1].exists():
      raise UserError(f'{paths[1]} already exists; remove it or choose another output')

  stats = {i: fid.load_stats(p) for i, p in enumerate(paths) if p.suffix == '.npz'
           and not (args.save_stats and i == 1)}
  folders = [i for i in range(2) if i not in stats and not (args.save_stats and i == 1)]
  for i in folders:  # fail on a bad folder before loading the network
    list_images(paths[i], args.recursive)
  if len(stats) == 2:
    fid.check_stats(*stats[0], *stats[1])
  if folders:
    net = fid.InceptionFeatures(weights=args.weights, precision=args.precision,
                                allow_download=not args.no_download, resize=args.resize)
    for i in folders:
      stats[i] = folder_statistics(net, paths[i], args.batch_size, args.num_samples,
                                   args.recursive, args.workers)
  if args.save_stats:
    fid.save_stats(paths[1], *stats[0])
    print(f'saved statistics of {paths[0]} to {paths[1]}')
    return None
  try:
    value = fid.frechet_distance(*stats[0], *stats[1])
  except ValueError as e:  # sqrtm's imaginary part: too few images for 2048 dimensions
    raise UserError(str(e)) from None
  print(f'FID: {value}')
  return value


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    run(args)
  except UserError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
