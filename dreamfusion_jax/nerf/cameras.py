"""Camera and light distributions, pinhole rays and view-dependent prompt suffixes.

Conventions (shared by the whole package):
  * World z is up. A camera at elevation `el`, azimuth `az` (degrees) and distance `d`
    sits at d * (cos el cos az, cos el sin az, sin el); azimuth 0 (+x axis) is the FRONT.
  * `c2w` is a [3, 3] rotation whose columns are (right, up, back) (OpenGL); the camera
    looks along -back.
  * Pixel (row i, col j) of an HxW image with focal f (pixels) has camera-frame direction
    ((j + 0.5 - W/2)/f, -(i + 0.5 - H/2)/f, -1).

A `Camera` is a plain dict of jnp arrays so that it can be jitted and vmapped:
    origin [3], c2w [3, 3], focal [] (pixels), elevation [] (deg), azimuth [] (deg),
    distance [], light_pos [3], target [3] (the look-at point; origin of the world for
    orbit cameras).
"""

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

Camera = dict  # str -> jnp.ndarray; see the module docstring for the keys.


_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class CameraConfig:
  """Random training cameras, DreamFusion appendix A (distances in scene units)."""

  # Elevation range in degrees (paper: [-10, 90]).
  elevation_range: tuple[float, float] = (-10.0, 90.0)
  # Azimuth range in degrees; 0 is the front (+x). Paper: [0, 360).
  azimuth_range: tuple[float, float] = (0.0, 360.0)
  # Camera distance from the origin, uniform (paper: U(1.0, 1.5)); may lie inside the bound.
  distance_range: tuple[float, float] = (1.0, 1.5)
  # Probability that elevation is uniform by area on the sphere band (sin(el) uniform)
  # instead of uniform in angle (paper: half the time each).
  uniform_area_prob: float = 0.5
  # Half-width of the uniform cube jitter added to the camera position (paper: U(-0.1, 0.1)^3).
  position_jitter: float = 0.1
  # Std of the Gaussian look-at point around the origin. The paper writes N(0, 0.2 I); we read
  # 0.2 as the standard deviation (as peers do), i.e. covariance 0.04 I.
  look_at_std: float = 0.2
  # Std of the Gaussian noise added to the world up vector (paper: N(0, 0.02 I); read as std).
  up_std: float = 0.02
  # Focal length as a multiple of the image size in pixels (paper: U(0.7, 1.35) * 64 px).
  focal_range: tuple[float, float] = (0.7, 1.35)
  # Std of the Gaussian light position around the camera position (paper: N(camera, I)).
  light_std: float = 1.0
  # Distance of the light from the origin: the Gaussian sample's direction is kept and its
  # length set to U(0.8, 1.5) (threestudio's reading of the paper).
  light_distance_range: tuple[float, float] = (0.8, 1.5)


def spherical_to_cartesian(elevation, azimuth, distance):
  """Position on a sphere. elevation, azimuth: [...] degrees; distance: [...]. Returns [..., 3]."""
  el = jnp.deg2rad(elevation)
  az = jnp.deg2rad(azimuth)
  return (
    jnp.stack([jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el)], axis=-1)
    * jnp.asarray(distance)[..., None]
  )


def _normalize(v, eps=_EPS):
  return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), eps)


def look_at(origin, target, up=(0.0, 0.0, 1.0)):
  """Camera-to-world rotation looking from `origin` [3] at `target` [3] with world `up` [3].

  Returns c2w [3, 3] with columns (right, up, back), det +1. When `up` is (nearly) parallel
  to the viewing direction the frame is undefined; we then fall back to a world axis that is
  far from parallel so the result stays finite (only measure-zero random cameras get there).
  """
  origin = jnp.asarray(origin, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  up = jnp.asarray(up, jnp.float32)
  back = _normalize(origin - target)
  right = jnp.cross(up, back)
  norm = jnp.linalg.norm(right)
  alt_up = jnp.where(jnp.abs(back[0]) < 0.9, jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.0]))
  right = jnp.where(norm < 1e-6, jnp.cross(alt_up, back), right)
  right = _normalize(right)
  cam_up = jnp.cross(back, right)
  return jnp.stack([right, cam_up, back], axis=-1)


def _orbit_c2w(elevation, azimuth):
  """Analytic look-at-origin frame; well defined at elevation +-90 (the el -> 90 limit)."""
  el = jnp.deg2rad(elevation)
  az = jnp.deg2rad(azimuth)
  back = jnp.stack([jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el)])
  right = jnp.stack([-jnp.sin(az), jnp.cos(az), jnp.zeros_like(az)])
  cam_up = jnp.cross(back, right)
  return jnp.stack([right, cam_up, back], axis=-1)


def orbit_camera(elevation, azimuth, distance, focal, light_pos=None) -> Camera:
  """Deterministic camera on a sphere looking at the origin with z up (no jitter).

  elevation, azimuth: [] degrees; distance: [] scene units; focal: [] pixels;
  light_pos: [3] or None (then the light sits at the camera, so shading is head-on).
  """
  elevation = jnp.asarray(elevation, jnp.float32)
  azimuth = jnp.asarray(azimuth, jnp.float32)
  distance = jnp.asarray(distance, jnp.float32)
  origin = spherical_to_cartesian(elevation, azimuth, distance)
  light_pos = origin if light_pos is None else jnp.asarray(light_pos, jnp.float32)
  return dict(
    origin=origin,
    c2w=_orbit_c2w(elevation, azimuth),
    focal=jnp.asarray(focal, jnp.float32),
    elevation=elevation,
    azimuth=azimuth,
    distance=distance,
    light_pos=light_pos,
    target=jnp.zeros(3, jnp.float32),
  )


