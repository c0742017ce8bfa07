"""The Shapes benchmark: scores a finished run against the procedural world's ground truth.

  python -m dreamfusion_jax.evaluate --workdir=DIR [--classifier_dir=DIR2]

reads DIR/config.json (the caption, 'a {colour} {shape}', is the config's prompt) and DIR's latest
checkpoint, scores every seed, writes DIR/evaluation.json and refreshes DIR/report.html (dreamfusion_jax.report):

  {"caption", "colour", "shape", "asymmetric", "step", "classifier", "settings",
   "per_seed": {"seed_K": {metrics}}, "mean": {metrics averaged over seeds}}

Metrics (all pure functions below; grids hold cell centres of [-bound, bound]^3, x, y, z order):
  iou              3D IoU of the result's occupancy (density > threshold, the export's mesh level)
                   against the true solid (SDF <= 0), best over `num_rotations` rotations of the
                   true solid about the vertical (z) axis; `best_angle_deg` is that rotation
                   (counter-clockwise seen from above: the result matches the truth turned by it).
  volume_ratio     the result's occupied volume over the true solid's (same grid): below 1 the
                   result is too small or hollow, above 1 too big or foggy.
  color_error      mean Euclidean RGB distance between the albedo at the result's surface points
                   (occupied cells with an empty 6-neighbour) and the caption's colour; RGB in
                   [0, 1], so 0 (exact) to sqrt(3) ~ 1.73. null for an empty result.
  color_r_precision  the paper's CLIP R-Precision with the Shapes judge (dreamfusion_jax.shapes.judge)
                   in place of CLIP: the fraction of K albedo-only renders (azimuths 0, 360/K, ...,
                   elevation 20 degrees, training-like camera distance and focal) whose top caption
                   over all colour x shape captions (judge_lib.caption_logprobs) is the true one.
  geo_r_precision  the same for textureless renders, which show no colour: only the top SHAPE is
                   compared to the true shape.
  janus            (asymmetric shapes only) whether the result has more than one front; see `janus`.
  iou_by_level     (only when asked, e.g. by shapes_sweep.py --levels) the IoU and volume_ratio at
                   other density levels, and at export.silhouette_level (the level whose solid has
                   the silhouettes of the result's renders): a diagnostic of the level's effect.
  fit_shape        the primitive family the exported mesh has, fitted in any orientation
                   (dreamfusion_jax.shapes.fit, a stand-in for an outside mesh judge); fit_score its score
                   in [0, 1]; fit_right 1.0 / 0.0 whether it is the caption's shape (0.0 for an empty mesh,
                   null for bird and chair, which are no family); fit_rounding (cubes and cylinders) the
                   edge radius of the best rounded box / cylinder as a fraction of its smallest half-size.
The renders use solid backgrounds drawn once from the judge's training distribution (fixed seed),
not the run's learned background, so the judge sees the object alone. Without judge weights
(dreamfusion_jax/assets/classifier/ or --classifier_dir) both R-Precision entries are null.

'mean' averages each metric over the seeds that have it; 'janus_rate' is the fraction of seeds
that are Janus (null for symmetric shapes); 'fit_right_rate' the fraction with fit_right 1 (null for bird
and chair).
"""

import functools
import json
import math
import os
import sys
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from dreamfusion_jax import base_config, checks, compilation_cache, export, files, logs, report
from dreamfusion_jax.checkpointing import Checkpoints
from dreamfusion_jax.errors import UserError, WorkdirError
from dreamfusion_jax.nerf import cameras, views
from dreamfusion_jax.nerf.field import Scene
from dreamfusion_jax.shapes import fit, surface, world
from dreamfusion_jax.shapes import judge as judge_lib
from dreamfusion_jax.shapes.world import rotate_z

# Cube half-size of the evaluation grids: every true shape lies inside WORLD_RADIUS = 0.65, also
# after a rotation about z; density beyond 0.8 (floaters far from the object) is not scored.
EVAL_BOUND = 0.8
RESOLUTION = 96  # Cells per axis of the evaluation grid (1.7 cm cells at EVAL_BOUND).
NUM_ROTATIONS = 36  # Rotations about z tried by the IoU (every 10 degrees).
NUM_VIEWS = 8  # Renders per seed for the R-Precisions (azimuths every 45 degrees).
VIEW_ELEVATION = 20.0  # Elevation of those renders, degrees.
# score()'s key for the future of a primitive fit still running in Scorer's fit_executor (resolve_fits waits for it).
PENDING_FIT = "_pending_fit"


def fits_done(per_seed: dict) -> bool:
  """Whether every seed's primitive fit has finished (or ran in place)."""
  return all(m[PENDING_FIT].done() for m in per_seed.values() if PENDING_FIT in m)


