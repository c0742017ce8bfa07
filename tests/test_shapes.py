"""Tests for dreamfusion_jax.shapes.world: SDFs vs closed forms, renders vs analytic silhouettes and
shading, captions, and the batch sampler.

Compiles are the cost on a 2-core CPU, so every render shares ONE jitted program (traced shape
index, colour, camera, shading, background; 32x32) and every SDF query another.
"""

import functools
import math

import jax
import numpy as np
import pytest

from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras
from dreamfusion_jax.shapes import world

SIZE = 32
FOCAL = 32.0
BG = np.array([0.2, 0.6, 0.3], np.float32)  # Far from red and from white/gray.
RED = np.array(world.COLOURS["red"], np.float32)
ALBEDO_ONLY = dict(ambient=1.0, diffuse=0.0, textureless=0.0)
SHADED = dict(ambient=0.1, diffuse=0.9, textureless=0.0)
TEXTURELESS = dict(ambient=0.1, diffuse=0.9, textureless=1.0)

_sdf = jax.jit(world.sdf)
_sdf_grad = jax.jit(jax.vmap(jax.grad(world.sdf, argnums=1), in_axes=(None, 0)))


def sdf(name, x):
  """SDF of a named shape at numpy points x [N, 3] -> numpy [N] (one shared compile)."""
  return np.asarray(_sdf(np.int32(world.SHAPES.index(name)), np.asarray(x, np.float32)))


@jax.jit
def _render(shape_index, colour, camera, shading, background):
  return world.render_example(None, shape_index, colour, camera, shading, background, SIZE)


def render(name, camera, shading=ALBEDO_ONLY, colour=RED, background=BG):
  shading = {k: np.float32(v) for k, v in shading.items()}
  return np.asarray(_render(np.int32(world.SHAPES.index(name)), colour, camera, shading, background))


def orbit(elevation, azimuth, distance=1.3, light_pos=None):
  return cameras.orbit_camera(elevation, azimuth, distance, FOCAL, light_pos)


def pixel_rays(camera):
  """Numpy pinhole rays (package convention) in float64: origin [3], directions [H*W, 3]."""
  c = (np.arange(SIZE) + 0.5 - SIZE / 2) / float(camera["focal"])
  x, y = np.meshgrid(c, -c)
  d = np.stack([x, y, -np.ones_like(x)], -1).reshape(-1, 3) @ np.asarray(camera["c2w"], np.float64).T
  return np.asarray(camera["origin"], np.float64), d / np.linalg.norm(d, axis=-1, keepdims=True)


def raycast_mask(name, camera, num=1500):
  """Silhouette [H, W] by dense SDF sampling along each pixel-centre ray through the world ball."""
  o, d = pixel_rays(camera)
  t = np.linspace(0.0, 2.0 * world.WORLD_RADIUS, num) + np.linalg.norm(o) - world.WORLD_RADIUS
  inside = np.zeros(len(d), bool)
  for rows in np.array_split(np.arange(len(d)), 4):
    x = o + t[None, :, None] * d[rows, None, :]
    inside[rows] = (sdf(name, x.reshape(-1, 3)) <= 0).reshape(len(rows), num).any(-1)
  return inside.reshape(SIZE, SIZE)


def colour_mask(image, colour=RED, background=BG):
  """Object pixels: colour moved more than half way from the background towards the albedo."""
  return np.abs(image - background).max(-1) > 0.5 * np.abs(colour - background).max()


def erode(mask):
  m = mask.copy()
  m[1:] &= mask[:-1]
  m[:-1] &= mask[1:]
  m[:, 1:] &= mask[:, :-1]
  m[:, :-1] &= mask[:, 1:]
  return m


# --- Names and captions. ---


