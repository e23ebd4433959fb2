"""Differentiable data augmentation for the discriminator (ADA)."""

from jaxgen.augment.ada import (ADA_MODES, PIPELINES, AdaSettings, AugmentConfig, ada_update,
                                augment)

__all__ = ['ADA_MODES', 'PIPELINES', 'AdaSettings', 'AugmentConfig', 'ada_update', 'augment']
