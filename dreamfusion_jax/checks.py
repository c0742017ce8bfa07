"""Checks of the config and the work directory, run before anything is compiled or written."""

import json
import os
import shutil
from typing import Optional

import ml_collections
import numpy as np
from absl import logging

from dreamfusion_jax import base_config
from dreamfusion_jax.errors import ConfigError, WorkdirError
from dreamfusion_jax.nerf import cameras

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
  """Raises ConfigError naming the first invalid field and its fix."""
  known = flatten(config_to_dict(base_config.get_config()))
  for key in flatten(config_to_dict(config)):
    # guidance.unet / guidance.text hold free-form model configs.
    if key not in known and not key.startswith(("guidance.unet.", "guidance.text.")):
      raise ConfigError(
        f"The config field '{key}' is not known. Check its spelling against "
        "dreamfusion_jax/base_config.py, which lists every field with a comment."
      )
  if not isinstance(config.prompt, str) or not config.prompt.strip():
    raise ConfigError('The prompt is empty. Give a caption, e.g. --config.prompt="a red cube".')
  for name in ("num_steps", "num_seeds", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
    value = config[name]
    if not isinstance(value, int) or value <= 0:
      raise ConfigError(
        f"config.{name} is {value!r} but must be a positive integer, "
        f"e.g. --config.{name}={base_config.get_config()[name]}."
      )
  if config.val_every < 0:
    raise ConfigError(f"config.val_every is {config.val_every}; use a positive step count, or 0 to disable validation.")
  if not 0.0 <= config.guidance.t_min < config.guidance.t_max <= 1.0:
    raise ConfigError(
      f"guidance.t_min={config.guidance.t_min} and guidance.t_max={config.guidance.t_max} "
      "must satisfy 0 <= t_min < t_max <= 1 (the paper: 0.02 and 0.98)."
    )
  g = config.guidance
  if g.t_anneal_steps < 0:
    raise ConfigError(f"guidance.t_anneal_steps={g.t_anneal_steps} must be >= 0 (0 turns the anneal of t_max off).")
  if g.t_anneal_steps > 0 and not g.t_min < g.t_max_final <= g.t_max:
    raise ConfigError(
      f"guidance.t_max_final={g.t_max_final} must satisfy t_min < t_max_final <= t_max "
      f"({g.t_min} and {g.t_max}): t_max falls to it over guidance.t_anneal_steps steps."
    )
  if not 0.0 <= config.guidance.preview_t < 1.0:
    raise ConfigError(
      f"guidance.preview_t={config.guidance.preview_t} must be in [0, 1): the diffusion time of "
      "the validation's guidance preview as a fraction of the schedule (0 turns it off)."
    )
  if config.render.image_size < 8 or config.render.num_coarse < 2 or config.render.num_fine < 1:
    raise ConfigError(
      "render.image_size must be at least 8, render.num_coarse at least 2 and render.num_fine at least 1."
    )
  cam = config.camera
  for name in ("distance_range", "focal_range"):
    value = cam[name]
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
      raise ConfigError(
        f"camera.{name}={value!r} must be two numbers (MIN, MAX), e.g. "
        f'--config.camera.{name}="{tuple(base_config.get_config().camera[name])}".'
      )
  wrong = cameras.problem(cameras.from_config(cam))
  if wrong:
    raise ConfigError(
      f"camera.{wrong} (DreamFusion's cameras: distance_range (1.0, 1.5), focal_range (0.7, 1.35), "
      "look_at_std 0.2, position_jitter 0.1)."
    )
  choices = {
    "field.density_activation": ("exp", "softplus", "volsdf"),
    "field.blob_type": ("gaussian", "magic3d"),
    "guidance.weighting": ("sds", "uniform"),
    "optim.name": ("adam", "adamw"),
    "optim.schedule": ("constant", "warmup_cosine"),
    "render.background": ("learned", "random"),
    "guidance.sd.dtype": ("float32", "bfloat16"),
    "guidance.sd.attention": ("xla", "cudnn"),
  }
  flat = flatten(config_to_dict(config))
  for key, allowed in choices.items():
    if flat[key] not in allowed:
      raise ConfigError(f"config.{key}={flat[key]!r} is not one of {allowed}.")
  if config.export.mesh_threshold <= 0 and config.field.density_activation != "volsdf":
    raise ConfigError(
      f"export.mesh_threshold={config.export.mesh_threshold} asks for the field's own surface, which only a signed "
      "distance field has (field.density_activation='volsdf'). Give this density field a level > 0 to mesh, e.g. "
      "--config.export.mesh_threshold=10."
    )
  size = config.guidance.sd.image_size
  # What divides it depends on the checkpoint (64 for SD 1.x/2.x): stable_diffusion.build_prior checks that.
  if config.guidance.model == "stable_diffusion" and (not isinstance(size, int) or size <= 0):
    raise ConfigError(
      f"guidance.sd.image_size={size!r} must be a positive multiple of 64 (the VAE encodes 8x down "
      "and the UNet halves the latents three more times), e.g. 512 as Stable Diffusion was trained."
    )


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


def config_differences(saved: dict, current: dict) -> list[str]:
  """Fields that differ between a checkpoint's config and the current one, except resumable ones.

  A field the checkpoint lacks (added to base_config after it was written) counts as equal when its
  current value is the base default: the old run computed with that default.
  """
  a, b = flatten(saved), flatten(current)
  defaults = flatten(config_to_dict(base_config.get_config()))
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key.split(".")[0] in RESUMABLE_FIELDS or key in ADJUSTABLE_FIELDS:
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
      "(only num_steps, logging, checkpoint, validation and export fields, the optimiser's step sizes and "
      "clipping, and guidance.scale may change on resume)."
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