def test_names_and_colours():
  assert len(world.SHAPES) >= 8 + 2 and len(set(world.SHAPES)) == len(world.SHAPES)
  assert len(world.ASYMMETRIC) >= 2 and set(world.ASYMMETRIC) <= set(world.SHAPES)
  assert len(world.COLOURS) >= 8
  rgb = world.COLOUR_TABLE
  assert np.all((rgb >= 0) & (rgb <= 1)) and rgb.max(-1).min() > 0.3  # never (near) black
  dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + 10 * np.eye(len(rgb))
  assert dist.min() > 0.25
  held_colours = {c for c, _ in world.HELD_OUT}
  held_shapes = {s for _, s in world.HELD_OUT}
  assert 4 <= len(world.HELD_OUT) == len(held_colours) == len(held_shapes)
  assert held_colours <= set(world.COLOURS) and held_shapes <= set(world.SHAPES)
  n_all = len(world.SHAPES) * len(world.COLOURS)
  assert len({tuple(p) for p in world.PAIRS}) == len(world.PAIRS) == n_all
  assert world.NUM_TRAIN_PAIRS == n_all - len(world.HELD_OUT)


def test_captions_round_trip():
  vocab = set(world.vocabulary())
  for colour in world.COLOURS:
    for shape in world.SHAPES:
      text = world.caption(colour, shape)
      assert text == f"a {colour} {shape}"
      for view, suffix in enumerate(text_lib.VIEW_SUFFIXES):
        full = text_lib.view_prompt(text, view)
        assert full == f"a {colour} {shape}, {suffix}"
        assert world.parse_caption(full) == (colour, shape)
        assert set(full.replace(",", " ").split()) <= vocab
      assert world.parse_caption(text) == (colour, shape)
  assert {"front", "side", "back", "overhead", "view"} <= vocab
  for bad in ["a red", "a crimson cube", "the red cube", "a red cube thing"]:
    with pytest.raises(ValueError):
      world.parse_caption(bad)


# --- Signed distance functions. ---


def test_sdf_sphere_cube_torus_capsule_closed_forms():
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.8, 0.8, (500, 3))
  np.testing.assert_allclose(sdf("sphere", x), np.linalg.norm(x, axis=-1) - 0.45, atol=1e-5)
  # Cube, half-size 0.32: along an axis |t| - a (inside too), beyond a corner delta * sqrt(3).
  t = np.linspace(-0.7, 0.7, 29)
  for axis in range(3):
    p = np.zeros((len(t), 3))
    p[:, axis] = t
    np.testing.assert_allclose(sdf("cube", p), np.abs(t) - 0.32, atol=1e-5)
  delta = np.array([0.0, 0.05, 0.2])
  corner = np.array([0.32, -0.32, 0.32]) + delta[:, None] * np.array([1.0, -1.0, 1.0])
  np.testing.assert_allclose(sdf("cube", corner), delta * math.sqrt(3), atol=1e-5)
  # Torus (R 0.32, r 0.13): distance to the core circle minus r, any point around it.
  rho, phi, theta = rng.uniform(0, 0.3, 200), rng.uniform(0, 2 * np.pi, 200), rng.uniform(0, 2 * np.pi, 200)
  ring = 0.32 + rho * np.cos(phi)
  p = np.stack([ring * np.cos(theta), ring * np.sin(theta), rho * np.sin(phi)], -1)
  np.testing.assert_allclose(sdf("torus", p), rho - 0.13, atol=1e-5)
  # Capsule (r 0.2, straight part |z| <= 0.3): radial distance on the side, ball caps at the ends.
  z = rng.uniform(-0.3, 0.3, 100)
  p = np.stack([rho[:100] * np.cos(theta[:100]), rho[:100] * np.sin(theta[:100]), z], -1)
  np.testing.assert_allclose(sdf("capsule", p), rho[:100] - 0.2, atol=1e-5)
  np.testing.assert_allclose(
    sdf("capsule", [[0, 0, 0.6], [0, 0, -0.55], [0.1, 0, 0.4]]), [0.1, 0.05, math.hypot(0.1, 0.1) - 0.2], atol=1e-5
  )


def test_sdf_cylinder_caps_and_rim():
  r, h = 0.34, 0.36
  pts = [
    [0.1, 0.0, h + 0.07],
    [0.0, 0.2, -h - 0.03],
    [r + 0.05, 0.0, 0.1],
    [0.0, -r - 0.1, -0.2],
    [r + 0.03, 0.0, h + 0.04],
    [0.0, 0.0, 0.0],
    [0.0, 0.0, h - 0.05],
    [0.3, 0.0, 0.0],
  ]
  want = [0.07, 0.03, 0.05, 0.1, 0.05, -r, -0.05, -0.04]
  np.testing.assert_allclose(sdf("cylinder", pts), want, atol=1e-5)


