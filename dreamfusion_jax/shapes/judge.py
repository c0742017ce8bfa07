"""The Shapes judge: a small CNN that names the shape and the colour of a 64x64 render of the world.

It stands in for CLIP in the paper's R-Precision (dreamfusion_jax.evaluate): a caption is
'a {colour} {shape}', and its score is log p(colour | image) + log p(shape | image)
(`caption_logprobs`), so every colour x shape caption, held-out pairs included, is known.

Training data comes from `world.sample_batch` on the fly, inside the jitted step: every
(shape, colour) pair (HELD_OUT too: the judge must know every caption even though the prior
never saw some), DreamFusion's random training cameras, random solid backgrounds, and a mix of
albedo-only, shaded and textureless renders. A textureless render shows no colour, so the
colour head's loss is masked out for it. Light pixel noise makes the judge less brittle on
the imperfect renders of optimised NeRFs.

The benchmark asks the colour head about albedo-only renders. Trained on shaded renders too (the
judge shipped before 2026-11-29 14:00: a shaded white object spans 0.1-0.95 grey), it called a flat
0.55 grey object 'white'. `--config.colour_from_shaded=false` trains the colour head on albedo-only
renders only, and `--config.colour_jitter=R` draws each albedo within R of its named colour. With both
alone (0.15) a judge names every albedo near a colour right but calls every colour at half brightness
'gray'. `--config.shade_min=0.5` also darkens each chromatic albedo by U(0.5, 1), so that a half-bright
blue keeps its name (white and gray, shades of each other, are not darkened); with it the jitter must
stay under 0.078 (`max_colour_jitter`). The shipped judge is trained with all three and relief
(`--config.colour_jitter=0.07 --config.shade_min=0.5 --config.colour_from_shaded=false
--config.bump_max=0.05`; benchmarks/judge_colour_calibration.py probes a judge both ways; BENCHMARKS.md).

Train (resumes from DIR/checkpoints; each call stops after --config.time_limit_min and exports):

  python -m dreamfusion_jax.shapes.judge --config=configs/judge.py --workdir=/tmp/judge \
      --config.time_limit_min=8

The run has the package's one training skeleton (as train_prior's): a config file, dreamfusion_jax.checkpointing's
checkpoints, metrics.check_finite and metrics.MetricsWriter (DIR/metrics.jsonl, DIR/tensorboard), and
the loop in phases (set up; run steps with periodic actions: log, checkpoint, stop at the time limit;
export). Weights are exported to DIR/export (params.msgpack + config.json, ~2 MB) after every call;
`load_classifier(DIR/export)` reads them back. Copy the export to dreamfusion_jax/assets/classifier/
to make it the default judge of `python -m dreamfusion_jax.evaluate`.
"""

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from dreamfusion_jax import checks, files
from dreamfusion_jax import metrics as metrics_lib
from dreamfusion_jax.checkpointing import Checkpoints
from dreamfusion_jax.errors import UserError, WorkdirError
from dreamfusion_jax.nerf import render
from dreamfusion_jax.shapes import trainer, world

# Probabilities of (albedo only, shaded, textureless) training renders: the evaluation judges
# albedo-only and textureless renders, shaded ones add robustness to lighting.
SHADING_MIX = (0.4, 0.2, 0.4)
PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"


class ShapesClassifier(nn.Module):
  """images [B, H, W, 3] in [0, 1] -> dict(shape=[B, len(SHAPES)], colour=[B, len(COLOURS)]) logits.

  Stages of two 3x3 convolutions (the second with stride 2), GroupNorm and GELU, then a global
  average pool and an MLP with two linear heads. Any H, W works (the pool is global).
  """

  channels: tuple[int, ...] = (32, 64, 96, 128)  # Conv widths per stage; each stage halves H and W.
  hidden: int = 128  # Width of the MLP after the pool.
  num_shapes: int = len(world.SHAPES)  # Classes of the shape head (world.SHAPES order).
  num_colours: int = len(world.COLOUR_NAMES)  # Classes of the colour head (world.COLOUR_NAMES order).

  @nn.compact
  def __call__(self, images: jax.Array) -> dict:
    x = images.astype(jnp.float32) * 2.0 - 1.0
    for i, c in enumerate(self.channels):
      for j, stride in enumerate((1, 2)):
        x = nn.Conv(c, (3, 3), strides=stride, name=f"conv_{i}_{j}")(x)
        x = nn.GroupNorm(num_groups=math.gcd(8, c), name=f"norm_{i}_{j}")(x)
        x = nn.gelu(x)
    h = nn.gelu(nn.Dense(self.hidden, name="hidden")(jnp.mean(x, axis=(1, 2))))
    return dict(
      shape=nn.Dense(self.num_shapes, name="shape_head")(h), colour=nn.Dense(self.num_colours, name="colour_head")(h)
    )