def resolve_fits(per_seed: dict) -> dict:
  """per_seed with each pending fit's fields (fit.fit_metrics's) in place of its future."""
  out = {}
  for k, m in per_seed.items():
    m = dict(m)
    if PENDING_FIT in m:
      m.update(m.pop(PENDING_FIT).result())
    out[k] = m
  return out


# Janus test (see `janus`): window width around the mirror slot, world units (2 cells at R = 32,
# 6 at R = 96), and the local IoU a second front must reach. On 32^3 grids the true shapes score
# b = 0.2-0.5 and their two-front versions b = 1; balls of radius 0.3-0.5 and an ellipsoid
# stretched along x score b < 0.6 against the bird and the chair. The teardrop's one-sided part is
# a broad cone, so a lemon-like ellipsoid (b = 0.87) and a radius-0.4 ball (0.69) pass as Janus.
# Per-seed metrics that evaluation.json's 'mean' averages over seeds.
MEAN_METRICS = (
  "color_r_precision",
  "geo_r_precision",
  "iou",
  "color_error",
  "volume_ratio",
  "normal_error_deg",
  "fog",
  "chamfer",
  "extent_error",
  "fit_rounding",
)
SURFACE_VIEW_SIZE = 64  # Render size of the normal and fog views when no judge fixes it.
JANUS_MARGIN = 0.1
JANUS_MIN_IOU = 0.6

Fn = Callable[[jax.Array], jax.Array]


# ----------------------------------------------------------------------------- grids and IoU


def cell_centres(bound: float, resolution: int) -> np.ndarray:
  """Cell centres [R, R, R, 3] (world units) of [-bound, bound]^3, indexed (x, y, z)."""
  t = -bound + (np.arange(resolution, dtype=np.float32) + 0.5) * (2.0 * bound / resolution)
  return np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1)


def density_values(density_fn: Fn, bound: float, resolution: int, chunk: int = 1 << 18) -> np.ndarray:
  """float32 [R, R, R]: density_fn(x [N, 3]) -> [N] (per world unit) at cell_centres(bound, resolution)."""
  pts = cell_centres(bound, resolution).reshape(-1, 3)
  n = len(pts)
  if n > chunk:  # Equal chunks (the last one padded), so a jitted density_fn compiles once.
    pts = np.concatenate([pts, np.zeros((-n % chunk, 3), np.float32)])
  out = [np.asarray(density_fn(jnp.asarray(pts[i : i + chunk])), np.float32) for i in range(0, len(pts), chunk)]
  return np.concatenate(out)[:n].reshape((resolution,) * 3)


def occupancy_grid(density_fn: Fn, bound: float, resolution: int, threshold: float, chunk: int = 1 << 18) -> np.ndarray:
  """bool [R, R, R]: density_fn(x [N, 3]) -> [N] (per world unit) > threshold at cell_centres."""
  return density_values(density_fn, bound, resolution, chunk) > threshold


def true_occupancy(shape_index: int, bound: float, resolution: int, angle_deg: float = 0.0) -> np.ndarray:
  """bool [R, R, R]: the true solid (SDF <= 0), turned by angle_deg about z, at cell_centres."""
  pts = rotate_z(jnp.asarray(cell_centres(bound, resolution)), -angle_deg)
  return np.asarray(world.occupancy(int(shape_index), pts))


@functools.lru_cache(maxsize=None)
def _true_cells(shape_index: int, bound: float, resolution: int) -> int:
  """Cells of the true solid on cell_centres(bound, resolution) (cached: every level of every seed uses it)."""
  return int(true_occupancy(shape_index, bound, resolution).sum())


