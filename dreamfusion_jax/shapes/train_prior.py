"""Trains the Shapes prior (dreamfusion_jax.guidance.shapes_prior) on renders of the Shapes world made on the fly.

  python -m dreamfusion_jax.shapes.train_prior --workdir=/tmp/prior --steps=60000 --time_limit_min=7 --export_on_stop

The UNet and the text encoder are trained jointly from scratch with DDPM's epsilon-prediction MSE
(Min-SNR-5 weighted) on 64x64 renders (`world.sample_batch`, held-out colour x shape pairs
excluded) captioned 'a {colour} {shape}, {view} view' (a textureless render, a white object, says
'white': `--textureless_caption`), the caption replaced by the empty one 10% of the time so the model also learns the unconditional score (classifier-free guidance). AdamW with
warm-up, an EMA of the weights (exported), bfloat16 compute on GPU.

Data. Renders go into a pool on the device (`--pool_size`, default 8192 images); each step renders
`--fresh_per_step` new images over the oldest ones and draws its batch uniformly from the pool,
so rendering (~0.17 ms per image on an H200, sequential inside `sample_batch`) costs a fraction of
the UNet step. The pool is not checkpointed: a resumed run renders a fresh one.

Cameras. `--distance_range`, `--focal_range`, `--look_at_std` and `--position_jitter` set the
world's cameras (DreamFusion's by default). They may change on resume, which fine-tunes the prior
on the new ones (the shipped prior: 23,000 steps on DreamFusion's, then one zoom); the model card
lists each run's cameras and config.json records the last run's, which a DreamFusion run should
sample too (`guidance` warns when it does not). `--textureless_caption` may change on resume too.

Runs in chunks. A run saves an orbax checkpoint under DIR/checkpoints every --checkpoint_every_min
minutes, when --time_limit_min is reached, and at the end; started again with the same --workdir it
resumes. When --steps is reached (or with --export_only) it writes DIR/export/: the prior
(shapes_prior.save_prior: params.msgpack in float16, config.json, MODEL_CARD.md) and samples.png.
The checkpoint keeps the Adam moments in bfloat16 (relative rounding 2^-8) so that it stays small
enough to be carried between machines; everything else resumes exactly. Only the latest checkpoint
is kept, so `tar -C DIR -cf - checkpoints metrics.jsonl` (~45 MB for the default model) is all a
later machine needs: unpack it into an empty DIR and run the same command again.

Compiled programs are cached per process (`programs`), so tests and notebooks that train twice
compile once.
"""
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

from dreamfusion_jax import logs
from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import world
from dreamfusion_jax.errors import DivergenceError, UserError, WorkdirError
from dreamfusion_jax.guidance import text as text_lib

# Command-line help of each Options field (the flags take their defaults from Options).
_FLAG_HELP = {
    "steps": "Total optimisation steps (a resumed run continues up to this).",
    "batch": "Images per step.",
    "lr": "Peak AdamW learning rate (after linear warm-up, constant).",
    "warmup_steps": "Linear learning-rate warm-up from 0.",
    "weight_decay": "AdamW decoupled weight decay (kernels and embeddings only).",
    "grad_clip": "Global gradient-norm clipping (0 disables it).",
    "ema_decay": "Decay of the exported EMA of the weights (warmed up as min(d, (1+n)/(10+n))).",
    "caption_dropout": "Probability of replacing a caption by the empty one (classifier-free guidance).",
    "snr_gamma": "Min-SNR loss weighting min(SNR, gamma) / SNR (Hang et al. 2023); 0: plain epsilon MSE.",
    "time_limit_min": "Stop, checkpoint and exit after this many minutes of wall time (0: no limit).",
    "checkpoint_every_min": "Minutes of wall time between checkpoints.",
    "seed": "Seed of the initial weights and of the data stream.",
    "model": "'default' (the shipped prior) or 'tiny' (tests).",
    "image_size": "Training resolution in pixels.",
    "compute_dtype": "UNet compute dtype: 'auto' (bfloat16 on GPU/TPU, float32 on CPU), 'float32', 'bfloat16'.",
    "pool_size": "Images in the on-device training pool (a multiple of --fresh_per_step).",
    "fresh_per_step": "New renders put into the pool every step.",
    "log_every": "Steps between metrics.jsonl records (each one waits for the device).",
    "export_only": "Export the latest checkpoint without training.",
    "export_on_stop": "Also export when --time_limit_min stops the run before --steps.",
    "val_examples": "Validation renders per set (held-out pairs, training pairs) at export.",
    "sample_steps": "DDIM steps of the preview samples.",
    "guidance_scale": "Classifier-free guidance scale of the preview samples.",
    "progress_bar": "Show a tqdm progress bar.",
    "distance_range": "Camera distance from the origin, 'MIN,MAX' (uniform; DreamFusion: 1.0,1.5).",
    "focal_range": "Focal length as a multiple of the image size, 'MIN,MAX' (uniform; DreamFusion: 0.7,1.35).",
    "look_at_std": "Std of the camera's look-at point around the origin (DreamFusion: 0.2).",
    "position_jitter": "Half-width of the uniform jitter of the camera position (DreamFusion: 0.1).",
    "textureless_caption": ("Colour word in the captions of textureless renders: 'white' (what they show, a white "
                            "object) or 'albedo' (the colour of the object's albedo, which the render does not show)."),
}


