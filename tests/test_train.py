"""Training: the loss falls toward a known target, resume is exact, multi-seed equals single-seed runs."""

import functools
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config

from dreamfusion_jax import train
from dreamfusion_jax.guidance import interface as guidance_lib
from dreamfusion_jax.nerf import cameras, render, views
from dreamfusion_jax.nerf.field import Scene, volsdf_density


class TargetDenoiser(nn.Module):
  """The exact denoiser of a one-image data set {y}: eps(x_t, t) = (x_t - sqrt(abar_t) y) / sqrt(1 - abar_t).

  For it, SDS's residual is sqrt(abar (1 - abar)) (x0 - y): a weighted pull of every render toward y,
  so training must reduce the renders' distance to y. No parameters; the caption is ignored.
  """

  alphas_cumprod: tuple
  target: tuple  # RGB of the target image in [0, 1].

  def __call__(self, x_t, t, context):
    abar = jnp.asarray(self.alphas_cumprod)[t][:, None, None, None]
    y = jnp.asarray(self.target) * 2 - 1
    return (x_t - jnp.sqrt(abar) * y) / jnp.sqrt(1 - abar)


def target_prior(config, rgb=(0.9, 0.2, 0.1)):
  abar = guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000)
  g = guidance_lib.Guidance(TargetDenoiser(tuple(abar.tolist()), rgb), abar)
  return guidance_lib.Prior(g, {"unet": {}}, lambda texts: np.zeros((len(texts), 2, 4), np.float32))


def render_error(trainer, state, rgb, config):
  """Mean squared distance of 4 fixed albedo renders (seed 0) to the target colour."""
  params = jax.tree.map(lambda x: x[0], state.params)
  field_fn, bg_fn = views.field_fns(trainer.scene, params)
  rcfg = views.make_render_config(config)
  errs = []
  for az in (0.0, 90.0, 180.0, 270.0):
    cam = cameras.orbit_camera(jnp.float32(20.0), jnp.float32(az), 1.3, 16.0)
    out = render.render_image(None, field_fn, bg_fn, cam, views.fixed_shading("albedo", cam["light_pos"]), rcfg, 16, 16)
    errs.append(float(jnp.mean((out["rgb"] - jnp.asarray(rgb)) ** 2)))
  return float(np.mean(errs))


def test_train_steps_reduce_the_loss_toward_a_target_image():
  config = tiny_config(
    **{
      "num_steps": 40,
      "optim.net_lr": 1e-2,
      "shading.albedo_warmup_steps": 1000,
      "reg.entropy": 0.0,
      "reg.orientation": 0.0,
    }
  )
  rgb = (0.9, 0.2, 0.1)
  trainer = train.Trainer(config, target_prior(config, rgb))
  state = trainer.init()
  emb = trainer.text_embeddings(np.zeros((9, 2, 4), np.float32))
  before = render_error(trainer, state, rgb, config)
  for _ in range(config.num_steps):
    state, metrics = trainer.step(state, emb)
  after = render_error(trainer, state, rgb, config)
  assert np.isfinite(np.asarray(metrics["loss"])).all()
  assert after < 0.25 * before, (before, after)
  assert int(state.step[0]) == config.num_steps


def test_distortion_weight_adds_its_term_to_the_loss():
  # reg.distortion adds weight x the logged mean distortion (render.distortion, tested against a
  # double sum in test_render) and nothing else.
  out = {}
  for weight in (0.0, 1000.0):
    config = tiny_config(**{"reg.distortion": weight, "shading.albedo_warmup_steps": 1000})
    prior = target_prior(config)
    scene = views.make_scene(config)
    params = train.init_state(jnp.int32(0), scene, train.make_optimizer(config)).params
    loss, metrics = jax.jit(functools.partial(train.loss_fn, config=config, scene=scene, guidance=prior.guidance))(
      params, jax.random.key(0), jnp.int32(3), jnp.zeros((9, 2, 4)), prior.params
    )
    out[weight] = float(loss), float(metrics["distortion"])
  assert out[1000.0][1] > 0 and out[1000.0][1] == pytest.approx(out[0.0][1], rel=1e-6)
  assert out[1000.0][0] - out[0.0][0] == pytest.approx(1000.0 * out[0.0][1], rel=1e-3)


def test_the_guidance_term_is_the_mean_over_the_steps_views(monkeypatch):
  """With every regulariser off, the loss is the SDS term alone. An SDS loss that returns its number of views (as
  sds_loss's 0.5 ||r||^2, a sum over views, grows with them) gives a loss of 1 at 1, 2 and 4 views per step."""

  def views_in(key, guidance, params, images, cond, uncond, **kwargs):
    return jnp.float32(images.shape[0]), {"residual_norm": jnp.zeros(images.shape[0])}

  monkeypatch.setattr(train.sds, "sds_loss", views_in)
  losses = []
  for batch in (1, 2, 4):
    config = tiny_config(**{"batch_size": batch, "reg.entropy": 0.0, "reg.orientation": 0.0})
    prior = target_prior(config)
    scene = views.make_scene(config)
    params = train.init_state(jnp.int32(0), scene, train.make_optimizer(config)).params
    loss, _ = jax.jit(functools.partial(train.loss_fn, config=config, scene=scene, guidance=prior.guidance))(
      params, jax.random.key(0), jnp.int32(3), jnp.zeros((9, 2, 4)), prior.params
    )
    losses.append(float(loss))
  assert losses == [1.0, 1.0, 1.0], losses


