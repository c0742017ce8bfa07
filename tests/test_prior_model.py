"""Tests for the Shapes prior (guidance.shapes_prior), its training (shapes.train_prior and its prior_config,
prior_data, prior_step and prior_card modules) and guidance.model='shapes'.

Compiling is the cost on a 2-core CPU, so every test uses ONE tiny model (prior_config.tiny_config at
16x16) and ONE step configuration (configs/shapes_prior.py:tiny): prior_step caches its compiled programs
per process, and the training run of the module fixture compiles them for the other tests.
"""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

from configs import shapes_prior as prior_configs
from dreamfusion_jax import base_config, checks, metrics, train
from dreamfusion_jax.checkpointing import Checkpoints
from dreamfusion_jax.errors import ConfigError, DivergenceError, UserError, WorkdirError
from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.shapes import prior_card, prior_config, prior_data, prior_step, train_prior, trainer, world

SIZE = 16
# The one step configuration of this file (see the module docstring).
CONFIG = prior_configs.get_config("tiny")
# The second run of the fixture fine-tunes on one fixed zoom (focal / distance = 0.8).
CAMERA_FLAGS = (
  "--config.distance_range=1.25,1.25",
  "--config.focal_range=1.0,1.0",
  "--config.look_at_std=0.05",
  "--config.position_jitter=0.02",
)