def test_sdf_cone_apex_base_and_side():
  r, h = 0.4, 0.4  # base radius at z = -h, apex at z = +h
  side_n = np.array([2 * h, r]) / math.hypot(2 * h, r)  # outward normal in the (rho, z) plane
  pts, want = [], []
  for delta in [-0.05, 0.0, 0.04]:
    rho, z = np.array([r / 2, 0.0]) + delta * side_n
    pts.append([0.0, rho, z])
    want.append(delta)
  pts += [[0, 0, h + 0.1], [0.2, 0, -h - 0.05], [0, 0, -h + 0.02], [r + 0.03, 0, -h - 0.04]]
  want += [0.1, 0.05, -0.02, 0.05]
  np.testing.assert_allclose(sdf("cone", pts), want, atol=1e-5)


def test_sdf_pyramid_octahedron_teardrop_closed_forms():
  # Pyramid: base [-0.35, 0.35]^2 at z = -0.36, apex 0.74 above.
  a, h, z0 = 0.35, 0.74, -0.36
  face_n = np.array([h, 0.0, a]) / math.hypot(h, a)  # the +x face's outward normal
  mid = np.array([a / 2, 0.0, z0 + h / 2])
  got = sdf(
    "pyramid",
    [[0, 0, z0 + h + 0.05], [0.1, -0.1, z0 - 0.08], mid + 0.03 * face_n, mid - 0.02 * face_n, [a + 0.03, a + 0.04, z0]],
  )
  np.testing.assert_allclose(got, [0.05, 0.08, 0.03, -0.02, 0.05], atol=1e-5)
  # Exactly on the base plane: 0 on the base square, the distance to its edge beyond it.
  got = sdf("pyramid", [[0.1, -0.2, z0], [0.0, 0.0, z0], [a + 0.05, 0.1, z0]])
  np.testing.assert_allclose(got, [0.0, 0.0, 0.05], atol=1e-5)
  # Octahedron |x|+|y|+|z| <= 0.55: past a vertex, off a face centre along its normal.
  s = 0.55
  n = np.array([1.0, -1.0, 1.0]) / math.sqrt(3)
  got = sdf(
    "octahedron",
    [
      [s + 0.05, 0, 0],
      [0, 0, -s - 0.1],
      s / 3 * n * math.sqrt(3) + 0.04 * n,
      s / 3 * n * math.sqrt(3) - 0.03 * n,
      [0, 0, 0],
    ],
  )
  np.testing.assert_allclose(got, [0.05, 0.1, 0.04, -0.03, -s / math.sqrt(3)], atol=1e-5)
  # Teardrop: the tip at +x (0.48 + 0.03), the round back at -x (-0.14 - 0.34).
  got = sdf("teardrop", [[0.51 + 0.05, 0, 0], [-0.48 - 0.02, 0, 0], [-0.14, 0, 0.34 + 0.1], [-0.14, 0, 0]])
  np.testing.assert_allclose(got, [0.05, 0.02, 0.1, -0.34], atol=1e-5)


def test_sdf_eikonal_and_finite_gradients():
  """|grad sdf| = 1 off the surface (exact SDFs; unions are exact outside); no NaN anywhere."""
  rng = np.random.default_rng(1)
  x = np.concatenate([rng.uniform(-0.7, 0.7, (4000, 3)), np.zeros((1, 3))]).astype(np.float32)
  for i, name in enumerate(world.SHAPES):
    d = sdf(name, x)
    g = np.asarray(_sdf_grad(np.int32(i), x))
    assert np.all(np.isfinite(g)), name
    norm = np.linalg.norm(g, axis=-1)
    far = (np.abs(d) > 1e-3) & np.any(x != 0, axis=-1)  # the origin (last) only needs finite
    check = far & (d > 0) if name in ("bird", "chair") else far
    np.testing.assert_allclose(norm[check], 1.0, atol=1e-4, err_msg=name)


