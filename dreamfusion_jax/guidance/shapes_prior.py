"""The Shapes prior: a small pixel-space, text-conditioned diffusion model of the Shapes world.

It plays the role of Imagen's 64x64 base model in the paper: an epsilon-prediction UNet on 64x64
RGB images in [-1, 1] (`unet.UNet2DConditionModel`, a small config) conditioned on a word-level
`text.TextEncoder` over the world's vocabulary, with a DDPM 'linear' schedule (1e-4..0.02 over 1000
steps, as in DDPM and Imagen). `dreamfusion_jax.shapes.train_prior` trains it; the weights ship in
`dreamfusion_jax/assets/shapes_prior/` and `build_prior` loads them for guidance.model='shapes'.

A prior directory holds
  params.msgpack  flax.serialization bytes of {'unet': ..., 'text': ...}, stored float16 (upcast to
                  float32 on load);
  config.json     the model config (`shapes.prior_config.default_config()`'s keys, the vocabulary included,
                  so loading needs nothing of the Shapes world) and the model card's facts under 'card';
  MODEL_CARD.md   the card: data, training, measured losses.
"""

import copy
import json
import os
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax import files
from dreamfusion_jax.errors import ConfigError
from dreamfusion_jax.guidance import interface as guidance
from dreamfusion_jax.guidance import text
from dreamfusion_jax.guidance.unet import UNet2DConditionModel

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
FORMAT = "dreamfusion_jax.shapes_prior/1"  # Written into config.json; bump when the layout changes.


def check_config(cfg: dict) -> None:
  """Raises ValueError if the text width and the UNet's cross-attention width disagree, or similar."""
  if cfg.get("format") != FORMAT:
    raise ValueError(f"config format {cfg.get('format')!r} is not {FORMAT!r}.")
  if cfg["unet"]["cross_attention_dim"] != cfg["text"]["width"]:
    raise ValueError(
      f"unet.cross_attention_dim={cfg['unet']['cross_attention_dim']} must equal text.width={cfg['text']['width']}."
    )
  if cfg["prediction_type"] != "epsilon":
    raise ValueError(f"prediction_type {cfg['prediction_type']!r} is not supported (only 'epsilon').")
  factor = 2 ** (len(cfg["unet"]["block_out_channels"]) - 1)
  if cfg["image_size"] % factor:
    raise ValueError(f"image_size {cfg['image_size']} must be divisible by {factor}.")


def build_models(cfg: dict, dtype: Any = jnp.float32):
  """(unet, text_encoder, tokenizer) of a config; `dtype` is the UNet's compute dtype."""
  check_config(cfg)
  unet = UNet2DConditionModel.from_config(cfg["unet"], dtype=dtype)
  t = cfg["text"]
  tokenizer = text.WordTokenizer(t["vocabulary"], t["max_length"])
  encoder = text.TextEncoder(len(tokenizer.vocab), t["max_length"], t["width"], t["num_layers"], t["num_heads"])
  return unet, encoder, tokenizer


def schedule(cfg: dict) -> np.ndarray:
  """alphabar_t, float32 [T], of the config's DDPM schedule."""
  s = cfg["schedule"]
  return guidance.alphas_cumprod(s["beta_schedule"], s["beta_start"], s["beta_end"], s["num_train_timesteps"])


def init_params(key: jax.Array, cfg: dict) -> dict:
  """Fresh float32 parameters {'unet': ..., 'text': ...}."""
  unet, encoder, _ = build_models(cfg)
  k_unet, k_text = jax.random.split(key)
  size, length, width = cfg["image_size"], cfg["text"]["max_length"], cfg["text"]["width"]
  unet_params = unet.init(
    k_unet, jnp.zeros((1, size, size, 3)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, length, width))
  )["params"]
  text_params = encoder.init(k_text, jnp.zeros((1, length), jnp.int32))["params"]
  return {"unet": unet_params, "text": text_params}