def caption_logprobs(logits_shape: jax.Array, logits_colour: jax.Array) -> jax.Array:
  """Log-probability of every caption 'a {colour} {shape}': [..., num_colours, num_shapes].

  logits_shape: [..., num_shapes]; logits_colour: [..., num_colours]. The heads are read as
  independent: log p(colour, shape) = log softmax(colour)[c] + log softmax(shape)[s].
  """
  log_c = jax.nn.log_softmax(jnp.asarray(logits_colour, jnp.float32), axis=-1)
  log_s = jax.nn.log_softmax(jnp.asarray(logits_shape, jnp.float32), axis=-1)
  return log_c[..., :, None] + log_s[..., None, :]


def top_caption(logits_shape, logits_colour) -> tuple[np.ndarray, np.ndarray]:
  """(colour index [...], shape index [...]) of the argmax caption over all colour x shape pairs."""
  lp = np.asarray(caption_logprobs(logits_shape, logits_colour))
  flat = lp.reshape(lp.shape[:-2] + (-1,)).argmax(-1)
  return flat // lp.shape[-1], flat % lp.shape[-1]


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The fields of a training config (configs/judge.py) that the model, the data and the compiled step
  depend on (hashable: compiled steps are cached on it); saved with the export."""

  steps: int  # Optimisation steps in total (the learning-rate schedule's length).
  batch: int  # Renders per step.
  lr: float  # Peak AdamW learning rate (warm-up then cosine decay).
  weight_decay: float  # AdamW weight decay.
  image_size: int  # Render height = width in pixels.
  noise_max: float  # Each image gets pixel noise of std U(0, noise_max).
  channels: tuple[int, ...]  # ShapesClassifier.channels.
  hidden: int  # ShapesClassifier.hidden.
  seed: int  # Seed of the initial weights and of the data stream.
  num_coarse: int  # Coarse samples per ray of the training renders.
  num_fine: int  # Importance samples per ray.
  bump_max: float  # Surface relief of the training renders (world.bumpy amplitude U(0, bump_max)).
  colour_jitter: float  # Radius of the albedo offsets of the training renders (world.sample_batch).
  shade_min: float  # Chromatic albedos are scaled by U(shade_min, 1) (world.sample_batch).
  colour_from_shaded: bool  # Whether shaded renders train the colour head too.

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> "TrainConfig":
    """The fields of a training config (configs/judge.py)."""
    fields = {f.name: config[f.name] for f in dataclasses.fields(cls)}
    return cls(**dict(fields, channels=tuple(fields["channels"])))

  def model(self) -> ShapesClassifier:
    return ShapesClassifier(channels=tuple(self.channels), hidden=self.hidden)

  def render_config(self) -> render.RenderConfig:
    return render.RenderConfig(bound=world.RENDER_CONFIG.bound, num_coarse=self.num_coarse, num_fine=self.num_fine)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["channels"] = list(self.channels)
    return d


@flax.struct.dataclass
class ClassifierState:
  step: jnp.ndarray  # [] int32, steps taken.
  params: Any  # ShapesClassifier parameters.
  opt_state: Any  # optax state.


def colour_sets_distance(shade_min: float = 1.0) -> float:
  """The smallest distance between the albedos of two colour names: chromatic colours span their shades
  k * colour, k in [shade_min, 1] (segments towards black), white and gray are points. Brute force
  over 101 shades per colour. 0.354 (orange-yellow) at shade_min 1; 0.156 at 0.5 (orange-yellow)."""
  ks = np.linspace(shade_min, 1.0, 101)
  sets = [
    np.outer(ks if name not in world.ACHROMATIC else np.ones(1), rgb)
    for name, rgb in zip(world.COLOUR_NAMES, world.COLOUR_TABLE)
  ]
  return float(
    min(np.linalg.norm(a[:, None] - b[None], axis=-1).min() for i, a in enumerate(sets) for b in sets[i + 1 :])
  )


def max_colour_jitter(shade_min: float = 1.0) -> float:
  """Half the smallest distance between two colour names' albedos (colour_sets_distance): the largest
  albedo jitter that keeps every training albedo nearer its own name's albedos than any other's."""
  return colour_sets_distance(shade_min) / 2.0


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  warmup = max(1, min(200, cfg.steps // 10))
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1), cfg.lr * 0.02)
  return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def rng_key(seed: int) -> jax.Array:
  """A typed 'rbg' PRNG key. The judge's randomness needs no cross-backend reproducibility, and
  XLA:CPU compiles threefry bit generation slowly (seconds per array shape)."""
  return jax.random.key(seed, impl="rbg")


@functools.partial(jax.jit, static_argnums=0)
def init_state(cfg: TrainConfig) -> ClassifierState:
  """Initial weights (seeded by cfg.seed) and optimiser state; jitted (eager init is slow on CPU)."""
  size = cfg.image_size
  params = cfg.model().init(rng_key(cfg.seed), jnp.zeros((1, size, size, 3)))["params"]
  return ClassifierState(step=jnp.zeros((), jnp.int32), params=params, opt_state=make_optimizer(cfg).init(params))


@functools.partial(
  jax.jit, static_argnames=("batch", "image_size", "noise_max", "render_cfg", "bump_max", "colour_jitter", "shade_min")
)
def make_batch(
  key: jax.Array,
  *,
  batch: int,
  image_size: int,
  noise_max: float,
  render_cfg: render.RenderConfig = world.RENDER_CONFIG,
  bump_max: float = 0.0,
  colour_jitter: float = 0.0,
  shade_min: float = 1.0,
) -> dict:
  """A batch of training renders (every pair, held-out ones included) with pixel noise.

  Returns world.sample_batch's dict; images [B, S, S, 3] carry Gaussian noise of a per-image
  std U(0, noise_max) (clipped to [0, 1]).
  """
  k_data, k_std, k_noise = jax.random.split(key, 3)
  out = world.sample_batch(
    k_data,
    batch,
    image_size,
    exclude_held_out=False,
    shading_mix=SHADING_MIX,
    render_cfg=render_cfg,
    bump_max=bump_max,
    colour_jitter=colour_jitter,
    shade_min=shade_min,
  )
  std = jax.random.uniform(k_std, (batch, 1, 1, 1), maxval=noise_max)
  out["images"] = jnp.clip(out["images"] + std * jax.random.normal(k_noise, out["images"].shape), 0.0, 1.0)
  return out


def batch_for(key: jax.Array, cfg: TrainConfig) -> dict:
  return make_batch(
    key,
    batch=cfg.batch,
    image_size=cfg.image_size,
    noise_max=cfg.noise_max,
    render_cfg=cfg.render_config(),
    bump_max=cfg.bump_max,
    colour_jitter=cfg.colour_jitter,
    shade_min=cfg.shade_min,
  )


def losses(
  logits: dict, shape: jax.Array, colour: jax.Array, shading_mode: jax.Array, colour_from_shaded: bool = True
) -> dict:
  """Cross-entropies and accuracies; textureless renders (shading_mode 2) carry no colour label.

  logits: the model's dict; shape, colour, shading_mode: [B] int32. colour_from_shaded=False
  leaves shaded renders (shading_mode 1) out of the colour terms too. Returns scalars.
  """
  ce_shape = optax.softmax_cross_entropy_with_integer_labels(logits["shape"], shape)
  ce_colour = optax.softmax_cross_entropy_with_integer_labels(logits["colour"], colour)
  has_colour = ((shading_mode == 0) | ((shading_mode == 1) & colour_from_shaded)).astype(jnp.float32)
  n_colour = jnp.maximum(jnp.sum(has_colour), 1.0)
  shape_ok = jnp.argmax(logits["shape"], -1) == shape
  colour_ok = jnp.argmax(logits["colour"], -1) == colour
  return dict(
    loss=jnp.mean(ce_shape) + jnp.sum(ce_colour * has_colour) / n_colour,
    shape_ce=jnp.mean(ce_shape),
    colour_ce=jnp.sum(ce_colour * has_colour) / n_colour,
    shape_acc=jnp.mean(shape_ok),
    colour_acc=jnp.sum(colour_ok * has_colour) / n_colour,
    caption_acc=jnp.sum(shape_ok * colour_ok * has_colour) / n_colour,
  )


def train_step(state: ClassifierState, batch: dict, cfg: TrainConfig):
  """One AdamW step on a batch of `make_batch`. Pure; returns (state, metrics)."""
  model = cfg.model()

  def loss_fn(params):
    m = losses(
      model.apply({"params": params}, batch["images"]),
      batch["shape"],
      batch["colour"],
      batch["shading_mode"],
      cfg.colour_from_shaded,
    )
    return m["loss"], m

  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = make_optimizer(cfg).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return ClassifierState(step=state.step + 1, params=params, opt_state=opt_state), metrics


@functools.lru_cache(maxsize=8)
def make_step_fn(cfg: TrainConfig):
  return jax.jit(functools.partial(train_step, cfg=cfg), donate_argnums=(0,))


@functools.lru_cache(maxsize=8)
def make_eval_fn(cfg: TrainConfig):
  """(params, batch) -> the metrics of `losses`, jitted."""
  model = cfg.model()
  return jax.jit(
    lambda params, b: losses(
      model.apply({"params": params}, b["images"]), b["shape"], b["colour"], b["shading_mode"], cfg.colour_from_shaded
    )
  )


# ----------------------------------------------------------------------------- the run


TRAIN_CONFIG = "configs/judge.py"  # The config file that lists every field (named in error messages).
FIXED_ON_RESUME = ("image_size", "channels", "hidden", "seed")  # What a resumed run must keep (the model).
KEEP_CHECKPOINTS = 2  # Checkpoints kept in DIR/checkpoints.
DIVERGENCE_ADVICE = "Lower --config.lr, then run again."  # metrics.check_finite's advice.


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field, before anything is compiled or written."""
  if not 0.0 < config.shade_min <= 1.0:
    raise UserError(
      f"--config.shade_min={config.shade_min} is outside (0, 1]: it is the darkest shade of a "
      "chromatic colour that keeps its name, as a fraction of the colour (1: no darker shades; 0.5: "
      "half bright)."
    )
  limit = max_colour_jitter(config.shade_min)
  if not 0.0 <= config.colour_jitter < limit:
    raise UserError(
      f"--config.colour_jitter={config.colour_jitter} is outside [0, {limit:.3f}) for "
      f"--config.shade_min={config.shade_min}: at or beyond half the smallest distance between two "
      "colour names' albedos a jittered albedo can lie nearer another name than the one it is "
      "labelled with. Use a smaller radius (0.15 without shades, 0.07 with --config.shade_min=0.5)."
    )
  for name in ("steps", "batch", "log_every", "checkpoint_every", "num_eval_batches"):
    if config[name] <= 0:
      raise UserError(f"--config.{name}={config[name]} must be positive.")
  if config.time_limit_min < 0:
    raise UserError(f"--config.time_limit_min={config.time_limit_min} must be >= 0 (0: no limit).")