def test_views_rendered_one_after_another_equal_the_vmapped_views():
  """loss_fn's map_views (lax.map over the step's views, what `Trainer` uses for several seeds on a CPU device)
  gives the loss and the gradient that the vmapped views give, at two views of one seed, where the vmap runs."""
  config = tiny_config(**{"batch_size": 2})
  prior = target_prior(config)
  scene = views.make_scene(config)
  params = train.init_state(jnp.int32(0), scene, train.make_optimizer(config)).params
  out = {}
  for map_views in (False, True):
    loss = functools.partial(train.loss_fn, config=config, scene=scene, guidance=prior.guidance, map_views=map_views)
    (value, _), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      params, jax.random.key(0), jnp.int32(3), jnp.zeros((9, 2, 4)), prior.params
    )
    out[map_views] = float(value), jax.tree.leaves(grads)
  assert out[True][0] == pytest.approx(out[False][0], rel=1e-5)
  for a, b in zip(out[True][1], out[False][1]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert any(np.abs(np.asarray(g)).max() > 0 for g in out[True][1])


def test_two_views_per_step_with_two_seeds_on_one_cpu_equal_each_seed_run_alone():
  """Two seeds vmapped on one CPU device with two views per step (which crashed jax 0.10.2's CPU backend while the
  views were vmapped inside the seeds' vmap) train, and each seed ends where its own single-seed run ends."""
  config = tiny_config(**{"num_seeds": 2, "batch_size": 2, "num_steps": 2})
  prior = target_prior(config)
  both = train.Trainer(config, prior)
  emb = both.text_embeddings(np.zeros((9, 2, 4), np.float32))
  state = both.init()
  for _ in range(config.num_steps):
    state, metrics = both.step(state, emb)
  assert np.isfinite(np.asarray(metrics["loss"])).all()
  multi = jax.device_get(state.params)
  config = tiny_config(**{"num_seeds": 1, "batch_size": 2, "num_steps": 2})
  one = train.Trainer(config, prior)
  emb = one.text_embeddings(np.zeros((9, 2, 4), np.float32))
  for k in range(2):
    state = one.init([k])
    for _ in range(config.num_steps):
      state, _ = one.step(state, emb)
    # The seeds' vmap sums in another order; Adam's first steps move every entry by about the learning rate (1e-2),
    # so float noise in a near-zero gradient moves an entry by up to ~1e-4 (one entry in 8192 by 2.4e-5, seen).
    for a, b in zip(jax.tree.leaves(multi), jax.tree.leaves(jax.device_get(state.params))):
      np.testing.assert_allclose(a[k], b[0], rtol=1e-4, atol=1e-4)
  assert not np.allclose(jax.tree.leaves(multi)[0][0], jax.tree.leaves(multi)[0][1])


def _params(state):
  return jax.tree.map(np.asarray, jax.device_get(state.params))


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
  config = tiny_config(**{"num_steps": 6, "checkpoint_every": 2})
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))

  real_step = train.Trainer.step
  calls = {"n": 0}

  def interrupted(self, state, emb):
    calls["n"] += 1
    if calls["n"] == 4:  # Dies during step 4; the checkpoint of step 2 is what survives.
      raise KeyboardInterrupt
    return real_step(self, state, emb)

  monkeypatch.setattr(train.Trainer, "step", interrupted)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / "resumed"))
  monkeypatch.setattr(train.Trainer, "step", real_step)
  assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2"]
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))
  # Starting again with more steps continues from the last checkpoint.
  longer = train.train_and_evaluate(tiny_config(**{"num_steps": 8, "checkpoint_every": 2}), str(tmp_path / "resumed"))
  assert int(longer.step[0]) == 8


def test_a_finished_run_rerun_writes_only_its_missing_exports_unless_told_to_rewrite_them(tmp_path, caplog):
  config = tiny_config(
    **{
      "export.enabled": True,
      "export.num_frames": 2,
      "export.image_size": 16,
      "export.mesh_resolution": 16,
      "export.mesh_threshold": 5.0,
      "export.texture_size": 32,
    }
  )
  workdir = str(tmp_path / "run")
  seed_dir = os.path.join(workdir, "seed_0")

  def stamps():
    return {name: os.stat(os.path.join(seed_dir, name)).st_mtime_ns for name in sorted(os.listdir(seed_dir))}

  train.train_and_evaluate(config, workdir)  # Trains, so it writes everything.
  first = stamps()
  assert sorted(first) == sorted(
    ["turntable.mp4", "views.png", "mesh.glb", "mesh.obj", "mesh.mtl", "texture.png", "mesh.ply"]
  )
  caplog.set_level("INFO")
  train.train_and_evaluate(config, workdir)  # Finished, nothing missing: nothing is rewritten.
  assert stamps() == first
  assert "nothing was rewritten" in caplog.text
  os.remove(os.path.join(seed_dir, "texture.png"))
  train.train_and_evaluate(config, workdir)  # Only the mesh part (its files are written together) again.
  second = stamps()
  assert sorted(second) == sorted(first)
  assert all(second[n] == first[n] for n in ("turntable.mp4", "views.png"))
  assert all(second[n] != first[n] for n in ("mesh.glb", "mesh.obj", "mesh.mtl", "texture.png", "mesh.ply"))
  train.train_and_evaluate(config, workdir, reexport=True)  # Everything again.
  third = stamps()
  assert all(third[n] != second[n] for n in third)


def test_the_train_step_compiled_in_the_background_equals_the_jitted_one():
  config = tiny_config(**{"num_steps": 3, "num_seeds": 2})
  prior = target_prior(config)
  plain, early = train.Trainer(config, prior), train.Trainer(config, prior)
  emb = plain.text_embeddings(np.zeros((9, 2, 4), np.float32))
  future = early.compile_step_in_background(emb)
  a, b = plain.init(), early.init()
  for _ in range(config.num_steps):
    a, _ = plain.step(a, emb)
    b, _ = early.step(b, emb)
  assert isinstance(early._step, jax.stages.Compiled)  # The worker's program ran, not a second compile.
  assert early._step is future.result()  # The future handed out is that program (benchmarks read its memory).
  jax.tree.map(np.testing.assert_array_equal, _params(a), _params(b))


