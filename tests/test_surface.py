"""The surface metrics (dreamfusion_jax.shapes.surface) against closed forms: rotated normal maps, fogs of known
opacity (a constant-density ball, whose opacity along a ray is 1 - exp(-sigma * chord)), spheres offset by a
known distance, and meshes of known genus and extent."""

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from dreamfusion_jax import export
from dreamfusion_jax.nerf import cameras, render, views
from dreamfusion_jax.shapes import surface, world


def rotation(axis, angle_deg):
  """Rodrigues' rotation matrix about a unit axis."""
  axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  a = np.radians(angle_deg)
  return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def test_normal_error_is_the_angle_between_the_maps_over_pixels_both_opaque():
  rng = np.random.default_rng(0)
  normals = rng.normal(size=(4, 5, 6, 3))
  opacity = np.ones((4, 5, 6))
  # Each normal turned by 30 degrees about an axis perpendicular to it: the error is exactly 30.
  perpendicular = np.cross(normals, rng.normal(size=normals.shape))
  turned = np.stack([rotation(a, 30.0) @ n for a, n in zip(perpendicular.reshape(-1, 3), normals.reshape(-1, 3))])
  turned = turned.reshape(normals.shape) * 0.3  # Composited normals are not unit: the metric renormalises.
  assert surface.normal_error_deg(normals, opacity, turned, opacity) == pytest.approx(30.0, abs=1e-6)
  # Pixels transparent in either map do not count: there the error would be 180 degrees.
  mixed = np.where(np.arange(6)[None, None, :, None] < 3, turned, -normals)
  mask = np.broadcast_to(np.arange(6)[None, None, :] < 3, opacity.shape).astype(np.float64)
  assert surface.normal_error_deg(normals, mask, mixed, opacity) == pytest.approx(30.0, abs=1e-6)
  # The same through the truth's opacity: 0.4 is not opaque (OPAQUE is 0.5); counting it would give 105.
  assert surface.normal_error_deg(normals, opacity, mixed, np.where(mask > 0, 1.0, 0.4)) == pytest.approx(
    30.0, abs=1e-6
  )
  assert np.isnan(surface.normal_error_deg(normals, 0 * opacity, turned, opacity))
  assert surface.normal_error_deg(normals, opacity, -normals, opacity) == pytest.approx(180.0)


def test_fog_is_the_share_of_foreground_pixels_below_solid():
  opacity = np.array([0.0, 0.01, 0.05, 0.06, 0.5, 0.94, 0.95, 1.0])
  # Foreground (> 0.05): 0.06, 0.5, 0.94, 0.95, 1.0; of those below 0.95: 0.06, 0.5, 0.94.
  assert surface.fog(opacity) == pytest.approx(3 / 5)
  assert surface.fog(np.ones((3, 3))) == 0.0
  assert surface.fog(np.full((3, 3), 0.5)) == 1.0
  assert np.isnan(surface.fog(np.zeros((3, 3))))


@pytest.mark.parametrize("sigma", [2.0, 6.0])
def test_fog_of_a_constant_density_ball_matches_its_closed_form(sigma):
  """A ball of radius r and constant density sigma: a ray at distance b from the centre has opacity
  1 - exp(-2 sigma sqrt(r^2 - b^2)). The renderer's opacities and their fog match that closed form."""
  radius, size = 0.5, 48
  field_fn = lambda x: (jnp.where(jnp.sum(x**2, -1) < radius**2, sigma, 0.0), jnp.ones_like(x))
  rcfg = render.RenderConfig(bound=1.0, num_coarse=256, num_fine=64)
  out = views.orbit_view(
    field_fn, {"albedo": views.white}, rcfg, 20.0, 30.0, distance=2.0, focal=float(size), size=size
  )["albedo"]
  cam = cameras.orbit_camera(20.0, 30.0, 2.0, float(size))
  origins, directions = (np.asarray(a, np.float64) for a in cameras.generate_rays(cam, size, size))
  b2 = np.sum(np.cross(-origins, directions) ** 2, -1)  # Squared distance of each ray from the centre.
  expected = 1.0 - np.exp(-2.0 * sigma * np.sqrt(np.maximum(radius**2 - b2, 0.0)))
  np.testing.assert_allclose(np.asarray(out["opacity"]), expected, atol=0.03)
  assert surface.fog(np.asarray(out["opacity"])) == pytest.approx(surface.fog(expected), abs=0.03)
  assert surface.fog(expected) > 0.2  # Not a degenerate case: part of the ball is fog (sigma 6: 26%).


