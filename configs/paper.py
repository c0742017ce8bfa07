"""The paper's settings with the small random prior swapped for whatever `guidance.model` names.

This is the base config unchanged; copy it to start an experiment of your own.

  python -m dreamfusion_jax.main --config=configs/paper.py --workdir=/tmp/df --config.prompt="a red cube"
"""

from dreamfusion_jax import base_config


def get_config():
  """Returns the base config."""
  return base_config.get_config()
