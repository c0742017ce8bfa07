"""The Shapes prior's model card and export: validation losses, the preview grid, and DIR/export/.

`export` writes the prior (shapes_prior.save_prior: params.msgpack in float16, config.json, MODEL_CARD.md)
and samples.png from the EMA weights. Every fact of the card is measured or read from the run's records
(the checkpoint's 'config' item: one entry per run of the training, `chunks`, with its steps, device, wall
time, cameras and caption rule), so the card of a prior trained in many chunks and fine-tunes stays true.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import prior_data, prior_step, world

# Preview captions: six training pairs, each sharing a colour or a shape with a held-out pair.
PREVIEW_TRAIN_PAIRS = (
  ("red", "sphere"),
  ("green", "torus"),
  ("blue", "cube"),
  ("yellow", "bird"),
  ("purple", "cone"),
  ("cyan", "chair"),
)


# ----------------------------------------------------------------------------- validation and samples


def collect_validation(
  key: jax.Array, config: ml_collections.ConfigDict, camera_cfg: cameras.CameraConfig, textureless_caption: str
) -> dict:
  """Renders of held-out pairs and of training pairs, config.val_examples each (numpy dict).

  Drawn by sample_batch over ALL pairs (the training compile, exclude_held_out=False) and split
  by pair, so both sets follow the training distribution of shading and backgrounds, and the
  cameras camera_cfg and caption rule (the last training run's). 'colour' is the pair's (the
  albedo), 'caption_colour' the caption's.
  """
  held = {(world.SHAPES.index(s), world.COLOUR_NAMES.index(c)) for c, s in world.HELD_OUT}
  want = config.val_examples
  sets = {"held_out": [], "train": []}
  n = config.fresh_per_step
  # Held-out pairs are 6 of 110, so ~20 renders give one; give up far beyond that.
  max_calls = 100 * (want * len(world.PAIRS) // (len(held) * n) + 1)
  for i in range(max_calls):
    batch = jax.device_get(prior_data.render(jax.random.fold_in(key, i), n, config.image_size, False, camera_cfg))
    batch["caption_colour"] = np.asarray(prior_data.caption_colours(batch, textureless_caption))
    for j in range(n):
      which = "held_out" if (int(batch["shape"][j]), int(batch["colour"][j])) in held else "train"
      if len(sets[which]) < want:
        sets[which].append({k: batch[k][j] for k in ("images", "shape", "colour", "caption_colour", "view")})
    if all(len(v) == want for v in sets.values()):
      break
  else:
    raise RuntimeError(f"Found only {len(sets['held_out'])} held-out renders in {max_calls} batches.")
  return {name: {k: np.stack([e[k] for e in items]) for k in items[0]} for name, items in sets.items()}


def validation_losses(param_sets: list, models: prior_step.Models, val: dict, key: jax.Array) -> list[dict]:
  """Epsilon-MSE of each params in `param_sets` on both validation sets, with the same timesteps and noise.

  Timesteps are stratified over [0, T) so the mean is a low-variance estimate of the training loss.
  Returns one {'held_out': mean, 'train': mean, 'per_pair': {'a red torus': mean, ...}} per params.
  """
  count = val["held_out"]["images"].shape[0]
  num_t = len(models.alphas_cumprod)
  t = np.asarray(((np.arange(count) + 0.5) / count * num_t).astype(np.int32))
  eps = jax.random.normal(key, val["held_out"]["images"].shape, jnp.float32)
  loss = models.jit_loss
  results = []
  for params in param_sets:
    out, per_pair = {}, {}
    for name, data in val.items():
      ids = models.captions[data["shape"], data["caption_colour"], data["view"]]
      values = np.asarray(loss(params, jnp.asarray(data["images"]), jnp.asarray(ids), jnp.asarray(t), eps))
      out[name] = float(values.mean())
      if name == "held_out":
        for s, c in sorted(set(zip(data["shape"].tolist(), data["colour"].tolist()))):
          mask = (data["shape"] == s) & (data["colour"] == c)
          per_pair[world.caption(world.COLOUR_NAMES[c], world.SHAPES[s])] = float(values[mask].mean())
    out["per_pair"] = per_pair
    results.append(out)
  return results


def preview_captions() -> tuple[list[str], list[bool]]:
  """Rows of samples.png: the six PREVIEW_TRAIN_PAIRS then every HELD_OUT pair; flags mark held-out rows."""
  pairs = list(PREVIEW_TRAIN_PAIRS) + list(world.HELD_OUT)
  return [world.caption(c, s) for c, s in pairs], [False] * len(PREVIEW_TRAIN_PAIRS) + [True] * len(world.HELD_OUT)


def preview_samples(
  key: jax.Array, params: Any, models: prior_step.Models, config: ml_collections.ConfigDict
) -> np.ndarray:
  """DDIM samples [rows * 4, S, S, 3]: each preview caption with the four view suffixes."""
  rows, _ = preview_captions()
  views = len(text_lib.VIEW_SUFFIXES)
  texts = [text_lib.view_prompt(r, v) for r in rows for v in range(views)]
  ids = jnp.asarray(np.concatenate([models.tokenizer(texts), models.empty[None]]))
  embeddings = models.jit_embed(params["text"], ids)
  run = models.jit_sample(config.sample_steps, config.guidance_scale, config.image_size)
  return np.asarray(run(key, params["unet"], embeddings[:-1], embeddings[-1:]))


# ----------------------------------------------------------------------------- the run's records


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


# The caption rule of runs from before it was recorded.
_UNRECORDED_TEXTURELESS_CAPTION = "albedo"


def _last_recorded(meta: dict, key: str):
  """chunk[key] of the last run in meta that recorded it; None if none did (runs from before it was recorded)."""
  recorded = [c[key] for c in meta["chunks"] if c.get(key) is not None]
  return recorded[-1] if recorded else None


def last_cameras(meta: dict) -> cameras.CameraConfig:
  """The cameras of the last run in meta that recorded them; DreamFusion's if none did (older runs)."""
  record = _last_recorded(meta, "camera")
  if record is None:
    return cameras.CameraConfig()
  return cameras.CameraConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})


