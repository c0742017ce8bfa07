"""Surface metrics: is a result a solid object, and how close does its surface lie to the true one?

The Shapes world knows every object's exact SDF, so each metric compares the result with the truth:
  normal_error_deg  mean angle between the result's rendered normals and the true object's, over the
                    pixels where both are opaque (opacity > OPAQUE), from the benchmark's views.
  fog               the share of the result's foreground pixels (opacity > FOREGROUND) whose opacity is
                    below SOLID: 0 for a solid object, 1 for a cloud.
  chamfer           the symmetric mean distance between points on the result's mesh and the true surface
                    (each way: the mean distance of points sampled on one surface to the other), as a
                    fraction of the true object's bounding-box diagonal.
  mesh_components   connected components of the result's mesh.
  mesh_genus        its genus (handles), from the Euler characteristic of its closed surfaces;
                    true_genus is the truth's, from the same computation on the true surface.
  extent_ratio      the result's bounding-box extents over the truth's, per axis (x, y, z), in the truth's
                    frame; extent_error is the largest |ratio - 1|.
"""

import functools
from typing import Callable

import numpy as np
import scipy.spatial
import skimage.measure
import trimesh

from dreamfusion_jax.shapes import world

OPAQUE = 0.5  # Opacity from which a pixel counts as opaque for the normal error.
FOREGROUND = 0.05  # Opacity from which a pixel belongs to the object (fog's denominator).
SOLID = 0.95  # Opacity from which a foreground pixel counts as solid (fog's numerator counts those below).
NUM_POINTS = 20_000  # Points sampled on each surface for the chamfer distance.
NEAREST_TRIANGLES = 8  # Triangles (by centroid) whose exact distance is computed per query point.
TRUTH_RESOLUTION = 160  # Grid points per axis of the true surface's marching cubes.
TRUTH_BOUND = 0.8  # Half-size of that grid (the world's objects lie within radius 0.65).


# ----------------------------------------------------------------------------- renders


def unit(v: np.ndarray) -> np.ndarray:
  """v [..., 3] scaled to unit length (zero vectors stay zero)."""
  norm = np.linalg.norm(v, axis=-1, keepdims=True)
  return np.where(norm > 0, v / np.maximum(norm, 1e-12), 0.0)


def normal_error_deg(
  normals: np.ndarray, opacity: np.ndarray, true_normals: np.ndarray, true_opacity: np.ndarray, opaque: float = OPAQUE
) -> float:
  """Mean angle (degrees) between two normal maps [..., 3] over pixels where both opacities [...] exceed
  `opaque`; NaN when no pixel does. Rendered normals are composited (sum of w_i n_i), so they are
  renormalised first."""
  both = (np.asarray(opacity) > opaque) & (np.asarray(true_opacity) > opaque)
  if not both.any():
    return float("nan")
  cos = np.sum(unit(np.asarray(normals, np.float64)[both]) * unit(np.asarray(true_normals, np.float64)[both]), -1)
  return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).mean())


def fog(opacity: np.ndarray, foreground: float = FOREGROUND, solid: float = SOLID) -> float:
  """Share of the foreground pixels (opacity > foreground) whose opacity is below `solid`; NaN without any."""
  opacity = np.asarray(opacity)
  fg = opacity > foreground
  if not fg.any():
    return float("nan")
  return float(np.count_nonzero(fg & (opacity < solid)) / np.count_nonzero(fg))


# ----------------------------------------------------------------------------- meshes


def sample_surface(mesh: trimesh.Trimesh, count: int = NUM_POINTS, seed: int = 0) -> np.ndarray:
  """count points [count, 3] uniformly by area on the mesh (fixed seed: the metric is deterministic)."""
  points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
  return np.asarray(points, np.float64)


def distance_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh, nearest: int = NEAREST_TRIANGLES) -> np.ndarray:
  """Distance [N] of each point to the mesh's surface: exact point-to-triangle distances to the `nearest`
  triangles by centroid (marching-cubes triangles are small and even, so the closest triangle is among them)."""
  triangles = np.asarray(mesh.triangles, np.float64)
  k = min(nearest, len(triangles))
  _, idx = scipy.spatial.cKDTree(triangles.mean(axis=1)).query(points, k=k)
  idx = np.asarray(idx).reshape(len(points), k)
  query = np.repeat(points, k, axis=0)
  closest = trimesh.triangles.closest_point(triangles[idx.reshape(-1)], query)
  return np.linalg.norm(closest - query, axis=-1).reshape(len(points), k).min(axis=1)


def chamfer(mesh: trimesh.Trimesh, truth: trimesh.Trimesh, count: int = NUM_POINTS) -> float:
  """Symmetric mean surface distance between mesh and truth (the mean of both directions), as a fraction
  of truth's bounding-box diagonal."""
  there = distance_to_mesh(sample_surface(mesh, count, seed=0), truth).mean()
  back = distance_to_mesh(sample_surface(truth, count, seed=1), mesh).mean()
  return float(0.5 * (there + back) / np.linalg.norm(truth.extents))


def genus(mesh: trimesh.Trimesh) -> int:
  """Total genus of a mesh of closed surfaces: sum over components of (2 - chi) / 2, chi = V - E + F."""
  components = len(mesh.split(only_watertight=False))
  return int(round((2 * components - mesh.euler_number) / 2))


def mesh_of_sdf(sdf: Callable, bound: float = TRUTH_BOUND, resolution: int = TRUTH_RESOLUTION) -> trimesh.Trimesh:
  """The zero level of sdf(points [N, 3]) -> [N] by marching cubes over [-bound, bound]^3, padded so that it
  is closed."""
  axis = np.linspace(-bound, bound, resolution)
  points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
  grid = np.asarray(sdf(points), np.float64).reshape((resolution,) * 3)
  spacing = axis[1] - axis[0]
  grid = np.pad(grid, 1, constant_values=max(float(grid.max()), spacing))
  verts, faces, _, _ = skimage.measure.marching_cubes(grid, level=0.0, spacing=(spacing,) * 3)
  return trimesh.Trimesh(vertices=verts - (bound + spacing), faces=faces, process=True)


def mesh_metrics(
  mesh: trimesh.Trimesh, truth: trimesh.Trimesh, angle_deg: float = 0.0, count: int = NUM_POINTS
) -> dict:
  """chamfer, mesh_components, mesh_genus, true_genus, extent_ratio and extent_error of a result's mesh
  against the true surface, the result being the truth turned by angle_deg about z (evaluate's
  best_angle_deg); the mesh is turned back into the truth's frame first."""
  vertices = np.asarray(world.rotate_z(np.asarray(mesh.vertices, np.float32), -angle_deg), np.float64)
  aligned = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False)
  ratio = aligned.extents / truth.extents
  return dict(
    chamfer=chamfer(aligned, truth, count),
    mesh_components=len(aligned.split(only_watertight=False)),
    mesh_genus=genus(aligned),
    true_genus=genus(truth),
    extent_ratio=[float(r) for r in ratio],
    extent_error=float(np.abs(ratio - 1.0).max()),
  )


@functools.lru_cache(maxsize=64)
def true_mesh(shape_index: int) -> trimesh.Trimesh:
  """The true surface of a Shapes-world shape (cached: every seed of a caption uses it)."""
  return mesh_of_sdf(lambda x: np.asarray(world.sdf(int(shape_index), x)))
