"""A run's scene and its fixed views: what training, validation, export and evaluation all render.

The run config's `field` and `render` blocks become a `Scene` and a `RenderConfig` here, once;
`orbit_view` is the one renderer of a seed's params from an orbit camera (validation sheets,
turntables, guidance previews and the Shapes benchmark's views). Renders made here take no key:
the same params give the same images.
"""

from typing import Any, Callable, Mapping, Optional

import jax.numpy as jnp

from dreamfusion_jax.nerf import cameras, render
from dreamfusion_jax.nerf.field import Scene


def make_scene(config) -> Scene:
  """The NeRF (field and background) of a run config's `field` block."""
  return Scene(**config.field.to_dict())


def make_render_config(config) -> render.RenderConfig:
  """The renderer's settings of a run config (`field.bound`, `render.num_coarse`, `render.num_fine`)."""
  return render.RenderConfig(
    bound=config.field.bound, num_coarse=config.render.num_coarse, num_fine=config.render.num_fine
  )


def mesh_level(config) -> float:
  """The density level of a run's surface (the exported mesh, the scored occupancy): export.mesh_threshold, or
  for 0 the field's own surface ('volsdf': s = 0, where the density is 0.5 / field.sdf_beta)."""
  if config.export.mesh_threshold > 0:
    return float(config.export.mesh_threshold)
  return 0.5 / config.field.sdf_beta


# The level of `surface_values` for a signed-distance field: it meshes 1 - s at 1, i.e. s = 0, with values that are
# positive deep inside (the marching cubes' zero padding then reads as outside).
SDF_MESH_LEVEL = 1.0


def surface_values(scene: Scene, config) -> tuple[Callable, float]:
  """(fn(params, x [N, 3]) -> [N], level): the values a run's surface is meshed from, inside where fn > level.

  A 'volsdf' field meshed at its own surface (export.mesh_threshold 0) is meshed from its signed distance,
  1 - s at level 1: s is linear across the surface, where its density (flat inside, flat outside, a step of
  width ~beta between) would leave marching cubes' linear interpolation a terraced surface. Other fields:
  the density at views.mesh_level.
  """
  if config.field.density_activation == "volsdf" and config.export.mesh_threshold <= 0:
    return (lambda p, x: SDF_MESH_LEVEL - scene.apply({"params": p}, x, method=Scene.sdf)), SDF_MESH_LEVEL
  return (lambda p, x: scene.apply({"params": p}, x, method=Scene.field)[0]), mesh_level(config)


def fixed_shading(mode: str, light_pos: jnp.ndarray) -> dict:
  """'albedo', 'shaded' or 'textureless' shading with a given light (validation and export)."""
  ambient, diffuse, white = render.SHADING_MODES[mode]
  return dict(
    ambient=jnp.float32(ambient), diffuse=jnp.float32(diffuse), textureless=jnp.float32(white), light_pos=light_pos
  )


def field_fns(scene: Scene, params: Any, beta=None):
  """(field_fn, background_fn) closures over params, as the renderer takes them; beta: a 'volsdf' field's
  (None: its field.sdf_beta)."""
  field_fn = lambda x: scene.apply({"params": params}, x, beta, method=Scene.field)
  background_fn = lambda d: scene.apply({"params": params}, d, method=Scene.background)
  return field_fn, background_fn


def white(directions: jnp.ndarray) -> jnp.ndarray:
  """A white background (any ray direction)."""
  return jnp.ones_like(directions)


def display_background(config, learned: Callable) -> Callable:
  """The background a fixed view shows: the learned one, or white when the run trained on random colours.

  A run with render.background='random' never trains its learned background, so showing it would
  show an untrained network.
  """
  return white if config.render.background == "random" else learned


def orbit_view(
  field_fn: Callable,
  backgrounds: Mapping[str, Callable],
  rcfg: render.RenderConfig,
  elevation,
  azimuth,
  *,
  distance: float,
  focal: float,
  size: int,
  light_pos: Optional[jnp.ndarray] = None,
) -> dict:
  """Renders one orbit view of a field in each shading mode of `backgrounds` (mode -> background_fn).

  elevation, azimuth: degrees; distance: world units; focal: pixels; size: the square image's side.
  light_pos: [3] world position (default: the orbit camera's own light). Returns {mode: render_image's
  dict}, rendered in the order of `backgrounds`.
  """
  cam = cameras.orbit_camera(elevation, azimuth, distance, focal)
  light = cam["light_pos"] if light_pos is None else light_pos
  return {
    mode: render.render_image(None, field_fn, background_fn, cam, fixed_shading(mode, light), rcfg, size, size)
    for mode, background_fn in backgrounds.items()
  }