def last_textureless_caption(meta: dict) -> str:
  """The caption rule of the last run in meta that recorded one; the old rule if none did."""
  return _last_recorded(meta, "textureless_caption") or _UNRECORDED_TEXTURELESS_CAPTION


def describe_captions(chunks: list) -> str:
  """The model card's caption line, with each run's colour word for textureless renders."""
  rules = {
    "white": "textureless renders say 'white' (what they show)",
    "albedo": "textureless renders name the albedo's colour (which they do not show)",
  }
  rule = lambda c: rules[c.get("textureless_caption") or _UNRECORDED_TEXTURELESS_CAPTION]
  return "'a {colour} {shape}, {front|side|back|overhead} view' (the view from the camera's angles); " + "; ".join(
    f"steps {c['start_step']}-{c['end_step']}: {rule(c)}" for c in chunks
  )


def describe_cameras(record) -> str:
  """One line for a camera_record (None: a run from before cameras were recorded, DreamFusion's)."""
  c = prior_data.camera_record(cameras.CameraConfig()) if record is None else record
  paper = c == prior_data.camera_record(cameras.CameraConfig())
  return (
    f"distance U({c['distance_range'][0]:g}, {c['distance_range'][1]:g}), focal U({c['focal_range'][0]:g}, "
    f"{c['focal_range'][1]:g}) x image size, look-at std {c['look_at_std']:g}, position jitter "
    f"{c['position_jitter']:g}" + (" (DreamFusion's)" if paper else "")
  )


# ----------------------------------------------------------------------------- the card


def _attention_resolutions(cfg: dict) -> list[int]:
  """The resolutions (pixels, largest first) at which the UNet has self- and cross-attention."""
  unet, size = cfg["unet"], cfg["image_size"]
  attention = {size >> i for i, b in enumerate(unet["down_block_types"]) if b.startswith("CrossAttn")}
  attention.add(size >> (len(unet["block_out_channels"]) - 1))  # The mid block.
  return sorted(attention, reverse=True)


