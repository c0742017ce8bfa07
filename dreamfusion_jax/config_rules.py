"""The type and allowed range of every field of base_config, and the check of one value against them.

`checks.validate_config` walks a run's config through `RULES` before anything is compiled or written, so a
zero, a negative, a NaN, an absurd size or a wrong type is one paragraph naming the field, its value, what is
allowed and the fix, never a traceback at step 0 (or worse, at the export after the last step).

The bounds are what the code can run and what is sane, not what is good: most are far from the values the
configs use. Where a bound is not obvious, `why` says where it comes from.
"""

import dataclasses
import functools
import inspect
import math
import re
from typing import Any, Optional

# int32 state (the step counter, the seeds array) and XLA's int32 gather indices bound several fields.
INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Rule:
  """What one field may hold. kind: 'int', 'float', 'bool', 'str', 'choice', 'pair' (two numbers, MIN <= MAX),
  'ints' or 'strs' (a non-empty tuple of such values). lo, hi: inclusive bounds of a number (of each element
  of a 'pair' or 'ints'); lo_open: lo itself is excluded. choices: a 'choice's (or a 'strs' element's) values."""

  kind: str
  lo: Optional[float] = None
  hi: Optional[float] = None
  lo_open: bool = False
  choices: tuple = ()
  why: str = ""  # Where the range comes from, when it is not obvious.
  max_len: int = 0  # 'ints', 'strs': the most elements (0: no limit).


def Int(lo, hi, why=""):
  return Rule("int", lo, hi, why=why)


def Float(lo=-math.inf, hi=math.inf, lo_open=False, why=""):
  return Rule("float", lo, hi, lo_open=lo_open, why=why)


def Choice(*options, why=""):
  return Rule("choice", choices=options, why=why)


BOOL, STR = Rule("bool"), Rule("str")
PROB = Float(0.0, 1.0)
WEIGHT = Float(
  0.0, 1e9
)  # A loss weight: 0 turns the term off; the SDS term is a sum over pixels, so weights are large.
STEPS = Int(0, 10**7)  # A step count of a schedule (0: the schedule is off).
MAX_STEPS = 10**7