@dataclasses.dataclass(frozen=True)
class Options:
  """The command line's settings (help texts: _FLAG_HELP)."""
  steps: int = 60_000  # Total optimisation steps.
  batch: int = 128  # Images per step.
  lr: float = 3e-4  # Peak learning rate.
  warmup_steps: int = 1000  # Linear warm-up steps.
  weight_decay: float = 0.01  # AdamW weight decay.
  grad_clip: float = 1.0  # Global-norm clipping (0: off).
  ema_decay: float = 0.9995  # EMA decay of the exported weights.
  caption_dropout: float = 0.1  # Empty-caption probability.
  snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (0: off).
  time_limit_min: float = 0.0  # Wall-time limit of this process (0: none).
  checkpoint_every_min: float = 3.0  # Minutes between checkpoints.
  seed: int = 0  # Weights and data seed.
  model: str = "default"  # 'default' or 'tiny'.
  image_size: int = 64  # Training resolution.
  compute_dtype: str = "auto"  # UNet compute dtype.
  pool_size: int = 8192  # Images in the training pool.
  fresh_per_step: int = 16  # New renders per step.
  log_every: int = 100  # Steps between metric records.
  export_only: bool = False  # Export without training.
  export_on_stop: bool = False  # Export at a time-limit stop too.
  val_examples: int = 192  # Validation renders per set.
  sample_steps: int = 50  # DDIM steps of the previews.
  guidance_scale: float = 4.0  # CFG scale of the previews.
  progress_bar: bool = True  # tqdm bar.
  # The world's cameras (cameras.CameraConfig); DreamFusion's by default. A DreamFusion run guided by
  # the prior should sample its cameras the same way (the prior's config.json records them).
  distance_range: str = "1.0,1.5"  # Camera distance, 'MIN,MAX'.
  focal_range: str = "0.7,1.35"  # Focal / image size, 'MIN,MAX'.
  look_at_std: float = 0.2  # Look-at point std.
  position_jitter: float = 0.1  # Camera position jitter.
  # A textureless render IS an image of a white object. Captioned with the albedo's colour instead
  # (the shipped prior's first 23,000 steps), every caption admits a shaded white object, and SDS
  # then lets results drift to white (BENCHMARKS.md). May change on resume, like the cameras.
  textureless_caption: str = "white"  # 'white' or 'albedo'.


# Options that define what is trained: a resumed run must keep them.
_FIXED_ON_RESUME = ("model", "image_size")

# Preview captions: six training pairs, each sharing a colour or a shape with a held-out pair.
PREVIEW_TRAIN_PAIRS = (("red", "sphere"), ("green", "torus"), ("blue", "cube"), ("yellow", "bird"),
                       ("purple", "cone"), ("cyan", "chair"))

LOSS_EMA_DECAY = 0.99  # Of the logged training loss: averages the t-dependence of single-step losses away.


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
          "in_channels": 3, "out_channels": 3, "sample_size": image_size,
          "block_out_channels": [64, 64, 64, 96], "layers_per_block": 1,
          "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
          "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
          "attention_head_dim": [2, 2, 2, 3],  # diffusers' quirk: the NUMBER of heads per block.
          "cross_attention_dim": 64, "norm_num_groups": 32,
      },
      "text": {"width": 64, "num_layers": 2, "num_heads": 4, "max_length": 12,
               "vocabulary": list(world.vocabulary())},
      "schedule": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000},
  }


def tiny_config(image_size: int = 16) -> dict:
  """A very small model for CPU tests: two levels, text cross-attention in the mid block only.

  ~48k parameters; what costs on CPU is compiling, which grows with the number of weight arrays.
  """
  cfg = default_config(image_size)
  cfg["unet"].update(block_out_channels=[8, 16], down_block_types=["DownBlock2D", "DownBlock2D"],
                     up_block_types=["UpBlock2D", "UpBlock2D"], attention_head_dim=[1, 2],
                     cross_attention_dim=8, norm_num_groups=4)
  cfg["text"].update(width=8, num_layers=1, num_heads=2)
  return cfg


def caption_table(tokenizer: text_lib.WordTokenizer) -> np.ndarray:
  """Token ids of every training caption: int32 [num_shapes, num_colours, num_views, max_length].

  Entry [s, c, v] tokenizes exactly what `world.captions_for` writes for that example,
  'a {colour} {shape}, {view suffix}', so a jitted step can look captions up instead of
  tokenizing strings on the host.
  """
  texts = [text_lib.view_prompt(world.caption(colour, shape), v)
           for shape in world.SHAPES for colour in world.COLOUR_NAMES
           for v in range(len(text_lib.VIEW_SUFFIXES))]
  ids = tokenizer(texts)
  return ids.reshape(len(world.SHAPES), len(world.COLOUR_NAMES), len(text_lib.VIEW_SUFFIXES), -1)


@flax.struct.dataclass
class TrainState:
  """Everything that a resumed run needs (the data pool is rebuilt)."""
  step: jnp.ndarray  # [] int32, steps taken.
  params: jnp.ndarray  # float32 [P]: {'unet': ..., 'text': ...} flattened (see Layout).
  ema_params: jnp.ndarray  # float32 [P]: EMA of params (exported).
  opt_state: Any  # optax state.
  key: jnp.ndarray  # [4] uint32: data of the base 'rbg' PRNG key (see rng_key); step keys are folded from it.
  loss_ema: jnp.ndarray  # [] float32, EMA of the training epsilon MSE (not debiased).
  loss_ema_weight: jnp.ndarray  # [] float32, 1 - decay^n: divides loss_ema to debias it.


# ----------------------------------------------------------------------------- building blocks


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """The options the compiled train step depends on (hashable: compiled programs are cached on it)."""
  batch: int  # Images per step.
  lr: float  # Peak learning rate.
  warmup_steps: int  # Linear warm-up steps.
  weight_decay: float  # AdamW weight decay.
  grad_clip: float  # Global-norm clipping (0: off).
  ema_decay: float  # EMA decay.
  caption_dropout: float  # Empty-caption probability.
  snr_gamma: float  # Min-SNR-gamma loss weighting (0: off).
  textureless_caption: str  # 'white' or 'albedo' (see Options).

  @classmethod
  def of(cls, options: Options) -> "StepConfig":
    return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)})


def rng_key(seed: int) -> jax.Array:
  """A typed 'rbg' PRNG key. XLA:CPU compiles threefry bit generation very slowly (seconds per
  array shape; minutes for a UNet's init), and the prior needs no cross-backend reproducibility."""
  return jax.random.key(seed, impl="rbg")


def state_key(state: TrainState) -> jax.Array:
  return jax.random.wrap_key_data(state.key, impl="rbg")


