"""Where data comes in: sources (embedded, folder, tfds) and the batched pipeline."""

from jaxgen.data.pipeline import batches, create_source, create_sources, fixed_examples

__all__ = ['batches', 'create_source', 'create_sources', 'fixed_examples']