# Closed-form volumes (world units^3).
VOLUMES = {
  "sphere": 4 / 3 * math.pi * 0.45**3,
  "cube": 0.64**3,
  "cylinder": math.pi * 0.34**2 * 0.72,
  "cone": math.pi * 0.4**2 * 0.8 / 3,
  "torus": 2 * math.pi**2 * 0.32 * 0.13**2,
  "capsule": math.pi * 0.2**2 * (0.6 + 4 / 3 * 0.2),
  "pyramid": 0.7**2 * 0.74 / 3,
  "octahedron": 4 / 3 * 0.55**3,
  # Disjoint boxes: seat, backrest, four legs.
  "chair": 0.54 * 0.54 * 0.1 + 0.1 * 0.54 * 0.44 + 4 * 0.09 * 0.09 * 0.35,
}


def test_occupancy_volumes_and_extent():
  n, half = 400_000, 0.7
  x = np.random.default_rng(2).uniform(-half, half, (n, 3)).astype(np.float32)
  box = (2 * half) ** 3
  occ_fn = jax.jit(world.occupancy)
  for i, name in enumerate(world.SHAPES):
    occ = np.asarray(occ_fn(np.int32(i), x))
    inside = x[occ]
    # Every shape lies within WORLD_RADIUS, is roughly centred, and is not tiny.
    assert np.linalg.norm(inside, axis=-1).max() < world.WORLD_RADIUS, name
    lo, hi = inside.min(0), inside.max(0)
    assert np.all(np.abs(lo + hi) < 0.1) and (hi - lo).max() > 0.6, (name, lo, hi)
    if name in VOLUMES:
      p = VOLUMES[name] / box
      tol = 4 * math.sqrt(p * (1 - p) / n) * box
      assert abs(occ.mean() * box - VOLUMES[name]) < tol, (name, occ.mean() * box, VOLUMES[name])


def test_density_fn_is_sharp_step():
  d = np.array([-0.05, -0.01, -0.001, 0.0, 0.001, 0.05], np.float32)
  x = np.stack([0.45 + d, np.zeros_like(d), np.zeros_like(d)], -1)  # across the sphere's surface
  density = np.asarray(jax.jit(world.density_fn(0))(x))
  s, k = world.DEFAULT_MAX_DENSITY, world.DEFAULT_SHARPNESS
  depth = np.maximum(-d, 0)
  want = s * (1 - np.exp(-k * depth) + 1e-4 * depth)
  np.testing.assert_allclose(density, want, rtol=1e-4, atol=1e-3)
  assert density[0] > 0.99 * s and np.all(density[3:] == 0)


# --- Renders. ---


def test_sphere_silhouette_matches_pinhole_radius():
  camera = orbit(20.0, 30.0, 1.3)
  image = render("sphere", camera)
  mask = colour_mask(image)
  # A sphere (radius r at distance D, on the optical axis) projects to a disc of radius
  # f tan(asin(r / D)) = f r / sqrt(D^2 - r^2) pixels.
  r, dist = 0.45, 1.3
  radius_px = FOCAL * r / math.sqrt(dist**2 - r**2)
  c = np.arange(SIZE) + 0.5 - SIZE / 2
  rho = np.hypot(*np.meshgrid(c, c))
  want = rho < radius_px
  wrong = mask != want
  assert np.all(np.abs(rho[wrong] - radius_px) < 0.5), (rho[wrong], radius_px)
  assert wrong.sum() <= 4
  # Albedo only: object pixels are exactly the named colour, the others the background.
  inner = rho < radius_px - 1.0
  np.testing.assert_allclose(image[inner], np.broadcast_to(RED, image[inner].shape), atol=2e-3)
  outer = rho > radius_px + 1.0
  np.testing.assert_allclose(image[outer], np.broadcast_to(BG, image[outer].shape), atol=1e-6)