def model_config(options: Options) -> dict:
  if options.model == "default":
    return default_config(options.image_size)
  if options.model == "tiny":
    return tiny_config(options.image_size)
  raise UserError(f"--model={options.model!r} is not known; use 'default' or 'tiny'.")


def compute_dtype(options: Options):
  name = options.compute_dtype
  if name == "auto":
    name = "bfloat16" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "float32"
  if name not in ("float32", "bfloat16"):
    raise UserError(f"--compute_dtype={options.compute_dtype!r} is not one of auto, float32, bfloat16.")
  return jnp.dtype(name)


def check_options(options: Options) -> None:
  """Raises UserError naming the first bad option, before anything is compiled."""
  positive = ("steps", "batch", "pool_size", "fresh_per_step", "log_every", "val_examples", "sample_steps")
  for name in positive:
    if getattr(options, name) <= 0:
      raise UserError(f"--{name}={getattr(options, name)} must be positive.")
  if options.pool_size % options.fresh_per_step:
    raise UserError(f"--pool_size={options.pool_size} must be a multiple of --fresh_per_step="
                    f"{options.fresh_per_step}.")
  if not 0.0 <= options.caption_dropout < 1.0:
    raise UserError(f"--caption_dropout={options.caption_dropout} must be in [0, 1).")
  if options.textureless_caption not in TEXTURELESS_CAPTIONS:
    raise UserError(f"--textureless_caption={options.textureless_caption!r} is not one of "
                    f"{', '.join(TEXTURELESS_CAPTIONS)}.")
  if options.snr_gamma < 0:
    raise UserError(f"--snr_gamma={options.snr_gamma} must be >= 0 (0 turns the weighting off).")
  if not 0.0 <= options.ema_decay < 1.0:
    raise UserError(f"--ema_decay={options.ema_decay} must be in [0, 1).")
  if options.lr <= 0 or options.time_limit_min < 0 or options.checkpoint_every_min <= 0:
    raise UserError("--lr and --checkpoint_every_min must be positive and --time_limit_min >= 0.")
  compute_dtype(options)
  wrong = cameras.problem(camera_config(options))
  if wrong:
    raise UserError(f"--{wrong}.")
  try:
    shapes_prior.check_config(model_config(options))
  except ValueError as e:
    raise UserError(f"--image_size={options.image_size}: {e}") from None


def learning_rate(options: StepConfig) -> optax.Schedule:
  return optax.linear_schedule(0.0, options.lr, max(options.warmup_steps, 1))


class Layout:
  """Where each parameter lives in the flat float32 vector that the optimiser and the EMA see.

  One vector instead of ~200 leaves: the AdamW and EMA updates are a few fused kernels rather than
  hundreds (launch overhead on GPU; XLA:CPU compiled the per-leaf update 60x slower).
  """

  def __init__(self, abstract_params: Any):
    leaves, self.treedef = jax.tree.flatten(abstract_params)
    self.shapes = [tuple(x.shape) for x in leaves]
    self.sizes = [int(np.prod(shape)) for shape in self.shapes]
    self.offsets = np.cumsum([0] + self.sizes)[:-1].tolist()
    self.size = int(sum(self.sizes))

  def ravel(self, params: Any) -> jnp.ndarray:
    """Params pytree -> float32 [size]."""
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in self.treedef.flatten_up_to(params)])

  def unravel(self, flat: jnp.ndarray) -> Any:
    """float32 [size] -> params pytree (works on device arrays and numpy arrays)."""
    return self.treedef.unflatten([flat[o:o + n].reshape(shape)
                                   for o, n, shape in zip(self.offsets, self.sizes, self.shapes)])

  def counts(self) -> tuple[int, int]:
    """(UNet parameters, text-encoder parameters)."""
    tree = self.treedef.unflatten(self.sizes)
    return sum(jax.tree.leaves(tree["unet"])), sum(jax.tree.leaves(tree["text"]))

  def decay_mask(self) -> jnp.ndarray:
    """1 for matrices (kernels, embeddings), 0 for norms' scales and biases, which decay only hurts."""
    return jnp.concatenate([jnp.full((n,), float(len(shape) >= 2), jnp.float32)
                            for n, shape in zip(self.sizes, self.shapes)])


def _decoupled_weight_decay(rate: float, mask_fn) -> optax.GradientTransformation:
  """updates + rate * mask * params: AdamW's decay with an element-wise mask over the flat vector."""
  def update(updates, state, params):
    return updates + rate * mask_fn() * params, state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(options: StepConfig, layout: Layout) -> optax.GradientTransformation:
  """AdamW (optax.adamw's chain: adam, decoupled decay, learning rate) on the flat vector, clipped first."""
  parts = [optax.clip_by_global_norm(options.grad_clip)] if options.grad_clip > 0 else []
  parts += [optax.scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
            _decoupled_weight_decay(options.weight_decay, layout.decay_mask),
            optax.scale_by_learning_rate(learning_rate(options))]
  return optax.chain(*parts)


