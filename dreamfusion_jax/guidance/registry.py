"""The priors a run can name in `config.guidance.model`, and the one call that builds them.

Each builder takes the `config.guidance` block plus what it needs of the run as explicit
arguments, so no prior reads the run's config. Adding a prior is adding one builder here.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.errors import ConfigError
from dreamfusion_jax.guidance import shapes_prior, stable_diffusion
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.guidance.interface import Guidance, Prior, alphas_cumprod
from dreamfusion_jax.guidance.unet import UNet2DConditionModel


def random_prior(g: Any, *, prompt: str, image_size: int, previews: bool) -> Prior:
  """A small randomly initialised pixel-space prior: exercises the pipeline, means nothing.

  Its vocabulary is the prompt's words; image_size is the render size its UNet is initialised at.
  """
  del previews  # A pixel-space prior previews without a decoder.
  unet_cfg = dict(g.unet.to_dict())
  unet = UNet2DConditionModel.from_config(unet_cfg)
  tok = text_lib.WordTokenizer(prompt.split(), g.text.max_length)
  encoder = text_lib.TextEncoder(len(tok.vocab), g.text.max_length, g.text.width, g.text.num_layers, g.text.num_heads)
  k_unet, k_text = jax.random.split(jax.random.PRNGKey(g.seed))
  size = image_size
  # Jitted: Flax's init run op by op took ~30 s on a 2-core CPU; compiled (and then cached) it takes a few.
  unet_params = jax.jit(unet.init)(
    k_unet,
    jnp.zeros((1, size, size, unet_cfg["in_channels"])),
    jnp.zeros((1,), jnp.int32),
    jnp.zeros((1, g.text.max_length, g.text.width)),
  )["params"]
  text_params = jax.jit(encoder.init)(k_text, jnp.zeros((1, g.text.max_length), jnp.int32))["params"]
  apply = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  guidance = Guidance(unet, alphas_cumprod(g.beta_schedule, g.beta_start, g.beta_end, g.num_train_timesteps))
  embed = lambda texts: np.asarray(apply(text_params, tok(texts)))
  return Prior(guidance, {"unet": unet_params}, embed, cut=tok.cut, max_tokens=tok.max_length)


def _shapes(g: Any, *, prompt: str, image_size: int, previews: bool) -> Prior:
  del prompt, image_size, previews  # The Shapes prior brings its vocabulary and resolution.
  return shapes_prior.build_prior(g)


def _stable_diffusion(g: Any, *, prompt: str, image_size: int, previews: bool) -> Prior:
  del prompt, image_size  # SD renders are resized to guidance.sd.image_size.
  return stable_diffusion.build_prior(g, previews=previews)


PRIORS: dict[str, Callable[..., Prior]] = {
  "random": random_prior,
  "shapes": _shapes,
  "stable_diffusion": _stable_diffusion,
}


def build_prior(g: Any, *, prompt: str, image_size: int, previews: bool) -> Prior:
  """Builds the prior named by g.model (g: a run config's `guidance` block).

  prompt: the run's caption; image_size: its render size; previews: whether validation previews
  will decode the prior's estimates (a latent prior then also loads its decoder).
  """
  check_model(g)
  return PRIORS[g.model](g, prompt=prompt, image_size=image_size, previews=previews)


def check_model(g: Any) -> None:
  """ConfigError unless g.model names a prior of PRIORS (checked before anything is read or built)."""
  if g.model not in PRIORS:
    raise ConfigError(
      f"guidance.model={g.model!r} is not available; choose one of "
      f"{sorted(PRIORS)} (e.g. --config.guidance.model=random)."
    )
