"""NeRFField / Background / Scene and autodiff normals, against closed forms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.nerf import field as fld

# Small grid so every test compiles and runs in about a second on 2 CPU cores.
SMALL = dict(num_levels=4, log2_hashmap_size=12, base_resolution=4, max_resolution=32, mlp_width=16)


@functools.lru_cache(maxsize=None)
def _small_params():
  """Parameters of Scene(**SMALL), initialised once: compiling init dominates test time.

  Activation, blob and clip settings add no parameters, so every test reuses these.
  """
  scene = fld.Scene(**SMALL)
  params = jax.jit(scene.init)(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))["params"]
  return jax.device_get(params)


def _init(scene):
  """A fresh (mutable) copy of the shared SMALL parameters for `scene`."""
  return jax.tree_util.tree_map(np.array, _small_params())


def _field_fn(scene, params):
  return lambda x: scene.apply({"params": params}, x, method=fld.Scene.field)


def _zero_mlp_output(params):
  """Zero the field MLP's last layer: raw density 0 and albedo logits 0 everywhere."""
  params["nerf"]["output"] = jax.tree_util.tree_map(np.zeros_like, params["nerf"]["output"])
  return params


def _points_in_ball(rng, n, radius):
  d = rng.normal(size=(n, 3))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  return (d * radius * rng.uniform(0.05, 1.0, (n, 1)) ** (1 / 3)).astype(np.float32)


@jax.jit
def _gaussian_normals(x):
  c = jnp.array([0.3, -0.2, 0.1])
  fn = lambda p: (jnp.exp(-jnp.sum((p - c) ** 2, axis=-1)), jnp.zeros_like(p))
  return fld.density_albedo_normals(fn, x)


def test_normals_of_analytic_gaussian_point_outward():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 3)).astype(np.float32)
  c = np.array([0.3, -0.2, 0.1], np.float32)
  density, albedo, normals = _gaussian_normals(x)
  np.testing.assert_allclose(density, np.exp(-np.sum((x - c) ** 2, -1)), rtol=1e-5)
  assert albedo.shape == (50, 3)
  want = (x - c) / np.linalg.norm(x - c, axis=-1, keepdims=True)
  np.testing.assert_allclose(normals, want, atol=1e-5)


def test_normals_of_tilted_slab_and_zero_gradient():
  u = np.array([1.0, -2.0, 2.0], np.float32) / 3.0  # unit

  @jax.jit
  def normals_of(x):
    # Density increasing along -u (the solid lies on the -u side), plus a
    # constant field whose gradient is 0 and must give a 0 normal, not NaN.
    slab = lambda p: (jax.nn.softplus(-4.0 * (p @ u - 0.2)), p)
    flat = lambda p: (jnp.full(p.shape[:-1], 2.0), p)
    return fld.density_albedo_normals(slab, x)[2], fld.density_albedo_normals(flat, x)[2]

  x = np.random.default_rng(1).uniform(-1, 1, (20, 3)).astype(np.float32)
  n_slab, n_flat = normals_of(x)
  np.testing.assert_allclose(n_slab, np.broadcast_to(u, x.shape), atol=1e-6)
  np.testing.assert_array_equal(n_flat, 0.0)


