"""Textured meshes: a face budget (quadric decimation), a UV atlas (xatlas) and a field's albedo baked into it.

What threestudio and stable-dreamfusion ship beside their vertex-coloured meshes: vertex colours hold one colour
per vertex, so a coarse mesh blurs the albedo; a texture holds it at the texture's resolution, whatever the mesh.

Texture convention (glTF's and OpenGL's): texel (row, col) of a [S, S] image covers u in [col, col + 1] / S and
v in [S - 1 - row, S - row] / S, so its centre is at u = (col + 0.5) / S, v = 1 - (row + 0.5) / S (v = 0 is the
image's bottom row). Every texel a triangle covers holds the field's albedo at the surface point of its centre;
the texels around each chart hold the albedo extrapolated along the chart's plane, and the rest of the image
the nearest chart's colour, so bilinear sampling and mipmaps near a seam never blend in an unrelated colour.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.ndimage
import trimesh

# Texels of extrapolated albedo around every chart (xatlas keeps charts this far apart in the atlas). Two
# would do for bilinear sampling; four keep a few mip levels clean.
PADDING = 4

# Candidate (face, texel) pairs tested at once by `rasterise`: bounds its memory to ~150 MB.
RASTER_CHUNK = 1 << 20


def _require(module: str, package: str):
  """Imports an optional dependency of the textured export, or raises ImportError naming the pip package."""
  try:
    return __import__(module)
  except ImportError as e:
    raise ImportError(
      f"The textured mesh export needs the package '{package}' ({e}). Install it with `pip install {package}` "
      "(or `pip install -e .`, which lists it), or turn the exports off with --config.export.enabled=false."
    ) from None


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
  """The mesh with at most max_faces faces by quadric error decimation (fast-simplification); 0: unchanged.

  A mesh within the budget is returned as it is. Vertex colours are dropped (recompute them at the new
  vertices); the winding stays outward.
  """
  if max_faces <= 0 or len(mesh.faces) <= max_faces:
    return mesh
  fast_simplification = _require("fast_simplification", "fast-simplification")
  vertices, faces = fast_simplification.simplify(
    np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64), target_count=max_faces
  )
  out = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
  out.update_faces(out.nondegenerate_faces())
  out.remove_unreferenced_vertices()
  if out.volume < 0:
    out.invert()
  return out


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int = PADDING):
  """A UV atlas of a mesh for a [size, size] texture (xatlas).

  vertices [V, 3], faces [F, 3]. Returns (vmap [V'] int: the input vertex of each output vertex (vertices are
  split along the charts' seams), faces [F', 3] into the output vertices (the input's order, less the slivers
  xatlas leaves uncharted), uv [V', 2] in [0, 1]). Charts are packed `padding` texels apart.
  """
  xatlas = _require("xatlas", "xatlas")
  atlas = xatlas.Atlas()
  atlas.add_mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.uint32))
  pack = xatlas.PackOptions()
  pack.resolution = size
  pack.padding = padding
  pack.bilinear = True
  atlas.generate(xatlas.ChartOptions(), pack)
  vmap, new_faces, uv = atlas[0]
  vmap, new_faces, uv = np.asarray(vmap, np.int64), np.asarray(new_faces, np.int64), np.asarray(uv, np.float64)
  # xatlas charts no triangle it deems degenerate (marching cubes' slivers, ~1e-3 of a typical face's area): it
  # gives their own copies of their corners uv (0, 0), which would colour those copies with one texel of
  # another chart. Dropped, they leave no visible hole.
  corners = uv[new_faces]
  ab, ac = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
  area = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
  new_faces = new_faces[np.abs(area) > 0]
  used = np.unique(new_faces)
  renumber = np.zeros(len(vmap), np.int64)
  renumber[used] = np.arange(len(used))
  return vmap[used], renumber[new_faces], uv[used]


def texel_coordinates(uv: np.ndarray, size: int) -> np.ndarray:
  """uv [..., 2] in [0, 1] -> [..., 2] (x, y) in texel units, texel (row, col)'s centre at (col + 0.5, row + 0.5)."""
  uv = np.asarray(uv, np.float64)
  return np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], axis=-1)


