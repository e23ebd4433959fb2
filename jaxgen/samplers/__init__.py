"""Samplers that turn a trained model into images (the diffusion samplers: `diffusion.py`)."""