def volume_ratio(occ: np.ndarray, shape_index: int, bound: float) -> float:
  """Occupied cells of occ [R, R, R] over those of the true solid on the same grid."""
  return float(np.count_nonzero(occ) / _true_cells(int(shape_index), float(bound), occ.shape[0]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
  """|a & b| / |a | b| of two boolean grids of one shape; 1.0 when both are empty."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  union = np.count_nonzero(a | b)
  return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def rotation_ious(occ: np.ndarray, template_sdf: Fn, bound: float, angles_deg) -> np.ndarray:
  """IoU [A] of occ [R, R, R] against the solid template_sdf(x) <= 0 turned by each angle about z.

  The QUERY points are turned back (x -> R(-angle) x), so only the cheap template is re-evaluated;
  the result's occupancy is computed once.
  """
  occ = jnp.asarray(occ)
  pts = jnp.asarray(cell_centres(bound, occ.shape[0]))
  return np.asarray(_rotation_iou_fn(template_sdf)(jnp.asarray(angles_deg, jnp.float32), pts, occ), np.float64)


@functools.lru_cache(maxsize=None)
def _rotation_iou_fn(template_sdf: Fn):
  """A jitted (angles [A], points, occupancy) -> IoUs [A] for one template, all angles in one call
  (lax.map keeps one grid in memory at a time); cached: one compile per template and grid."""

  def one(angle, pts, occ):
    inside = template_sdf(rotate_z(pts, -angle)) <= 0.0
    inter = jnp.sum(inside & occ)
    union = jnp.sum(inside | occ)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)

  return jax.jit(lambda angles, pts, occ: jax.lax.map(lambda a: one(a, pts, occ), angles))


def best_rotation(
  occ: np.ndarray, template_sdf: Fn, bound: float, num_rotations: int = NUM_ROTATIONS
) -> tuple[float, float]:
  """(best IoU, its angle in degrees) of occ against template_sdf turned by k * 360 / num_rotations."""
  angles = np.arange(num_rotations) * (360.0 / num_rotations)
  ious = rotation_ious(occ, template_sdf, bound, angles)
  k = int(np.argmax(ious))
  return float(ious[k]), float(angles[k])


@functools.lru_cache(maxsize=None)
def shape_sdf(shape_index: int) -> Fn:
  """x [..., 3] -> the true shape's SDF [...] (one function object per shape, so jits are reused)."""
  return lambda x: world.sdf(int(shape_index), x)


def best_iou_over_rotations(
  density_fn: Fn,
  shape_index: int,
  *,
  bound: float = EVAL_BOUND,
  resolution: int = RESOLUTION,
  threshold: float = 10.0,
  num_rotations: int = NUM_ROTATIONS,
) -> tuple[float, float]:
  """(IoU, best_angle_deg) of density_fn's occupancy against the true shape, best over rotations about z.

  density_fn: x [N, 3] -> density [N] (per world unit); occupied where density > threshold.
  best_angle_deg: the result matches the true shape turned counter-clockwise by this angle.
  """
  occ = occupancy_grid(density_fn, bound, resolution, threshold)
  return best_rotation(occ, shape_sdf(shape_index), bound, num_rotations)


# ----------------------------------------------------------------------------- colour


def surface_points(occ: np.ndarray, bound: float) -> np.ndarray:
  """Centres [N, 3] (world units) of occupied cells with at least one empty 6-neighbour (outside = empty)."""
  padded = np.pad(np.asarray(occ, bool), 1, constant_values=False)
  interior = padded[1:-1, 1:-1, 1:-1].copy()
  for axis in range(3):
    for shift in (-1, 1):
      interior &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
  shell = np.asarray(occ, bool) & ~interior
  return cell_centres(bound, occ.shape[0])[shell]


def color_error(albedo_fn: Fn, points: np.ndarray, rgb) -> float:
  """Mean Euclidean distance between albedo_fn(points) and rgb; NaN if there are no points.

  albedo_fn: x [N, 3] -> albedo [N, 3] in [0, 1]; points: [N, 3] surface points; rgb: [3] in
  [0, 1]. The distance lies in [0, sqrt(3)].
  """
  points = np.asarray(points, np.float32).reshape(-1, 3)
  if len(points) == 0:
    return float("nan")
  chunk = 1 << 16
  albedo = np.concatenate(
    [np.asarray(albedo_fn(jnp.asarray(points[i : i + chunk]))) for i in range(0, len(points), chunk)]
  )
  return float(np.mean(np.linalg.norm(albedo - np.asarray(rgb, np.float32), axis=-1)))


# ----------------------------------------------------------------------------- Janus


@functools.lru_cache(maxsize=None)
def two_front_sdf(shape_index: int) -> Fn:
  """The shape united with itself turned 180 degrees about z: its one-sided part on both sides."""
  return lambda x: jnp.minimum(world.sdf(int(shape_index), x), world.sdf(int(shape_index), rotate_z(x, 180.0)))


def _windowed_iou(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
  return iou(a & window, b & window)


def janus(
  occ: np.ndarray,
  shape_index: int,
  bound: float,
  num_rotations: int = NUM_ROTATIONS,
  margin: float = JANUS_MARGIN,
  min_iou: float = JANUS_MIN_IOU,
  best: Optional[tuple[float, float]] = None,
) -> tuple[bool, dict]:
  """Whether the result occ [R, R, R] (on cell_centres(bound, R)) has more than one front.

  The true shape T is placed at its best rotation about z (the `iou` match). T turned 180
  degrees is T'; the shape's one-sided part is F = T minus T' (the teardrop's tip, the bird's
  beak and head, the chair's backrest) and its mirror slot is M = T' minus T, the place where
  a second copy of F would sit. Inside the window W = cells within `margin` (world units) of M,
  the result is compared with both hypotheses:
      a = IoU within W of (result, T)          one front: M empty
      b = IoU within W of (result, T u T')     two fronts: M filled like F
  Janus when b > a and b >= min_iou: the mirror slot holds a copy of the one-sided part, shaped
  like it (a shapeless blob that spills around M scores a low b). A front-back symmetric result
  with a good copy of F on both sides is Janus; the true shape scores a = 1.

  Returns (janus, evidence): evidence = dict(iou_one_front (best IoU with T),
  front_azimuth_deg (its rotation: 0 when the front faces azimuth 0, as prompted),
  mirror_iou_one_front (a), mirror_iou_two_front (b), feature_iou (IoU of the result with T
  within `margin` of F: how well the real one-sided part is reproduced)). best: the result of
  best_rotation(occ, shape_sdf(shape_index), bound, num_rotations) when the caller has it.
  """
  from scipy import ndimage  # A dependency of scikit-image, which export.py uses.

  name = world.SHAPES[int(shape_index)]
  if name not in world.ASYMMETRIC:
    raise ValueError(f"Janus is defined for the asymmetric shapes {world.ASYMMETRIC}, not {name!r}.")
  occ = np.asarray(occ, bool)
  cell = 2.0 * bound / occ.shape[0]
  iou_t, angle = best if best is not None else best_rotation(occ, shape_sdf(shape_index), bound, num_rotations)
  pts = rotate_z(jnp.asarray(cell_centres(bound, occ.shape[0])), -angle)
  one = np.asarray(world.sdf(int(shape_index), pts) <= 0.0)
  turned = np.asarray(world.sdf(int(shape_index), rotate_z(pts, 180.0)) <= 0.0)
  feature, mirror = one & ~turned, turned & ~one
  if not mirror.any():
    raise ValueError(f"The grid (resolution {occ.shape[0]}) is too coarse to resolve the {name}'s one-sided part.")
  near = lambda region: ndimage.distance_transform_edt(~region) * cell <= margin
  w_mirror, w_feature = near(mirror), near(feature)
  a = _windowed_iou(occ, one, w_mirror)
  b = _windowed_iou(occ, one | turned, w_mirror)
  evidence = dict(
    iou_one_front=iou_t,
    front_azimuth_deg=angle,
    mirror_iou_one_front=a,
    mirror_iou_two_front=b,
    feature_iou=_windowed_iou(occ, one, w_feature),
  )
  return bool(b > a and b >= min_iou), evidence


# ----------------------------------------------------------------------------- R-Precision


def view_backgrounds(num_views: int, seed: int = 0) -> np.ndarray:
  """[K, 3] solid background colours, uniform like the judge's training backgrounds (fixed seed)."""
  return np.random.default_rng(seed).uniform(size=(num_views, 3)).astype(np.float32)


def make_view_renderer(
  scene, config: ml_collections.ConfigDict, size: int, field_of: Optional[Callable] = None, rcfg=None
):
  """jitted (params, elevation, azimuth, background [3]) -> dict(colour, textureless, normals [size, size, 3],
  opacity [size, size]).

  Training-like camera: the middle of the config's distance and focal ranges; the light sits 30
  degrees above and to the right of the camera (shading cues for the textureless render).
  Deterministic ray samples (no key). field_of(params) -> field_fn replaces the scene's field
  (a ground-truth shape, to check the benchmark against the truth); rcfg replaces the run's render settings.
  """
  rcfg = rcfg or views.make_render_config(config)
  distance = float(np.mean(config.camera.distance_range))
  focal = float(np.mean(config.camera.focal_range)) * size

  @jax.jit
  def render_view(params, elevation, azimuth, background):
    light = cameras.spherical_to_cartesian(elevation + 30.0, azimuth + 30.0, distance)
    field_fn = views.field_fns(scene, params)[0] if field_of is None else field_of(params)
    bg_fn = lambda d: jnp.broadcast_to(background, d.shape)
    out = views.orbit_view(
      field_fn,
      {"albedo": bg_fn, "textureless": bg_fn},
      rcfg,
      elevation,
      azimuth,
      distance=distance,
      focal=focal,
      size=size,
      light_pos=light,
    )
    return dict(
      colour=jnp.clip(out["albedo"]["rgb"], 0.0, 1.0),
      textureless=jnp.clip(out["textureless"]["rgb"], 0.0, 1.0),
      normals=out["albedo"]["normals"],
      opacity=out["albedo"]["opacity"],
    )

  return render_view


def true_field(shape_and_angle):
  """field_of for make_view_renderer: (shape index int32, angle_deg) -> world.true_field (white albedo)."""
  shape_index, angle = shape_and_angle
  return world.true_field(shape_index, angle_deg=angle)


def render_views(
  render_view, params, num_views: int = NUM_VIEWS, elevation: float = VIEW_ELEVATION
) -> dict[str, np.ndarray]:
  """dict(colour, textureless, normals) [K, S, S, 3] and opacity [K, S, S] of K views at azimuths k * 360 / K."""
  bgs = view_backgrounds(num_views)
  outs = [
    render_view(params, jnp.float32(elevation), jnp.float32(k * 360.0 / num_views), jnp.asarray(bgs[k]))
    for k in range(num_views)
  ]
  return {name: np.stack([np.asarray(o[name]) for o in outs]) for name in outs[0]}


def judge_views_sheet(views_per_seed: list[dict]) -> np.ndarray:
  """uint8 sheet of render_views outputs: one row per seed, its K colour views then its K textureless views."""
  rows = [np.concatenate(list(v["colour"]) + list(v["textureless"]), axis=1) for v in views_per_seed]
  return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8)


def split_judge_views_sheet(sheet: np.ndarray, num_views: int, size: int) -> list[dict]:
  """The inverse of judge_views_sheet (up to its 8-bit rounding): per seed dict(colour, textureless) [K,S,S,3] in [0,1]."""
  if sheet.ndim != 3 or sheet.shape[0] % size or sheet.shape[1] != 2 * num_views * size:
    raise ValueError(f"a views sheet of shape {sheet.shape} does not hold 2 x {num_views} views of {size}x{size}")
  images = sheet[..., :3].astype(np.float32) / 255.0
  out = []
  for row in images.reshape(-1, size, 2 * num_views * size, 3):
    views = row.reshape(size, 2 * num_views, size, 3).transpose(1, 0, 2, 3)
    out.append(dict(colour=views[:num_views], textureless=views[num_views:]))
  return out


def r_precision(
  judge, colour_images: np.ndarray, textureless_images: np.ndarray, colour_index: int, shape_index: int
) -> dict:
  """R-Precisions of one result's renders [K, S, S, 3] (see the module docstring) and the top answers."""
  lc = judge.logits(colour_images)
  top_c, top_s = judge_lib.top_caption(lc["shape"], lc["colour"])
  geo_s = judge.logits(textureless_images)["shape"].argmax(-1)
  return dict(
    color_r_precision=float(np.mean((top_c == colour_index) & (top_s == shape_index))),
    geo_r_precision=float(np.mean(geo_s == shape_index)),
    top_captions=[world.caption(world.COLOUR_NAMES[c], world.SHAPES[s]) for c, s in zip(top_c, top_s)],
    top_shapes_geo=[world.SHAPES[s] for s in geo_s],
  )


# ----------------------------------------------------------------------------- a run


def parse_run_caption(prompt: str) -> tuple[str, str]:
  """(colour, shape) of a run's prompt; UserError when it is not a Shapes caption."""
  try:
    return world.parse_caption(prompt)
  except ValueError:
    raise UserError(
      f"The run's prompt {prompt!r} is not a caption of the Shapes world, so it has no ground truth to score "
      f"against. The benchmark takes prompts {world.grammar()}."
    ) from None


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json over base_config's defaults (a run saved before a field existed ran with its default),
  validated as `main` validates it; WorkdirError naming the file and what is wrong."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise WorkdirError(
      f"'{workdir}' holds no config.json, so it is not a finished run. Pass the --workdir of "
      "a run made by python -m dreamfusion_jax.main."
    )
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError) as e:
    raise WorkdirError(f"'{path}' can't be read ({e}).") from None
  except json.JSONDecodeError as e:
    raise WorkdirError(
      f"'{path}' is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). main writes it at the start of "
      "every run: rerun python -m dreamfusion_jax.main with the run's config and --workdir (it resumes from the "
      "checkpoint and rewrites the file), or repair it by hand."
    ) from None
  if not isinstance(saved, dict):
    raise WorkdirError(f"'{path}' holds {type(saved).__name__}, not a config; rerun main in '{workdir}' to rewrite it.")
  merged = checks.config_to_dict(base_config.get_config())
  _update(merged, saved)
  config = ml_collections.ConfigDict(merged)
  try:
    checks.validate_config(config)
  except UserError as e:
    raise WorkdirError(f"'{path}' does not hold a valid config: {e}") from None
  return config


