"""Recipes: a model, its objective, its update step and its sampler, for the one training loop.

This is the one interface between a family and everything that runs it — the training loop
(`jaxgen.train`), the evaluator (`jaxgen.evaluation`), checkpoints and exports
(`jaxgen.trained`) and the CLIs (`generate`, `evaluate`, `export`, `bench`). Callers use nothing
else and never ask which family a run is; a new family that does not fit changes this interface
(and every recipe) here. A recipe is built as `Recipe(config, num_classes, mesh)`, which checks
the config's family-specific settings (raising `jaxgen.errors.UserError`, before anything is
written or compiled), and provides:

Training
  prepare_training()               loads what only training needs (e.g. a perceptual loss's
                                   pretrained weights; UserError when missing), called before
                                   anything is written; sampling, export and evaluation skip it
  init_state(rng)                  the train state, a flax struct with `step` (int32) and `rng`
  step_variant(step)               a hashable static variant of the update at `step` (e.g.
                                   StyleGAN2's lazy regularisers, DCGAN's critic-only steps
                                   under n_critic); one compiled program each
  train_step(state, batch, variant) → (state, metrics)   pure; batch {'image': uint8 [B,R,R,C],
                                   'label': int32 [B]} (+ 'input' with a task, below); metrics
                                   are float scalars
  progress_metrics                 the metric names the progress bar shows
  param_count(state)               {network: parameter count} for the logs
  snapshots(state, step) → {name: (fields, info)}   optional (absent: none): generator
                                   states to keep at this step (after `step` updates) beside
                                   the rolling checkpoints, {} at most steps; fields
                                   {field: pytree} over generator_fields, info JSON-able
                                   metadata. The loop writes each to WORKDIR/snapshots/<name>.npz
                                   in the export format (`generate --network` reads it).
                                   Diffusion: EDM2's power-function EMAs (float16) every
                                   train.ema_snapshot_kimg, info {'snapshot': {'nimg', 'std',
                                   'averaged': the fields phema combines, the others it
                                   copies}}, for post-hoc EMA (`python -m jaxgen.phema`)
  init_fields                      the state fields a new run takes from another run of the
                                   same recipe (`model.init_from`: a workdir or one of its
                                   checkpoints/<step>; `jaxgen.trained.read_init_from`), e.g.
                                   the generator's weights and their EMA; absent: the recipe
                                   does not start from another run

What a sample is made from
  task                             None: from random latents (GANs, diffusion). Else a
                                   `jaxgen.data.tasks.Task` (image-to-image): a sample is the
                                   translation of an example's 'input'. The task's
                                   `train_example(example, rng)` is the pipeline's per-example
                                   transform (crop, degradation); the evaluator scores outputs
                                   against held-out targets (`eval_example`) beside the task's
                                   `baseline`; `jaxgen.translate` applies the model to files.
                                   `task.evaluator` names the evaluator that scores the recipe
                                   (`jaxgen.evaluation.TASK_EVALUATORS`; 'paired' for Task; its
                                   `METRICS` are the names `jaxgen.evaluate` accepts);
                                   `task.apply_command` is the command that applies the model
                                   to pictures (what `jaxgen.generate` points such runs to)
                                   Unpaired translation (CycleGAN; `jaxgen.data.unpaired.
                                   UnpairedTask`, task.evaluator 'unpaired'): an example's
                                   'input' is a domain-A image and its 'image' an unrelated
                                   domain-B one; `generate` takes direction 'AtoB' | 'BtoA'
                                   (`jaxgen.translate --direction`)
                                   Style transfer (AdaIN; task.evaluator 'style'): the inputs
                                   stack the content image and k ≥ 1 style images on the
                                   channel axis, [N, H, W, 3 + 3k] (a training example: domain A
                                   ‖ domain B of an `unpaired:` source); `generate` takes
                                   alpha and style_weights; the recipe adds
                                   `style_scores(state, inputs, images)` → per-pair losses
                                   {'content_loss', 'style_loss', 'loss'} for its evaluator;
                                   its frozen VGG encoder is a state field among
                                   generator_fields (an export needs no weights file);
                                   `jaxgen.stylize --workdir` applies it to files

Sampling (a "sample" is one image; how many network passes it takes is the recipe's business)
  latents(rng, n)                  the random input of n samples (GAN z; diffusion noise);
                                   recipes with a task have none
  generate(state, z, labels, **options) → images [N, R, R, C] in ≈ [−1, 1]
                                   pure and jit-able; z: latents, or with a task its inputs
                                   [N, h, w, c_in]; labels int32 [N] (ignored when
                                   unconditional); deterministic given z and options
  sampling_options                 the keyword options `generate` takes, e.g. StyleGAN2's
                                   truncation_psi, diffusion's sampler/num_steps/guidance;
                                   `noise_key` among them means `generate` takes a PRNG key for
                                   its own randomness (callers pass fold_in(seed key, 1)).
                                   `guide` among them means `generate` takes another run (a
                                   `jaxgen.trained.TrainedRun`, from `trained.load_run`: the
                                   CLIs' --guide) whose network guides this one's (diffusion:
                                   EDM2's autoguidance); the recipe checks it fits.
                                   An option given as None means the run's config value. Bad
                                   option values raise UserError while tracing (before compiling)
  num_classes                      0 for an unconditional model
  generator_fields                 the state fields `generate` reads (what `jaxgen.export` writes
                                   and `--network` files hold)

Benchmarks
  evaluations_per_sample(**options)  network passes per sample (GANs 1; a diffusion sampler's
                                   NFE, doubled under classifier-free guidance)
  network_forward(state, z, labels)  one such pass, for FLOP counts (XLA counts a loop's body
                                   once, so a sampler's FLOPs are this × the evaluations)
                                   `OnePassSampling` (below) gives both to recipes whose sample
                                   is one pass of their network

Recipes: 'dcgan', 'stylegan2', 'diffusion' (latents), 'translation' (a task), 'cyclegan' (an
unpaired task), 'adain' (a style task).
"""


def class_count(config, num_classes):
  """The classes a recipe conditions on: the source's `num_classes` with data.use_labels, else 0.
  UserError when labels are asked of a source without them."""
  from jaxgen.errors import UserError  # pylint: disable=import-outside-toplevel
  if not config.data.use_labels:
    return 0
  if not num_classes:
    raise UserError(f'data.use_labels=True but the dataset {config.data.source!r} has no '
                    'labels: set data.use_labels=False, or use a labelled dataset (folder '
                    'sources take sub-folder names as classes)')
  return num_classes


def linear_decay(count, num_steps, decay_length):
  """The factor of a learning rate that is constant and then decays linearly to 0 at update
  `num_steps`: min(1, (num_steps − count) / decay_length), ≥ 0; 1 throughout if decay_length is
  0. Diffusion's `optimizer.lr_cooldown`, pix2pix's 'linear' policy and CycleGAN's official
  one (decay_length = n_epochs_decay + 1 in updates) are this with their own decay_length."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  if not decay_length:
    return 1.0
  return jnp.clip((num_steps - count) / decay_length, 0.0, 1.0)


def count_params(tree):
  """The number of parameters (array elements) in a pytree, for `param_count`."""
  import math  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


class OnePassSampling:
  """The benchmark methods of a recipe whose sample is one pass of its network (`generate`)."""

  def evaluations_per_sample(self, **options):
    """Network evaluations per sample: one pass."""
    del options
    return 1

  def network_forward(self, state, z, labels=None):
    """One pass of the network that samples (for benchmarks' FLOP counts)."""
    return self.generate(state, z, labels)