def test_the_renderers_compiled_in_the_background_serve_validation_without_running_or_another_compile():
  """The worker only compiles (a program it ran beside the steps broke the step's CUDA graph on a GPU); validation
  then runs those programs, never the jit, and they give the jit's pixels."""
  from dreamfusion_jax import outputs

  config = tiny_config(**{"num_seeds": 2, "export.image_size": 16})
  prior = target_prior(config)
  trainer = train.Trainer(config, prior)
  per_seed = train.host_params(trainer.init())
  captions = np.zeros((9, 2, 4), np.float32)
  render_view = outputs.Precompiled(outputs.view_renderer(trainer.scene, config, config.export.image_size))
  truth_view = outputs.Precompiled(outputs.truth_renderer(trainer.scene, config, config.export.image_size))
  preview = outputs.Precompiled(outputs.guidance_previewer(trainer.scene, config, prior.guidance))
  outputs.compile_in_background(render_view, preview, per_seed[0], captions, trainer.prior_params, truth_view).result()
  for fn in (render_view, preview, truth_view):
    assert isinstance(fn.compiled, jax.stages.Compiled) and fn.fn._cache_size() == 0  # Compiled, nothing ran.
  sheet = outputs.validation_sheet(render_view, per_seed, truth_view)  # What validation and the export call.
  previews = outputs.guidance_preview_sheet(
    preview, per_seed, captions, trainer.prior_params, 7, outputs.preview_labels(config)
  )
  for fn in (render_view, preview, truth_view):
    assert fn.fn._cache_size() == 0  # The worker's programs served every call.
  np.testing.assert_array_equal(sheet, outputs.validation_sheet(render_view.fn, per_seed, truth_view.fn))
  np.testing.assert_array_equal(
    previews,
    outputs.guidance_preview_sheet(
      preview.fn, per_seed, captions, trainer.prior_params, 7, outputs.preview_labels(config)
    ),
  )


def test_the_views_render_in_chunks_of_render_view_chunk_samples_with_the_same_pixels_and_less_memory():
  """32x32 views at 16 samples a ray: 2**12 samples a chunk give 256-ray chunks (4 of them), the same pixels as
  one 1,024-ray chunk, and a compiled program whose temporary buffers are at most half as large."""
  from dreamfusion_jax import outputs

  renders, temp = {}, {}
  for samples in (2**12, 2**30):
    config = tiny_config(**{"render.view_chunk_samples": samples})
    trainer = train.Trainer(config, target_prior(config))
    params = train.host_params(trainer.init())[0]
    render_view = outputs.view_renderer(trainer.scene, config, 32)
    renders[samples] = render_view(params, jnp.float32(15.0), jnp.float32(30.0))
    compiled = render_view.lower(params, jnp.float32(15.0), jnp.float32(30.0)).compile()
    temp[samples] = compiled.memory_analysis().temp_size_in_bytes
  for key in ("rgb", "textureless", "normals", "opacity"):
    np.testing.assert_allclose(renders[2**12][key], renders[2**30][key], atol=1e-5, err_msg=key)
  assert temp[2**12] <= temp[2**30] / 2, temp


def test_validation_sheets_show_the_true_object_of_a_shapes_caption_above_the_seeds():
  from dreamfusion_jax import outputs
  from dreamfusion_jax.shapes import world

  config = tiny_config(**{"num_seeds": 2, "export.image_size": 24, "prompt": "a blue cube"})
  trainer = train.Trainer(config, target_prior(config))
  per_seed = train.host_params(trainer.init())
  render_view = outputs.view_renderer(trainer.scene, config, 24)
  truth_view = outputs.truth_renderer(trainer.scene, config, 24)
  sheet = outputs.validation_sheet(render_view, per_seed, truth_view)
  assert sheet.shape == (3 * 24, 8 * 24, 3)  # The truth's row, then one per seed.
  np.testing.assert_array_equal(sheet[24:], outputs.validation_sheet(render_view, per_seed))
  # The truth's colour tiles hold the caption's albedo (unshaded) on white, and nothing else.
  colour = np.concatenate([sheet[:24, k * 48 : k * 48 + 24] for k in range(4)]).reshape(-1, 3) / 255.0
  blue = np.abs(colour - world.COLOURS["blue"]).max(-1) < 0.02
  white = np.abs(colour - 1.0).max(-1) < 0.02
  assert blue.mean() > 0.1 and white.mean() > 0.3 and (blue | white).mean() > 0.9
  with config.unlocked():
    config.prompt = "a photo of a corgi"  # Not a caption of the world: no truth.
  assert outputs.truth_renderer(trainer.scene, config, 24) is None


def test_the_gpu_fields_set_xla_options_on_gpus_only(monkeypatch):
  from dreamfusion_jax import compilation_cache

  options = lambda **kw: compilation_cache.compiler_options(tiny_config(**kw))
  assert options(gpu_triton_gemm=False) is None  # This CPU.
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert options(gpu_triton_gemm=False, gpu_deterministic=False) == {"xla_gpu_enable_triton_gemm": False}
  assert options(gpu_triton_gemm=True, gpu_deterministic=True) == {"xla_gpu_exclude_nondeterministic_ops": True}
  assert options(gpu_triton_gemm=True, gpu_deterministic=False) is None


METRICS_WITHOUT_TORCH = textwrap.dedent("""
    import importlib.util, sys, numpy as np
    from dreamfusion_jax import metrics
    writer = metrics.MetricsWriter(sys.argv[1], np.array([0, 1]))
    writer.write(1, {"loss": np.array([1.0, 2.0])}, {"steps_per_sec": 3.0})
    writer.close()
    assert "torch" not in sys.modules, "tensorboardX imported torch"
    if importlib.util.find_spec("torch"):
      import torch  # Still importable afterwards.
    print("ok")
""")


