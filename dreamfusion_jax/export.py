"""Export a trained scene: marching-cubes mesh (textured glb and obj, vertex-coloured ply), turntable mp4,
contact sheet png.

This module only takes callables, so it does not depend on the field or the renderer:

    density_fn(points [N, 3] world units) -> density [N] (per world unit; jax or numpy)
    albedo_fn(points [N, 3] world units) -> albedo [N, 3] in [0, 1]
    render_view_fn(elevation_deg, azimuth_deg) -> dict(
        rgb [H, W, 3] in [0, 1]           (composited over the background),
        textureless [H, W, 3] in [0, 1]   (white albedo, shaded),
        normals [H, W, 3] in [-1, 1]      (world normals, composited; need not be unit length),
        opacity [H, W] in [0, 1]          (optional; normals panel is composited over white with it))

World convention (see SPEC): z is up, azimuth 0 looks at the front from +x. PLY files keep these
coordinates; GLB and OBJ files are rotated to glTF's convention (+Y up, front facing +Z, which OBJ
importers assume too) so viewers show the object upright and facing the viewer.

All files are written atomically (temp file in the same directory, then os.replace), so a crash
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import warnings
from typing import Callable, Mapping

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import skimage.measure
import trimesh
from PIL import Image

from dreamfusion_jax import files, texture

# Density above which a point counts as "inside" the surface, per world unit. Densities are
# per unit length, so what a threshold means depends on a length: over a path of length L a
# constant density sigma gives opacity 1 - exp(-sigma * L). At sigma = 10, 0.1 world units
# (~1/28 of the default 2.8-unit scene, ~5 voxels of a 128^3 export grid at bound 1.4) are 63%
# opaque and one 128^3 voxel (0.022 units) is 20% opaque: clearly visible in renders, yet well
# below the density of converged surfaces (hundreds to thousands), so the isosurface sits near
# the visible skin rather than in the haze around it. It is also what stable-dreamfusion uses
# with exp density, so users' expectations transfer. The untrained blob (exp(5 exp(-r^2/0.08)))
# crosses 10 at r ~ 0.25, so even an early checkpoint exports a non-empty mesh.
DEFAULT_MESH_THRESHOLD = 10.0

# Components with fewer faces than this fraction of the largest component are floaters.
DEFAULT_MIN_FRACTION = 0.1

# Points per density_fn call: 2^16 points bounds activation memory of a hash-grid field to a
# few hundred MB while keeping the number of calls small (32 for a 128^3 grid).
DEFAULT_CHUNK = 1 << 16

# Side of the baked albedo texture (texels): threestudio's and stable-dreamfusion's default.
DEFAULT_TEXTURE_SIZE = 1024

# mp4 frames shorter than this are upscaled (nearest, integer factor) so 64 px renders are watchable.
MIN_VIDEO_HEIGHT = 256

# Colour of empty space in the normals panel (white, like the textureless panel's typical bg).
NORMALS_BACKGROUND = 1.0

# Rotation taking our z-up world (front = +x) to glTF's frame (+Y up, front = +Z):
# glTF (X, Y, Z) = world (y, z, x). A cyclic permutation, so a proper rotation (det = +1).
_WORLD_TO_GLTF = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


class EmptyMeshError(ValueError):
  """The density grid never crosses the threshold, so marching cubes has no surface.

  Attributes: density_min, density_max, threshold (floats), and `written` (dict of the paths
  export_fields still wrote before raising; empty when raised by extract_mesh).
  """

  def __init__(self, message: str, *, density_min: float, density_max: float, threshold: float):
    super().__init__(message)
    self.density_min = density_min
    self.density_max = density_max
    self.threshold = threshold
    self.written: dict[str, str] = {}


# ----------------------------------------------------------------------------- mesh


def lattice_points(bound: float, resolution: int) -> np.ndarray:
  """Regular grid over [-bound, bound]^3: [R, R, R, 3] float32 world coords, index (i, j, k) -> (x_i, y_j, z_k)."""
  axis = np.linspace(-bound, bound, resolution, dtype=np.float32)
  return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def _eval_chunked(fn: Callable, points: np.ndarray, chunk: int, out_shape: tuple[int, ...]) -> np.ndarray:
  """Evaluates fn(points [chunk, 3]) -> [chunk, *out_shape] over [N, 3] points in fixed-size chunks.

  Every call gets exactly `chunk` points (the tail is padded by repeating the last point), so a
  jitted fn compiles once for the density grid and the mesh colours together.
  """
  n = points.shape[0]
  out = np.empty((n,) + out_shape, np.float32)
  if n == 0:
    return out
  for start in range(0, n, chunk):
    part = points[start : start + chunk]
    size = part.shape[0]
    if size < chunk:
      part = np.concatenate([part, np.repeat(part[-1:], chunk - size, axis=0)])
    values = np.asarray(fn(part), dtype=np.float32)
    expected = (part.shape[0],) + out_shape
    if values.shape != expected:
      raise ValueError(f"callable returned shape {values.shape} for {part.shape[0]} points; expected {expected}")
    out[start : start + size] = values[:size]
  return out


def density_grid(density_fn: Callable, bound: float, resolution: int, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
  """Density (per world unit) on the grid of `lattice_points(bound, resolution)`: [R, R, R] float32.

  density_fn(points [N, 3] world) -> [N]; called with at most `chunk` points at a time.
  Raises ValueError if any density is NaN (a broken checkpoint should not export silently).
  """
  if resolution < 2:
    raise ValueError(f"mesh resolution must be >= 2, got {resolution}")
  points = lattice_points(bound, resolution).reshape(-1, 3)
  grid = _eval_chunked(density_fn, points, chunk, ()).reshape(resolution, resolution, resolution)
  num_nan = int(np.isnan(grid).sum())
  if num_nan:
    raise ValueError(
      f"density_fn returned {num_nan} NaN values on the {resolution}^3 export grid; "
      "the checkpoint is broken (check the training log for non-finite losses)"
    )
  return grid


def silhouette_level(grid: np.ndarray, cell: float, opacity: float = 0.5) -> float:
  """The density level whose solid {density > level} has the same silhouettes as the renders.

  grid: densities [R, R, R] (per world unit) on a regular grid of spacing `cell` (world units).
  Seen orthographically along each grid axis, a ray is inside the RENDERED silhouette where its
  opacity 1 - exp(-sum(density) * cell) exceeds `opacity`, and inside the LEVEL SET's silhouette
  where its largest density exceeds the level. Returns the level that maximises the IoU of the two
  silhouettes pooled over the three axes: a crisp surface gets a level between the density of
  empty space and the surface's, and a fog gets the level at which its renders turn opaque. The
  level lies halfway (geometrically) between the two ray maxima around the best cut. ValueError
  when no ray reaches that opacity (nothing to match).
  """
  grid = np.asarray(grid, np.float64)
  peak = np.concatenate([grid.max(axis=a).ravel() for a in range(3)])
  seen = np.concatenate([grid.sum(axis=a).ravel() for a in range(3)]) * cell > -np.log1p(-opacity)
  if not seen.any():
    raise ValueError(
      f"no ray through the density grid reaches opacity {opacity} (the largest density is "
      f"{grid.max():.3g}): the volume is empty, so no level matches its renders"
    )
  order = np.argsort(-peak, kind="stable")
  peak, seen = peak[order], seen[order]
  inter = np.cumsum(seen)  # Cut after ray k: the level set's silhouette is the k+1 rays of largest peak.
  ious = inter / (seen.sum() + np.arange(1, len(peak) + 1) - inter)
  below = np.append(peak[1:], 0.0)
  k = int(np.argmax(np.where(peak > below, ious, -1.0)))  # Only cuts between distinct peaks.
  return float(np.sqrt(peak[k] * below[k]) if below[k] > 0 else 0.5 * peak[k])


def _check_crossing(grid: np.ndarray, threshold: float) -> None:
  lo, hi = float(grid.min()), float(grid.max())
  if hi < threshold:
    raise EmptyMeshError(
      f"empty mesh: density on the export grid lies in [{lo:.4g}, {hi:.4g}], entirely below the "
      f"threshold {threshold:.4g}, so no surface crosses it. Lower `export.mesh_threshold` "
      f"(e.g. to {hi / 2:.3g}) or train longer so the density grows.",
      density_min=lo,
      density_max=hi,
      threshold=threshold,
    )
  if lo > threshold:
    raise EmptyMeshError(
      f"empty mesh: density on the export grid lies in [{lo:.4g}, {hi:.4g}], entirely above the "
      f"threshold {threshold:.4g}, so the whole box is 'inside' and no surface crosses it. Raise "
      f"`export.mesh_threshold` above {lo:.3g}, or train longer so empty space clears.",
      density_min=lo,
      density_max=hi,
      threshold=threshold,
    )


def _to_rgba8(colors: np.ndarray) -> np.ndarray:
  """[N, 3] floats in [0, 1] -> [N, 4] uint8 with opaque alpha."""
  colors = np.asarray(colors, np.float32)
  if np.isnan(colors).any():
    raise ValueError("albedo_fn returned NaN colours")
  rgb = np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
  return np.concatenate([rgb, np.full((rgb.shape[0], 1), 255, np.uint8)], axis=1)


def extract_mesh(
  density_fn: Callable,
  albedo_fn: Callable | None,
  *,
  bound: float,
  resolution: int = 128,
  threshold: float = DEFAULT_MESH_THRESHOLD,
  min_fraction: float = DEFAULT_MIN_FRACTION,
  chunk: int = DEFAULT_CHUNK,
  max_faces: int = 0,
) -> trimesh.Trimesh:
  """Marching-cubes surface {density = threshold} over [-bound, bound]^3, with vertex colours.

  Args:
    density_fn: points [N, 3] world -> density [N] per world unit.
    albedo_fn: points [N, 3] world -> albedo [N, 3] in [0, 1]; None gives mid grey.
    bound: half-width of the export cube, world units (the scene sphere's radius).
    resolution: grid points per axis; vertex positions are accurate to ~2 bound / (resolution - 1).
    threshold: density level of the surface (> 0); see DEFAULT_MESH_THRESHOLD for the reasoning.
    min_fraction: clean_floaters' cutoff.
    chunk: points per callable call.
    max_faces: the face budget: a larger surface is decimated to it (texture.decimate); 0: no budget.
  Returns:
    A closed, outward-oriented trimesh.Trimesh in world coords with RGBA uint8 vertex colours.
  Raises:
    EmptyMeshError if no grid value lies on each side of the threshold.
  """
  if not threshold > 0:
    raise ValueError(f"mesh threshold must be > 0 (densities are non-negative), got {threshold}")
  grid = density_grid(density_fn, bound, resolution, chunk)
  _check_crossing(grid, threshold)
  # exp density can overflow to +inf; inf is "very inside", but marching cubes' interpolation
  # needs finite values.
  grid = np.minimum(grid, np.finfo(np.float32).max / 4)
  # One layer of zero density around the box closes surfaces that touch the box's faces, so
  # the mesh is always watertight (and its signed volume says which way it is wound).
  padded = np.pad(grid, 1, constant_values=0.0)
  spacing = 2.0 * bound / (resolution - 1)
  # skimage's 'descent' winds faces inward for an object whose values exceed the level;
  # 'ascent' winds them outward. The signed-volume check below guarantees it either way.
  verts, faces, _, _ = skimage.measure.marching_cubes(
    padded, level=threshold, spacing=(spacing,) * 3, gradient_direction="ascent", allow_degenerate=False
  )
  verts = verts - (bound + spacing)  # undo the index offset and the one-voxel pad
  mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
  if mesh.volume < 0:
    mesh.invert()
  mesh = texture.decimate(clean_floaters(mesh, min_fraction), max_faces)
  if albedo_fn is None:
    colors = np.full((len(mesh.vertices), 3), 0.5, np.float32)
  else:
    colors = _eval_chunked(albedo_fn, np.asarray(mesh.vertices, np.float32), chunk, (3,))
  mesh.visual.vertex_colors = _to_rgba8(colors)
  return mesh


def clean_floaters(mesh: trimesh.Trimesh, min_fraction: float = DEFAULT_MIN_FRACTION) -> trimesh.Trimesh:
  """Keeps the largest connected component and every component with >= min_fraction of its faces.

  Also drops degenerate faces and unreferenced vertices. Vertex colours are preserved.
  """
  parts = mesh.split(only_watertight=False)
  if len(parts) > 1:
    largest = max(len(p.faces) for p in parts)
    kept = [p for p in parts if len(p.faces) >= min_fraction * largest]
    mesh = trimesh.util.concatenate(kept)
  else:
    mesh = mesh.copy()
  mesh.update_faces(mesh.nondegenerate_faces())
  mesh.remove_unreferenced_vertices()
  return mesh


# ----------------------------------------------------------------------------- files


def textured_mesh(
  mesh: trimesh.Trimesh, albedo_fn: Callable | None, size: int = DEFAULT_TEXTURE_SIZE, chunk: int = DEFAULT_CHUNK
) -> trimesh.Trimesh:
  """The mesh UV-unwrapped, with albedo_fn (None: mid grey) baked into a [size, size] texture (texture.textured).

  World coordinates; its visual is a TextureVisuals whose PBR material has the texture as its base colour (no
  vertex colours, which glTF viewers would multiply with it). Vertices are split along the charts' seams.
  """
  if albedo_fn is None:
    albedo_fn = lambda x: np.full((x.shape[0], 3), 0.5, np.float32)
  sample = lambda points: _eval_chunked(albedo_fn, points, chunk, (3,))
  vertices, faces, uv, image = texture.textured(mesh, sample, size)
  material = trimesh.visual.material.PBRMaterial(
    name="texture", baseColorTexture=Image.fromarray(to_uint8(image)), metallicFactor=0.0, roughnessFactor=1.0
  )
  out = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
  out.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
  return out


MESH_FILES = ("mesh.glb", "mesh.obj", "mesh.mtl", "texture.png", "mesh.ply")


def write_mesh(mesh: trimesh.Trimesh, directory: str, textured: trimesh.Trimesh | None = None) -> dict[str, str]:
  """Writes mesh.ply (world frame: +Z up, vertex colours) and, in glTF's frame (+Y up, front +Z), mesh.glb and
  mesh.obj + mesh.mtl + texture.png (the texture as base colour) when `textured` (textured_mesh) is given, else
  mesh.glb with vertex colours.

  Returns {'glb', 'ply'[, 'obj', 'mtl', 'texture']: path}.
  """
  os.makedirs(directory, exist_ok=True)
  paths = {"glb": os.path.join(directory, "mesh.glb"), "ply": os.path.join(directory, "mesh.ply")}
  gltf_mesh = (mesh if textured is None else textured).copy()
  gltf_mesh.apply_transform(_WORLD_TO_GLTF)
  files.write_bytes(paths["glb"], gltf_mesh.export(file_type="glb"))
  files.write_bytes(paths["ply"], mesh.export(file_type="ply"))
  if textured is not None:
    paths.update(_write_obj(gltf_mesh, directory))
  return paths


def _write_obj(mesh: trimesh.Trimesh, directory: str) -> dict[str, str]:
  """mesh.obj, mesh.mtl and texture.png of a textured mesh (its coordinates as they are)."""
  image = mesh.visual.material.baseColorTexture
  # A white diffuse colour: OBJ's Kd multiplies map_Kd in most renderers.
  material = trimesh.visual.material.SimpleMaterial(
    name="texture", image=image, diffuse=(255, 255, 255, 255), ambient=(255, 255, 255, 255), specular=(0, 0, 0, 255)
  )
  obj = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
  obj.visual = trimesh.visual.TextureVisuals(uv=mesh.visual.uv, material=material)
  text, extra = trimesh.exchange.obj.export_obj(
    obj, include_normals=False, include_color=False, return_texture=True, mtl_name="mesh.mtl"
  )
  if sorted(extra) != ["mesh.mtl", "texture.png"]:  # trimesh names the image after the material.
    raise RuntimeError(f"trimesh's OBJ export wrote {sorted(extra)}, not mesh.mtl and texture.png")
  paths = {
    "texture": os.path.join(directory, "texture.png"),
    "mtl": os.path.join(directory, "mesh.mtl"),
    "obj": os.path.join(directory, "mesh.obj"),
  }
  for key, name in (("texture", "texture.png"), ("mtl", "mesh.mtl")):
    files.write_bytes(paths[key], extra[name])
  files.write_bytes(paths["obj"], text.encode())  # Last: an obj on disk finds its mtl and texture.
  return paths


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image(s) in [0, 1] (clipped) -> uint8; uint8 passes through. Raises on NaN."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  if np.isnan(image).any():
    raise ValueError("image contains NaN values; the render is broken")
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str, image: np.ndarray) -> str:
  """Writes an [H, W, 3] image (uint8, or float in [0, 1]) as PNG; returns path."""
  files.atomic_write(path, lambda tmp: iio.imwrite(tmp, to_uint8(image), extension=".png"))
  return path


def _video_ready(frames: np.ndarray, min_height: int) -> np.ndarray:
  """Nearest-neighbour integer upscale to >= min_height rows, then edge-pad H and W to even sizes."""
  frames = to_uint8(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
    raise ValueError(f"frames must be [T>0, H, W, 3], got {frames.shape}")
  height = frames.shape[1]
  if height < min_height:
    factor = math.ceil(min_height / height)
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # yuv420p subsamples chroma 2x2
  if pad_h or pad_w:
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  return frames


def write_video(path: str, frames: np.ndarray, fps: float = 30, min_height: int = MIN_VIDEO_HEIGHT) -> str:
  """Writes frames [T, H, W, 3] (uint8, or float in [0, 1]) as H.264/yuv420p mp4; returns path.

  Frames shorter than min_height are upscaled by an integer factor (nearest); odd sizes are
  padded by one edge pixel, since yuv420p needs even width and height.
  """
  frames = _video_ready(frames, min_height)

  def write(tmp: str) -> None:
    with warnings.catch_warnings():
      # JAX warns on any os.fork; imageio-ffmpeg's subprocess forks and immediately execs
      # ffmpeg (no Python runs in the child), which is the safe case the warning is not about.
      warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
      _encode(tmp)

  def _encode(tmp: str) -> None:
    # macro_block_size=1: we already made sizes even; imageio's default (16) would resize.
    writer = imageio_v2.get_writer(
      tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1, quality=8
    )
    try:
      for frame in frames:
        writer.append_data(frame)
    finally:
      writer.close()

  files.atomic_write(path, write)
  return path


def contact_sheet(images: np.ndarray, ncols: int, fill: int = 255) -> np.ndarray:
  """Tiles images [N, H, W, 3] row-major into a uint8 [ceil(N / ncols) H, ncols W, 3] grid; empty cells = fill."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  if ncols < 1:
    raise ValueError(f"ncols must be >= 1, got {ncols}")
  nrows = math.ceil(n / ncols)
  sheet = np.full((nrows * ncols, h, w, c), fill, np.uint8)
  sheet[:n] = images
  return sheet.reshape(nrows, ncols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(nrows * h, ncols * w, c)


# ----------------------------------------------------------------------------- renders

PANEL_KINDS = ("rgb", "textureless", "normals")  # left to right in every frame


def normals_to_color(normals: np.ndarray, opacity: np.ndarray | None = None) -> np.ndarray:
  """World normals [H, W, 3] in [-1, 1] -> colours n * 0.5 + 0.5 in [0, 1].

  Composited normals are shorter than 1 where opacity < 1, so they are renormalised first; with
  `opacity` [H, W] the colour is composited over NORMALS_BACKGROUND (empty space shows as white).
  """
  normals = np.asarray(normals, np.float32)
  norm = np.linalg.norm(normals, axis=-1, keepdims=True)
  unit = np.where(norm > 1e-6, normals / np.maximum(norm, 1e-6), 0.0)
  color = unit * 0.5 + 0.5
  if opacity is not None:
    alpha = np.clip(np.asarray(opacity, np.float32), 0.0, 1.0)[..., None]
    color = alpha * color + (1.0 - alpha) * NORMALS_BACKGROUND
  return color


def render_panels(render_view_fn: Callable, elevation: float, azimuth: float) -> np.ndarray:
  """One view as three uint8 panels [3, H, W, 3] in PANEL_KINDS order."""
  out: Mapping = render_view_fn(float(elevation), float(azimuth))
  opacity = out.get("opacity")
  panels = [
    np.asarray(out["rgb"], np.float32),
    np.asarray(out["textureless"], np.float32),
    normals_to_color(out["normals"], opacity),
  ]
  return to_uint8(np.stack(panels))


def turntable_azimuths(num_frames: int) -> np.ndarray:
  """[T] azimuths in degrees, 360 / T apart starting at 0 (front); 360 is excluded so the loop is seamless."""
  return np.arange(num_frames) * (360.0 / num_frames)


def turntable_frames(render_view_fn: Callable, num_frames: int, elevation: float) -> np.ndarray:
  """Renders a 360-degree orbit: uint8 [T, H, 3 W, 3], each frame colour | textureless | normals.

  render_view_fn(elevation_deg, azimuth_deg) -> dict(rgb, textureless [H, W, 3] in [0, 1],
  normals [H, W, 3] world in [-1, 1], optional opacity [H, W]); see module docstring.
  """
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}")
  frames = []
  for azimuth in turntable_azimuths(num_frames):
    panels = render_panels(render_view_fn, elevation, azimuth)
    frames.append(np.concatenate(list(panels), axis=1))
  return np.stack(frames)


def sheet_picks(num_frames: int, num_views: int = 8) -> np.ndarray:
  """Indices of the num_views turntable frames evenly spaced in azimuth (all frames if fewer)."""
  n = min(num_views, num_frames)
  return np.unique(np.floor(np.arange(n) * num_frames / n).astype(int))


def turntable_sheet(frames: np.ndarray, num_views: int = 8) -> np.ndarray:
  """Contact sheet from turntable frames [T, H, 3 W, 3]: rows = kinds (colour, textureless, normals),
  columns = num_views frames evenly spaced in azimuth (all frames if T < num_views)."""
  num_frames, height, width3, _ = frames.shape
  width = width3 // len(PANEL_KINDS)
  picks = sheet_picks(num_frames, num_views)
  panels = frames[picks].reshape(len(picks), height, len(PANEL_KINDS), width, 3).transpose(2, 0, 1, 3, 4)
  return contact_sheet(panels.reshape(-1, height, width, 3), ncols=len(picks))


def truth_sheet(truth_view_fn: Callable, num_frames: int, elevation: float, num_views: int = 8) -> np.ndarray:
  """The true object's rows of views.png: turntable_sheet of the frames it picks, rendered by truth_view_fn."""
  azimuths = turntable_azimuths(num_frames)[sheet_picks(num_frames, num_views)]
  frames = np.stack([np.concatenate(list(render_panels(truth_view_fn, elevation, a)), axis=1) for a in azimuths])
  return turntable_sheet(frames, num_views)


# What export_fields writes, in parts that are written whole: the renders (one set of frames) and the mesh files
# (one mesh and its atlas).
PARTS = {"renders": ("turntable.mp4", "views.png"), "mesh": MESH_FILES}


def missing_parts(directory: str) -> tuple[str, ...]:
  """The PARTS with a file missing from directory (all of them when it does not exist)."""
  return tuple(
    part for part, names in PARTS.items() if not all(os.path.isfile(os.path.join(directory, n)) for n in names)
  )


def export_fields(
  directory: str,
  density_fn: Callable,
  albedo_fn: Callable | None,
  render_view_fn: Callable,
  *,
  bound: float,
  mesh_resolution: int = 128,
  mesh_threshold: float = DEFAULT_MESH_THRESHOLD,
  num_frames: int = 120,
  fps: float = 30,
  elevation: float = 15.0,
  num_views: int = 8,
  chunk: int = DEFAULT_CHUNK,
  truth_view_fn: Callable | None = None,
  texture_size: int = DEFAULT_TEXTURE_SIZE,
  max_faces: int = 0,
  parts: tuple[str, ...] = tuple(PARTS),
) -> dict[str, str]:
  """Writes turntable.mp4 and views.png ('renders'), and mesh.glb, mesh.obj (+ mesh.mtl, texture.png) and mesh.ply
  ('mesh') into directory, the parts in `parts` (PARTS' keys); returns {name: path} of what it wrote.

  truth_view_fn: renders the true object like render_view_fn (a Shapes caption): views.png then shows
  its rows above the result's, from the same cameras.
  texture_size: the baked texture's side (texels); max_faces: the mesh's face budget (0: none).

  Keys: 'video', 'views', 'glb', 'ply', 'obj', 'mtl', 'texture'. The mesh is made on a worker thread while the
  views are rendered. If the mesh is empty, the renders are still written and the EmptyMeshError is raised
  afterwards, with `error.written` holding the paths that were written, so a caller can report them and the fix
  without losing the renders.
  """
  unknown = set(parts) - set(PARTS)
  if unknown:
    raise ValueError(f"unknown export parts {sorted(unknown)}; expected some of {list(PARTS)}")
  os.makedirs(directory, exist_ok=True)

  def make_mesh():
    mesh = extract_mesh(
      density_fn,
      albedo_fn,
      bound=bound,
      resolution=mesh_resolution,
      threshold=mesh_threshold,
      chunk=chunk,
      max_faces=max_faces,
    )
    return mesh, textured_mesh(mesh, albedo_fn, texture_size, chunk)

  written = {}
  # The mesh (mostly single-threaded numpy and xatlas) is made on a worker thread while this one renders the
  # frames (XLA, which leaves most of a second core idle): on a 2-core CPU they overlap.
  with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="export_mesh") as pool:
    meshing = pool.submit(make_mesh) if "mesh" in parts else None
    if "renders" in parts:
      frames = turntable_frames(render_view_fn, num_frames, elevation)
      sheet = turntable_sheet(frames, num_views)
      if truth_view_fn is not None:
        sheet = np.concatenate([truth_sheet(truth_view_fn, num_frames, elevation, num_views), sheet])
      written["video"] = write_video(os.path.join(directory, "turntable.mp4"), frames, fps=fps)
      written["views"] = write_png(os.path.join(directory, "views.png"), sheet)
    if meshing is not None:
      try:
        mesh, textured = meshing.result()
      except EmptyMeshError as error:
        error.written = written
        raise
      written.update(write_mesh(mesh, directory, textured))
  return written
