"""Checks of the config and the work directory, run before anything is compiled or written."""

import json
import os
import shutil
from typing import Optional

import ml_collections
import numpy as np
from absl import logging

from dreamfusion_jax import base_config, config_rules, sds
from dreamfusion_jax.errors import ConfigError, WorkdirError
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import world

# Fields a resumed run may change: how long it runs and what it logs or writes, never what it computes.
RESUMABLE_FIELDS = (
  "num_steps",
  "log_every",
  "checkpoint_every",
  "keep_checkpoints",
  "val_every",
  "progress_bar",
  "export",
  "gpu_triton_gemm",
  "gpu_deterministic",
  "render.view_chunk_samples",  # How the views are split up (their memory), not what they show.
)

# Fields a resumed run may change although they change what it computes from then on: the optimiser's step
# sizes and clipping and the guidance scale, what a diverged run's advice (train.DIVERGENCE_ADVICE) asks to
# lower. None of them changes the shapes of the train state. The change is logged (adjusted_fields).
ADJUSTABLE_FIELDS = (
  "optim.lr",
  "optim.net_lr",
  "optim.grad_clip",
  "optim.b1",
  "optim.b2",
  "optim.eps",
  "optim.warmup_steps",
  "optim.final_lr_fraction",
  "guidance.scale",
)


def flatten(d: dict, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}; tuples and lists become lists (JSON round-trips them so)."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = list(v) if isinstance(v, (tuple, list)) else v
  return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-able plain dict of the config (the form saved in the workdir and the checkpoint)."""
  return json.loads(config.to_json_best_effort())


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first invalid field, its value, what is allowed and the fix.

  Every field is checked against config_rules.RULES (type, range, finiteness), then the fields that must
  agree with each other, then the caption against the prior that will read it.
  """
  flat = flatten(config.to_dict())
  known = flatten(config_to_dict(base_config.get_config()))
  free_form = ("guidance.unet.", "guidance.text.")  # The random prior's model configs, free-form.
  sections = {k.rsplit(".", 1)[0] for k in known if "." in k}
  for key in flat:
    if key in sections or key in ("guidance.unet", "guidance.text"):
      raise ConfigError(
        f"config.{key}={_shown(flat[key])} replaces a section of fields; set the fields inside it, as "
        f"dreamfusion_jax/base_config.py lists them (e.g. --config.{key}.FIELD=VALUE)."
      )
    if key not in known and not key.startswith(free_form):
      raise ConfigError(
        f"The config field '{key}' is not known. Check its spelling against "
        "dreamfusion_jax/base_config.py, which lists every field with a comment."
      )
  random_prior = flat.get("guidance.model") == "random"
  missing = [k for k in known if k not in flat and (random_prior or not k.startswith(free_form))]
  if missing:
    raise ConfigError(
      f"The config lacks the field(s) {', '.join(missing[:5])}{' and more' if len(missing) > 5 else ''}. A config "
      "file starts from dreamfusion_jax/base_config.py's get_config() and overrides fields (see configs/default.py)."
    )
  model = flat["guidance.model"]
  if model not in config_rules.RULES["guidance.model"].choices:
    raise ConfigError(
      f"guidance.model={model!r} is not a known model; choose one of "
      f"{', '.join(config_rules.RULES['guidance.model'].choices)} (e.g. --config.guidance.model=shapes)."
    )
  comments = config_rules.field_comments()
  for key, rule in config_rules.RULES.items():
    if key.startswith(free_form) and model != "random":
      continue
    why = config_rules.problem(flat[key], rule)
    if why:
      reason = f" ({rule.why})" if rule.why else ""
      comment = f" ({comments[key].rstrip('.')})" if key in comments else ""
      raise ConfigError(
        f"config.{key}{comment} is {_shown(flat[key])}, which {why}: it must be {config_rules.expected(rule)}"
        f"{reason}. Fix it with e.g. --config.{key}={config_rules.example(key, rule, known[key])}."
      )
  _validate_relations(config)
  check_caption(config)


def _shown(value) -> str:
  return repr(tuple(value)) if isinstance(value, list) else repr(value)