@pytest.mark.parametrize(
  "activation,blob_type",
  [("exp", "gaussian"), ("softplus", "gaussian"), ("exp", "magic3d"), ("softplus", "none")],
)
def test_density_with_zeroed_mlp_is_activation_of_blob(activation, blob_type):
  scene = fld.Scene(
    **SMALL,
    density_activation=activation,
    blob_type=blob_type,
    blob_density=5.0,
    blob_radius=0.5 if blob_type == "magic3d" else 0.2,
  )
  params = _zero_mlp_output(_init(scene))
  rng = np.random.default_rng(2)
  x = np.concatenate([_points_in_ball(rng, 40, 1.4), [[0, 0, 0], [0.1, 0, 0], [0, 0, 1.39]]])
  x = x.astype(np.float32)
  density, albedo = jax.jit(_field_fn(scene, params))(x)

  r = np.linalg.norm(x.astype(np.float64), axis=-1)
  if blob_type == "gaussian":
    blob = 5.0 * np.exp(-(r**2) / (2 * 0.2**2))
  elif blob_type == "magic3d":
    blob = 5.0 * (1 - r / 0.5)
  else:
    blob = np.zeros_like(r)
  want = np.exp(blob) if activation == "exp" else np.log1p(np.exp(blob))
  np.testing.assert_allclose(density, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(albedo, 0.5, atol=1e-7)  # sigmoid(0)


def test_blob_normals_at_init_are_radial():
  # With the MLP output zeroed the field is exactly exp(gaussian blob): normals = x/||x||.
  scene = fld.Scene(**SMALL)
  params = _zero_mlp_output(_init(scene))
  x = _points_in_ball(np.random.default_rng(3), 30, 0.8)
  _, _, normals = jax.jit(lambda p: fld.density_albedo_normals(_field_fn(scene, params), p))(x)
  np.testing.assert_allclose(normals, x / np.linalg.norm(x, axis=-1, keepdims=True), atol=1e-5)


def test_zero_density_outside_sphere_and_ranges():
  scene = fld.Scene(**SMALL, bound=1.4)
  params = _init(scene)
  rng = np.random.default_rng(4)
  d = rng.normal(size=(64, 3))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  outside = (d * rng.uniform(1.401, 3.0, (64, 1))).astype(np.float32)  # includes beyond the cube
  inside = _points_in_ball(rng, 64, 1.39)

  fn = jax.jit(_field_fn(scene, params))
  dens_out, alb_out = fn(outside)
  dens_in, alb_in = fn(inside)
  np.testing.assert_array_equal(dens_out, 0.0)
  assert np.all(dens_in > 0)
  for albedo in (alb_in, alb_out):
    assert albedo.shape == (64, 3) and np.all((albedo > 0) & (albedo < 1))

  rgb = jax.jit(lambda v: scene.apply({"params": params}, v, method=fld.Scene.background))(
    d.astype(np.float32).reshape(8, 8, 3)
  )
  assert rgb.shape == (8, 8, 3)
  assert np.all((np.asarray(rgb) > 0) & (np.asarray(rgb) < 1))
  assert np.std(np.asarray(rgb)) > 0  # depends on the direction


def test_exp_clip_bounds_density_but_keeps_gradient():
  scene = fld.Scene(**SMALL, density_clip=15.0)
  params = _zero_mlp_output(_init(scene))
  params["nerf"]["output"]["bias"][0] = 100.0
  x = np.array([[0.1, 0.2, -0.3], [0.5, 0.5, 0.5]], np.float32)

  def total(p):
    return jnp.sum(scene.apply({"params": p}, x, method=fld.Scene.field)[0])

  value, grads = jax.jit(jax.value_and_grad(total))(params)
  np.testing.assert_allclose(value, 2 * np.exp(15.0), rtol=1e-5)
  # Straight-through: d density / d bias = exp(clipped) = exp(15) per point.
  np.testing.assert_allclose(grads["nerf"]["output"]["bias"][0], 2 * np.exp(15.0), rtol=1e-5)


def test_positional_encoding_closed_form():
  d = np.array([[0.6, 0.0, 0.8]], np.float32)
  got = np.asarray(fld.positional_encoding(jnp.asarray(d), 2))
  xs = np.concatenate([d[0], 2 * d[0]])
  np.testing.assert_allclose(got[0], np.concatenate([d[0], np.sin(xs), np.cos(xs)]), rtol=1e-6)


def test_param_names_and_shapes():
  scene = fld.Scene(**SMALL, mlp_num_hidden=2)
  # eval_shape: names and shapes without compiling the initialisers.
  params = jax.eval_shape(scene.init, jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))
  params = params["params"]
  assert params["nerf"]["encoding"]["hash_tables"].shape == (4, 2**12, 2)
  assert set(params["nerf"]) == {"encoding", "hidden_0", "hidden_1", "output"}
  assert params["nerf"]["hidden_0"]["kernel"].shape == (8, 16)
  assert params["nerf"]["output"]["kernel"].shape == (16, 4)
  assert set(params["bg"]) == {"hidden_0", "output"}


def test_second_order_gradient_through_normals():
  scene = fld.Scene(**SMALL)
  params = _init(scene)
  # Make the hash features matter so the normals depend on the tables.
  params["nerf"]["encoding"]["hash_tables"] = params["nerf"]["encoding"]["hash_tables"] * 1e3
  rng = np.random.default_rng(5)
  x = np.concatenate([_points_in_ball(rng, 32, 1.3), [[0, 0, 0], [2.0, 0, 0], [0, 1.5, 0]]])
  x = x.astype(np.float32)
  v = rng.normal(size=x.shape).astype(np.float32)

  def loss(p):
    _, _, normals = fld.density_albedo_normals(_field_fn(scene, p), x)
    return jnp.sum(normals * v)

  grads = jax.jit(jax.grad(loss))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), path
  assert np.any(grads["nerf"]["encoding"]["hash_tables"] != 0)
  assert np.any(grads["nerf"]["hidden_0"]["kernel"] != 0)
  assert np.any(grads["nerf"]["output"]["kernel"] != 0)
  # The background does not enter the normals.
  assert all(np.all(g == 0) for g in jax.tree_util.tree_leaves(grads["bg"]))


