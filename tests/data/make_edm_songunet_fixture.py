"""Records tests/data/edm_songunet.npz: outputs of NVlabs edm's SongUNet, its Conv2d and its
EDM/VP/VE preconditionings, for tests/test_songunet.py (which never imports torch).

Run once, with CPU PyTorch and the official source (github.com/NVlabs/edm, commit 008a4e5) on
the path; see README_edm_songunet.md for the exact command. `dnnlib/util.py` imports `requests`
(for downloads this script never makes), so an empty stand-in module is installed when
`requests` is missing.

Keys (every image array NHWC; every state-dict entry in the official layout, OIHW / [out, in]):

  versions, variants                          strings
  official_param_counts                       int64 [8]: EDMPrecond trainable parameters of the
                                              full-size configurations named in count_names
  count_names                                 strings
  VARIANT/config                              JSON: {'kind', 'precond': {...}, 'model': {...}}
  VARIANT/state/NAME                          the official state dict, weights re-drawn (below)
  init/config                                 JSON: a one-level SongUNet (model_channels 64,
                                              10 classes, augment labels, attention), EDMPrecond
  init/names, init/stats                      float64 [K, 4]: mean, std, max |.|, numel of
                                              each tensor of its fresh official initialisation
  vp_sigma_range                              float64 [2]: VPPrecond's sigma_min, sigma_max
  VARIANT/x, VARIANT/sigma                    inputs: x [3, 16, 16, 3], σ [3]
  VARIANT/class_labels, VARIANT/augment_labels   when the variant has them
  VARIANT/D                                   D(x; σ, labels, augment labels), eval mode
  VARIANT/D_nolabels                          D(x; σ) with class_labels=None and no augment
                                              labels (only for the labelled variant)
  conv/CASE/{weight,bias,x,y}                 one official Conv2d: weight OIHW (absent for
                                              kernel 0), input and output NHWC

The freshly initialised SongUNet's last layers are scaled by 1e-5, so its output is ≈ 0 and
would prove little: before recording, every tensor is re-drawn from N(0, 1/fan_in) (weights),
1 + 0.2·N(0, 1) (GroupNorm scales) or 0.2·N(0, 1) (biases), with the seed of the variant.
The Fourier frequencies and resampling filters are kept as initialised.
"""

import json
import os
import sys
import types

import numpy as np

EDM_SRC = os.environ.get('EDM_SRC', '/tmp/edm_src')
sys.path.insert(0, EDM_SRC)
try:
  import requests  # noqa: F401  (dnnlib.util imports it at module level)
except ImportError:
  sys.modules['requests'] = types.ModuleType('requests')

import torch  # noqa: E402
from training import networks  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'edm_songunet.npz')

SMALL = dict(model_channels=4, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8],
             dropout=0.1)

VARIANTS = {
    # DDPM++ (positional embedding, standard encoder/decoder, box filter), conditional, with
    # augmentation labels, in EDM's preconditioning.
    'ddpmpp_edm': dict(seed=1, kind='edm', sigma=[0.02, 0.7, 30.0],
                       precond=dict(label_dim=3),
                       model=dict(SMALL, augment_dim=9, embedding_type='positional',
                                  channel_mult_noise=1, encoder_type='standard',
                                  decoder_type='standard', resample_filter=[1, 1])),
    # NCSN++ (Fourier embedding, residual encoder, binomial filter) in VE's preconditioning.
    'ncsnpp_ve': dict(seed=2, kind='ve', sigma=[0.05, 2.0, 60.0], precond=dict(),
                      model=dict(SMALL, embedding_type='fourier', channel_mult_noise=2,
                                 encoder_type='residual', decoder_type='standard',
                                 resample_filter=[1, 3, 3, 1])),
    # Skip encoder and skip decoder in VP's preconditioning.
    'skip_vp': dict(seed=3, kind='vp', sigma=[0.01, 1.0, 80.0], precond=dict(),
                    model=dict(SMALL, embedding_type='positional', channel_mult_noise=1,
                               encoder_type='skip', decoder_type='skip',
                               resample_filter=[1, 3, 3, 1])),
}
PRECONDS = {'edm': networks.EDMPrecond, 'vp': networks.VPPrecond, 've': networks.VEPrecond}

# EDM's train.py CIFAR-10 (32²) and FFHQ/AFHQ (64²) SongUNets, as EDMPrecond.
FULL = dict(img_resolution=32, img_channels=3, model_type='SongUNet', model_channels=128,
            channel_mult=[2, 2, 2], dropout=0.13)
DDPMPP = dict(embedding_type='positional', encoder_type='standard', decoder_type='standard',
              channel_mult_noise=1, resample_filter=[1, 1])