def _validate_relations(config: ml_collections.ConfigDict) -> None:
  """The fields that must agree with each other (each one alone is in range)."""
  if not config.prompt.strip():
    raise ConfigError('The prompt is empty. Give a caption, e.g. --config.prompt="a red cube".')
  if config.seed + config.num_seeds - 1 > config_rules.INT32_MAX:
    raise ConfigError(
      f"seed={config.seed} with num_seeds={config.num_seeds} reaches seed {config.seed + config.num_seeds - 1}, "
      f"beyond int32 ({config_rules.INT32_MAX}); use a smaller --config.seed."
    )
  f = config.field
  if f.base_resolution > f.max_resolution:
    raise ConfigError(
      f"field.base_resolution={f.base_resolution} exceeds field.max_resolution={f.max_resolution}: the hash grid's "
      "levels run from the coarsest to the finest resolution. Raise max_resolution or lower base_resolution."
    )
  if f.num_levels * 2**f.log2_hashmap_size > config_rules.INT32_MAX:
    raise ConfigError(
      f"field.num_levels={f.num_levels} tables of 2^{f.log2_hashmap_size} rows have more rows than int32 indices "
      "reach (2^31); lower field.log2_hashmap_size or field.num_levels."
    )
  g = config.guidance
  if not g.t_min < g.t_max:
    raise ConfigError(
      f"guidance.t_min={g.t_min} and guidance.t_max={g.t_max} must satisfy 0 <= t_min < t_max <= 1 (the paper: "
      "0.02 and 0.98)."
    )
  if g.t_anneal_steps > 0 and not g.t_min < g.t_max_final <= g.t_max:
    raise ConfigError(
      f"guidance.t_max_final={g.t_max_final} must satisfy t_min < t_max_final <= t_max "
      f"({g.t_min} and {g.t_max}): t_max falls to it over guidance.t_anneal_steps steps."
    )
  lo, hi = sds.timestep_range(
    g.t_min, min(g.t_max, g.t_max_final) if g.t_anneal_steps else g.t_max, g.num_train_timesteps
  )
  if lo > hi:
    raise ConfigError(
      f"guidance.t_min={g.t_min} to t_max={g.t_max} holds no whole timestep of a schedule of "
      f"guidance.num_train_timesteps={g.num_train_timesteps}; widen the range or use more timesteps (1000)."
    )
  if g.preview_t >= 1.0:
    raise ConfigError(
      f"guidance.preview_t={g.preview_t} must be in [0, 1): the diffusion time of "
      "the validation's guidance preview as a fraction of the schedule (0 turns it off)."
    )
  if g.preview_sample_steps > g.num_train_timesteps:
    raise ConfigError(
      f"guidance.preview_sample_steps={g.preview_sample_steps} exceeds guidance.num_train_timesteps="
      f"{g.num_train_timesteps}: the preview's DDIM sample takes at most one step per timestep (20 is plenty)."
    )
  if g.model == "random":
    _validate_random_prior(config)
  if g.beta_start > g.beta_end:
    raise ConfigError(f"guidance.beta_start={g.beta_start} exceeds guidance.beta_end={g.beta_end}; betas rise.")
  if config.export.mesh_threshold <= 0 and config.field.density_activation != "volsdf":
    raise ConfigError(
      f"export.mesh_threshold={config.export.mesh_threshold} asks for the field's own surface, which only a signed "
      "distance field has (field.density_activation='volsdf'). Give this density field a level > 0 to mesh, e.g. "
      "--config.export.mesh_threshold=10."
    )
  if config.render.normal_step > 0 and config.field.density_activation != "volsdf":
    raise ConfigError(
      f"render.normal_step={config.render.normal_step} takes the training renders' normals from central differences "
      "of the field's signed distance, which only field.density_activation='volsdf' has. Use "
      "--config.render.normal_step=0 (exact normals) with this density field, or --config.field.density_activation=volsdf."
    )
  c2f = config.coarse_to_fine
  if c2f.steps > 0 and not 1 <= c2f.start_levels <= config.field.num_levels:
    raise ConfigError(
      f"coarse_to_fine.start_levels={c2f.start_levels} must be between 1 and field.num_levels="
      f"{config.field.num_levels}: the hash levels that are on from step 0, e.g. --config.coarse_to_fine.start_levels=2."
    )