def _barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
  """Barycentric coordinates [N, 3] of 2D points [N, 2] in triangles corners [N, 3, 2] (any sign: outside too).

  Degenerate triangles (zero area) give NaN, which no comparison accepts.
  """
  a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
  v0, v1, v2 = b - a, c - a, points - a
  det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
  with np.errstate(divide="ignore", invalid="ignore"):
    l1 = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / det
    l2 = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / det
  return np.stack([1.0 - l1 - l2, l1, l2], axis=-1)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Distance [N] from 2D points [N, 2] to the segments a-b ([N, 2] each)."""
  ab, ap = b - a, points - a
  length2 = np.sum(ab * ab, axis=-1)
  with np.errstate(divide="ignore", invalid="ignore"):
    t = np.where(length2 > 0, np.clip(np.sum(ap * ab, axis=-1) / length2, 0.0, 1.0), 0.0)
  return np.linalg.norm(ap - t[:, None] * ab, axis=-1)


def rasterise(
  corners: np.ndarray, size: int, padding: int = PADDING, only: np.ndarray | None = None, chunk: int = RASTER_CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The triangle nearest each texel's centre, within `padding` texels: vectorised over (triangle, texel) pairs.

  corners: [F, 3, 2] the triangles' corners in texel units (texel_coordinates). Returns face [size, size] int
  (-1: no triangle that near), bary [size, size, 3] (the centre's barycentric coordinates in that triangle,
  negative ones outside it; 0 where none) and distance [size, size] (texels from the centre to the triangle: 0
  inside; inf where none). Each triangle is tested against the texels of its bounding box grown by `padding`
  (only: [size, size] bool, the texels to consider; None: all); of several triangles at one distance (a centre on
  a shared edge) any one wins.
  """
  corners = np.asarray(corners, np.float64)
  best = np.full(size * size, np.inf)
  face = np.full(size * size, -1, np.int64)
  bary = np.zeros((size * size, 3), np.float64)
  # Texel columns/rows whose centres (i + 0.5) lie within `padding` of each triangle's bounding box.
  lo = np.clip(np.ceil(corners.min(axis=1) - padding - 0.5), 0, size).astype(np.int64)  # [F, 2] (x, y)
  hi = np.clip(np.floor(corners.max(axis=1) + padding - 0.5) + 1, 0, size).astype(np.int64)
  extent = np.maximum(hi - lo, 0)
  counts = extent[:, 0] * extent[:, 1]
  ends = np.cumsum(counts)
  start = 0
  while start < len(corners):
    # Whole triangles per batch, about `chunk` candidate texels each; pair k of the batch is texel
    # `offset` of its triangle's box.
    base = ends[start - 1] if start else 0
    stop = max(int(np.searchsorted(ends, base + chunk, side="right")), start + 1)
    ids = np.repeat(np.arange(start, stop), counts[start:stop])
    offset = base + np.arange(len(ids)) - (ends - counts)[ids]
    start = stop
    if not len(ids):
      continue
    width = extent[ids, 0]
    x = lo[ids, 0] + offset % width
    y = lo[ids, 1] + offset // width
    if only is not None:
      keep = only[y, x]
      ids, x, y = ids[keep], x[keep], y[keep]
    centre = np.stack([x + 0.5, y + 0.5], axis=-1)
    tri = corners[ids]
    weights = _barycentric(centre, tri)
    inside = np.all(weights >= -1e-9, axis=-1)
    if padding > 0:
      edges = [_segment_distance(centre, tri[:, i], tri[:, (i + 1) % 3]) for i in range(3)]
      distance = np.where(inside, 0.0, np.minimum(np.minimum(edges[0], edges[1]), edges[2]))
    else:
      distance = np.where(inside, 0.0, np.inf)
    near = (distance <= padding) & np.all(np.isfinite(weights), axis=-1)
    texel, distance, ids, weights = (y * size + x)[near], distance[near], ids[near], weights[near]
    np.minimum.at(best, texel, distance)
    # Of the pairs at a texel's nearest distance so far, the last one written wins (any of them is right).
    win = distance == best[texel]
    face[texel[win]] = ids[win]
    bary[texel[win]] = weights[win]
  return face.reshape(size, size), bary.reshape(size, size, 3), best.reshape(size, size)


