"""Trains the Shapes prior (dreamfusion_jax.guidance.shapes_prior) on renders of the Shapes world made on the fly.

  python -m dreamfusion_jax.shapes.train_prior --config=configs/shapes_prior.py --workdir=/tmp/prior \
      --config.time_limit_min=7 --config.export_on_stop=true

The UNet and the text encoder learn epsilon prediction from scratch (prior_step) on 64x64 renders
(prior_data: `world.sample_batch`, held-out colour x shape pairs excluded, in an on-device pool)
captioned 'a {colour} {shape}, {view} view' (a textureless render, a white object, says 'white':
--config.textureless_caption). This module is the run: the config checks, then the loop in phases
(set up; run steps with periodic actions: log, checkpoint, stop at the time limit; export) and the
command line. The model card and export are prior_card's.

Cameras. --config.distance_range, focal_range, look_at_std and position_jitter set the world's
cameras (DreamFusion's by default). They may change on resume, which fine-tunes the prior on the
new ones (the shipped prior: 23,000 steps on DreamFusion's, then one zoom); the model card lists
each run's cameras and the export's config.json records the last run's, which a DreamFusion run
should sample too (`guidance` warns when it does not). textureless_caption may change on resume too.

Runs in chunks. A run saves an orbax checkpoint (dreamfusion_jax.checkpointing: items 'state' and
'config', the JSON record of the runs: their configs, chunks, renders, loss) under DIR/checkpoints
every checkpoint_every_min minutes, when time_limit_min is reached, and at the end; started again
with the same --workdir it resumes. When steps is reached (or with export_only) it writes
DIR/export/: the prior (params.msgpack in float16, config.json, MODEL_CARD.md) and samples.png.
The checkpoint keeps the Adam moments in bfloat16 (relative rounding 2^-8) so that it stays small
enough to be carried between machines; everything else resumes exactly. Only the latest checkpoint
is kept, so `tar -C DIR -cf - checkpoints metrics.jsonl` (~45 MB for the default model) is all a
later machine needs: unpack it into an empty DIR and run the same command again.

Compiled programs are cached per process (`prior_step.programs`), so tests and notebooks that
train twice compile once.
"""

import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from dreamfusion_jax import checks, files
from dreamfusion_jax import metrics as metrics_lib
from dreamfusion_jax.checkpointing import Checkpoints
from dreamfusion_jax.errors import UserError, WorkdirError
from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import prior_card, prior_config, prior_data, prior_step, trainer

TRAIN_CONFIG = "configs/shapes_prior.py"  # The config file that lists every field (named in error messages).
FIXED_ON_RESUME = ("model", "image_size")  # Config fields that define what is trained: a resumed run keeps them.
KEEP_CHECKPOINTS = 1  # Only the latest: the checkpoint travels between machines (see the module docstring).
DIVERGENCE_ADVICE = "Lower --config.lr or --config.grad_clip, then run again."  # metrics.check_finite's advice.


# ----------------------------------------------------------------------------- config checks