def num_params(params: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- saving and loading


def _card_markdown(card: dict) -> str:
  """{'title': str, 'summary': str, section: str | {fact: value} | [items]} -> Markdown."""
  lines = [f"# {card.get('title', 'Shapes prior')}", ""]
  if card.get("summary"):
    lines += [card["summary"], ""]
  for section, body in card.items():
    if section in ("title", "summary"):
      continue
    lines += [f"## {section}", ""]
    if isinstance(body, dict):
      lines += [f"- **{k}**: {v}" for k, v in body.items()]
    elif isinstance(body, (list, tuple)):
      lines += [f"- {item}" for item in body]
    else:
      lines.append(str(body))
    lines.append("")
  return "\n".join(lines)


def cast_params(params: Any, dtype: Any) -> Any:
  """Host numpy copy of params with every floating leaf cast to dtype."""

  def cast(x):
    x = np.asarray(jax.device_get(x))
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x

  return jax.tree.map(cast, params)


def save_prior(directory: str, params: dict, model_config: dict, card: dict, dtype: str = "float16") -> dict:
  """Writes params.msgpack (weights in `dtype`), config.json and MODEL_CARD.md; returns their paths.

  params: {'unet': ..., 'text': ...}. float16 halves the file; its 11-bit mantissa (relative
  rounding 2^-11) is far below what changes a denoiser's output visibly, and load_prior upcasts.
  Raises ValueError if a weight does not fit float16 (|w| > 65504) or is not finite.
  """
  check_config(model_config)
  os.makedirs(directory, exist_ok=True)
  host = cast_params(params, np.float32)
  for leaf in jax.tree.leaves(host):
    if not np.all(np.isfinite(leaf)) or (dtype == "float16" and np.abs(leaf).max(initial=0) > 65504):
      raise ValueError(f"The weights hold NaN/inf or values beyond {dtype}'s range; they can't be saved as {dtype}.")
  stored = cast_params(host, np.dtype(dtype))
  config = copy.deepcopy(model_config)
  config["weights_dtype"] = dtype
  config["num_params"] = {"unet": num_params(host["unet"]), "text": num_params(host["text"])}
  config["card"] = card
  paths = {name: os.path.join(directory, name) for name in (PARAMS_FILE, CONFIG_FILE, CARD_FILE)}
  files.write_bytes(paths[PARAMS_FILE], flax.serialization.to_bytes(stored))
  files.write_bytes(paths[CONFIG_FILE], json.dumps(config, indent=2).encode())
  files.write_bytes(paths[CARD_FILE], _card_markdown(card).encode())
  return paths


def read_config(directory: str) -> dict:
  with open(os.path.join(directory, CONFIG_FILE)) as f:
    return json.load(f)


def missing_files(directory: str) -> list[str]:
  """The files of a prior directory that are absent (empty list: complete)."""
  return [n for n in (PARAMS_FILE, CONFIG_FILE) if not os.path.isfile(os.path.join(directory, n))]


def load_prior(directory: str, dtype: Any = jnp.float32):
  """Reads a prior directory -> (unet, text_encoder, tokenizer, params, alphas_cumprod).

  params: float32 {'unet': ..., 'text': ...}; alphas_cumprod: float32 [T]. `dtype` is the UNet's
  compute dtype. Raises FileNotFoundError if a file is missing and ValueError if the weights do
  not fit the config.
  """
  missing = missing_files(directory)
  if missing:
    raise FileNotFoundError(f"{', '.join(missing)} not found in '{directory}'.")
  cfg = read_config(directory)
  unet, encoder, tokenizer = build_models(cfg, dtype)
  with open(os.path.join(directory, PARAMS_FILE), "rb") as f:
    raw = flax.serialization.msgpack_restore(f.read())
  expected = jax.eval_shape(lambda: init_params(jax.random.PRNGKey(0), cfg))
  got_paths = {jax.tree_util.keystr(p): np.shape(x) for p, x in jax.tree_util.tree_leaves_with_path(raw)}
  want_paths = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(expected)}
  if got_paths != want_paths:
    diff = sorted(set(got_paths.items()) ^ set(want_paths.items()))[:3]
    raise ValueError(f"{PARAMS_FILE} in '{directory}' does not fit its {CONFIG_FILE} (first differences: {diff}).")
  params = cast_params(raw, np.float32)
  return unet, encoder, tokenizer, params, schedule(cfg)