def run_cli(workdir, *extra):
  """train_prior's command line (the config file and its overrides parsed by absl) on a private FlagValues."""
  config = os.path.join(ROOT, "configs", "shapes_prior.py")
  argv = ["train_prior", f"--config={config}:tiny", f"--workdir={workdir}", *extra]
  return train_prior.train(*trainer.parse(argv, train_prior.TRAIN_CONFIG))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Runs 3 steps, then resumes for 2 more on other cameras (a fine-tune) and exports; returns
  (workdir, first result, second result)."""
  workdir = str(tmp_path_factory.mktemp("prior"))
  first = run_cli(workdir, "--config.steps=3", "--config.textureless_caption=albedo")
  second = run_cli(workdir, "--config.steps=5", *CAMERA_FLAGS)
  return workdir, first, second


def tiny_programs():
  return prior_step.programs(prior_config.tiny_config(SIZE), CONFIG, jnp.float32)


# ----------------------------------------------------------------------------- training


def test_cli_trains_checkpoints_resumes_and_exports(trained):
  workdir, first, second = trained
  assert (first["step"], first["exported"], second["step"], second["exported"]) == (3, True, 5, True)
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5]  # The second run continued from step 3.
  assert all(np.isfinite(r["loss"]) for r in records)
  assert os.listdir(os.path.join(workdir, "tensorboard"))  # metrics.MetricsWriter's events.
  # The resolved config of the last run, as JSON beside the checkpoints; the checkpoint keeps the runs' record.
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert (saved["steps"], saved["distance_range"], saved["model"]) == (5, [1.25, 1.25], "tiny")
  ckpts = Checkpoints(workdir, train_prior.KEEP_CHECKPOINTS)
  assert ckpts.latest_step() == 5
  meta = ckpts.saved_config(5)
  ckpts.close()
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["5"]  # Only the latest is kept.
  assert [(c["start_step"], c["end_step"]) for c in meta["chunks"]] == [(0, 3), (3, 5)]
  assert meta["config"] == saved and meta["model_config"] == prior_config.tiny_config(SIZE)
  export = os.path.join(workdir, "export")
  assert sorted(os.listdir(export)) == ["MODEL_CARD.md", "config.json", "params.msgpack", "samples.png"]
  card = shapes_prior.read_config(export)["card"]
  assert card["Training"]["steps"] == "5" and card["Training"]["batch"] == 4
  text = open(os.path.join(export, "MODEL_CARD.md")).read()
  for c, s in world.HELD_OUT:
    assert f"a {c} {s}" in text
  assert "validation loss, held-out pairs" in text
  # samples.png: 12 caption rows (6 training, 6 held-out) x 4 views of 16x16 tiles, 2-pixel gaps.
  import imageio.v3 as iio

  grid = iio.imread(os.path.join(export, "samples.png"))
  rows = len(prior_card.PREVIEW_TRAIN_PAIRS) + len(world.HELD_OUT)
  assert grid.shape == (rows * (SIZE + 2) + 2, 4 * (SIZE + 2) + 2, 3) and grid.dtype == np.uint8


def test_the_cameras_are_recorded_and_the_run_uses_them(trained):
  workdir, _, _ = trained
  cfg = shapes_prior.read_config(os.path.join(workdir, "export"))
  assert cfg["camera"]["distance_range"] == [1.25, 1.25] and cfg["camera"]["focal_range"] == [1.0, 1.0]
  assert cfg["camera"]["look_at_std"] == 0.05 and cfg["camera"]["position_jitter"] == 0.02
  cams = cfg["card"]["Data"]["cameras"]
  assert cams.startswith("steps 0-3: distance U(1, 1.5), focal U(0.7, 1.35)") and "(DreamFusion's)" in cams
  assert "steps 3-5: distance U(1.25, 1.25), focal U(1, 1) x image size, look-at std 0.05" in cams
  # An export of that checkpoint alone (no camera flags) records the cameras it was trained on and
  # validates on them: the same losses as the export at the end of that run.
  again = run_cli(workdir, "--config.steps=5", "--config.export_only=true")
  assert again["exported"] and shapes_prior.read_config(os.path.join(workdir, "export"))["camera"] == cfg["camera"]
  assert again["card"]["Results"] == cfg["card"]["Results"]
  config = prior_configs.get_config()
  config.distance_range, config.focal_range = (1.25, 1.25), (1.0, 1.0)
  batch = prior_data.render(jax.random.PRNGKey(0), 4, SIZE, True, prior_data.camera_config(config))
  np.testing.assert_allclose(batch["camera"]["focal"], 1.0 * SIZE)
  np.testing.assert_allclose(batch["camera"]["distance"], 1.25)


def test_textureless_renders_are_captioned_white_and_each_run_records_its_rule(trained):
  workdir, _, _ = trained
  card = shapes_prior.read_config(os.path.join(workdir, "export"))["card"]
  assert "steps 0-3: textureless renders name the albedo's colour" in card["Data"]["captions"]
  assert "steps 3-5: textureless renders say 'white'" in card["Data"]["captions"]
  batch = jax.device_get(prior_data.render(prior_step.rng_key(11), 64, SIZE))
  mode, colour = np.asarray(batch["shading_mode"]), np.asarray(batch["colour"])
  assert {0, 1, 2} <= set(mode.tolist())  # All three shading modes occur in 64 draws.
  white = world.COLOUR_NAMES.index("white")
  expected = np.where(mode == 2, white, colour)
  np.testing.assert_array_equal(prior_data.caption_colours(batch, "white"), expected)
  np.testing.assert_array_equal(prior_data.caption_colours(batch, "albedo"), colour)
  np.testing.assert_array_equal(prior_data.pool_entry(batch, "white")["colour"], expected)
  # A textureless render is the image of the white object: the same pixels.
  i = int(np.flatnonzero(mode == 2)[0])
  cam = jax.tree.map(lambda x: x[i], batch["camera"])
  shading = {k: v[i] for k, v in batch["shading"].items()}
  as_white = world.render_example(
    None, int(batch["shape"][i]), (1.0, 1.0, 1.0), cam, shading, batch["background"][i], SIZE
  )
  np.testing.assert_allclose(as_white, batch["images"][i], atol=1e-4)
  # Runs from before the rule was recorded used the albedo's colour; the last recorded rule wins.
  old = {"start_step": 0, "end_step": 9}
  assert prior_card.last_textureless_caption({"chunks": [old]}) == "albedo"
  assert prior_card.last_textureless_caption({"chunks": [old, dict(old, textureless_caption="white")]}) == "white"
  assert "steps 0-9: textureless renders name the albedo's colour" in prior_card.describe_captions([old])


@pytest.mark.parametrize(
  "flag",
  [
    "--config.distance_range=1.5",
    "--config.focal_range=1.2,0.8",
    "--config.focal_range=a,b",
    "--config.look_at_std=-1",
    "--config.textureless_caption=red",
    "--config.pool_size=6",
  ],
)
def test_bad_world_flags_are_refused_before_training(tmp_path, flag):
  with pytest.raises(UserError, match=re.escape(flag.split("=")[0])):
    run_cli(str(tmp_path), "--config.steps=1", flag)
  assert not os.listdir(tmp_path)


def test_the_command_line_loads_the_config_file_and_refuses_mistakes_in_one_paragraph(tmp_path):
  """`python -m dreamfusion_jax.shapes.train_prior`: an unknown field and a bad value (which only the loaded
  config file can reach) each end in one 'error:' paragraph, status 2, and nothing written."""
  command = [
    sys.executable,
    "-m",
    "dreamfusion_jax.shapes.train_prior",
    "--config=configs/shapes_prior.py:tiny",
    f"--workdir={tmp_path}",
  ]
  for extra, says in (
    (["--config.stepz=3"], "error: The config has no field 'stepz' (--config.stepz)."),
    (["--config.textureless_caption=red"], "error: --config.textureless_caption='red' is not one"),
  ):
    done = subprocess.run(
      command + extra, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu")
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
  assert not os.listdir(tmp_path)


def test_resumed_state_equals_saved_state(trained):
  """A restore gives back exactly what was saved (Adam moments up to their bfloat16 storage)."""
  workdir, _, _ = trained
  progs = tiny_programs()
  template = jax.eval_shape(progs.init, 0)
  ckpts = Checkpoints(workdir, train_prior.KEEP_CHECKPOINTS)
  state = train_prior.restore_state(ckpts, 5, template)
  ckpts.close()
  assert int(state.step) == 5
  assert state.params.dtype == jnp.float32 and state.params.shape == (progs.layout.size,)
  adam = [s for s in state.opt_state if hasattr(s, "mu")][0]
  assert adam.mu.dtype == jnp.float32 and int(adam.count) == 5
  # The moments went through bfloat16: every value is a bfloat16 number.
  np.testing.assert_array_equal(adam.mu, np.asarray(adam.mu).astype(jnp.bfloat16).astype(np.float32))
  # The export is the EMA, rounded to float16.
  exported = shapes_prior.load_prior(os.path.join(workdir, "export"))[3]
  flat = progs.layout.ravel(exported)
  np.testing.assert_array_equal(flat, np.asarray(state.ema_params).astype(np.float16).astype(np.float32))


def test_time_limit_stops_and_checkpoints(tmp_path, trained):
  del trained  # Only for its compiled programs.
  result = run_cli(tmp_path, "--config.steps=50", "--config.time_limit_min=1e-9")
  assert result == {"step": 1, "exported": False, "stopped_by_time": True, "card": None}
  ckpts = Checkpoints(str(tmp_path), train_prior.KEEP_CHECKPOINTS)
  assert ckpts.latest_step() == 1
  ckpts.close()


def test_a_checkpoint_of_another_model_is_refused_and_left_alone(trained):
  workdir, _, _ = trained
  before = open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(WorkdirError, match="--config.image_size=16, not 32"):
    run_cli(workdir, "--config.steps=6", "--config.image_size=32")
  assert open(os.path.join(workdir, "config.json")).read() == before


def test_a_checkpoint_of_the_previous_trainer_resumes(trained, tmp_path):
  """Checkpoints from before the shared skeleton kept the runs' record as item 'meta' with 'options'."""
  import shutil

  workdir = str(tmp_path / "old")
  shutil.copytree(trained[0], workdir)
  step_dir = os.path.join(workdir, "checkpoints", "5")
  os.rename(os.path.join(step_dir, "config"), os.path.join(step_dir, "meta"))
  meta = json.load(open(os.path.join(step_dir, "meta", "metadata")))
  meta["options"] = meta.pop("config")
  json.dump(meta, open(os.path.join(step_dir, "meta", "metadata"), "w"))
  result = run_cli(workdir, "--config.steps=6", *CAMERA_FLAGS)
  assert result["step"] == 6 and result["exported"]
  ckpts = Checkpoints(workdir, train_prior.KEEP_CHECKPOINTS)
  record = ckpts.saved_config(6)  # Saved in the new form.
  ckpts.close()
  assert [(c["start_step"], c["end_step"]) for c in record["chunks"]] == [(0, 3), (3, 5), (5, 6)]