def test_the_metrics_writer_does_not_import_torch(tmp_path):
  result = subprocess.run(
    [sys.executable, "-c", METRICS_WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT
  )
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
  assert "tensorboard" in os.listdir(tmp_path) and "metrics.jsonl" in os.listdir(tmp_path)


MULTISEED = textwrap.dedent("""
    import sys, numpy as np, jax
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from conftest import tiny_config
    from dreamfusion_jax import train
    assert jax.device_count() == 4, jax.devices()
    def run(**kw):
      cfg = tiny_config(**kw)
      trainer = train.Trainer(cfg, train.build_prior(cfg))
      emb = trainer.text_embeddings(train.embed_prompts(trainer.prior, cfg))
      state = trainer.init()
      for _ in range(cfg.num_steps):
        state, _ = trainer.step(state, emb)
      return trainer, jax.device_get(state.params)
    trainer, multi = run(num_seeds=4, seed=3, num_steps=3)
    assert trainer.mesh.size == 4
    cfg = tiny_config(num_seeds=1, num_steps=3)
    one = train.Trainer(cfg, train.build_prior(cfg))
    emb = one.text_embeddings(train.embed_prompts(one.prior, cfg))
    worst = 0.0
    for k in range(4):
      state = one.init([3 + k])  # One compiled single-seed program serves all four seeds.
      for _ in range(3):
        state, _ = one.step(state, emb)
      single = jax.device_get(state.params)
      for a, b in zip(jax.tree.leaves(multi), jax.tree.leaves(single)):
        np.testing.assert_allclose(a[k], b[0], rtol=1e-4, atol=1e-5)
        worst = max(worst, float(np.abs(a[k] - b[0]).max()))
    # Different seeds must give different objects.
    assert not np.allclose(jax.tree.leaves(multi)[0][0], jax.tree.leaves(multi)[0][1])
    print("worst", worst)
""")


def test_multiseed_on_four_devices_equals_single_seed_runs():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  script = MULTISEED.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "worst" in result.stdout


class NaNDenoiser(nn.Module):
  """A broken prior: its noise prediction is NaN from the start."""

  def __call__(self, x_t, t, context):
    return x_t * jnp.nan


def test_nan_stops_the_run_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  from dreamfusion_jax.errors import DivergenceError

  config = tiny_config(**{"num_steps": 4, "checkpoint_every": 1})
  abar = guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000)
  broken = guidance_lib.Prior(
    guidance_lib.Guidance(NaNDenoiser(), abar), {"unet": {}}, lambda texts: np.zeros((len(texts), 2, 4), np.float32)
  )
  monkeypatch.setattr(train, "build_prior", lambda cfg: broken)
  with pytest.raises(DivergenceError, match=r"NaN or infinite by step 1 .*no checkpoint was written"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")  # The NaN state was never saved.


def test_colour_from_shaded_false_marks_exactly_the_shaded_views():
  """shading.colour_from_shaded=False gives every shaded (and textureless) view albedo_grad 0 and every
  albedo-only view 1; the default leaves the key out (shade then passes the full gradient)."""
  config = tiny_config(**{"shading.albedo_warmup_steps": 0, "shading.shaded_prob": 0.5})
  keys = jax.random.split(jax.random.PRNGKey(0), 64)
  light = jnp.array([0.0, 0.0, 2.0])
  default = [train.sample_shading(k, jnp.int32(10), config, light) for k in keys]
  assert all("albedo_grad" not in s for s in default)
  config.shading.colour_from_shaded = False
  split = [train.sample_shading(k, jnp.int32(10), config, light) for k in keys]
  shaded = np.array([float(s["diffuse"]) > 0 for s in split])
  assert 10 < shaded.sum() < 54  # Both kinds occur.
  np.testing.assert_array_equal([float(s["albedo_grad"]) for s in split], 1.0 - shaded)
  np.testing.assert_array_equal(shaded, [float(s["diffuse"]) > 0 for s in default])  # Same draws.


class _DistanceScene:
  """Stands in for a Scene whose signed distance is k (|x| - 0.5): |grad s| = k everywhere."""

  def __init__(self, k):
    self.k = k

  def apply(self, variables, x, method=None):
    return self.k * (jnp.linalg.norm(x, axis=-1) - 0.5)


def test_eikonal_term_is_the_squared_error_of_the_gradient_norm():
  config = tiny_config(**{"field.density_activation": "volsdf", "sdf.eikonal_points": 256})
  key = jax.random.PRNGKey(0)
  assert float(train.eikonal(_DistanceScene(1.0), {}, key, config)) == pytest.approx(0.0, abs=1e-6)
  assert float(train.eikonal(_DistanceScene(2.0), {}, key, config)) == pytest.approx(1.0, rel=1e-5)
  assert float(train.eikonal(_DistanceScene(0.5), {}, key, config)) == pytest.approx(0.25, rel=1e-5)


class _PlaneScene:
  """A signed distance whose zero set is the plane z = 0.1: its normals are the same everywhere."""

  def apply(self, variables, x, method=None):
    return x[..., 2] - 0.1


def test_surface_smoothness_is_zero_on_a_plane_and_two_r2_over_R2_on_a_sphere():
  # On a sphere of radius R the unit normals at p and p + d differ by d's tangential part / R (to first
  # order): E|n(p) - n(p + d)|^2 = 2 r^2 / R^2 for d ~ N(0, r^2 I), whatever scale k the distance has.
  r = 0.01
  config = tiny_config(**{"field.density_activation": "volsdf", "sdf.eikonal_points": 4096, "sdf.smoothness_radius": r})
  key = jax.random.PRNGKey(0)
  assert float(train.surface_smoothness(_PlaneScene(), {}, key, config)) == pytest.approx(0.0, abs=1e-10)
  for k in (1.0, 2.0):
    value = float(train.surface_smoothness(_DistanceScene(k), {}, key, config))
    assert value == pytest.approx(2 * r**2 / 0.5**2, rel=0.08), k


def test_l1_surface_smoothness_is_zero_on_a_plane_and_the_rayleigh_mean_over_R_on_a_sphere():
  # 'l1' takes |n(p) - n(p + d)| ~ |d_t| / R, d_t the tangential part of d ~ N(0, r^2 I): a 2-D Gaussian whose
  # length is Rayleigh-distributed with mean r sqrt(pi / 2).
  r = 0.01
  config = tiny_config(
    **{
      "field.density_activation": "volsdf",
      "sdf.eikonal_points": 4096,
      "sdf.smoothness_radius": r,
      "sdf.smoothness_norm": "l1",
    }
  )
  key = jax.random.PRNGKey(0)
  assert float(train.surface_smoothness(_PlaneScene(), {}, key, config)) == pytest.approx(0.0, abs=1e-3)
  for k in (1.0, 2.0):
    value = float(train.surface_smoothness(_DistanceScene(k), {}, key, config))
    assert value == pytest.approx(r * np.sqrt(np.pi / 2) / 0.5, rel=0.05), k


class _BoxScene:
  """The exact signed distance of a box of half-size h whose edges are rounded to radius rr (a cube for rr = 0)."""

  def __init__(self, h, rr):
    self.h, self.rr = h, rr

  def apply(self, variables, x, method=None):
    q = jnp.abs(x) - (self.h - self.rr)
    outside = jnp.maximum(q, 0.0)
    return jnp.sqrt(jnp.sum(outside * outside, -1) + 1e-12) + jnp.minimum(jnp.max(q, -1), 0.0) - self.rr


def _box_surface_points(h, n, seed=0):
  """n points uniform over the faces of the cube of half-size h (numpy)."""
  rng = np.random.default_rng(seed)
  points = rng.uniform(-h, h, (n, 3))
  axis = rng.integers(0, 3, n)
  points[np.arange(n), axis] = h * rng.choice([-1.0, 1.0], n)
  return jnp.asarray(points, jnp.float32)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_surface_smoothness_points_and_norms_against_sharp_and_rounded_boxes(norm):
  # Uniform points moved onto a cube's surface gather on its edges (every point of an edge's outside region lands on
  # that edge: 3/4 of the points of [-1, 1]^3 around this cube), so either norm prices the sharp cube far above its
  # rounded kin and above what even points ('render' draws them so) make of it. With even points the squares still
  # favour rounding, while the lengths price the sharp and the rounded cube about alike.
  config = tiny_config(
    **{
      "field.density_activation": "volsdf",
      "field.bound": 1.0,
      "sdf.eikonal_points": 16384,
      "sdf.smoothness_radius": 0.02,
      "sdf.smoothness_norm": norm,
    }
  )
  key, h = jax.random.PRNGKey(1), 0.32
  sharp, rounded = _BoxScene(h, 0.0), _BoxScene(h, 0.064)
  volume = [float(train.surface_smoothness(s, {}, key, config)) for s in (sharp, rounded)]
  assert volume[0] > 1.1 * volume[1], volume
  points = _box_surface_points(h - 0.005, 20000)  # Just inside: the Newton step moves them onto either surface.
  hits = (points, jnp.full((points.shape[0],), 1.0 / points.shape[0]))
  even = [float(train.surface_smoothness(s, {}, key, config, hits)) for s in (sharp, rounded)]
  config.sdf.smoothness_points = "both"  # Half the draws among the hits, half uniform: a cost between the two.
  both = float(train.surface_smoothness(sharp, {}, key, config, hits))
  assert min(even[0], volume[0]) < both < max(even[0], volume[0])
  assert abs(both - (even[0] + volume[0]) / 2) < 0.2 * abs(volume[0] - even[0])
  assert volume[0] > 4.0 * even[0], (volume, even)
  if norm == "l2":
    assert even[0] > 2.0 * even[1], even
  else:
    assert 0.75 < even[0] / even[1] < 1.3, even
  # The shell's points, spread over the surface by area, price the sharp cube as the even points do, not as the
  # volume's: an edge's share of them is its share of the shell (~3% here, at 64 candidates a point), not 3/4.
  config.sdf.smoothness_points = "shell"
  shell = float(train.surface_smoothness(sharp, {}, key, config))
  assert 0.8 * even[0] < shell < 1.4 * even[0] and volume[0] > 5.0 * shell, (shell, even, volume)
  config.sdf.smoothness_shell_share = 0.5  # Half from the shell, half the volume's: the mean of the two costs.
  half = float(train.surface_smoothness(sharp, {}, key, config))
  assert abs(half - (shell + volume[0]) / 2) < 0.1 * (volume[0] - shell), (half, shell, volume)


def test_shell_points_are_the_candidates_nearest_the_surface_and_spread_over_it_by_area():
  config = tiny_config(**{"field.density_activation": "volsdf", "field.bound": 1.0})
  h, n = 0.32, 4096
  cube = _BoxScene(h, 0.0)
  key = jax.random.PRNGKey(4)
  points = np.asarray(train.shell_points(cube, {}, key, n, config))
  # The same candidates (the function's own draw): the picks are the n with the smallest |s|.
  candidates = np.asarray(jax.random.uniform(key, (config.sdf.smoothness_shell_candidates * n, 3), minval=-1.0))
  dist = np.abs(np.asarray(cube.apply({}, jnp.asarray(candidates))))
  assert points.shape == (n, 3)
  np.testing.assert_allclose(np.sort(np.abs(np.asarray(cube.apply({}, jnp.asarray(points))))), np.sort(dist)[:n])
  # Moved onto the cube (numpy: the nearest point of its surface), they lie on its six faces in proportion to
  # their areas, and few on the edges, whose region of the shell is small.
  outside = np.abs(points) > h
  assert np.mean(np.sum(outside, -1) >= 2) < 0.06  # Beside an edge or a corner: they land on it.
  face = np.argmax(np.abs(points) - h, -1) * 2 + (points[np.arange(n), np.argmax(np.abs(points) - h, -1)] > 0)
  share = np.bincount(face, minlength=6) / n
  np.testing.assert_allclose(share, 1 / 6, atol=0.03)


def test_rendered_surface_points_lie_on_the_rendered_sphere():
  config = tiny_config(**{"field.density_activation": "volsdf", "render.num_coarse": 64, "render.num_fine": 64})
  size, radius = 24, 0.4
  field_fn = lambda x: (volsdf_density(jnp.linalg.norm(x, axis=-1) - radius, 0.002), jnp.ones_like(x) * 0.5)
  cam = cameras.sample_camera(jax.random.PRNGKey(3), cameras.from_config(config.camera), size, 1.0)
  rcfg, shading = views.make_render_config(config), views.fixed_shading("albedo", cam["light_pos"])
  out = render.render_image(None, field_fn, lambda d: jnp.zeros_like(d), cam, shading, rcfg, size, size)
  cams = jax.tree.map(lambda a: a[None], cam)
  points, prob = train.rendered_surface_points(cams, jax.tree.map(lambda a: a[None], out), size)
  hit = np.asarray(prob) > 0
  assert 0.1 < hit.mean() < 0.9  # The sphere covers part of the view.
  np.testing.assert_allclose(float(jnp.sum(prob)), 1.0, rtol=1e-5)
  hits = np.asarray(points)[hit]
  np.testing.assert_allclose(np.linalg.norm(hits, axis=-1), radius, atol=0.01)
  assert np.all(hits @ np.asarray(cam["origin"]) > 0)  # The camera's side of the sphere.


def test_smoothness_weight_fades_linearly_to_zero_from_its_start_step():
  config = tiny_config(**{"field.density_activation": "volsdf", "sdf.smoothness": 1000.0})
  assert train.smoothness_weight(config, jnp.int32(5000)) == 1000.0  # No fade: the weight, as a Python float.
  config.sdf.smoothness_fade_start, config.sdf.smoothness_fade_steps = 700, 200
  steps = np.array([0, 699, 700, 750, 800, 899, 900, 901, 5000])
  want = 1000.0 * np.clip(1 - (steps - 700) / 200, 0, 1)  # 1000 up to 700, 750 at 750, 0 from 900.
  got = [float(jax.jit(lambda t: train.smoothness_weight(config, t))(jnp.int32(t))) for t in steps]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)  # float32, as the step computes it.
  np.testing.assert_allclose(want[[3, 4, 6]], [750.0, 500.0, 0.0])


