"""Ablation: the quickstart at the paper's full width (64 base channels instead of 32).

  python -m jaxgen.main --config=configs/dcgan_wide.py --workdir=/tmp/dcgan_wide

Everything else is configs/dcgan.py. ~2.5× the quickstart's cost per step on a CPU; compare
`eval/swd/avg` curves in TensorBoard to see what width buys at equal steps.
"""

from configs import dcgan  # Run from the repository root (python -m puts it on sys.path).


def get_config(preset=''):
  config = dcgan.get_config(preset)
  config.model.g_base_channels = 64
  config.model.d_base_channels = 64
  return config