def test_training_steps_reduce_the_loss_on_a_fixed_batch(trained):
  """Training on a pool of four renders lowers the epsilon MSE at fixed timesteps and noise."""
  del trained
  progs = tiny_programs()
  state = jax.device_put(progs.init(0), jax.devices()[0])
  batch = prior_data.render(prior_step.rng_key(7), 4, SIZE)
  entry = prior_data.pool_entry(batch, "white")
  pool = jax.device_put({k: jnp.concatenate([v, v]) for k, v in entry.items()}, jax.devices()[0])
  images = np.asarray(entry["images"], np.float32) / 255.0
  ids = progs.models.captions[np.asarray(entry["shape"]), np.asarray(entry["colour"]), np.asarray(entry["view"])]
  t = np.array([50, 300, 600, 900], np.int32)
  eps = np.random.default_rng(0).standard_normal(images.shape).astype(np.float32)
  # The validation's compiled loss (4 examples, as CONFIG.val_examples).
  loss = lambda flat: float(np.mean(progs.models.jit_loss(progs.layout.unravel(np.asarray(flat)), images, ids, t, eps)))
  before = loss(state.params)
  for _ in range(20):
    state, pool, metrics = progs.step(state, pool, batch)
  after = loss(state.params)
  assert np.isfinite(float(metrics["loss"]))
  assert after < 0.8 * before, (before, after)


