"""DreamFusion training: the pure SDS train step, multi-seed sharding, and the run loop.

Every seed's state carries a leading seed axis. The per-seed step is `jax.vmap`ped over that axis
and `jax.jit`ted with the axis sharded over a device mesh ('seeds'), so `num_seeds=8` on 8
devices optimises 8 independent objects in one program, and seed k of a multi-seed run is the
same computation as a single-seed run with `seed + k`.
"""

import concurrent.futures
import dataclasses
import functools
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dreamfusion_jax import (
  checkpointing,
  checks,
  compilation_cache,
  export,
  files,
  memory,
  outputs,
  progress,
  report,
  sds,
  stops,
)
from dreamfusion_jax import metrics as metrics_lib
from dreamfusion_jax.checkpointing import Checkpoints, SaveFailed
from dreamfusion_jax.errors import ConfigError, DivergenceError, Interrupted, WorkdirError
from dreamfusion_jax.export import EmptyMeshError
from dreamfusion_jax.guidance import interface as guidance_lib
from dreamfusion_jax.guidance import registry
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras, render, views
from dreamfusion_jax.nerf.field import Scene

# What a diverged run's message advises (metrics.check_finite). These fields may change on resume
# (checks.ADJUSTABLE_FIELDS), so the advice works in the same workdir.
DIVERGENCE_ADVICE = (
  "Rerun the same command with a lower --config.optim.lr and --config.optim.net_lr (e.g. half), a lower "
  "--config.guidance.scale, or --config.optim.grad_clip=1.0 added: these may change on resume, and the run "
  "continues from that checkpoint."
)


@flax.struct.dataclass
class TrainState:
  """One seed's optimisation state (a leading seed axis is added by vmap)."""

  step: jnp.ndarray  # [] int32, steps taken.
  params: Any  # Scene parameters (field and background).
  opt_state: Any  # optax state.
  key: jnp.ndarray  # [2] uint32, this seed's base PRNG key; step keys are folded from it.


# ----------------------------------------------------------------------------- building blocks


def learning_rate(config: ml_collections.ConfigDict, peak: float) -> optax.Schedule:
  o = config.optim
  if o.schedule == "constant":
    return optax.constant_schedule(peak)
  # The paper: warm-up from 1e-9 to the peak, then cosine decay to a small fraction of it.
  warmup = min(o.warmup_steps, max(config.num_steps - 1, 1))
  return optax.warmup_cosine_decay_schedule(
    1e-9, peak, warmup, max(config.num_steps, warmup + 1), peak * o.final_lr_fraction
  )


def param_labels(params: Any) -> Any:
  """'grid' for hash tables (sparse, high learning rate), 'net' for every MLP weight."""

  def label(path, _):
    names = [getattr(k, "key", str(k)) for k in path]
    return "grid" if any("encoding" in n or "hash" in n for n in names) else "net"

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  o = config.optim
  make = optax.adamw if o.name == "adamw" else optax.adam

  def opt(lr):
    return make(learning_rate(config, lr), b1=o.b1, b2=o.b2, eps=o.eps)

  tx = optax.multi_transform({"grid": opt(o.lr), "net": opt(o.net_lr)}, param_labels)
  if o.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


def orientation_weight(config: ml_collections.ConfigDict, step: jnp.ndarray) -> jnp.ndarray:
  """Log-linear anneal from reg.orientation_start to reg.orientation over the anneal steps."""
  r = config.reg
  if r.orientation <= 0:
    return jnp.zeros(())
  frac = jnp.clip(step / max(r.orientation_anneal_steps, 1), 0.0, 1.0)
  start = min(r.orientation_start, r.orientation)
  return jnp.exp(jnp.log(start) + frac * (jnp.log(r.orientation) - jnp.log(start)))


def sample_shading(
  key: jax.Array, step: jnp.ndarray, config: ml_collections.ConfigDict, light_pos: jnp.ndarray
) -> dict:
  """The paper's shading schedule for one view: albedo-only warm-up, then 75% shaded, half textureless."""
  s = config.shading
  k_shade, k_white = jax.random.split(key)
  shaded = (step >= s.albedo_warmup_steps) & (jax.random.uniform(k_shade) < s.shaded_prob)
  textureless = shaded & (jax.random.uniform(k_white) < s.textureless_prob)
  out = dict(
    ambient=jnp.where(shaded, s.ambient, 1.0),
    diffuse=jnp.where(shaded, s.diffuse, 0.0),
    textureless=textureless.astype(jnp.float32),
    light_pos=light_pos,
  )
  if not s.colour_from_shaded:
    out["albedo_grad"] = 1.0 - shaded.astype(jnp.float32)  # Only albedo-only views train the albedo.
  return out


def build_prior(config: ml_collections.ConfigDict) -> guidance_lib.Prior:
  """The run's prior (guidance.registry) from config.guidance and what the prior needs of the run."""
  return registry.build_prior(
    config.guidance,
    prompt=config.prompt,
    image_size=config.render.image_size,
    previews=bool(config.guidance.preview_t > 0 and config.val_every > 0),
  )


def embed_prompts(prior: guidance_lib.Prior, config: ml_collections.ConfigDict) -> np.ndarray:
  """Text embeddings [9, L, D]: index 0 is the empty caption, 1 + view_index the caption to use, and
  5 + view_index the caption of a textureless view (prior.textureless_prompt with guidance.textureless_prompt).

  The caption is the one the prior reads (checks.prior_prompt); a caption its tokenizer cuts is a warning."""
  n = len(text_lib.VIEW_SUFFIXES)
  prompt = checks.prior_prompt(config)
  plain = prior.textureless_prompt(prompt) if config.guidance.textureless_prompt else prompt
  if config.camera.view_dependent_prompts:
    texts = [text_lib.view_prompt(prompt, i) for i in range(n)]
    texts += [text_lib.view_prompt(plain, i) for i in range(n)]
  else:
    texts = [prompt] * n + [plain] * n
  warn_cut_captions(prior, texts)
  return prior.embed([""] + texts).astype(np.float32)


def warn_cut_captions(prior: guidance_lib.Prior, texts: list[str]) -> None:
  """One warning naming what the prior's tokenizer cuts off the first of texts it truncates (say, the view
  suffix, which then never reaches the prior), and how many of texts are cut."""
  cuts = [(text, prior.cut(text)) for text in dict.fromkeys(texts)]
  cuts = [(text, cut) for text, cut in cuts if cut is not None]
  if cuts:
    text, (_, dropped) = cuts[0]
    logging.warning(
      "The caption '%s' was cut to %s tokens by the prior's tokenizer: dropped '%s' (%d of the run's %d captions "
      "are cut, and what is cut never reaches the prior). Shorten the caption.",
      text,
      prior.max_tokens or "its maximum of",
      dropped,
      len(cuts),
      len(dict.fromkeys(texts)),
    )