@dataclasses.dataclass
class Run:
  """One train_classifier's bookkeeping: what the set-up made, and what the periodic actions update."""

  config: ml_collections.ConfigDict
  cfg: TrainConfig  # The config's fields that the model, data and step depend on.
  workdir: str
  ckpts: Checkpoints
  state: ClassifierState
  step: int
  started: float  # time.time() when train_classifier began: the time limit counts from it.
  last_saved: Optional[int]  # The step of the last checkpoint written.
  writer: Optional[metrics_lib.MetricsWriter] = None  # metrics.jsonl and tensorboard, while steps run.
  tick: tuple = (0.0, 0)  # (time, step) of the last metrics record, for steps_per_sec.


def train_classifier(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the judge in workdir and exports it to workdir/export.

  config: configs/judge.py's fields. Three phases: set up (checks, then the initial or restored state),
  run the steps with their periodic actions (metrics, checkpoints, the time limit), and export. A call
  stops (checkpoints and exports) after config.time_limit_min minutes, so a long training runs as several
  calls of the same command. Model fields and the seed must match an existing checkpoint's (steps, batch,
  lr and the data may change). Returns dict(step, done, metrics of the fixed evaluation set, export directory).
  """
  run = set_up(config, workdir, started=time.time())
  try:
    run_steps(run)
  finally:
    run.ckpts.wait()
    run.ckpts.close()
  return export_run(run)


def set_up(config: ml_collections.ConfigDict, workdir: str, started: float) -> Run:
  """The set-up phase: checks, the initial state or the latest checkpoint's (of the same model), config.json."""
  check_config(config)
  cfg = TrainConfig.of(config)
  checks.check_workdir_writable(workdir)
  ckpts = Checkpoints(workdir, KEEP_CHECKPOINTS)
  try:
    latest = ckpts.latest_step()
    if latest is None:
      state = init_state(cfg)
    else:
      saved = ckpts.saved_config(latest)
      diffs = [
        f"{k}: checkpoint {saved[k]!r}, now {getattr(cfg, k)!r}"
        for k in FIXED_ON_RESUME
        if (tuple(saved[k]) if k == "channels" else saved[k]) != getattr(cfg, k)
      ]
      if diffs:
        raise WorkdirError(
          f"'{workdir}' holds a judge checkpoint of another model ({'; '.join(diffs)}). "
          "Use a new --workdir, or the checkpoint's settings."
        )
      state = ckpts.restore(latest, jax.eval_shape(lambda: init_state(cfg)))
      logging.info("Resumed the judge from step %d in %s.", latest, workdir)
  except BaseException:
    ckpts.close()
    raise
  files.write_json(os.path.join(workdir, "config.json"), checks.config_to_dict(config))
  return Run(config, cfg, workdir, ckpts, state, int(state.step), started, last_saved=latest)