def test_caption_table_matches_the_tokenized_captions():
  tok = shapes_prior.build_models(prior_config.tiny_config(SIZE))[2]
  table = prior_data.caption_table(tok)
  batch = jax.device_get(prior_data.render(prior_step.rng_key(3), 4, SIZE))
  expected = tok(world.captions_for(batch))
  np.testing.assert_array_equal(table[batch["shape"], batch["colour"], batch["view"]], expected)
  assert not tok.unknown_words(" ".join(world.captions_for(batch)))


def test_layout_ravel_unravel_round_trip():
  layout = tiny_programs().layout
  tree = layout.unravel(np.arange(layout.size, dtype=np.float32))
  np.testing.assert_array_equal(layout.ravel(tree), np.arange(layout.size))
  mask = np.asarray(layout.decay_mask())
  for leaf, m in zip(jax.tree.leaves(tree), jax.tree.leaves(layout.unravel(mask))):
    assert np.all(m == float(leaf.ndim >= 2))


def test_non_finite_loss_stops_with_a_clear_error_and_is_not_recorded(tmp_path):
  """The periodic record (trainer.record, as train_prior's record_metrics calls it) stops on a NaN loss with
  metrics.check_finite's message and the prior's advice, before writing the diverged step."""
  writer = metrics.MetricsWriter(str(tmp_path))
  finite = {"loss": jnp.float32(0.5), "grad_norm": jnp.float32(2.0)}
  trainer.record(writer, finite, 6, 5, train_prior.DIVERGENCE_ADVICE, {"wall_s": 1.0})
  with pytest.raises(DivergenceError, match=r"by step 7.*last checkpoint \(step 5\).*--config\.lr"):
    trainer.record(writer, dict(finite, loss=jnp.float32(np.nan)), 7, 5, train_prior.DIVERGENCE_ADVICE, {})
  with pytest.raises(DivergenceError, match="by step 8"):
    trainer.record(writer, dict(finite, grad_norm=jnp.float32(np.inf)), 8, 5, train_prior.DIVERGENCE_ADVICE, {})
  writer.close()
  assert [json.loads(line) for line in open(tmp_path / "metrics.jsonl")] == [
    {"step": 6, "loss": 0.5, "grad_norm": 2.0, "wall_s": 1.0}
  ]