RULES: dict[str, Rule] = {
  "prompt": STR,
  "num_steps": Int(
    1, MAX_STEPS, why=f"{MAX_STEPS:,} steps is 1,000 times the paper's 10,000 and weeks on the fastest device"
  ),
  "num_seeds": Int(1, 65536),
  "seed": Int(0, INT32_MAX, why="seeds are int32 (seed + num_seeds - 1 must fit too)"),
  "batch_size": Int(1, 4096),
  "field.bound": Float(0.0, 100.0, lo_open=True),
  "field.num_levels": Int(1, 64),
  "field.features_per_level": Int(1, 64),
  "field.log2_hashmap_size": Int(
    8,
    26,
    why="Instant-NGP used 2^14..2^24 rows per level; below 2^8 every level but the coarsest collides almost "
    "everywhere (0 is a table of one row), and above 2^26 the tables outgrow any device and their int32 row "
    "indices overflow",
  ),
  "field.base_resolution": Int(1, 16384),
  "field.max_resolution": Int(1, 16384, why="8 times the paper's 2048; finer, float32 positions can't resolve a cell"),
  "field.mlp_width": Int(1, 4096),
  "field.mlp_num_hidden": Int(0, 16),
  "field.density_activation": Choice("exp", "softplus", "volsdf"),
  "field.blob_type": Choice("gaussian", "magic3d"),
  "field.blob_density": Float(0.0, 1e4),
  "field.blob_radius": Float(0.0, 100.0, lo_open=True),
  "field.albedo_bias": Float(-100.0, 100.0),
  "field.sdf_beta": Float(0.0, 10.0, lo_open=True),
  "field.bg_mlp_width": Int(1, 4096),
  "field.bg_num_frequencies": Int(0, 32, why="2^K scales a direction; float32 has no finer phase beyond K = 32"),
  "render.image_size": Int(8, 4096),
  "render.num_coarse": Int(2, 4096),
  "render.num_fine": Int(1, 4096),
  "render.normal_step": Float(0.0, 0.5),
  "render.view_chunk_samples": Int(1024, 2**30),
  "render.background": Choice("learned", "random"),
  "camera.elevation_range": Rule("pair", -90.0, 90.0),
  "camera.distance_range": Rule("pair", 0.0, 1e3, lo_open=True),
  "camera.focal_range": Rule("pair", 0.0, 1e3, lo_open=True),
  "camera.look_at_std": Float(0.0, 10.0),
  "camera.position_jitter": Float(0.0, 10.0),
  "camera.view_dependent_prompts": BOOL,
  "camera.progressive_view_steps": STEPS,
  "shading.albedo_warmup_steps": STEPS,
  "shading.shaded_prob": PROB,
  "shading.textureless_prob": PROB,
  "shading.colour_from_shaded": BOOL,
  "shading.ambient": Float(0.0, 10.0),
  "shading.diffuse": Float(0.0, 10.0),
  "guidance.model": Choice("random", "shapes", "stable_diffusion"),  # registry.PRIORS (tests/test_checks.py).
  "guidance.scale": Float(
    0.0,
    1e4,
    why="w_cfg; 0 is the unconditional prior, the paper uses 100, and a negative weight pushes away from the caption",
  ),
  "guidance.allow_unknown_words": BOOL,
  "guidance.textureless_prompt": BOOL,
  "guidance.t_min": PROB,
  "guidance.t_max": PROB,
  "guidance.t_max_final": PROB,
  "guidance.t_anneal_steps": STEPS,
  "guidance.weighting": Choice("sds", "uniform"),
  "guidance.num_train_timesteps": Int(2, 100_000),
  "guidance.beta_schedule": Choice("scaled_linear", "linear"),
  "guidance.beta_start": Float(0.0, 1.0, lo_open=True),
  "guidance.beta_end": Float(0.0, 1.0, lo_open=True),
  "guidance.preview_t": PROB,
  "guidance.preview_sample_steps": Int(0, 1000, why="DDIM steps, at most guidance.num_train_timesteps"),
  "guidance.preview_sample_scale": Float(0.0, 1e4),
  "guidance.seed": Int(0, INT32_MAX),
  "guidance.path": STR,
  "guidance.sd.model": STR,
  "guidance.sd.revision": STR,
  "guidance.sd.download": BOOL,
  "guidance.sd.dtype": Choice("float32", "bfloat16"),
  "guidance.sd.remat": BOOL,
  # What must divide it depends on the checkpoint (64 for SD 1.x/2.x): stable_diffusion.build_prior checks that.
  "guidance.sd.image_size": Int(8, 4096),
  "guidance.sd.attention": Choice("auto", "xla", "cudnn"),
  "guidance.unet.in_channels": Int(3, 3, why="the random prior denoises the RGB renders"),
  "guidance.unet.out_channels": Int(3, 3, why="the random prior predicts RGB noise"),
  "guidance.unet.block_out_channels": Rule("ints", 1, 1024, max_len=4),
  "guidance.unet.layers_per_block": Int(1, 8),
  "guidance.unet.down_block_types": Rule("strs", choices=("DownBlock2D", "CrossAttnDownBlock2D"), max_len=4),
  "guidance.unet.up_block_types": Rule("strs", choices=("UpBlock2D", "CrossAttnUpBlock2D"), max_len=4),
  "guidance.unet.attention_head_dim": Int(1, 64, why="diffusers' name for the number of heads"),
  "guidance.unet.cross_attention_dim": Int(1, 4096),
  "guidance.unet.norm_num_groups": Int(1, 1024),
  "guidance.text.width": Int(1, 4096),
  "guidance.text.num_layers": Int(1, 48),
  "guidance.text.num_heads": Int(1, 64),
  "guidance.text.max_length": Int(3, 512, why="<bos>, at least one word and <eos>"),
  "optim.name": Choice("adam", "adamw"),
  "optim.lr": Float(0.0, 10.0, lo_open=True, why="a step size: 0 learns nothing, a negative one climbs the loss"),
  "optim.net_lr": Float(0.0, 10.0, lo_open=True, why="a step size: 0 learns nothing, a negative one climbs the loss"),
  "optim.b1": Float(0.0, 1.0, why="Adam's moment decay; 1 never forgets"),
  "optim.b2": Float(0.0, 1.0, why="Adam's moment decay; 1 never forgets"),
  "optim.eps": Float(0.0, 1.0, lo_open=True, why="Adam divides by sqrt(v) + eps: 0 gives 0/0 on untouched rows"),
  "optim.schedule": Choice("constant", "warmup_cosine"),
  "optim.warmup_steps": STEPS,
  "optim.final_lr_fraction": PROB,
  "optim.grad_clip": Float(0.0, 1e12),
  "reg.orientation": WEIGHT,
  "reg.orientation_start": Float(0.0, 1e9, lo_open=True, why="the anneal is log-linear from it"),
  "reg.orientation_anneal_steps": STEPS,
  "reg.opacity": WEIGHT,
  "reg.entropy": WEIGHT,
  "reg.distortion": WEIGHT,
  "sdf.beta_start": Float(0.0, 10.0),
  "sdf.beta_anneal_steps": STEPS,
  "sdf.eikonal": WEIGHT,
  "sdf.eikonal_points": Int(1, 2**20),
  "sdf.smoothness": WEIGHT,
  "sdf.smoothness_radius": Float(0.0, 10.0),
  "sdf.smoothness_norm": Choice("l2", "l1"),
  "sdf.smoothness_points": Choice("volume", "render", "both", "shell"),
  "sdf.smoothness_points_start": STEPS,
  "sdf.smoothness_shell_share": PROB,
  "sdf.smoothness_shell_candidates": Int(1, 1024, why="the shell holds the nearest of that many candidates a point"),
  "sdf.smoothness_fade_start": STEPS,
  "sdf.smoothness_fade_steps": STEPS,
  "coarse_to_fine.steps": STEPS,
  "coarse_to_fine.start_levels": Int(1, 64, why="hash levels on from step 0, at most field.num_levels"),
  "log_every": Int(1, MAX_STEPS),
  "checkpoint_every": Int(1, MAX_STEPS),
  "keep_checkpoints": Int(1, 10_000),
  "val_every": Int(0, MAX_STEPS),
  "progress_bar": BOOL,
  "export.enabled": BOOL,
  "export.mesh_resolution": Int(8, 1024, why="marching cubes on R^3 points: 1024^3 is 4 GB of float32"),
  "export.mesh_threshold": Float(0.0, 1e6),
  "export.max_faces": Int(0, 10**8, why="0 turns the budget off; 10^8 faces is several GB of mesh"),
  "export.texture_size": Int(
    16, 8192, why="8192^2 texels is the largest texture common viewers and GPUs load (256 MB of float32 RGB)"
  ),
  "export.num_frames": Int(0, 3600, why="0 picks by platform (outputs.turntable_timing)"),
  "export.fps": Float(0.0, 240.0, why="0 gives num_frames / 4, a 4 s loop"),
  "export.elevation": Float(-90.0, 90.0),
  "export.distance": Float(0.0, 1e3, lo_open=True),
  "export.image_size": Int(8, 4096),
  "gpu_triton_gemm": BOOL,
  "gpu_deterministic": BOOL,
}


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v: float) -> str:
  if not math.isfinite(v):
    return str(v)
  return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _interval(rule: Rule) -> str:
  lo, hi = _number(rule.lo), _number(rule.hi)
  return f"{'(' if rule.lo_open else '['}{lo}, {hi}]"