# ----------------------------------------------------------------------------- the pure step


def init_state(seed: jnp.ndarray, scene: Scene, tx: optax.GradientTransformation) -> TrainState:
  """One seed's initial state; `seed` is the seed value (an int32 scalar), so vmap over seeds is exact."""
  key = jax.random.PRNGKey(seed)
  params = scene.init(jax.random.fold_in(key, 0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), key=key)


def vmap_unless_one(fn, size: int, in_axes: tuple):
  """jax.vmap(fn, in_axes), except that a batch of one runs unbatched.

  A batch of one then compiles to the same program as a plain call, and avoids batched
  gathers, which cost 2-3x for the hash grid on CPU.
  """
  if size != 1:
    return jax.vmap(fn, in_axes=in_axes)

  def single(*args):
    args = [a if axis is None else jax.tree.map(lambda x: x[0], a) for a, axis in zip(args, in_axes)]
    return jax.tree.map(lambda x: x[None], fn(*args))

  return single


def loss_fn(
  params: Any,
  key: jax.Array,
  step: jnp.ndarray,
  text_emb: jnp.ndarray,
  prior_params: Any,
  *,
  config: ml_collections.ConfigDict,
  scene: Scene,
  guidance: guidance_lib.Guidance,
  map_views: bool = False,
):
  """Total loss of one seed at one step and its metrics. text_emb: [9, L, D] (see embed_prompts).

  map_views renders the step's views one after another (lax.map) instead of vmapped; `Trainer` sets it for several
  seeds on one CPU device, where the renderer vmapped over views inside the vmap over seeds crashes jax 0.10.2 (a
  segmentation fault).
  """
  params = coarse_to_fine(params, config, step)
  k_cam, k_shade, k_render, k_sds = jax.random.split(jax.random.fold_in(key, 1), 4)
  batch, size = config.batch_size, config.render.image_size
  camera_cfg, spread = cameras.from_config(config.camera), azimuth_spread(config, step)
  cams = jax.vmap(lambda k: cameras.sample_camera(k, camera_cfg, size, spread))(jax.random.split(k_cam, batch))
  shading = jax.vmap(lambda k, lp: sample_shading(k, step, config, lp))(
    jax.random.split(k_shade, batch), cams["light_pos"]
  )
  field_fn, learned_background = views.field_fns(scene, params, sdf_beta(config, step))
  rcfg = dataclasses.replace(views.make_render_config(config), normal_step=config.render.normal_step)
  distance_fn = lambda x: scene.apply({"params": params}, x, method=Scene.sdf)

  def render_view(k, cam, sh):
    background_fn = learned_background
    if config.render.background == "random":
      colour = jax.random.uniform(jax.random.fold_in(k, 1000), (3,))  # render_rays folds in 0 and 1.
      background_fn = lambda d: jnp.broadcast_to(colour, d.shape)
    return render.render_image(k, field_fn, background_fn, cam, sh, rcfg, size, size, distance_fn)

  view_args = (jax.random.split(k_render, batch), cams, shading)
  if map_views and batch > 1:
    out = jax.lax.map(lambda args: render_view(*args), view_args)
  else:
    out = vmap_unless_one(render_view, batch, (0, 0, 0))(*view_args)
  view_ids = text_lib.view_index(cams["elevation"], cams["azimuth"])
  caption = 1 + view_ids + len(text_lib.VIEW_SUFFIXES) * (shading["textureless"] > 0).astype(view_ids.dtype)
  cond, uncond = text_emb[caption], jnp.broadcast_to(text_emb[0], (batch,) + text_emb.shape[1:])
  g = config.guidance
  sds_value, sds_aux = sds.sds_loss(
    k_sds,
    guidance,
    prior_params,
    out["rgb"],
    cond,
    uncond,
    scale=g.scale,
    t_range=sds.annealed_timestep_range(g.t_min, g.t_max, g.t_max_final, g.t_anneal_steps, g.num_train_timesteps, step),
    weighting=g.weighting,
  )
  # The mean over the step's views, as the regularisers below are means: with the sum, batch_size views would
  # weigh the guidance batch_size times against them (at 2 views the smoothness no longer held floaters down).
  sds_value = sds_value / batch
  opacity = out["opacity"]
  orient = jnp.mean(out["orientation"])
  opacity_reg = jnp.mean(jnp.sqrt(opacity**2 + 0.01))
  a = jnp.clip(opacity, 1e-5, 1 - 1e-5)
  entropy = jnp.mean(-a * jnp.log(a) - (1 - a) * jnp.log(1 - a))
  dist = jnp.mean(out["distortion"])
  total = (
    sds_value
    + orientation_weight(config, step) * orient
    + config.reg.opacity * opacity_reg
    + config.reg.entropy * entropy
    + config.reg.distortion * dist
  )
  metrics = dict(
    loss=total,
    sds_residual_norm=jnp.mean(sds_aux["residual_norm"]),
    orientation=orient,
    opacity=jnp.mean(opacity),
    entropy=entropy,
    distortion=dist,
    textureless=jnp.mean(shading["textureless"]),
  )
  if config.field.density_activation == "volsdf":
    # Its own key (folded, not split from the step's): the other terms' randomness stays that of any field.
    metrics["eikonal"] = eikonal(scene, params, jax.random.fold_in(key, 2), config)
    total = total + config.sdf.eikonal * metrics["eikonal"]
    if config.sdf.smoothness > 0:
      hits = None
      if config.sdf.smoothness_points in ("render", "both"):
        hits = rendered_surface_points(cams, out, size)
      metrics["smoothness"] = surface_smoothness(scene, params, jax.random.fold_in(key, 3), config, hits, step)
      total = total + smoothness_weight(config, step) * metrics["smoothness"]
    metrics["loss"] = total
  return total, metrics


def smoothness_weight(config: ml_collections.ConfigDict, step):
  """sdf.smoothness, faded linearly to 0 over the sdf.smoothness_fade_steps steps from sdf.smoothness_fade_start
  (0: never): the smoothness flattens the faces SDS leaves bumpy, but it also rounds every edge, and without it the
  edges SDS makes are sharp (BENCHMARKS.md, 'Surface quality')."""
  s = config.sdf
  if not s.smoothness_fade_start:
    return s.smoothness  # A Python float: the program is the one without the option.
  left = 1.0 - (step - s.smoothness_fade_start) / max(s.smoothness_fade_steps, 1)
  return s.smoothness * jnp.clip(left, 0.0, 1.0)