def default_dir() -> str:
  """The package's copy of the Shapes prior: dreamfusion_jax/assets/shapes_prior/."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "shapes_prior")


def build_prior(g: Any) -> guidance.Prior:
  """The Prior of guidance.model='shapes' (g: a run config's `guidance`), from g.path or the package's assets.

  It brings its own noise schedule and text encoder, so guidance.beta_* and guidance.text/unet are
  not used; guidance.num_train_timesteps must match the prior's schedule (t_min/t_max are fractions of it).
  """
  directory = os.path.abspath(os.path.expanduser(g.path)) if g.path else default_dir()
  missing = missing_files(directory)
  if missing:
    where = "--config.guidance.path" if g.path else "the package's asset directory"
    raise ConfigError(
      f"guidance.model='shapes' needs the trained Shapes prior, but {' and '.join(missing)} "
      f"{'is' if len(missing) == 1 else 'are'} missing from '{directory}' ({where}). Train it with "
      "`python -m dreamfusion_jax.shapes.train_prior --config=configs/shapes_prior.py --workdir=DIR` (about 60k "
      "steps; it resumes when run again), "
      "then either copy DIR/export/ to dreamfusion_jax/assets/shapes_prior/ or pass "
      "--config.guidance.path=DIR/export."
    )
  try:
    unet, encoder, tokenizer, params, abar = load_prior(directory)
  except (ValueError, KeyError, OSError) as e:
    raise ConfigError(
      f"The Shapes prior in '{directory}' could not be loaded ({e}). Export it again with "
      "`python -m dreamfusion_jax.shapes.train_prior --config=configs/shapes_prior.py --workdir=DIR "
      "--config.export_only=true`."
    ) from None
  if g.num_train_timesteps != len(abar):
    raise ConfigError(
      f"guidance.num_train_timesteps={g.num_train_timesteps} but the Shapes prior was trained "
      f"with {len(abar)} timesteps; set --config.guidance.num_train_timesteps={len(abar)}."
    )
  apply = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  text_params = params["text"]
  embed = lambda texts: np.asarray(apply(text_params, tokenizer(list(texts))), np.float32)
  prior_cfg = read_config(directory)
  size = prior_cfg["image_size"]  # Renders are resized to the prior's resolution.
  # A prior saved without a camera record was trained on DreamFusion's cameras ({}: every default).
  return guidance.Prior(
    guidance.Guidance(unet, abar, encoder_size=size),
    {"unet": params["unet"]},
    embed,
    tokenizer.unknown_words,
    cut=tokenizer.cut,
    max_tokens=tokenizer.max_length,
    training_cameras=prior_cfg.get("camera", {}),
    textureless_prompt=textureless_prompt if prior_cfg.get("textureless_caption") == "white" else lambda p: p,
  )


def textureless_prompt(prompt: str) -> str:
  """'a {colour} {shape}' -> 'a white {shape}': what a prior trained with textureless_caption='white' saw beside
  a textureless render (configs/shapes_prior.py); other captions are returned as they are."""
  words = prompt.split()
  return " ".join(["a", "white", words[2]]) if len(words) == 3 and words[0] == "a" else prompt


# ----------------------------------------------------------------------------- sampling


def ddim_timesteps(num_train_timesteps: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(t, t_prev) int arrays [num_steps]: diffusers DDIMScheduler's 'trailing' spacing.

  t runs from T-1 down (the first step starts from alphabar_{T-1} ~ 4e-5, i.e. almost pure noise,
  which a pixel model needs: 'leading' spacing would start at a noisier-than-trained mix);
  t_prev = t - T // num_steps, and -1 means alphabar = 1 (the clean image).
  """
  if not 1 <= num_steps <= num_train_timesteps:
    raise ValueError(f"num_steps={num_steps} must be in [1, {num_train_timesteps}].")
  t = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / num_steps)).astype(np.int64) - 1
  return t, t - num_train_timesteps // num_steps