def test_sdf_beta_anneals_log_linearly_from_start_to_the_fields_beta():
  config = tiny_config(
    **{
      "field.density_activation": "volsdf",
      "field.sdf_beta": 0.01,
      "sdf.beta_start": 0.1,
      "sdf.beta_anneal_steps": 100,
    }
  )
  assert float(train.sdf_beta(config, jnp.int32(0))) == pytest.approx(0.1, rel=1e-5)
  assert float(train.sdf_beta(config, jnp.int32(50))) == pytest.approx(np.sqrt(0.1 * 0.01), rel=1e-5)
  assert float(train.sdf_beta(config, jnp.int32(500))) == pytest.approx(0.01, rel=1e-5)
  with config.unlocked():
    config.sdf.beta_start = 0.0
  assert train.sdf_beta(config, jnp.int32(0)) is None  # The field's own sdf_beta.
  assert train.sdf_beta(tiny_config(), jnp.int32(0)) is None  # Not a 'volsdf' field.


# A tiny signed-distance run with every surface term on.
TINY_VOLSDF = {
  "field.density_activation": "volsdf",
  "field.blob_radius": 0.5,
  "sdf.eikonal": 0.1,
  "sdf.beta_start": 0.1,
  "sdf.beta_anneal_steps": 4,
  "sdf.eikonal_points": 64,
  "sdf.smoothness": 0.1,
}