def test_sphere_lambert_shading_uses_true_normals():
  light = np.array([0.4, 1.5, 1.2], np.float32)
  camera = orbit(20.0, 30.0, 1.3, light_pos=light)
  image = render("sphere", camera, SHADED)
  o, d = pixel_rays(camera)
  b = d @ o
  disc = b * b - (o @ o - 0.45**2)
  hit = disc > 0.05  # well inside the silhouette
  t = -b[hit] - np.sqrt(disc[hit])
  x = o + t[:, None] * d[hit]
  n = x / 0.45
  l = light - x
  l /= np.linalg.norm(l, axis=-1, keepdims=True)
  want = RED * (0.1 + 0.9 * np.maximum(np.sum(n * l, -1), 0))[:, None]
  got = image.reshape(-1, 3)[hit]
  np.testing.assert_allclose(got, want, atol=0.02)
  assert np.abs(got - want).mean() < 0.005


def test_textureless_is_grey_and_shaded():
  camera = orbit(30.0, 60.0, 1.3, light_pos=np.array([1.0, 0.5, 1.0], np.float32))
  for name in ["cube", "bird"]:
    obj = erode(colour_mask(render(name, camera)))  # interior pixels, from an albedo render
    assert obj.sum() > 50, name
    px = render(name, camera, TEXTURELESS)[obj]
    np.testing.assert_allclose(px[:, 0], px[:, 1], atol=1e-5)
    np.testing.assert_allclose(px[:, 0], px[:, 2], atol=1e-5)
    assert px.max() > 0.6 and px[:, 0].std() > 0.05, name  # lit, and shading varies
    assert px.min() >= 0.1 - 1e-3  # ambient floor (albedo 1)


@pytest.mark.parametrize("elevation,azimuth", [(25.0, 30.0), (-5.0, 200.0)])
def test_render_masks_match_sdf_raycast(elevation, azimuth):
  camera = orbit(elevation, azimuth, 1.25)
  for name in world.SHAPES:
    mask = colour_mask(render(name, camera))
    want = raycast_mask(name, camera)
    assert want.sum() > 150, name  # the object fills a good part of the frame
    # Only misses, only on the silhouette's rim: a pixel-centre ray that clips an edge or
    # corner with a chord shorter than the 2 cm coarse spacing may go unseen by the volume
    # renderer (7 of 480 pixels at worst for the cube). Nothing is ever rendered outside.
    wrong = mask != want
    assert not np.any(wrong & ~(want & ~erode(want))), (name, np.argwhere(wrong))
    assert wrong.sum() <= max(3, 0.025 * want.sum()), (name, np.argwhere(wrong))


def test_front_and_back_differ_only_for_asymmetric_shapes():
  """Front (azimuth 0) vs back (180) and left (90) vs right (270) silhouettes."""
  for name in world.SHAPES:
    masks = [colour_mask(render(name, orbit(20.0, az, 1.2))) for az in (0.0, 180.0, 90.0, 270.0)]
    diff_fb = (masks[0] != masks[1]).sum()
    diff_lr = (masks[2] != masks[3]).sum()
    if name in world.ASYMMETRIC:
      assert diff_fb >= 15 and diff_lr >= 40, (name, diff_fb, diff_lr)
    else:
      assert diff_fb <= 2 and diff_lr <= 2, (name, diff_fb, diff_lr)


# --- Batches. ---


def test_sample_pairs_held_out():
  for exclude in (True, False):
    shape, colour = jax.jit(world.sample_pairs, static_argnums=1)(jax.random.PRNGKey(0), 20_000, exclude)
    seen = set(zip(np.asarray(colour).tolist(), np.asarray(shape).tolist()))
    held = {(world.COLOUR_NAMES.index(c), world.SHAPES.index(s)) for c, s in world.HELD_OUT}
    allowed = len(world.PAIRS) - (len(held) if exclude else 0)
    assert len(seen) == allowed
    assert (not seen & held) if exclude else held <= seen
    # Uniform over allowed pairs.
    counts = np.bincount(np.asarray(shape) * 100 + np.asarray(colour))
    counts = counts[counts > 0]
    assert counts.max() < 2.0 * counts.min()


def _view_rule(elevation, azimuth):
  """Independent restatement of DreamFusion's view rule (0 front, 1 side, 2 back, 3 overhead)."""
  az = (azimuth + 180.0) % 360.0 - 180.0
  views = np.where(np.abs(az) <= 45.0, 0, np.where(np.abs(az) >= 135.0, 2, 1))
  return np.where(elevation > 60.0, 3, views)


