"""FID Inception on a GPU: parity with pytorch-fid at default precisions, and throughput.

Run through tools/gpu_check.sh (stage `fid`; its stage `run64` runs the CPU-reference parity
tests beside it). Needs torch, torchvision and pytorch-fid beside jaxgen. Weights are a fixed random
state_dict in pytorch-fid's layout (the real file cannot be downloaded on these machines):
speed does not depend on the values, and parity of the architecture does not either.

Measures, on the same images (two structured sets of --num images at 256x256):
  * pytorch-fid's InceptionV3 at fp32 (cuDNN TF32 off) and at its defaults (TF32 convs);
  * jaxgen's InceptionFeatures at fp32 (HIGHEST), tf32 (JAX's default precision) and bf16;
  * for each: max relative difference of pool3 features vs pytorch-fid fp32, and the FID
    between the two sets with its relative difference to pytorch-fid's;
  * images/s of feature extraction on random 256x256 inputs (resize to 299 inside), with the
    network's compile and warm-up excluded.
Prints a table and writes $OUT/gpu_metrics_check.json when $OUT is set.
"""

import argparse
import json
import os
import time
import warnings

import jax
import numpy as np
import torch

from jaxgen.metrics import fid, inception_weights
from jaxgen.metrics.inception_bench import benchmark, synthetic_images


DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'  # cpu: a smoke test of this script


def _sync():
  if DEVICE == 'cuda':
    torch.cuda.synchronize()


def torch_model(state_dict):
  from pytorch_fid import inception as pfi  # pylint: disable=import-outside-toplevel
  sd = {k: torch.from_numpy(v) for k, v in state_dict.items()}
  original = pfi.load_state_dict_from_url
  pfi.load_state_dict_from_url = lambda *a, **k: sd
  try:
    return pfi.InceptionV3([3]).to(DEVICE).eval()
  finally:
    pfi.load_state_dict_from_url = original


def torch_features(model, images, batch):
  """pytorch-fid's get_activations: uint8 -> [0, 1] float (ToTensor) -> pool3, fp32."""
  out = []
  with torch.no_grad():
    for i in range(0, len(images), batch):
      x = torch.from_numpy(images[i:i + batch]).to(DEVICE).permute(0, 3, 1, 2).float() / 255
      out.append(model(x)[0][:, :, 0, 0].cpu().numpy())
  return np.concatenate(out)


def torch_throughput(model, batch, res=256, steps=10, warmup=3):
  x = torch.rand(batch, 3, res, res, device=DEVICE)
  with torch.no_grad():
    for _ in range(warmup):
      model(x)
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
      model(x)
    _sync()
  return batch * steps / (time.perf_counter() - start)


def fid_of(features_a, features_b):
  stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (features_a, features_b)]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return fid.frechet_distance(*stats[0], *stats[1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--num', type=int, default=2500, help='images per set for the FID')
  parser.add_argument('--batch', type=int, default=500)
  parser.add_argument('--torch-batches', default='200,500')
  parser.add_argument('--precisions', default='fp32,tf32,bf16')
  parser.add_argument('--steps', type=int, default=20)
  args = parser.parse_args()

  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__}; '
        f'cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}', flush=True)
  state_dict = inception_weights.random_state_dict(0)
  params = inception_weights.convert_state_dict(state_dict)
  # 128x128 synthetic images upsampled to 256x256 (cheap to make; FID on 256² inputs).
  sets = [np.repeat(np.repeat(synthetic_images(args.num, 128, seed=s, style=s), 2, 1), 2, 2)
          for s in (0, 1)]
  report = {'device': jax.devices()[0].device_kind, 'num_per_set': args.num, 'rows': []}

  model = torch_model(state_dict)
  feats, fids = {}, {}
  for name, tf32 in (('torch fp32', False), ('torch default (TF32 convs)', True)):
    torch.backends.cudnn.allow_tf32 = tf32
    feats[name] = [torch_features(model, s, args.batch) for s in sets]
    fids[name] = fid_of(*feats[name])
  torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, as pytorch-fid runs
  speeds = {f'torch default batch {b}': torch_throughput(model, int(b), steps=args.steps // 2)
            for b in args.torch_batches.split(',')}
  del model
  if DEVICE == 'cuda':
    torch.cuda.empty_cache()

  for precision in args.precisions.split(','):
    net = fid.InceptionFeatures(params, precision=precision)
    name = f'jaxgen {precision}'
    feats[name] = [fid.extract(net, (s[i:i + args.batch] for i in range(0, len(s), args.batch)),
                               keep_pool=True).pool for s in sets]
    fids[name] = fid_of(*feats[name])
    r = benchmark(args.batch, 256, precision, steps=args.steps)
    speeds[f'jaxgen {precision} batch {args.batch}'] = r['images_per_s']
    del net

  ref_feats, ref_fid = feats['torch fp32'], fids['torch fp32']
  default_fid = fids['torch default (TF32 convs)']
  print(f'\nFID between the two sets ({args.num} images each, 256x256):')
  print(f'{"":30s} {"FID":>12s} {"rel vs torch fp32":>18s} {"rel vs torch default":>21s} '
        f'{"max feat rel err":>17s}')
  for name, value in fids.items():
    err = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(feats[name], ref_feats))
    row = dict(name=name, fid=value, rel_vs_torch_fp32=abs(value - ref_fid) / ref_fid,
               rel_vs_torch_default=abs(value - default_fid) / default_fid, max_feat_rel=err)
    report['rows'].append(row)
    print(f'{name:30s} {value:12.6f} {row["rel_vs_torch_fp32"]:18.2e} '
          f'{row["rel_vs_torch_default"]:21.2e} {err:17.2e}')
  print('\nFeature extraction throughput (random 256x256 inputs, resized to 299 inside):')
  for name, value in speeds.items():
    print(f'{name:34s} {value:10.0f} images/s')
  report['images_per_s'] = speeds
  if os.environ.get('OUT'):
    with open(os.path.join(os.environ['OUT'], 'gpu_metrics_check.json'), 'w') as f:
      json.dump(report, f, indent=1)


if __name__ == '__main__':
  main()
