"""Records tests/data/edm2_unet.npz: outputs of NVlabs edm2's magnitude-preserving U-Net and its
Precond (denoiser and learned uncertainty), for tests/test_edm2unet.py (which never imports
torch).

Run once, with CPU PyTorch and the official source (github.com/NVlabs/edm2) on the path; see
README_edm2_unet.md for the exact command. `dnnlib/util.py` imports `requests` (for downloads
this script never makes), so an empty stand-in module is installed when `requests` is missing.

Keys (every image array NHWC; every state-dict entry in the official layout, OIHW / [out, in]):

  versions, variants, count_names                strings
  official_param_counts                          int64: Precond trainable parameters of the
                                                 full-size presets named in count_names
  VARIANT/config                                 JSON: Precond's keyword arguments
  VARIANT/state/NAME                             the official state dict (parameters and the
                                                 Fourier buffers), gains re-drawn (below)
  VARIANT/x, VARIANT/sigma, VARIANT/class_labels inputs: x [3, 16, 16, 3], σ [3], one-hot labels
  VARIANT/D, VARIANT/logvar                      D(x; σ, labels) and u(σ) [3, 1, 1, 1], eval mode
  VARIANT/D_nolabels                             D(x; σ) with class_labels=None (labelled only)
  VARIANT/forced/NAME                            the state dict after one forward pass in
                                                 training mode: forced weight normalisation
                                                 rewrites every MPConv weight in place

Every MPConv weight starts N(0, 1) officially and is used as such. The gains start at 0 (every
block's emb_gain, the output's out_gain), which would make the output c_skip·x and prove little:
before recording they are re-drawn from 0.5 + 0.3·N(0, 1) with the variant's generator.
"""

import json
import os
import sys
import types

import numpy as np

EDM2_SRC = os.environ.get('EDM2_SRC', '/tmp/edm2')
sys.path.insert(0, EDM2_SRC)
try:
  import requests  # noqa: F401  (dnnlib.util imports it at module level)
except ImportError:
  sys.modules['requests'] = types.ModuleType('requests')

import torch  # noqa: E402
from training import networks_edm2  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'edm2_unet.npz')

VARIANTS = {
    # Conditional, two levels, attention at 8² (and the bottleneck's), box resampling.
    'cond': dict(seed=1, sigma=[0.02, 0.7, 30.0],
                 precond=dict(img_resolution=16, img_channels=3, label_dim=3, use_fp16=False,
                              logvar_channels=16, model_channels=8, channel_mult=[1, 2],
                              num_blocks=1, attn_resolutions=[8], channels_per_head=8)),
    # Unconditional, three levels, two blocks each, binomial resampling, other balances, an
    # explicit noise/embedding width.
    'uncond': dict(seed=2, sigma=[0.05, 2.0, 60.0],
                   precond=dict(img_resolution=16, img_channels=3, label_dim=0, use_fp16=False,
                                logvar_channels=8, model_channels=4, channel_mult=[1, 2, 3],
                                channel_mult_noise=2, channel_mult_emb=3, num_blocks=2,
                                attn_resolutions=[4], channels_per_head=4, res_balance=0.4,
                                attn_balance=0.2, label_balance=0.5, concat_balance=0.6,
                                resample_filter=[1, 3, 3, 1])),
}

# train_edm2.py's presets as Precond (use_fp16 does not change the count): ImageNet-512 in the
# Stability VAE's latent space (64², 4 channels) and ImageNet-64 in pixels, 1000 classes.
COUNTS = {
    'edm2-img512-xs': dict(img_resolution=64, img_channels=4, label_dim=1000, model_channels=128),
    'edm2-img512-s': dict(img_resolution=64, img_channels=4, label_dim=1000, model_channels=192),
    'edm2-img64-s': dict(img_resolution=64, img_channels=3, label_dim=1000, model_channels=192),
    'edm2-img64-s-uncond': dict(img_resolution=64, img_channels=3, label_dim=0,
                                model_channels=192),
}


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1).astype(np.float32)


def main():
  out = {'versions': np.array([f'python {sys.version.split()[0]}', f'torch {torch.__version__}',
                               f'numpy {np.__version__}'])}
  for name, v in VARIANTS.items():
    torch.manual_seed(v['seed'])
    net = networks_edm2.Precond(**v['precond'])
    gen = torch.Generator().manual_seed(100 + v['seed'])
    with torch.no_grad():
      for pname, p in net.named_parameters():
        if pname.endswith('_gain'):
          p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=gen))
    x = torch.randn([3, 3, 16, 16], generator=gen) * 1.3
    sigma = torch.tensor(v['sigma'])
    out[f'{name}/config'] = np.array(json.dumps(v['precond']))
    for k, t in net.state_dict().items():
      out[f'{name}/state/{k}'] = t.detach().numpy().astype(np.float32)
    out[f'{name}/x'] = nhwc(x)
    out[f'{name}/sigma'] = sigma.numpy().astype(np.float32)
    labels = None
    if v['precond']['label_dim']:
      labels = torch.nn.functional.one_hot(torch.tensor([0, 2, 1]),
                                           v['precond']['label_dim']).float()
      out[f'{name}/class_labels'] = labels.numpy()
    net.eval()
    with torch.no_grad():
      d, logvar = net(x, sigma, labels, return_logvar=True)
      out[f'{name}/D'] = nhwc(d)
      out[f'{name}/logvar'] = logvar.numpy().astype(np.float32)
      if labels is not None:
        out[f'{name}/D_nolabels'] = nhwc(net(x, sigma, None))
    net.train()
    with torch.no_grad():
      net(x, sigma, labels, return_logvar=True)  # As EDM2Loss calls it: forced weight
      # normalisation rewrites every MPConv weight, the uncertainty head's too.
    for k, t in net.state_dict().items():
      out[f'{name}/forced/{k}'] = t.detach().numpy().astype(np.float32)
  counts = []
  for name, kwargs in COUNTS.items():
    net = networks_edm2.Precond(**kwargs)
    counts.append(sum(p.numel() for p in net.parameters()))
    del net
  out['variants'] = np.array(list(VARIANTS))
  out['count_names'] = np.array(list(COUNTS))
  out['official_param_counts'] = np.array(counts, np.int64)
  np.savez_compressed(OUT, **out)
  print(OUT, {k: v for k, v in zip(COUNTS, counts)})


if __name__ == '__main__':
  main()