@functools.lru_cache(maxsize=None)
def _batch(exclude):
  out = world.sample_batch(jax.random.PRNGKey(7), 256, 8, exclude_held_out=exclude)
  return jax.tree.map(np.asarray, out)


def test_sample_batch_held_out_and_captions():
  held = set(world.HELD_OUT)
  for exclude in (True, False):
    batch = _batch(exclude)
    pairs = {(world.COLOUR_NAMES[c], world.SHAPES[s]) for s, c in zip(batch["shape"], batch["colour"])}
    assert (not pairs & held) if exclude else (pairs & held)
  batch = _batch(True)
  assert batch["images"].shape == (256, 8, 8, 3) and batch["images"].dtype == np.float32
  assert batch["shape"].dtype == batch["colour"].dtype == batch["view"].dtype == np.int32
  assert batch["images"].min() >= 0 and batch["images"].max() <= 1
  cam = batch["camera"]
  views = _view_rule(cam["elevation"], cam["azimuth"])
  np.testing.assert_array_equal(batch["view"], views)
  assert set(views.tolist()) == {0, 1, 2, 3}
  # Nominal camera distribution: distance U(1, 1.5), elevation [-10, 90], focal 0.7-1.35 x size.
  assert cam["distance"].min() >= 1.0 and cam["distance"].max() <= 1.5
  assert cam["elevation"].min() >= -10.0 and cam["elevation"].max() <= 90.0
  assert cam["focal"].min() >= 0.7 * 8 and cam["focal"].max() <= 1.35 * 8
  for text, s, c, v in zip(world.captions_for(batch), batch["shape"], batch["colour"], views):
    assert text == f"a {world.COLOUR_NAMES[c]} {world.SHAPES[s]}, {text_lib.VIEW_SUFFIXES[v]}"
    assert world.parse_caption(text) == (world.COLOUR_NAMES[c], world.SHAPES[s])


def test_sample_batch_images_follow_labels():
  batch = _batch(True)
  modes = batch["shading_mode"]
  # DreamFusion's mix: 25% albedo only, 37.5% shaded, 37.5% textureless.
  frac = np.bincount(modes, minlength=3) / len(modes)
  assert np.all(np.abs(frac - np.array(world.DREAMFUSION_SHADING_MIX)) < 0.1), frac
  sh = batch["shading"]
  np.testing.assert_array_equal(sh["textureless"], (modes == 2).astype(np.float32))
  np.testing.assert_array_equal(sh["ambient"], np.where(modes == 0, 1.0, 0.1).astype(np.float32))
  images, opacity, bg = batch["images"], batch["opacity"], batch["background"]
  albedo = world.COLOUR_TABLE[batch["colour"]]
  empty = opacity < 1e-4
  np.testing.assert_allclose(images[empty], np.broadcast_to(bg[:, None, None], images.shape)[empty], atol=1e-4)
  solid = opacity > 0.999
  assert solid.sum() > 256 * 8 * 8 * 0.2  # objects fill a good part of the frames
  for mode in range(3):
    sel = solid & (modes == mode)[:, None, None]
    px = images[sel]
    if mode == 0:
      np.testing.assert_allclose(px, np.broadcast_to(albedo[:, None, None], images.shape)[sel], atol=2e-3)
    elif mode == 2:
      # Up to 1e-3 of the (coloured) background shows through opacity > 0.999.
      np.testing.assert_allclose(px[:, 0], px[:, 2], atol=2e-3)
      np.testing.assert_allclose(px[:, 1], px[:, 2], atol=2e-3)
    else:
      # Shaded colour = albedo * one scalar light level, read off the brightest channel.
      a = np.broadcast_to(albedo[:, None, None], images.shape)[sel]
      level = px.max(-1) / a.max(-1)
      np.testing.assert_allclose(px, a * level[:, None], atol=3e-3)


