"""The DreamFusion scene: a hash-grid NeRF field plus a background MLP.

Modules
  NeRFField   x [..., 3] world -> (density [...] >= 0, albedo [..., 3] in (0, 1)).
  Background  d [..., 3] unit ray direction -> rgb [..., 3] in (0, 1).
  Scene       holds both; `field(x)` and `background(d)` methods, `__call__(x, d)`
              only exists so that `init` creates every parameter.

Construction is flat: every knob is a typed field of `Scene` (the same names as
`NeRFField`'s fields, plus `bg_*` for the background), so a config dict maps
straight onto it:

    scene = Scene(num_levels=16, max_resolution=512, mlp_width=64, bound=1.4)
    params = scene.init(key, jnp.zeros((1, 3)), jnp.zeros((1, 3)))['params']
    density, albedo = scene.apply({'params': params}, x, method=Scene.field)
    rgb = scene.apply({'params': params}, d, method=Scene.background)

Parameter tree (names chosen so optimizer masks can target the hash tables):
    params['nerf']['encoding']['hash_tables']   [L, T, F]   (Adam lr 1e-2 in threestudio)
    params['nerf']['hidden_{i}'], params['nerf']['output']  (MLP)
    params['bg']['hidden_{i}'], params['bg']['output']      (background MLP)

Normals come from `density_albedo_normals`, which differentiates the density
w.r.t. the query point with one `jax.vjp` (never finite differences).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf.hash_encoding import HashEncoding

BLOB_TYPES = ("gaussian", "magic3d", "none")
DENSITY_ACTIVATIONS = ("exp", "softplus", "volsdf")


def _safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  """||x|| with a finite gradient (0) at x = 0, where sqrt's derivative is infinite."""
  sq = jnp.sum(x * x, axis=axis)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def density_blob(x: jax.Array, blob_type: str, blob_density: float, blob_radius: float) -> jax.Array:
  """Pre-activation density bias that makes the initial scene a soft ball.

  Args:
    x: [..., 3] world positions.
    blob_type: 'gaussian' (DreamFusion: lambda exp(-||x||^2 / (2 sigma^2))),
      'magic3d' (lambda (1 - ||x|| / r), threestudio's default uses lambda=10,
      r=0.5) or 'none'.
    blob_density: lambda, world-independent density units (pre-activation).
    blob_radius: sigma (gaussian) or r (magic3d), world units.

  Returns:
    [...] bias added to the raw density before the activation.
  """
  if blob_type == "gaussian":
    sq = jnp.sum(x * x, axis=-1)
    return blob_density * jnp.exp(-sq / (2.0 * blob_radius**2))
  if blob_type == "magic3d":
    return blob_density * (1.0 - _safe_norm(x) / blob_radius)
  if blob_type == "none":
    return jnp.zeros(x.shape[:-1], x.dtype)
  raise ValueError(f"blob_type must be one of {BLOB_TYPES}, got {blob_type!r}.")


def _mlp(
  h: jax.Array,
  width: int,
  num_hidden: int,
  out_dim: int,
  dtype: Any,
  param_dtype: Any,
) -> jax.Array:
  """ReLU MLP with explicitly named layers (hidden_0.., output); call inside a compact module."""
  for i in range(num_hidden):
    h = nn.relu(nn.Dense(width, dtype=dtype, param_dtype=param_dtype, name=f"hidden_{i}")(h))
  return nn.Dense(out_dim, dtype=dtype, param_dtype=param_dtype, name="output")(h)