def run_steps(run: Run) -> None:
  """The steps phase: train up to cfg.steps or the time limit; record the metrics every log_every steps
  and checkpoint every checkpoint_every steps and at the end."""
  config, cfg = run.config, run.cfg
  step_fn = make_step_fn(cfg)
  # The data stream is a function of (seed, step), so a resumed run sees the batches it would have seen.
  base_key = rng_key(cfg.seed)
  deadline = trainer.deadline(run.started, config.time_limit_min)
  run.writer = metrics_lib.MetricsWriter(run.workdir)
  run.tick = (time.time(), run.step)
  try:
    while run.step < cfg.steps:
      run.state, metrics = step_fn(run.state, batch_for(jax.random.fold_in(base_key, run.step), cfg))
      run.step += 1
      if run.step % config.log_every == 0 or run.step == cfg.steps:
        record_metrics(run, metrics)
      if run.step % config.checkpoint_every == 0:
        save_checkpoint(run)
      if time.time() >= deadline:
        logging.info(
          "Time limit reached at step %d of %d; run the same command again to continue.", run.step, cfg.steps
        )
        break
    if run.ckpts.latest_step() != run.step:
      save_checkpoint(run)
  finally:
    run.writer.close()


def record_metrics(run: Run, metrics: dict) -> None:
  """Fetches the step's metrics (waiting for the device), stops on NaN, writes a record and a log line."""
  now = time.time()
  rate = (run.step - run.tick[1]) / max(now - run.tick[0], 1e-9)
  run.tick = (now, run.step)
  m = trainer.record(
    run.writer, metrics, run.step, run.last_saved, DIVERGENCE_ADVICE, {"steps_per_sec": rate}, keys=("loss",)
  )
  logging.info(
    "step %d/%d: loss %.4f shape_acc %.3f colour_acc %.3f (%.1f steps/s)",
    run.step,
    run.cfg.steps,
    m["loss"],
    m["shape_acc"],
    m["colour_acc"],
    rate,
  )


