"""Records tests/data/pix2pix_nets.npz: outputs of the official pix2pix/CycleGAN networks
(junyanz/pytorch-CycleGAN-and-pix2pix, `models/networks.py`) on small configurations, and the
parameter counts of the full-size ones, for tests/test_pix2pix_models.py (which never imports
torch).

Run once with CPU PyTorch and the official `models/networks.py` on the path (P2P_SRC, the
folder holding `models/`); see README_pix2pix_nets.md for the exact command.

Keys (images NHWC; state dicts in the official names and layouts):

  versions, source                    strings: library versions; the official file's commit
  count_names, official_param_counts  the full-size networks (built by the official define_G /
                                      define_D) and their trainable parameter counts
  cases                               the small cases' names
  CASE/config                         JSON: {'kind': 'unet'|'patch'|'resnet', 'in_channels',
                                      'args': the official constructor's arguments}
  CASE/state/NAME                     the state dict the outputs were computed with: float16
                                      (exactly what torch used; num_batches_tracked int64)
  CASE/x                              input, float16 (exactly what torch used)
  CASE/y_eval                         net.eval() output, float32
  CASE/y_train                        net.train() output (batch-norm cases), float32
  CASE/stats_after/NAME               running_mean / running_var after that train() forward

Weights: the official init_weights (normal, 0.02; 'kaiming' for the 'none' case, whose
activations would otherwise vanish) after seeding, then the biases (zero after init_weights)
and batch-norm shifts re-drawn N(0, 0.1²) so that they matter, batch-norm running means
N(0, 0.1²) and running variances U(0.5, 2) (non-trivial, for eval mode), and every tensor and
input rounded to float16 (halves the file; torch computes in float32 from the rounded values).
"""

import json
import os
import sys

import numpy as np

P2P_SRC = os.environ.get('P2P_SRC', '/tmp/p2p_ref')
sys.path.insert(0, P2P_SRC)

import torch  # noqa: E402
from models import networks  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pix2pix_nets.npz')
SOURCE = ('github.com/junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py at commit '
          '9f8f61e5a375c2e01c5187d093ce9c2409f409b0 '
          '(blob f46237142a8629f344aeb3a1e3c3fb16a7392341)')

# Full-size networks: name → (define_G or define_D, its arguments).
COUNTS = {
    'unet_256_batch': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='unet_256', norm='batch')),
    'unet_256_instance': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='unet_256',
                                    norm='instance')),
    'unet_256_none': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='unet_256', norm='none')),
    'unet_128_batch': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='unet_128', norm='batch')),
    'patch_6ch_batch': ('D', dict(input_nc=6, ndf=64, netD='basic', norm='batch')),
    'patch_3ch_batch': ('D', dict(input_nc=3, ndf=64, netD='basic', norm='batch')),
    'patch_3ch_instance': ('D', dict(input_nc=3, ndf=64, netD='basic', norm='instance')),
    'resnet_9blocks_instance': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='resnet_9blocks',
                                          norm='instance')),
    'resnet_6blocks_instance': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='resnet_6blocks',
                                          norm='instance')),
    'resnet_9blocks_batch': ('G', dict(input_nc=3, output_nc=3, ngf=64, netG='resnet_9blocks',
                                       norm='batch')),
}