def from_config(c) -> CameraConfig:
  """The CameraConfig of a run config's `camera` section (ml_collections; see base_config)."""
  return CameraConfig(
    elevation_range=tuple(c.elevation_range),
    distance_range=tuple(c.distance_range),
    focal_range=tuple(c.focal_range),
    look_at_std=c.look_at_std,
    position_jitter=c.position_jitter,
  )


def problem(cfg: CameraConfig) -> Optional[str]:
  """None if cfg's sampling ranges are usable; else what is wrong, starting with the field's name."""
  for name in ("distance_range", "focal_range"):
    lo, hi = getattr(cfg, name)
    if not 0 < lo <= hi:
      return f"{name}=({lo:g}, {hi:g}): MIN must be positive and at most MAX"
  for name in ("look_at_std", "position_jitter"):
    if getattr(cfg, name) < 0:
      return f"{name}={getattr(cfg, name):g} must be >= 0"
  return None


def sample_elevation(key, cfg: CameraConfig):
  """One elevation [] in degrees: uniform in angle, or (w.p. uniform_area_prob) by area."""
  k_mix, k_u = jax.random.split(key)
  lo, hi = cfg.elevation_range
  u = jax.random.uniform(k_u)
  el_angle = lo + (hi - lo) * u
  # Uniform by area on a band of the sphere <=> sin(elevation) uniform.
  s_lo, s_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
  el_area = jnp.rad2deg(jnp.arcsin(jnp.clip(s_lo + (s_hi - s_lo) * u, -1.0, 1.0)))
  return jnp.where(jax.random.uniform(k_mix) < cfg.uniform_area_prob, el_area, el_angle)


def sample_camera(key, cfg: CameraConfig, image_size: int, azimuth_scale=None) -> Camera:
  """One random training camera (jit/vmap-able over `key`).

  azimuth_scale: None, or a traced fraction r in [0, 1]: the sampled azimuth, taken in [-180, 180), is
  multiplied by r, so that the views gather around the front (azimuth 0) while r < 1 (threestudio's
  progressive view). r = 1 gives the same distribution as None (not the same bits).

  `elevation`, `azimuth` and `distance` in the result are the NOMINAL sampled values, before
  position jitter and look-at noise; they choose the view-dependent prompt, as in the paper.
  `origin`, `c2w` and `focal` are the camera actually rendered.
  """
  keys = jax.random.split(key, 8)
  elevation = sample_elevation(keys[0], cfg)
  azimuth = jax.random.uniform(keys[1], minval=cfg.azimuth_range[0], maxval=cfg.azimuth_range[1])
  if azimuth_scale is not None:
    azimuth = azimuth_scale * (jnp.mod(azimuth + 180.0, 360.0) - 180.0)
  distance = jax.random.uniform(keys[2], minval=cfg.distance_range[0], maxval=cfg.distance_range[1])
  jitter = jax.random.uniform(keys[3], (3,), minval=-cfg.position_jitter, maxval=cfg.position_jitter)
  origin = spherical_to_cartesian(elevation, azimuth, distance) + jitter
  target = cfg.look_at_std * jax.random.normal(keys[4], (3,))
  up = jnp.array([0.0, 0.0, 1.0]) + cfg.up_std * jax.random.normal(keys[5], (3,))
  focal = image_size * jax.random.uniform(keys[6], minval=cfg.focal_range[0], maxval=cfg.focal_range[1])
  k_dir, k_dist = jax.random.split(keys[7])
  light_dir = _normalize(origin + cfg.light_std * jax.random.normal(k_dir, (3,)))
  light_dist = jax.random.uniform(k_dist, minval=cfg.light_distance_range[0], maxval=cfg.light_distance_range[1])
  return dict(
    origin=origin,
    c2w=look_at(origin, target, up),
    focal=focal,
    elevation=elevation,
    azimuth=azimuth,
    distance=distance,
    light_pos=light_dir * light_dist,
    target=target,
  )


def generate_rays(camera: Camera, height: int, width: int):
  """Pinhole rays through pixel centres.

  Returns origins [H, W, 3] (world) and unit directions [H, W, 3] (world).
  """
  f = camera["focal"]
  j = jnp.arange(width, dtype=jnp.float32) + 0.5 - width / 2
  i = jnp.arange(height, dtype=jnp.float32) + 0.5 - height / 2
  x = jnp.broadcast_to(j[None, :] / f, (height, width))
  y = jnp.broadcast_to(-i[:, None] / f, (height, width))
  dirs_cam = jnp.stack([x, y, -jnp.ones_like(x)], axis=-1)
  directions = _normalize(dirs_cam @ camera["c2w"].T)
  origins = jnp.broadcast_to(camera["origin"], directions.shape)
  return origins, directions