class Models:
  """The modules, tokenizer, schedule and caption table of one model config (all static in jit)."""

  def __init__(self, cfg: dict, dtype):
    self.cfg = cfg
    self.unet, self.text_encoder, self.tokenizer = shapes_prior.build_models(cfg, dtype)
    self.alphas_cumprod = shapes_prior.schedule(cfg)
    self.captions = caption_table(self.tokenizer)  # [shapes, colours, views, L]
    self.empty = self.tokenizer([""])[0]  # [L]: <bos> <eos> <pad>...

  def embed(self, text_params: Any, ids: jnp.ndarray) -> jnp.ndarray:
    return self.text_encoder.apply({"params": text_params}, ids)

  def eps(self, params: Any, x_t: jnp.ndarray, t: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
    """Predicted noise, float32 [B,S,S,3], for token ids [B,L]."""
    context = self.embed(params["text"], ids)
    return self.unet.apply({"params": params["unet"]}, x_t, t, context).astype(jnp.float32)

  # Jitted once per Models (Models are cached with the train step, see `programs`).
  @functools.cached_property
  def jit_loss(self):
    """jit of diffusion_loss(params, images, ids, t, eps) -> [B]."""
    return jax.jit(lambda params, images, ids, t, eps: diffusion_loss(params, self, images, ids, t, eps))

  @functools.cached_property
  def jit_embed(self):
    return jax.jit(self.embed)

  @functools.lru_cache(maxsize=4)
  def jit_sample(self, num_steps: int, guidance_scale: float, image_size: int):
    """jit of shapes_prior.sample(key, unet_params, context, uncond_context) with these settings."""
    unet_apply = lambda p, x, t, c: self.unet.apply({"params": p}, x, t, c)
    return jax.jit(lambda key, p, c, u: shapes_prior.sample(key, unet_apply, p, c, u, self.alphas_cumprod,
                                                           num_steps, guidance_scale, image_size))


def diffusion_loss(params: Any, models: Models, images: jnp.ndarray, ids: jnp.ndarray, t: jnp.ndarray,
                   eps: jnp.ndarray) -> jnp.ndarray:
  """Per-example epsilon MSE [B] of clean images [B,S,S,3] in [0,1] at timesteps t [B] with noise eps."""
  abar = jnp.asarray(models.alphas_cumprod)[t][:, None, None, None]
  x_t = jnp.sqrt(abar) * (images * 2.0 - 1.0) + jnp.sqrt(1.0 - abar) * eps
  return jnp.mean((models.eps(params, x_t, t, ids) - eps) ** 2, axis=(1, 2, 3))


def init_state(seed: int, cfg: dict, layout: Layout, tx: optax.GradientTransformation) -> TrainState:
  key = rng_key(seed)
  params = layout.ravel(shapes_prior.init_params(jax.random.fold_in(key, 0), cfg))
  # The EMA starts as a copy: params and EMA are donated to the step as separate buffers.
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=jnp.copy(params),
                    opt_state=tx.init(params),
                    key=jax.random.key_data(key), loss_ema=jnp.zeros((), jnp.float32),
                    loss_ema_weight=jnp.zeros((), jnp.float32))


# ----------------------------------------------------------------------------- the data pool


TEXTURELESS_CAPTIONS = ("white", "albedo")
_TEXTURELESS_MODE = 2  # world.sample_batch's shading_mode of a textureless render.


def caption_colours(batch: dict, textureless_caption: str):
  """[B] int32: the colour index of each render's caption (see Options.textureless_caption)."""
  if textureless_caption == "albedo":
    return batch["colour"]
  white = world.COLOUR_NAMES.index("white")
  return jnp.where(batch["shading_mode"] == _TEXTURELESS_MODE, white, batch["colour"]).astype(batch["colour"].dtype)


def _pool_entry(batch: dict, textureless_caption: str) -> dict:
  """A sample_batch result -> the pool's compact form: images uint8, labels int32 (colour: the caption's)."""
  images = jnp.round(jnp.clip(batch["images"], 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return dict(images=images, shape=batch["shape"], colour=caption_colours(batch, textureless_caption),
              view=batch["view"])


def _range(text: str, name: str) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in text.split(","))
  except ValueError:
    raise UserError(f"--{name}={text!r} is not a range: give 'MIN,MAX', two numbers, e.g. --{name}=1.0,1.5.") from None
  return lo, hi


def camera_config(options: Options) -> cameras.CameraConfig:
  """The world's training cameras of these options (raises UserError for unparsable ranges)."""
  return cameras.CameraConfig(distance_range=_range(options.distance_range, "distance_range"),
                              focal_range=_range(options.focal_range, "focal_range"),
                              look_at_std=options.look_at_std, position_jitter=options.position_jitter)


def camera_record(camera_cfg: cameras.CameraConfig) -> dict:
  """The JSON form of a CameraConfig (lists for tuples), as config.json and the checkpoints keep it."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(camera_cfg).items()}


def render(key: jax.Array, count: int, size: int, exclude_held_out: bool = True,
           camera_cfg: cameras.CameraConfig = cameras.CameraConfig()) -> dict:
  """`count` fresh examples (world.sample_batch, one compile per (count, size, cameras) per process)."""
  return world.sample_batch(key, count, size, exclude_held_out, camera_cfg=camera_cfg)


def fill_pool(key: jax.Array, options: Options) -> dict:
  """A pool of options.pool_size training renders, made in sample_batch calls of fresh_per_step."""
  n = options.fresh_per_step
  cams = camera_config(options)
  parts = [render(jax.random.fold_in(key, i), n, options.image_size, True, cams) for i in range(options.pool_size // n)]
  parts = [_pool_entry(p, options.textureless_caption) for p in parts]
  pool = {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}
  # Committed to the device like the step's outputs, or the step would compile twice (first call, then the rest).
  return jax.device_put(pool, jax.devices()[0])


_FRESH, _POOL = 1, 2  # Render streams, apart from the steps' own keys.


def data_key(state_key: jax.Array, stream: int, index: int) -> jax.Array:
  """Key of render stream `stream` (_FRESH: the renders of step `index`; _POOL: the pool made at step `index`)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(state_key, 0x5EED), stream), index)


# ----------------------------------------------------------------------------- the pure step


