"""Throughput of FID feature extraction (the Inception forward pass).

    python -m jaxgen.metrics.inception_bench --batch-size 500 --precision bf16 --steps 20

Times `fid.InceptionFeatures` on random uint8 images (default 256x256, resized to 299 inside,
as FID on 256² images does) with random weights (speed does not depend on their values).
Images are generated on the device once, so the figure is the network's throughput
(resize + Inception + fc), not the input pipeline's. Compilation and warm-up steps are
excluded; the clock stops when the last result is ready. Prints one line:

    inception_bench: device=<name> devices=<n> batch=<B> res=<R> precision=<p> images/s=<x>

Also holds `synthetic_images`, the structured test images shared by the parity tests and
`tools/gpu_metrics_check.py`.
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.metrics import fid, inception


def synthetic_images(num, size, seed=0, style=0):
  """Structured uint8 images [num, size, size, 3]: coloured blobs on smooth gradients.

  Natural-ish statistics (smooth regions, edges, colour) without any data set. `style`
  changes the distribution (blob count, palette and noise), so two styles give a clearly
  non-zero FID and two seeds of one style a small one.
  """
  rng = np.random.default_rng([seed, style])
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  images = np.empty((num, size, size, 3), np.uint8)
  num_blobs = 3 + 4 * style
  for i in range(num):
    base = rng.uniform(0, 1, 3).astype(np.float32)
    slope = rng.normal(0, 0.5, (2, 3)).astype(np.float32)
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    for _ in range(num_blobs):
      cy, cx = rng.uniform(0, 1, 2)
      radius = rng.uniform(0.03, 0.3)
      colour = rng.uniform(-1, 1, 3) * (0.5 + 0.5 * style)
      mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
      img = img + mask[..., None] * colour.astype(np.float32)
    img = img + rng.normal(0, 0.02 + 0.05 * style, img.shape).astype(np.float32)
    images[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
  return images


def benchmark(batch_size=500, resolution=256, precision='bf16', steps=20, warmup=3, seed=0):
  """Images per second of `InceptionFeatures` on the default devices.

  Returns:
    dict with device, devices, batch, res, precision, images_per_s, seconds.
  """
  net = fid.InceptionFeatures(inception.random_params(seed), precision=precision)
  images = jax.random.randint(jax.random.key(seed), (batch_size, resolution, resolution, 3),
                              0, 256, jnp.int32).astype(jnp.uint8)
  images = jax.device_put(images, net._batch_sharding)  # pylint: disable=protected-access
  for _ in range(warmup):  # the first call compiles
    jax.block_until_ready(net(images))
  start = time.perf_counter()
  outputs = [net(images) for _ in range(steps)]
  jax.block_until_ready(outputs)
  seconds = time.perf_counter() - start
  return dict(device=jax.devices()[0].device_kind, devices=jax.device_count(),
              batch=batch_size, res=resolution, precision=precision,
              images_per_s=batch_size * steps / seconds, seconds=seconds)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m jaxgen.metrics.inception_bench',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch-size', type=int, default=500, help='images per batch')
  parser.add_argument('--resolution', type=int, default=256, help='input image side')
  parser.add_argument('--precision', choices=sorted(inception.PRECISIONS), default='bf16',
                      help='fp32: true float32; tf32: backend default (TF32 on recent GPUs); '
                      'bf16: bfloat16 activations with float32 accumulation')
  parser.add_argument('--steps', type=int, default=20, help='timed batches')
  parser.add_argument('--warmup', type=int, default=3, help='untimed batches (compile)')
  args = parser.parse_args(argv)
  r = benchmark(args.batch_size, args.resolution, args.precision, args.steps, args.warmup)
  print(f'inception_bench: device={r["device"]!r} devices={r["devices"]} batch={r["batch"]} '
        f'res={r["res"]} precision={r["precision"]} images/s={r["images_per_s"]:.0f} '
        f'({args.steps} steps in {r["seconds"]:.2f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