def level_weights(config: ml_collections.ConfigDict, step: jnp.ndarray):
  """Coarse-to-fine weights [L] of the hash levels at `step` (Neuralangelo): clip(a - l, 0, 1) for level l, a
  rising linearly from coarse_to_fine.start_levels to field.num_levels over coarse_to_fine.steps; None when off."""
  if config.coarse_to_fine.steps <= 0:
    return None
  num_levels, start = config.field.num_levels, config.coarse_to_fine.start_levels
  a = start + (num_levels - start) * jnp.clip(step / config.coarse_to_fine.steps, 0.0, 1.0)
  return jnp.clip(a - jnp.arange(num_levels), 0.0, 1.0)


def coarse_to_fine(params: Any, config: ml_collections.ConfigDict, step: jnp.ndarray) -> Any:
  """params with hash level l's table scaled by level_weights(config, step)[l]. Trilinear interpolation is linear
  in the table, so this scales level l's features, for the render, the eikonal and the smoothness terms alike,
  and a level at weight 0 gets no gradient (Adam then leaves it where it is) until it comes in."""
  weights = level_weights(config, step)
  if weights is None:
    return params
  nerf = params["nerf"]
  tables = nerf["encoding"]["hash_tables"]
  scaled = tables * weights.astype(tables.dtype)[:, None, None]
  return {**params, "nerf": {**nerf, "encoding": {**nerf["encoding"], "hash_tables": scaled}}}


def azimuth_spread(config: ml_collections.ConfigDict, step: jnp.ndarray):
  """The progressive view's fraction of the full circle of azimuths at `step` (cameras.sample_camera's
  azimuth_scale): (step + 1) / camera.progressive_view_steps, at most 1; None without a progressive view."""
  steps = config.camera.get("progressive_view_steps", 0)
  if not steps:
    return None
  return jnp.minimum((step + 1.0) / steps, 1.0)


def sdf_beta(config: ml_collections.ConfigDict, step: jnp.ndarray):
  """The 'volsdf' field's beta at `step`: log-linear from sdf.beta_start to field.sdf_beta over
  sdf.beta_anneal_steps; None (the field's own sdf_beta) for other fields or without an anneal."""
  if config.field.density_activation != "volsdf" or config.sdf.beta_start <= 0:
    return None
  frac = jnp.clip(step / max(config.sdf.beta_anneal_steps, 1), 0.0, 1.0)
  start, end = jnp.log(config.sdf.beta_start), jnp.log(config.field.sdf_beta)
  return jnp.exp(start + frac * (end - start))


def sdf_and_gradient(scene: Scene, params: Any, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The signed distance s [N] at x [N, 3] and its gradient [N, 3]: one vjp with a cotangent of ones (s is
  pointwise), as for the normals."""
  sdf, vjp_fn = jax.vjp(lambda y: scene.apply({"params": params}, y, method=Scene.sdf), x)
  (grad,) = vjp_fn(jnp.ones_like(sdf))
  return sdf, grad


def eikonal(scene: Scene, params: Any, key: jax.Array, config: ml_collections.ConfigDict) -> jnp.ndarray:
  """mean((|grad s| - 1)^2) of the signed distance s at sdf.eikonal_points uniform points of the bounding cube."""
  bound = config.field.bound
  points = jax.random.uniform(key, (config.sdf.eikonal_points, 3), minval=-bound, maxval=bound)
  _, grad = sdf_and_gradient(scene, params, points)
  norm = jnp.sqrt(jnp.sum(grad * grad, axis=-1) + 1e-12)
  return jnp.mean((norm - 1.0) ** 2)


def rendered_surface_points(cams, out, size: int):
  """Where the step's rays hit the surface: origin + depth / opacity * direction of every pixel whose opacity is
  above 0.5, with that opacity's share of the draw (0 elsewhere). Returns (points [B*H*W, 3], probabilities
  [B*H*W]), without gradient. Uniform over the visible surface's projection, these points weigh an edge by its
  area, where uniform points moved onto the surface gather on the edges and corners: every point of the region
  outside a box beside an edge lands on that edge (3/4 of the points of [-1, 1]^3 around a cube of half-size 0.32)."""
  origins, directions = jax.vmap(lambda c: cameras.generate_rays(c, size, size))(cams)
  opacity, depth = out["opacity"].reshape(-1), out["depth"].reshape(-1)
  hit = opacity > 0.5
  t = depth / jnp.where(hit, opacity, 1.0)
  points = origins.reshape(-1, 3) + t[:, None] * directions.reshape(-1, 3)
  weight = jnp.where(hit, opacity, 0.0)
  return jax.lax.stop_gradient(points), jax.lax.stop_gradient(weight / jnp.maximum(jnp.sum(weight), 1e-12))


def shell_points(scene: Scene, params: Any, key: jax.Array, n: int, config: ml_collections.ConfigDict) -> jnp.ndarray:
  """n points [n, 3] of a thin shell around the surface, without gradient: the n of sdf.smoothness_shell_candidates
  x n uniform points of the bounding cube with the smallest |s|. A shell of one width holds as many points by a
  face as its area, so once moved onto the surface they are spread over it by area, hidden parts included; each
  moves by at most the shell's width, so the points beside an edge no longer all land on it."""
  bound = config.field.bound
  m = config.sdf.smoothness_shell_candidates * n
  x = jax.random.uniform(key, (m, 3), minval=-bound, maxval=bound)
  sdf = scene.apply({"params": jax.lax.stop_gradient(params)}, x, method=Scene.sdf)
  _, nearest = jax.lax.top_k(-jnp.abs(sdf), n)
  return x[nearest]


