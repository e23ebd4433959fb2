"""Records tests/data/srnet.npz: outputs of BasicSR's MSRResNet, RRDBNet (ESRGAN) and
VGGStyleDiscriminator, for tests/test_srnet.py (which never imports torch).

Run once, with CPU PyTorch and the official sources on the path; README_srnet.md has the exact
commands. Only BasicSR's four arch files are imported (`arch_util`, `srresnet_arch`,
`rrdbnet_arch`, `discriminator_arch`, plus `utils/registry.py` for their decorator): the package
`__init__`s import the whole of BasicSR (data pipelines, OpenCV, every arch), so the packages are
set up by hand, with stand-ins for what `arch_util` imports but these networks never use: the
deformable-convolution extension, torchvision and the logger.

Keys (image arrays NHWC; state-dict entries in the official layout, OIHW / [out, in]):

  versions, sources                           strings: library versions, source commits
  VARIANT/config                              JSON: the official constructor's keyword arguments
  VARIANT/state/NAME                          the official state dict, re-drawn (below), float16
                                              (every value is exactly a float16, see below)
  VARIANT/x                                   uint8 [N, H, W, C]: the input is x / 255 (float32);
                                              random, in 2×2 blocks for the discriminator
  VARIANT/y                                   float32: the official output, eval mode
  disc/y_train                                float32 [2, 1]: the discriminator in train mode
                                              (batch statistics), one forward from the state
  disc/train_state/NAME                       float32: the BatchNorm running statistics after it
  count_names, official_param_counts          int64: trainable parameters (sum of numel) of the
                                              full-size official networks named in count_names
  init/NET/names, init/NET/stats              float64 [K, 4]: mean, std, excess kurtosis, numel
                                              of every parameter of a fresh official NET
  init/NET/config                             JSON: its constructor's keyword arguments
  names/basicsr, names/xinntao                the state-dict names of BasicSR's RRDBNet and of
                                              xinntao/ESRGAN's RRDBNet_arch.RRDBNet (num_feat 8,
                                              num_block 2, growth 4), position by position
  names/basicsr_gc32, names/legacy            the same for ESRGAN's first release
                                              (architecture.RRDB_Net, 'model.N...' names; its
                                              growth is fixed at 32), position by position
  names/shapes_gc32                           JSON: {BasicSR name: shape} of that network
  pixel_shuffle/x, pixel_shuffle/y{r}         torch.nn.PixelShuffle(r) of an arange, NHWC
  pixel_unshuffle/x, pixel_unshuffle/y{r}     BasicSR's arch_util.pixel_unshuffle, NHWC
  bilinear/x, bilinear/y{r}                   F.interpolate(x, scale_factor=r, mode='bilinear',
                                              align_corners=False), NHWC

The freshly initialised networks would prove little (MSRResNet's convolutions start at 0.1 ×
Kaiming and zero biases, so its output is ≈ the bilinear up-sampling of its input), so every
tensor is re-drawn before recording: weights N(0, 2/fan_in), biases 0.1·N(0, 1), BatchNorm scales
1 + 0.2·N(0, 1) and shifts 0.2·N(0, 1), running means 0.2·N(0, 1) and running variances
exp(0.4·N(0, 1)), and `num_batches_tracked` = 3. Each value is then rounded to 4 significant bits
and to float16 (and used as the float32 it is exactly), so the file stores it in a quarter of the
bytes without changing it: random weights of 4 significant bits test the architecture as well.

The two ESRGAN naming schemes are checked here, not just recorded: each network is loaded with
the BasicSR weights position by position (the shapes must agree) and must give BasicSR's output.
"""

import importlib
import json
import logging
import os
import sys
import types

import numpy as np

BASICSR_SRC = os.environ.get('BASICSR_SRC', '/tmp/basicsr_src')
ESRGAN_SRC = os.environ.get('ESRGAN_SRC', '/tmp/esrgan_src')
ESRGAN_LEGACY_SRC = os.environ.get('ESRGAN_LEGACY_SRC', '/tmp/esrgan_legacy')
SOURCES = ('XPixelGroup/BasicSR 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a (v1.4.2); '
           'xinntao/ESRGAN 73e9b634cf987f5996ac2dd33f4050922398a921 (RRDBNet_arch.py); '
           'xinntao/ESRGAN 5998a4582a34de56fac8207568bb44502ad1d391 (architecture.py, block.py)')

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'srnet.npz')