def _model_facts(cfg: dict, counts: dict) -> dict:
  unet = cfg["unet"]
  return {
    "UNet": (
      f"dreamfusion_jax.guidance.unet.UNet2DConditionModel, block_out_channels {unet['block_out_channels']}, "
      f"layers_per_block {unet['layers_per_block']}, self- and cross-attention at "
      f"{' and '.join(f'{r}x{r}' for r in _attention_resolutions(cfg))}, "
      f"{counts['unet']:,} parameters"
    ),
    "text encoder": (
      f"dreamfusion_jax.guidance.text.TextEncoder, width {cfg['text']['width']}, "
      f"{cfg['text']['num_layers']} layers, {counts['text']:,} parameters, a "
      f"{len(cfg['text']['vocabulary'])}-word vocabulary, {cfg['text']['max_length']} tokens"
    ),
    "input": f"{cfg['image_size']}x{cfg['image_size']} RGB in [-1, 1], prediction: epsilon",
    "schedule": (
      f"{cfg['schedule']['beta_schedule']} betas {cfg['schedule']['beta_start']}.."
      f"{cfg['schedule']['beta_end']} over {cfg['schedule']['num_train_timesteps']} steps"
    ),
    "weights": "EMA of the training weights, stored float16, loaded as float32",
  }


def _data_facts(meta: dict, config: ml_collections.ConfigDict) -> dict:
  chunks = meta["chunks"]
  return {
    "source": (
      "the procedural Shapes world (dreamfusion_jax.shapes.world), rendered on the fly by "
      f"world.sample_batch: {len(world.SHAPES)} shapes x {len(world.COLOURS)} colours, "
      "DreamFusion's camera sampler (see cameras), {:.1%} albedo-only / {:.1%} shaded / {:.1%} textureless "
      "shading, uniform random solid backgrounds".format(*world.DREAMFUSION_SHADING_MIX)
    ),
    "cameras": "; ".join(
      f"steps {c['start_step']}-{c['end_step']}: {describe_cameras(c.get('camera'))}" for c in chunks
    ),
    "captions": describe_captions(chunks),
    "caption dropout": f"{config.caption_dropout:.0%} of captions replaced by the empty caption",
    "held-out pairs (never trained on)": ", ".join(world.caption(c, s) for c, s in world.HELD_OUT),
    "training pairs": f"{world.NUM_TRAIN_PAIRS} of {len(world.PAIRS)}",
    "renders": (
      f"a pool of {config.pool_size} on the device, {config.fresh_per_step} new per step "
      f"(about {meta.get('renders', 0):,} renders in all)"
    ),
  }


def _training_facts(meta: dict, config: ml_collections.ConfigDict) -> dict:
  chunks, step = meta["chunks"], meta["step"]
  devices = sorted({c["device"] for c in chunks}) or ["unknown"]
  train_s = sum(c["wall_s"] for c in chunks)
  return {
    "steps": f"{step:,}",
    "batch": config.batch,
    "images seen": f"{step * config.batch:,}",
    "loss": (
      f"epsilon MSE, Min-SNR-{config.snr_gamma:g} weighted" if config.snr_gamma > 0 else "epsilon MSE (L_simple)"
    ),
    "optimiser": (
      f"AdamW, lr {config.lr:g} after {config.warmup_steps} warm-up steps, weight decay "
      f"{config.weight_decay:g}, gradient clipping {config.grad_clip:g}; EMA decay "
      f"{config.ema_decay:g}"
    ),
    "compute": f"{meta.get('compute_dtype', '?')} compute, float32 weights",
    "device": ", ".join(devices),
    "wall time": (
      f"{_minutes(train_s)} in {len(chunks)} run(s) (each from process start to its last checkpoint, compiles included)"
    ),
    "runs": "; ".join(
      f"steps {c['start_step']}-{c['end_step']} on {c['device']} in {_minutes(c['wall_s'])}" for c in chunks
    ),
  }