def surface_smoothness(
  scene: Scene, params: Any, key: jax.Array, config: ml_collections.ConfigDict, hits=None, step=None
) -> jnp.ndarray:
  """mean |n(p) - n(p + d)|^2 of the unit normals n = grad s / |grad s| at surface points p and p + d, d ~ N(0,
  sdf.smoothness_radius^2 I): a bump of width ~radius costs, a flat face costs 0 and a sphere of radius R
  ~2 radius^2 / R^2. The p are sdf.eikonal_points uniform points moved onto the surface by one Newton step
  x - s grad s / |grad s|^2 (exact where s is a distance up to scale). sdf.smoothness_norm 'l1' takes the mean
  |n(p) - n(p + d)| instead: a bump still costs, but a sharp edge no more than a rounded one.
  hits (sdf.smoothness_points 'render' or 'both'): (points, probabilities) of `rendered_surface_points`; the p are
  then sdf.eikonal_points draws among them ('both': the first half of them, the rest uniform in the cube), moved
  onto the surface, and uniform points when no pixel is opaque or `step` is before sdf.smoothness_points_start.
  sdf.smoothness_points 'shell': a share sdf.smoothness_shell_share of the p are `shell_points`, the rest uniform
  in the cube, all moved onto the surface."""
  k_points, k_offset = jax.random.split(key)
  bound = config.field.bound
  n = config.sdf.eikonal_points
  x = jax.random.uniform(k_points, (n, 3), minval=-bound, maxval=bound)
  if config.sdf.smoothness_points == "shell":  # The first share of them from the shell, the rest the volume's.
    k = round(config.sdf.smoothness_shell_share * n)
    if k:
      x = jnp.concatenate([shell_points(scene, params, jax.random.fold_in(k_points, 2), k, config), x[k:]])
  if hits is not None:
    points, prob = hits
    drawn = points[jax.random.choice(jax.random.fold_in(k_points, 1), prob.shape[0], (n,), p=prob)]
    if config.sdf.smoothness_points == "both":  # The second half stays uniform in the cube.
      drawn = jnp.concatenate([drawn[: n // 2], x[n // 2 :]])
    use = jnp.sum(prob) > 0.5
    if config.sdf.smoothness_points_start and step is not None:
      use = use & (step >= config.sdf.smoothness_points_start)
    x = jnp.where(use, drawn, x)
  sdf, grad = sdf_and_gradient(scene, params, x)
  p = jax.lax.stop_gradient(x - sdf[:, None] * grad / jnp.maximum(jnp.sum(grad * grad, -1, keepdims=True), 1e-12))
  q = p + config.sdf.smoothness_radius * jax.random.normal(k_offset, p.shape)
  n_p = render.safe_normalize(sdf_and_gradient(scene, params, p)[1])
  n_q = render.safe_normalize(sdf_and_gradient(scene, params, q)[1])
  squared = jnp.sum((n_p - n_q) ** 2, axis=-1)
  if config.sdf.smoothness_norm == "l1":
    # |n_p - n_q|: along a path across an edge, the lengths of the normal's steps add up to the same turn
    # whether it is taken at once (sharp) or spread (rounded), while the squares favour spreading it.
    return jnp.mean(jnp.sqrt(squared + 1e-8))
  return jnp.mean(squared)


def train_step(
  state: TrainState, text_emb: jnp.ndarray, prior_params: Any, *, config, scene, guidance, tx, map_views=False
):
  """One SDS step of one seed: render, score, regularise, update. Pure; `Trainer` jits it over seeds."""
  key = jax.random.fold_in(state.key, state.step)
  loss = functools.partial(loss_fn, config=config, scene=scene, guidance=guidance, map_views=map_views)
  grad_fn = jax.value_and_grad(loss, has_aux=True)
  (_, metrics), grads = grad_fn(state.params, key, state.step, text_emb, prior_params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


# ----------------------------------------------------------------------------- multi-seed sharding


def seed_mesh(num_seeds: int) -> Mesh:
  """A 1-D mesh ('seeds',) over as many devices as evenly divide num_seeds."""
  devices = jax.devices()
  if jax.process_count() > 1:
    if num_seeds % len(devices):
      raise ConfigError(
        f"num_seeds={num_seeds} must be a multiple of the {len(devices)} devices of this "
        "multi-host job, so that every host holds whole seeds."
      )
    return Mesh(np.array(devices), ("seeds",))
  n = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
  return Mesh(np.array(devices[:n]), ("seeds",))


class Trainer:
  """Holds the compiled functions of one run; state stays an explicit argument."""

  def __init__(self, config: ml_collections.ConfigDict, prior: guidance_lib.Prior):
    self.config = config
    self.scene = views.make_scene(config)
    self.tx = make_optimizer(config)
    self.prior = prior
    self.mesh = seed_mesh(config.num_seeds)
    self.seed_sharding = NamedSharding(self.mesh, P("seeds"))
    self.replicated = NamedSharding(self.mesh, P())
    per_device = config.num_seeds // self.mesh.size
    # Several seeds on one CPU device render the step's views one after another (loss_fn's map_views). One seed
    # keeps them vmapped: 4% faster on the 2-core CPU at two views (444 vs 463 ms a step, 2026-12-07).
    map_views = per_device > 1 and self.mesh.devices.flat[0].platform == "cpu"
    step = functools.partial(
      train_step, config=config, scene=self.scene, guidance=prior.guidance, tx=self.tx, map_views=map_views
    )
    self._step = jax.jit(
      self._over_seeds(step, per_device, (P("seeds"), P("seeds"), P())),
      donate_argnums=(0,),
      compiler_options=compilation_cache.compiler_options(config),
    )
    self._compiling = None  # The train step compiling on a worker thread (compile_step_in_background).
    self.compile_seconds = None  # (start, end) of that compile, on `now()`'s clock, once done.
    self.compile_wait_seconds = 0.0  # How long the first `step` waited for it.
    self._init = jax.jit(
      self._over_seeds(functools.partial(init_state, scene=self.scene, tx=self.tx), per_device, (P("seeds"),))
    )
    # Weights still loading (guidance_lib.PendingParams) are placed when first needed; the step compiles from
    # their shapes meanwhile (abstract_prior_params).
    self._prior_params = prior.params
    if not isinstance(prior.params, guidance_lib.PendingParams):
      self._prior_params = jax.device_put(prior.params, self.replicated)

  @property
  def prior_params(self) -> Any:
    """The prior's frozen weights on the mesh (replicated); waits for weights that are still loading."""
    if isinstance(self._prior_params, guidance_lib.PendingParams):
      self._prior_params = jax.device_put(self._prior_params.result(), self.replicated)
    return self._prior_params

  def abstract_prior_params(self) -> Any:
    """The prior's weights as jax.ShapeDtypeStructs with their sharding, without waiting for them to load."""
    pending = self._prior_params
    tree = pending.abstract if isinstance(pending, guidance_lib.PendingParams) else pending
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated), tree)

  def abstract_text_embeddings(self, length: int, width: int) -> jax.ShapeDtypeStruct:
    """What `text_embeddings` returns for captions of [length, width] embeddings, as a jax.ShapeDtypeStruct."""
    rows = 1 + 2 * len(text_lib.VIEW_SUFFIXES)
    return jax.ShapeDtypeStruct((self.config.num_seeds, rows, length, width), jnp.float32, sharding=self.seed_sharding)

  def _over_seeds(self, fn, per_device: int, in_specs: tuple):
    """fn of one seed -> fn of [S, ...] seed-stacked arguments, sharded over the mesh.

    Each device runs its own seeds with no communication (shard_map). Several seeds on one device
    are vmapped; a single seed runs unbatched, which keeps the program identical to a
    single-seed run and avoids batched gathers (2-3x slower for the hash grid on CPU).
    """
    in_axes = tuple(0 if spec == P("seeds") else None for spec in in_specs)
    local = vmap_unless_one(fn, per_device, in_axes)
    return jax.shard_map(local, mesh=self.mesh, in_specs=in_specs, out_specs=P("seeds"), check_vma=False)

  @property
  def seeds(self) -> np.ndarray:
    return np.arange(self.config.num_seeds, dtype=np.int32) + self.config.seed

  def init(self, seeds: np.ndarray | None = None) -> TrainState:
    """Initial state of `seeds` (default: this config's seeds), one per seed-axis entry."""
    seeds = self.seeds if seeds is None else np.asarray(seeds, np.int32)
    return self._init(jax.device_put(seeds, self.seed_sharding))

  def abstract_state(self, tx: optax.GradientTransformation | None = None) -> TrainState:
    """Shapes, dtypes and shardings of the state, without computing it (for checkpoint restore).

    tx: the optimiser whose state it holds (default: this run's).
    """
    init = self._init
    if tx is not None:
      per_device = self.config.num_seeds // self.mesh.size
      init = self._over_seeds(functools.partial(init_state, scene=self.scene, tx=tx), per_device, (P("seeds"),))
    shapes = jax.eval_shape(init, jax.ShapeDtypeStruct(self.seeds.shape, jnp.int32))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.seed_sharding), shapes)

  def adopt(self, state: TrainState) -> TrainState:
    """A restored state with its optimiser state in this run's tree (a checkpoint written with another
    optim.grad_clip: clipping adds a link without state to the chain; the Adam moments carry over)."""
    want = self.abstract_state().opt_state
    leaves, have = jax.tree.leaves(state.opt_state), jax.tree.leaves(want)
    if [(x.shape, x.dtype) for x in leaves] != [(x.shape, x.dtype) for x in have]:
      raise ValueError("the optimiser state's arrays differ from this run's optimiser")
    return state.replace(opt_state=jax.tree.unflatten(jax.tree.structure(want), leaves))

  def text_embeddings(self, text_emb: np.ndarray) -> jax.Array:
    """[9, L, D] (one caption for all seeds) or [S, 9, L, D] (one per seed) -> [S, 9, L, D] sharded over seeds."""
    text_emb = np.asarray(text_emb, np.float32)
    rows = 1 + 2 * len(text_lib.VIEW_SUFFIXES)
    if text_emb.ndim not in (3, 4) or text_emb.shape[-3] != rows:
      raise ValueError(
        f"text embeddings of shape {text_emb.shape}; embed_prompts gives [{rows}, L, D] ([S, {rows}, L, D])."
      )
    if text_emb.ndim == 4 and text_emb.shape[0] != self.config.num_seeds:
      raise ValueError(f"{text_emb.shape[0]} per-seed text embeddings for {self.config.num_seeds} seeds.")
    batched = np.broadcast_to(text_emb, (self.config.num_seeds,) + text_emb.shape[-3:])
    return jax.device_put(np.ascontiguousarray(batched), self.seed_sharding)

  def compile_step_in_background(self, text_emb: jax.Array | jax.ShapeDtypeStruct) -> concurrent.futures.Future:
    """Starts compiling the train step for text_emb (from `text_embeddings`, or its abstract_text_embeddings)
    on a worker thread, from the shapes of the state and of the prior's weights (which may still be loading).

    Returns at once, with the future of the compiled program (jax `Compiled`: its memory_analysis() and
    as_text() tell what the step needs); `step` waits for it. On a GPU the train step's compile is most
    of a short run's time, and the run's other set-up (the prior's weights, the initial state, the writers,
    the renderers' compiles) goes on beside it: XLA compiles outside Python's lock.
    """
    abstract = self.abstract_state()
    pending = self._prior_params if isinstance(self._prior_params, guidance_lib.PendingParams) else None
    prior = self.abstract_prior_params() if pending is not None else self.prior_params

    def compile_step():
      start = now()
      try:
        lowered = self._step.lower(abstract, text_emb, prior)  # Tracing and lowering: Python, under its lock.
      except Exception:
        if pending is not None:  # Shapes read off a checkpoint the model cannot take: its check says which and why.
          pending.check()
        raise
      if pending is not None:
        pending.mark_traced()  # The weights' check (which traces too) may start now.
      traced = now()
      compiled = lowered.compile()
      self.compile_seconds = (start, now())
      logging.info(
        "The train step compiled in %.1f s (traced and lowered %.1f s, then XLA %.1f s; on a worker thread, "
        "beside the set-up).",
        now() - start,
        traced - start,
        now() - traced,
      )
      return compiled

    self._compiling = compilation_cache.in_background(compile_step, "compile_step")
    return self._compiling

  def step(self, state: TrainState, text_emb: jax.Array):
    if self._compiling is not None:  # The compiled program takes the same (donated) arguments as the jit.
      start = now()
      self._step, self._compiling = self._compiling.result(), None
      self.compile_wait_seconds = now() - start
    return self._step(state, text_emb, self.prior_params)


