"""Recipes: a model, its objective and its update steps, for the one training loop.

What callers (train, evaluation, trained, generate, export, bench) use of a recipe, built as
`Recipe(config, num_classes, mesh)`:
  init_state(rng), step_variant(step), train_step(state, batch, variant)   training
  latents(rng, n), generate(state, z, labels, **options), num_classes    sampling
  generator_fields       the state fields `generate` reads (what `jaxgen.export` writes)
  sampling_options       the keyword options `generate` takes (e.g. StyleGAN2's truncation_psi)
  param_count(state)     parameter counts for the logs
"""