def train_step(state: TrainState, pool: dict, fresh: dict, *, models: Models, layout: Layout,
               tx: optax.GradientTransformation, options: StepConfig):
  """One step: put `fresh` renders in the pool, draw a batch, update params and EMA. Pure (jitted).

  Returns (state, pool, metrics); metrics hold scalars.
  """
  key = jax.random.fold_in(state_key(state), state.step)
  k_idx, k_drop, k_t, k_eps = jax.random.split(key, 4)
  fresh = _pool_entry(fresh, options.textureless_caption)
  n = fresh["images"].shape[0]
  pool_size = pool["images"].shape[0]
  start = (state.step * n) % pool_size  # The oldest renders: a ring buffer (pool_size % n == 0).
  pool = {k: jax.lax.dynamic_update_slice_in_dim(pool[k], fresh[k], start, axis=0) for k in pool}

  b = options.batch
  idx = jax.random.randint(k_idx, (b,), 0, pool_size)
  images = pool["images"][idx].astype(jnp.float32) / 255.0
  ids = jnp.asarray(models.captions)[pool["shape"][idx], pool["colour"][idx], pool["view"][idx]]
  drop = jax.random.uniform(k_drop, (b,)) < options.caption_dropout
  ids = jnp.where(drop[:, None], jnp.asarray(models.empty)[None], ids)
  t = jax.random.randint(k_t, (b,), 0, len(models.alphas_cumprod))
  eps = jax.random.normal(k_eps, images.shape, jnp.float32)

  # Min-SNR-gamma: timesteps cleaner than SNR = gamma weigh less, so capacity goes to the noisy
  # ones (what SDS queries) and training converges faster (Hang et al. 2023).
  abar = jnp.asarray(models.alphas_cumprod)[t]
  snr = abar / (1.0 - abar)
  weight = jnp.minimum(snr, options.snr_gamma) / snr if options.snr_gamma > 0 else jnp.ones_like(snr)

  def loss_fn(flat):
    mse = diffusion_loss(layout.unravel(flat), models, images, ids, t, eps)
    return jnp.mean(weight * mse), jnp.mean(mse)

  (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = state.params + updates
  step = state.step.astype(jnp.float32)
  decay = jnp.minimum(options.ema_decay, (1.0 + step) / (10.0 + step))
  ema = state.ema_params + (1.0 - decay) * (params - state.ema_params)
  # The logged and reported loss is the plain epsilon MSE, comparable with the validation loss.
  loss_ema = LOSS_EMA_DECAY * state.loss_ema + (1.0 - LOSS_EMA_DECAY) * mse
  ema_weight = LOSS_EMA_DECAY * state.loss_ema_weight + (1.0 - LOSS_EMA_DECAY)
  new = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state,
                      loss_ema=loss_ema, loss_ema_weight=ema_weight)
  metrics = dict(loss=mse, weighted_loss=loss, loss_ema=loss_ema / ema_weight, grad_norm=jnp.sqrt(jnp.sum(grads**2)),
                 lr=learning_rate(options)(state.step))
  return new, pool, metrics


class Programs:
  """The compiled functions of one (model config, step config, compute dtype)."""

  def __init__(self, cfg: dict, step_config: StepConfig, dtype):
    self.models = Models(cfg, dtype)
    # Validation and samples run as the prior is used: float32 compute.
    self.eval_models = self.models if jnp.dtype(dtype) == jnp.float32 else Models(cfg, jnp.float32)
    self.layout = Layout(jax.eval_shape(lambda: shapes_prior.init_params(rng_key(0), cfg)))
    self.tx = make_optimizer(step_config, self.layout)
    self.init = jax.jit(functools.partial(init_state, cfg=cfg, layout=self.layout, tx=self.tx), static_argnums=0)
    self.step = jax.jit(functools.partial(train_step, models=self.models, layout=self.layout, tx=self.tx,
                                          options=step_config), donate_argnums=(0, 1))


@functools.lru_cache(maxsize=4)
def _programs(cfg_json: str, step_config: StepConfig, dtype_name: str) -> Programs:
  return Programs(json.loads(cfg_json), step_config, jnp.dtype(dtype_name))


def programs(cfg: dict, options: Options, dtype) -> Programs:
  """Programs cached per process, so a second run in one process (a resume, a notebook) compiles nothing."""
  return _programs(json.dumps(cfg, sort_keys=True), StepConfig.of(options), jnp.dtype(dtype).name)


# ----------------------------------------------------------------------------- checkpoints


def _to_saved(state: TrainState) -> TrainState:
  """The checkpointed form: Adam moments in bfloat16 (see the module docstring)."""
  cast = lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return state.replace(opt_state=jax.tree.map(cast, state.opt_state))


def _from_saved(saved: TrainState, template: TrainState) -> TrainState:
  return saved.replace(opt_state=jax.tree.map(lambda x, t: jnp.asarray(x, t.dtype), saved.opt_state,
                                              template.opt_state))


