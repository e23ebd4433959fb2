"""pix2pix (Isola et al. 2017) and paired image-to-image translation on the one training loop.

  python -m jaxgen.main --config=configs/pix2pix.py --workdir=/tmp/pix2pix

The default is a CPU quickstart on the embedded procedural dataset (no download): denoising
(Gaussian σ 25 in 0–255 units) at 32×32 with pix2pix's networks made small — a 5-level U-Net
(ngf 16, 1.04 M parameters) and a PatchGAN (ndf 16) on the channel-concatenated (noisy, image)
pair — and pix2pix's loss, L1 ×100 + the `vanilla` cGAN, with lr 1e-3 (5× the paper's, for a
3,000-step run) constant for half the run, then decaying to 0. 256 embedded images are held out
(`data.holdout`) and scored at every evaluation beside the trivial baseline, the noisy input
itself (`baseline_*`).

Measured on a 2-core CPU (JAX 0.10.2), 3,000 steps of 16: 5.6 minutes with start-up and three
evaluations (166 training images/s); PSNR / SSIM 25.30 / 0.766 at step 1,000, 25.15 / 0.747 at
2,000, 24.19 / 0.679 at 3,000, against 20.60 / 0.493 for the noisy input. The outputs are clean
shapes and gradients with some of the data's textures re-invented; PSNR falls after step 1,000
as the discriminator takes over (D's loss 0.72 → 0.14): the best checkpoint by PSNR is kept.
These figures use batch norm's running statistics (sampling.norm='running'). The same run
scored with each image's own statistics, as the official test.py does ('batch'), gives PSNR /
SSIM 21.65 / 0.643 at step 1,000 and 21.03 / 0.587 at 3,000 (trained on the statistics of
batches of 16, while one 32² image has only 2×2 and 4×4 pixels at the U-Net's inner levels), so
the quickstarts keep 'running'; the facades preset, trained at batch 1 as the official one, uses
'batch'.

Apply a trained model to your own pictures (inpainting also takes masks: white = fill):
  python -m jaxgen.translate --workdir=/tmp/pix2pix --input=noisy.png --outdir=out

Presets (`--config=configs/pix2pix.py:NAME`):
  facades   the official pix2pix facades recipe: `pairs:DIR` side-by-side AB images (point
            data.source at facades/train; eval.source at facades/val), loaded at 286² and
            randomly cropped to 256² with flips, unet_256 (54,413,955 parameters) + 70×70
            PatchGAN on 6 channels (2,768,705), batch 1, Adam 2e-4 β1 0.5, 100 epochs constant
            + 100 decaying to 0 (80,000 steps of 400 images), `vanilla` GAN + 100·L1, BtoA;
            evaluated and applied as the official test.py does without --eval (each image
            normalised by its own statistics, `sampling.norm='batch'`; dropout off here).
  paired    pix2pix's default on `pairs:embedded` (the embedded CycleGAN domains as pairs:
            each composition orange on teal → the same navy on parchment), scored by PSNR,
            SSIM and SWD to the targets. Measured (3,000 steps of 16, 4.0 minutes): 41.80 /
            0.998 / 10.0 against 7.39 / 0.115 / 166.3 for the input itself; 32.48 / 0.977
            after CycleGAN's quickstart budget (1,000 steps of 4, 39 s), where CycleGAN without
            pairs reaches 15.26 / 0.095.
  denoise   the default.
  blind_denoise  Gaussian σ ∈ [5, 50] (0–255 units) with the quickstart's nets.
  inpaint   holes of free-form strokes and boxes (the mask is an input channel; outputs keep the
            known pixels) with the quickstart's U-Net and L1 alone. Measured (3,000 steps of 16,
            2.4 minutes): PSNR / SSIM 28.17 / 0.875 against 24.43 / 0.825 for the mean-colour
            fill (26.95 / 0.853 at step 1,000). With the cGAN: 24.89 / 0.792 at 3,000 (26.09 /
            0.821 at 2,000), below the mean fill by SSIM; hence no discriminator.
  colorize  luma → the two chroma channels (BT.601 Cb, Cr; the output keeps the input's luma),
            the quickstart's U-Net and L1 alone. Measured (3,000 steps of 16, 2.3 minutes):
            PSNR / SSIM 14.32 / 0.497 against 13.77 / 0.497 for gray. The embedded images'
            colours are random: the mean colour of each luma, the best per-pixel answer,
            scores 14.32 / 0.489 on the same pairs, so the model has learnt what these images
            hold. With the cGAN: 11.77 / 0.310 at step 1,000 (random vivid colours). Where
            colours follow from the image (`--config.data.source=pairs:embedded`, whose targets
            are all navy on parchment): 46.64 / 0.998 against 20.41 / 0.906 for gray.
  bench     unet_256 + PatchGAN at 256², batch 16, bf16 (`python -m jaxgen.bench`).
Super-resolution has its own config, configs/superres.py (built on this one).
"""