def test_chamfer_of_spheres_is_their_radial_offset_over_the_diagonal():
  truth = trimesh.creation.icosphere(subdivisions=5, radius=0.45)
  diagonal = np.linalg.norm(truth.extents)
  assert surface.chamfer(trimesh.creation.icosphere(subdivisions=5, radius=0.45), truth) < 1e-4
  for offset in (0.01, 0.03, -0.02):  # Concentric spheres lie |offset| apart everywhere, both ways.
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.45 + offset)
    assert surface.chamfer(mesh, truth) == pytest.approx(abs(offset) / diagonal, rel=0.03)


def test_chamfer_of_a_noisy_sphere_against_brute_force():
  """Vertices displaced radially by known noise: the mesh-to-truth half is the mean |r - R| of points on the
  mesh, computed here by brute force (their exact radii), and the chamfer is at least that half's size."""
  truth = trimesh.creation.icosphere(subdivisions=5, radius=0.45)
  rng = np.random.default_rng(1)
  noisy = trimesh.creation.icosphere(subdivisions=4, radius=0.45)
  noisy.vertices *= 1.0 + rng.uniform(-0.05, 0.05, size=(len(noisy.vertices), 1))
  points = surface.sample_surface(noisy, 5000)
  brute = np.abs(np.linalg.norm(points, axis=-1) - 0.45)  # Distance to the sphere, exactly.
  np.testing.assert_allclose(surface.distance_to_mesh(points, truth), brute, atol=2e-4)
  assert surface.chamfer(noisy, truth) > 0.5 * brute.mean() / np.linalg.norm(truth.extents)


def test_components_genus_and_extent():
  sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
  torus = trimesh.creation.torus(0.3, 0.1)
  two = trimesh.util.concatenate([sphere, sphere.copy().apply_translation([1.0, 0, 0])])
  assert (surface.genus(sphere), surface.genus(torus), surface.genus(two)) == (0, 1, 0)
  box = trimesh.creation.box(extents=(0.64, 0.64, 0.64))
  m = surface.mesh_metrics(trimesh.creation.box(extents=(0.704, 0.64, 0.576)), box, count=2000)
  np.testing.assert_allclose(m["extent_ratio"], [1.1, 1.0, 0.9], atol=1e-6)
  assert m["extent_error"] == pytest.approx(0.1) and m["mesh_components"] == 1 and m["mesh_genus"] == 0
  # A result turned by 45 degrees about z is turned back before its box is measured.
  turned = trimesh.creation.box(extents=(0.64, 0.64, 0.64))
  turned.vertices = np.asarray(world.rotate_z(np.asarray(turned.vertices, np.float32), 45.0), np.float64)
  assert surface.mesh_metrics(turned, box, angle_deg=45.0, count=2000)["extent_error"] < 1e-6
  assert surface.mesh_metrics(turned, box, angle_deg=0.0, count=2000)["extent_error"] > 0.4
  assert surface.mesh_metrics(two, sphere, count=2000)["mesh_components"] == 2


def test_true_meshes_have_the_worlds_genus_and_size():
  for name in world.SHAPES:
    mesh = surface.true_mesh(world.SHAPES.index(name))
    assert mesh.is_watertight, name
    assert surface.genus(mesh) == (1 if name == "torus" else 0), name
  sphere = surface.true_mesh(world.SHAPES.index("sphere"))
  np.testing.assert_allclose(sphere.extents, 0.9, atol=0.01)  # world.sdf_sphere's radius is 0.45.


