"""The Shapes prior's model configs (JSON-able dicts that guidance.shapes_prior builds and saves)."""

from dreamfusion_jax.errors import UserError
from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.shapes import world


def default_config(image_size: int = 64) -> dict:
  """The shipped prior's config (JSON-able): unet (diffusers keys), text, schedule, image_size.

  3.6 M UNet + 0.1 M text-encoder parameters (7.4 MB in float16). Small on purpose: the train
  state (params, EMA, Adam moments; ~45 MB) must travel between 10-minute GPU commands.
  Levels 64 -> 32 -> 16 -> 8 pixels; self- and cross-attention only at 16x16 and 8x8 (and the mid
  block), where the 256 and 64 tokens are cheap; heads 32 channels wide.
  """
  return {
    "format": shapes_prior.FORMAT,
    "image_size": image_size,  # Training resolution (the UNet is convolutional; other sizes are off-distribution).
    "prediction_type": "epsilon",
    "unet": {
      "in_channels": 3,
      "out_channels": 3,
      "sample_size": image_size,
      "block_out_channels": [64, 64, 64, 96],
      "layers_per_block": 1,
      "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
      "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
      "attention_head_dim": [2, 2, 2, 3],  # diffusers' quirk: the NUMBER of heads per block.
      "cross_attention_dim": 64,
      "norm_num_groups": 32,
    },
    "text": {"width": 64, "num_layers": 2, "num_heads": 4, "max_length": 12, "vocabulary": list(world.vocabulary())},
    "schedule": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000},
  }


def tiny_config(image_size: int = 16) -> dict:
  """A very small model for CPU tests: two levels, text cross-attention in the mid block only.

  ~48k parameters; what costs on CPU is compiling, which grows with the number of weight arrays.
  """
  cfg = default_config(image_size)
  cfg["unet"].update(
    block_out_channels=[8, 16],
    down_block_types=["DownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "UpBlock2D"],
    attention_head_dim=[1, 2],
    cross_attention_dim=8,
    norm_num_groups=4,
  )
  cfg["text"].update(width=8, num_layers=1, num_heads=2)
  return cfg


MODELS = {"default": default_config, "tiny": tiny_config}  # The training config's `model` names.


def model_config(name: str, image_size: int) -> dict:
  """The model config of a training config's `model` and `image_size`; raises UserError for an unknown name."""
  if name not in MODELS:
    raise UserError(f"--config.model={name!r} is not known; use {' or '.join(repr(m) for m in MODELS)}.")
  return MODELS[name](image_size)