def metrics_to_host(metrics: dict) -> dict:
  """The step's metrics [S] on the host; in a multi-host job every process must call this (it gathers)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    metrics = multihost_utils.process_allgather(metrics, tiled=True)
  return {k: np.asarray(jax.device_get(v)) for k, v in metrics.items()}


def now() -> float:
  return time.perf_counter()


# ----------------------------------------------------------------------------- the run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, reexport: bool = False) -> TrainState:
  """Runs (or resumes) DreamFusion for config in workdir and exports every seed; returns the state.

  Three phases: set up (checks everything a user can get wrong before compiling anything or writing
  into workdir, then builds the prior, the trainer and the initial state), run the steps with their
  periodic actions (metrics, checkpoints, validation), and export. The run holds workdir's lock
  throughout. SIGTERM or SIGINT ends it at a checkpoint with errors.Interrupted (stops.StopRequest); a full
  disk ends it with errors.DiskFullError, naming the step it resumes from. A run that trains writes every
  export; a finished run writes only the files missing from its seeds' folders, or all of them with `reexport`.
  """
  guard = Guard(stops.StopRequest().install())
  try:
    run = set_up(config, workdir, guard, reexport)
    guard.run = run
    try:
      run_steps(run)
    finally:
      close_steps(run)
    run.timing["total"] = now() - run.timing["start"]
    if run.step > run.start_step:
      log_timing(run.timing, run.step - run.start_step, run.timing["total"])
    if run.start is not None and run.start >= config.num_steps:
      logging.info("The checkpoint is already at step %d >= num_steps=%d.", run.start, config.num_steps)
    try:
      if config.export.enabled:
        guard.stop.at_once = lambda name: (
          f"{name} during the exports: training finished at step {run.step} and is checkpointed; rerun the same "
          "command to write the exports."
        )
        export_run(run)
    finally:  # A failed export still gets a page, which names what is missing.
      if run.lead:
        write_report(run)
    return run.state
  except Exception as e:
    resume = guard.resume_step()
    if files.is_disk_full(e):
      raise files.disk_full_error(workdir, resume, known=guard.searched) from None
    if isinstance(e, SaveFailed):
      raise WorkdirError(
        f"{e} ({checkpointing.one_line(e.__cause__) if e.__cause__ else 'orbax left it unfinished'}). The run "
        f"stopped; rerun the same command to resume from step {resume}, the last checkpoint written."
        if resume is not None
        else f"{e}. The run stopped; rerun the same command to start it again."
      ) from None
    raise
  finally:
    guard.release()


@dataclasses.dataclass
class Guard:
  """What train_and_evaluate holds while it runs: the signal handlers, the workdir's lock, and the run."""

  stop: stops.StopRequest
  lock: files.WorkdirLock | None = None
  start: int | None = None  # The checkpoint step the run resumed from, once searched.
  searched: bool = False  # Whether the checkpoints were searched (start is known).
  run: Any = None  # The Run, once set up.

  def resume_step(self) -> int | None:
    """The step a rerun resumes from: the last checkpoint confirmed written."""
    return self.run.last_saved if self.run is not None else self.start

  def release(self) -> None:
    """Gives back the handlers, closes the checkpoints (their background threads) and releases the lock."""
    self.stop.uninstall()
    if self.run is not None:
      try:
        self.run.ckpts.close()
      except Exception as e:  # The run's own error is what the user needs; this one only adds to it.
        logging.warning("Closing the checkpoints failed too (%s).", checkpointing.one_line(e))
    if self.lock is not None:
      self.lock.release()


