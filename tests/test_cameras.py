"""Tests for dreamfusion_jax.nerf.cameras: the sampled distributions against closed forms, the frame,
rays against an independent numpy pinhole model, and the view-suffix rule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras

N = 20_000
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def samples():
  cfg = cameras.CameraConfig()
  keys = jax.random.split(jax.random.PRNGKey(0), N)
  cams = jax.jit(jax.vmap(lambda k: cameras.sample_camera(k, cfg, IMAGE_SIZE)))(keys)
  return cfg, jax.tree.map(np.asarray, cams)


def _elevation_cdf(x_deg, lo=-10.0, hi=90.0):
  """CDF of the paper's 50/50 mixture: uniform in angle, and uniform by area (sin el uniform)."""
  angle = (x_deg - lo) / (hi - lo)
  s = np.sin(np.radians(x_deg))
  s_lo, s_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
  area = (s - s_lo) / (s_hi - s_lo)
  return 0.5 * angle + 0.5 * area


def test_elevation_range_and_mixture(samples):
  _, cams = samples
  el = cams["elevation"]
  assert el.min() >= -10.0 - 1e-4 and el.max() <= 90.0 + 1e-4
  # Fraction above 60 deg: 0.5 * 30/100 + 0.5 * (1 - sin 60)/(1 - sin(-10)) = 0.2071.
  expected = 1.0 - _elevation_cdf(60.0)
  assert abs(expected - 0.2071) < 1e-3
  se = math.sqrt(expected * (1 - expected) / N)
  assert abs(np.mean(el > 60.0) - expected) < 4 * se
  # The pure-angle (0.3) and pure-area (0.114) laws are far outside this band.
  # Kolmogorov-Smirnov distance to the full mixture CDF (1.95/sqrt(N) is the 0.1% level).
  el_sorted = np.sort(el)
  ecdf = np.arange(1, N + 1) / N
  ks = np.max(np.abs(ecdf - _elevation_cdf(el_sorted)))
  assert ks < 1.95 / math.sqrt(N), ks


def test_azimuth_uniform(samples):
  _, cams = samples
  az = cams["azimuth"]
  assert az.min() >= 0.0 and az.max() < 360.0
  rad = np.radians(az)
  # Mean of cos/sin of a uniform angle is 0 with std 1/sqrt(2N) = 0.005.
  assert abs(np.mean(np.cos(rad))) < 0.025 and abs(np.mean(np.sin(rad))) < 0.025
  counts, _ = np.histogram(az, bins=12, range=(0.0, 360.0))
  expected = N / 12
  chi2 = np.sum((counts - expected) ** 2 / expected)
  assert chi2 < 31.3, chi2  # 99.9% quantile of chi^2 with 11 dof.


def test_distance_focal_and_jitter(samples):
  cfg, cams = samples
  d = cams["distance"]
  assert d.min() >= 1.0 and d.max() <= 1.5
  assert abs(d.mean() - 1.25) < 4 * (0.5 / math.sqrt(12 * N))
  f = cams["focal"]
  assert f.min() >= 0.7 * IMAGE_SIZE - 1e-3 and f.max() <= 1.35 * IMAGE_SIZE + 1e-3
  assert abs(f.mean() - 1.025 * IMAGE_SIZE) < 4 * (0.65 * IMAGE_SIZE / math.sqrt(12 * N))
  # The origin is the nominal spherical position plus a U(-0.1, 0.1)^3 jitter.
  el, az = np.radians(cams["elevation"]), np.radians(cams["azimuth"])
  nominal = d[:, None] * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
  jitter = cams["origin"] - nominal
  assert np.abs(jitter).max() <= cfg.position_jitter + 1e-4
  assert np.abs(jitter).max() > 0.95 * cfg.position_jitter  # It is really used.
  np.testing.assert_allclose(jitter.std(axis=0), 0.2 / math.sqrt(12), rtol=0.05)
  # Look-at point ~ N(0, 0.2^2 I).
  np.testing.assert_allclose(cams["target"].mean(axis=0), 0.0, atol=4 * 0.2 / math.sqrt(N))
  np.testing.assert_allclose(cams["target"].std(axis=0), 0.2, rtol=0.05)