class NeRFField(nn.Module):
  """Hash-grid NeRF: x [..., 3] world -> (density [...], albedo [..., 3]).

  Density = act(raw + blob(x)) inside the sphere ||x|| <= bound, 0 outside.
  For act = 'exp' the pre-activation is clipped at `density_clip` in the
  forward pass only (straight-through): exp(15) ~ 3e6 is already opaque for
  any sample spacing, while exp of an unbounded value overflows float32 at ~88
  and inf * 0 in compositing makes NaNs. Passing the gradient straight through
  (like stable-dreamfusion's trunc_exp) keeps saturated points trainable and
  their normals defined, and bounds d density / d raw by exp(density_clip).
  """

  bound: float = 1.4  # Radius of the scene's bounding sphere, world units.
  num_levels: int = 16  # L in Instant-NGP.
  features_per_level: int = 2  # F in Instant-NGP.
  log2_hashmap_size: int = 19  # log2 T in Instant-NGP.
  base_resolution: int = 16  # N_min in Instant-NGP, cells per axis over the [-bound, bound] cube.
  max_resolution: int = 512  # N_max in Instant-NGP (see HashEncoding for why not 2048).
  hash_init_scale: float = 1e-4  # Hash tables init U(-s, s) as in Instant-NGP.
  mlp_width: int = 64  # Hidden width of the density/albedo MLP.
  mlp_num_hidden: int = 1  # Hidden layers of the density/albedo MLP (Instant-NGP uses 1-2).
  density_activation: str = "exp"  # 'exp' (DreamFusion) or 'softplus'.
  density_clip: float = 15.0  # Forward clip of the pre-activation for 'exp' (overflow guard).
  blob_type: str = "gaussian"  # 'gaussian' (DreamFusion), 'magic3d' or 'none'.
  blob_density: float = 5.0  # lambda of the density blob (pre-activation units).
  blob_radius: float = 0.2  # sigma (gaussian) or r (magic3d) of the blob, world units.
  albedo_bias: float = 0.0  # Added to the albedo logits: the initial albedo is ~sigmoid(albedo_bias) (0.5 at 0).
  sdf_beta: float = 0.01  # 'volsdf': beta of the Laplace CDF (world units) when the caller passes none.
  dtype: Any = jnp.float32  # Compute dtype of the MLP (encoding and outputs stay >= float32).
  param_dtype: Any = jnp.float32  # Storage dtype of all parameters.

  @nn.compact
  def __call__(self, x: jax.Array, beta=None, sdf_only: bool = False):
    """x: [..., 3] world units -> density [...] (>= 0, 1/world units), albedo [..., 3].

    With density_activation='volsdf' the network's density output is a signed distance s (a residual on
    the sphere |x| - blob_radius, so the scene starts as that ball) and density = volsdf_density(s, beta)
    (beta: world units, a scalar; None: sdf_beta); sdf_only returns s [...] alone (the eikonal term).
    """
    if self.density_activation not in DENSITY_ACTIVATIONS:
      raise ValueError(f"density_activation must be one of {DENSITY_ACTIVATIONS}, got {self.density_activation!r}.")
    # Positions stay in >= float32 even for a bfloat16 MLP: at N_max = 512 a
    # bfloat16 coordinate (8 mantissa bits) could not even pick the right cell.
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    # The bounding sphere's enclosing cube [-bound, bound]^3 maps to [0, 1]^3.
    x01 = (x / self.bound + 1.0) * 0.5
    features = HashEncoding(
      num_levels=self.num_levels,
      features_per_level=self.features_per_level,
      log2_hashmap_size=self.log2_hashmap_size,
      base_resolution=self.base_resolution,
      max_resolution=self.max_resolution,
      init_scale=self.hash_init_scale,
      dtype=x.dtype,
      param_dtype=self.param_dtype,
      name="encoding",
    )(x01)
    out = _mlp(features, self.mlp_width, self.mlp_num_hidden, 4, self.dtype, self.param_dtype)
    out = out.astype(x.dtype)
    raw_density, albedo_logits = out[..., 0], out[..., 1:]

    if self.density_activation == "volsdf":
      sdf = raw_density + _safe_norm(x) - self.blob_radius
      if sdf_only:
        return sdf
      density = volsdf_density(sdf, self.sdf_beta if beta is None else beta)
      inside = jnp.sum(x * x, axis=-1) <= self.bound**2
      return jnp.where(inside, density, 0.0), jax.nn.sigmoid(albedo_logits + self.albedo_bias)
    pre = raw_density + density_blob(x, self.blob_type, self.blob_density, self.blob_radius)
    if self.density_activation == "exp":
      clipped = jnp.minimum(pre, self.density_clip)
      density = jnp.exp(pre + jax.lax.stop_gradient(clipped - pre))
    else:
      density = jax.nn.softplus(pre)

    inside = jnp.sum(x * x, axis=-1) <= self.bound**2
    density = jnp.where(inside, density, 0.0)
    albedo = jax.nn.sigmoid(albedo_logits + self.albedo_bias)
    return density, albedo