@dataclasses.dataclass
class Run:
  """One train_and_evaluate's bookkeeping: what the set-up made, and what the periodic actions update."""

  config: ml_collections.ConfigDict
  workdir: str
  config_dict: dict  # The config as saved in config.json and beside each checkpoint.
  ckpts: Checkpoints
  start: int | None  # The checkpoint step the run resumed from (None: a new run).
  trainer: Trainer
  captions: np.ndarray  # [9, L, D] caption embeddings on the host, the same for every seed.
  text_emb: jax.Array  # [S, 9, L, D], sharded over seeds.
  state: TrainState
  step: int
  lead: bool  # Whether this process writes (the first of a multi-host job).
  writer: metrics_lib.MetricsWriter
  render_view: Any  # outputs.view_renderer: validation and export.
  truth_view: Any  # outputs.truth_renderer: the true object of a Shapes caption beside the result, or None.
  preview: Any  # outputs.guidance_previewer, or None.
  compiling: Any  # The renderers' background compile (a future), or None.
  stop: stops.StopRequest  # The signal handlers' flag.
  exports: dict  # {seed: the export.PARTS its export writes} (export_plan).
  last_saved: int | None = None  # The step of the last checkpoint confirmed written.
  bar: Any = None  # progress.Progress: the console.
  start_step: int = 0  # The step this process started training at.
  tick: tuple = (0.0, 0)  # (time, step) of the last metrics record, for steps_per_sec.
  timing: dict = dataclasses.field(default_factory=dict)


def set_up(config: ml_collections.ConfigDict, workdir: str, guard: Guard, reexport: bool = False) -> Run:
  """The set-up phase: checks, the lock, the checkpoint to resume from, the prior, the trainer, the initial (or
  restored) state, writers and renderers."""
  guard.stop.at_once = lambda name: f"{name} during the set-up, before any step: nothing was lost."
  checks.validate_config(config)
  memory.check(config)
  checks.check_workdir_writable(workdir)
  lead = jax.process_index() == 0
  guard.lock = lock_workdir(workdir, lead)
  checks.check_video_encoder(config)
  checks.check_mesh_packages(config)
  config_dict = checks.config_to_dict(config)
  ckpts = Checkpoints(workdir, config.keep_checkpoints)
  start, saved = find_checkpoint(ckpts, config_dict, workdir)
  guard.start, guard.searched = start, True
  where = f"resume from step {start}" if start is not None else "start it"
  guard.stop.at_once = lambda name: (
    f"{name} during the set-up, before any step: nothing was lost; rerun the same command to {where}."
  )
  setup = {"start": now()}
  prior = build_prior(config)
  setup["prior"] = now() - setup["start"]
  checks.warn_camera_mismatch(prior.training_cameras, config.camera)
  unknown = prior.unknown_words(checks.prior_prompt(config))
  if unknown:
    logging.warning("The prior does not know the word(s) %s; they are ignored.", unknown)
  trainer = Trainer(config, prior)
  logging.info(
    "Seeds %s on %d device(s) (%s).", trainer.seeds.tolist(), trainer.mesh.size, jax.devices()[0].device_kind
  )
  trains = start is None or start < config.num_steps
  early = trains and prior.embedding_shape is not None
  if early:  # From the shapes alone: beside the prior's weights loading (Stable Diffusion) and the rest.
    trainer.compile_step_in_background(trainer.abstract_text_embeddings(*prior.embedding_shape))
  t = now()
  captions = embed_prompts(prior, config)
  text_emb = trainer.text_embeddings(captions)
  setup["caption embeddings"] = now() - t
  prior.release()  # The text encoder is not needed again in this run (SD's is 0.5-1.4 GB).
  if trains and not early:
    trainer.compile_step_in_background(text_emb)  # The rest of the set-up runs beside this compile.
  exports = export_plan(config, workdir, trainer.seeds, everything=trains or reexport)
  t = now()
  state = initial_state(trainer, ckpts, start, saved, config_dict, workdir)
  setup["initial state"] = now() - t
  if lead:
    files.write_json(os.path.join(workdir, "config.json"), config_dict)
  render_view = outputs.Precompiled(outputs.view_renderer(trainer.scene, config, config.export.image_size))
  truth_view = outputs.truth_renderer(trainer.scene, config, config.export.image_size)
  if truth_view is not None:
    truth_view = outputs.Precompiled(truth_view)
  preview = None
  if config.guidance.preview_t > 0:
    preview = outputs.Precompiled(outputs.guidance_previewer(trainer.scene, config, prior.guidance))
  compiling = None  # Validation's and the export's compiles, beside the first step's (outputs.compile_in_background).
  validates = bool(config.val_every) and trains
  if validates or any("renders" in parts for parts in exports.values()):
    first = host_params(state)  # Before the first step, which donates state; every process takes part.
    if lead:
      compiling = outputs.compile_in_background(
        render_view, preview if validates else None, first[0], captions, trainer.prior_params, truth_view
      )
  run = Run(
    config,
    workdir,
    config_dict,
    ckpts,
    start,
    trainer,
    captions,
    text_emb,
    state,
    int(jax.device_get(state.step[0])),
    lead,
    metrics_lib.MetricsWriter(workdir, trainer.seeds, enabled=lead, resume_step=start or 0),
    render_view,
    truth_view,
    preview,
    compiling,
    guard.stop,
    exports,
    last_saved=start,
  )
  logging.info(
    "Set up in %.1f s: %s.",
    now() - setup.pop("start"),
    ", ".join(f"{name} {seconds:.1f} s" for name, seconds in setup.items()),
  )
  return run


