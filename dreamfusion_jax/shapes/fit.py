"""Primitive fit: which analytic family does a mesh's surface have, in any orientation?

A stand-in for an outside mesh judge that fits each exported mesh against analytic primitive families in
any orientation and names the family that fits best ("a rounded box is not a cube to it, and a capsule is
not a cylinder"). `fit_mesh(mesh)` answers the same question for a trimesh.Trimesh; evaluate reports its
answer per seed as fit_shape / fit_score / fit_right.

Families (each an exact SDF with free rotation, free centre and free sizes; the world's SDFs where the world
has the shape, dreamfusion_jax.shapes.world):
  sphere            radius                              world.sdf_sphere
  cube              three free half-sizes (a box)       world.sdf_box; reported as 'cube' whatever its aspect
                    (the world has no other box), with the half-sizes sorted so that the aspect is visible
  cylinder          radius, half_height                 world.sdf_cylinder
  cone              radius, half_height                 world.sdf_cone
  torus             major, minor                        world.sdf_torus
  capsule           radius, half_length                 world.sdf_capsule
  pyramid           base_half, height (square base)     world.sdf_pyramid
  octahedron        size (|x| + |y| + |z| <= size)      world.sdf_octahedron
  teardrop          ra, rb, length: the hull of two balls (radii ra, rb, centres `length` apart), the world's
                    round cone (world.sdf_teardrop is one) written here with traceable parameters
  rounded_box       three half-sizes and an edge radius (a box shrunk by r, then offset by r)
  rounded_cylinder  radius, half_height and a rim radius (likewise)
The last two are not world shapes: they are what a blurred cube or cylinder looks like, so that a run whose
cube came out with round edges is named 'rounded_box' rather than 'cube' (or 'sphere').

Fit. Points (NUM_POINTS) are sampled uniformly by area on the mesh, centred on the centre of its oriented
bounding box and divided by that box's diagonal. For every family, least_squares (scipy, trf, soft_l1 loss
with f_scale ROBUST_SCALE of the size: a robust fit) minimises the family's SDF at the points mapped into the
primitive's frame over (rotation vector, centre, sizes; the sizes bounded by the box, H and L), from several
starting orientations: the mesh's principal axes, the axes of its minimum-volume oriented bounding box, and
the frames whose axes best and worst align with the surface normals (sum of (n . axis)^4: a box's faces, an
octahedron's vertices). A family with an axis tries each distinct axis of the first two frames as its own (a
symmetric solid's axis is one of its principal axes), both ways for the cone, pyramid and teardrop; the
pyramid is turned about it so that its faces meet the normals (the 4th harmonic of their directions across
the axis). A short fit from every start (COARSE_EVALS) keeps the best REFINED starts (within REFINE_COST of
the best's cost), which are fitted to convergence and scored; the family keeps its best. Jacobians come from
jax (jacfwd of the jitted residual).

Score. Fitting only pulls the primitive's surface onto the mesh's points, so a huge primitive whose surface
grazes the mesh on one side can fit well; the family's measure is therefore two-sided, like
surface.chamfer: d = (mean |SDF| at the mesh's points + mean distance from points on the fitted primitive
(marching cubes of its SDF, projected onto its exact surface) to the mesh) / 2, as a fraction of the
diagonal of the mesh's minimum-volume oriented bounding box (`diagonal`: a size that does not depend on how
the mesh is turned). score = exp(-d / SCORE_SCALE): 1 for a perfect fit, 0.37 at 1% of the diagonal.
`residual` is the RMS of the SDF at the mesh's points in the mesh's units (one-sided, not robust: noise of
RMS s along the normal at the vertices gives s / sqrt(2) on the faces between them).

Naming (the tie / nesting rule). The family with the smallest d fits best. Some families contain others as
special cases (SPECIAL_CASES: a capsule of length 0 and a torus of major radius 0 are spheres, a rounded box
of edge radius 0 is a cube, ...); a richer family always fits at least as well as the ones it contains, so it
is named only when it fits clearly better: among the best family and its special cases whose
d <= d_best * (1 + TIE_RELATIVE) + TIE_ABSOLUTE, the one with the fewest size parameters is named (ties by
d). Families that do not contain each other compete on d alone. Where that puts the line on clean meshes
(marching cubes at 120^3 of the rounded SDFs): a cube whose edges are rounded by 15% of its half-size is still
'cube', by 20% 'rounded_box'; a cylinder with rims rounded by 20% of its radius 'cylinder', by 30%
'rounded_cylinder'; a capsule whose half-length is 1.7% of its radius 'sphere', at 3.3% 'capsule'. On a noisy
mesh both distances carry the noise and the relative term widens the tie.

What it cannot see: colour, texture and anything inside the surface; it judges the whole mesh as one object
(floaters and extra components count as misfit); shapes outside these families (bird, chair) get their
nearest family, and evaluate reports no right / wrong for them; bumps smaller than ~1% of the size barely
change d. It always names a family, however poor the best fit: fit_score says how poor (the cube results of
the default config score ~0.5, a lumpy one 0.09).
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.spatial
import skimage.measure
import trimesh
from scipy.spatial.transform import Rotation

from dreamfusion_jax.shapes import surface, world

NUM_POINTS = 1500  # Points sampled on the mesh (and on each fitted primitive).
ROBUST_SCALE = 0.01  # soft_l1's f_scale: residuals beyond 1% of the mesh's size count less than squared.
COARSE_EVALS = 10  # Function evaluations of every start's short fit.
REFINED = 2  # Starts per family fitted to convergence, then scored both ways.
REFINE_COST = 2.0  # ... of those whose short fit's cost is within this factor of the best's.
REFINE_EVALS = 60
GRID = 32  # Marching-cubes grid points per axis of a fitted primitive.
SCORE_SCALE = 0.01  # score = exp(-d / SCORE_SCALE), d: two-sided distance / diagonal.
TIE_RELATIVE = 0.25  # A richer family must beat a special case by this much (relative) ...
TIE_ABSOLUTE = 0.002  # ... and this much (fraction of the diagonal) to be named.
NORMAL_FRAMES = 512  # Random rotations searched for the frames best / worst aligned with the normals.
AXIS_DUPLICATE = 0.95  # Axes closer than this (|cos|) are one start.
MAX_EDGE = 1.0 / 25.0  # Meshes with longer edges (fraction of the diagonal) are subdivided first.

# Shapes evaluate scores right / wrong: the world's shapes that are one of the families.
ANALYTIC = tuple(s for s in world.SHAPES if s not in ("bird", "chair"))

_TINY = 1e-12


# ----------------------------------------------------------------------------- families


def _round_cone(x, ra, rb, e):
  """Hull of the balls (0, 0, 0; ra) and (0, 0, h; rb), h = sqrt((ra - rb)^2 + e^2) (so that neither ball
  holds the other); exact (world.sdf_round_cone with traceable parameters)."""
  h = jnp.sqrt((ra - rb) ** 2 + e * e + _TINY)
  sb, ca = (ra - rb) / h, e / h
  qx = jnp.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2 + _TINY)
  qy = x[..., 2]
  k = -sb * qx + ca * qy
  return jnp.where(
    k < 0.0,
    jnp.sqrt(qx * qx + qy * qy + _TINY) - ra,
    jnp.where(k > ca * h, jnp.sqrt(qx * qx + (qy - h) ** 2 + _TINY) - rb, ca * qx + sb * qy - ra),
  )


def _rounded_box(x, s):
  """Box of half-sizes s[:3] whose edges are rounded by r = s[3] x the smallest half-size: the box shrunk by r,
  offset by r (exact, inside too: the box is convex)."""
  r = s[3] * jnp.min(s[:3])
  return world.sdf_box(x, (s[0] - r, s[1] - r, s[2] - r)) - r


def _rounded_cylinder(x, s):
  """Cylinder (radius s[0], half-height s[1]) whose rims are rounded by r = s[2] x min(s[0], s[1]), as above."""
  r = s[2] * jnp.minimum(s[0], s[1])
  return world.sdf_cylinder(x, s[0] - r, s[1] - r) - r


class Family(NamedTuple):
  """sdf(x [..., 3] in the primitive's frame, sizes [k]) -> [...]; names of the sizes; init(extents
  [3] of the points in a start frame, axis last) -> sizes; bounds (lower, upper) of the sizes as multiples of
  the mesh's size (fractions stay in [0, 1]); axial: the family has an axis (its frame's z); polar: the two
  ends of that axis differ."""

  sdf: Callable
  sizes: tuple
  init: Callable
  lower: tuple
  upper: tuple
  axial: bool = True
  polar: bool = False


# Upper bounds of the sizes, in diagonals of the mesh's oriented box: a primitive that matches the mesh has
# about its box, so a half-size (radius, half-height) is at most ~0.5 and a full length (the pyramid's height,
# the teardrop's) ~1; the slack lets a fit pass through larger sizes, the bound stops the degenerate fits that
# grow without end (a huge cone whose side grazes a cube's faces: the robust loss gives up the rest).
H, L = 0.75, 1.5


def _radial(e):
  return 0.25 * (e[0] + e[1])  # Half the mean of the two extents across the axis.


FAMILIES = {
  "sphere": Family(
    lambda x, s: world.sdf_sphere(x, s[0]), ("radius",), lambda e: [np.mean(e) / 2], (0.0,), (H,), axial=False
  ),
  "cube": Family(
    lambda x, s: world.sdf_box(x, (s[0], s[1], s[2])),
    ("half_x", "half_y", "half_z"),
    lambda e: list(e / 2),
    (0.0,) * 3,
    (H,) * 3,
    axial=False,
  ),
  "cylinder": Family(
    lambda x, s: world.sdf_cylinder(x, s[0], s[1]),
    ("radius", "half_height"),
    lambda e: [_radial(e), e[2] / 2],
    (0.0, 0.0),
    (H, H),
  ),
  "cone": Family(
    lambda x, s: world.sdf_cone(x, s[0], s[1]),
    ("radius", "half_height"),
    lambda e: [_radial(e), e[2] / 2],
    (0.0, 0.0),
    (H, H),
    polar=True,
  ),
  "torus": Family(
    lambda x, s: world.sdf_torus(x, s[0], s[1]),
    ("major", "minor"),
    lambda e: [max(_radial(e) - e[2] / 2, 0.01), e[2] / 2],
    (0.0, 0.0),
    (H, H),
  ),
  "capsule": Family(
    lambda x, s: world.sdf_capsule(x, s[0], s[1]),
    ("radius", "half_length"),
    lambda e: [_radial(e), max(e[2] / 2 - _radial(e), 0.01)],
    (0.0, 0.0),
    (H, H),
  ),
  "pyramid": Family(
    lambda x, s: world.sdf_pyramid(x, s[0], s[1], -0.25 * s[1]),
    ("base_half", "height"),
    lambda e: [_radial(e), e[2]],
    (0.0, 0.0),
    (H, L),
    polar=True,
  ),
  "octahedron": Family(
    lambda x, s: world.sdf_octahedron(x, s[0]), ("size",), lambda e: [np.max(e) / 2], (0.0,), (H,), axial=False
  ),
  "teardrop": Family(
    lambda x, s: _round_cone(x + jnp.array([0.0, 0.0, 0.5]) * s[2], s[0], s[1], s[2]),
    ("ra", "rb", "e"),
    lambda e: [_radial(e), 0.3 * _radial(e), max(e[2] - 1.3 * _radial(e), 0.01)],
    (0.0, 0.0, 0.0),
    (H, H, L),
    polar=True,
  ),
  "rounded_box": Family(
    _rounded_box,
    ("half_x", "half_y", "half_z", "edge_fraction"),
    lambda e: list(e / 2) + [0.3],
    (0.0,) * 4,
    (H, H, H, 1.0),
    axial=False,
  ),
  "rounded_cylinder": Family(
    _rounded_cylinder,
    ("radius", "half_height", "rim_fraction"),
    lambda e: [_radial(e), e[2] / 2, 0.3],
    (0.0, 0.0, 0.0),
    (H, H, 1.0),
  ),
}

# Families that each family contains as special cases (with some sizes at 0 or equal).
SPECIAL_CASES = {
  "capsule": ("sphere",),
  "torus": ("sphere",),
  "teardrop": ("sphere", "capsule"),
  "rounded_box": ("sphere", "capsule", "cube"),  # A capsule: two half-sizes equal to the edge radius.
  "rounded_cylinder": ("sphere", "capsule", "cylinder"),
}


def _rotation(w):
  """Rotation matrix of the rotation vector w [3] (Rodrigues; smooth at 0)."""
  theta = jnp.sqrt(jnp.sum(w * w) + _TINY)
  k = jnp.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
  a = jnp.sinc(theta / jnp.pi)  # sin(theta) / theta
  b = 0.5 * jnp.sinc(theta / (2.0 * jnp.pi)) ** 2  # (1 - cos(theta)) / theta^2
  return jnp.eye(3) + a * k + b * (k @ k)


def _pose(params, frame):
  """(R, centre): the primitive's frame (columns: its axes in mesh coordinates) and centre."""
  return frame @ _rotation(params[:3]), params[3:6]