# Small cases: kind, input channels, the official constructor's arguments, input shape NCHW,
# whether to record train mode (batch norm), seed, init type.
CASES = {
    'unet_batch': dict(kind='unet', in_channels=3, args=dict(
        output_nc=3, num_downs=5, ngf=4, norm='batch', use_dropout=False),
        shape=(2, 3, 32, 32), train=True, seed=1),
    'unet_instance': dict(kind='unet', in_channels=1, args=dict(
        output_nc=2, num_downs=5, ngf=2, norm='instance', use_dropout=False),
        shape=(2, 1, 32, 32), train=False, seed=2),
    'unet_none': dict(kind='unet', in_channels=2, args=dict(
        output_nc=1, num_downs=5, ngf=2, norm='none', use_dropout=False),
        shape=(1, 2, 32, 32), train=False, seed=3, init='kaiming'),
    'patch_batch': dict(kind='patch', in_channels=6, args=dict(ndf=4, n_layers=3, norm='batch'),
                        shape=(2, 6, 32, 32), train=True, seed=4),
    'patch_instance': dict(kind='patch', in_channels=3, args=dict(
        ndf=4, n_layers=2, norm='instance'), shape=(2, 3, 16, 16), train=False, seed=5),
    # use_dropout=True in eval mode: dropout is off, but it shifts the blocks' layer indices.
    'resnet_instance': dict(kind='resnet', in_channels=3, args=dict(
        output_nc=3, ngf=4, n_blocks=2, norm='instance', use_dropout=True,
        padding_type='reflect'), shape=(2, 3, 16, 16), train=False, seed=6),
    'resnet_batch_zero': dict(kind='resnet', in_channels=3, args=dict(
        output_nc=3, ngf=4, n_blocks=1, norm='batch', use_dropout=False, padding_type='zero'),
        shape=(2, 3, 12, 12), train=True, seed=7),
    'resnet_none_replicate': dict(kind='resnet', in_channels=2, args=dict(
        output_nc=3, ngf=2, n_blocks=1, norm='none', use_dropout=False,
        padding_type='replicate'), shape=(1, 2, 8, 8), train=False, seed=8, init='kaiming'),
}


def build(case):
  args = dict(case['args'])
  norm_layer = networks.get_norm_layer(args.pop('norm'))
  if case['kind'] == 'unet':
    return networks.UnetGenerator(case['in_channels'], norm_layer=norm_layer, **args)
  if case['kind'] == 'patch':
    return networks.NLayerDiscriminator(case['in_channels'], norm_layer=norm_layer, **args)
  return networks.ResnetGenerator(case['in_channels'], norm_layer=norm_layer, **args)


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def record_case(name, case, out):
  torch.manual_seed(case['seed'])
  net = build(case)
  networks.init_weights(net, case.get('init', 'normal'), init_gain=0.02)
  gen = torch.Generator().manual_seed(100 + case['seed'])
  with torch.no_grad():
    for module in net.modules():
      is_conv = isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
      if is_conv and module.bias is not None:
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
      if isinstance(module, torch.nn.BatchNorm2d):
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
        module.running_var.copy_(0.5 + 1.5 * torch.rand(module.running_var.shape, generator=gen))
    for value in net.state_dict().values():  # in place: parameters and buffers
      if value.is_floating_point():
        value.copy_(value.half().float())
    x = torch.randn(case['shape'], generator=gen).half().float()

  prefix = f'{name}/'
  config = {k: case[k] for k in ('kind', 'in_channels', 'args')}
  out[prefix + 'config'] = np.array(json.dumps(config, sort_keys=True))
  for key, value in net.state_dict().items():
    value = value.numpy()
    out[f'{prefix}state/{key}'] = value.astype(np.float16) if value.dtype == np.float32 else value
  out[prefix + 'x'] = nhwc(x).astype(np.float16)
  with torch.no_grad():
    net.eval()
    out[prefix + 'y_eval'] = nhwc(net(x)).astype(np.float32)
    if case['train']:
      net.train()
      out[prefix + 'y_train'] = nhwc(net(x)).astype(np.float32)
      for key, value in net.state_dict().items():
        if key.endswith(('running_mean', 'running_var')):
          out[f'{prefix}stats_after/{key}'] = value.numpy().astype(np.float32)


def main():
  torch.set_num_threads(1)
  out = {
      'versions': np.array(f'python {sys.version.split()[0]}, torch {torch.__version__}, '
                           f'numpy {np.__version__}'),
      'source': np.array(SOURCE),
  }
  counts = []
  for name, (which, args) in COUNTS.items():
    torch.manual_seed(0)
    net = networks.define_G(**args) if which == 'G' else networks.define_D(**args)
    counts.append(sum(p.numel() for p in net.parameters() if p.requires_grad))
    print(f'{name}: {counts[-1]:,}')
  out['count_names'] = np.array(list(COUNTS))
  out['official_param_counts'] = np.array(counts, np.int64)
  out['cases'] = np.array(list(CASES))
  for name, case in CASES.items():
    record_case(name, case, out)
  np.savez_compressed(OUT, **out)
  print(f'{OUT}: {os.path.getsize(OUT) / 1024:.0f} KB, {len(out)} arrays')


if __name__ == '__main__':
  main()