def test_the_truth_as_a_result_scores_a_solid_surface():
  """The exported mesh of the true density (export.extract_mesh, the mesh a run writes) against the true
  surface, and the true object's renders against themselves: the metrics' floor."""
  index = world.SHAPES.index("torus")
  density = world.density_fn(index)
  mesh = export.extract_mesh(
    lambda x: np.asarray(density(jnp.asarray(x))), None, bound=1.0, resolution=96, threshold=3.0
  )
  m = surface.mesh_metrics(mesh, surface.true_mesh(index))
  # Marching cubes interpolates linearly across a density that saturates within 2 mm of the surface, so
  # vertices sit up to half a cell (1 cm at 96^3 over [-1, 1]^3) off it: the floor is ~0.006 of the diagonal.
  assert m["chamfer"] < 0.01 and m["mesh_components"] == 1 and m["mesh_genus"] == m["true_genus"] == 1
  assert m["extent_error"] < 0.08  # The same half cells on a 0.26-thick torus: ~5% of its height.
  field_fn = lambda x: (density(x), jnp.ones_like(x))
  out = views.orbit_view(
    field_fn,
    {"albedo": views.white},
    render.RenderConfig(bound=1.0, num_coarse=32, num_fine=16),
    20.0,
    0.0,
    distance=1.25,
    focal=64.0,
    size=64,
  )["albedo"]
  assert surface.fog(np.asarray(out["opacity"])) < 0.1


def test_the_scorer_gives_the_truth_a_solid_surface():
  """evaluate.Scorer end to end (IoU grid, views, exported mesh) with the true torus as the result, at the
  default config's field, samples and mesh resolution: every surface metric is near its perfect value."""
  import sys

  from conftest import ROOT

  from dreamfusion_jax.nerf import views
  from dreamfusion_jax.nerf.field import Scene
  from dreamfusion_jax.shapes import evaluate

  sys.path.insert(0, ROOT)
  from configs import default  # noqa: E402

  config = default.get_config()
  index = world.SHAPES.index("torus")
  truth = evaluate.true_field((jnp.int32(index), jnp.float32(0.0)))
  scorer = evaluate.Scorer(config, resolution=48, num_views=2, num_rotations=4)
  scorer.field = lambda params, x: truth(x)
  # The default meshes a signed distance at its zero level (views.surface_values): here the true one.
  scorer.surface_fn = lambda params, x: views.SDF_MESH_LEVEL - world.sdf(index, x)
  scorer.render_view = evaluate.make_view_renderer(Scene(), config, 64, field_of=lambda p: truth)
  m = scorer.score(None, "a white torus")
  assert m["iou"] > 0.9 and m["best_angle_deg"] == 0.0
  # Meshed from the distance itself the torus is exact to linear interpolation: 0.0002 of the diagonal and
  # 0.1% in extent at resolution 48 (a density level left 0.006 and 5%).
  assert m["normal_error_deg"] < 1.0 and m["fog"] < 0.1 and m["chamfer"] < 0.001
  assert m["mesh_components"] == 1 and m["mesh_genus"] == m["true_genus"] == 1 and m["extent_error"] < 0.01
  # The primitive fit of the same mesh (tests/test_fit.py checks its math) names the torus, and the caption's
  # mean counts it; a bird has no right family, so its rate is null.
  assert m["fit_shape"] == "torus" and m["fit_right"] == 1.0 and m["fit_score"] > 0.9
  assert scorer.result("a white torus", 1, {"seed_0": m})["mean"]["fit_right_rate"] == 1.0
  wrong = dict(m, fit_shape="capsule", fit_right=0.0)
  assert scorer.result("a white torus", 1, {"seed_0": m, "seed_1": wrong})["mean"]["fit_right_rate"] == 0.5
  bird = dict(m, fit_right=None, janus=False)
  assert scorer.result("a white bird", 1, {"seed_0": bird})["mean"]["fit_right_rate"] is None
