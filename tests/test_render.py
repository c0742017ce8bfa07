"""Tests for dreamfusion_jax.nerf.render against closed forms (analytic fields, no NeRF needed)."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.nerf import cameras, field, render

# Constants are numpy: on a 2-core CPU every eager jnp op costs a ~0.1 s compile.
BG = np.array([0.2, 0.4, 0.6], np.float32)
ALBEDO = np.array([0.3, 0.5, 0.7], np.float32)
ALBEDO_ONLY = dict(ambient=1.0, diffuse=0.0, textureless=0.0, light_pos=np.zeros(3, np.float32))


def background(d):
  return jnp.broadcast_to(BG, d.shape)


def _safe_norm(x):
  # Differentiable at 0 too (a deterministic midpoint can land exactly on the origin).
  return jnp.sqrt(jnp.sum(x * x, axis=-1) + 1e-12)


def field_params(const=0.0, ball_radius=0.6, ball_stiffness=0.0, inverted=False, slab_sigma=0.0, slab_h=0.0):
  """Parameters of one analytic density family, so that every closed-form test shares one compile:
  sigma(x) = const                                           (constant medium)
           + ball_stiffness * max(0, +-(ball_radius - |x|))  (opaque ball: n = x/|x|; inverted:
                                                              dense shell, normals point inward)
           + slab_sigma * [|x_0| < slab_h]                   (slab)
  """
  f = lambda v: np.float32(v)
  return dict(
    const=f(const),
    ball_radius=f(ball_radius),
    ball_stiffness=f(ball_stiffness),
    ball_sign=f(-1.0 if inverted else 1.0),
    slab_sigma=f(slab_sigma),
    slab_h=f(slab_h),
  )


def analytic_field(p):
  def fn(x):
    ball = p["ball_stiffness"] * jnp.maximum(p["ball_sign"] * (p["ball_radius"] - _safe_norm(x)), 0.0)
    slab = jnp.where(jnp.abs(x[..., 0]) < p["slab_h"], p["slab_sigma"], 0.0)
    return p["const"] + ball + slab, jnp.broadcast_to(ALBEDO, x.shape)

  return fn


OPAQUE_BALL = dict(ball_radius=0.6, ball_stiffness=1e6)


def parallel_rays(offsets, distance=3.0):
  """Rays along -x from (distance, b, 0), b in offsets (numpy: eager jnp ops compile one by one)."""
  b = np.asarray(offsets, np.float32)
  origins = np.stack([np.full_like(b, distance), b, np.zeros_like(b)], axis=-1)
  directions = np.broadcast_to(np.array([-1.0, 0.0, 0.0], np.float32), origins.shape)
  return origins, directions


_PAD_RAYS = 96  # Every call is padded to this many rays so it reuses one compiled program.


@functools.partial(jax.jit, static_argnames=("cfg", "deterministic"))
def _render_padded(key, params, origins, directions, shading, cfg, deterministic):
  return render.render_rays(
    None if deterministic else key, analytic_field(params), background, origins, directions, shading, cfg
  )


def _render(key, params, origins, directions, shading=None, cfg=render.RenderConfig()):
  """render_rays of the analytic field; key None = deterministic sampling."""
  shading = ALBEDO_ONLY if shading is None else shading
  origins, directions = np.asarray(origins, np.float32), np.asarray(directions, np.float32)
  n = origins.shape[0]
  pad = lambda v: np.concatenate([v, np.broadcast_to(v[-1:], (_PAD_RAYS - n, 3))])
  shading = {k: np.asarray(v, np.float32) for k, v in shading.items()}
  out = _render_padded(
    jax.random.PRNGKey(0) if key is None else key,
    params,
    pad(origins),
    pad(directions),
    shading,
    cfg,
    key is None,
  )
  return {k: np.asarray(v)[:n] for k, v in out.items()}


@functools.partial(jax.jit, static_argnums=(1, 2))
def _camera_rays(camera, height, width):
  origins, directions = cameras.generate_rays(camera, height, width)
  return origins.reshape(-1, 3), directions.reshape(-1, 3)


def numpy_sphere_hit(origins, directions, radius):
  """Ray / sphere entry distance and hit mask, brute-force quadratic in float64."""
  o = np.asarray(origins, np.float64)
  d = np.asarray(directions, np.float64)
  b = np.sum(o * d, -1)
  c = np.sum(o * o, -1) - radius**2
  disc = b * b - c
  t = -b - np.sqrt(np.maximum(disc, 0.0))
  return t, disc, o + t[:, None] * d


# --- Building blocks. ---


def test_intersect_sphere():
  origins = np.array([[3.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.2, 0.1, 0.0], [3.0, 2.0, 0.0], [3.0, 0.0, 0.0]], np.float32)
  dirs = np.array([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
  near, far, hit = jax.jit(render.intersect_sphere)(origins, dirs, 1.4)
  np.testing.assert_array_equal(hit, [True, True, True, False, False])
  np.testing.assert_allclose(near[:3], [1.6, 3.0 - math.sqrt(1.4**2 - 1), 0.0], atol=1e-6)
  # Inside origin: |o + t d| = 1.4 with o.d = 0.06, |o|^2 = 0.05.
  t_exit = -0.06 + math.sqrt(0.06**2 - 0.05 + 1.96)
  np.testing.assert_allclose(far[:3], [4.4, 3.0 + math.sqrt(1.4**2 - 1), t_exit], atol=1e-6)


def test_stratified_samples():
  near, far = np.array([0.5, 1.0], np.float32), np.array([2.5, 1.5], np.float32)
  strat = jax.jit(render.stratified_samples, static_argnums=3)
  t, edges = strat(jax.random.PRNGKey(0), near, far, 8)
  np.testing.assert_allclose(edges[:, 0], near)
  np.testing.assert_allclose(edges[:, -1], far, rtol=1e-6)
  assert np.all((t >= edges[:, :-1]) & (t <= edges[:, 1:]))
  t_mid, _ = strat(None, near, far, 8)
  np.testing.assert_allclose(t_mid[0], 0.5 + 0.25 * (np.arange(8) + 0.5), rtol=1e-6)


def test_composite_matches_loop():
  rng = np.random.default_rng(0)
  sigma = rng.uniform(0, 3, (4, 10)).astype(np.float32)
  edges = np.sort(rng.uniform(0, 2, (4, 11)), axis=-1).astype(np.float32)
  w, trans, alpha = jax.jit(render.composite)(sigma, edges)
  for r in range(4):
    t_run = 1.0
    for i in range(10):
      a = 1 - math.exp(-sigma[r, i] * (edges[r, i + 1] - edges[r, i]))
      np.testing.assert_allclose([alpha[r, i], trans[r, i], w[r, i]], [a, t_run, t_run * a], rtol=1e-5, atol=1e-7)
      t_run *= 1 - a
  # Telescoping: total weight = 1 - exp(-total optical depth).
  np.testing.assert_allclose(w.sum(-1), 1 - np.exp(-(sigma * np.diff(edges, axis=-1)).sum(-1)), rtol=1e-5)


def test_distortion_matches_double_sum_and_closed_forms():
  rng = np.random.default_rng(1)
  w = rng.uniform(0, 0.3, (3, 12)).astype(np.float32)
  edges = np.sort(rng.uniform(0, 2, (3, 13)), axis=-1).astype(np.float32)
  mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
  brute = [
    sum(w[r, i] * w[r, j] * abs(mid[r, i] - mid[r, j]) for i in range(12) for j in range(12))
    + sum(w[r, i] ** 2 * (edges[r, i + 1] - edges[r, i]) for i in range(12)) / 3
    for r in range(3)
  ]
  np.testing.assert_allclose(jax.jit(render.distortion)(w, edges), brute, rtol=1e-5)
  # All weight in one interval of width 0.3: w^2 * 0.3 / 3. A fog of density s (weights
  # s exp(-s t) dt) has E|t - t'| = 1/s for independent exponential depths: 0.25 at s = 4.
  one = np.array([[0.0, 0.0, 0.8, 0.0]], np.float32)
  np.testing.assert_allclose(
    render.distortion(one, np.array([[0.0, 0.5, 1.0, 1.3, 2.0]], np.float32)), [0.64 * 0.3 / 3], rtol=1e-5
  )
  fog_edges = np.linspace(0.0, 10.0, 4001, dtype=np.float64)[None]
  fog_w, _, _ = render.composite(np.full((1, 4000), 4.0), fog_edges)
  np.testing.assert_allclose(render.distortion(fog_w, fog_edges), [0.25], rtol=2e-3)


_sample_pdf = jax.jit(render.sample_pdf, static_argnums=3)


def test_sample_pdf_known_cdf():
  # pdf 0.25 on [0, 1] and 0.75 on [1, 3] (density 0.375): F^-1(u) = 4u, or 1 + 8(u - 0.25)/3.
  bins = np.array([[0.0, 1.0, 3.0]], np.float32)
  weights = np.array([[1.0, 3.0]], np.float32)
  n = 16
  s = np.asarray(_sample_pdf(None, bins, weights, n))[0]
  u = (np.arange(n) + 0.5) / n
  expected = np.where(u < 0.25, 4 * u, 1 + (u - 0.25) * 8 / 3)
  np.testing.assert_allclose(s, expected, atol=1e-4)
  # Random stratified samples: sorted, in range, and their empirical CDF matches F.
  s = np.asarray(_sample_pdf(jax.random.PRNGKey(1), np.tile(bins, (2000, 1)), np.tile(weights, (2000, 1)), n))
  assert np.all(np.diff(s, axis=-1) >= 0) and s.min() >= 0 and s.max() <= 3
  for x, f in [(0.5, 0.125), (1.0, 0.25), (2.0, 0.625)]:
    assert abs(np.mean(s < x) - f) < 0.01


def test_sample_pdf_single_bin():
  bins = np.broadcast_to(np.linspace(0.0, 2.0, 65, dtype=np.float32), (3, 65))
  weights = np.zeros((3, 64), np.float32)
  weights[:, 37] = 1.0
  for key in [None, jax.random.PRNGKey(2)]:
    s = np.asarray(_sample_pdf(key, bins, weights, 32))
    lo, hi = 37 * 2 / 64, 38 * 2 / 64
    assert np.all((s >= lo - 1e-6) & (s <= hi + 1e-6)), (s.min(), s.max())


def test_shade_closed_form():
  rng = np.random.default_rng(0)
  albedo = rng.uniform(0, 1, (50, 3)).astype(np.float32)
  normals = rng.standard_normal((50, 3)).astype(np.float32)
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  points = rng.uniform(-1, 1, (50, 3)).astype(np.float32)
  light = np.array([0.3, -2.0, 1.5], np.float32)
  l_dir = light - points
  l_dir /= np.linalg.norm(l_dir, axis=-1, keepdims=True)
  lambert = np.maximum(np.sum(normals * l_dir, -1, keepdims=True), 0)
  for textureless in [0.0, 1.0]:
    shading = dict(ambient=0.1, diffuse=0.9, textureless=textureless, light_pos=light)
    got = jax.jit(render.shade)(albedo, normals, points, shading)
    base = albedo if textureless == 0.0 else np.ones_like(albedo)
    np.testing.assert_allclose(got, base * (0.1 + 0.9 * lambert), atol=1e-6)
  # albedo_grad scales the gradient to the albedo, never the colour: d sum(colour) / d albedo = g * light.
  for g in [1.0, 0.0, 0.25]:
    shading = dict(ambient=0.1, diffuse=0.9, textureless=0.0, light_pos=light, albedo_grad=g)
    got = jax.jit(render.shade)(albedo, normals, points, shading)
    np.testing.assert_allclose(got, albedo * (0.1 + 0.9 * lambert), atol=1e-6)
    grad = jax.grad(lambda a: jnp.sum(render.shade(a, normals, points, shading)))(albedo)
    np.testing.assert_allclose(grad, g * np.broadcast_to(0.1 + 0.9 * lambert, albedo.shape), atol=1e-6)


# --- Closed-form renders. ---


def test_empty_space_is_background():
  origins, dirs = parallel_rays([0.0, 0.7, 1.3, 2.0])
  out = _render(jax.random.PRNGKey(0), field_params(), origins, dirs)
  np.testing.assert_array_equal(out["opacity"], 0.0)
  np.testing.assert_array_equal(out["rgb"], np.broadcast_to(BG, (4, 3)))
  assert out["weights"].shape == (4, render.RenderConfig().num_fine)


@pytest.mark.parametrize("key", [None, 0])
def test_constant_medium_chord(key):
  """Constant density inside the bounding sphere: opacity = 1 - exp(-sigma * 2 sqrt(r^2 - b^2))."""
  sigma, bound = 0.7, 1.4
  cfg = render.RenderConfig()
  offsets = np.array([0.0, 0.5, 1.0, 1.3, 1.5])  # The last ray misses the sphere.
  origins, dirs = parallel_rays(offsets)
  key = None if key is None else jax.random.PRNGKey(key)
  out = _render(key, field_params(const=sigma), origins, dirs)
  chord = 2 * np.sqrt(np.maximum(bound**2 - offsets**2, 0.0))
  expected = 1 - np.exp(-sigma * chord)
  np.testing.assert_allclose(out["opacity"], expected, atol=2e-5)
  np.testing.assert_allclose(out["rgb"], expected[:, None] * ALBEDO + (1 - expected[:, None]) * BG, atol=2e-5)
  # A camera inside the sphere renders from near_min to the exit point.
  inside = _render(key, field_params(const=sigma), np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]))
  np.testing.assert_allclose(inside["opacity"], 1 - math.exp(-sigma * (bound - cfg.near_min)), atol=2e-5)


DENSE = render.RenderConfig(num_coarse=128, num_fine=128)


def test_slab_transmittance():
  """Slab |x| < h of density sigma: transmittance exp(-sigma * 2h / |d_x|)."""
  sigma, h = 1.5, 0.4
  angles = np.radians([0.0, 25.0, 40.0])
  dirs = np.stack([-np.cos(angles), np.sin(angles), np.zeros_like(angles)], -1).astype(np.float32)
  origins = -3.0 * dirs  # Every ray passes through the origin.
  out = _render(None, field_params(slab_sigma=sigma, slab_h=h), origins, dirs, cfg=DENSE)
  expected = np.exp(-sigma * 2 * h / np.cos(angles))
  # The density steps at the slab faces; the interval that straddles each face is short
  # (importance sampling puts fine edges there) but costs up to sigma * delta / 2 each.
  np.testing.assert_allclose(1 - out["opacity"], expected, atol=3e-3)


@pytest.fixture(scope="module")
def ball_image():
  """Opaque ball of radius 0.6 seen by an orbit camera at distance 3, 9x9 pixels."""
  r0 = OPAQUE_BALL["ball_radius"]
  cam = jax.jit(cameras.orbit_camera)(20.0, 30.0, 3.0, 9.0)
  light = np.array([1.0, 2.0, 2.5])
  shading = dict(ambient=0.2, diffuse=0.7, textureless=0.0, light_pos=light)
  origins, dirs = _camera_rays(cam, 9, 9)
  out = _render(jax.random.PRNGKey(4), field_params(**OPAQUE_BALL), origins, dirs, shading)
  t, disc, hit_points = numpy_sphere_hit(origins, dirs, r0)
  # Keep clear of grazing rays: perpendicular distance below 0.9 r0 (hit) or above 1.05 r0 (miss).
  perp2 = r0**2 - disc
  return dict(
    out=out, t=t, hit=perp2 < (0.9 * r0) ** 2, miss=perp2 > (1.05 * r0) ** 2, points=hit_points, light=np.asarray(light)
  )


def test_opaque_ball_depth_and_opacity(ball_image):
  b = ball_image
  out, hit = b["out"], b["hit"]
  assert hit.sum() >= 9 and b["miss"].sum() >= 20
  np.testing.assert_allclose(out["opacity"][hit], 1.0, atol=1e-4)
  np.testing.assert_allclose(out["opacity"][b["miss"]], 0.0, atol=1e-6)
  # Sub-1% of the 3-unit distance: the ramp stiffness makes the ball opaque ~2e-3 inside r0.
  np.testing.assert_allclose(out["depth"][hit], b["t"][hit], atol=1e-2)
  np.testing.assert_allclose(out["rgb"][b["miss"]], np.broadcast_to(BG, (b["miss"].sum(), 3)), atol=1e-6)


@pytest.mark.parametrize("key", [None, 7])
def test_opaque_ball_centre_depth(key):
  origins, dirs = parallel_rays([0.0])
  key = None if key is None else jax.random.PRNGKey(key)
  out = _render(key, field_params(**OPAQUE_BALL), origins, dirs)
  np.testing.assert_allclose(out["depth"], 3.0 - OPAQUE_BALL["ball_radius"], atol=5e-3)


def test_opaque_ball_normals_and_shading(ball_image):
  b = ball_image
  out, hit = b["out"], b["hit"]
  n_true = b["points"] / np.linalg.norm(b["points"], axis=-1, keepdims=True)
  np.testing.assert_allclose(out["normals"][hit], n_true[hit], atol=2e-2)
  l_dir = b["light"] - b["points"]
  l_dir /= np.linalg.norm(l_dir, axis=-1, keepdims=True)
  lambert = np.maximum(np.sum(n_true * l_dir, -1, keepdims=True), 0.0)
  expected = np.asarray(ALBEDO) * (0.2 + 0.7 * lambert)
  np.testing.assert_allclose(out["rgb"][hit], expected[hit], atol=2e-2)
  np.testing.assert_allclose(out["albedo"][hit], np.broadcast_to(ALBEDO, (hit.sum(), 3)), atol=1e-4)
  # Seen from outside, the normals face the camera: no orientation penalty.
  np.testing.assert_allclose(out["orientation"], 0.0, atol=1e-6)


def test_shading_light_along_normal():
  """Centre ray hits (r0, 0, 0) with normal +x; a light on +x gives n.l = 1."""
  origins, dirs = parallel_rays([0.0])
  ball = field_params(**OPAQUE_BALL)
  for textureless, base in [(0.0, ALBEDO), (1.0, np.ones(3))]:
    shading = dict(ambient=0.2, diffuse=0.5, textureless=textureless, light_pos=np.array([2.0, 0.0, 0.0]))
    out = _render(None, ball, origins, dirs, shading)
    np.testing.assert_allclose(out["rgb"][0], np.asarray(base) * 0.7, atol=1e-3)
  # Light behind the surface: ambient only.
  shading = dict(ambient=0.2, diffuse=0.5, textureless=0.0, light_pos=np.array([-2.0, 0.0, 0.0]))
  out = _render(None, ball, origins, dirs, shading)
  np.testing.assert_allclose(out["rgb"][0], np.asarray(ALBEDO) * 0.2, atol=1e-3)


def test_orientation_inverted_density():
  """Density S * max(0, |x| - r0): on the axis, normals -grad/|grad| = -x/|x| point along the
  ray before the centre, so orientation = weight before the centre = 1 - exp(-S (R - r0)^2 / 2)."""
  stiffness, r0, bound = 2.0, 0.4, 1.4
  origins, dirs = parallel_rays([0.0])
  params = field_params(ball_radius=r0, ball_stiffness=stiffness, inverted=True)
  out = _render(None, params, origins, dirs, cfg=DENSE)
  front = 1 - math.exp(-stiffness * (bound - r0) ** 2 / 2)
  np.testing.assert_allclose(out["orientation"], front, atol=5e-3)
  # Total opacity: the same shell again behind the hollow centre.
  np.testing.assert_allclose(out["opacity"], 1 - (1 - front) ** 2, atol=5e-3)


# --- Batching, chunking, gradients. ---


def test_render_image_vmap_and_chunks():
  """A vmapped, chunked render_image equals per-camera render_rays on the same rays."""
  cfg = render.RenderConfig(chunk_size=7)  # 16 rays: 3 chunks, evened out to 6 rays each (2 padded).
  params = field_params(ball_radius=0.5, ball_stiffness=20.0)
  cams = jax.jit(jax.vmap(lambda a: cameras.orbit_camera(10.0, a, 2.5, 5.0)))(np.array([0.0, 120.0], np.float32))
  batched = jax.jit(
    jax.vmap(lambda cam: render.render_image(None, analytic_field(params), background, cam, ALBEDO_ONLY, cfg, 4, 4))
  )(cams)
  assert batched["rgb"].shape == (2, 4, 4, 3) and batched["weights"].shape == (2, 4, 4, cfg.num_fine)
  for i in range(2):
    origins, dirs = _camera_rays(jax.tree.map(lambda v: v[i], cams), 4, 4)
    single = _render(None, params, origins, dirs)
    for name in ["rgb", "opacity", "depth", "weights"]:
      np.testing.assert_allclose(batched[name][i].reshape(single[name].shape), single[name], atol=1e-5)
  assert float(batched["opacity"].max()) > 0.5  # The ball is in view.


def _param_field(params):
  def fn(x):
    r2 = jnp.sum((x - params["centre"]) ** 2, axis=-1)
    density = jnp.exp(params["log_scale"] - r2 / (2 * 0.3**2))
    albedo = jax.nn.sigmoid(x @ params["albedo_w"] + params["albedo_b"])
    return density, albedo

  return fn


def test_gradients_finite_and_albedo_exact():
  params = dict(
    centre=np.array([0.1, -0.05, 0.0], np.float32),
    log_scale=np.float32(3.0),
    albedo_w=np.eye(3, dtype=np.float32) * 0.5,
    albedo_b=np.zeros(3, np.float32),
  )
  light = np.array([1.0, 1.0, 1.0], np.float32)
  shading = dict(ambient=0.1, diffuse=0.9, textureless=0.0, light_pos=light)
  cfg = render.RenderConfig(num_coarse=16, num_fine=8)
  key = np.asarray(jax.random.PRNGKey(0))
  eps = 1e-2

  def losses(p):
    cam = cameras.orbit_camera(15.0, 40.0, 2.0, 4.0, light_pos=light)
    out = render.render_image(key, _param_field(p), background, cam, shading, cfg, 4, 4)
    return jnp.stack([jnp.mean(out["rgb"]), jnp.mean(out["orientation"])])

  @jax.jit
  def everything(p):
    jac = jax.jacrev(losses)(p)  # Gradients of the colour term and of the orientation term.
    bumped = jax.tree.map(lambda v: jnp.stack([v, v]), p)
    bumped["albedo_b"] = bumped["albedo_b"].at[:, 1].add(jnp.array([eps, -eps]))
    value = jax.vmap(losses)(bumped)
    return jac, (value[0, 0] - value[1, 0]) / (2 * eps), value

  jac, fd, value = everything(params)
  assert np.all(np.isfinite(value))
  for name, g in jac.items():
    assert np.all(np.isfinite(g)), name
    assert np.any(g[0] != 0), name
  # Albedo does not move the sample positions, so its gradient equals a central difference.
  np.testing.assert_allclose(jac["albedo_b"][0, 1], fd, rtol=2e-2)
  # The orientation term reaches the density params through the normals only (double backward).
  assert value[0, 1] > 1e-4
  assert np.any(jac["centre"][1] != 0) and np.any(jac["log_scale"][1] != 0)
  np.testing.assert_array_equal(jac["albedo_b"][1], 0.0)


@pytest.mark.parametrize("step", [0.002, 0.01])
def test_central_difference_normals_of_a_sphere(step):
  """render.normal_step: the central differences of a sphere's signed distance point along x / |x| (closed form),
  to O(step^2 / |x|^2)."""
  radius = 0.5
  rng = np.random.default_rng(0)
  direction = rng.normal(size=(64, 3))
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  x = jnp.asarray(direction * rng.uniform(0.4, 0.6, (64, 1)), jnp.float32)
  normals = jax.jit(
    lambda x: render.central_difference_normals(lambda p: jnp.linalg.norm(p, axis=-1) - radius, x, step)
  )(x)
  np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(normals, direction, atol=step**2 / 0.4**2 + 2e-4)
  # A box's corner region: the differences see both faces once the step reaches across the edge.
  box = lambda p: jnp.max(jnp.abs(p), axis=-1) - 0.3
  at_edge = jnp.asarray([[0.3, 0.3 - step / 2, 0.0]], jnp.float32)
  n = np.asarray(render.central_difference_normals(box, at_edge, step))[0]
  assert n[0] > 0.9 and 0.2 < n[1] < 0.5 and abs(n[2]) < 1e-6, n


def test_central_difference_normals_in_a_render_of_a_volsdf_ball():
  """The renderer with normal_step and a VolSDF ball: the composited normals match the exact normals' render, and
  a step > 0 without a distance_fn is refused."""
  radius, beta = 0.6, 0.01
  distance = lambda x: jnp.linalg.norm(x, axis=-1) - radius
  field_fn = lambda x: (field.volsdf_density(distance(x), beta), jnp.full(x.shape[:-1] + (3,), 0.5))
  cam = jax.jit(cameras.orbit_camera)(20.0, 30.0, 3.0, 9.0)
  origins, dirs = _camera_rays(cam, 9, 9)
  shading = dict(ambient=0.2, diffuse=0.7, textureless=0.0, light_pos=np.array([1.0, 2.0, 2.5], np.float32))
  cfg = render.RenderConfig(num_coarse=64, num_fine=32)
  go = lambda c, d=None: render.render_rays(None, field_fn, background, origins, dirs, shading, c, d)
  exact = go(cfg)
  numeric = go(dataclasses.replace(cfg, normal_step=0.005), distance)
  hit = np.asarray(exact["opacity"]) > 0.99
  assert hit.sum() >= 9
  np.testing.assert_allclose(numeric["normals"][hit], exact["normals"][hit], atol=1e-3)
  np.testing.assert_allclose(numeric["rgb"], exact["rgb"], atol=1e-3)
  with pytest.raises(ValueError, match="distance_fn"):
    go(dataclasses.replace(cfg, normal_step=0.005))
