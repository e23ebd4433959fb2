"""The official EDM code's speed, for the side-by-side comparison with `jaxgen.bench`.

    EDM_SRC=/path/to/NVlabs/edm python tools/edm_reference_bench.py --output=edm.json

Times what NVlabs' `training/training_loop.py` does per iteration on the CIFAR-10 DDPM++ config
of its `train.py` (EDMPrecond around SongUNet, 128 channels, [2, 2, 2], dropout 0.13, EDMLoss,
the AugmentPipe at p = 0.12 with augment_dim 9, Adam, the lr ramp, NaN-to-num of the gradients,
the EMA update), on one GPU with the whole batch (512) and random uint8 images in place of the
data loader, with TF32 off as the official loop sets it; then its `edm_sampler` (18 Heun steps,
35 network evaluations) on batches of the same size in fp32. `--fp16` times the official
`--fp16=True` network instead (fp16 activations, fp32 weights). Needs torch and the official
source (https://github.com/NVlabs/edm, unmodified; `dnnlib` wants `requests`, replaced here by
an empty module when missing). Not part of jaxgen: a measuring instrument for tools/gpu_check.sh.
"""

import argparse
import json
import os
import sys
import time
import types


def official_sampler():
  """`edm_sampler` of the official generate.py, its source unchanged, without importing the
  module (whose click CLI and dependencies the GPU machine may lack)."""
  import ast  # pylint: disable=import-outside-toplevel

  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.environ.get('EDM_SRC', '.edm_src'), 'generate.py')
  with open(path) as f:
    source = f.read()
  node = next(n for n in ast.parse(source).body
              if isinstance(n, ast.FunctionDef) and n.name == 'edm_sampler')
  namespace = {'np': np, 'torch': torch}
  exec(compile(ast.Module([node], []), path, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace['edm_sampler']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, default=512)
  parser.add_argument('--steps', type=int, default=20, help='timed training iterations')
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--sample_batches', type=int, default=2)
  parser.add_argument('--fp16', action='store_true', help='the official --fp16=True network')
  parser.add_argument('--tiny', action='store_true', help='a tiny network (checks the script)')
  parser.add_argument('--output', default=None)
  args = parser.parse_args()

  sys.path.insert(0, os.environ.get('EDM_SRC', '.edm_src'))
  try:
    import requests  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    sys.modules['requests'] = types.ModuleType('requests')
  import torch  # pylint: disable=import-outside-toplevel
  from training import augment, loss, networks  # pylint: disable=import-outside-toplevel
  edm_sampler = official_sampler()

  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.backends.cudnn.benchmark = True
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
  torch.manual_seed(0)
  # train.py --arch=ddpmpp --precond=edm --augment=0.12 --dropout=0.13 (its defaults).
  kwargs = dict(model_type='SongUNet', embedding_type='positional', encoder_type='standard',
                decoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1],
                model_channels=128, channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13,
                use_fp16=args.fp16)
  resolution = 32
  if args.tiny:
    kwargs.update(model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])
    resolution = 16
  net = networks.EDMPrecond(img_resolution=resolution, img_channels=3, label_dim=0, **kwargs)
  net.train().requires_grad_(True).to(device)
  ema = networks.EDMPrecond(img_resolution=resolution, img_channels=3, label_dim=0, **kwargs)
  ema.load_state_dict(net.state_dict())
  ema.eval().requires_grad_(False).to(device)
  loss_fn = loss.EDMLoss()
  pipe = augment.AugmentPipe(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
                             translate_frac=1)
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=[0.9, 0.999], eps=1e-8)
  batch = args.batch
  images_u8 = torch.randint(0, 256, [batch, 3, resolution, resolution], dtype=torch.uint8)
  params = sum(p.numel() for p in net.parameters())

  def iteration(cur_nimg):
    optimizer.zero_grad(set_to_none=True)
    images = images_u8.to(device).to(torch.float32) / 127.5 - 1
    per_element = loss_fn(net=net, images=images, labels=None, augment_pipe=pipe)
    per_element.sum().mul(1 / batch).backward()
    for g in optimizer.param_groups:
      g['lr'] = 1e-3 * min(cur_nimg / max(10_000 * 1000, 1e-8), 1)
    for param in net.parameters():
      if param.grad is not None:
        torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
    optimizer.step()
    beta = 0.5 ** (batch / max(min(500_000, cur_nimg * 0.05), 1e-8))
    with torch.no_grad():
      for p_ema, p_net in zip(ema.parameters(), net.parameters()):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))

  def sync():
    if device.type == 'cuda':
      torch.cuda.synchronize()

  for i in range(args.warmup):
    iteration(i * batch)
  sync()
  start = time.time()
  for i in range(args.steps):
    iteration((args.warmup + i) * batch)
  sync()
  train_s = time.time() - start

  latents = torch.randn([batch, 3, resolution, resolution], device=device)
  with torch.no_grad():
    edm_sampler(ema, latents, num_steps=18)  # Warm-up (cudnn autotuning).
    sync()
    start = time.time()
    for _ in range(args.sample_batches):
      out = edm_sampler(ema, torch.randn_like(latents), num_steps=18)
    sync()
  sample_s = time.time() - start
  figures = {
      'code': 'NVlabs/edm (official, PyTorch)',
      'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
      'torch': torch.__version__, 'fp16': args.fp16, 'tiny': args.tiny,
      'parameters': params, 'batch': batch, 'timed_steps': args.steps,
      'images_per_s': round(args.steps * batch / train_s, 1),
      'step_ms': round(train_s / args.steps * 1000, 2),
      'sample_images_per_s': round(args.sample_batches * batch / sample_s, 1),
      'sample_evaluations': 35,
      'sample_finite': bool(torch.isfinite(out).all()),
      'peak_memory_gib': (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                          if device.type == 'cuda' else None),
  }
  for key, value in figures.items():
    print(f'{key:<20} {value}')
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(figures, f, indent=2)


if __name__ == '__main__':
  main()