def _update(base: dict, saved: dict) -> None:
  """base updated in place with saved, section by section (a section saved partly keeps base's other fields)."""
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      _update(base[key], value)
    else:
      base[key] = value


def restore_params(workdir: str, config: ml_collections.ConfigDict) -> tuple[int, list[Any]]:
  """(step, [params of each seed]) from the newest checkpoint that reads, without building the diffusion prior.

  The same path as a training run's resume (Checkpoints.restore_latest), as a reader: a damaged checkpoint is
  skipped with a warning (the next training run moves it aside), and none that reads is one clear error.
  """
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise WorkdirError(f"'{workdir}' holds no checkpoints/ folder; train the run first.")
  ckpts = Checkpoints(workdir, config.keep_checkpoints, writer=False)
  try:
    step, params = ckpts.restore_latest(ckpts.restore_params)
    if step is None:
      raise WorkdirError(f"'{workdir}/checkpoints' holds no checkpoint; train the run first.")
  finally:
    ckpts.close()
  return int(step), [jax.tree.map(lambda x: np.asarray(x[i]), params) for i in range(config.num_seeds)]


def evaluate_params(
  field,
  params,
  shape_index: int,
  rgb,
  *,
  threshold: float,
  bound: float = EVAL_BOUND,
  resolution: int = RESOLUTION,
  num_rotations: int = NUM_ROTATIONS,
  extra_levels=(),
) -> dict:
  """The geometric and colour metrics of one seed (see the module docstring).

  field: (params, x [N, 3]) -> (density [N], albedo [N, 3]); threshold: occupancy density level.
  extra_levels: more occupancy levels (floats, or 'silhouette' for export.silhouette_level of the
  grid) whose IoU and volume_ratio go to out['iou_by_level'][str(level)] (a diagnostic).
  """
  density = density_values(lambda x: field(params, x)[0], bound, resolution)
  occ = density > threshold
  best, angle = best_rotation(occ, shape_sdf(shape_index), bound, num_rotations)
  pts = surface_points(occ, bound)
  out = dict(
    iou=best,
    best_angle_deg=angle,
    color_error=color_error(lambda x: field(params, x)[1], pts, rgb),
    volume_ratio=volume_ratio(occ, shape_index, bound),
    occupied_fraction=float(occ.mean()),
    num_surface_points=int(len(pts)),
    janus=None,
    janus_evidence=None,
  )
  if world.SHAPES[shape_index] in world.ASYMMETRIC:
    out["janus"], out["janus_evidence"] = janus(occ, shape_index, bound, num_rotations, best=(best, angle))
  if extra_levels:
    out["iou_by_level"] = {}
    for level in extra_levels:
      value = level
      if level == "silhouette":
        try:
          value = export.silhouette_level(np.nan_to_num(density, nan=0.0), 2.0 * bound / resolution)
        except ValueError:  # A (near-)empty result: nothing to match, nothing occupied.
          value = float("inf")
      o = density > value
      out["iou_by_level"][str(level)] = dict(
        level=float(value),
        iou=best_rotation(o, shape_sdf(shape_index), bound, num_rotations)[0],
        volume_ratio=volume_ratio(o, shape_index, bound),
      )
  return out