import ml_collections


def get_config(preset=''):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Parameter init, data order, degradations, dropout.

  # Data: the targets. Every source works (embedded, folder:, tfds:); pairs:DIR holds real pairs.
  config.data = ml_collections.ConfigDict()
  config.data.source = 'embedded'  # 'embedded' | 'folder:PATH' | 'tfds:NAME[:SPLIT]' | 'pairs:DIR'
  # (or 'pairs:embedded')
  config.data.resolution = 32  # Images are centre-cropped and resized to this square.
  config.data.channels = 3
  config.data.num_images = 20000  # Size of the embedded dataset (procedural).
  config.data.classes = ()  # Embedded data: keep only these classes (e.g. (0, 1)); () = all.
  config.data.seed = 0
  config.data.xflip = True  # Random left-right flips (of both images of a pair), as pix2pix.
  config.data.use_labels = False
  config.data.holdout = 256  # Images kept out of training and scored (0 = none; see eval.source).
  config.data.cache_dir = ''
  config.data.tfds_data_dir = ''
  config.data.tfds_download = True
  config.data.num_threads = 4

  # The task: how an image becomes an (input, target) pair (jaxgen/data/tasks.py).
  config.task = ml_collections.ConfigDict()
  config.task.name = 'denoise'  # 'sr' | 'denoise' | 'inpaint' | 'colorize' | 'paired'
  config.task.crop = 0  # Random training crops of this size (0 = whole images).
  config.task.scale = 4  # sr: 2, 3 or 4.
  config.task.noise_sigma = (25.0,)  # denoise: σ in 0–255 units, fixed (σ,) or a range (lo, hi).
  config.task.jpeg_quality = ()  # denoise: () = no JPEG, or a (lo, hi) quality range after noise.
  config.task.mask_strokes = 4  # inpaint: at most this many free-form strokes ...
  config.task.mask_boxes = 2  # ... and boxes per mask.
  config.task.direction = 'AtoB'  # paired: 'AtoB' (A is the input) or 'BtoA'.

  # Networks (jaxgen/models/pix2pix.py, resnet_generator.py, srnet.py).
  config.model = ml_collections.ConfigDict()
  config.model.name = 'translation'
  # 'unet_256' (8 down-samplings) | 'unet_128' (7) | 'unet' (model.num_downs) | 'resnet_9blocks'
  # | 'resnet_6blocks' | 'srresnet' | 'rrdb' (the last two up-sample: task sr).
  config.model.generator = 'unet'
  config.model.num_downs = 5  # 'unet': 32 px → 1 px at the bottleneck.
  config.model.ngf = 16  # pix2pix: 64.
  config.model.norm = 'batch'  # 'batch' | 'instance' | 'none'
  config.model.use_dropout = True  # pix2pix's U-Net: dropout 0.5 in the three innermost ups.
  config.model.num_feat = 64  # srresnet / rrdb width ...
  config.model.num_block = 16  # ... and depth (RRDB: 23).
  config.model.num_grow_ch = 32  # rrdb's dense growth channels.
  config.model.discriminator = 'patchgan'  # 'patchgan' | 'vgg128' | 'none' (no GAN loss)
  config.model.ndf = 16  # pix2pix: 64.
  config.model.n_layers = 3  # PatchGAN: 3 = 70×70 receptive field.
  config.model.d_norm = 'batch'
  config.model.d_conditional = True  # D sees (input, image) concatenated, as pix2pix's cGAN.
  config.model.dtype = 'float32'
  # A finished run of this recipe (its workdir, or one of its checkpoints/<step> folders) whose
  # generator weights and EMA this run starts from; D and the optimisers start afresh. '' = none.
  config.model.init_from = ''

  # Losses (jaxgen/objectives/translation.py).
  config.objective = ml_collections.ConfigDict()
  config.objective.gan_loss = 'vanilla'  # 'vanilla' | 'lsgan' | 'hinge' | 'ragan' | 'none'
  config.objective.gan_weight = 1.0
  config.objective.pixel_loss = 'l1'  # 'l1' | 'l2'
  config.objective.pixel_weight = 100.0  # pix2pix's λ_L1.
  config.objective.perceptual_weight = 0.0  # > 0: VGG feature L1 (needs ImageNet VGG weights).
  config.objective.perceptual_network = 'vgg19'
  config.objective.perceptual_layers = ('conv5_4',)
  config.objective.vgg_weights = ''  # '' = the usual lookup (jaxgen/pretrained.py).

  # Adam; the learning rate is constant, then decays linearly to 0 from `decay_start` of the run.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.lr = 1e-3  # pix2pix: 2e-4 (the presets); 5× for a 3,000-step quickstart.
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.schedule = 'linear'  # 'constant' | 'linear' | 'cosine'
  config.optimizer.decay_start = 0.5  # pix2pix: 100 of 200 epochs.

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16  # pix2pix: 1.
  config.train.num_steps = 3000
  config.train.ema_kimg = 0.0  # EMA half-life of G's weights; 0 = none (pix2pix).
  config.train.ema_rampup = 0.0

  # Sampling (evaluation, sample grids, jaxgen.translate): batch norm's statistics. 'running':
  # those gathered in training (the official test.py --eval); 'batch': each image's own, dropout
  # off (test.py's default: batch 1 in training mode; the paper's "instance normalization").
  config.sampling = ml_collections.ConfigDict()
  config.sampling.norm = 'running'

  # Evaluation on held-out pairs (jaxgen/evaluation.py: PairedEvaluator), beside the baseline.
  config.eval = ml_collections.ConfigDict()
  config.eval.metrics = ('psnr', 'ssim')  # + 'psnr_y', 'ssim_y', 'lpips', 'fid', 'swd'
  config.eval.num_images = 256
  config.eval.batch_size = 64
  config.eval.every_steps = 1000
  config.eval.at_start = False
  config.eval.source = ''  # Another source to evaluate on (e.g. pix2pix's val/ folder).
  config.eval.lpips_weights = ''
  config.eval.inception_weights = ''

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.keep = 2
  config.checkpoint.best_metric = 'psnr'
  config.checkpoint.best_mode = 'max'

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  config.log.num_samples = 16  # Input | output | target triplets in each grid.

  if preset == 'facades':
    config.data.source = 'pairs:/path/to/facades/train'
    config.data.resolution = 286
    config.data.holdout = 0
    config.eval.source = 'pairs:/path/to/facades/val'
    config.eval.num_images = 100
    config.eval.batch_size = 20
    config.task.name = 'paired'
    config.task.crop = 256
    config.task.direction = 'BtoA'
    _official_pix2pix(config)
    config.train.batch_size = 1
    config.train.num_steps = 200 * 400
    config.eval.every_steps = 10 * 400
    config.checkpoint.every_steps = 5 * 400
  elif preset == 'bench':
    config.data.resolution = 256
    config.data.num_images = 2048
    config.data.holdout = 64
    _official_pix2pix(config)
    config.model.dtype = 'bfloat16'
  elif preset == 'blind_denoise':
    config.task.noise_sigma = (5.0, 50.0)
  elif preset in ('inpaint', 'colorize'):
    config.task.name = preset
    # L1 alone: with the cGAN both fell below their baselines (the docstring).
    config.model.discriminator = 'none'
    config.objective.gan_loss = 'none'
  elif preset == 'paired':
    config.data.source = 'pairs:embedded'
    config.task.name = 'paired'
    config.eval.metrics = ('psnr', 'ssim', 'swd')
  elif preset not in ('', 'denoise'):
    raise ValueError(f'unknown preset {preset!r}: use facades, paired, denoise, blind_denoise, '
                     'inpaint, colorize or bench')
  return config


def _official_pix2pix(config):
  """The networks, losses and optimiser of the official `--model pix2pix` defaults."""
  config.optimizer.lr = 2e-4
  config.model.generator = 'unet_256'
  config.model.ngf = 64
  config.model.ndf = 64
  config.model.norm = config.model.d_norm = 'batch'
  config.model.use_dropout = True
  config.objective.gan_loss = 'vanilla'
  config.objective.pixel_weight = 100.0
  config.sampling.norm = 'batch'  # test.py without --eval, as the official results are made.