@functools.lru_cache(maxsize=None)
def _functions(name: str):
  """Jitted (sdf_at, value_and_jacobian) of a family: the SDF at NUM_POINTS mesh points [N, 3] for params
  [6 + k] = (rotation vector relative to `frame` [3, 3], centre, sizes), and with its Jacobian [N, 6 + k]
  (one program for both: least_squares asks for the Jacobian where it has just asked for the value)."""
  family = FAMILIES[name]

  def sdf_at(params, frame, points):
    rot, centre = _pose(params, frame)
    return family.sdf((points - centre) @ rot, params[6:])

  def value_and_jacobian(params, frame, points):
    return sdf_at(params, frame, points), jax.jacfwd(sdf_at)(params, frame, points)

  return jax.jit(sdf_at), jax.jit(value_and_jacobian)


def _sdf_values(name: str, params, frame, points: np.ndarray) -> np.ndarray:
  """The family's SDF at any number of points, in chunks of NUM_POINTS (one compiled shape)."""
  sdf_at, _ = _functions(name)
  params, frame = np.asarray(params, np.float32), np.asarray(frame, np.float32)
  n = len(points)
  padded = np.concatenate([points, np.zeros((-n % NUM_POINTS, 3))]).astype(np.float32)
  chunks = [np.asarray(sdf_at(params, frame, c)) for c in np.split(padded, len(padded) // NUM_POINTS)]
  return np.concatenate(chunks)[:n].astype(np.float64)


def _project(name: str, params, frame, points: np.ndarray, step: float = 1e-3) -> np.ndarray:
  """points moved onto the primitive's surface along the SDF's gradient (central differences; exact for an
  exact SDF away from its creases)."""
  value = _sdf_values(name, params, frame, points)
  grad = np.stack(
    [
      _sdf_values(name, params, frame, points + step * e) - _sdf_values(name, params, frame, points - step * e)
      for e in np.eye(3)
    ],
    -1,
  ) / (2 * step)
  grad /= np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-9)
  return points - value[:, None] * grad


# ----------------------------------------------------------------------------- starting frames


def _principal_axes(points: np.ndarray) -> np.ndarray:
  """Columns: the points' principal axes, largest variance first, a right-handed frame."""
  _, vecs = np.linalg.eigh(np.cov(points.T))
  frame = vecs[:, ::-1].copy()
  if np.linalg.det(frame) < 0:
    frame[:, 2] *= -1
  return frame


def _turns(step: float) -> np.ndarray:
  """The identity and the turns by `step` radians about +-x, +-y, +-z [7, 3, 3]."""
  axes = np.concatenate([np.zeros((1, 3)), np.eye(3), -np.eye(3)])
  return Rotation.from_rotvec(step * axes).as_matrix()


def normal_frames(normals: np.ndarray) -> list[np.ndarray]:
  """The frames (best of NORMAL_FRAMES random ones, then a local search) whose axes best and worst align with
  the normals [N, 3] by sum((n . axis)^4): a box's face normals lie on the best frame's axes, an octahedron's
  on the worst frame's diagonals."""
  normals = normals[:500]

  def alignment(rots):
    return np.sum(np.matmul(normals[None], rots) ** 4, axis=(1, 2))

  rotations = Rotation.random(NORMAL_FRAMES, random_state=0).as_matrix()  # Uniform, fixed seed.
  frames = []
  for sign in (1.0, -1.0):
    best = rotations[np.argmax(sign * alignment(rotations))]
    for step in (0.2, 0.1, 0.05, 0.025, 0.0125):
      turns = best @ _turns(step)  # Small turns of the frame about its own axes.
      best = turns[np.argmax(sign * alignment(turns))]
    frames.append(best)
  return frames


def _about_z(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _frame_with_axis(axis: np.ndarray) -> np.ndarray:
  """A right-handed frame whose last column is the unit vector axis."""
  helper = np.eye(3)[np.argmin(np.abs(axis))]
  x = np.cross(helper, axis)
  x /= np.linalg.norm(x)
  return np.stack([x, np.cross(axis, x), axis], 1)


def start_frames(name: str, frames: list[np.ndarray], normals: np.ndarray) -> list[np.ndarray]:
  """Starting frames of a family (see the module docstring): `frames` (principal axes, oriented box, normal
  frames) for a family without an axis; for one with an axis, the distinct directions among their axes (both
  signs if polar), the pyramid's turned about it so that its faces meet the normals (the 4th harmonic of the
  normals' directions across the axis)."""
  family = FAMILIES[name]
  if name == "sphere":
    return frames[:1]
  if not family.axial:
    return _distinct(frames)
  axes = []
  for a in (f[:, k] for f in frames[:2] for k in range(3)):
    if all(abs(a @ b) < AXIS_DUPLICATE for b in axes):
      axes.append(a)
  if family.polar:
    axes = axes + [-a for a in axes]
  out = []
  for a in axes:
    frame = _frame_with_axis(a)
    if name == "pyramid":
      across = normals @ frame[:, :2]
      angle = np.angle(np.sum((across[:, 0] + 1j * across[:, 1]) ** 4)) / 4
      frame = frame @ _about_z(angle)
    out.append(frame)
  return out


def _distinct(frames: list[np.ndarray], tolerance: float = 0.1) -> list[np.ndarray]:
  """frames without near-duplicates (Frobenius distance < tolerance)."""
  out = []
  for f in frames:
    if all(np.linalg.norm(f - g) > tolerance for g in out):
      out.append(f)
  return out


# ----------------------------------------------------------------------------- fitting


class FamilyFit(NamedTuple):
  """One family's fit: d (two-sided distance / diagonal), score, residual (RMS SDF at the mesh's points, mesh
  units), sizes {name: value, mesh units}, rotation [3, 3] (columns: the primitive's axes), centre [3]."""

  d: float
  score: float
  residual: float
  sizes: dict
  rotation: np.ndarray
  centre: np.ndarray


class Fit(NamedTuple):
  """fit_mesh's answer: the named family, its score, every family's FamilyFit, the diagonal (mesh units)."""

  name: str
  score: float
  families: dict
  diagonal: float


def _pose_np(params, frame) -> tuple[np.ndarray, np.ndarray]:
  """_pose in float64 numpy."""
  rot, centre = _pose(jnp.asarray(params, jnp.float32), jnp.asarray(frame, jnp.float32))
  return np.asarray(rot, np.float64), np.asarray(centre, np.float64)


def _least_squares(name: str, x0: np.ndarray, frame: np.ndarray, points: np.ndarray, max_nfev: int):
  """(params, cost) of scipy's robust least squares from x0 (points: the NUM_POINTS normalised samples)."""
  _, value_and_jacobian = _functions(name)
  family = FAMILIES[name]
  k = len(family.sizes)
  lower = np.concatenate([[-np.inf] * 6, family.lower])
  upper = np.concatenate([[np.inf] * 6, family.upper])
  frame32, pts32 = np.asarray(frame, np.float32), np.asarray(points, np.float32)
  cache = {}

  def evaluate(p):
    key = p.tobytes()
    if key not in cache:
      cache.clear()
      value, jac = value_and_jacobian(np.asarray(p, np.float32), frame32, pts32)
      cache[key] = (np.asarray(value, np.float64), np.asarray(jac, np.float64))
    return cache[key]

  sol = scipy.optimize.least_squares(
    lambda p: evaluate(p)[0],
    np.clip(x0, lower + 1e-6, upper - 1e-6),
    jac=lambda p: evaluate(p)[1],
    bounds=(lower, upper),
    loss="soft_l1",
    # lsmr, not the SVD: with XLA's threads beside OpenBLAS's on 2 cores, an SVD of a 2000 x 10 Jacobian took
    # 10-45 ms instead of 0.2 ms (the whole fit 12 s instead of 4).
    tr_solver="lsmr",
    f_scale=ROBUST_SCALE,
    max_nfev=max_nfev,
    x_scale=np.concatenate([[0.3] * 3, [0.1] * 3, [0.1] * k]),
    xtol=1e-7,
    ftol=1e-8,
    gtol=1e-8,
  )
  return sol.x, float(sol.cost)


def _primitive_points(name: str, params, frame, points: np.ndarray, seed: int = 0) -> np.ndarray:
  """len(points) points on the fitted primitive's surface within reach of the mesh's points: marching cubes of
  its SDF over a cube around its centre of half-size 1.3 x the farthest mesh point from it (larger primitives
  are cut there and the cut counts as their surface, which penalises a huge primitive), projected onto it."""
  rot, centre = _pose_np(params, frame)
  bound = 1.3 * np.max(np.linalg.norm(points - centre, axis=1))
  axis = np.linspace(-bound, bound, GRID)
  local = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
  values = _sdf_values(name, params, frame, local @ rot.T + centre).reshape((GRID,) * 3)
  if values.min() >= 0.0:  # Too small for the grid: its centre stands for it.
    return np.repeat(centre[None], len(points), axis=0)
  spacing = axis[1] - axis[0]
  values = np.pad(values, 1, constant_values=max(float(values.max()), spacing))
  verts, faces, _, _ = skimage.measure.marching_cubes(values, level=0.0, spacing=(spacing,) * 3)
  shell = trimesh.Trimesh(vertices=(verts - (bound + spacing)) @ rot.T + centre, faces=faces, process=False)
  samples = surface.sample_surface(shell, len(points), seed=seed)
  on_cut = np.any(np.abs((samples - centre) @ rot) > bound - spacing, axis=1)
  return np.where(on_cut[:, None], samples, _project(name, params, frame, samples))


def _distance_to(mesh: trimesh.Trimesh, nearest: int = surface.NEAREST_TRIANGLES) -> Callable:
  """surface.distance_to_mesh(points, mesh) as a function of the points, its search tree built once."""
  triangles = np.asarray(mesh.triangles, np.float64)
  tree = scipy.spatial.cKDTree(triangles.mean(axis=1))
  k = min(nearest, len(triangles))

  def distance(points: np.ndarray) -> np.ndarray:
    _, idx = tree.query(points, k=k)
    query = np.repeat(points, k, axis=0)
    closest = trimesh.triangles.closest_point(triangles[np.asarray(idx).reshape(-1)], query)
    return np.linalg.norm(closest - query, axis=-1).reshape(len(points), k).min(axis=1)

  return distance


def _fit_family(name: str, points: np.ndarray, normals: np.ndarray, frames: list, mesh_distance: Callable):
  """(d, params, frame, rms) of one family's best fit to the normalised points (see the module docstring)."""
  family = FAMILIES[name]
  starts = []
  for frame in start_frames(name, frames, normals):
    local = points @ frame
    lo, hi = local.min(axis=0), local.max(axis=0)
    x0 = np.concatenate([np.zeros(3), frame @ ((lo + hi) / 2), family.init(hi - lo)])
    x, cost = _least_squares(name, x0, frame, points, COARSE_EVALS)
    starts.append((cost, x, frame))
  starts.sort(key=lambda s: s[0])
  best = None
  for cost, x0, frame in starts[:REFINED]:
    if cost > REFINE_COST * starts[0][0]:
      break
    x, _ = _least_squares(name, x0, frame, points, REFINE_EVALS)
    there = np.abs(_sdf_values(name, x, frame, points))
    back = mesh_distance(_primitive_points(name, x, frame, points))
    d = 0.5 * (float(there.mean()) + float(back.mean()))
    if best is None or d < best[0]:
      best = (d, x, frame, float(np.sqrt(np.mean(there**2))))
  return best


def _sizes(name: str, sizes: np.ndarray, scale: float) -> dict:
  """The fitted sizes in mesh units, by name (a box's half-sizes sorted, largest first; fractions as they
  are; the teardrop's e turned into the distance between its balls' centres)."""
  s = [float(v) for v in sizes]
  if name in ("cube", "rounded_box"):
    s[:3] = sorted(s[:3], reverse=True)
  out = {}
  for key, value in zip(FAMILIES[name].sizes, s):
    out[key] = value if key.endswith("fraction") else value * scale
  if name == "teardrop":  # The larger ball first (the fit may put it at either end).
    out = dict(
      ra=max(s[0], s[1]) * scale, rb=min(s[0], s[1]) * scale, length=float(np.hypot(s[0] - s[1], s[2])) * scale
    )
  return out


def name_family(d: dict) -> str:
  """The family named for the two-sided distances d {family: d}: the best family, unless one of its special
  cases is within TIE_RELATIVE / TIE_ABSOLUTE of it; then the simplest (fewest sizes) such case."""
  best = min(d, key=d.get)
  limit = d[best] * (1.0 + TIE_RELATIVE) + TIE_ABSOLUTE
  candidates = [best] + [s for s in SPECIAL_CASES.get(best, ()) if s in d and d[s] <= limit]
  return min(candidates, key=lambda n: (len(FAMILIES[n].sizes), d[n]))


def oriented_box(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(frame [3, 3] right-handed, its columns the box's axes; centre [3]; extents [3]) of the mesh's
  minimum-volume oriented bounding box, or of its box along its vertices' principal axes where trimesh finds none
  (a flat mesh)."""
  try:
    with np.errstate(divide="ignore", invalid="ignore"):  # trimesh divides by a flat mesh's zero volume.
      box = mesh.bounding_box_oriented.primitive
    frame, centre, extents = np.array(box.transform[:3, :3]), np.array(box.transform[:3, 3]), np.array(box.extents)
  except ValueError:
    vertices = np.asarray(mesh.vertices, np.float64)
    frame = _principal_axes(vertices)
    local = vertices @ frame
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre, extents = frame @ ((lo + hi) / 2), hi - lo
  if np.linalg.det(frame) < 0:
    frame[:, 2] *= -1
  return frame, centre, extents


def prepare(mesh: trimesh.Trimesh, diagonal: float) -> trimesh.Trimesh:
  """The mesh, subdivided where its edges are longer than MAX_EDGE of its diagonal (so that the nearest triangles
  by centroid hold the nearest point, as surface.distance_to_mesh assumes)."""
  if mesh.edges_unique_length.max() > MAX_EDGE * diagonal:
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, MAX_EDGE * diagonal, max_iter=20)
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=False)
  return mesh


def fit_mesh(mesh: trimesh.Trimesh, families=tuple(FAMILIES), seed: int = 0) -> Fit:
  """Fits every family to the mesh (see the module docstring) and names the best one."""
  box_frame, offset, extents = oriented_box(mesh)
  diagonal = float(np.linalg.norm(extents))
  if not diagonal > 0.0:
    raise ValueError("The mesh has no extent: there is nothing to fit.")
  mesh = prepare(mesh, diagonal)
  # Normalised: centred on the oriented box's centre, unit diagonal (bounds and tolerances are fractions).
  unit = trimesh.Trimesh(vertices=(mesh.vertices - offset) / diagonal, faces=mesh.faces, process=False)
  points, face_index = trimesh.sample.sample_surface(unit, NUM_POINTS, seed=seed)
  points = np.asarray(points, np.float64)
  normals = np.asarray(unit.face_normals[face_index], np.float64)
  frames = [_principal_axes(points), box_frame] + normal_frames(normals)
  mesh_distance = _distance_to(unit)
  fits = {}
  for name in families:
    # On the CPU also where a GPU is the default (evaluate in a sweep): thousands of tiny calls, each a
    # round trip to an accelerator otherwise.
    with jax.default_device(jax.devices("cpu")[0]):
      d, x, start, rms = _fit_family(name, points, normals, frames, mesh_distance)
      rot, centre = _pose_np(x, start)
    fits[name] = FamilyFit(
      d=d,
      score=float(np.exp(-d / SCORE_SCALE)),
      residual=rms * diagonal,
      sizes=_sizes(name, x[6:], diagonal),
      rotation=rot,
      centre=centre * diagonal + offset,
    )
  named = name_family({n: f.d for n, f in fits.items()})
  return Fit(name=named, score=fits[named].score, families=fits, diagonal=diagonal)


def _cpu_only():
  # A fit worker's initializer: its JAX takes no accelerator (the process that started it holds that).
  jax.config.update("jax_platforms", "cpu")


def executor(workers: int):
  """A pool of `workers` fresh (spawned, CPU-only) processes for fit_metrics, e.g. for evaluate.Scorer's
  fit_executor; None for 0. A fit is seconds of single-threaded Python, so a sweep scores the next seeds meanwhile."""
  if workers <= 0:
    return None
  import concurrent.futures
  import multiprocessing

  return concurrent.futures.ProcessPoolExecutor(
    workers, mp_context=multiprocessing.get_context("spawn"), initializer=_cpu_only
  )


# The sharp shapes' rounded families and the size that says how round their edges are.
ROUNDED = {"cube": ("rounded_box", "edge_fraction"), "cylinder": ("rounded_cylinder", "rim_fraction")}


def fit_metrics(mesh, shape: str) -> dict:
  """evaluate's per-seed fields for a result's mesh (None: the result has no mesh) of a world shape:
  fit_shape (the family named), fit_score (its score), fit_right (1.0 / 0.0 whether fit_shape is the shape;
  0.0 without a mesh; None for shapes that are no family: bird, chair) and, for a cube or a cylinder,
  fit_rounding: the edge (rim) radius of the best rounded box (cylinder) as a fraction of its smallest half-size
  (radius), whatever family is named. The nesting rule names a box with edges rounded by 20% 'cube' when the
  sharp fit is nearly as good; a judge that calls it a rounded box would not (None for other shapes)."""
  right = None if shape not in ANALYTIC else 0.0
  if mesh is None:
    return dict(fit_shape=None, fit_score=None, fit_right=right, fit_rounding=None)
  result = fit_mesh(mesh)
  if right is not None:
    right = float(result.name == shape)
  rounding = None
  if shape in ROUNDED:
    family, size = ROUNDED[shape]
    rounding = result.families[family].sizes[size]
  return dict(fit_shape=result.name, fit_score=result.score, fit_right=right, fit_rounding=rounding)
