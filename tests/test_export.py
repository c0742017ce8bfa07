"""Tests for dreamfusion_jax.export against closed-form geometry (balls) and round trips through files."""

import math
import os

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from dreamfusion_jax import export, texture

# The test's video reader forks ffmpeg (fork + exec, safe); JAX warns about any fork.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

BOUND = 1.0
RES = 48
DX = 2 * BOUND / (RES - 1)  # grid spacing, world units


def linear_ball(center=(0.0, 0.0, 0.0), radius=0.5, threshold=export.DEFAULT_MESH_THRESHOLD, slope=200.0):
  """Density that equals `threshold` exactly on the sphere and is linear in the distance to it."""
  center = np.asarray(center, np.float32)

  def density(x):
    r = np.linalg.norm(np.asarray(x) - center, axis=-1)
    return np.maximum(0.0, threshold + slope * (radius - r))

  return density


def union(*fns):
  return lambda x: np.max(np.stack([f(x) for f in fns]), axis=0)


def constant_albedo(color):
  return lambda x: np.broadcast_to(np.asarray(color, np.float32), (x.shape[0], 3))


ALBEDO = (0.2, 0.6, 0.8)
ALBEDO_U8 = np.round(np.asarray(ALBEDO) * 255).astype(np.uint8)


def position_albedo(x):
  """Albedo that differs per vertex, to check colours follow their vertices through files."""
  return np.clip(np.asarray(x) * 0.5 + 0.5, 0, 1)


# ----------------------------------------------------------------------------- density grid


def test_density_grid_matches_brute_force_and_is_chunk_independent():
  def fn(x):  # jax output, not symmetric in the axes, so index order is checked
    return jnp.asarray(x[:, 0] + 2 * x[:, 1] + 3 * x[:, 2] ** 2)

  res = 9
  axis = np.linspace(-1.3, 1.3, res)
  expected = np.array([[[a + 2 * b + 3 * c**2 for c in axis] for b in axis] for a in axis])
  big = export.density_grid(fn, 1.3, res, chunk=10_000)
  small = export.density_grid(fn, 1.3, res, chunk=7)  # 729 = 104 * 7 + 1: exercises tail padding
  assert big.shape == (res, res, res)
  np.testing.assert_allclose(big, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(big, small)


def test_density_grid_calls_with_fixed_chunk_size():
  sizes = []

  def fn(x):
    sizes.append(x.shape[0])
    return np.zeros(x.shape[0])

  export.density_grid(fn, 1.0, 5, chunk=16)  # 125 points
  assert set(sizes) == {16} and len(sizes) == math.ceil(125 / 16)


def test_density_grid_rejects_nan():
  with pytest.raises(ValueError, match="NaN"):
    export.density_grid(lambda x: np.full(x.shape[0], np.nan), 1.0, 4)


# ----------------------------------------------------------------------------- mesh


@pytest.fixture(scope="module")
def ball_mesh():
  return export.extract_mesh(linear_ball(), constant_albedo(ALBEDO), bound=BOUND, resolution=RES)


def test_ball_mesh_geometry(ball_mesh):
  mesh = ball_mesh
  assert mesh.is_watertight
  radii = np.linalg.norm(mesh.vertices, axis=1)
  # Density is linear in r, so marching cubes' linear interpolation is exact up to the curvature of r
  # along a voxel edge (~DX^2 / (2 r)); much tighter than one voxel.
  assert np.abs(radii - 0.5).max() < 0.25 * DX
  sphere_volume = 4 / 3 * math.pi * 0.5**3
  assert mesh.volume == pytest.approx(sphere_volume, rel=0.02)


def test_ball_mesh_normals_point_outward(ball_mesh):
  mesh = ball_mesh
  dots = np.sum(mesh.face_normals * mesh.triangles_center, axis=1)
  assert dots.mean() > 0
  assert (dots > 0).all()
  assert mesh.volume > 0


def test_ball_mesh_vertex_colours_are_the_albedo(ball_mesh):
  colors = np.asarray(ball_mesh.visual.vertex_colors)
  assert colors.dtype == np.uint8 and colors.shape == (len(ball_mesh.vertices), 4)
  np.testing.assert_array_equal(colors[:, :3], np.broadcast_to(ALBEDO_U8, (len(colors), 3)))
  assert (colors[:, 3] == 255).all()


def test_hard_ball_radius_within_one_voxel():
  def step(x):
    return np.where(np.linalg.norm(x, axis=-1) < 0.5, 100.0, 0.0)

  mesh = export.extract_mesh(step, None, bound=BOUND, resolution=RES)
  radii = np.linalg.norm(mesh.vertices, axis=1)
  assert np.abs(radii - 0.5).max() < DX


def test_threshold_selects_the_level_set():
  # density = 10 + 200 (0.5 - r) crosses 30 at r = 0.4.
  mesh = export.extract_mesh(linear_ball(), None, bound=BOUND, resolution=RES, threshold=30.0)
  np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 0.4, atol=0.25 * DX)