def _chart_edge_faces(faces: np.ndarray) -> np.ndarray:
  """Indices of the triangles with a corner on a chart's boundary (on an edge of only one triangle)."""
  edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
  unique, counts = np.unique(edges, axis=0, return_counts=True)
  on_boundary = np.zeros(faces.max() + 1, bool)
  on_boundary[unique[counts == 1].ravel()] = True
  return np.nonzero(on_boundary[faces].any(axis=1))[0]


def bake(
  albedo_fn: Callable[[np.ndarray], np.ndarray],
  vertices: np.ndarray,
  faces: np.ndarray,
  uv: np.ndarray,
  size: int,
  padding: int = PADDING,
) -> np.ndarray:
  """The albedo of a field on a UV-mapped mesh as a texture: float32 [size, size, 3] in [0, 1].

  albedo_fn(points [N, 3] world) -> [N, 3] in [0, 1] (called once, with every point at once; chunk it
  yourself). vertices [V, 3] world, faces [F, 3], uv [V, 2] in [0, 1] (texture convention: module docstring).
  A covered texel holds the albedo at its centre's surface point; a texel within `padding` texels of a chart
  holds the albedo at its centre extrapolated in the plane of the nearest triangle (so bilinear sampling at a
  chart's edge reads the edge's colour); every other texel the colour of the nearest of those.
  """
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  corners = texel_coordinates(uv, size)[faces]
  face, bary, _ = rasterise(corners, size, padding=0)
  # Texels around the charts: only the triangles at a chart's edge can be the nearest to them (interior ones
  # are surrounded by their chart), and growing only their boxes by `padding` keeps the test cheap.
  edge = _chart_edge_faces(faces)
  edge_face, edge_bary, _ = rasterise(corners[edge], size, padding, only=face < 0)
  border = edge_face >= 0
  face[border] = edge[edge_face[border]]
  bary[border] = edge_bary[border]
  filled = face >= 0
  if not filled.any():
    raise ValueError(f"no triangle lies on the {size}x{size} texture; the UV atlas is empty")
  ys, xs = np.nonzero(filled)
  points = np.einsum("nk,nkd->nd", bary[ys, xs], vertices[faces[face[ys, xs]]])
  colours = np.asarray(albedo_fn(points.astype(np.float32)), np.float32)
  if colours.shape != (len(points), 3):
    raise ValueError(f"albedo_fn returned shape {colours.shape} for {len(points)} points; expected ({len(points)}, 3)")
  if np.isnan(colours).any():
    raise ValueError("albedo_fn returned NaN colours")
  image = np.zeros((size, size, 3), np.float32)
  image[ys, xs] = np.clip(colours, 0.0, 1.0)
  # Everything else: the nearest filled texel's colour (no background for mipmaps to blend in).
  _, (fy, fx) = scipy.ndimage.distance_transform_edt(~filled, return_indices=True)
  return image[fy, fx]


def textured(mesh: trimesh.Trimesh, albedo_fn: Callable, size: int, padding: int = PADDING):
  """(vertices [V', 3], faces [F, 3], uv [V', 2], texture float32 [size, size, 3]) of a mesh: unwrap, then bake."""
  vmap, faces, uv = unwrap(mesh.vertices, mesh.faces, size, padding)
  vertices = np.asarray(mesh.vertices, np.float64)[vmap]
  return vertices, faces, uv, bake(albedo_fn, vertices, faces, uv, size, padding)
