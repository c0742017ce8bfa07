"""The Shapes prior's data: renders of the world (`world.sample_batch`) made on the fly, their captions, and
the on-device pool the train step draws its batches from.

Renders go into a pool on the device (config.pool_size images); each step renders config.fresh_per_step
new images over the oldest ones (prior_step.train_step) and draws its batch uniformly from the pool, so
rendering (~0.17 ms per image on an H200, sequential inside `sample_batch`) costs a fraction of the UNet
step. The pool is not checkpointed: a resumed run renders a fresh one. Every render's key is folded from
the run's key, a stream number and a step (`data_key`), so the data stream is a function of the seed.
"""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dreamfusion_jax.errors import UserError
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import world

TEXTURELESS_CAPTIONS = ("white", "albedo")  # config.textureless_caption's values (configs/shapes_prior.py).
_TEXTURELESS_MODE = 2  # world.sample_batch's shading_mode of a textureless render.
FRESH, POOL = 1, 2  # Render streams (data_key), apart from the steps' own keys.


def caption_table(tokenizer: text_lib.WordTokenizer) -> np.ndarray:
  """Token ids of every training caption: int32 [num_shapes, num_colours, num_views, max_length].

  Entry [s, c, v] tokenizes exactly what `world.captions_for` writes for that example,
  'a {colour} {shape}, {view suffix}', so a jitted step can look captions up instead of
  tokenizing strings on the host.
  """
  texts = [
    text_lib.view_prompt(world.caption(colour, shape), v)
    for shape in world.SHAPES
    for colour in world.COLOUR_NAMES
    for v in range(len(text_lib.VIEW_SUFFIXES))
  ]
  ids = tokenizer(texts)
  return ids.reshape(len(world.SHAPES), len(world.COLOUR_NAMES), len(text_lib.VIEW_SUFFIXES), -1)


def caption_colours(batch: dict, textureless_caption: str):
  """[B] int32: the colour index of each render's caption (see config.textureless_caption)."""
  if textureless_caption == "albedo":
    return batch["colour"]
  white = world.COLOUR_NAMES.index("white")
  return jnp.where(batch["shading_mode"] == _TEXTURELESS_MODE, white, batch["colour"]).astype(batch["colour"].dtype)


def pool_entry(batch: dict, textureless_caption: str) -> dict:
  """A sample_batch result -> the pool's compact form: images uint8, labels int32 (colour: the caption's)."""
  images = jnp.round(jnp.clip(batch["images"], 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return dict(
    images=images, shape=batch["shape"], colour=caption_colours(batch, textureless_caption), view=batch["view"]
  )


def _range(value: Sequence[float], name: str) -> tuple[float, float]:
  """config.<name> as a (MIN, MAX) pair of floats; raises UserError unless it is two numbers."""
  shown = ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise UserError(
      f"--config.{name}={shown} is not a range: give MIN,MAX, two numbers, e.g. --config.{name}=1.0,1.5."
    ) from None
  return lo, hi


def camera_config(config: ml_collections.ConfigDict) -> cameras.CameraConfig:
  """The world's training cameras of a training config (raises UserError for ranges that are not two numbers)."""
  return cameras.CameraConfig(
    distance_range=_range(config.distance_range, "distance_range"),
    focal_range=_range(config.focal_range, "focal_range"),
    look_at_std=config.look_at_std,
    position_jitter=config.position_jitter,
  )


def camera_record(camera_cfg: cameras.CameraConfig) -> dict:
  """The JSON form of a CameraConfig (lists for tuples), as config.json and the checkpoints keep it."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(camera_cfg).items()}


def render(
  key: jax.Array,
  count: int,
  size: int,
  exclude_held_out: bool = True,
  camera_cfg: cameras.CameraConfig = cameras.CameraConfig(),
) -> dict:
  """`count` fresh examples (world.sample_batch, one compile per (count, size, cameras) per process)."""
  return world.sample_batch(key, count, size, exclude_held_out, camera_cfg=camera_cfg)


def fill_pool(key: jax.Array, config: ml_collections.ConfigDict) -> dict:
  """A pool of config.pool_size training renders, made in sample_batch calls of config.fresh_per_step."""
  n = config.fresh_per_step
  cams = camera_config(config)
  parts = [render(jax.random.fold_in(key, i), n, config.image_size, True, cams) for i in range(config.pool_size // n)]
  parts = [pool_entry(p, config.textureless_caption) for p in parts]
  pool = {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}
  # Committed to the device like the step's outputs, or the step would compile twice (first call, then the rest).
  return jax.device_put(pool, jax.devices()[0])


def data_key(state_key: jax.Array, stream: int, index: int) -> jax.Array:
  """Key of render stream `stream` (FRESH: the renders of step `index`; POOL: the pool made at step `index`)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(state_key, 0x5EED), stream), index)