def _cell_centres(bound, resolution):
  t = -bound + (np.arange(resolution) + 0.5) * (2 * bound / resolution)
  return np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1)


@pytest.mark.parametrize("peak,width", [(40.0, 0.15), (200.0, 0.1), (10.0, 0.2)])
def test_silhouette_level_of_a_gaussian_blob_is_the_closed_form(peak, width):
  # density A exp(-r^2 / 2s^2): a ray at distance b from the centre has optical depth
  # A sqrt(2 pi) s exp(-b^2 / 2s^2) and largest density A exp(-b^2 / 2s^2), so the silhouette
  # {opacity > 1/2} = {depth > ln 2} equals that of {density > L} exactly at L = ln 2 / (sqrt(2 pi) s),
  # whatever A.
  x = _cell_centres(0.8, 160)
  grid = peak * np.exp(-np.sum(x**2, axis=-1) / (2 * width**2))
  np.testing.assert_allclose(
    export.silhouette_level(grid, 1.6 / 160), math.log(2) / (math.sqrt(2 * math.pi) * width), rtol=0.01
  )


def test_silhouette_level_of_a_crisp_ball_lies_between_empty_and_solid():
  x = _cell_centres(0.8, 64)
  grid = np.where(np.sum(x**2, axis=-1) < 0.4**2, 300.0, 0.01)
  np.testing.assert_allclose(export.silhouette_level(grid, 1.6 / 64), math.sqrt(300 * 0.01), rtol=1e-6)
  with pytest.raises(ValueError, match="empty"):
    export.silhouette_level(np.full((8, 8, 8), 0.01), 0.1)


def test_surface_touching_the_box_is_closed():
  # A ball bigger than the box: padding closes it into a (rounded) cube, not an open shell.
  mesh = export.extract_mesh(linear_ball(radius=1.2), None, bound=BOUND, resolution=16)
  assert mesh.is_watertight and mesh.volume > 0


def test_offcentre_ball_lands_in_world_coordinates():
  center = (0.3, -0.2, 0.1)
  mesh = export.extract_mesh(linear_ball(center, radius=0.3), None, bound=BOUND, resolution=RES)
  np.testing.assert_allclose(np.linalg.norm(mesh.vertices - center, axis=1), 0.3, atol=0.25 * DX)


def test_extract_mesh_removes_small_far_floater():
  big = linear_ball((-0.4, 0.0, 0.0), 0.4)
  tiny = linear_ball((0.7, 0.6, 0.0), 0.1)
  mesh = export.extract_mesh(union(big, tiny), None, bound=BOUND, resolution=RES)
  assert len(mesh.split(only_watertight=False)) == 1
  np.testing.assert_allclose(np.linalg.norm(mesh.vertices - (-0.4, 0, 0), axis=1), 0.4, atol=0.25 * DX)


def test_extract_mesh_keeps_similar_sized_second_ball():
  a = linear_ball((-0.45, 0.0, 0.0), 0.4)
  b = linear_ball((0.5, 0.0, 0.0), 0.35)
  mesh = export.extract_mesh(union(a, b), None, bound=BOUND, resolution=RES)
  assert len(mesh.split(only_watertight=False)) == 2
  expected = 4 / 3 * math.pi * (0.4**3 + 0.35**3)
  assert mesh.volume == pytest.approx(expected, rel=0.03)