def lock_workdir(workdir: str, lead: bool) -> files.WorkdirLock | None:
  """The lead process takes workdir's lock (files.WorkdirLock); on a multi-host job every process learns
  whether it could, so that all of them stop when it could not."""
  lock, error = None, None
  if lead:
    lock = files.WorkdirLock(workdir)
    try:
      lock.acquire()
    except WorkdirError as e:
      lock, error = None, e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    if not int(multihost_utils.broadcast_one_to_all(np.int32(error is None))):
      raise error or WorkdirError(f"The work directory '{workdir}' is in use by another run (see process 0's error).")
  if error is not None:
    raise error
  return lock


def find_checkpoint(ckpts: Checkpoints, config_dict: dict, workdir: str) -> tuple[int | None, dict | None]:
  """(step, its saved config) of the newest checkpoint that reads (Checkpoints.restore_latest moves damaged ones
  aside); (None, None) for a new run. WorkdirError if that checkpoint is of an incompatible config: reported
  only once the checkpoint has read, so damage is never mistaken for a config change. Needs no model."""

  def read(step):
    saved = ckpts.saved_config(step)
    ckpts.restore_as_saved(step)  # Every array reads.
    checks.check_resume_compatible(saved, config_dict, workdir)
    return saved

  return ckpts.restore_latest(read)


def initial_state(
  trainer: Trainer, ckpts: Checkpoints, start: int | None, saved: dict | None, config_dict: dict, workdir: str
) -> TrainState:
  """A new run's initial state, or the state of the checkpoint at step `start` (whose config is `saved`)."""
  if start is None:
    logging.info("Starting a new run in %s.", workdir)
    return trainer.init()
  tx = None
  if saved.get("optim") != config_dict["optim"]:  # Written with other optimiser settings: its tree.
    tx = make_optimizer(ml_collections.ConfigDict({**config_dict, "optim": {**config_dict["optim"], **saved["optim"]}}))
  try:
    state = trainer.adopt(ckpts.restore_raw(start, trainer.abstract_state(tx)))
  except (ValueError, KeyError, TypeError) as e:  # It reads (find_checkpoint), so it is of another model.
    raise ckpts.does_not_fit(start, e) from None
  for change in checks.adjusted_fields(saved, config_dict):
    logging.warning("Resuming with %s (a field that may change on resume; from step %d on).", change, start)
  logging.info("Resuming from the checkpoint at step %d in %s.", start, ckpts.directory)
  return state


def run_steps(run: Run) -> None:
  """The steps phase: train up to num_steps; log, checkpoint and validate on their schedules; stop at a
  checkpoint on SIGTERM or SIGINT."""
  config = run.config
  bar = config.progress_bar and run.lead and progress.stderr_is_terminal()
  run.bar = progress.Progress(
    config.num_steps, run.step, bar=bar, lines=run.lead and not bar, t_range=functools.partial(t_fractions, config)
  )
  run.tick = (now(), run.step)
  run.timing = {"start": now(), "first_step": 0.0, "validation": 0.0, "checkpoints": 0.0}
  run.start_step = run.step
  while run.step < config.num_steps:
    run.state, metrics = run.trainer.step(run.state, run.text_emb)
    run.step += 1
    if run.step == run.start_step + 1:  # One sync, so that the log can tell compiling from training.
      jax.block_until_ready(run.state)
      run.timing["first_step"] = now() - run.timing["start"]
      logging.info(
        "The first step took %.1f s, %.1f s of it waiting for the train step's compile.",
        run.timing["first_step"],
        run.trainer.compile_wait_seconds,
      )
      run.stop.at_once = None  # From now on a signal has a step to save: it is polled below.
    last = run.step == config.num_steps
    logged = run.step % config.log_every == 0 or last
    if logged:
      record_metrics(run, metrics)
    stopping = run.stop.agreed(sync_point=logged)
    if run.step % config.checkpoint_every == 0 or last or stopping:
      save_checkpoint(run)
    if stopping:
      confirm_save(run)
      raise Interrupted(
        f"{run.stop.signal_name} after step {run.step}: the checkpoint of step {run.step} is written; rerun the "
        f"same command to resume from step {run.step}."
      )
    if config.val_every and (run.step % config.val_every == 0 or last):
      validate(run)
  confirm_save(run)


def close_steps(run: Run) -> None:
  """After the steps phase, however it ended: the progress bar, the checkpoint in flight, the metrics writer.

  On an error the save in flight is still waited for (it may be good), but its own failure is only logged.
  """
  run.bar.close()
  try:
    confirm_save(run)
  except Exception as e:
    logging.warning("The checkpoint in flight was not written either (%s).", checkpointing.one_line(e))
  try:
    run.writer.close()
  except OSError as e:
    logging.warning("The TensorBoard writer did not close (%s).", checkpointing.one_line(e))


def record_metrics(run: Run, metrics: dict) -> None:
  """Fetches the step's metrics (waiting for the device), confirms the last save, stops on NaN, writes a record."""
  host = metrics_to_host(metrics)
  confirm_save(run)  # A failed save is reported within log_every steps.
  metrics_lib.check_finite(host, run.step, run.last_saved, DIVERGENCE_ADVICE, seeds=run.trainer.seeds)
  rate = (run.step - run.tick[1]) / max(now() - run.tick[0], 1e-9)
  run.tick = (now(), run.step)
  run.writer.write(run.step, host, {"steps_per_sec": rate})
  run.bar.record(run.step, {k: float(host[k].mean()) for k in progress.TERMS if k in host})


def t_fractions(config: ml_collections.ConfigDict, step: int) -> tuple[float, float]:
  """The diffusion times SDS draws from at `step`, as fractions of the schedule (the console shows them)."""
  g = config.guidance
  lo, hi = sds.annealed_timestep_range(g.t_min, g.t_max, g.t_max_final, g.t_anneal_steps, g.num_train_timesteps, step)
  return lo / g.num_train_timesteps, int(hi) / g.num_train_timesteps


def confirm_save(run: Run) -> None:
  """Waits for the asynchronous save in flight (if any); Checkpoints.SaveFailed if it failed."""
  step = run.ckpts.confirm()
  if step is not None:
    run.last_saved = step