def _mean(values: list) -> Optional[float]:
  vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
  return float(np.mean(vals)) if vals else None


def _nan_to_none(obj):
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: _nan_to_none(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_nan_to_none(v) for v in obj]
  return obj


def find_classifier(classifier_dir: Optional[str]) -> Optional[str]:
  """The judge's directory: classifier_dir (must hold weights) or the package asset if it exists."""
  if classifier_dir:
    if not judge_lib.has_classifier(classifier_dir):
      raise UserError(
        f"--classifier_dir='{classifier_dir}' holds no judge weights ({judge_lib.PARAMS_FILE} and "
        f"{judge_lib.CONFIG_FILE}); pass the export/ folder written by "
        "python -m dreamfusion_jax.shapes.judge."
      )
    return classifier_dir
  default = judge_lib.default_classifier_dir()
  return default if judge_lib.has_classifier(default) else None


class Scorer:
  """Scores results of one config against the Shapes world; compiled once, then used for any caption.

  threshold: occupancy density level (default: the run's surface, views.mesh_level). Without judge
  weights (see find_classifier) both R-Precisions are None.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    classifier_dir: Optional[str] = None,
    *,
    bound: float = EVAL_BOUND,
    resolution: int = RESOLUTION,
    threshold: Optional[float] = None,
    num_rotations: int = NUM_ROTATIONS,
    num_views: int = NUM_VIEWS,
    elevation: float = VIEW_ELEVATION,
    extra_levels=(),
    fit_executor=None,
  ):
    self.judge_dir = find_classifier(classifier_dir)
    if self.judge_dir is None:
      logging.warning(
        "No judge weights (dreamfusion_jax/assets/classifier/ is empty and no --classifier_dir was "
        "given): color_r_precision and geo_r_precision are null. Train one with "
        "python -m dreamfusion_jax.shapes.judge."
      )
    scene = views.make_scene(config)
    # params are an argument, not a closure: a closure would bake the hash tables into the program.
    self.field = jax.jit(lambda p, x: scene.apply({"params": p}, x, method=Scene.field))
    self.judge = judge_lib.load_classifier(self.judge_dir) if self.judge_dir else None
    size = self.judge.image_size if self.judge else SURFACE_VIEW_SIZE
    self.render_view = make_view_renderer(scene, config, size)
    # The truth with the world's own samples: the run's few samples per ray alias on a surface this sharp.
    self.render_truth = make_view_renderer(scene, config, size, field_of=true_field, rcfg=world.RENDER_CONFIG)
    self.mesh_settings = dict(bound=config.field.bound, resolution=config.export.mesh_resolution)
    # The exported mesh's own values and level (views.surface_values); a --threshold meshes the density at it.
    if threshold is None:
      surface_fn, self.surface_level = views.surface_values(scene, config)
      self.surface_fn = jax.jit(surface_fn)
    else:
      self.surface_fn, self.surface_level = (lambda p, x: self.field(p, x)[0]), threshold
    self.threshold = views.mesh_level(config) if threshold is None else threshold
    self.extra_levels = tuple(extra_levels)
    # A concurrent.futures executor for the primitive fits (seconds of single-threaded Python a mesh): score() then
    # leaves a future under PENDING_FIT, and resolve_fits puts its fields in.
    self.fit_executor = fit_executor
    self.settings = dict(
      bound=bound,
      resolution=resolution,
      threshold=self.threshold,
      num_rotations=num_rotations,
      num_views=num_views,
      elevation=elevation,
      image_size=size,
      mesh_resolution=config.export.mesh_resolution,
    )

  def score(self, params: Any, caption: str) -> dict:
    """The metrics of one seed's params against a caption 'a {colour} {shape}'."""
    colour, shape = parse_run_caption(caption)
    shape_index, colour_index = world.SHAPES.index(shape), world.COLOUR_NAMES.index(colour)
    st = self.settings
    m = evaluate_params(
      self.field,
      params,
      shape_index,
      world.COLOURS[colour],
      threshold=self.threshold,
      bound=st["bound"],
      resolution=st["resolution"],
      num_rotations=st["num_rotations"],
      extra_levels=self.extra_levels,
    )
    views = render_views(self.render_view, params, st["num_views"], st["elevation"])
    if self.judge is not None:
      m.update(r_precision(self.judge, views["colour"], views["textureless"], colour_index, shape_index))
    else:
      m.update(color_r_precision=None, geo_r_precision=None)
    truth = render_views(
      self.render_truth, (jnp.int32(shape_index), jnp.float32(m["best_angle_deg"])), st["num_views"], st["elevation"]
    )
    m.update(
      normal_error_deg=surface.normal_error_deg(views["normals"], views["opacity"], truth["normals"], truth["opacity"]),
      fog=surface.fog(views["opacity"]),
    )
    m.update(self.mesh_metrics(params, shape_index, m["best_angle_deg"]))
    logging.info(
      "%s: IoU %.2f, normal error %.1f deg, fog %.2f, chamfer %s, colour error %.2f, R-Precision colour %.2f geo %.2f%s",
      caption,
      m["iou"],
      m["normal_error_deg"],
      m["fog"],
      "-" if m["chamfer"] is None else f"{m['chamfer']:.4f}",
      m["color_error"],
      m["color_r_precision"],
      m["geo_r_precision"],
      "" if m["janus"] is None else f", Janus {m['janus']}",
    )
    return m

  def mesh_metrics(self, params: Any, shape_index: int, angle_deg: float) -> dict:
    """surface.mesh_metrics of the mesh the run exports (export.extract_mesh of views.surface_values at the
    export's resolution, or of the density at this scorer's --threshold), all None when that mesh is empty, and
    fit.fit_metrics of the same mesh (the primitive family it has, in any orientation)."""
    shape = world.SHAPES[shape_index]
    try:
      mesh = export.extract_mesh(
        lambda x: self.surface_fn(params, x), None, threshold=self.surface_level, **self.mesh_settings
      )
    except export.EmptyMeshError:
      return dict(
        chamfer=None,
        mesh_components=0,
        mesh_genus=None,
        true_genus=None,
        extent_ratio=None,
        extent_error=None,
        **fit.fit_metrics(None, shape),
      )
    m = surface.mesh_metrics(mesh, surface.true_mesh(shape_index), angle_deg)
    if self.fit_executor is None:
      m.update(fit.fit_metrics(mesh, shape))
    else:
      m[PENDING_FIT] = self.fit_executor.submit(fit.fit_metrics, mesh, shape)
    return m

  def result(self, caption: str, step: int, per_seed: dict) -> dict:
    """evaluation.json's content for one caption: per_seed {'seed_K': score(...)} and their mean (waiting for
    any fit still running in the scorer's fit_executor)."""
    per_seed = resolve_fits(per_seed)
    colour, shape = parse_run_caption(caption)
    mean = seed_means(list(per_seed.values()), shape)
    return _nan_to_none(
      dict(
        caption=world.caption(colour, shape),
        colour=colour,
        shape=shape,
        asymmetric=shape in world.ASYMMETRIC,
        held_out=(colour, shape) in world.HELD_OUT,
        step=step,
        classifier=self.judge_dir,
        settings=self.settings,
        per_seed=per_seed,
        mean=mean,
      )
    )