def sample(
  key: jax.Array,
  unet_apply: Callable,
  params: Any,
  context: jnp.ndarray,
  uncond_context: jnp.ndarray,
  alphas_cumprod: np.ndarray,
  num_steps: int = 50,
  guidance_scale: float = 4.0,
  image_size: int = 64,
  channels: int = 3,
  clip_x0: bool = True,
  initial_noise: Optional[jnp.ndarray] = None,
  raw: bool = False,
) -> jnp.ndarray:
  """Deterministic DDIM (eta = 0) with classifier-free guidance; jit-able (close over the ints).

  unet_apply(params, x_t [N,S,S,C], t [N] int32, context [N,L,D]) -> eps [N,S,S,C].
  context [B,L,D]: caption embeddings; uncond_context [B or 1,L,D]: the empty caption's.
  eps_hat = eps(x;0) + w (eps(x;y) - eps(x;0)); x0 = (x - sqrt(1-a) eps_hat)/sqrt(a), clipped to
  [-1,1] if clip_x0; x <- sqrt(a_prev) x0 + sqrt(1-a_prev) eps_hat. This is diffusers'
  DDIMScheduler step (clip_sample=clip_x0, set_alpha_to_one=True, timestep_spacing='trailing').
  initial_noise: x_T [B,S,S,C]; None draws it from `key`.
  Returns images [B,S,S,C] in [0,1] (the last x0, mapped from [-1,1], when num_steps divides T); raw returns
  the last x as it is (a latent model's latents, for its decoder).
  """
  abar = np.asarray(alphas_cumprod, np.float64)
  ts, prev = ddim_timesteps(len(abar), num_steps)
  a_t = jnp.asarray(abar[ts], jnp.float32)
  a_prev = jnp.asarray(np.where(prev >= 0, abar[np.maximum(prev, 0)], 1.0), jnp.float32)
  ts = jnp.asarray(ts, jnp.int32)
  b = context.shape[0]
  ctx = jnp.concatenate([jnp.broadcast_to(uncond_context, context.shape), context]).astype(jnp.float32)
  if initial_noise is None:
    initial_noise = jax.random.normal(key, (b, image_size, image_size, channels), jnp.float32)
  x = jnp.asarray(initial_noise, jnp.float32)

  def step(i, x):
    a, ap = a_t[i], a_prev[i]
    eps_u, eps_c = jnp.split(
      unet_apply(params, jnp.concatenate([x, x]), jnp.full((2 * b,), ts[i]), ctx).astype(jnp.float32), 2
    )
    eps = eps_u + guidance_scale * (eps_c - eps_u)
    x0 = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
    if clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
    return jnp.sqrt(ap) * x0 + jnp.sqrt(1.0 - ap) * eps

  x = jax.lax.fori_loop(0, num_steps, step, x)
  return x if raw else jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- images


def write_png(path: str, image: np.ndarray) -> str:
  """Writes an [H, W, 3] image (uint8, or float in [0, 1]) as an 8-bit RGB PNG; returns path.

  imageio only (not dreamfusion_jax.export, whose mesh libraries a training machine need not have).
  """
  import imageio.v3 as iio

  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  files.write_bytes(path, iio.imwrite("<bytes>", image, extension=".png"))
  return path


def image_grid(images: np.ndarray, ncols: int, pad: int = 2) -> np.ndarray:
  """Images [N, H, W, 3] in [0, 1] -> one [rows (H+pad) + pad, ncols (W+pad) + pad, 3] grid on white."""
  n, h, w, c = images.shape
  rows = -(-n // ncols)
  grid = np.ones((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
  for i, img in enumerate(np.asarray(images, np.float32)):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = img
  return grid