def _package(name, path=None):
  module = types.ModuleType(name)
  module.__path__ = [path] if path else []
  sys.modules[name] = module
  return module


def import_basicsr():
  """BasicSR's arch modules, without running the package `__init__`s."""
  root = os.path.join(BASICSR_SRC, 'basicsr')
  _package('basicsr', root)
  utils = _package('basicsr.utils', os.path.join(root, 'utils'))
  utils.get_root_logger = logging.getLogger  # only DCNv2Pack logs
  _package('basicsr.ops', os.path.join(root, 'ops'))
  dcn = types.ModuleType('basicsr.ops.dcn')  # a compiled extension, unused by these archs
  dcn.ModulatedDeformConvPack = torch.nn.Module
  dcn.modulated_deform_conv = None
  sys.modules['basicsr.ops.dcn'] = dcn
  _package('basicsr.archs', os.path.join(root, 'archs'))
  # arch_util imports torchvision for DCNv2Pack only: a stand-in, so that no torchvision (nor one
  # built for another torch) is needed.
  sys.modules['torchvision'] = types.ModuleType('torchvision')
  names = ('arch_util', 'srresnet_arch', 'rrdbnet_arch', 'discriminator_arch')
  return {n: importlib.import_module(f'basicsr.archs.{n}') for n in names}


def import_path(name, path):
  sys.path.insert(0, path)
  try:
    return importlib.import_module(name)
  finally:
    sys.path.remove(path)


ARCHS = import_basicsr()
ESRGAN = import_path('RRDBNet_arch', ESRGAN_SRC)
LEGACY = import_path('architecture', ESRGAN_LEGACY_SRC)  # imports block.py from the same folder

BUILD = {
    'msrresnet': lambda cfg: ARCHS['srresnet_arch'].MSRResNet(**cfg),
    'rrdbnet': lambda cfg: ARCHS['rrdbnet_arch'].RRDBNet(**cfg),
    'disc': lambda cfg: ARCHS['discriminator_arch'].VGGStyleDiscriminator(**cfg),
}

# name: (network, seed, constructor kwargs, input shape NHWC)
VARIANTS = {
    'msrresnet_x2': ('msrresnet', 1, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2,
                                          upscale=2), (2, 6, 7, 3)),
    'msrresnet_x3': ('msrresnet', 2, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2,
                                          upscale=3), (2, 6, 7, 3)),
    'msrresnet_x4': ('msrresnet', 3, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2,
                                          upscale=4), (2, 6, 7, 3)),
    'rrdb_x4': ('rrdbnet', 4, dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2,
                                   num_grow_ch=4), (2, 8, 6, 3)),
    # Real-ESRGAN's ×2: pixel-unshuffle by 2 first, then the same ×4 network (×1 unshuffles by 4:
    # the same code, checked through pixel_unshuffle/y4 and the parameter count).
    'rrdb_x2': ('rrdbnet', 5, dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1,
                                   num_grow_ch=4), (2, 8, 6, 3)),
    'disc': ('disc', 7, dict(num_in_ch=3, num_feat=4, input_size=128), (2, 128, 128, 3)),
}

FULL = {
    'msrresnet_x2': ('msrresnet', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16,
                                       upscale=2)),
    'msrresnet_x3': ('msrresnet', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16,
                                       upscale=3)),
    'msrresnet_x4': ('msrresnet', dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16,
                                       upscale=4)),
    'rrdbnet_x4': ('rrdbnet', dict(num_in_ch=3, num_out_ch=3, scale=4)),
    'rrdbnet_x2': ('rrdbnet', dict(num_in_ch=3, num_out_ch=3, scale=2)),
    'rrdbnet_x1': ('rrdbnet', dict(num_in_ch=3, num_out_ch=3, scale=1)),
    'disc128': ('disc', dict(num_in_ch=3, num_feat=64, input_size=128)),
    'disc256': ('disc', dict(num_in_ch=3, num_feat=64, input_size=256)),
}

INIT = {
    'msrresnet': dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=1, upscale=2),
    'rrdbnet': dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=1,
                    num_grow_ch=32),
    'disc': dict(num_in_ch=3, num_feat=8, input_size=128),
}