def volsdf_density(sdf: jax.Array, beta) -> jax.Array:
  """VolSDF's density of a signed distance (Yariv et al. 2021): (1 / beta) Psi_beta(-sdf), Psi_beta the CDF of
  a zero-mean Laplace distribution of scale beta. 1 / beta deep inside, 0.5 / beta on the surface (sdf = 0),
  falling as exp(-sdf / beta) outside; beta -> 0 makes a hard surface."""
  u = -sdf / beta
  # Both branches with exp of a non-positive argument: no overflow, finite gradients everywhere.
  cdf = jnp.where(u <= 0, 0.5 * jnp.exp(jnp.minimum(u, 0.0)), 1.0 - 0.5 * jnp.exp(-jnp.maximum(u, 0.0)))
  return cdf / beta


def positional_encoding(x: jax.Array, num_frequencies: int) -> jax.Array:
  """NeRF sinusoidal encoding [x, sin(2^k x), cos(2^k x)] for k < K.

  Args:
    x: [..., D].
    num_frequencies: K.

  Returns:
    [..., D * (1 + 2K)].
  """
  scales = 2.0 ** jnp.arange(num_frequencies, dtype=x.dtype)
  xs = (x[..., None, :] * scales[:, None]).reshape(*x.shape[:-1], -1)
  return jnp.concatenate([x, jnp.sin(xs), jnp.cos(xs)], axis=-1)


class Background(nn.Module):
  """Environment colour from the ray direction: d [..., 3] unit -> rgb [..., 3] in (0, 1)."""

  num_frequencies: int = 4  # K of the direction's positional encoding (low: a smooth backdrop).
  mlp_width: int = 32  # Hidden width.
  mlp_num_hidden: int = 1  # Hidden layers.
  dtype: Any = jnp.float32  # Compute dtype.
  param_dtype: Any = jnp.float32  # Parameter storage dtype.

  @nn.compact
  def __call__(self, d: jax.Array) -> jax.Array:
    """d: [..., 3] unit directions -> rgb [..., 3] in (0, 1)."""
    h = positional_encoding(d.astype(self.dtype), self.num_frequencies)
    logits = _mlp(h, self.mlp_width, self.mlp_num_hidden, 3, self.dtype, self.param_dtype)
    return jax.nn.sigmoid(logits)