def _results_facts(meta: dict, config: ml_collections.ConfigDict, losses: dict, losses_f32: dict) -> dict:
  return {
    "final training loss": (
      f"{meta.get('loss_ema', float('nan')):.4f} (unweighted epsilon MSE, EMA over "
      "the last ~100 steps, training weights)"
    ),
    "validation loss, held-out pairs": f"{losses['held_out']:.4f}",
    "validation loss, training pairs": f"{losses['train']:.4f}",
    "validation loss, held-out pairs, float32 EMA before float16 rounding": f"{losses_f32['held_out']:.4f}",
    "validation loss per held-out pair": ", ".join(f"{k}: {v:.4f}" for k, v in losses["per_pair"].items()),
    "validation protocol": (
      f"unweighted epsilon MSE on {config.val_examples} fresh renders per set, "
      "timesteps stratified over [0, T), the same noise for both sets, shipped "
      "(float16-rounded) EMA weights"
    ),
  }


def make_card(
  meta: dict, config: ml_collections.ConfigDict, cfg: dict, losses: dict, losses_f32: dict, counts: dict
) -> dict:
  """The model card's facts (all measured or read from the run's records).

  meta: the checkpoint's record of the training (chunks, step, renders, loss_ema, compute_dtype);
  config: this process's training config; cfg: the model config; losses, losses_f32: validation_losses
  of the shipped and the float32 EMA weights; counts: {'unet': N, 'text': N} parameters.
  """
  rows, held_rows = preview_captions()
  size = cfg["image_size"]
  return {
    "title": f"Shapes prior: a {size}x{size} pixel-space text-to-image diffusion model of the Shapes world",
    "summary": (
      "The diffusion prior of dreamfusion_jax's Shapes experiments, in the role Imagen's 64x64 base "
      "model plays in DreamFusion. Epsilon prediction, DDPM linear schedule, classifier-free "
      "guidance. Trained from scratch by `python -m dreamfusion_jax.shapes.train_prior "
      "--config=configs/shapes_prior.py`; loaded by `--config.guidance.model=shapes`."
    ),
    "Model": _model_facts(cfg, counts),
    "Data": _data_facts(meta, config),
    "Training": _training_facts(meta, config),
    "Results": _results_facts(meta, config, losses, losses_f32),
    "Samples (samples.png)": (
      f"DDIM, {config.sample_steps} steps, guidance scale {config.guidance_scale:g}. Rows (top to bottom): "
      + "; ".join(f"{r}{' (HELD OUT)' if h else ''}" for r, h in zip(rows, held_rows))
      + ". Columns: front, side, back, overhead view."
    ),
  }


# ----------------------------------------------------------------------------- the export


def export(
  state: prior_step.TrainState, progs: prior_step.Programs, config: ml_collections.ConfigDict, workdir: str, meta: dict
) -> dict:
  """Writes DIR/export/ (shapes_prior.save_prior + samples.png) from the EMA weights; returns the card."""
  directory = os.path.join(workdir, "export")
  key = prior_step.rng_key(config.seed + 12345)  # Fixed: the same validation data at every export.
  models, f32 = progs.models, progs.eval_models
  ema = progs.layout.unravel(np.asarray(jax.device_get(state.ema_params), np.float32))
  shipped = shapes_prior.cast_params(shapes_prior.cast_params(ema, np.float16), np.float32)
  logging.info("Export: rendering %d validation examples per set.", config.val_examples)
  # The cameras of the last run that trained (not this process's config: --config.export_only takes none): the
  # validation renders use them, and config.json records them for the DreamFusion runs it guides.
  cams = last_cameras(meta)
  val = collect_validation(jax.random.fold_in(key, 0), config, cams, last_textureless_caption(meta))
  losses, losses_f32 = validation_losses([shipped, ema], f32, val, jax.random.fold_in(key, 1))
  counts = dict(zip(("unet", "text"), progs.layout.counts()))
  card = make_card(meta, config, models.cfg, losses, losses_f32, counts)
  cfg = dict(models.cfg, camera=prior_data.camera_record(cams), textureless_caption=last_textureless_caption(meta))
  shapes_prior.save_prior(directory, shipped, cfg, card)
  logging.info("Export: sampling the preview grid.")
  images = preview_samples(jax.random.fold_in(key, 2), shipped, f32, config)
  shapes_prior.write_png(
    os.path.join(directory, "samples.png"), shapes_prior.image_grid(images, len(text_lib.VIEW_SUFFIXES))
  )
  logging.info(
    "Exported the prior to %s (held-out loss %.4f, training-pair loss %.4f).",
    directory,
    losses["held_out"],
    losses["train"],
  )
  return card