def test_bumpy_surfaces_change_the_images_but_not_the_labels():
  """sample_batch(bump_max > 0) renders the same draws (shapes, colours, cameras, backgrounds) with
  relief on the surfaces; amplitude 0 is the identity."""
  import jax
  import numpy as np

  from dreamfusion_jax.shapes import world

  x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
  np.testing.assert_array_equal(world.bumpy(x, 0.0, 40.0, np.zeros(3)), x)
  moved = np.linalg.norm(world.bumpy(x, 0.05, 40.0, np.ones(3)) - x, axis=-1) / np.linalg.norm(x, axis=-1)
  assert np.all(moved <= 0.05 + 1e-6) and np.any(moved > 1e-3)
  key = jax.random.PRNGKey(3)
  smooth = world.sample_batch(key, 3, 16)
  rough = world.sample_batch(key, 3, 16, bump_max=0.2)
  for name in ("shape", "colour", "view", "shading_mode", "background"):
    np.testing.assert_array_equal(smooth[name], rough[name])
  assert np.max(np.abs(np.asarray(smooth["images"]) - np.asarray(rough["images"]))) > 0.05


def test_colour_jitter_moves_albedos_within_its_radius_and_keeps_the_labels():
  """sample_batch(colour_jitter=r) draws the same examples with each albedo within r of its named colour
  (so still nearest to it, checked by brute force); albedo-only renders show that albedo."""
  import jax
  import numpy as np

  from dreamfusion_jax.shapes import world

  key = jax.random.PRNGKey(5)
  plain = world.sample_batch(key, 64, 16, shading_mix=(1.0, 0.0, 0.0))
  np.testing.assert_allclose(plain["albedo"], world.COLOUR_TABLE[np.asarray(plain["colour"])])
  moved = world.sample_batch(key, 64, 16, shading_mix=(1.0, 0.0, 0.0), colour_jitter=0.15)
  for name in ("shape", "colour", "view", "shading_mode", "background"):
    np.testing.assert_array_equal(plain[name], moved[name])
  albedo = np.asarray(moved["albedo"])
  offset = np.linalg.norm(albedo - world.COLOUR_TABLE[np.asarray(moved["colour"])], axis=-1)
  assert np.all(offset <= 0.15 + 1e-6) and np.median(offset) > 0.05
  assert np.all((albedo >= 0.0) & (albedo <= 1.0))
  nearest = np.linalg.norm(albedo[:, None] - world.COLOUR_TABLE[None], axis=-1).argmin(-1)
  np.testing.assert_array_equal(nearest, moved["colour"])
  # Fully covered pixels of an albedo-only render are the albedo.
  images, opacity = np.asarray(moved["images"]), np.asarray(moved["opacity"])
  for b in range(8):
    sel = opacity[b] > 0.999
    if sel.any():
      np.testing.assert_allclose(images[b][sel], np.broadcast_to(albedo[b], images[b][sel].shape), atol=2e-3)


def test_shade_min_darkens_chromatic_albedos_only():
  """sample_batch(shade_min=0.5) scales each chromatic albedo by one k in [0.5, 1] (all channels alike)
  and leaves white and gray alone; every other draw is the same."""
  import jax
  import numpy as np

  from dreamfusion_jax.shapes import world

  key = jax.random.PRNGKey(8)
  plain = world.sample_batch(key, 128, 8, shading_mix=(1.0, 0.0, 0.0))
  shaded = world.sample_batch(key, 128, 8, shading_mix=(1.0, 0.0, 0.0), shade_min=0.5)
  for name in ("shape", "colour", "view", "background"):
    np.testing.assert_array_equal(plain[name], shaded[name])
  named = world.COLOUR_TABLE[np.asarray(shaded["colour"])]
  ratio = np.asarray(shaded["albedo"]) / named
  achromatic = np.isin(np.asarray(shaded["colour"]), [world.COLOUR_NAMES.index(c) for c in world.ACHROMATIC])
  assert achromatic.any() and (~achromatic).any()
  np.testing.assert_allclose(ratio[achromatic], 1.0, rtol=1e-6)
  k = ratio[~achromatic]
  np.testing.assert_allclose(k, k[:, :1].repeat(3, axis=1), rtol=1e-5)
  assert k.min() >= 0.5 - 1e-6 and k.max() <= 1.0 + 1e-6 and k.std() > 0.1