class Scene(nn.Module):
  """A NeRFField ('nerf') and a Background ('bg') with flat constructor fields.

  Field names match NeRFField's; background ones carry a `bg_` prefix.
  """

  bound: float = 1.4  # Radius of the scene's bounding sphere, world units.
  num_levels: int = 16  # L in Instant-NGP.
  features_per_level: int = 2  # F in Instant-NGP.
  log2_hashmap_size: int = 19  # log2 T in Instant-NGP.
  base_resolution: int = 16  # N_min in Instant-NGP.
  max_resolution: int = 512  # N_max in Instant-NGP (paper 2048; 512 suits 64x64 renders).
  hash_init_scale: float = 1e-4  # Hash tables init U(-s, s).
  mlp_width: int = 64  # Hidden width of the density/albedo MLP.
  mlp_num_hidden: int = 1  # Hidden layers of the density/albedo MLP.
  density_activation: str = "exp"  # 'exp' (DreamFusion) or 'softplus'.
  density_clip: float = 15.0  # Forward clip of the pre-activation for 'exp'.
  blob_type: str = "gaussian"  # 'gaussian' (DreamFusion), 'magic3d' or 'none'.
  blob_density: float = 5.0  # lambda of the density blob.
  blob_radius: float = 0.2  # sigma (gaussian) or r (magic3d), world units.
  albedo_bias: float = 0.0  # Added to the albedo logits (initial albedo ~sigmoid(albedo_bias)).
  sdf_beta: float = 0.01  # 'volsdf': beta of the Laplace CDF (world units) when the caller passes none.
  bg_num_frequencies: int = 4  # K of the background's direction encoding.
  bg_mlp_width: int = 32  # Background MLP hidden width.
  bg_mlp_num_hidden: int = 1  # Background MLP hidden layers.
  dtype: Any = jnp.float32  # Compute dtype of both networks.
  param_dtype: Any = jnp.float32  # Parameter storage dtype of both networks.

  def setup(self):
    self.nerf = NeRFField(
      bound=self.bound,
      num_levels=self.num_levels,
      features_per_level=self.features_per_level,
      log2_hashmap_size=self.log2_hashmap_size,
      base_resolution=self.base_resolution,
      max_resolution=self.max_resolution,
      hash_init_scale=self.hash_init_scale,
      mlp_width=self.mlp_width,
      mlp_num_hidden=self.mlp_num_hidden,
      density_activation=self.density_activation,
      density_clip=self.density_clip,
      blob_type=self.blob_type,
      blob_density=self.blob_density,
      blob_radius=self.blob_radius,
      albedo_bias=self.albedo_bias,
      sdf_beta=self.sdf_beta,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    self.bg = Background(
      num_frequencies=self.bg_num_frequencies,
      mlp_width=self.bg_mlp_width,
      mlp_num_hidden=self.bg_mlp_num_hidden,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

  def __call__(self, x: jax.Array, d: jax.Array):
    """Touches both networks so `init` creates all parameters."""
    return self.field(x), self.background(d)

  def field(self, x: jax.Array, beta=None) -> tuple[jax.Array, jax.Array]:
    """x: [..., 3] world -> density [...], albedo [..., 3]; beta: 'volsdf' only (None: sdf_beta)."""
    return self.nerf(x, beta)

  def sdf(self, x: jax.Array) -> jax.Array:
    """x: [..., 3] world -> the signed distance [...] ('volsdf' only)."""
    return self.nerf(x, sdf_only=True)

  def background(self, d: jax.Array) -> jax.Array:
    """d: [..., 3] unit directions -> rgb [..., 3] in (0, 1)."""
    return self.bg(d)


def density_albedo_normals(
  field_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
  x: jax.Array,
  eps: float = 1e-10,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Density, albedo and normals n = -grad(density) / ||grad(density)||.

  One jax.vjp of the density w.r.t. x with a cotangent of ones gives every
  point's gradient at once, because density[i] depends only on x[i] (true of
  any pointwise field). The result stays differentiable w.r.t. the field's
  parameters (second order), which the shading and orientation losses need.

  Args:
    field_fn: x [N, 3] -> (density [N], albedo [N, 3]).
    x: [N, 3] world positions.
    eps: floor on ||grad|| (density units per world unit); where the gradient
      is smaller (e.g. outside the bounding sphere, where density is 0) the
      normal shrinks towards 0 instead of dividing by zero.

  Returns:
    density [N], albedo [N, 3], normals [N, 3] (unit length where ||grad|| > eps).
  """
  density, vjp_fn, albedo = jax.vjp(field_fn, x, has_aux=True)
  (grad,) = vjp_fn(jnp.ones_like(density))
  # max(||g||, eps) written on the squared norm so sqrt never sees 0 (its
  # derivative there is inf and would poison the second-order gradient).
  sq = jnp.sum(grad * grad, axis=-1, keepdims=True)
  normals = -grad * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))
  return density, albedo, normals