def test_clean_floaters_keeps_components_by_face_fraction_and_colours():
  big = trimesh.creation.icosphere(subdivisions=3)  # 1280 faces
  similar = trimesh.creation.icosphere(subdivisions=3).apply_translation([3, 0, 0])
  small = trimesh.creation.icosphere(subdivisions=1).apply_translation([0, 3, 0])  # 80 faces: 6%
  mesh = trimesh.util.concatenate([big, similar, small])
  colors = np.zeros((len(mesh.vertices), 4), np.uint8)
  colors[:, 0] = np.arange(len(mesh.vertices)) % 251
  colors[:, 3] = 255
  mesh.visual.vertex_colors = colors
  cleaned = export.clean_floaters(mesh, min_fraction=0.1)
  assert len(cleaned.faces) == 2 * 1280
  assert np.linalg.norm(cleaned.vertices - [0, 3, 0], axis=1).min() > 1.5  # the small one is gone
  by_position = {tuple(np.round(v, 6)): c for v, c in zip(mesh.vertices, colors)}
  for v, c in zip(cleaned.vertices, cleaned.visual.vertex_colors):
    np.testing.assert_array_equal(c, by_position[tuple(np.round(v, 6))])
  # A lower cutoff keeps the small component too.
  assert len(export.clean_floaters(mesh, min_fraction=0.05).faces) == 2 * 1280 + 80


def test_clean_floaters_drops_unreferenced_and_degenerate():
  box = trimesh.creation.box()
  vertices = np.concatenate([box.vertices, [[5.0, 5.0, 5.0]]])  # unreferenced vertex
  faces = np.concatenate([box.faces, [[0, 0, 1]]])  # degenerate face
  mesh = trimesh.Trimesh(vertices, faces, process=False)
  cleaned = export.clean_floaters(mesh)
  assert len(cleaned.vertices) == 8 and len(cleaned.faces) == 12


@pytest.mark.parametrize("value", [0.0, 50.0])
def test_empty_mesh_error_is_clear(value):
  with pytest.raises(export.EmptyMeshError) as info:
    export.extract_mesh(lambda x: np.full(x.shape[0], value), None, bound=BOUND, resolution=8)
  message = str(info.value)
  assert "threshold" in message and "mesh_threshold" in message
  assert f"{value:.4g}" in message  # reports the density range
  assert isinstance(info.value, ValueError)
  assert info.value.density_max == value and info.value.threshold == export.DEFAULT_MESH_THRESHOLD


def test_nonpositive_threshold_rejected():
  with pytest.raises(ValueError, match="threshold"):
    export.extract_mesh(linear_ball(), None, bound=BOUND, resolution=8, threshold=0.0)


# ----------------------------------------------------------------------------- files


def test_write_mesh_round_trip(tmp_path):
  mesh = export.extract_mesh(linear_ball(radius=0.45), position_albedo, bound=BOUND, resolution=32)
  colors = np.asarray(mesh.visual.vertex_colors)
  assert len(np.unique(colors, axis=0)) > 10  # per-vertex, not constant
  paths = export.write_mesh(mesh, str(tmp_path))
  assert set(paths) == {"glb", "ply"}
  assert sorted(os.listdir(tmp_path)) == ["mesh.glb", "mesh.ply"]  # no temp files left

  ply = trimesh.load(paths["ply"], process=False)
  assert len(ply.vertices) == len(mesh.vertices)
  np.testing.assert_allclose(ply.vertices, mesh.vertices, atol=1e-6)
  np.testing.assert_array_equal(ply.visual.vertex_colors, colors)

  glb = trimesh.load(paths["glb"], force="mesh", process=False)
  assert len(glb.vertices) == len(mesh.vertices)
  # glTF frame (X, Y, Z) = world (y, z, x): world z (up) is glTF Y.
  np.testing.assert_allclose(glb.vertices[:, [2, 0, 1]], mesh.vertices, atol=1e-6)
  np.testing.assert_array_equal(glb.visual.vertex_colors, colors)
  assert glb.volume > 0  # the rotation kept the outward winding