class Checkpoints:
  """An orbax CheckpointManager over DIR/checkpoints keeping the latest; items 'state' and 'meta' (JSON)."""

  def __init__(self, workdir: str):
    import orbax.checkpoint as ocp
    self.ocp = ocp
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(self.directory,
                                         options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def meta(self, step: int) -> dict:
    return self.manager.restore(step, args=self.ocp.args.Composite(meta=self.ocp.args.JsonRestore())).meta

  def save(self, state: TrainState, meta: dict) -> None:
    step = int(jax.device_get(state.step))
    self.manager.save(step, args=self.ocp.args.Composite(state=self.ocp.args.StandardSave(_to_saved(state)),
                                                         meta=self.ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, template: TrainState) -> TrainState:
    """The state at `step`; template: the state's shapes and dtypes (jax.eval_shape of init_state)."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            jax.eval_shape(_to_saved, template))
    try:
      saved = self.manager.restore(step, args=self.ocp.args.Composite(
          state=self.ocp.args.StandardRestore(abstract))).state
    except (ValueError, KeyError, TypeError) as e:
      raise WorkdirError(f"The checkpoint at step {step} in '{self.directory}' does not fit this model "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). Use a new --workdir.") from None
    return _from_saved(saved, template)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


# ----------------------------------------------------------------------------- validation and export


def collect_validation(key: jax.Array, options: Options, camera_cfg: cameras.CameraConfig,
                       textureless_caption: str) -> dict:
  """Renders of held-out pairs and of training pairs, options.val_examples each (numpy dict).

  Drawn by sample_batch over ALL pairs (the training compile, exclude_held_out=False) and split
  by pair, so both sets follow the training distribution of shading and backgrounds, and the
  cameras camera_cfg and caption rule (the last training run's). 'colour' is the pair's (the
  albedo), 'caption_colour' the caption's.
  """
  held = {(world.SHAPES.index(s), world.COLOUR_NAMES.index(c)) for c, s in world.HELD_OUT}
  want = options.val_examples
  sets = {"held_out": [], "train": []}
  n = options.fresh_per_step
  # Held-out pairs are 6 of 110, so ~20 renders give one; give up far beyond that.
  max_calls = 100 * (want * len(world.PAIRS) // (len(held) * n) + 1)
  for i in range(max_calls):
    batch = jax.device_get(render(jax.random.fold_in(key, i), n, options.image_size, False, camera_cfg))
    batch["caption_colour"] = np.asarray(caption_colours(batch, textureless_caption))
    for j in range(n):
      which = "held_out" if (int(batch["shape"][j]), int(batch["colour"][j])) in held else "train"
      if len(sets[which]) < want:
        sets[which].append({k: batch[k][j] for k in ("images", "shape", "colour", "caption_colour", "view")})
    if all(len(v) == want for v in sets.values()):
      break
  else:
    raise RuntimeError(f"Found only {len(sets['held_out'])} held-out renders in {max_calls} batches.")
  return {name: {k: np.stack([e[k] for e in items]) for k in items[0]} for name, items in sets.items()}


def validation_losses(param_sets: list, models: Models, val: dict, key: jax.Array) -> list[dict]:
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


def preview_samples(key: jax.Array, params: Any, models: Models, options: Options) -> np.ndarray:
  """DDIM samples [rows * 4, S, S, 3]: each preview caption with the four view suffixes."""
  rows, _ = preview_captions()
  views = len(text_lib.VIEW_SUFFIXES)
  texts = [text_lib.view_prompt(r, v) for r in rows for v in range(views)]
  ids = jnp.asarray(np.concatenate([models.tokenizer(texts), models.empty[None]]))
  embeddings = models.jit_embed(params["text"], ids)
  run = models.jit_sample(options.sample_steps, options.guidance_scale, options.image_size)
  return np.asarray(run(key, params["unet"], embeddings[:-1], embeddings[-1:]))


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
  rules = {"white": "textureless renders say 'white' (what they show)",
           "albedo": "textureless renders name the albedo's colour (which they do not show)"}
  return ("'a {colour} {shape}, {front|side|back|overhead} view' (the view from the camera's angles); "
          + "; ".join(f"steps {c['start_step']}-{c['end_step']}: {rules[c.get('textureless_caption') or _UNRECORDED_TEXTURELESS_CAPTION]}"
                      for c in chunks))


def describe_cameras(record) -> str:
  """One line for a camera_record (None: a run from before cameras were recorded, DreamFusion's)."""
  c = camera_record(cameras.CameraConfig()) if record is None else record
  paper = c == camera_record(cameras.CameraConfig())
  return (f"distance U({c['distance_range'][0]:g}, {c['distance_range'][1]:g}), focal U({c['focal_range'][0]:g}, "
          f"{c['focal_range'][1]:g}) x image size, look-at std {c['look_at_std']:g}, position jitter "
          f"{c['position_jitter']:g}" + (" (DreamFusion's)" if paper else ""))


def make_card(meta: dict, options: Options, cfg: dict, losses: dict, losses_f32: dict, counts: dict) -> dict:
  """The model card's facts (all measured or read from the run's records)."""
  rows, held_rows = preview_captions()
  chunks = meta["chunks"]
  devices = sorted({c["device"] for c in chunks}) or ["unknown"]
  train_s = sum(c["wall_s"] for c in chunks)
  held = ", ".join(world.caption(c, s) for c, s in world.HELD_OUT)
  step = meta["step"]
  unet, size = cfg["unet"], cfg["image_size"]
  levels = len(unet["block_out_channels"])
  attention = {size >> i for i, b in enumerate(unet["down_block_types"]) if b.startswith("CrossAttn")}
  attention.add(size >> (levels - 1))  # The mid block.
  return {
      "title": f"Shapes prior: a {size}x{size} pixel-space text-to-image diffusion model of the Shapes world",
      "summary": ("The diffusion prior of dreamfusion_jax's Shapes experiments, in the role Imagen's 64x64 base "
                  "model plays in DreamFusion. Epsilon prediction, DDPM linear schedule, classifier-free "
                  "guidance. Trained from scratch by `python -m dreamfusion_jax.shapes.train_prior`; loaded by "
                  "`--config.guidance.model=shapes`."),
      "Model": {
          "UNet": (f"dreamfusion_jax.guidance.unet.UNet2DConditionModel, block_out_channels {unet['block_out_channels']}, "
                   f"layers_per_block {unet['layers_per_block']}, self- and cross-attention at "
                   f"{' and '.join(f'{r}x{r}' for r in sorted(attention, reverse=True))}, "
                   f"{counts['unet']:,} parameters"),
          "text encoder": (f"dreamfusion_jax.guidance.text.TextEncoder, width {cfg['text']['width']}, "
                           f"{cfg['text']['num_layers']} layers, {counts['text']:,} parameters, a "
                           f"{len(cfg['text']['vocabulary'])}-word vocabulary, {cfg['text']['max_length']} tokens"),
          "input": f"{cfg['image_size']}x{cfg['image_size']} RGB in [-1, 1], prediction: epsilon",
          "schedule": (f"{cfg['schedule']['beta_schedule']} betas {cfg['schedule']['beta_start']}.."
                       f"{cfg['schedule']['beta_end']} over {cfg['schedule']['num_train_timesteps']} steps"),
          "weights": "EMA of the training weights, stored float16, loaded as float32",
      },
      "Data": {
          "source": ("the procedural Shapes world (dreamfusion_jax.shapes.world), rendered on the fly by "
                     f"world.sample_batch: {len(world.SHAPES)} shapes x {len(world.COLOURS)} colours, "
                     "DreamFusion's camera sampler (see cameras), {:.1%} albedo-only / {:.1%} shaded / {:.1%} textureless "
                     "shading, uniform random solid backgrounds".format(*world.DREAMFUSION_SHADING_MIX)),
          "cameras": "; ".join(f"steps {c['start_step']}-{c['end_step']}: {describe_cameras(c.get('camera'))}"
                               for c in chunks),
          "captions": describe_captions(chunks),
          "caption dropout": f"{options.caption_dropout:.0%} of captions replaced by the empty caption",
          "held-out pairs (never trained on)": held,
          "training pairs": f"{world.NUM_TRAIN_PAIRS} of {len(world.PAIRS)}",
          "renders": (f"a pool of {options.pool_size} on the device, {options.fresh_per_step} new per step "
                      f"(about {meta.get('renders', 0):,} renders in all)"),
      },
      "Training": {
          "steps": f"{step:,}",
          "batch": options.batch,
          "images seen": f"{step * options.batch:,}",
          "loss": (f"epsilon MSE, Min-SNR-{options.snr_gamma:g} weighted" if options.snr_gamma > 0
                   else "epsilon MSE (L_simple)"),
          "optimiser": (f"AdamW, lr {options.lr:g} after {options.warmup_steps} warm-up steps, weight decay "
                        f"{options.weight_decay:g}, gradient clipping {options.grad_clip:g}; EMA decay "
                        f"{options.ema_decay:g}"),
          "compute": f"{meta.get('compute_dtype', '?')} compute, float32 weights",
          "device": ", ".join(devices),
          "wall time": (f"{_minutes(train_s)} in {len(chunks)} run(s) (each from process start to its last "
                        "checkpoint, compiles included)"),
          "runs": "; ".join(f"steps {c['start_step']}-{c['end_step']} on {c['device']} in {_minutes(c['wall_s'])}"
                            for c in chunks),
      },
      "Results": {
          "final training loss": (f"{meta.get('loss_ema', float('nan')):.4f} (unweighted epsilon MSE, EMA over "
                                  "the last ~100 steps, training weights)"),
          "validation loss, held-out pairs": f"{losses['held_out']:.4f}",
          "validation loss, training pairs": f"{losses['train']:.4f}",
          "validation loss, held-out pairs, float32 EMA before float16 rounding": f"{losses_f32['held_out']:.4f}",
          "validation loss per held-out pair": ", ".join(f"{k}: {v:.4f}" for k, v in losses["per_pair"].items()),
          "validation protocol": (f"unweighted epsilon MSE on {options.val_examples} fresh renders per set, "
                                  "timesteps stratified over [0, T), the same noise for both sets, shipped "
                                  "(float16-rounded) EMA weights"),
      },
      "Samples (samples.png)": (
          f"DDIM, {options.sample_steps} steps, guidance scale {options.guidance_scale:g}. Rows (top to bottom): "
          + "; ".join(f"{r}{' (HELD OUT)' if h else ''}" for r, h in zip(rows, held_rows))
          + ". Columns: front, side, back, overhead view."),
  }


def export(state: TrainState, progs: Programs, options: Options, workdir: str, meta: dict) -> dict:
  """Writes DIR/export/ (shapes_prior.save_prior + samples.png) from the EMA weights; returns the card."""
  directory = os.path.join(workdir, "export")
  key = rng_key(options.seed + 12345)  # Fixed: the same validation data at every export.
  models, f32 = progs.models, progs.eval_models
  ema = progs.layout.unravel(np.asarray(jax.device_get(state.ema_params), np.float32))
  shipped = shapes_prior.cast_params(shapes_prior.cast_params(ema, np.float16), np.float32)
  logging.info("Export: rendering %d validation examples per set.", options.val_examples)
  # The cameras of the last run that trained (not this process's flags: --export_only takes none): the
  # validation renders use them, and config.json records them for the DreamFusion runs it guides.
  cams = last_cameras(meta)
  val = collect_validation(jax.random.fold_in(key, 0), options, cams, last_textureless_caption(meta))
  losses, losses_f32 = validation_losses([shipped, ema], f32, val, jax.random.fold_in(key, 1))
  counts = dict(zip(("unet", "text"), progs.layout.counts()))
  card = make_card(meta, options, models.cfg, losses, losses_f32, counts)
  cfg = dict(models.cfg, camera=camera_record(cams))
  shapes_prior.save_prior(directory, shipped, cfg, card)
  logging.info("Export: sampling the preview grid.")
  images = preview_samples(jax.random.fold_in(key, 2), shipped, f32, options)
  shapes_prior.write_png(os.path.join(directory, "samples.png"),
                        shapes_prior.image_grid(images, len(text_lib.VIEW_SUFFIXES)))
  logging.info("Exported the prior to %s (held-out loss %.4f, training-pair loss %.4f).", directory,
               losses["held_out"], losses["train"])
  return card


# ----------------------------------------------------------------------------- the run


def _append_jsonl(path: str, record: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def _check_finite(host: dict, step: int, last_saved) -> None:
  if not all(math.isfinite(host[k]) for k in ("loss", "grad_norm")):
    saved = (f"the checkpoint of step {last_saved} is intact and a new run resumes from it"
             if last_saved is not None else "no checkpoint was written")
    raise DivergenceError(f"The training loss or its gradient became NaN or infinite by step {step} "
                          f"(loss {host['loss']}, gradient norm {host['grad_norm']}); the run stopped and {saved}. "
                          "Lower --lr or --grad_clip, then run again.")


def _open(options: Options, workdir: str, ckpts: Checkpoints):
  """(latest checkpoint step or None, run metadata, model config) of workdir; checks a resume is compatible."""
  latest = ckpts.latest_step()
  if latest is None:
    if options.export_only:
      raise WorkdirError(f"--export_only: '{workdir}' holds no checkpoint to export.")
    cfg = model_config(options)
    return None, {"options": dataclasses.asdict(options), "model_config": cfg, "chunks": [], "renders": 0}, cfg
  meta = ckpts.meta(latest)
  for name in _FIXED_ON_RESUME:
    if meta["options"][name] != getattr(options, name):
      raise WorkdirError(f"'{workdir}' holds a run with --{name}={meta['options'][name]!r}, not "
                         f"{getattr(options, name)!r}. Use that value to resume it, or a new --workdir.")
  # The saved model config, not today's defaults: a resume trains the model it started.
  return latest, meta, meta["model_config"]


class _Run:
  """The mutable bookkeeping of one process's training: state, step, checkpoints, metrics."""

  def __init__(self, state: TrainState, ckpts: Checkpoints, meta: dict, options: Options, workdir: str,
               started: float, latest):
    self.state, self.ckpts, self.meta, self.options = state, ckpts, meta, options
    self.step = int(jax.device_get(state.step))
    self.started, self.last_saved = started, latest
    self.chunk = {"device": jax.devices()[0].device_kind, "start_step": self.step, "end_step": self.step,
                  "wall_s": 0.0, "camera": camera_record(camera_config(options)),
                  "textureless_caption": options.textureless_caption}
    meta["chunks"].append(self.chunk)
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")

  def save(self) -> None:
    state = self.state
    self.chunk["end_step"], self.chunk["wall_s"] = self.step, time.time() - self.started
    self.meta["step"] = self.step
    self.meta["loss_ema"] = float(jax.device_get(state.loss_ema) / max(float(jax.device_get(state.loss_ema_weight)),
                                                                         1e-12))
    self.ckpts.save(state, self.meta)
    self.last_saved = self.step

  def log(self, metrics: dict, rate: float) -> dict:
    """Fetches the step's metrics (waiting for the device), stops on NaN, appends to metrics.jsonl."""
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    _check_finite(host, self.step, self.last_saved)
    _append_jsonl(self.metrics_path, {"step": self.step, **host, "steps_per_sec": rate,
                                      "images_per_sec": rate * self.options.batch,
                                      "wall_s": time.time() - self.started})
    return host


def _train_steps(run: _Run, progs: Programs, options: Options, deadline: float) -> bool:
  """Steps until options.steps or the deadline (checked at log steps); returns True if the deadline stopped it."""
  from tqdm import tqdm

  base_key = jax.random.wrap_key_data(jax.device_get(run.state.key), impl="rbg")  # A copy: state is donated.
  cams = camera_config(options)
  pool = fill_pool(data_key(base_key, _POOL, run.step), options)
  run.meta["renders"] += options.pool_size
  bar = tqdm(total=options.steps, initial=run.step, unit="step", dynamic_ncols=True, disable=not options.progress_bar,
             mininterval=1.0 if sys.stderr.isatty() else 30.0)
  tick, tick_step, saved_at = time.time(), run.step, time.time()
  try:
    while run.step < options.steps:
      fresh = render(data_key(base_key, _FRESH, run.step), options.fresh_per_step, options.image_size, True, cams)
      run.state, pool, metrics = progs.step(run.state, pool, fresh)
      run.step += 1
      run.meta["renders"] += options.fresh_per_step
      bar.update(1)
      if run.step % options.log_every and run.step < options.steps:
        continue
      now = time.time()
      host = run.log(metrics, (run.step - tick_step) / max(now - tick, 1e-9))
      tick, tick_step = now, run.step
      bar.set_postfix(loss=f"{host['loss_ema']:.4f}", refresh=False)
      if now >= deadline and run.step < options.steps:
        return True
      if now - saved_at >= 60 * options.checkpoint_every_min:
        run.save()
        saved_at = time.time()
  finally:
    bar.close()
  return False


def train(options: Options, workdir: str) -> dict:
  """Trains (or resumes) in workdir until options.steps or the time limit; exports at the end.

  Returns {'step': steps done, 'exported': bool, 'stopped_by_time': bool, 'card': dict or None}.
  """
  started = time.time()
  check_options(options)
  os.makedirs(workdir, exist_ok=True)
  ckpts = Checkpoints(workdir)
  try:
    latest, meta, cfg = _open(options, workdir, ckpts)
    dtype = compute_dtype(options)
    meta["compute_dtype"] = dtype.name
    progs = programs(cfg, options, dtype)
    if latest is None:
      # Committed like the step's outputs (and a restored state), so the step compiles once.
      state = jax.device_put(progs.init(options.seed), jax.devices()[0])
    else:
      state = ckpts.restore(latest, jax.eval_shape(progs.init, options.seed))
    run = _Run(state, ckpts, meta, options, workdir, started, latest)
    logging.info("%s at step %d on %s (%s compute); %d UNet + %d text parameters.",
                 "Resuming" if latest is not None else "Starting", run.step, run.chunk["device"], dtype.name,
                 *progs.layout.counts())
    stopped_by_time = False
    if not options.export_only and run.step < options.steps:
      deadline = started + 60 * options.time_limit_min if options.time_limit_min > 0 else math.inf
      stopped_by_time = _train_steps(run, progs, options, deadline)
      run.save()
      if stopped_by_time:
        logging.info("Time limit of %.1f min reached at step %d of %d; checkpointed. Run again to resume.",
                     options.time_limit_min, run.step, options.steps)
    else:
      meta["chunks"].pop()  # Nothing trained in this process: no run to record.
  finally:
    ckpts.close()
  card = None
  if options.export_only or run.step >= options.steps or (stopped_by_time and options.export_on_stop):
    meta["step"] = run.step
    card = export(run.state, progs, options, workdir, meta)
  return {"step": run.step, "exported": card is not None, "stopped_by_time": stopped_by_time, "card": card}


# ----------------------------------------------------------------------------- command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """--workdir and one flag per Options field. Called by the command line only (other modules' CLIs
  define --workdir too); tests pass their own FlagValues."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and export/; a run there resumes.",
                      flag_values=flag_values)
  for field in dataclasses.fields(Options):
    name, default, help_text = field.name, field.default, _FLAG_HELP[field.name]
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(
        type(default), flags.DEFINE_string)
    define(name, default, help_text, flag_values=flag_values)


def run_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
  """`train` with parsed flags; raises UserError as `train` does."""
  if not flag_values.workdir:
    raise UserError("--workdir is required: the directory for checkpoints, metrics and the export.")
  options = Options(**{f.name: flag_values[f.name].value for f in dataclasses.fields(Options)})
  return train(options, flag_values.workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    run_from_flags()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  logs.quiet_orbax()
  app.run(main)