def save_checkpoint(run: Run) -> None:
  """Saves the state (asynchronously) with the config as JSON (the resume check reads FIXED_ON_RESUME there)."""
  run.ckpts.save(run.step, run.state, checks.config_to_dict(run.config))
  run.last_saved = run.step


def export_run(run: Run) -> dict:
  """The export phase: scores a fixed evaluation set and writes DIR/export; returns train_classifier's dict."""
  cfg, step = run.cfg, run.step
  eval_fn = make_eval_fn(cfg)
  # A fixed evaluation set from keys no training step uses.
  held_keys = jax.random.split(rng_key(cfg.seed + 1_000_003), run.config.num_eval_batches)
  held = [jax.device_get(eval_fn(run.state.params, batch_for(k, cfg))) for k in held_keys]
  held = {k: float(np.mean([h[k] for h in held])) for k in held[0]}
  logging.info("Fixed evaluation set: %s", ", ".join(f"{k} {v:.4f}" for k, v in held.items()))
  export_dir = os.path.join(run.workdir, "export")
  export_classifier(export_dir, jax.device_get(run.state.params), cfg, step, held)
  logging.info("Judge at step %d (%s); exported to %s.", step, "done" if step >= cfg.steps else "not done", export_dir)
  return dict(step=step, done=step >= cfg.steps, metrics=held, export=export_dir)