def test_write_png_round_trip(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
  path = export.write_png(str(tmp_path / "a.png"), image)
  np.testing.assert_array_equal(iio.imread(path), image)
  assert os.listdir(tmp_path) == ["a.png"]


def _read_video(path):
  reader = imageio_v2.get_reader(path, format="FFMPEG")
  try:
    # list(reader) would ask len(), which is inf for streams; iterate instead.
    return np.stack([frame for frame in reader.iter_data()])
  finally:
    reader.close()


def test_write_video_upscales_small_frames(tmp_path):
  t = np.linspace(0, 1, 6)[:, None, None, None]
  frames = np.broadcast_to(t * np.array([1.0, 0.5, 0.25]), (6, 64, 64, 3)).astype(np.float32)
  path = export.write_video(str(tmp_path / "v.mp4"), frames, fps=10)
  decoded = _read_video(path)
  assert decoded.shape == (6, 256, 256, 3)  # 64 px upscaled x4 to reach 256
  # Flat colours survive H.264 up to compression error.
  expected = np.round(frames[:, :1, :1] * 255)
  np.testing.assert_allclose(decoded[:, 128:129, 128:129].astype(float), expected, atol=8)
  assert os.listdir(tmp_path) == ["v.mp4"]


def test_write_video_pads_odd_sizes(tmp_path):
  frames = np.zeros((3, 33, 45, 3), np.uint8)
  path = export.write_video(str(tmp_path / "v.mp4"), frames, fps=5, min_height=0)
  decoded = _read_video(path)
  assert decoded.shape == (3, 34, 46, 3)


def test_contact_sheet_layout():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (5, 4, 6, 3), dtype=np.uint8)
  sheet = export.contact_sheet(images, ncols=3)
  assert sheet.shape == (2 * 4, 3 * 6, 3) and sheet.dtype == np.uint8
  for k in range(5):
    r, c = divmod(k, 3)
    np.testing.assert_array_equal(sheet[r * 4 : (r + 1) * 4, c * 6 : (c + 1) * 6], images[k])
  assert (sheet[4:, 12:] == 255).all()  # the empty sixth cell
  assert export.contact_sheet(images, ncols=5).shape == (4, 30, 3)
  assert export.contact_sheet(images, ncols=8).shape == (4, 48, 3)


# ----------------------------------------------------------------------------- renders

H, W = 10, 12