def _in_range(v: float, rule: Rule) -> bool:
  return math.isfinite(v) and (v > rule.lo if rule.lo_open else v >= rule.lo) and v <= rule.hi


def expected(rule: Rule) -> str:
  """What the rule allows, in words: 'an integer in [1, 64]'."""
  if rule.kind == "int":
    return f"an integer in {_interval(rule)}" if rule.lo != rule.hi else _number(rule.lo)
  if rule.kind == "float":
    return f"a finite number in {_interval(rule)}"
  if rule.kind == "bool":
    return "true or false"
  if rule.kind == "str":
    return "a string"
  if rule.kind == "choice":
    return f"one of {', '.join(repr(c) for c in rule.choices)}"
  if rule.kind == "pair":
    return f"two numbers (MIN, MAX) in {_interval(rule)} with MIN <= MAX"
  if rule.kind == "ints":
    return f"1 to {rule.max_len} integers in {_interval(rule)}"
  return f"1 to {rule.max_len} of {', '.join(repr(c) for c in rule.choices)}"


def problem(value: Any, rule: Rule) -> Optional[str]:
  """None if value satisfies rule; else why not, in a few words."""
  kind = rule.kind
  if kind == "int":
    if not _is_int(value):
      return "is not an integer"
    return None if _in_range(value, rule) else "is out of range"
  if kind == "float":
    if not _is_number(value):
      return "is not a number"
    if not math.isfinite(value):
      return "is not finite"
    return None if _in_range(value, rule) else "is out of range"
  if kind == "bool":
    return None if isinstance(value, bool) else "is not a boolean"
  if kind == "str":
    return None if isinstance(value, str) else "is not a string"
  if kind == "choice":
    return None if isinstance(value, str) and value in rule.choices else "is not one of the choices"
  if not isinstance(value, (tuple, list)):
    return "is not a tuple"
  if kind == "pair":
    if len(value) != 2 or not all(_is_number(v) for v in value):
      return "is not two numbers"
    if not all(_in_range(v, rule) for v in value):
      return "is out of range"
    return None if value[0] <= value[1] else "has MIN > MAX"
  if not 1 <= len(value) <= rule.max_len:
    return "has the wrong length"
  if kind == "ints":
    ok = all(_is_int(v) and _in_range(v, rule) for v in value)
  else:
    ok = all(isinstance(v, str) and v in rule.choices for v in value)
  return None if ok else "holds a value out of range"


@functools.lru_cache(maxsize=1)
def field_comments() -> dict[str, str]:
  """{'field.num_levels': 'L in Instant-NGP: hash-grid levels.', ...}: base_config's comment on each field's line."""
  from dreamfusion_jax import base_config

  out = {}
  for line in inspect.getsource(base_config).splitlines():
    found = re.match(r"\s*c\.([\w.]+)\s*=.*?#\s*(.+)$", line)
    if found:
      out[found.group(1)] = found.group(2).strip()
  return out


def example(key: str, rule: Rule, default: Any) -> str:
  """A value to suggest on the command line: the base default when it satisfies the rule, else the lower bound."""
  if default is not None and problem(default, rule) is None:
    value = default
  elif rule.kind in ("int", "float"):
    value = rule.lo if rule.lo is not None and math.isfinite(rule.lo) and not rule.lo_open else 1
  elif rule.kind == "choice":
    value = rule.choices[0]
  else:
    value = default
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (tuple, list)):
    return f'"{tuple(value)}"'
  if isinstance(value, str):
    return f'"{value}"'
  return str(value)