def seed_means(rows: list[dict], shape: str) -> dict:
  """evaluation.json's 'mean': the per-seed scores (score()'s dicts, fits resolved) of one caption, averaged.
  Also what joins sweeps over different seeds of the same captions."""
  mean = {k: _mean([r.get(k) for r in rows]) for k in MEAN_METRICS}  # get: rows from before a metric existed.
  mean["one_component_rate"] = _mean([float(r["mesh_components"] == 1) for r in rows])
  # An empty mesh (genus None, and so its true genus too) has not the true genus.
  mean["true_genus_rate"] = _mean(
    [float(r["mesh_genus"] is not None and r["mesh_genus"] == r["true_genus"]) for r in rows]
  )
  # None for bird and chair (no family is right), so the sweep's overall rate is over the analytic shapes.
  mean["fit_right_rate"] = _mean([r.get("fit_right") for r in rows])
  mean["janus_rate"] = _mean([float(r["janus"]) for r in rows]) if shape in world.ASYMMETRIC else None
  mean["num_seeds"] = len(rows)
  return _nan_to_none(mean)


def evaluate_run(workdir: str, classifier_dir: Optional[str] = None, **settings) -> dict:
  """Scores every seed of the run in workdir, writes workdir/evaluation.json (atomically) and refreshes
  workdir/report.html; returns the scores.

  settings: Scorer's keyword arguments (bound, resolution, threshold, num_rotations, num_views, elevation).
  A run whose latest checkpoint is short of its num_steps is scored with a warning, and the result says so
  ('finished': false, 'num_steps').
  """
  config = read_run_config(workdir)
  parse_run_caption(config.prompt)  # A prompt outside the world fails before anything is restored.
  step, per_seed_params = restore_params(workdir, config)
  if step < config.num_steps:
    logging.warning(
      "The run in '%s' is unfinished: its latest checkpoint is at step %d of num_steps=%d, so these scores are of "
      "an unfinished object. Run python -m dreamfusion_jax.main with its config and --workdir to finish it.",
      workdir,
      step,
      config.num_steps,
    )
  scorer = Scorer(config, classifier_dir, **settings)
  seeds = np.arange(config.num_seeds) + config.seed
  per_seed = {f"seed_{seed}": scorer.score(params, config.prompt) for seed, params in zip(seeds, per_seed_params)}
  result = scorer.result(config.prompt, step, per_seed)
  result.update(num_steps=config.num_steps, finished=step >= config.num_steps)
  files.write_json(os.path.join(workdir, "evaluation.json"), result)
  report.write_report(workdir)  # The page shows the new scores (a failure is a warning).
  return result