def fake_render_view(calls=None):
  """Panels encode the azimuth so frame order can be checked; left half of the image is empty."""

  def render(elevation, azimuth):
    if calls is not None:
      calls.append((elevation, azimuth))
    opacity = np.zeros((H, W), np.float32)
    opacity[:, W // 2 :] = 1.0
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = 0.5 * opacity  # composited normals are shorter than 1; points up (+z)
    return dict(
      rgb=np.full((H, W, 3), azimuth / 360.0, np.float32),
      textureless=np.full((H, W, 3), 0.5, np.float32),
      normals=normals,
      opacity=opacity,
    )

  return render


def test_turntable_frames_layout_and_azimuths():
  calls = []
  frames = export.turntable_frames(fake_render_view(calls), num_frames=4, elevation=20.0)
  assert frames.shape == (4, H, 3 * W, 3) and frames.dtype == np.uint8
  assert calls == [(20.0, 0.0), (20.0, 90.0), (20.0, 180.0), (20.0, 270.0)]
  for k in range(4):
    assert (frames[k, :, :W] == round(k * 90 / 360 * 255)).all()  # colour panel
  assert (frames[:, :, W : 2 * W] == 128).all()  # textureless panel
  normals_panel = frames[0, :, 2 * W :]
  assert (normals_panel[:, W // 2 :] == [128, 128, 255]).all()  # +z -> (0.5, 0.5, 1)
  assert (normals_panel[:, : W // 2] == 255).all()  # empty space -> white background


def test_normals_to_color_without_opacity():
  n = np.array([[[-1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
  np.testing.assert_allclose(export.normals_to_color(n), [[[0.0, 0.5, 0.5], [0.5, 1.0, 0.5]]])


def test_views_sheet_rows_are_kinds_and_columns_views():
  frames = export.turntable_frames(fake_render_view(), num_frames=16, elevation=0.0)
  sheet = export.turntable_sheet(frames, num_views=8)
  assert sheet.shape == (3 * H, 8 * W, 3)
  for v in range(8):  # every other frame: azimuth 45 v
    assert (sheet[:H, v * W : (v + 1) * W] == round(45 * v / 360 * 255)).all()
  assert export.turntable_sheet(frames[:3], num_views=8).shape == (3 * H, 3 * W, 3)


def test_export_seed_writes_all_files(tmp_path):
  out = export.export_fields(
    str(tmp_path),
    linear_ball(),
    constant_albedo(ALBEDO),
    fake_render_view(),
    bound=BOUND,
    mesh_resolution=24,
    mesh_threshold=export.DEFAULT_MESH_THRESHOLD,
    num_frames=8,
    fps=8,
    elevation=10.0,
  )
  assert set(out) == {"video", "views", "glb", "ply", "obj", "mtl", "texture"}
  assert sorted(os.listdir(tmp_path)) == sorted(export.MESH_FILES + ("turntable.mp4", "views.png"))
  assert _read_video(out["video"]).shape[0] == 8
  assert iio.imread(out["views"]).shape == (3 * H, 8 * W, 3)
  assert len(trimesh.load(out["ply"]).vertices) > 0


def test_views_png_shows_the_truth_above_the_result_from_the_same_cameras(tmp_path):
  calls, truth_calls = [], []
  out = export.export_fields(
    str(tmp_path),
    linear_ball(),
    constant_albedo(ALBEDO),
    fake_render_view(calls),
    bound=BOUND,
    mesh_resolution=24,
    num_frames=16,
    fps=8,
    elevation=10.0,
    truth_view_fn=fake_truth_view(truth_calls),
  )
  sheet = iio.imread(out["views"])
  assert sheet.shape == (6 * H, 8 * W, 3)  # The truth's colour, textureless and normals rows, then the result's.
  assert truth_calls == [(10.0, a) for a in np.arange(8) * 45.0]  # The 8 views of the sheet, not all 16 frames.
  assert set(truth_calls) <= set(calls)  # The same cameras as the result's frames.
  assert (sheet[:H] == 0).all() and (sheet[3 * H : 4 * H] != 0).any()  # Truth rows first (its colour: black).
  np.testing.assert_array_equal(
    sheet[3 * H :], export.turntable_sheet(export.turntable_frames(fake_render_view(), 16, 10.0), 8)
  )


def fake_truth_view(calls):
  """A 'true object' that renders black, with the result's normals and opacity."""
  result = fake_render_view(calls)

  def render(elevation, azimuth):
    return {**result(elevation, azimuth), "rgb": np.zeros((H, W, 3), np.float32)}

  return render


def test_export_seed_empty_mesh_still_writes_renders(tmp_path):
  with pytest.raises(export.EmptyMeshError) as info:
    export.export_fields(
      str(tmp_path),
      lambda x: np.zeros(x.shape[0]),
      None,
      fake_render_view(),
      bound=BOUND,
      mesh_resolution=8,
      mesh_threshold=10.0,
      num_frames=4,
      fps=4,
      elevation=0.0,
    )
  assert sorted(os.listdir(tmp_path)) == ["turntable.mp4", "views.png"]
  assert set(info.value.written) == {"video", "views"}


def _sphere_sdf_params(config):
  """A 'volsdf' scene whose network outputs 0: s = |x| - blob_radius exactly, a sphere."""
  import jax

  from dreamfusion_jax.nerf import views

  scene = views.make_scene(config)
  params = scene.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))["params"]
  params = jax.tree_util.tree_map_with_path(
    lambda path, x: jnp.zeros_like(x) if "output" in str(path) and "nerf" in str(path) else x, params
  )
  return scene, params


def test_a_signed_distance_field_is_meshed_at_its_zero_level_not_at_a_density_level():
  # s = |x| - 0.3: the mesh of 1 - s at 1 (views.surface_values) puts every vertex on the sphere to within
  # linear interpolation's error on |x|, at most cell / (8 r) ~ 0.018 of a cell here; its density, a Laplace CDF of width beta = 0.005, a quarter of
  # a cell, changes from flat to flat between grid points, so meshing it at 0.5 / beta misplaces vertices by
  # up to half a cell.
  import jax
  from conftest import tiny_config

  from dreamfusion_jax.nerf import views

  config = tiny_config(
    **{
      "field.density_activation": "volsdf",
      "field.blob_radius": 0.3,
      "field.sdf_beta": 0.005,
      "field.bound": 1.0,
      "export.mesh_threshold": 0.0,
    }
  )
  scene, params = _sphere_sdf_params(config)
  cell = 2.0 / (48 - 1)
  errors = {}
  for name, threshold in (("sdf", 0.0), ("density", 100.0)):
    config.export.mesh_threshold = threshold
    values, level = views.surface_values(scene, config)
    mesh = export.extract_mesh(lambda x: jax.jit(values)(params, x), None, bound=1.0, resolution=48, threshold=level)
    errors[name] = np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.3).max() / cell
  assert errors["sdf"] < 1.1 / (8 * 0.3) * cell, errors
  assert errors["density"] > 0.1, errors


# ----------------------------------------------------------------------------- textured meshes


def wavy_albedo(x):
  """A smooth albedo that changes across the surface in every channel, so a UV mixup can't match it."""
  x = np.asarray(x, np.float64)
  return np.stack(
    [
      0.5 + 0.4 * np.sin(3.0 * x[:, 0] + 1.0 * x[:, 1]),
      0.5 + 0.4 * np.cos(2.0 * x[:, 1] - 2.0 * x[:, 2]),
      0.5 + 0.4 * np.sin(2.5 * x[:, 2] + 1.5 * x[:, 0]),
    ],
    axis=-1,
  ).astype(np.float32)


def bilinear(image, uv):
  """glTF's bilinear lookup, written out: texel (row, col)'s centre is at u = (col + 0.5) / W, v = 1 - (row + 0.5) / H;
  uint8 or float image [H, W, C] -> float [N, C] in [0, 1], edges clamped."""
  img = np.asarray(image, np.float64)
  img = img / 255.0 if np.asarray(image).dtype == np.uint8 else img
  h, w = img.shape[:2]
  x = np.asarray(uv[:, 0], np.float64) * w - 0.5
  y = (1.0 - np.asarray(uv[:, 1], np.float64)) * h - 0.5
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]

  def at(r, c):
    return img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

  return (
    at(y0, x0) * (1 - fx) * (1 - fy)
    + at(y0, x0 + 1) * fx * (1 - fy)
    + at(y0 + 1, x0) * (1 - fx) * fy
    + at(y0 + 1, x0 + 1) * fx * fy
  )


TEXTURE = 256  # Small, to keep the tests fast; the default (1024) only changes the texel size.


@pytest.fixture(scope="module")
def wavy_ball():
  return export.extract_mesh(linear_ball(radius=0.6), wavy_albedo, bound=BOUND, resolution=32)


@pytest.fixture(scope="module")
def wavy_files(tmp_path_factory, wavy_ball):
  directory = str(tmp_path_factory.mktemp("textured"))
  return export.write_mesh(wavy_ball, directory, export.textured_mesh(wavy_ball, wavy_albedo, TEXTURE))


def gltf_to_world(vertices):
  return np.asarray(vertices)[:, [2, 0, 1]]  # glTF (X, Y, Z) = world (y, z, x)


def assert_texture_is_the_albedo(vertices_world, uv, image):
  truth = wavy_albedo(vertices_world)
  assert truth.std(axis=0).min() > 0.1  # The albedo does vary over the surface.
  # uint8 steps (0.002) and bilinear interpolation of a smooth function over a texel; a vertex on a chart's edge
  # reads the texels around the chart too, which hold the albedo extrapolated (copies of the edge's texels would
  # be off by ~0.02 here).
  np.testing.assert_allclose(bilinear(np.asarray(image)[..., :3], uv), truth, atol=0.006)
  # The same texture read through a wrong mapping (v not flipped) is far off.
  assert np.abs(bilinear(np.asarray(image)[..., :3], uv * [1, -1] + [0, 1]) - truth).mean() > 0.1


def test_baked_texture_is_the_albedo_at_the_vertices(wavy_ball):
  mesh = export.textured_mesh(wavy_ball, wavy_albedo, TEXTURE)
  assert len(mesh.vertices) >= len(wavy_ball.vertices)  # Split along the charts' seams.
  assert np.asarray(mesh.visual.material.baseColorTexture).shape[:2] == (TEXTURE, TEXTURE)
  assert_texture_is_the_albedo(mesh.vertices, mesh.visual.uv, mesh.visual.material.baseColorTexture)


def test_glb_loads_with_its_texture_as_base_colour(wavy_files):
  glb = trimesh.load(wavy_files["glb"], force="mesh", process=False)
  assert isinstance(glb.visual, trimesh.visual.TextureVisuals)
  image = glb.visual.material.baseColorTexture
  assert image.size == (TEXTURE, TEXTURE)
  with open(wavy_files["glb"], "rb") as f:
    assert b"COLOR_0" not in f.read()  # No vertex colours for viewers to multiply the texture with.
  assert_texture_is_the_albedo(gltf_to_world(glb.vertices), glb.visual.uv, image)


def test_obj_mtl_and_png_load_back_with_uvs(wavy_files):
  directory = os.path.dirname(wavy_files["obj"])
  assert [os.path.basename(wavy_files[k]) for k in ("obj", "mtl", "texture")] == ["mesh.obj", "mesh.mtl", "texture.png"]
  mtl = open(wavy_files["mtl"]).read()
  assert "map_Kd texture.png" in mtl and "Kd 1.0" in mtl
  assert "mtllib mesh.mtl" in open(wavy_files["obj"]).read()
  obj = trimesh.load(os.path.join(directory, "mesh.obj"), force="mesh", process=False)
  assert isinstance(obj.visual, trimesh.visual.TextureVisuals) and obj.visual.uv.shape == (len(obj.vertices), 2)
  assert obj.visual.material.image.size == (TEXTURE, TEXTURE)
  np.testing.assert_array_equal(
    np.asarray(obj.visual.material.image)[..., :3], iio.imread(wavy_files["texture"])[..., :3]
  )
  assert_texture_is_the_albedo(gltf_to_world(obj.vertices), obj.visual.uv, obj.visual.material.image)
  assert trimesh.load(wavy_files["glb"], force="mesh").volume > 0  # Outward winding kept in glTF's frame.


def test_rasterise_matches_a_per_texel_brute_force():
  rng = np.random.default_rng(0)
  size = 24
  corners = rng.uniform(-2, size + 2, (12, 3, 2))  # Some reach past the image's edges.
  corners[3] = corners[3, [0, 0, 1]]  # A degenerate triangle covers nothing.
  face, bary, distance = texture.rasterise(corners, size, padding=0, chunk=50)  # Many small batches.
  for row in range(size):
    for col in range(size):
      p = np.array([col + 0.5, row + 0.5])
      covering = []
      for f, (a, b, c) in enumerate(corners):
        m = np.array([b - a, c - a]).T
        if abs(np.linalg.det(m)) < 1e-12:
          continue
        l1, l2 = np.linalg.solve(m, p - a)
        if min(1 - l1 - l2, l1, l2) >= -1e-9:
          covering.append((f, np.array([1 - l1 - l2, l1, l2])))
      if not covering:
        assert face[row, col] == -1 and distance[row, col] == np.inf
        continue
      assert face[row, col] in [f for f, _ in covering] and distance[row, col] == 0
      np.testing.assert_allclose(bary[row, col], dict(covering)[face[row, col]], atol=1e-9)
  assert (face >= 0).sum() > 50


def test_rasterise_padding_finds_the_nearest_triangle():
  # Two triangles with a gap between them: a texel in the gap belongs to the nearer one, at its distance.
  corners = np.array([[[1.0, 1.0], [5.0, 1.0], [1.0, 9.0]], [[9.0, 1.0], [9.0, 9.0], [6.0, 9.0]]])
  face, bary, distance = texture.rasterise(corners, 12, padding=3)
  col, row = np.meshgrid(np.arange(12) + 0.5, np.arange(12) + 0.5)
  # Brute force over a dense sampling of each triangle's edges.
  t = np.linspace(0, 1, 2001)[:, None]
  best = []
  for a, b, c in corners:
    edge_points = np.concatenate([a + t * (b - a), b + t * (c - b), c + t * (a - c)])
    d = np.min(np.hypot(col[..., None] - edge_points[:, 0], row[..., None] - edge_points[:, 1]), axis=-1)
    best.append(d)
  best = np.stack(best)
  inside = distance == 0
  outside = ~inside & (best.min(axis=0) <= 3 - 1e-3)
  np.testing.assert_allclose(distance[outside], best.min(axis=0)[outside], atol=1e-3)
  clear = outside & (np.abs(best[0] - best[1]) > 1e-3)  # Not a tie between the two.
  np.testing.assert_array_equal(face[clear], best.argmin(axis=0)[clear])
  # Barycentric coordinates reproduce the texel centre (outside too: they extrapolate).
  filled = face >= 0
  rebuilt = np.einsum("nk,nkd->nd", bary[filled], corners[face[filled]])
  np.testing.assert_allclose(rebuilt, np.stack([col[filled], row[filled]], axis=-1), atol=1e-9)
  assert (face[(best.min(axis=0) > 3 + 1e-3) & ~inside] == -1).all()


def test_texture_has_no_background_left():
  # Every texel holds a colour of the surface: one chart of a constant albedo fills the whole image with it.
  mesh = trimesh.creation.icosphere(subdivisions=2)
  out = export.textured_mesh(mesh, constant_albedo(ALBEDO), 64)
  image = np.asarray(out.visual.material.baseColorTexture)
  np.testing.assert_array_equal(image.reshape(-1, image.shape[-1])[:, :3], np.broadcast_to(ALBEDO_U8, (64 * 64, 3)))


def test_decimation_respects_the_budget_and_keeps_a_sphere_closed():
  mesh = export.extract_mesh(linear_ball(radius=0.6), None, bound=BOUND, resolution=64)
  assert len(mesh.faces) > 8000
  small = export.extract_mesh(linear_ball(radius=0.6), wavy_albedo, bound=BOUND, resolution=64, max_faces=2000)
  assert 1800 <= len(small.faces) <= 2000
  assert small.is_watertight and small.volume > 0
  assert small.volume == pytest.approx(4 / 3 * math.pi * 0.6**3, rel=0.03)
  np.testing.assert_allclose(np.linalg.norm(small.vertices, axis=1), 0.6, atol=0.02)
  # The vertex colours are the albedo at the decimated vertices.
  np.testing.assert_allclose(
    small.visual.vertex_colors[:, :3] / 255, wavy_albedo(small.vertices), atol=0.5 / 255 + 1e-6
  )
  # Within the budget, or with none (0), the mesh is left as it is.
  assert texture.decimate(mesh, 0) is mesh and texture.decimate(mesh, len(mesh.faces)) is mesh


@pytest.mark.parametrize("module,package", [("xatlas", "xatlas"), ("fast_simplification", "fast-simplification")])
def test_a_missing_mesh_package_is_named_with_its_install_command(monkeypatch, module, package):
  import sys

  monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
  mesh = trimesh.creation.icosphere(subdivisions=3)
  with pytest.raises(ImportError, match=f"pip install {package}"):
    if module == "xatlas":
      export.textured_mesh(mesh, None, 64)
    else:
      texture.decimate(mesh, 100)


def test_export_writes_only_the_parts_asked_for_and_finds_the_missing_ones(tmp_path):
  directory = str(tmp_path)
  assert export.missing_parts(str(tmp_path / "nowhere")) == ("renders", "mesh")
  kwargs = dict(bound=BOUND, mesh_resolution=16, num_frames=2, fps=2, texture_size=32)
  calls = []
  out = export.export_fields(directory, linear_ball(), None, fake_render_view(calls), parts=("mesh",), **kwargs)
  assert sorted(os.listdir(directory)) == sorted(export.MESH_FILES) and calls == []  # No render.
  assert set(out) == {"glb", "ply", "obj", "mtl", "texture"}
  assert export.missing_parts(directory) == ("renders",)
  out = export.export_fields(directory, linear_ball(), None, fake_render_view(calls), parts=("renders",), **kwargs)
  assert set(out) == {"video", "views"} and len(calls) == 2
  assert export.missing_parts(directory) == ()
  os.remove(os.path.join(directory, "mesh.mtl"))
  assert export.missing_parts(directory) == ("mesh",)
  with pytest.raises(ValueError, match="unknown export parts"):
    export.export_fields(directory, linear_ball(), None, fake_render_view(), parts=("video",), **kwargs)


def test_the_turntable_length_is_picked_by_platform_when_left_at_0():
  import ml_collections

  from dreamfusion_jax import outputs

  def config(frames, fps):
    return ml_collections.ConfigDict({"export": {"num_frames": frames, "fps": fps}})

  assert outputs.turntable_timing(config(0, 0.0), "gpu") == (120, 30.0)  # 4 s at 30 fps.
  assert outputs.turntable_timing(config(0, 0.0), "tpu") == (120, 30.0)
  assert outputs.turntable_timing(config(0, 0.0), "cpu") == (8, 2.0)  # views.png's 8 views, still a 4 s loop.
  assert outputs.turntable_timing(config(36, 0.0), "cpu") == (36, 9.0)
  assert outputs.turntable_timing(config(0, 24.0), "gpu") == (120, 24.0)
  assert outputs.turntable_timing(config(50, 10.0), "cpu") == (50, 10.0)