def _validate_random_prior(config: ml_collections.ConfigDict) -> None:
  """guidance.unet and guidance.text of the random prior (model='random') must make one network."""
  u, t = config.guidance.unet, config.guidance.text
  levels = len(u.block_out_channels)
  if not len(u.down_block_types) == len(u.up_block_types) == levels:
    raise ConfigError(
      f"guidance.unet has {levels} block_out_channels, {len(u.down_block_types)} down_block_types and "
      f"{len(u.up_block_types)} up_block_types; give one of each per level."
    )
  bad = [c for c in u.block_out_channels if c % u.norm_num_groups or c % u.attention_head_dim]
  if bad:
    raise ConfigError(
      f"guidance.unet.block_out_channels={tuple(u.block_out_channels)} must be multiples of norm_num_groups="
      f"{u.norm_num_groups} and attention_head_dim={u.attention_head_dim} (GroupNorm groups and attention heads "
      "split the channels evenly)."
    )
  if u.cross_attention_dim != t.width or t.width % t.num_heads:
    raise ConfigError(
      f"guidance.unet.cross_attention_dim={u.cross_attention_dim} must equal guidance.text.width={t.width}, and "
      f"the width must be a multiple of guidance.text.num_heads={t.num_heads}."
    )
  factor = 2 ** (levels - 1)
  if config.render.image_size % factor:
    raise ConfigError(
      f"render.image_size={config.render.image_size} must be a multiple of {factor}: the random prior's UNet "
      f"halves the renders {levels - 1} time(s) and doubles them back. E.g. --config.render.image_size="
      f"{max(factor, config.render.image_size // factor * factor)}."
    )


def check_caption(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a caption the run's prior can't read (see the messages); warns where
  guidance.allow_unknown_words lets an experiment through."""
  prompt, model = config.prompt, config.guidance.model
  if model in ("random", "shapes") and not text_lib.WordTokenizer.words(prompt):
    raise ConfigError(
      f"The caption {prompt!r} holds no word of letters or digits, which is all the {model} prior's tokenizer "
      "reads: the run would train on the view suffix (', front view') alone. Write the caption in words, e.g. "
      '--config.prompt="a red cube".'
    )
  if model != "shapes":
    return
  try:
    world.parse_caption(prompt)
  except ValueError:
    message = (
      f"The caption {prompt!r} is not of the Shapes world, the only one the Shapes prior (guidance.model=shapes) "
      f"was trained on: it reads {world.grammar()}"
    )
    if not config.guidance.allow_unknown_words:
      raise ConfigError(
        f"{message}. Write such a caption, or pass --config.guidance.allow_unknown_words=true to train this one "
        "anyway (an experiment: the prior ignores the words it does not know)."
      ) from None
    logging.warning("%s; training it anyway, as guidance.allow_unknown_words=true asks.", message)


def prior_prompt(config: ml_collections.ConfigDict) -> str:
  """The caption the prior reads: for the Shapes prior a world caption in its canonical form ('An orange torus.'
  -> 'a orange torus', as the prior was trained), else the prompt as given."""
  if config.guidance.model == "shapes":
    try:
      return world.caption(*world.parse_caption(config.prompt))
    except ValueError:
      pass
  return config.prompt


def check_workdir_writable(workdir: str) -> None:
  """Creates workdir if needed and proves it is writable, without touching what is inside."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_probe_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(
      f"Cannot write to the work directory '{workdir}' ({e.strerror}). Pass a directory you "
      "can write to with --workdir=DIR."
    ) from None


def check_video_encoder(config: ml_collections.ConfigDict) -> None:
  """With exports on, proves the turntable video can be encoded (ffmpeg through imageio-ffmpeg).

  Checked before training, so that a missing encoder does not end a finished run with a traceback.
  """
  if not config.export.enabled:
    return
  try:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    problem = None if (shutil.which(exe) or os.path.isfile(exe)) else f"its ffmpeg '{exe}' does not exist"
  except ImportError:
    problem = "the package imageio-ffmpeg is not installed"
  except RuntimeError as e:  # imageio-ffmpeg without a bundled or system ffmpeg.
    problem = f"imageio-ffmpeg found no ffmpeg ({e})"
  if problem:
    raise ConfigError(
      f"The exports at the end of the run include a turntable video, which needs ffmpeg through "
      f"imageio-ffmpeg, but {problem}. Install it with `pip install imageio-ffmpeg` (its wheel "
      "bundles ffmpeg; or point IMAGEIO_FFMPEG_EXE at an ffmpeg binary), or run with "
      "--config.export.enabled=false to skip the exports (the checkpoints keep the result, and a "
      "later run in the same workdir with exports on writes them)."
    )


# The textured mesh export's packages: (module, pip package, what it does).
MESH_PACKAGES = (
  ("xatlas", "xatlas", "UV-unwraps the mesh"),
  ("fast_simplification", "fast-simplification", "decimates it to export.max_faces"),
)


