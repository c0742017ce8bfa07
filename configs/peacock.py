"""The design card's example: "a DSLR photo of a peacock on a surfboard" with Stable Diffusion 2.1-base.

  python -m dreamfusion_jax.main --config=configs/peacock.py --workdir=/tmp/peacock

Needs the SD 2.1-base weights in the Hugging Face cache (see configs/sd21_base.py for the download
command; without them the run stops with that command). The paper's settings: guidance 100,
64x64 renders, its camera, shading and regulariser schedule, 10,000 steps.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import sd21_base  # noqa: E402


def get_config():
  """Returns the peacock config."""
  c = sd21_base.get_config()
  c.prompt = "a DSLR photo of a peacock on a surfboard"  # The caption.
  c.num_steps = 10_000  # SDS steps.
  return c