def test_every_config_field_has_a_comment_and_the_variant_adds_none():
  """configs/shapes_prior.py (house style): a comment on every field; 'tiny' only changes values."""
  c = prior_configs.get_config()
  source = open(os.path.join(ROOT, "configs", "shapes_prior.py")).read()
  for name in c:
    assert re.search(rf"c\.{name} = .*#|# .*\n  c\.{name} = ", source), name
  assert set(prior_configs.get_config("tiny")) == set(c)
  with pytest.raises(ValueError, match="no variant 'huge'"):
    prior_configs.get_config("huge")


# ----------------------------------------------------------------------------- saving and loading


def test_save_load_round_trip(tmp_path):
  progs = tiny_programs()
  cfg = prior_config.tiny_config(SIZE)
  params = progs.layout.unravel(np.asarray(progs.init(0).params))
  card = {"title": "test", "Training": {"steps": 12}}
  shapes_prior.save_prior(str(tmp_path), params, cfg, card)
  unet, encoder, tok, loaded, abar = shapes_prior.load_prior(str(tmp_path))
  # Weights come back as float32, equal to the float16 rounding of what was saved.
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, np.asarray(a).astype(np.float16).astype(np.float32))
  assert jax.tree.structure(params) == jax.tree.structure(loaded)
  np.testing.assert_allclose(abar, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-5)
  ids = jnp.asarray(tok(["a red cube, side view", ""]))

  @jax.jit
  def predict(p, x):
    context = encoder.apply({"params": p["text"]}, ids)
    return unet.apply({"params": p["unet"]}, x, jnp.array([10, 900]), context)

  x = jax.random.normal(jax.random.PRNGKey(1), (2, SIZE, SIZE, 3))
  np.testing.assert_allclose(predict(loaded, x), predict(params, x), atol=1e-2, rtol=1e-2)
  assert "**steps**: 12" in open(tmp_path / "MODEL_CARD.md").read()
  # A config that does not match the weights is refused.
  bad = shapes_prior.read_config(str(tmp_path))
  bad["unet"]["block_out_channels"] = [8, 8]
  (tmp_path / "config.json").write_text(json.dumps(bad))
  with pytest.raises(ValueError, match="does not fit"):
    shapes_prior.load_prior(str(tmp_path))


def test_png_writer_round_trips():
  import imageio.v3 as iio

  image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
  path = shapes_prior.write_png(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"prior_png_{os.getpid()}.png"), image)
  np.testing.assert_array_equal(iio.imread(path), image)
  os.remove(path)


# ----------------------------------------------------------------------------- DDIM


def _analytic_denoiser(abar, y_uncond, y_cond):
  """The exact denoiser of a one-image data set: eps(x_t) = (x_t - sqrt(abar_t) y) / sqrt(1 - abar_t).

  The image is y_cond where the context is 1 and y_uncond where it is 0.
  """
  abar = jnp.asarray(abar)
  # The sampler's batch is [uncond; cond] for the same samples: tile the images to match.
  y_uncond, y_cond = np.concatenate([y_uncond, y_uncond]), np.concatenate([y_cond, y_cond])

  def apply(params, x, t, context):
    del params
    y = jnp.where(context[:, :1, :1, None] > 0.5, y_cond, y_uncond)
    a = abar[t][:, None, None, None]
    return (x - jnp.sqrt(a) * y) / jnp.sqrt(1.0 - a)

  return apply


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_ddim_with_the_exact_denoiser_returns_the_data(scale):
  abar = shapes_prior.schedule(prior_config.tiny_config())
  rng = np.random.default_rng(0)
  y_u = rng.uniform(-0.3, 0.3, (2, 8, 8, 3)).astype(np.float32)
  y_c = y_u + rng.uniform(-0.2, 0.2, (2, 8, 8, 3)).astype(np.float32)
  ctx, unctx = jnp.ones((2, 3, 4)), jnp.zeros((1, 3, 4))
  out = shapes_prior.sample(
    jax.random.PRNGKey(0),
    _analytic_denoiser(abar, y_u, y_c),
    None,
    ctx,
    unctx,
    abar,
    num_steps=20,
    guidance_scale=scale,
    image_size=8,
  )
  # CFG of two exact denoisers is the exact denoiser of y_u + w (y_c - y_u).
  target = y_u + scale * (y_c - y_u)
  np.testing.assert_allclose(out, (target + 1) / 2, atol=1e-4)