def check_mesh_packages(config: ml_collections.ConfigDict) -> None:
  """With exports on, proves the textured mesh export's packages import (checked before training, like ffmpeg)."""
  if not config.export.enabled:
    return
  for module, package, role in MESH_PACKAGES:
    try:
      __import__(module)
    except ImportError as e:
      raise ConfigError(
        f"The exports at the end of the run include a textured mesh, and the package '{package}', which {role}, "
        f"does not import ({e}). Install it with `pip install {package}` (`pip install -e .` installs every "
        "dependency), or run with --config.export.enabled=false to skip the exports (a later run in the same "
        "workdir with exports on writes them)."
      ) from None


def config_differences(saved: dict, current: dict) -> list[str]:
  """Fields that differ between a checkpoint's config and the current one, except resumable ones.

  A field the checkpoint lacks (added to base_config after it was written) counts as equal when its
  current value is the base default: the old run computed with that default.
  """
  a, b = flatten(saved), flatten(current)
  defaults = flatten(config_to_dict(base_config.get_config()))
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key.split(".")[0] in RESUMABLE_FIELDS or key in RESUMABLE_FIELDS or key in ADJUSTABLE_FIELDS:
      continue
    if key not in a and key in defaults and b.get(key) == defaults[key]:
      continue
    if a.get(key, "<missing>") != b.get(key, "<missing>"):
      diffs.append(f"{key}: checkpoint has {a.get(key, '<missing>')!r}, now {b.get(key, '<missing>')!r}")
  return diffs


def adjusted_fields(saved: dict, current: dict) -> list[str]:
  """The ADJUSTABLE_FIELDS whose value differs between a checkpoint's config and the current one: 'key: a -> b'."""
  a, b = flatten(saved), flatten(current)
  defaults = flatten(config_to_dict(base_config.get_config()))
  return [
    f"{key}: {a.get(key, defaults[key])!r} -> {b[key]!r}"
    for key in ADJUSTABLE_FIELDS
    if key in b and a.get(key, defaults[key]) != b[key]
  ]


def check_resume_compatible(saved: dict, current: dict, workdir: str) -> None:
  diffs = config_differences(saved, current)
  if diffs:
    shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    raise WorkdirError(
      f"The work directory '{workdir}' holds a checkpoint of a different config ({shown}). Nothing was changed "
      "there. Use a new --workdir for the new config, or rerun with the checkpoint's values to resume it "
      "(only num_steps, logging, checkpoint, validation and export fields, render.view_chunk_samples, the "
      "optimiser's step sizes and clipping, and guidance.scale may change on resume)."
    )


_CAMERA_KEYS = ("distance_range", "focal_range", "look_at_std", "position_jitter")
# DreamFusion's cameras (cameras.CameraConfig's defaults): what priors saved without a 'camera' record saw.
_PAPER_CAMERA = {k: getattr(cameras.CameraConfig(), k) for k in _CAMERA_KEYS}


def warn_camera_mismatch(prior_camera: Optional[dict], run_camera) -> None:
  """Logs a warning when a run samples other cameras than its prior was trained on (see camera_mismatch)."""
  mismatch = camera_mismatch(prior_camera, run_camera)
  if mismatch:
    logging.warning(
      "The prior was trained on cameras with %s; this run samples %s. The prior pushes objects "
      "towards the size they had in its training images, so they come out at the wrong size: set "
      "--config.camera.* to the prior's values (configs/default.py does).",
      *mismatch,
    )


def camera_mismatch(prior_camera: Optional[dict], run_camera) -> Optional[tuple[str, str]]:
  """None if a run's config.camera samples the zoom and framing the prior was trained on; else the two
  descriptions (prior's, run's). prior_camera: the prior's `training_cameras` (a missing key: DreamFusion's
  value; None: a prior indifferent to cameras, which always matches)."""
  if prior_camera is None:
    return None
  want = {k: prior_camera.get(k, _PAPER_CAMERA[k]) for k in _CAMERA_KEYS}
  got = {k: run_camera.get(k, _PAPER_CAMERA[k]) for k in _CAMERA_KEYS}
  close = lambda a, b: np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-6)
  if all(close(want[k], got[k]) for k in _CAMERA_KEYS):
    return None
  describe = lambda c: ", ".join(f"{k}={tuple(v) if isinstance(v, (list, tuple)) else v}" for k, v in c.items())
  return describe(want), describe(got)