def test_frame_orthonormal_and_looks_at_target(samples):
  _, cams = samples
  c2w = cams["c2w"]
  eye = np.einsum("nji,njk->nik", c2w, c2w)
  np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(c2w), 1.0, atol=1e-5)
  forward = -c2w[:, :, 2]
  to_target = cams["target"] - cams["origin"]
  to_target /= np.linalg.norm(to_target, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.sum(forward * to_target, axis=-1), 1.0, atol=1e-5)
  # The right vector is horizontal up to the up-vector noise (std 0.02): cameras are upright.
  assert np.abs(c2w[:, 2, 0]).max() < 0.15


def test_light_distance_and_direction(samples):
  _, cams = samples
  r = np.linalg.norm(cams["light_pos"], axis=-1)
  assert r.min() >= 0.8 - 1e-4 and r.max() <= 1.5 + 1e-4
  assert abs(r.mean() - 1.15) < 0.01
  # The light direction is that of N(camera position, I): compare the cosine to the camera
  # direction with a numpy Monte-Carlo of the same law on the same camera positions.
  origin = cams["origin"]
  o_norm = np.linalg.norm(origin, axis=-1)
  cos = np.sum(cams["light_pos"] * origin, axis=-1) / (r * o_norm)
  ref = origin + np.random.default_rng(0).standard_normal(origin.shape)
  cos_ref = np.sum(ref * origin, axis=-1) / (np.linalg.norm(ref, axis=-1) * o_norm)
  se = math.sqrt(np.var(cos_ref) * 2 / N)
  assert abs(np.mean(cos) - np.mean(cos_ref)) < 4 * se
  assert np.min(cos) < 0.0  # Sometimes the light is behind the object.


def _numpy_rays(origin, c2w, focal, height, width):
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  d_cam = np.stack(
    [(cols + 0.5 - width / 2) / focal, -(rows + 0.5 - height / 2) / focal, -np.ones(rows.shape)],
    axis=-1,
  )
  d = np.einsum("ij,hwj->hwi", c2w, d_cam)
  return np.broadcast_to(origin, d.shape), d / np.linalg.norm(d, axis=-1, keepdims=True)


def test_generate_rays_pinhole():
  cam = cameras.sample_camera(jax.random.PRNGKey(3), cameras.CameraConfig(), 64)
  height, width = 5, 7  # Odd sizes put a pixel centre on the optical axis.
  origins, dirs = cameras.generate_rays(cam, height, width)
  c = jax.tree.map(np.asarray, cam)
  o_ref, d_ref = _numpy_rays(c["origin"], c["c2w"], c["focal"], height, width)
  np.testing.assert_allclose(origins, o_ref, atol=1e-6)
  np.testing.assert_allclose(dirs, d_ref, atol=1e-6)
  np.testing.assert_allclose(dirs[2, 3], -c["c2w"][:, 2], atol=1e-6)
  # Corner pixel (0, 0) is up-left: positive camera-up, negative camera-right components.
  corner = dirs[0, 0] @ c["c2w"]
  assert corner[0] < 0 and corner[1] > 0 and corner[2] < 0
  np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, atol=1e-6)


def test_orbit_camera():
  cam = cameras.orbit_camera(30.0, 120.0, 2.0, 50.0)
  el, az = math.radians(30.0), math.radians(120.0)
  expected = 2.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
  np.testing.assert_allclose(cam["origin"], expected, atol=1e-6)
  np.testing.assert_allclose(cam["light_pos"], expected, atol=1e-6)
  # Same frame as the generic look-at with world z up.
  np.testing.assert_allclose(cam["c2w"], cameras.look_at(cam["origin"], jnp.zeros(3)), atol=1e-6)
  # Straight overhead is still a valid frame, looking down.
  top = cameras.orbit_camera(90.0, 10.0, 1.5, 50.0)
  c2w = np.asarray(top["c2w"])
  np.testing.assert_allclose(c2w.T @ c2w, np.eye(3), atol=1e-6)
  np.testing.assert_allclose(-c2w[:, 2], [0, 0, -1], atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(c2w), 1.0, atol=1e-6)
  # The degenerate look_at (up parallel to the view) falls back to a finite frame.
  deg = np.asarray(cameras.look_at(jnp.array([0.0, 0.0, 2.0]), jnp.zeros(3)))
  np.testing.assert_allclose(deg.T @ deg, np.eye(3), atol=1e-6)
  np.testing.assert_allclose(deg[:, 2], [0, 0, 1], atol=1e-6)