def test_ddim_with_the_exact_denoiser_of_three_images_returns_one_of_them():
  """The exact denoiser of an empirical distribution: E[x0 | x_t] is a softmax-weighted mean of the images."""
  abar = shapes_prior.schedule(prior_config.tiny_config())
  images = np.random.default_rng(2).uniform(-0.8, 0.8, (3, 8, 8, 3)).astype(np.float32)

  def apply(params, x, t, context):
    del params, context
    a = jnp.asarray(abar)[t][:, None, None, None, None]
    d2 = jnp.sum((x[:, None] - jnp.sqrt(a) * images[None]) ** 2, axis=(2, 3, 4), keepdims=True)
    w = jax.nn.softmax(-d2 / (2.0 * (1.0 - a)), axis=1)
    x0 = jnp.sum(w * images[None], axis=1)
    return (x - jnp.sqrt(a[:, 0]) * x0) / jnp.sqrt(1.0 - a[:, 0])

  out = (
    2
    * np.asarray(
      shapes_prior.sample(
        jax.random.PRNGKey(3),
        apply,
        None,
        jnp.zeros((8, 1, 1)),
        jnp.zeros((1, 1, 1)),
        abar,
        num_steps=25,
        guidance_scale=1.0,
        image_size=8,
      )
    )
    - 1
  )
  distance = np.abs(out[:, None] - images[None]).max(axis=(2, 3, 4))  # [samples, images]
  assert np.all(distance.min(axis=1) < 1e-3), distance
  assert len(set(distance.argmin(axis=1).tolist())) >= 2  # Not one image for every noise.


def test_ddim_matches_diffusers():
  """The sampler against diffusers' DDIMScheduler (trailing spacing, clipping) with a linear model."""
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  abar = shapes_prior.schedule(prior_config.tiny_config())
  steps, scale = 7, 2.5  # 7 does not divide 1000: tests the rounding of the timesteps too.
  noise = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype(np.float32)

  def model(x, t, cond):  # An arbitrary smooth eps model, conditional through an offset.
    return 0.9 * x + 0.3 * t / 1000.0 + 0.05 * cond

  def jax_model(params, x, t, context):
    del params
    return model(x, t[:, None, None, None], context[:, :1, :1, None])

  ours = shapes_prior.sample(
    None,
    jax_model,
    None,
    jnp.ones((2, 1, 1)),
    jnp.zeros((1, 1, 1)),
    abar,
    num_steps=steps,
    guidance_scale=scale,
    image_size=4,
    initial_noise=noise,
  )
  sched = diffusers.DDIMScheduler(
    num_train_timesteps=1000,
    beta_start=1e-4,
    beta_end=0.02,
    beta_schedule="linear",
    clip_sample=True,
    set_alpha_to_one=True,
    steps_offset=0,
    prediction_type="epsilon",
    timestep_spacing="trailing",
  )
  sched.set_timesteps(steps)
  np.testing.assert_array_equal(sched.timesteps.numpy(), shapes_prior.ddim_timesteps(1000, steps)[0])
  x = torch.from_numpy(noise).double()
  for t in sched.timesteps:
    eps_u, eps_c = model(x, int(t), 0.0), model(x, int(t), 1.0)
    x = sched.step(eps_u + scale * (eps_c - eps_u), t, x, eta=0.0).prev_sample
  np.testing.assert_allclose(ours, np.clip((x.numpy() + 1) / 2, 0, 1), atol=1e-4)


# ----------------------------------------------------------------------------- guidance.model='shapes'


