"""Records tests/data/adain_official.npz for tests/test_adain.py (which never imports torch): the
official AdaIN networks' outputs.

Run once with CPU PyTorch and naoto0804/pytorch-AdaIN's `net.py` and `function.py` on the path;
see README_adain_official.md for the exact command and versions:

  ADAIN_SRC=/tmp/adain_src /tmp/tv/bin/python tests/data/make_adain_official_fixture.py

No weights are downloaded: every convolution of the official `net.vgg` (all 16 of
vgg_normalised.pth's layout, to relu5_4) and `net.decoder` gets the weights that
`shared_weights(seed)` draws with NumPy, in Sequential order; the tests draw the same ones by
importing this file. So the fixture holds only inputs and outputs.

Keys of adain_official.npz (images and features NHWC, float32):

  versions             string: python, torch, numpy, the official commit
  seed                 int: the seed of `shared_weights`
  content, style       [1, 36, 44, 3] and [1, 28, 36, 3] in [0, 1] (odd sides after two
                       poolings: the official max-pools round up)
  content/relu1_1 ...  net.vgg's enc_1..enc_4 (train.py's split) of the content;
                       relu1_1 and relu2_1 channels [::8], relu3_1 and relu4_1 [::4]
  style/relu4_1        enc_4 of the style, channels [::4]
  t                    adaptive_instance_normalization(content relu4_1, style relu4_1), all
                       512 channels
  out/alpha1           test.py's style_transfer(vgg, decoder, content, style, alpha=1.0)
  out/alpha0.6         the same with alpha=0.6

The state_dicts themselves (14 MB each) are not stored: `state_dicts(seed)` rebuilds them, keyed
as the published files are ('0.weight', '0.bias', '2.weight', ...).
"""

import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
COMMIT = '47950d0e6656a95a80a4b105c4c0f58d38ef785c'
# (in, out, kernel) of net.vgg's 17 convolutions and net.decoder's 9, in Sequential order.
VGG_CONVS = ([(3, 3, 1), (3, 64, 3), (64, 64, 3), (64, 128, 3), (128, 128, 3), (128, 256, 3)]
             + [(256, 256, 3)] * 3 + [(256, 512, 3)] + [(512, 512, 3)] * 7)
DECODER_CONVS = [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128),
                 (128, 64), (64, 64), (64, 3)]


def shared_weights(seed=SEED):
  """{'vgg': [(weight OIHW, bias), ...] for VGG_CONVS, 'decoder': [...] for DECODER_CONVS}:
  He-scaled normal weights and small normal biases, drawn in that order."""
  rng = np.random.default_rng(seed)

  def conv(c_in, c_out, k):
    weight = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
    bias = rng.standard_normal(c_out) * 0.1
    return weight.astype(np.float32), bias.astype(np.float32)

  vgg = [conv(*spec) for spec in VGG_CONVS]
  decoder = [conv(c_in, c_out, 3) for c_in, c_out in DECODER_CONVS]
  return {'vgg': vgg, 'decoder': decoder}


def state_dicts(seed=SEED):
  """The shared weights as the official state_dicts: {'vgg': vgg_normalised.pth's layout,
  'decoder': decoder.pth's} (Sequential index '.weight' / '.bias'; ReLUs, pads, pools and
  up-samplings hold no parameters)."""
  weights = shared_weights(seed)
  vgg_indices = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
  decoder_indices = (1, 5, 8, 11, 14, 18, 21, 25, 28)
  out = {}
  for name, indices in (('vgg', vgg_indices), ('decoder', decoder_indices)):
    out[name] = {}
    for index, (w, b) in zip(indices, weights[name]):
      out[name][f'{index}.weight'], out[name][f'{index}.bias'] = w, b
  return out


def inputs(seed=SEED):
  rng = np.random.default_rng([seed, 1])
  return (rng.uniform(0, 1, (1, 36, 44, 3)).astype(np.float32),
          rng.uniform(0, 1, (1, 28, 36, 3)).astype(np.float32))


def main():
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.environ['ADAIN_SRC'])
  import function  # pylint: disable=import-outside-toplevel
  import net  # pylint: disable=import-outside-toplevel

  weights = shared_weights()
  for module, convs in ((net.vgg, weights['vgg']), (net.decoder, weights['decoder'])):
    layers = [m for m in module if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == len(convs)
    for layer, (w, b) in zip(layers, convs):
      layer.weight.data = torch.from_numpy(w)
      layer.bias.data = torch.from_numpy(b)
  vgg, decoder = net.vgg.eval(), net.decoder.eval()
  encoder = torch.nn.Sequential(*list(vgg.children())[:31])  # test.py's.
  stages = [vgg[:4], vgg[4:11], vgg[11:18], vgg[18:31]]  # train.py's enc_1..enc_4.
  content, style = inputs()
  to_torch = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  to_nhwc = lambda x: x.detach().numpy().transpose(0, 2, 3, 1)
  out = {'versions': np.array(f'python {platform.python_version()}, torch {torch.__version__}, '
                              f'numpy {np.__version__}, pytorch-AdaIN {COMMIT}'),
         'seed': np.array(SEED), 'content': content, 'style': style}
  with torch.no_grad():
    x = to_torch(content)
    for name, stage, step in zip(('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1'), stages,
                                 (8, 8, 4, 4)):
      x = stage(x)
      out[f'content/{name}'] = to_nhwc(x)[..., ::step]
    content_f, style_f = encoder(to_torch(content)), encoder(to_torch(style))
    out['style/relu4_1'] = to_nhwc(style_f)[..., ::4]
    t = function.adaptive_instance_normalization(content_f, style_f)
    out['t'] = to_nhwc(t)
    for alpha in (1.0, 0.6):  # test.py's style_transfer, without interpolation weights.
      feat = t * alpha + content_f * (1 - alpha)
      out[f'out/alpha{alpha:g}'] = to_nhwc(decoder(feat))
  np.savez_compressed(os.path.join(HERE, 'adain_official.npz'), **out)
  for module, sd in ((vgg, state_dicts()['vgg']), (decoder, state_dicts()['decoder'])):
    theirs = module.state_dict()  # The official key names, which state_dicts() must reproduce.
    assert sorted(theirs) == sorted(sd), (sorted(theirs)[:4], sorted(sd)[:4])
  for key, value in out.items():
    print(key, value.shape, value.dtype)


if __name__ == '__main__':
  main()