def test_a_volsdf_run_trains_with_its_eikonal_term():
  config = tiny_config(**TINY_VOLSDF)
  trainer = train.Trainer(config, target_prior(config))
  state = trainer.init()
  text = trainer.text_embeddings(np.zeros((9, 2, 4), np.float32))
  for _ in range(2):
    state, metrics = trainer.step(state, text)
  for term in ("eikonal", "smoothness"):
    assert np.all(np.isfinite(np.asarray(metrics[term]))) and np.all(np.asarray(metrics[term]) >= 0)
  assert np.all(np.isfinite(np.asarray(metrics["loss"])))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(state.params)))


def test_a_train_step_draws_the_smoothness_points_where_sdf_smoothness_points_says():
  """One step from the same start with each point set: every other term is the same (their keys do not depend on
  the option), and the smoothness is finite, positive and differs between the four point sets; before
  sdf.smoothness_points_start it is the volume's."""
  first, second = {}, {}
  for where, start in (("volume", 0), ("render", 0), ("both", 0), ("shell", 0), ("render", 1)):
    config = tiny_config(**TINY_VOLSDF, **{"sdf.smoothness_points": where, "sdf.smoothness_points_start": start})
    trainer = train.Trainer(config, target_prior(config))
    state = trainer.init()
    text = trainer.text_embeddings(np.zeros((9, 2, 4), np.float32))
    state, metrics = trainer.step(state, text)
    first[where if not start else "render_from_1"] = jax.device_get(metrics)
    second[where if not start else "render_from_1"] = jax.device_get(trainer.step(state, text)[1])
  for where in ("render", "both", "shell"):
    for term in ("eikonal", "opacity", "entropy", "orientation", "sds_residual_norm"):
      np.testing.assert_array_equal(first[where][term], first["volume"][term], err_msg=f"{where}: {term}")
    assert np.all(np.isfinite(first[where]["smoothness"])) and np.all(first[where]["smoothness"] > 0)
    assert not np.array_equal(first[where]["smoothness"], first["volume"]["smoothness"]), where
  assert not np.array_equal(first["render"]["smoothness"], first["both"]["smoothness"])
  # Step 0 is before sdf.smoothness_points_start = 1: the volume's points, bit for bit.
  np.testing.assert_array_equal(first["render_from_1"]["smoothness"], first["volume"]["smoothness"])
  # From step 1 on, the rendered points: the same parameters as the volume run's, other points.
  np.testing.assert_array_equal(second["render_from_1"]["eikonal"], second["volume"]["eikonal"])
  assert not np.array_equal(second["render_from_1"]["smoothness"], second["volume"]["smoothness"])


class ReadsCaption(TargetDenoiser):
  """TargetDenoiser plus 0 x its caption: a NaN caption makes a NaN prediction."""

  def __call__(self, x_t, t, context):
    return super().__call__(x_t, t, context) + 0.0 * jnp.sum(context)