def half_exact(t):
  """t rounded to 4 significant bits and to float16, as float32: exactly representable in the
  file's float16, and with 7 of its 10 mantissa bits zero, so that the file compresses to about
  half (the discriminator's weights alone would take 200 KB)."""
  mantissa, exponent = torch.frexp(t)
  return torch.ldexp(torch.round(mantissa * 16) / 16, exponent).half().float()


@torch.no_grad()
def redraw(net, gen):
  for module in net.modules():
    if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
      fan_in = module.weight[0].numel()
      w = torch.randn(module.weight.shape, generator=gen) * np.sqrt(2 / fan_in)
      module.weight.copy_(half_exact(w))
      if module.bias is not None:
        module.bias.copy_(half_exact(0.1 * torch.randn(module.bias.shape, generator=gen)))
    elif isinstance(module, torch.nn.BatchNorm2d):
      c = module.num_features
      module.weight.copy_(half_exact(1 + 0.2 * torch.randn(c, generator=gen)))
      module.bias.copy_(half_exact(0.2 * torch.randn(c, generator=gen)))
      module.running_mean.copy_(half_exact(0.2 * torch.randn(c, generator=gen)))
      module.running_var.copy_(half_exact(torch.exp(0.4 * torch.randn(c, generator=gen))))
      module.num_batches_tracked.fill_(3)


def state_arrays(net, prefix, dtype=np.float16):
  out = {}
  for name, value in net.state_dict().items():
    value = value.detach().numpy()
    if value.dtype == np.float32:
      assert np.array_equal(value.astype(dtype).astype(np.float32), value), name
      value = value.astype(dtype)
    out[f'{prefix}/{name}'] = value
  return out


def nchw(x_nhwc):
  return torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()


def nhwc(y):
  return y.detach().permute(0, 2, 3, 1).contiguous().numpy()


def images(gen, shape):
  """Random uint8 images; from 128 pixels on, each 2×2 block is one random pixel (a quarter of
  the entropy: the discriminator's input stays 25 KB in the file)."""
  n, h, w, c = shape
  block = 2 if h >= 128 else 1
  x = torch.randint(0, 256, (n, h // block, w // block, c), generator=gen, dtype=torch.uint8)
  return x.repeat_interleave(block, 1).repeat_interleave(block, 2).numpy()


def record_variants(out):
  for name, (kind, seed, cfg, shape) in VARIANTS.items():
    torch.manual_seed(seed)
    net = BUILD[kind](cfg)
    gen = torch.Generator().manual_seed(100 + seed)
    redraw(net, gen)
    net.eval()
    x8 = images(gen, shape)
    x = nchw(x8).float() / 255
    out[f'{name}/config'] = json.dumps(cfg)
    out.update(state_arrays(net, f'{name}/state'))
    out[f'{name}/x'] = x8
    with torch.no_grad():
      y = net(x)
    out[f'{name}/y'] = nhwc(y) if y.ndim == 4 else y.numpy()
    if kind == 'msrresnet':  # the network's own part must matter, not only the bilinear base
      base = F.interpolate(x, scale_factor=cfg['upscale'], mode='bilinear', align_corners=False)
      assert (y - base).abs().mean() > 0.1 * base.abs().mean(), name
    if kind == 'disc':
      net.train()
      with torch.no_grad():
        out['disc/y_train'] = net(x).numpy()
      for key, value in net.state_dict().items():
        if 'running' in key:
          out[f'disc/train_state/{key}'] = value.numpy().copy()
      assert not np.allclose(out['disc/y_train'], out['disc/y'])


def record_counts(out):
  names, counts = [], []
  for name, (kind, cfg) in FULL.items():
    net = BUILD[kind](cfg)
    names.append(name)
    counts.append(sum(p.numel() for p in net.parameters()))
  names.append('esrgan_xinntao_x4')
  counts.append(sum(p.numel() for p in ESRGAN.RRDBNet(3, 3, 64, 23, gc=32).parameters()))
  out['count_names'] = np.array(names)
  out['official_param_counts'] = np.array(counts, np.int64)
  assert dict(zip(names, counts))['rrdbnet_x4'] == 16_697_987
  assert dict(zip(names, counts))['esrgan_xinntao_x4'] == 16_697_987


def record_init(out):
  for seed, (kind, cfg) in enumerate(INIT.items()):
    torch.manual_seed(11 + seed)
    net = BUILD[kind](cfg)
    names, stats = [], []
    for name, p in net.named_parameters():
      v = p.detach().double().flatten()
      mean, std = v.mean().item(), v.std(unbiased=False).item()
      kurt = (((v - mean) / std) ** 4).mean().item() - 3 if std > 0 else 0.0
      names.append(name)
      stats.append((mean, std, kurt, v.numel()))
    out[f'init/{kind}/names'] = np.array(names)
    out[f'init/{kind}/stats'] = np.array(stats, np.float64)
    out[f'init/{kind}/config'] = json.dumps(cfg)


@torch.no_grad()
def check_same_network(reference, other, x):
  """Loads reference's weights into `other` position by position (shapes must agree) and checks
  that it computes the same function. Returns both name lists."""
  ref_state, other_state = reference.state_dict(), other.state_dict()
  assert len(ref_state) == len(other_state)
  mapped = {}
  for (ref_name, ref_value), (other_name, other_value) in zip(ref_state.items(),
                                                               other_state.items()):
    assert ref_value.shape == other_value.shape, (ref_name, other_name)
    mapped[other_name] = ref_value
  other.load_state_dict(mapped, strict=True)
  y_ref, y_other = reference(x), other(x)
  assert torch.allclose(y_ref, y_other, rtol=0, atol=1e-6), (y_ref - y_other).abs().max()
  return list(ref_state), list(other_state)


def record_names(out):
  gen = torch.Generator().manual_seed(21)
  x = torch.rand((1, 3, 6, 5), generator=gen)
  torch.manual_seed(21)
  basicsr = ARCHS['rrdbnet_arch'].RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)
  redraw(basicsr, gen)
  xinntao = ESRGAN.RRDBNet(3, 3, 8, 2, gc=4)
  a, b = check_same_network(basicsr.eval(), xinntao.eval(), x)
  out['names/basicsr'], out['names/xinntao'] = np.array(a), np.array(b)

  torch.manual_seed(22)
  basicsr = ARCHS['rrdbnet_arch'].RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=32)
  redraw(basicsr, gen)
  legacy = LEGACY.RRDB_Net(3, 3, 8, 2, gc=32, upscale=4, norm_type=None, act_type='leakyrelu',
                           mode='CNA', res_scale=1, upsample_mode='upconv')
  a, b = check_same_network(basicsr.eval(), legacy.eval(), x)
  out['names/basicsr_gc32'], out['names/legacy'] = np.array(a), np.array(b)
  out['names/shapes_gc32'] = json.dumps({k: list(v.shape) for k, v in basicsr.state_dict().items()})