def compute_dtype(config: ml_collections.ConfigDict):
  """The UNet's compute dtype of config.compute_dtype ('auto': bfloat16 on GPU/TPU, float32 on CPU)."""
  name = config.compute_dtype
  if name == "auto":
    name = "bfloat16" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "float32"
  if name not in ("float32", "bfloat16"):
    raise UserError(f"--config.compute_dtype={config.compute_dtype!r} is not one of auto, float32, bfloat16.")
  return jnp.dtype(name)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field, before anything is compiled or written."""
  for name in ("steps", "batch", "pool_size", "fresh_per_step", "log_every", "val_examples", "sample_steps"):
    if config[name] <= 0:
      raise UserError(f"--config.{name}={config[name]} must be positive.")
  if config.pool_size % config.fresh_per_step:
    raise UserError(
      f"--config.pool_size={config.pool_size} must be a multiple of --config.fresh_per_step={config.fresh_per_step}."
    )
  if not 0.0 <= config.caption_dropout < 1.0:
    raise UserError(f"--config.caption_dropout={config.caption_dropout} must be in [0, 1).")
  if config.textureless_caption not in prior_data.TEXTURELESS_CAPTIONS:
    raise UserError(
      f"--config.textureless_caption={config.textureless_caption!r} is not one of "
      f"{', '.join(prior_data.TEXTURELESS_CAPTIONS)}."
    )
  if config.snr_gamma < 0:
    raise UserError(f"--config.snr_gamma={config.snr_gamma} must be >= 0 (0 turns the weighting off).")
  if not 0.0 <= config.ema_decay < 1.0:
    raise UserError(f"--config.ema_decay={config.ema_decay} must be in [0, 1).")
  if config.lr <= 0 or config.time_limit_min < 0 or config.checkpoint_every_min <= 0:
    raise UserError("--config.lr and --config.checkpoint_every_min must be positive and --config.time_limit_min >= 0.")
  compute_dtype(config)
  wrong = cameras.problem(prior_data.camera_config(config))
  if wrong:
    raise UserError(f"--config.{wrong}.")
  try:
    shapes_prior.check_config(prior_config.model_config(config.model, config.image_size))
  except ValueError as e:
    raise UserError(f"--config.image_size={config.image_size}: {e}") from None


# ----------------------------------------------------------------------------- checkpoints


def _to_saved(state: prior_step.TrainState) -> prior_step.TrainState:
  """The checkpointed form: Adam moments in bfloat16 (see the module docstring)."""
  cast = lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return state.replace(opt_state=jax.tree.map(cast, state.opt_state))


def restore_state(ckpts: Checkpoints, step: int, template: prior_step.TrainState) -> prior_step.TrainState:
  """The state at `step`, Adam moments back in float32; template: jax.eval_shape of Programs.init."""
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), jax.eval_shape(_to_saved, template)
  )
  saved = ckpts.restore(step, abstract)
  return saved.replace(
    opt_state=jax.tree.map(lambda x, t: jnp.asarray(x, t.dtype), saved.opt_state, template.opt_state)
  )


def _saved_record(ckpts: Checkpoints, step: int) -> dict:
  """The runs' record in the checkpoint at `step` (its 'config' item). Checkpoints of the trainer before the
  shared skeleton (2026-12-06) kept it as item 'meta', with the command-line options under 'options': read
  as such, they resume and are saved in the new form."""
  old = os.path.join(ckpts.directory, str(step), "meta", "metadata")
  if os.path.isfile(old) and not os.path.exists(os.path.join(ckpts.directory, str(step), "config")):
    with open(old) as f:
      meta = json.load(f)
    meta["config"] = meta.pop("options")
    return meta
  return ckpts.saved_config(step)


def _open(config: ml_collections.ConfigDict, workdir: str, ckpts: Checkpoints):
  """(latest checkpoint step or None, the runs' record, model config) of workdir; checks a resume is compatible."""
  latest = ckpts.latest_step()
  if latest is None:
    if config.export_only:
      raise WorkdirError(f"--config.export_only: '{workdir}' holds no checkpoint to export.")
    cfg = prior_config.model_config(config.model, config.image_size)
    return None, {"model_config": cfg, "chunks": [], "renders": 0}, cfg
  meta = _saved_record(ckpts, latest)
  for name in FIXED_ON_RESUME:
    if meta["config"][name] != config[name]:
      raise WorkdirError(
        f"'{workdir}' holds a run with --config.{name}={meta['config'][name]!r}, not "
        f"{config[name]!r}. Use that value to resume it, or a new --workdir."
      )
  # The saved model config, not today's defaults: a resume trains the model it started.
  return latest, meta, meta["model_config"]


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Run:
  """One train()'s bookkeeping: what the set-up made, and what the periodic actions update."""

  config: ml_collections.ConfigDict
  workdir: str
  ckpts: Checkpoints
  progs: prior_step.Programs
  state: prior_step.TrainState
  step: int
  meta: dict  # The runs' record, saved as the checkpoint's 'config' item (model config, chunks, renders, loss).
  chunk: Optional[dict]  # This process's entry of meta['chunks']; None when it trains nothing (an export only).
  started: float  # time.time() when train() began: the time limit and the chunk's wall time count from it.
  last_saved: Optional[int]  # The step of the last checkpoint written.
  writer: Optional[metrics_lib.MetricsWriter] = None  # metrics.jsonl and tensorboard, while steps run.
  bar: Any = None  # The progress bar, while steps run.
  tick: tuple = (0.0, 0)  # (time, step) of the last metrics record, for steps_per_sec.
  saved_at: float = 0.0  # time.time() of the last checkpoint of this process.


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) in workdir until config.steps or the time limit; exports at the end.

  config: configs/shapes_prior.py's fields. Three phases: set up (checks everything a user can get wrong
  before compiling anything or writing into workdir, then the programs and the initial or restored
  state), run the steps with their periodic actions (metrics, checkpoints, the time limit), and export.
  Returns {'step': steps done, 'exported': bool, 'stopped_by_time': bool, 'card': dict or None}.
  """
  run = set_up(config, workdir, started=time.time())
  stopped_by_time = False
  try:
    if run.chunk is not None:
      stopped_by_time = run_steps(run)
      save_checkpoint(run)
      if stopped_by_time:
        logging.info(
          "Time limit of %.1f min reached at step %d of %d; checkpointed. Run again to resume.",
          config.time_limit_min,
          run.step,
          config.steps,
        )
  finally:
    run.ckpts.wait()
    run.ckpts.close()
  card = None
  if config.export_only or run.step >= config.steps or (stopped_by_time and config.export_on_stop):
    card = export_run(run)
  return {"step": run.step, "exported": card is not None, "stopped_by_time": stopped_by_time, "card": card}


def set_up(config: ml_collections.ConfigDict, workdir: str, started: float) -> Run:
  """The set-up phase: checks, the compiled programs, and the initial or restored state of the run in workdir."""
  check_config(config)
  checks.check_workdir_writable(workdir)
  ckpts = Checkpoints(workdir, KEEP_CHECKPOINTS)
  try:
    latest, meta, cfg = _open(config, workdir, ckpts)
    dtype = compute_dtype(config)
    meta["compute_dtype"] = dtype.name
    progs = prior_step.programs(cfg, config, dtype)
    if latest is None:
      # Committed like the step's outputs (and a restored state), so the step compiles once.
      state = jax.device_put(progs.init(config.seed), jax.devices()[0])
    else:
      state = restore_state(ckpts, latest, jax.eval_shape(progs.init, config.seed))
  except BaseException:
    ckpts.close()
    raise
  meta["config"] = checks.config_to_dict(config)  # The last run's config (each run's cameras: meta['chunks']).
  files.write_json(os.path.join(workdir, "config.json"), meta["config"])
  step = int(jax.device_get(state.step))
  chunk = None
  if not config.export_only and step < config.steps:
    chunk = {
      "device": jax.devices()[0].device_kind,
      "start_step": step,
      "end_step": step,
      "wall_s": 0.0,
      "camera": prior_data.camera_record(prior_data.camera_config(config)),
      "textureless_caption": config.textureless_caption,
    }
    meta["chunks"].append(chunk)
  logging.info(
    "%s at step %d on %s (%s compute); %d UNet + %d text parameters.",
    "Resuming" if latest is not None else "Starting",
    step,
    jax.devices()[0].device_kind,
    dtype.name,
    *progs.layout.counts(),
  )
  return Run(config, workdir, ckpts, progs, state, step, meta, chunk, started, last_saved=latest)


def run_steps(run: Run) -> bool:
  """The steps phase: train up to config.steps; at log steps record the metrics, stop at the time limit and
  checkpoint every checkpoint_every_min minutes. Returns True if the time limit stopped it."""
  from tqdm import tqdm

  config = run.config
  base_key = jax.random.wrap_key_data(jax.device_get(run.state.key), impl="rbg")  # A copy: state is donated.
  cams = prior_data.camera_config(config)
  pool = prior_data.fill_pool(prior_data.data_key(base_key, prior_data.POOL, run.step), config)
  run.meta["renders"] += config.pool_size
  run.bar = tqdm(
    total=config.steps,
    initial=run.step,
    unit="step",
    dynamic_ncols=True,
    disable=not config.progress_bar,
    mininterval=1.0 if sys.stderr.isatty() else 30.0,
  )
  run.writer = metrics_lib.MetricsWriter(run.workdir)
  run.tick, run.saved_at = (time.time(), run.step), time.time()
  deadline = trainer.deadline(run.started, config.time_limit_min)
  try:
    while run.step < config.steps:
      fresh = prior_data.render(
        prior_data.data_key(base_key, prior_data.FRESH, run.step), config.fresh_per_step, config.image_size, True, cams
      )
      run.state, pool, metrics = run.progs.step(run.state, pool, fresh)
      run.step += 1
      run.meta["renders"] += config.fresh_per_step
      run.bar.update(1)
      if run.step % config.log_every and run.step < config.steps:
        continue
      record_metrics(run, metrics)
      if run.tick[0] >= deadline and run.step < config.steps:
        return True
      if run.tick[0] - run.saved_at >= 60 * config.checkpoint_every_min:
        save_checkpoint(run)
  finally:
    run.bar.close()
    run.writer.close()
  return False


def record_metrics(run: Run, metrics: dict) -> None:
  """Fetches the step's metrics (waiting for the device), stops on NaN, writes a record."""
  now = time.time()
  rate = (run.step - run.tick[1]) / max(now - run.tick[0], 1e-9)
  run.tick = (now, run.step)
  host = trainer.record(
    run.writer,
    metrics,
    run.step,
    run.last_saved,
    DIVERGENCE_ADVICE,
    {"steps_per_sec": rate, "images_per_sec": rate * run.config.batch, "wall_s": now - run.started},
  )
  run.bar.set_postfix(loss=f"{host['loss_ema']:.4f}", refresh=False)


def save_checkpoint(run: Run) -> None:
  """Saves the state (Adam moments in bfloat16) and the runs' record, with this run's chunk brought up to date."""
  run.chunk["end_step"], run.chunk["wall_s"] = run.step, time.time() - run.started
  run.meta["step"] = run.step
  weight = max(float(jax.device_get(run.state.loss_ema_weight)), 1e-12)
  run.meta["loss_ema"] = float(jax.device_get(run.state.loss_ema) / weight)
  run.ckpts.save(run.step, _to_saved(run.state), run.meta)
  run.last_saved, run.saved_at = run.step, time.time()


def export_run(run: Run) -> dict:
  """The export phase: DIR/export/ (prior_card.export) from the state's EMA weights; returns the model card."""
  run.meta["step"] = run.step
  return prior_card.export(run.state, run.progs, run.config, run.workdir, run.meta)


if __name__ == "__main__":
  trainer.run(train, TRAIN_CONFIG)