def test_textureless_views_are_scored_against_the_textureless_captions():
  """Rows 5-8 of the embeddings are the textureless views' captions (embed_prompts): with those rows NaN the loss
  is NaN exactly when the step's view is textureless (textureless_prob 1), finite when no view is (prob 0)."""
  losses = {}
  for prob in (0.0, 1.0):
    config = tiny_config(
      **{"shading.albedo_warmup_steps": 0, "shading.shaded_prob": 1.0, "shading.textureless_prob": prob}
    )
    abar = guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000)
    prior = guidance_lib.Prior(
      guidance_lib.Guidance(ReadsCaption(tuple(abar.tolist()), (0.9, 0.2, 0.1)), abar), {"unet": {}}, None
    )
    scene = views.make_scene(config)
    params = train.init_state(jnp.int32(0), scene, train.make_optimizer(config)).params
    emb = jnp.zeros((9, 2, 4)).at[5:].set(jnp.nan)
    loss, _ = jax.jit(functools.partial(train.loss_fn, config=config, scene=scene, guidance=prior.guidance))(
      params, jax.random.key(0), jnp.int32(3), emb, prior.params
    )
    losses[prob] = float(loss)
  assert np.isfinite(losses[0.0]) and np.isnan(losses[1.0]), losses


def test_embed_prompts_caption_textureless_views_as_the_prior_was_trained():
  """Rows: the empty caption, the 4 view captions, then the 4 view captions of prior.textureless_prompt (the
  Shapes prior: 'a white {shape}'); guidance.textureless_prompt=False repeats the caption itself."""
  from dreamfusion_jax.guidance import shapes_prior
  from dreamfusion_jax.guidance import text as text_lib

  seen = []

  def embed(texts):
    seen.append(list(texts))
    return np.arange(len(texts), dtype=np.float32)[:, None, None] * np.ones((1, 2, 4), np.float32)

  prior = guidance_lib.Prior(
    target_prior(tiny_config()).guidance, {}, embed, textureless_prompt=shapes_prior.textureless_prompt
  )
  config = tiny_config(prompt="a red cube")
  assert train.embed_prompts(prior, config).shape == (9, 2, 4)
  views_of = lambda caption: [text_lib.view_prompt(caption, i) for i in range(4)]
  assert seen[-1] == [""] + views_of("a red cube") + views_of("a white cube")
  config.guidance.textureless_prompt = False
  train.embed_prompts(prior, config)
  assert seen[-1] == [""] + views_of("a red cube") * 2
  assert shapes_prior.textureless_prompt("a DSLR photo of a peacock") == "a DSLR photo of a peacock"


def test_the_shipped_shapes_prior_reads_its_textureless_caption_rule(tmp_path):
  """The shipped prior was trained last with textureless renders captioned 'white' (its config.json says so);
  a prior whose config.json records no rule leaves captions as they are."""
  import json
  import shutil

  from dreamfusion_jax.guidance import shapes_prior

  config = tiny_config(**{"guidance.model": "shapes"})
  shipped = train.build_prior(config)
  assert shipped.textureless_prompt("a red cube") == "a white cube"
  old = tmp_path / "prior"
  shutil.copytree(shapes_prior.default_dir(), old)
  meta = json.loads((old / "config.json").read_text())
  del meta["textureless_caption"]
  (old / "config.json").write_text(json.dumps(meta))
  config.guidance.path = str(old)
  assert train.build_prior(config).textureless_prompt("a red cube") == "a red cube"


def test_text_embeddings_of_the_old_five_rows_are_refused():
  """embed_prompts gives 9 rows; 5 (the rows before textureless captions) would let the step's index 5-8 clamp
  silently onto the last view caption, so Trainer.text_embeddings refuses them."""
  config = tiny_config()
  trainer = train.Trainer(config, target_prior(config))
  with pytest.raises(ValueError, match=r"embed_prompts gives \[9, L, D\]"):
    trainer.text_embeddings(np.zeros((5, 2, 4), np.float32))
  assert trainer.text_embeddings(np.zeros((9, 2, 4), np.float32)).shape == (1, 9, 2, 4)


def test_coarse_to_fine_weights_rise_linearly_from_the_start_levels():
  # a = start + (L - start) * step / steps, weight of level l = clip(a - l, 0, 1): by hand for L = 4, start 1.
  config = tiny_config(**{"coarse_to_fine.steps": 100, "coarse_to_fine.start_levels": 1})
  expected = {0: [1, 0, 0, 0], 50: [1, 1, 0.5, 0], 100: [1, 1, 1, 1], 400: [1, 1, 1, 1]}
  for step, weights in expected.items():
    np.testing.assert_allclose(np.asarray(train.level_weights(config, jnp.int32(step))), weights, atol=1e-6)
  assert train.level_weights(tiny_config(), jnp.int32(0)) is None  # Off by default.
  params = {"nerf": {"encoding": {"hash_tables": jnp.ones((4, 8, 2))}}}
  assert train.coarse_to_fine(params, tiny_config(), jnp.int32(0)) is params


def test_progressive_view_spreads_the_azimuths_linearly_and_is_off_by_default():
  config = tiny_config(**{"camera.progressive_view_steps": 100})
  for step, spread in {0: 0.01, 49: 0.5, 99: 1.0, 500: 1.0}.items():
    np.testing.assert_allclose(float(train.azimuth_spread(config, jnp.int32(step))), spread, atol=1e-6)
  assert train.azimuth_spread(tiny_config(), jnp.int32(0)) is None
  # A step with it runs (the scale is traced; the step is one program for every spread).
  trainer = train.Trainer(config, target_prior(config))
  state, metrics = trainer.step(trainer.init(), trainer.text_embeddings(np.zeros((9, 2, 4), np.float32)))
  assert np.isfinite(float(np.asarray(metrics["loss"]).ravel()[0]))


