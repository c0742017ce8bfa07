"""Frozen diffusion priors for Score Distillation Sampling.

A `Guidance` turns rendered images into the diffusion model's space (`encode`: pixels for a
pixel-space model, VAE latents for a latent-space one) and predicts noise (`predict_noise`).
Both are pure functions of an explicit `params` pytree, so the train step stays pure and the
prior's weights are an argument of the jitted step, not a constant baked into it.
"""

import dataclasses
import threading
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.errors import ConfigError


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


class PendingParams:
  """A prior's frozen weights while they load on a worker thread: their shapes and dtypes at once (`abstract`, a
  tree of jax.ShapeDtypeStructs), the arrays from `result()`, which waits. A run compiles its step from the
  shapes while the weights load.

  The shapes may be read off the checkpoint before it is checked against the model (`checked`: the future of that
  check, None if there is none). A run whose step fails to trace from them calls `check()`, which raises the
  check's error: a checkpoint of another model is reported as such, tensor by tensor. The check traces the model's
  init, which would compete with the step's tracing for Python's lock, so it may wait for `traced` (an Event): the
  run sets it once its step is traced (`mark_traced`), and `check()` and `result()` set it before they wait, so no
  one waits on a run that traces nothing.
  """

  def __init__(self, abstract: Any, future: Any, checked: Any = None, traced: Optional[threading.Event] = None):
    self.abstract = abstract
    self._future = future  # A concurrent.futures.Future of the params tree.
    self._checked = checked  # A concurrent.futures.Future of None, or None.
    self.traced = threading.Event() if traced is None else traced

  def mark_traced(self) -> None:
    """The run is done tracing from `abstract`: the check may start."""
    self.traced.set()

  def check(self) -> None:
    """Waits for the check of the weights against the model; raises its error."""
    self.mark_traced()
    if self._checked is not None:
      self._checked.result()

  def result(self) -> Any:
    """The params, once moved and checked; raises the check's (or the loading's) error."""
    self.check()
    return self._future.result()


def resolve(params: Any) -> Any:
  """params, or the loaded params of PendingParams (waiting for them)."""
  return params.result() if isinstance(params, PendingParams) else params


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
  """What a run needs from a prior: the guidance, its weights, and a host-side text encoder."""

  guidance: Guidance
  params: Any  # {'unet': ..., 'encoder': ...}, the frozen weights, or PendingParams while they load.
  embed: Callable[[list[str]], np.ndarray]  # captions -> [N, L, D] float32 embeddings.
  unknown_words: Callable[[str], list[str]] = lambda _: []  # Words the prior can't read.
  # A caption -> None if the prior's tokenizer reads all of it, else (the part kept, the part cut off).
  cut: Callable[[str], Optional[tuple[str, str]]] = lambda _: None
  max_tokens: Optional[int] = None  # Tokens per caption of the prior's tokenizer (for the truncation warning).
  release: Callable[[], None] = lambda: None  # Frees the text encoder once a run's embeddings exist.
  # The camera distribution the prior was trained on (a camera config's fields as JSON; a missing key means
  # DreamFusion's value), or None when the prior is indifferent to it. `checks.camera_mismatch` compares it.
  training_cameras: Optional[dict] = None
  # The caption the prior was trained to see beside a textureless (white, shaded) render of a caption's object;
  # the caption itself for priors that saw no such captions (Stable Diffusion).
  textureless_prompt: Callable[[str], str] = lambda prompt: prompt
  # (L, D) of `embed`'s rows when known before any weight is read (a run then compiles its step beside the
  # loading); None: known once `embed` has run.
  embedding_shape: Optional[tuple[int, int]] = None