def record_ops(out):
  x = torch.arange(2 * 36 * 3 * 4, dtype=torch.float32).reshape(2, 36, 3, 4)
  out['pixel_shuffle/x'] = nhwc(x)
  for r in (2, 3):
    out[f'pixel_shuffle/y{r}'] = nhwc(torch.nn.PixelShuffle(r)(x))
  x = torch.arange(2 * 2 * 8 * 12, dtype=torch.float32).reshape(2, 2, 8, 12)
  out['pixel_unshuffle/x'] = nhwc(x)
  for r in (2, 4):
    y = ARCHS['arch_util'].pixel_unshuffle(x, scale=r)
    assert torch.equal(y, F.pixel_unshuffle(x, r))
    out[f'pixel_unshuffle/y{r}'] = nhwc(y)
  gen = torch.Generator().manual_seed(31)
  x = torch.randn((2, 3, 5, 7), generator=gen)
  out['bilinear/x'] = nhwc(x)
  for r in (2, 3, 4):
    out[f'bilinear/y{r}'] = nhwc(F.interpolate(x, scale_factor=r, mode='bilinear',
                                               align_corners=False))


def main():
  torch.set_num_threads(1)
  out = {'versions': f'torch {torch.__version__}, numpy {np.__version__}, python '
                     f'{sys.version.split()[0]}',
         'sources': SOURCES}
  record_variants(out)
  record_counts(out)
  record_init(out)
  record_names(out)
  record_ops(out)
  np.savez_compressed(OUT, **out)
  print(f'wrote {OUT}: {os.path.getsize(OUT) / 1024:.0f} KB')
  for name, count in zip(out['count_names'], out['official_param_counts']):
    print(f'  {name}: {count:,}')


if __name__ == '__main__':
  main()
