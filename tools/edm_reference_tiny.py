"""The official EDM code trained as configs/diffusion.py trains, on the CPU: is a poor sample ours?

    EDM_SRC=/path/to/NVlabs/edm python tools/edm_reference_tiny.py --out=/tmp/edm_tiny \
        --steps=2000 --classes=0,1,2,8

Trains NVlabs' EDMPrecond around its SongUNet with its EDMLoss, as its `training_loop.py` steps
(loss.sum() / batch, the lr ramp, NaN-to-num of the gradients, Adam, the EMA with ramp-up), with
the narrow SongUNet and schedule of `configs/diffusion.py:songunet_cpu` (the CPU default until
2026-12-05: 16 channels, one block, no attention, 16×16, batch 32, lr 4e-3 over a 2 kimg ramp,
P_mean as given; channel_mult [1, 2, 2] as the default had it until 2026-12-02,
`--channel_mult=1,2` for the preset's), unconditional, on the
embedded procedural images that `jaxgen.data.procedural` draws (optionally only some classes),
in a random order of its own. `--lr_cooldown` decays the lr linearly to 0 over that last fraction
of the steps, as `optimizer.lr_cooldown` does. Every 2,000 steps and at the end it writes
OUT.STEP.png: 64 samples of the official `edm_sampler` (18 Heun steps) from fixed latents.

Needs torch (CPU is fine) and the official source (https://github.com/NVlabs/edm, unmodified).
Not part of jaxgen: a measuring instrument, like tools/edm_reference_bench.py.
"""

import argparse
import copy
import importlib.util
import os
import sys
import time

import numpy as np

_TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_TOOLS, os.path.dirname(_TOOLS)]  # jaxgen.errors (procedural's UserError)
import edm_reference_bench  # pylint: disable=wrong-import-position


def procedural_images(count, classes):
  """uint8 [count, 16, 16, 3] of the embedded dataset, only `classes`, as data.classes picks."""
  path = os.path.join(os.path.dirname(_TOOLS), 'jaxgen', 'data', 'procedural.py')
  spec = importlib.util.spec_from_file_location('procedural', path)
  procedural = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(procedural)  # numpy only: no JAX needed here.
  source = procedural.ProceduralSource(16, count, 0, 3, classes)
  return np.stack([source[i]['image'] for i in range(count)])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='Prefix of the sample grids.')
  parser.add_argument('--steps', type=int, default=2000)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--lr', type=float, default=4e-3)
  parser.add_argument('--lr_cooldown', type=float, default=0.0)
  parser.add_argument('--P_mean', type=float, default=-0.6)
  parser.add_argument('--ema_kimg', type=float, default=4.0)
  parser.add_argument('--classes', default='', help='e.g. 0,1,2,8; empty = all ten.')
  parser.add_argument('--channel_mult', default='1,2,2')
  parser.add_argument('--num_images', type=int, default=20000)
  args = parser.parse_args()

  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.environ.get('EDM_SRC', '.edm_src'))
  from training.loss import EDMLoss  # pylint: disable=import-outside-toplevel
  from training.networks import EDMPrecond  # pylint: disable=import-outside-toplevel
  sampler = edm_reference_bench.official_sampler()

  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  classes = tuple(int(c) for c in args.classes.split(',') if c)
  data = torch.from_numpy(procedural_images(args.num_images, classes).transpose(0, 3, 1, 2))
  data = data.float() / 127.5 - 1
  net = EDMPrecond(img_resolution=16, img_channels=3, label_dim=0, model_type='SongUNet',
                   model_channels=16,
                   channel_mult=[int(m) for m in args.channel_mult.split(',')],
                   channel_mult_emb=4, num_blocks=1,
                   attn_resolutions=[], dropout=0.0, embedding_type='positional',
                   encoder_type='standard', decoder_type='standard', resample_filter=[1, 1])
  print('parameters', sum(p.numel() for p in net.parameters()), flush=True)
  ema = copy.deepcopy(net).eval().requires_grad_(False)
  loss_fn = EDMLoss(P_mean=args.P_mean, P_std=1.2, sigma_data=0.5)
  optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
  latents = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))

  def save_samples(step):
    with torch.no_grad():
      images = sampler(ema, latents)
    images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    grid = images.transpose(0, 2, 3, 1).reshape(8, 8, 16, 16, 3).transpose(0, 2, 1, 3, 4)
    from PIL import Image  # pylint: disable=import-outside-toplevel
    Image.fromarray(grid.reshape(128, 128, 3)).save(f'{args.out}.{step}.png')

  shown, start = 0, time.time()
  for step in range(args.steps):
    images = data[torch.from_numpy(rng.integers(0, len(data), args.batch))]
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(net=net, images=images)
    loss.sum().mul(1 / args.batch).backward()
    lr = args.lr * min(shown / 2000.0, 1.0)  # The 2 kimg ramp of configs/diffusion.py.
    if args.lr_cooldown:
      lr *= min(1.0, (args.steps - step) / (args.lr_cooldown * args.steps))
    for group in optimizer.param_groups:
      group['lr'] = lr
    for p in net.parameters():
      if p.grad is not None:
        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
    optimizer.step()
    half_life = min(args.ema_kimg * 1000, shown * 0.05)
    beta = 0.5 ** (args.batch / max(half_life, 1e-8))
    for p_ema, p_net in zip(ema.parameters(), net.parameters()):
      p_ema.copy_(p_net.detach().lerp(p_ema, beta))
    shown += args.batch
    if (step + 1) % 2000 == 0 or step + 1 == args.steps:
      save_samples(step + 1)
    if step % 200 == 0:
      print(f'step {step} loss {float(loss.mean()):.3f} {time.time() - start:.0f} s', flush=True)
  print(f'{args.steps} steps in {time.time() - start:.0f} s '
        f'({args.steps * args.batch / (time.time() - start):.0f} images/s)')


if __name__ == '__main__':
  main()