def save_checkpoint(run: Run) -> None:
  """Saves the state (asynchronously), unless it is broken."""
  confirm_save(run)
  if not bool(jax.device_get(params_finite(run.state.params))):  # Never checkpoint a broken state.
    saved = (
      f"the last checkpoint (step {run.last_saved}) is intact and the run resumes from it"
      if run.last_saved is not None
      else "nothing was saved"
    )
    raise DivergenceError(
      f"The parameters became NaN or infinite by step {run.step}; the run stopped and {saved}. {DIVERGENCE_ADVICE}"
    )
  t = now()
  run.ckpts.save(run.step, run.state, run.config_dict)
  run.timing["checkpoints"] += now() - t


def validate(run: Run) -> None:
  """Writes the validation sheet and the guidance preview of every seed (the lead process)."""
  t = now()
  per_seed = host_params(run.state)  # Every process takes part in the gather; the lead writes.
  if run.lead:
    wait_for(run.compiling)
    sheet = outputs.validation_sheet(run.render_view, per_seed, run.truth_view)
    outputs.write_validation(run.workdir, run.step, sheet)
    run.writer.image("validation", sheet, run.step)
    if run.preview is not None:
      sheet = outputs.guidance_preview_sheet(
        run.preview, per_seed, run.captions, run.trainer.prior_params, run.step, outputs.preview_labels(run.config)
      )
      outputs.write_validation(run.workdir, run.step, sheet, "guidance")
      run.writer.image("guidance_preview", sheet, run.step)
  run.timing["validation"] += now() - t


def export_plan(config: ml_collections.ConfigDict, workdir: str, seeds, everything: bool) -> dict[int, tuple]:
  """{seed: the export.PARTS its export writes}: all of them when `everything`, else those with a file missing
  from workdir/seed_K (a finished run rerun); {} with exports off. Every process computes the same plan."""
  if not config.export.enabled:
    return {}
  return {
    int(seed): tuple(export.PARTS) if everything else export.missing_parts(seed_directory(workdir, seed))
    for seed in seeds
  }


def seed_directory(workdir: str, seed) -> str:
  return os.path.join(workdir, f"seed_{int(seed)}")


def export_run(run: Run) -> None:
  """The export phase: every seed's turntable, meshes and views (the lead process writes), as export_plan says."""
  if not any(run.exports.values()):
    logging.info(
      "Every export of the finished run is in %s; nothing was rewritten (--reexport rewrites them).", run.workdir
    )
    return
  per_seed = host_params(run.state)
  if run.lead:
    t, cpu = now(), time.process_time()
    wait_for(run.compiling)
    export_all(run.trainer, per_seed, run.config, run.workdir, run.render_view, run.truth_view, run.exports)
    run.timing["export"] = now() - t
    # The CPU time too: on a shared machine the wall time says more about the neighbours than the export.
    logging.info(
      "Exported in %.1f s (%.1f s of this process's CPU time).", run.timing["export"], time.process_time() - cpu
    )


def write_report(run: Run) -> None:
  """Records this invocation (device, steps, times) in run.json, then writes report.html; neither fails the run."""
  steps = run.step - run.start_step
  rate = steady_rate(run.timing, steps, run.timing["total"])
  info = dict(
    date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    device=jax.devices()[0].device_kind,
    platform=jax.devices()[0].platform,
    num_devices=run.trainer.mesh.size,
    num_processes=jax.process_count(),
    steps=[run.start_step, run.step],
    train_seconds=round(run.timing["total"], 2) if steps else None,
    compile_seconds=round(run.timing["first_step"], 2) if steps else None,
    steps_per_sec=None if rate is None else round(rate, 3),
    export_seconds=round(run.timing["export"], 2) if "export" in run.timing else None,
  )
  try:
    report.record_invocation(run.workdir, info)
  except OSError as e:
    logging.warning("Could not write %s: %s", os.path.join(run.workdir, report.RUN_INFO), e)
  report.write_report(run.workdir)  # Logs, never raises.


def log_timing(timing: dict, steps: int, total: float) -> None:
  """One line on where a run's time went: the first step (compiling), the other steps, validation, checkpoints."""
  rest = total - timing["first_step"] - timing["validation"] - timing["checkpoints"]
  rate = steady_rate(timing, steps, total)
  rate = "-" if rate is None else f"{rate:.1f} steps/s"
  logging.info(
    "%d steps in %.1f s: the first (compiling) %.1f s, the other %d %.1f s (%s), validation %.1f s, "
    "checkpoints %.1f s.",
    steps,
    total,
    timing["first_step"],
    steps - 1,
    rest,
    rate,
    timing["validation"],
    timing["checkpoints"],
  )


def steady_rate(timing: dict, steps: int, total: float) -> float | None:
  """Steps per second after the first step (which compiles), without validation and checkpoints; None if
  unmeasured."""
  rest = total - timing["first_step"] - timing["validation"] - timing["checkpoints"]
  return (steps - 1) / rest if steps > 1 and rest > 0 else None


def wait_for(future) -> None:
  """Waits for a background task (None: nothing to wait for), re-raising its error."""
  if future is not None:
    future.result()


@jax.jit
def params_finite(params: Any) -> jnp.ndarray:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))


def host_params(state: TrainState) -> list[Any]:
  """Host copies of every seed's params; in a multi-host job every process must call this."""
  params = state.params
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    params = multihost_utils.process_allgather(params, tiled=True)
  params = jax.device_get(params)
  num = jax.tree.leaves(params)[0].shape[0]
  return [jax.tree.map(lambda x: np.asarray(x[i]), params) for i in range(num)]


def export_all(
  trainer: Trainer,
  per_seed: list[Any],
  config: ml_collections.ConfigDict,
  workdir: str,
  render_view,
  truth_view=None,
  plan: dict | None = None,
) -> None:
  """Writes every seed's export, or the parts `plan` (export_plan) names."""
  for i, seed in enumerate(trainer.seeds):
    directory = seed_directory(workdir, seed)
    parts = tuple(export.PARTS) if plan is None else plan[int(seed)]
    if not parts:
      continue
    if plan is not None and parts != tuple(export.PARTS):
      logging.info("Seed %d: writing only the missing %s (--reexport rewrites everything).", seed, " and ".join(parts))
    try:
      written = outputs.export_seed(directory, trainer.scene, per_seed[i], config, render_view, truth_view, parts)
      logging.info("Seed %d: wrote %s.", seed, ", ".join(sorted(os.path.basename(p) for p in written.values())))
    except EmptyMeshError as e:
      logging.warning("Seed %d: %s The turntable and contact sheet were written to %s.", seed, e, directory)