NCSNPP = dict(embedding_type='fourier', encoder_type='residual', decoder_type='standard',
              channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
COUNTS = {
    'ddpmpp32': dict(FULL, **DDPMPP),
    'ddpmpp32_cond10': dict(FULL, **DDPMPP, label_dim=10),
    'ncsnpp32': dict(FULL, **NCSNPP),
    'ddpmpp64': dict(FULL, **DDPMPP, img_resolution=64, channel_mult=[1, 2, 2, 2]),
    'ddpmpp32_aug9': dict(FULL, **DDPMPP, augment_dim=9),
    'ddpmpp32_cond10_aug9': dict(FULL, **DDPMPP, label_dim=10, augment_dim=9),
    'ncsnpp32_aug9': dict(FULL, **NCSNPP, augment_dim=9),
    'ddpmpp64_aug9': dict(FULL, **DDPMPP, img_resolution=64, channel_mult=[1, 2, 2, 2],
                          augment_dim=9),
}


def nhwc(t):
  return np.ascontiguousarray(t.detach().numpy().transpose(0, 2, 3, 1).astype(np.float32))


def nchw(a):
  return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def redraw(net, gen):
  """Every parameter from N(0, 1/fan_in), GroupNorm scales 1 + 0.2 N, biases 0.2 N."""
  with torch.no_grad():
    for name, p in net.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if name.endswith('bias'):
        p.copy_(0.2 * noise)
      elif p.ndim == 1:
        p.copy_(1 + 0.2 * noise)
      else:
        p.copy_(noise / np.sqrt(np.prod(p.shape[1:])))


def record_variant(name, spec, out):
  torch.manual_seed(spec['seed'])
  gen = torch.Generator().manual_seed(100 + spec['seed'])
  net = PRECONDS[spec['kind']](img_resolution=16, img_channels=3, model_type='SongUNet',
                               **spec['precond'], **spec['model'])
  redraw(net, gen)
  net.eval()
  for key, value in net.state_dict().items():
    out[f'{name}/state/{key}'] = value.detach().numpy().astype(np.float32)

  n = len(spec['sigma'])
  sigma = torch.tensor(spec['sigma'], dtype=torch.float32)
  x = torch.randn([n, 3, 16, 16], generator=gen) * (0.25 + sigma.reshape(-1, 1, 1, 1) ** 2).sqrt()
  kwargs = {}
  label_dim = spec['precond'].get('label_dim', 0)
  if label_dim:
    labels = torch.zeros([n, label_dim])
    labels[torch.arange(n), torch.arange(n) % label_dim] = 1
    kwargs['class_labels'] = labels
    out[f'{name}/class_labels'] = labels.numpy()
  if spec['model'].get('augment_dim', 0):
    augment = torch.randn([n, spec['model']['augment_dim']], generator=gen)
    kwargs['augment_labels'] = augment
    out[f'{name}/augment_labels'] = augment.numpy()
  with torch.no_grad():
    out[f'{name}/D'] = nhwc(net(x, sigma, **kwargs))
    if kwargs:
      out[f'{name}/D_nolabels'] = nhwc(net(x, sigma))
  if spec['kind'] == 'vp':
    out['vp_sigma_range'] = np.array([net.sigma_min, net.sigma_max], np.float64)
  out[f'{name}/x'] = nhwc(x)
  out[f'{name}/sigma'] = sigma.numpy()
  out[f'{name}/config'] = np.array(json.dumps(
      dict(kind=spec['kind'], precond=spec['precond'], model=spec['model'])))


# Few layers (compiles fast) with many weights each (tight statistics) for the initialisation
# test: every layer kind of a SongUNet block, the label and augmentation embeddings, attention.
INIT = dict(model_channels=64, channel_mult=[1], num_blocks=0, attn_resolutions=[8],
            augment_dim=9)


def record_init(out):
  torch.manual_seed(11)
  net = networks.EDMPrecond(img_resolution=8, img_channels=3, label_dim=10,
                            model_type='SongUNet', **INIT)
  init = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
  out['init/names'] = np.array(list(init))
  out['init/stats'] = np.array([[v.mean(), v.std(), np.abs(v).max(), v.size]
                                for v in init.values()])
  out['init/config'] = np.array(json.dumps(dict(img_resolution=8, label_dim=10, **INIT)))


def conv_cases():
  for filt in ([1, 1], [1, 3, 3, 1]):
    tag = ''.join(map(str, filt))
    for mode in ('up', 'down'):
      for fused in (False, True):
        yield f'k3_{mode}_f{tag}_{"fused" if fused else "plain"}', dict(
            out_channels=4, kernel=3, resample_filter=filt, fused_resample=fused, **{mode: True})
      yield f'k1_{mode}_f{tag}', dict(out_channels=4, kernel=1, resample_filter=filt,
                                      **{mode: True})
      yield f'k0_{mode}_f{tag}', dict(out_channels=3, kernel=0, resample_filter=filt,
                                      **{mode: True})
  yield 'k3_plain', dict(out_channels=4, kernel=3)


def record_conv(out):
  torch.manual_seed(7)
  for case, kwargs in conv_cases():
    conv = networks.Conv2d(in_channels=3, init_bias=1, **kwargs)
    x = torch.randn([2, 3, 6, 6])
    with torch.no_grad():
      y = conv(x)
    if conv.weight is not None:
      out[f'conv/{case}/weight'] = conv.weight.detach().numpy()
      out[f'conv/{case}/bias'] = conv.bias.detach().numpy()
    out[f'conv/{case}/x'] = nhwc(x)
    out[f'conv/{case}/y'] = nhwc(y)


def main():
  torch.set_num_threads(1)
  out = {}
  for name, spec in VARIANTS.items():
    record_variant(name, spec, out)
  record_conv(out)
  record_init(out)
  counts = []
  for name, kwargs in COUNTS.items():
    torch.manual_seed(0)
    net = networks.EDMPrecond(**kwargs)
    counts.append(sum(p.numel() for p in net.parameters()))
    print(f'{name:24s} {counts[-1]:,}')
    del net
  out['official_param_counts'] = np.array(counts, np.int64)
  out['count_names'] = np.array(list(COUNTS))
  out['variants'] = np.array(list(VARIANTS))
  out['versions'] = np.array([f'torch {torch.__version__}', f'numpy {np.__version__}',
                              'NVlabs/edm 008a4e5'])
  np.savez_compressed(OUT, **out)
  print(f'{OUT}: {os.path.getsize(OUT):,} bytes, {len(out)} arrays')


if __name__ == '__main__':
  main()