def test_coarse_to_fine_scales_each_levels_features_and_freezes_the_levels_not_yet_in():
  """The scaled tables give level l's features times its weight (the encoding is linear in the table), and a
  train step at step 0 with only the coarsest level on changes that level's table and no other."""
  config = tiny_config(
    **{"coarse_to_fine.steps": 100, "coarse_to_fine.start_levels": 1, "shading.albedo_warmup_steps": 0}
  )
  scene = views.make_scene(config)
  params = train.init_state(jnp.int32(0), scene, train.make_optimizer(config)).params
  x = jax.random.uniform(jax.random.key(1), (64, 3), minval=-0.8, maxval=0.8)
  step = jnp.int32(50)
  weights = np.asarray(train.level_weights(config, step))
  scaled = train.coarse_to_fine(params, config, step)
  features = {}
  for name, p in (("plain", params), ("scaled", scaled)):
    _, state = scene.apply({"params": p}, x, method=Scene.field, capture_intermediates=True, mutable=["intermediates"])
    features[name] = np.asarray(state["intermediates"]["nerf"]["encoding"]["__call__"][0])
  per_level = lambda f: f.reshape(f.shape[0], config.field.num_levels, -1)  # noqa: E731
  np.testing.assert_allclose(
    per_level(features["scaled"]), per_level(features["plain"]) * weights[None, :, None], rtol=1e-5, atol=1e-7
  )

  trainer = train.Trainer(config, target_prior(config))
  state = trainer.init()
  before = np.asarray(jax.device_get(state.params)["nerf"]["encoding"]["hash_tables"])[0]
  state, _ = trainer.step(state, trainer.text_embeddings(np.zeros((9, 2, 4), np.float32)))
  after = np.asarray(jax.device_get(state.params)["nerf"]["encoding"]["hash_tables"])[0]
  assert not np.array_equal(after[0], before[0])  # The coarsest level learns ...
  np.testing.assert_array_equal(after[1:], before[1:])  # ... the others wait for their turn.


def test_the_guidance_preview_shows_what_an_exact_denoiser_pulls_to_and_samples():
  """With the exact denoiser of one image y (TargetDenoiser) the one-step estimate and the DDIM sample are y itself
  whatever the render, the noise and the guidance weight: the last two tiles are y's colour. Tiles are at least
  192 px, under a strip with one label per column."""
  from dreamfusion_jax import outputs

  rgb = (0.9, 0.2, 0.1)
  config = tiny_config(**{"guidance.preview_sample_steps": 10, "guidance.preview_sample_scale": 3.0})
  prior = target_prior(config, rgb)
  trainer = train.Trainer(config, prior)
  per_seed = train.host_params(trainer.init())
  preview = outputs.guidance_previewer(trainer.scene, config, prior.guidance)
  labels = outputs.preview_labels(config)
  assert len(labels) == 4 and "w = 3" in labels[3]
  sheet = outputs.guidance_preview_sheet(
    preview, per_seed, np.zeros((9, 2, 4), np.float32), trainer.prior_params, 5, labels
  )
  size = config.render.image_size
  tile = size * -(-outputs.PREVIEW_TILE // size)
  assert sheet.shape == (outputs.PREVIEW_HEADER + tile, 4 * tile, 3) and tile >= 192
  body = sheet[outputs.PREVIEW_HEADER :].astype(np.float64) / 255
  for column in (2, 3):
    np.testing.assert_allclose(
      body[:, column * tile : (column + 1) * tile], np.broadcast_to(rgb, (tile, tile, 3)), atol=2 / 255
    )
  assert body[:, tile : 2 * tile].std() > 0.05  # The noised tile is noise, not y.
  header = sheet[: outputs.PREVIEW_HEADER]
  for column in range(4):  # Every column's label wrote dark pixels into the white strip.
    assert header[:20, column * tile : (column + 1) * tile].min() < 100


def test_the_divergence_advice_works_in_the_same_workdir(tmp_path, caplog, monkeypatch):
  """Issue 18: 'lower optim.lr ... then run again' was refused by the resume check. A real divergence (a
  learning rate of 1e20 from step 2's checkpoint on), then the advice: the run resumes from step 2 with the
  lower rate and is bitwise the run that never diverged; gradient clipping may be switched on and off."""
  from dreamfusion_jax import config_rules
  from dreamfusion_jax.errors import DivergenceError, WorkdirError

  # Learning rates up to 10 never diverge in 4 steps of the tiny config; the checks refuse 1e20, so they are
  # widened here: this test is about the way back from a divergence, not about the checks.
  for name in ("optim.lr", "optim.net_lr"):
    monkeypatch.setitem(config_rules.RULES, name, config_rules.Float(0.0, 1e30, lo_open=True))

  caplog.set_level("INFO")
  config = tiny_config(**{"num_steps": 6, "checkpoint_every": 2})
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(tiny_config(**{"num_steps": 2, "checkpoint_every": 2}), workdir)
  wild = tiny_config(**{"num_steps": 6, "checkpoint_every": 2, "optim.lr": 1e20, "optim.net_lr": 1e20})
  with pytest.raises(DivergenceError, match=r"checkpoint \(step 2\) is intact.*--config.optim.lr") as e:
    train.train_and_evaluate(wild, workdir)
  assert "\n" not in str(e.value)
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
  assert "Resuming with optim.lr: 0.01 -> 1e+20" in caplog.text  # The change is logged.

  resumed = train.train_and_evaluate(config, workdir)
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))

  clipped = train.train_and_evaluate(tiny_config(**{"num_steps": 8, "optim.grad_clip": 1.0}), workdir)
  assert int(clipped.step[0]) == 8 and "optim.grad_clip: 0.0 -> 1.0" in caplog.text
  unclipped = train.train_and_evaluate(tiny_config(**{"num_steps": 10}), workdir)
  assert int(unclipped.step[0]) == 10
  with pytest.raises(WorkdirError, match="optim.schedule"):  # It changes the optimiser state's shape.
    train.train_and_evaluate(tiny_config(**{"num_steps": 12, "optim.schedule": "warmup_cosine"}), workdir)


def test_a_train_step_with_central_difference_normals():
  """render.normal_step > 0: the training renders shade with central-difference normals. From the same start the
  step's eikonal term is the same and its SDS residual differs (the shading does); everything stays finite."""
  metrics = {}
  for step in (0.0, 0.02):
    config = tiny_config(**TINY_VOLSDF, **{"render.normal_step": step, "shading.albedo_warmup_steps": 0})
    trainer = train.Trainer(config, target_prior(config))
    state = trainer.init()
    state, metrics[step] = jax.device_get(trainer.step(state, trainer.text_embeddings(np.zeros((9, 2, 4), np.float32))))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  np.testing.assert_array_equal(metrics[0.02]["eikonal"], metrics[0.0]["eikonal"])
  assert np.all(np.isfinite(metrics[0.02]["loss"]))
  assert not np.array_equal(metrics[0.02]["sds_residual_norm"], metrics[0.0]["sds_residual_norm"])