def validate_flags(resolution: int, bound: float, num_views: int, threshold: Optional[float]) -> None:
  """UserError (one paragraph) for a command-line setting evaluate can't score with."""
  if not 32 <= resolution <= 512:
    raise UserError(
      f"--resolution={resolution} must be in [32, 512]: cells per axis of the IoU grid (coarser grids can't resolve "
      f"the asymmetric shapes' fronts, finer ones need GBs per rotation). E.g. --resolution={RESOLUTION}."
    )
  if not (math.isfinite(bound) and world.WORLD_RADIUS <= bound <= 10.0):
    raise UserError(
      f"--bound={bound} must be a number in [{world.WORLD_RADIUS}, 10]: the half-size (world units) of the scored "
      f"cube, which must hold every true shape (radius {world.WORLD_RADIUS}). E.g. --bound={EVAL_BOUND}."
    )
  if not 1 <= num_views <= 360:
    raise UserError(f"--num_views={num_views} must be in [1, 360]: renders per seed. E.g. --num_views={NUM_VIEWS}.")
  if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
    raise UserError(
      f"--threshold={threshold} must be a finite density >= 0 (occupied where the density exceeds it), or left "
      "out for the run's own surface level."
    )


# ----------------------------------------------------------------------------- command line


def _define_flags():
  from absl import flags

  flags.DEFINE_string("workdir", None, "A finished run's directory (python -m dreamfusion_jax.main --workdir).")
  flags.DEFINE_string(
    "classifier_dir", None, "The judge's export folder (default: dreamfusion_jax/assets/classifier/)."
  )
  flags.DEFINE_integer("resolution", RESOLUTION, "Cells per axis of the IoU grid.")
  flags.DEFINE_float("bound", EVAL_BOUND, "Half-size of the IoU grid's cube (world units).")
  flags.DEFINE_integer("num_views", NUM_VIEWS, "Renders per seed for the R-Precisions.")
  flags.DEFINE_float("threshold", None, "Occupancy density level (default: the run's surface level, views.mesh_level).")
  compilation_cache.define_flag()
  flags.mark_flags_as_required(["workdir"])


def _main(argv):
  from absl import app, flags

  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  try:
    validate_flags(f.resolution, f.bound, f.num_views, f.threshold)
    compilation_cache.enable(f.compilation_cache)
    result = evaluate_run(
      f.workdir, f.classifier_dir, bound=f.bound, resolution=f.resolution, threshold=f.threshold, num_views=f.num_views
    )
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  summary = {k: result[k] for k in ("caption", "step", "num_steps", "finished", "mean")}
  print(json.dumps(summary))


def run() -> None:
  """The command line (python -m dreamfusion_jax.evaluate)."""
  from absl import app

  _define_flags()
  logs.quiet_orbax()
  app.run(_main)


if __name__ == "__main__":
  run()
