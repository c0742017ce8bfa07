"""DreamFusion with Stable Diffusion 1.5 as the prior: configs/sd21_base.py with the SD 1.5 checkpoint.

  hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include "*.json" "*.txt" \
      "unet/diffusion_pytorch_model.safetensors" "vae/diffusion_pytorch_model.safetensors" \
      "text_encoder/model.safetensors"
  python -m dreamfusion_jax.main --config=configs/sd15.py --workdir=/tmp/sd15 --config.prompt="a hamburger"

SD 1.5 conditions on CLIP ViT-L/14 (768 wide, last layer); the loader reads that from the checkpoint.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import sd21_base  # noqa: E402


def get_config():
  """Returns the SD 1.5 config."""
  c = sd21_base.get_config()
  c.guidance.sd.model = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # Hub repo id or local folder.
  return c