def export_classifier(directory: str, params: Any, cfg: TrainConfig, step: int, metrics: dict) -> None:
  """Writes params.msgpack and config.json (model, vocabulary, training step and metrics)."""
  os.makedirs(directory, exist_ok=True)
  meta = dict(
    model=dict(channels=list(cfg.channels), hidden=cfg.hidden),
    image_size=cfg.image_size,
    shapes=list(world.SHAPES),
    colours=list(world.COLOUR_NAMES),
    step=int(step),
    train_config=cfg.to_dict(),
    eval_metrics=metrics,
  )
  files.write_bytes(os.path.join(directory, PARAMS_FILE), flax.serialization.to_bytes(params))
  files.write_json(os.path.join(directory, CONFIG_FILE), meta)


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass
class Classifier:
  """A loaded judge: `logits(images)` -> dict(shape [B, S], colour [B, C]) as numpy arrays."""

  model: ShapesClassifier  # The module.
  params: Any  # Its parameters.
  image_size: int  # The render size it was trained on (pixels).
  meta: dict  # The export's config.json.

  def __post_init__(self):
    self._apply = jax.jit(lambda p, x: self.model.apply({"params": p}, x))

  def logits(self, images) -> dict:
    """images [B, image_size, image_size, 3] in [0, 1]."""
    images = jnp.asarray(images, jnp.float32)
    if images.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(f"The judge takes {self.image_size}x{self.image_size} images, got {images.shape}.")
    return {k: np.asarray(v) for k, v in self._apply(self.params, images).items()}


def default_classifier_dir() -> str:
  """The package's judge: dreamfusion_jax/assets/classifier/."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "classifier")


def has_classifier(directory: str) -> bool:
  return all(os.path.isfile(os.path.join(directory, f)) for f in (PARAMS_FILE, CONFIG_FILE))


def load_classifier(directory: str) -> Classifier:
  """Loads an export (params.msgpack + config.json); raises UserError if missing or of another world."""
  if not has_classifier(directory):
    raise UserError(
      f"No judge weights in '{directory}' (expected {PARAMS_FILE} and {CONFIG_FILE}). Train one "
      "with python -m dreamfusion_jax.shapes.judge --config=configs/judge.py --workdir=DIR and pass "
      "--classifier_dir=DIR/export."
    )
  with open(os.path.join(directory, CONFIG_FILE)) as f:
    meta = json.load(f)
  if meta["shapes"] != list(world.SHAPES) or meta["colours"] != list(world.COLOUR_NAMES):
    raise UserError(
      f"The judge in '{directory}' was trained on another Shapes world (other shape or colour "
      "names); retrain it with python -m dreamfusion_jax.shapes.judge --config=configs/judge.py."
    )
  model = ShapesClassifier(channels=tuple(meta["model"]["channels"]), hidden=meta["model"]["hidden"])
  size = meta["image_size"]
  target = jax.eval_shape(lambda: model.init(rng_key(0), jnp.zeros((1, size, size, 3))))["params"]
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target)
  with open(os.path.join(directory, PARAMS_FILE), "rb") as f:
    params = flax.serialization.from_bytes(target, f.read())
  return Classifier(model=model, params=jax.tree.map(jnp.asarray, params), image_size=size, meta=meta)


if __name__ == "__main__":
  trainer.run(train_classifier, TRAIN_CONFIG)
