"""Recipes: a model, its objective and its update steps, for the one training loop."""