@pytest.mark.parametrize(
  "elevation,azimuth,expected",
  [
    (0.0, 0.0, 0),
    (10.0, 350.0, 0),  # Wraps around: 350 is 10 deg from the front.
    (0.0, -30.0, 0),
    (0.0, 45.0, 0),  # Boundary: |az| = 45 counts as front (inclusive).
    (0.0, 315.0, 0),
    (0.0, 46.0, 1),
    (0.0, 90.0, 1),
    (0.0, 270.0, 1),
    (0.0, 134.0, 1),
    (0.0, 135.0, 2),  # Boundary: |az| = 180 - 45 counts as back (inclusive).
    (0.0, 180.0, 2),
    (-10.0, 225.0, 2),
    (60.0, 0.0, 0),  # Overhead is strictly above 60 deg.
    (70.0, 0.0, 3),
    (90.0, 180.0, 3),
    (0.0, 720.0, 0),
  ],
)
def test_view_index(elevation, azimuth, expected):
  assert int(text_lib.view_index(elevation, azimuth)) == expected


def test_view_index_vectorised_and_prompt():
  idx = text_lib.view_index(jnp.array([0.0, 0.0, 0.0, 80.0]), jnp.array([0.0, 90.0, 180.0, 0.0]))
  assert idx.dtype == jnp.int32
  np.testing.assert_array_equal(idx, [0, 1, 2, 3])
  assert text_lib.view_prompt("a corgi", 1) == "a corgi, side view"
  assert text_lib.view_prompt("a corgi", jnp.int32(3)) == "a corgi, overhead view"
  assert text_lib.VIEW_SUFFIXES == ("front view", "side view", "back view", "overhead view")


def test_progressive_view_gathers_azimuths_around_the_front():
  """With azimuth_scale r the azimuth is r * A, A uniform on [-180, 180): uniform on [-180 r, 180 r). Every other
  field is drawn as without it (same key, same values)."""
  cfg = cameras.CameraConfig()
  keys = jax.random.split(jax.random.PRNGKey(0), N)
  plain = jax.vmap(lambda k: cameras.sample_camera(k, cfg, IMAGE_SIZE))(keys)
  for r in (0.0, 0.25, 1.0):
    cams = jax.vmap(lambda k: cameras.sample_camera(k, cfg, IMAGE_SIZE, jnp.float32(r)))(keys)
    az = np.asarray(cams["azimuth"])
    # The same uniform draw, moved to [-180, 180) and scaled: by hand from the plain azimuths.
    expected = r * (np.mod(np.asarray(plain["azimuth"]) + 180.0, 360.0) - 180.0)
    np.testing.assert_allclose(az, expected, atol=1e-3)
    assert az.min() >= -180.0 * r - 1e-4 and az.max() <= 180.0 * r + 1e-4
    if r > 0:
      counts, _ = np.histogram(az, bins=12, range=(-180.0 * r, 180.0 * r))
      chi2 = np.sum((counts - N / 12) ** 2 / (N / 12))
      assert chi2 < 31.3, chi2
    np.testing.assert_array_equal(np.asarray(cams["elevation"]), np.asarray(plain["elevation"]))
    np.testing.assert_array_equal(np.asarray(cams["distance"]), np.asarray(plain["distance"]))
  # r = 0: every view is the front one, and its origin lies on the +x half-space's meridian (y = 0 up to jitter).
  cams = jax.vmap(lambda k: cameras.sample_camera(k, cfg, IMAGE_SIZE, jnp.float32(0.0)))(keys)
  assert np.all(np.abs(np.asarray(cams["origin"])[:, 1]) <= cfg.position_jitter + 1e-5)