def shapes_config(path):
  c = base_config.get_config()
  c.guidance.model = "shapes"
  c.guidance.path = str(path)
  c.guidance.num_train_timesteps = 1000
  return c


def test_shapes_prior_builds_from_guidance_path(trained):
  workdir, _, _ = trained
  export = os.path.join(workdir, "export")
  prior = train.build_prior(shapes_config(export))
  unet, encoder, tok, params, abar = shapes_prior.load_prior(export)
  emb = prior.embed(["a red cube, front view", ""])
  assert emb.shape == (2, 12, 8) and emb.dtype == np.float32
  # The same embedding as the text encoder applied directly to the loaded weights.
  direct = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  np.testing.assert_allclose(emb, direct(params["text"], tok(["a red cube, front view", ""])), atol=1e-6)
  assert prior.unknown_words("a red peacock, side view") == ["peacock"]
  np.testing.assert_array_equal(prior.guidance.alphas_cumprod, abar)
  assert prior.guidance.encoder is None  # Pixel space.
  x0 = prior.guidance.encode(prior.params, jnp.full((1, SIZE, SIZE, 3), 0.5))
  np.testing.assert_allclose(x0, 0.0)


def test_a_run_on_other_cameras_than_the_priors_is_warned(trained, caplog):
  """The prior records its cameras; a run that samples others is told which to set (a warning, not an error)."""
  export = os.path.join(trained[0], "export")
  c = shapes_config(export)
  prior = train.build_prior(c)
  with caplog.at_level("WARNING"):  # What train.set_up does with the prior it built.
    checks.warn_camera_mismatch(prior.training_cameras, c.camera)
  assert "distance_range=(1.25, 1.25), focal_range=(1.0, 1.0)" in caplog.text and "--config.camera" in caplog.text
  caplog.clear()
  c.camera.distance_range, c.camera.focal_range = (1.25, 1.25), (1.0, 1.0)
  c.camera.look_at_std, c.camera.position_jitter = 0.05, 0.02
  with caplog.at_level("WARNING"):
    checks.warn_camera_mismatch(train.build_prior(c).training_cameras, c.camera)
  assert "trained on cameras" not in caplog.text
  # A prior saved before cameras were recorded ({}, shapes_prior.build_prior) saw DreamFusion's: the base
  # config's cameras match it. A prior indifferent to cameras (None) matches any.
  assert checks.camera_mismatch({}, base_config.get_config().camera) is None
  assert checks.camera_mismatch({}, c.camera) is not None
  assert checks.camera_mismatch(None, c.camera) is None


def test_shapes_prior_refuses_a_missing_directory(tmp_path):
  missing = tmp_path / "no_prior_here"
  with pytest.raises(ConfigError, match="no_prior_here") as err:
    train.build_prior(shapes_config(missing))
  assert "train_prior" in str(err.value) and "params.msgpack" in str(err.value)


def test_shapes_prior_refuses_another_schedule_length(trained):
  workdir, _, _ = trained
  c = shapes_config(os.path.join(workdir, "export"))
  c.guidance.num_train_timesteps = 500
  with pytest.raises(ConfigError, match="num_train_timesteps=1000"):
    train.build_prior(c)


def test_default_prior_fits_the_transport_budget():
  """The shipped model stays small: float16 weights ~7 MB, a train state under 50 MB (see train_prior)."""
  cfg = prior_config.default_config()
  counts = jax.eval_shape(lambda: shapes_prior.init_params(jax.random.PRNGKey(0), cfg))
  n = shapes_prior.num_params(counts)
  assert 3e6 < n < 4.2e6
  assert 12 * n < 50e6  # params + EMA in float32, two Adam moments in bfloat16.
  assert set(cfg["text"]["vocabulary"]) == set(world.vocabulary())
  assert not set(prior_card.PREVIEW_TRAIN_PAIRS) & set(world.HELD_OUT)
  # Attention only at 16x16 and 8x8 (levels 2 and 3 of 64 -> 32 -> 16 -> 8).
  assert [b.startswith("CrossAttn") for b in cfg["unet"]["down_block_types"]] == [False, False, True, True]
