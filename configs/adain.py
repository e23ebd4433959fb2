"""AdaIN (Huang & Belongie 2017): fast arbitrary style transfer, a decoder on the one loop.

  python -m jaxgen.main --config=configs/adain.py --workdir=/tmp/adain
  python -m jaxgen.stylize --workdir=/tmp/adain --content=photo.jpg --style=painting.jpg \\
      --alpha=0.8 --out=out.png

NEEDS torchvision's ImageNet VGG19 weights (vgg19-dcbb9e9d.pth, 548 MiB) for the frozen encoder
and the losses: `objective.vgg_weights=FILE`, $JAXGEN_VGG19_WEIGHTS, the cache, or a download
(`python -m jaxgen.pretrained fetch vgg19`); without them the run stops before it starts with one
line naming the file. Nothing else is downloaded.

The default is a CPU quickstart on the embedded procedural images (no dataset download): content
images are domain A and style images domain B of `unpaired:embedded,embedded` — two draws of
the same procedural compositions, so a style is another composition's colours and textures
(stripes, checkers, dots, gradients) — at 32×32, batch 8, the official losses (content + 10 ×
style over relu1_1..relu4_1) and the official decoder (3,505,219 parameters), Adam with the
official decay, lr 1e-3 (10× the official 1e-4, for a 600-step run). 64 held-out pairs are
scored at each evaluation (jaxgen.evaluation.StyleEvaluator: the outputs' content and style
losses, beside the untouched content image, `baseline_*`); the grids show content | style |
output.

Measured on a 2-core CPU (JAX 0.10.2) with a random-weight VGG19 file in place of the ImageNet
one (none is on that machine; the cost is the same): the 600 steps with start-up and three
evaluations took 20.2 minutes of wall-clock (1.8–2.0 s per step of 8) while the two cores were
shared with other jobs (load average 10–13), and 9.8 minutes of CPU time (542 s user + 44 s
system), under 10 minutes even on one free core (not timed on an unshared machine). `python -m jaxgen.bench --config=configs/adain.py`
counts 3.17 GFLOP per training image at 32². The losses with random weights say nothing about
stylisation, so no quality is claimed here: a result needs the ImageNet weights.

Presets (`--config=configs/adain.py:NAME`):
  official  the official training: the official encoder (vgg_normalised.pth, from the
            official release; `objective.vgg_weights`, $JAXGEN_ADAIN_VGG_WEIGHTS or the cache),
            content MS-COCO, style WikiArt (point data.source at your
            copies: "unpaired:/data/coco/train2014,/data/wikiart/train"), images at 512² and
            random 256² crops (the official code resizes to 512×512 without keeping the aspect
            ratio; jaxgen's sources centre-crop a square first), batch 8, Adam 1e-4 decayed as
            lr / (1 + 5e-5 · step), 160,000 steps, λ_s = 10.
"""

import ml_collections


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Decoder init, data order, crops.

  # Content = domain A, style = domain B of a two-domain source (jaxgen/data/unpaired.py).
  config.data = ml_collections.ConfigDict()
  # 'unpaired:CONTENT,STYLE': folders or source specs ('folder:PATH', 'tfds:NAME:SPLIT', ...).
  config.data.source = 'unpaired:embedded,embedded'
  config.data.resolution = 32  # Images are centre-cropped and resized to this square.
  config.data.channels = 3
  config.data.num_images = 20000  # Per domain of the embedded data.
  config.data.seed = 0
  config.data.xflip = False  # Flips are the task's (task.flip).
  config.data.use_labels = False
  config.data.holdout = 64  # Images of each domain kept out of training and scored.
  config.data.cache_dir = ''
  config.data.tfds_data_dir = ''
  config.data.tfds_download = True
  config.data.num_threads = 4

  # What a training example becomes (jaxgen.recipes.adain.StyleTask).
  config.task = ml_collections.ConfigDict()
  config.task.crop = 0  # Random crops of this size, each domain its own (0 = whole images).
  config.task.flip = False  # The official code does not flip.

  config.model = ml_collections.ConfigDict()
  config.model.name = 'adain'
  config.model.dtype = 'float32'  # Compute dtype of the encoder and decoder.
  # The frozen encoder: 'vgg19' (torchvision's ImageNet VGG19, vgg19-dcbb9e9d.pth) or
  # 'vgg_normalised' (the official AdaIN encoder, vgg_normalised.pth; fetched by hand).
  config.model.encoder = 'vgg19'
  config.model.init_from = ''  # Another adain run to take the decoder from (fine-tuning).

  # Losses (jaxgen/objectives/style.py).
  config.objective = ml_collections.ConfigDict()
  config.objective.content_weight = 1.0
  config.objective.style_weight = 10.0  # λ of the paper and the official train.py.
  config.objective.vgg_weights = ''  # '' = the usual lookup (jaxgen/pretrained.py).

  # Adam on the decoder, lr / (1 + lr_decay · step) as the official `adjust_learning_rate`.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.lr = 1e-3  # Official: 1e-4 (the :official preset); 10× for a short run.
  config.optimizer.lr_decay = 5e-5
  config.optimizer.b1 = 0.9  # torch.optim.Adam's defaults.
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 8
  config.train.num_steps = 600

  # What `generate` (and jaxgen.stylize) does by default.
  config.sampling = ml_collections.ConfigDict()
  config.sampling.alpha = 1.0  # Content–style trade-off: 1 = all style.

  # Held-out content × style pairs (jaxgen/evaluation.py: StyleEvaluator), beside the content.
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('loss', 'content_loss', 'style_loss')
  config.eval.num_images = 64
  config.eval.batch_size = 32
  config.eval.every_steps = 200
  config.eval.at_start = False
  config.eval.source = ''  # Another two-domain source to evaluate on.

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 200
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'loss'
  config.checkpoint.best_mode = 'min'

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 50
  config.log.num_samples = 8  # Content | style | output triplets in each grid.

  if preset == 'official':
    config.data.source = 'unpaired:/path/to/coco/train2014,/path/to/wikiart/train'
    config.model.encoder = 'vgg_normalised'
    config.data.resolution = 512
    config.data.holdout = 256
    config.task.crop = 256
    config.optimizer.lr = 1e-4
    config.train.num_steps = 160_000
    config.eval.every_steps = 10_000
    config.checkpoint.every_steps = 10_000
    config.log.every_steps = 100
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use official')
  return config
