"""Network definitions (Flax linen, NHWC). One model per file."""
