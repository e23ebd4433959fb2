"""Scores a trained image-to-image run on real photographs, as a user would apply it.

    python tools/real_photos.py --workdir=/tmp/superres [--photos=astronaut,coffee,chelsea]

The photographs are the colour ones scikit-image ships (`skimage.data`), cropped to a multiple
of the task's scale. Each is degraded as the run's task degrades its training images (SR:
MATLAB-bicubic down-scaling; denoising: Gaussian noise of the task's σ, or the middle of its
range, then rounded to uint8 as a saved picture is; inpainting: a free-form mask; colourisation:
luma), translated with `jaxgen.translate`'s tiler (`jaxgen.tiling.Translator`), and scored
against the photograph beside the task's baseline: PSNR/SSIM on RGB and PSNR on Y with a border
of `scale` pixels cropped. Prints one line per photograph and the means, as JSON with
--output.
"""

import argparse
import json
import sys

import numpy as np


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--photos', default='astronaut,coffee,chelsea,rocket,immunohistochemistry')
  parser.add_argument('--tile', type=int, default=128)
  parser.add_argument('--best', action='store_true')
  parser.add_argument('--output', default='')
  args = parser.parse_args(argv)

  import jax.numpy as jnp
  import skimage.data

  from jaxgen import parallel, summaries, tiling, trained
  from jaxgen.data import degrade
  from jaxgen.metrics import image_quality

  mesh = parallel.create_mesh()
  run = trained.restore(args.workdir, best=args.best, mesh=mesh, need_data=False)
  task = run.recipe.task
  translator = tiling.Translator(run, mesh, tile=args.tile)
  scale = task.scale
  rng = np.random.default_rng(0)
  rows = []
  for name in args.photos.split(','):
    photo = getattr(skimage.data, name)()
    h, w = (photo.shape[0] // scale) * scale, (photo.shape[1] // scale) * scale
    photo = photo[:h, :w, :3]
    mask = None
    if task.name == 'sr':
      given = degrade.imresize(photo, scale=1.0 / scale)
    elif task.name == 'denoise':
      sigma = float(np.mean(task.noise_sigma))
      given = np.clip(np.round(degrade.add_gaussian_noise(photo.astype(np.float32), sigma, rng)),
                      0, 255).astype(np.uint8)
    elif task.name == 'inpaint':
      mask = degrade.free_form_mask(rng, h, w, max_strokes=task.max_strokes,
                                    max_boxes=task.max_boxes)
      given = photo
    else:
      given = photo
    output = summaries.to_uint8(translator(given, mask))
    inputs = task.user_input(given, mask)
    baseline = summaries.to_uint8(task.baseline(inputs[None], (h, w))[0])
    row = {'photo': name, 'size': f'{w}x{h}'}
    for label, image in (('model', output), ('baseline', baseline)):
      a, b = jnp.asarray(image[None]), jnp.asarray(photo[None])
      y = lambda x: degrade.rgb_to_ycbcr_y(np.asarray(x))[:, scale:-scale or None,
                                                         scale:-scale or None, 0]
      row[f'{label}_psnr'] = round(float(image_quality.psnr(a, b)[0]), 2)
      row[f'{label}_ssim'] = round(float(image_quality.ssim(a, b)[0]), 4)
      row[f'{label}_psnr_y'] = round(float(image_quality.psnr(
          jnp.asarray(y(image[None])), jnp.asarray(y(photo[None])), data_range=255.0)[0]), 2)
    rows.append(row)
    print(json.dumps(row))
  means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]
           if k not in ('photo', 'size')}
  print(json.dumps({'task': task.name, 'step': run.step, 'mean': means}))
  if args.output:
    with open(args.output, 'w') as f:
      json.dump({'task': task.name, 'step': run.step, 'rows': rows, 'mean': means}, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
