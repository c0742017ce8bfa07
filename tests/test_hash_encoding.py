"""hash_encode vs an independent brute-force numpy reference (loops over levels and corners)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.nerf import hash_encoding as he

# Written out again (not imported) so the reference does not share the module's constants.
_PRIMES = (1, 2654435761, 805459861)


def _reference_rows(corner: np.ndarray, n: int, table_size: int) -> np.ndarray:
  """Row of each integer vertex corner [P, 3] at a level with n cells per axis."""
  c = corner.astype(np.uint64)
  if (n + 1) ** 3 <= table_size:
    return (c[:, 0] + c[:, 1] * (n + 1) + c[:, 2] * (n + 1) ** 2).astype(np.int64)
  # uint64 products (< 2^44 here) then reduce mod 2^32 to mimic the paper's uint32 wrap.
  h = (c[:, 0] * np.uint64(_PRIMES[0])) ^ (c[:, 1] * np.uint64(_PRIMES[1])) ^ (c[:, 2] * np.uint64(_PRIMES[2]))
  h = h % np.uint64(2**32)
  return (h % np.uint64(table_size)).astype(np.int64)


def _reference_encode(tables: np.ndarray, x: np.ndarray, resolutions):
  """Brute force: returns features [P, L*F] and a list (level, rows [P], weights [P]) per corner."""
  tables = np.asarray(tables, np.float64)
  num_levels, table_size, num_features = tables.shape
  x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
  out = np.zeros((x.shape[0], num_levels, num_features))
  touched = []
  for level in range(num_levels):
    n = resolutions[level]
    pos = x * n
    cell = np.clip(np.floor(pos), 0, n - 1)
    frac = pos - cell
    for dx, dy, dz in itertools.product((0, 1), repeat=3):
      offset = np.array([dx, dy, dz])
      corner = cell.astype(np.int64) + offset
      w = np.ones(x.shape[0])
      for axis in range(3):
        w *= frac[:, axis] if offset[axis] else 1.0 - frac[:, axis]
      rows = _reference_rows(corner, n, table_size)
      out[:, level] += w[:, None] * tables[level, rows]
      touched.append((level, rows, w))
  return out.reshape(x.shape[0], -1), touched


def _test_points(rng, resolutions, num_random=64):
  """Random points plus cell boundaries, faces/corners of the cube and outside points."""
  pts = [rng.uniform(0, 1, (num_random, 3))]
  for n in resolutions[:3]:
    k = rng.integers(0, n + 1, (8, 3))
    pts.append(k / n)  # exact vertices
    mixed = rng.uniform(0, 1, (8, 3))
    mixed[:, 0] = rng.integers(0, n + 1, 8) / n  # on a cell face
    pts.append(mixed)
  pts.append(np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1], [0.5, 0, 1]], float))
  pts.append(np.array([[-0.2, 0.5, 1.3], [1.5, -1.0, 0.25]]))  # clipped
  return np.concatenate(pts).astype(np.float32)


@pytest.mark.parametrize(
  "resolutions,log2_t,num_features",
  [((2, 3, 5, 8, 13, 17), 10, 2), ((4, 9, 31), 12, 4), ((6, 7, 11), 9, 1)],
)
def test_matches_numpy_reference(resolutions, log2_t, num_features):
  rng = np.random.default_rng(0)
  table_size = 2**log2_t
  tables = rng.uniform(-1, 1, (len(resolutions), table_size, num_features)).astype(np.float32)
  x = _test_points(rng, resolutions)
  got = jax.jit(he.hash_encode, static_argnums=2)(jnp.asarray(tables), jnp.asarray(x), resolutions)
  want, _ = _reference_encode(tables, x, resolutions)
  assert got.shape == (x.shape[0], len(resolutions) * num_features)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=1e-5)


def test_batch_shape_and_non_power_of_two_table():
  rng = np.random.default_rng(1)
  resolutions = (3, 12, 40)
  tables = rng.normal(size=(3, 1000, 2)).astype(np.float32)  # T = 1000: hash uses % not &
  x = rng.uniform(0, 1, (4, 5, 3)).astype(np.float32)
  got = jax.jit(he.hash_encode, static_argnums=2)(jnp.asarray(tables), jnp.asarray(x), resolutions)
  want, _ = _reference_encode(tables, x.reshape(-1, 3), resolutions)
  assert got.shape == (4, 5, 6)
  np.testing.assert_allclose(np.asarray(got).reshape(-1, 6), want, atol=2e-5, rtol=1e-5)


def test_level_resolutions_follow_the_paper():
  res = he.level_resolutions(16, 16, 2048)
  b = math.exp((math.log(2048) - math.log(16)) / 15)
  assert res[0] == 16 and res[-1] == 2048
  for level in range(1, 15):
    assert res[level] == math.floor(16 * b**level)
  assert he.level_resolutions(16, 16, 512)[-1] == 512
  assert he.level_resolutions(1, 16, 512) == (16,)


def test_dense_vs_hash_selection():
  # T = 1024: (7+1)^3 = 512 and (9+1)^3 = 1000 fit (dense), (10+1)^3 = 1331 does not.
  assert he.dense_levels((7, 9, 10, 16), 1024) == (True, True, False, False)
  # Boundary: (N+1)^3 == T is still dense.
  assert he.dense_levels((7, 8), 512) == (True, False)

  # Tables whose feature is the row number: at an exact vertex the encoding
  # returns the row the vertex is stored at. N = 8 and 16 make i/N exact in float32.
  resolutions = (8, 16)
  table_size = 1024
  tables = np.broadcast_to(np.arange(table_size, dtype=np.float32)[None, :, None], (2, table_size, 1))
  ijk = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 5, 7], [8, 8, 8], [2, 7, 4]])
  encode = jax.jit(he.hash_encode, static_argnums=2)
  rows = np.asarray(encode(jnp.asarray(tables), jnp.asarray(ijk / 8.0, jnp.float32), resolutions))
  # Level 0 (dense, 9^3 = 729 <= 1024): one-to-one x + 9 y + 81 z.
  np.testing.assert_array_equal(rows[:, 0], ijk[:, 0] + 9 * ijk[:, 1] + 81 * ijk[:, 2])
  # Level 1 (hashed, 17^3 > 1024): vertex 2*ijk of the 16-grid.
  v = (2 * ijk).astype(np.uint64)
  h = (v[:, 0] ^ (v[:, 1] * np.uint64(2654435761)) ^ (v[:, 2] * np.uint64(805459861))) % np.uint64(2**32)
  np.testing.assert_array_equal(rows[:, 1], (h % np.uint64(table_size)).astype(np.float32))
  assert len(set(rows[:, 0])) == len(ijk)  # dense level: distinct vertices, distinct rows


def test_gradient_wrt_x_matches_finite_differences():
  resolutions = (3, 7, 16, 40)
  rng = np.random.default_rng(2)
  tables = rng.normal(size=(4, 512, 2))
  x = rng.uniform(0.02, 0.98, (20, 3))
  # Keep away from cell faces, where the encoding has a kink.
  pos = x[:, None, :] * np.array(resolutions)[None, :, None]
  x = x[np.all(np.abs(pos - np.round(pos)) > 1e-3, axis=(1, 2))]
  assert len(x) >= 5
  cotangent = rng.normal(size=(len(x), 8))

  with jax.enable_x64(True):
    f = lambda xx: jnp.sum(he.hash_encode(jnp.asarray(tables), xx, resolutions) * cotangent)
    grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(x, jnp.float64)))

  h = 1e-6
  fd = np.zeros_like(x)
  for axis in range(3):
    e = np.zeros(3)
    e[axis] = h
    up, _ = _reference_encode(tables, x + e, resolutions)
    down, _ = _reference_encode(tables, x - e, resolutions)
    fd[:, axis] = np.sum((up - down) * cotangent, axis=1) / (2 * h)
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_gradient_wrt_x_is_zero_outside_unit_cube():
  tables = np.random.default_rng(3).normal(size=(2, 256, 2)).astype(np.float32)
  x = np.array([[-0.5, 1.5, -2.0]], np.float32)
  g = jax.jit(jax.grad(lambda xx: he.hash_encode(tables, xx, (4, 9)).sum()))(x)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_gradient_wrt_tables_is_a_scatter_of_the_weights():
  resolutions = (4, 9, 30)
  table_size = 256
  rng = np.random.default_rng(4)
  tables = rng.normal(size=(3, table_size, 2)).astype(np.float32)
  x = rng.uniform(0, 1, (7, 3)).astype(np.float32)
  cotangent = rng.normal(size=(7, 3, 2)).astype(np.float32)

  f = lambda t: jnp.sum(he.hash_encode(t, jnp.asarray(x), resolutions).reshape(7, 3, 2) * cotangent)
  grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(tables)))

  want = np.zeros(tables.shape, np.float64)
  _, touched = _reference_encode(tables, x, resolutions)
  for level, rows, w in touched:
    np.add.at(want[level], rows, w[:, None] * cotangent[:, level])
  np.testing.assert_allclose(grad, want, atol=1e-5)

  touched_mask = np.zeros(tables.shape[:2], bool)
  for level, rows, w in touched:
    touched_mask[level, rows[w > 0]] = True
  assert np.all(grad[~touched_mask] == 0.0)
  assert np.all(np.any(grad[touched_mask] != 0.0, axis=-1))


def test_module_params_and_init_range():
  module = he.HashEncoding(num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
  variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 3)))
  tables = variables["params"]["hash_tables"]
  assert tables.shape == (4, 1024, 2)
  tables = np.asarray(tables)
  assert np.max(np.abs(tables)) <= 1e-4
  assert np.std(tables) > 1e-5
  assert module.resolutions == he.level_resolutions(4, 4, 32)
  x = np.random.default_rng(5).uniform(0, 1, (5, 3)).astype(np.float32)
  want, _ = _reference_encode(tables, x, module.resolutions)
  np.testing.assert_allclose(np.asarray(jax.jit(module.apply)(variables, x)), want, atol=1e-9)


def test_reads_only_the_enclosing_cell_even_on_the_far_faces():
  # x = 1 must use the last cell (fraction 1), not a cell past the grid whose
  # corners would be read with weight 0: make every row the reference does not
  # read NaN, so any stray read shows up (NaN * 0 = NaN).
  resolutions = (4, 8, 20)
  rng = np.random.default_rng(6)
  x = np.array([[1, 1, 1], [1, 0, 0.5], [0, 1, 1], [0.25, 1, 0.75], [0, 0, 0]], np.float32)
  tables = rng.normal(size=(3, 512, 2)).astype(np.float32)
  _, touched = _reference_encode(tables, x, resolutions)
  read = np.zeros(tables.shape[:2], bool)
  for level, rows, _ in touched:
    read[level, rows] = True
  tables[~read] = np.nan
  got = np.asarray(jax.jit(he.hash_encode, static_argnums=2)(tables, x, resolutions))
  want, _ = _reference_encode(tables, x, resolutions)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, atol=1e-5)
