"""Training objectives (losses and regularisers), kept apart from the models."""