def test_magic3d_blob_gradient_finite_at_origin():
  g = jax.jit(jax.grad(lambda p: fld.density_blob(p, "magic3d", 10.0, 0.5).sum()))(jnp.zeros((1, 3)))
  assert np.all(np.isfinite(g))


def test_albedo_bias_shifts_the_albedo_logits():
  """albedo = sigmoid(logits + albedo_bias): with the same parameters, logit(albedo) moves by exactly the
  bias; with the MLP's output layer zeroed the albedo is sigmoid(bias) everywhere."""
  rng = np.random.default_rng(9)
  x = _points_in_ball(rng, 32, 1.0)
  params = _init(fld.Scene(**SMALL))
  _, plain = jax.jit(_field_fn(fld.Scene(**SMALL), params))(x)
  _, bright = jax.jit(_field_fn(fld.Scene(**SMALL, albedo_bias=1.4), params))(x)
  logit = lambda a: np.log(np.asarray(a, np.float64)) - np.log1p(-np.asarray(a, np.float64))
  np.testing.assert_allclose(logit(bright) - logit(plain), 1.4, atol=1e-3)
  zeroed = _zero_mlp_output(_init(fld.Scene(**SMALL)))
  _, flat = jax.jit(_field_fn(fld.Scene(**SMALL, albedo_bias=1.4), zeroed))(x)
  np.testing.assert_allclose(flat, 1.0 / (1.0 + np.exp(-1.4)), rtol=1e-6)


def test_volsdf_density_is_the_laplace_cdf_of_the_distance():
  beta = 0.02
  s = jnp.array([-1.0, -0.04, -0.02, 0.0, 0.02, 0.04, 1.0])
  got = np.asarray(fld.volsdf_density(s, beta))
  # Closed form: (1 / beta) Psi_beta(-s), Psi the Laplace CDF: 1 - exp(-u / beta) / 2 for u >= 0, else exp(u / beta) / 2.
  u = -np.asarray(s, np.float64)
  want = np.where(u >= 0, 1 - 0.5 * np.exp(-u / beta), 0.5 * np.exp(u / beta)) / beta
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-20)
  assert got[3] == pytest.approx(0.5 / beta) and got[0] == pytest.approx(1 / beta)
  grads = jax.vmap(jax.grad(lambda x: fld.volsdf_density(x, beta)))(s)
  assert np.all(np.isfinite(np.asarray(grads))) and np.all(np.asarray(grads) <= 0)


def test_a_volsdf_scene_starts_as_the_sphere_of_blob_radius():
  scene = fld.Scene(
    num_levels=4,
    log2_hashmap_size=10,
    max_resolution=64,
    mlp_width=16,
    bound=1.0,
    density_activation="volsdf",
    blob_radius=0.5,
    sdf_beta=0.01,
  )
  params = scene.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))["params"]
  x = jax.random.uniform(jax.random.PRNGKey(1), (512, 3), minval=-0.9, maxval=0.9)
  sdf = scene.apply({"params": params}, x, method=fld.Scene.sdf)
  np.testing.assert_allclose(sdf, np.linalg.norm(x, axis=-1) - 0.5, atol=0.01)
  inside = np.linalg.norm(x, axis=-1) <= 1.0  # Outside the bounding sphere density is 0, as for every field.
  density, _ = scene.apply({"params": params}, x, method=fld.Scene.field)
  np.testing.assert_allclose(density, np.where(inside, fld.volsdf_density(sdf, 0.01), 0.0), rtol=1e-6)
  # A beta passed by the caller (the train step's anneal) replaces sdf_beta.
  wide, _ = scene.apply({"params": params}, x, 0.1, method=fld.Scene.field)
  np.testing.assert_allclose(wide, np.where(inside, fld.volsdf_density(sdf, 0.1), 0.0), rtol=1e-6)
  # Its normals are the distance's gradient: radial at init.
  _, _, normals = fld.density_albedo_normals(
    lambda p: scene.apply({"params": params}, p, 0.1, method=fld.Scene.field), x
  )
  radial = np.asarray(x) / np.linalg.norm(x, axis=-1, keepdims=True)
  assert np.mean(np.sum(np.asarray(normals) * radial, -1)[inside]) > 0.99
