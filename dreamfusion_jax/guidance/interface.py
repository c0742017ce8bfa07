"""Frozen diffusion priors for Score Distillation Sampling.

A `Guidance` turns rendered images into the diffusion model's space (`encode`: pixels for a
pixel-space model, VAE latents for a latent-space one) and predicts noise (`predict_noise`).
Both are pure functions of an explicit `params` pytree, so the train step stays pure and the
prior's weights are an argument of the jitted step, not a constant baked into it.
"""
import dataclasses
import os
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from dreamfusion_jax import cameras
from dreamfusion_jax import text as text_lib
from dreamfusion_jax.errors import ConfigError
from dreamfusion_jax.unet import UNet2DConditionModel


def alphas_cumprod(schedule: str, beta_start: float, beta_end: float, num_timesteps: int) -> np.ndarray:
  """DDPM's alphabar_t for t = 0..T-1 (float32 [T]), as diffusers' DDPMScheduler computes it."""
  if schedule == "linear":
    betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
  elif schedule == "scaled_linear":
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=np.float64) ** 2
  else:
    raise ConfigError(f"guidance.beta_schedule={schedule!r} is not known; use 'linear' or 'scaled_linear'.")
  return np.cumprod(1.0 - betas).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Guidance:
  """A frozen text-conditioned noise predictor and the map from images to its input space.

  Attributes:
    unet: eps-prediction UNet, NHWC: (x_t [B,h,w,c], t [B] int, context [B,L,D]) -> eps [B,h,w,c].
    alphas_cumprod: [T] float32 noise schedule (alphabar_t).
    encoder: None for a pixel-space model; else a Flax module mapping images in [-1, 1]
      [B,S,S,3] to latent means [B,h,w,c] (the gradient flows through it).
    encoder_size: renders are resized (bilinear) to this square size before the encoder, or before
      the UNet of a pixel-space model, so a run can render smaller than the model's resolution.
    latent_scale: multiplies the encoder's output (Stable Diffusion's 0.18215).
    encoder_method: the encoder module's method to apply (None: __call__; 'encode' for the VAE).
    decoder_method: the encoder module's method that maps latents back to images ('decode' for the
      VAE), used by `decode` for previews with params['decoder']; None for a pixel-space model.
    prediction_type: what the UNet predicts: 'epsilon', or 'v_prediction' (v = alpha_t eps - sigma_t x_0,
      SD 2.x at 768), which `predict_noise` turns into eps = alpha_t v + sigma_t x_t.
  """
  unet: nn.Module
  alphas_cumprod: np.ndarray
  encoder: Optional[nn.Module] = None
  encoder_size: Optional[int] = None
  latent_scale: float = 1.0
  encoder_method: Optional[str] = None
  decoder_method: Optional[str] = None
  prediction_type: str = "epsilon"

  def encode(self, params: Any, images: jnp.ndarray) -> jnp.ndarray:
    """images [B,H,W,3] in [0,1] -> the model's clean input x_0 (pixels in [-1,1], or latents)."""
    x = images * 2.0 - 1.0
    if self.encoder_size and self.encoder_size != x.shape[1]:
      x = jax.image.resize(x, (x.shape[0], self.encoder_size, self.encoder_size, 3), "bilinear")
    if self.encoder is None:
      return x
    latents = self.encoder.apply({"params": params["encoder"]}, x, method=self.encoder_method)
    return latents.astype(jnp.float32) * self.latent_scale

  def decode(self, params: Any, x0: jnp.ndarray) -> jnp.ndarray:
    """The model's clean input x_0 (pixels in [-1,1], or latents) -> images [B,H,W,3] in [0,1], for previews."""
    x = x0
    if self.encoder is not None:
      if self.decoder_method is None or "decoder" not in params:
        raise ValueError("This guidance holds no decoder (load the prior with its decoder for previews).")
      x = self.encoder.apply({"params": params["decoder"]}, x0 / self.latent_scale, method=self.decoder_method)
    return jnp.clip((x.astype(jnp.float32) + 1.0) / 2.0, 0.0, 1.0)

  def predict_noise(self, params: Any, x_t: jnp.ndarray, t: jnp.ndarray, context: jnp.ndarray) -> jnp.ndarray:
    """eps_theta(x_t; context, t): [B,h,w,c] float32 (a v-prediction model's output is converted)."""
    out = self.unet.apply({"params": params["unet"]}, x_t, t, context).astype(jnp.float32)
    if self.prediction_type == "epsilon":
      return out
    if self.prediction_type != "v_prediction":
      raise ValueError(f"unknown prediction_type {self.prediction_type!r}")
    abar = jnp.asarray(self.alphas_cumprod)[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
    return jnp.sqrt(abar) * out + jnp.sqrt(1.0 - abar) * x_t.astype(jnp.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
  """What a run needs from a prior: the guidance, its weights, and a host-side text encoder."""
  guidance: Guidance
  params: Any  # {'unet': ..., 'encoder': ...}, the frozen weights.
  embed: Callable[[list[str]], np.ndarray]  # captions -> [N, L, D] float32 embeddings.
  unknown_words: Callable[[str], list[str]] = lambda _: []  # Words the prior can't read.
  release: Callable[[], None] = lambda: None  # Frees the text encoder once a run's embeddings exist.


def _random_prior(config) -> Prior:
  """A small randomly initialised pixel-space prior: exercises the pipeline, means nothing."""
  g = config.guidance
  unet_cfg = dict(g.unet.to_dict())
  unet = UNet2DConditionModel.from_config(unet_cfg)
  tok = text_lib.WordTokenizer(config.prompt.split(), g.text.max_length)
  encoder = text_lib.TextEncoder(len(tok.vocab), g.text.max_length, g.text.width, g.text.num_layers,
                                 g.text.num_heads)
  k_unet, k_text = jax.random.split(jax.random.PRNGKey(g.seed))
  size = config.render.image_size
  # Jitted: Flax's init run op by op took ~30 s on a 2-core CPU; compiled (and then cached) it takes a few.
  unet_params = jax.jit(unet.init)(k_unet, jnp.zeros((1, size, size, unet_cfg["in_channels"])),
                                   jnp.zeros((1,), jnp.int32), jnp.zeros((1, g.text.max_length, g.text.width)))["params"]
  text_params = jax.jit(encoder.init)(k_text, jnp.zeros((1, g.text.max_length), jnp.int32))["params"]
  apply = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  guidance = Guidance(unet, alphas_cumprod(g.beta_schedule, g.beta_start, g.beta_end, g.num_train_timesteps))
  return Prior(guidance, {"unet": unet_params}, lambda texts: np.asarray(apply(text_params, tok(texts))))


def shapes_prior_dir() -> str:
  """The package's copy of the Shapes prior: dreamfusion_jax/assets/shapes_prior/."""
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "shapes_prior")


def _shapes_prior(config) -> Prior:
  """The trained Shapes prior (dreamfusion_jax.prior_model), from guidance.path or the package's assets.

  It brings its own noise schedule and text encoder, so guidance.beta_* and guidance.text/unet are
  not used; guidance.num_train_timesteps must match the prior's schedule (t_min/t_max are fractions of it).
  """
  from dreamfusion_jax import prior_model  # Imported here: prior_model imports this module.
  g = config.guidance
  directory = os.path.abspath(os.path.expanduser(g.path)) if g.path else shapes_prior_dir()
  missing = prior_model.missing_files(directory)
  if missing:
    where = "--config.guidance.path" if g.path else "the package's asset directory"
    raise ConfigError(
        f"guidance.model='shapes' needs the trained Shapes prior, but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing from '{directory}' ({where}). Train it with "
        "`python -m dreamfusion_jax.train_prior --workdir=DIR` (about 60k steps; it resumes when run again), "
        "then either copy DIR/export/ to dreamfusion_jax/assets/shapes_prior/ or pass "
        "--config.guidance.path=DIR/export.")
  try:
    unet, encoder, tokenizer, params, abar = prior_model.load_prior(directory)
  except (ValueError, KeyError, OSError) as e:
    raise ConfigError(f"The Shapes prior in '{directory}' could not be loaded ({e}). Export it again with "
                      "`python -m dreamfusion_jax.train_prior --workdir=DIR --export_only`.") from None
  if g.num_train_timesteps != len(abar):
    raise ConfigError(f"guidance.num_train_timesteps={g.num_train_timesteps} but the Shapes prior was trained "
                      f"with {len(abar)} timesteps; set --config.guidance.num_train_timesteps={len(abar)}.")
  apply = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  text_params = params["text"]
  embed = lambda texts: np.asarray(apply(text_params, tokenizer(list(texts))), np.float32)
  prior_cfg = prior_model.read_config(directory)
  size = prior_cfg["image_size"]  # Renders are resized to the prior's resolution.
  mismatch = camera_mismatch(prior_cfg.get("camera"), config.camera)
  if mismatch:
    logging.warning("The Shapes prior in '%s' was trained on cameras with %s; this run samples %s. The prior "
                    "pushes objects towards the size they had in its training images, so they come out at the "
                    "wrong size: set --config.camera.* to the prior's values (configs/default.py does).",
                    directory, *mismatch)
  return Prior(Guidance(unet, abar, encoder_size=size), {"unet": params["unet"]}, embed, tokenizer.unknown_words)


_CAMERA_KEYS = ("distance_range", "focal_range", "look_at_std", "position_jitter")
# DreamFusion's cameras (cameras.CameraConfig's defaults): what priors saved without a 'camera' record saw.
_PAPER_CAMERA = {k: getattr(cameras.CameraConfig(), k) for k in _CAMERA_KEYS}


def camera_mismatch(prior_camera: Optional[dict], run_camera) -> Optional[tuple[str, str]]:
  """None if a run's config.camera samples the zoom and framing the prior was trained on; else the two
  descriptions (prior's, run's). prior_camera: the prior's config.json 'camera' (None: DreamFusion's)."""
  want = {k: (prior_camera or _PAPER_CAMERA).get(k, _PAPER_CAMERA[k]) for k in _CAMERA_KEYS}
  got = {k: run_camera.get(k, _PAPER_CAMERA[k]) for k in _CAMERA_KEYS}
  close = lambda a, b: np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-6)
  if all(close(want[k], got[k]) for k in _CAMERA_KEYS):
    return None
  describe = lambda c: ", ".join(f"{k}={tuple(v) if isinstance(v, (list, tuple)) else v}" for k, v in c.items())
  return describe(want), describe(got)


def _stable_diffusion_prior(config) -> Prior:
  from dreamfusion_jax import stable_diffusion  # Imported here: it imports this module.
  return stable_diffusion.build_prior(config)


_PRIORS = {"random": _random_prior, "shapes": _shapes_prior, "stable_diffusion": _stable_diffusion_prior}


def build_prior(config) -> Prior:
  """Builds the prior named by config.guidance.model."""
  try:
    make = _PRIORS[config.guidance.model]
  except KeyError:
    raise ConfigError(
        f"guidance.model={config.guidance.model!r} is not available; choose one of "
        f"{sorted(_PRIORS)} (e.g. --config.guidance.model=random).") from None
  return make(config)
