"""The Shapes benchmark: metrics on synthetic cases with known answers, the judge, and a run end to end."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config

from dreamfusion_jax import files
from dreamfusion_jax.errors import UserError, WorkdirError
from dreamfusion_jax.shapes import evaluate as ev
from dreamfusion_jax.shapes import judge as judge_lib
from dreamfusion_jax.shapes import world

BOUND, RES = 0.8, 32
CUBE, SPHERE, TEARDROP = (world.SHAPES.index(s) for s in ("cube", "sphere", "teardrop"))
RED, BLUE = np.array(world.COLOURS["red"]), np.array(world.COLOURS["blue"])


def constant_albedo(rgb):
  return lambda x: jnp.broadcast_to(jnp.asarray(rgb, jnp.float32), x.shape)


def ball_cube_iou(r, h):
  """Closed-form IoU of a ball of radius r and a cube of half-size h, for h < r < h sqrt(2).

  The ball pokes out of the six faces as caps of height r - h that do not meet (r < h sqrt 2
  keeps it off the edges), so |ball & cube| = ball - 6 caps.
  """
  ball, cap = 4 / 3 * math.pi * r**3, math.pi * (r - h) ** 2 * (3 * r - (r - h)) / 3
  inter = ball - 6 * cap
  return inter / (ball + (2 * h) ** 3 - inter)


def test_grid_points_and_rotation_conventions():
  g = ev.cell_centres(1.0, 4)
  assert g.shape == (4, 4, 4, 3)
  np.testing.assert_allclose(g[0, 0, 0], [-0.75] * 3)
  np.testing.assert_allclose(g[3, 1, 2], [0.75, -0.25, 0.25])
  # Counter-clockwise seen from +z: +x turns to +y.
  np.testing.assert_allclose(ev.rotate_z(jnp.array([1.0, 0.0, 0.3]), 90.0), [0.0, 1.0, 0.3], atol=1e-6)
  a = np.zeros((2, 2, 2), bool)
  b = a.copy()
  a[0, 0, :] = True
  b[0, :, 0] = True
  assert ev.iou(a, b) == pytest.approx(1 / 3)


def test_perfect_red_cube_scores_iou_one_and_no_colour_error():
  density = world.density_fn(CUBE)
  iou, angle = ev.best_iou_over_rotations(density, CUBE, bound=BOUND, resolution=RES, threshold=10.0)
  assert iou > 0.95 and angle % 90 == 0
  occ = ev.occupancy_grid(density, BOUND, RES, 10.0)
  assert ev.volume_ratio(occ, CUBE, BOUND) == pytest.approx(1.0, abs=0.03)
  # A ball of radius 0.45 against the cube of half-side 0.32: (4/3 pi 0.45^3) / 0.64^3.
  ball = ev.occupancy_grid(world.density_fn(SPHERE), BOUND, 80, 10.0)
  assert ev.volume_ratio(ball, CUBE, BOUND) == pytest.approx(4 / 3 * np.pi * 0.45**3 / 0.64**3, rel=0.03)
  pts = ev.surface_points(occ, BOUND)
  # The shell of a cube of 2 * 0.32 / 0.05 ~ 12-13 cells a side: its faces, not its inside.
  assert 400 < len(pts) < 1200
  assert np.all(np.abs(pts).max(-1) > 0.32 - 0.05 - 1e-6)
  assert ev.color_error(constant_albedo(RED), pts, world.COLOURS["red"]) < 0.05


def test_extra_levels_score_the_same_grid_at_other_levels():
  density = world.density_fn(CUBE)
  field = lambda params, x: (density(x), constant_albedo(RED)(x))
  m = ev.evaluate_params(
    field,
    None,
    CUBE,
    RED,
    threshold=10.0,
    bound=BOUND,
    resolution=RES,
    num_rotations=4,
    extra_levels=(10.0, "silhouette", 1e9),
  )
  levels = m["iou_by_level"]
  assert levels["10.0"]["iou"] == m["iou"] and levels["10.0"]["volume_ratio"] == m["volume_ratio"]
  # The true cube is crisp, so the level matching its silhouettes lies between empty and solid
  # and gives the cube back; above the largest density nothing is occupied.
  assert 0.0 < levels["silhouette"]["level"] < float(density(jnp.zeros((1, 3)))[0])
  assert levels["silhouette"]["iou"] > 0.95
  assert levels["1000000000.0"]["iou"] == 0.0 and levels["1000000000.0"]["volume_ratio"] == 0.0
  # A near-empty result has no opaque ray to match: its silhouette level is infinite, not an error.
  faint = lambda params, x: (jnp.full(x.shape[:-1], 1e-3), constant_albedo(RED)(x))
  m = ev.evaluate_params(
    faint, None, CUBE, RED, threshold=10.0, bound=BOUND, resolution=16, num_rotations=2, extra_levels=("silhouette",)
  )
  assert m["iou_by_level"]["silhouette"] == dict(level=float("inf"), iou=0.0, volume_ratio=0.0)


def test_turned_cube_is_found_at_its_angle():
  density = world.density_fn(CUBE)
  turned = lambda x: density(ev.rotate_z(x, -30.0))  # The cube turned by +30 degrees.
  iou, angle = ev.best_iou_over_rotations(turned, CUBE, bound=BOUND, resolution=RES, threshold=10.0)
  assert iou > 0.99
  assert angle % 90 == pytest.approx(30.0)  # The cube's 4-fold symmetry: 30, 120, 210 or 300.
  unturned = ev.iou(ev.occupancy_grid(turned, BOUND, RES, 10.0), ev.true_occupancy(CUBE, BOUND, RES))
  assert unturned < 0.9


def test_blue_sphere_against_a_red_cube_scores_badly():
  density = world.density_fn(SPHERE)
  # 80 cells over [-0.8, 0.8]: the unturned cube's faces fall on cell boundaries, so its voxel
  # volume is exact (at other resolutions it is off by up to 8%, and the max over angles finds that).
  iou, _ = ev.best_iou_over_rotations(density, CUBE, bound=BOUND, resolution=80, threshold=10.0)
  expected = ball_cube_iou(0.45, 0.32)
  assert expected == pytest.approx(0.644, abs=1e-3)
  assert iou == pytest.approx(expected, abs=0.02)
  pts = ev.surface_points(ev.occupancy_grid(density, BOUND, RES, 10.0), BOUND)
  err = ev.color_error(constant_albedo(BLUE), pts, world.COLOURS["red"])
  assert err == pytest.approx(np.linalg.norm(BLUE - RED), abs=1e-5)
  assert err > 1.0


def test_color_error_is_the_mean_distance_and_nan_when_empty():
  pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3)).astype(np.float32)
  albedo = lambda x: jnp.clip(x + 0.5, 0.0, 1.0)
  want = np.mean(np.linalg.norm(np.clip(pts + 0.5, 0, 1) - np.array([0.2, 0.3, 0.4]), axis=-1))
  assert ev.color_error(albedo, pts, (0.2, 0.3, 0.4)) == pytest.approx(want, rel=1e-5)
  assert math.isnan(ev.color_error(albedo, np.zeros((0, 3)), (0.2, 0.3, 0.4)))


def test_janus_true_teardrop_is_not_a_two_front_one_is():
  pts = jnp.asarray(ev.cell_centres(BOUND, RES))
  one_front = ev.true_occupancy(TEARDROP, BOUND, RES)
  is_janus, evidence = ev.janus(one_front, TEARDROP, BOUND)
  assert not is_janus
  assert evidence["mirror_iou_one_front"] == pytest.approx(1.0) and evidence["front_azimuth_deg"] == 0.0
  two_front = np.asarray(ev.two_front_sdf(TEARDROP)(pts) <= 0)
  is_janus, evidence = ev.janus(two_front, TEARDROP, BOUND)
  assert is_janus
  assert evidence["mirror_iou_two_front"] == pytest.approx(1.0)
  # A one-front teardrop facing another way is still one front.
  assert not ev.janus(ev.true_occupancy(TEARDROP, BOUND, RES, 100.0), TEARDROP, BOUND)[0]
  # A result with nothing where a second tip would be is not Janus either.
  small_ball = np.linalg.norm(ev.cell_centres(BOUND, RES), axis=-1) < 0.3
  assert not ev.janus(small_ball, TEARDROP, BOUND)[0]
  with pytest.raises(ValueError):
    ev.janus(one_front, CUBE, BOUND)


def test_caption_logprobs_match_numpy():
  rng = np.random.default_rng(1)
  ls, lc = rng.normal(size=(3, len(world.SHAPES))), rng.normal(size=(3, len(world.COLOUR_NAMES)))
  got = np.asarray(judge_lib.caption_logprobs(ls, lc))
  assert got.shape == (3, len(world.COLOUR_NAMES), len(world.SHAPES))
  ps = np.exp(ls) / np.exp(ls).sum(-1, keepdims=True)
  pc = np.exp(lc) / np.exp(lc).sum(-1, keepdims=True)
  np.testing.assert_allclose(got, np.log(pc[:, :, None] * ps[:, None, :]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.exp(got).sum((-1, -2)), 1.0, rtol=1e-5)
  c, s = judge_lib.top_caption(ls, lc)
  np.testing.assert_array_equal(c, lc.argmax(-1))
  np.testing.assert_array_equal(s, ls.argmax(-1))


def test_textureless_renders_carry_no_colour_loss():
  rng = np.random.default_rng(2)
  logits = dict(shape=jnp.asarray(rng.normal(size=(4, 11))), colour=jnp.asarray(rng.normal(size=(4, 10))))
  shape = jnp.array([0, 1, 2, 3])
  mode = jnp.array([0, 2, 1, 2])
  a = judge_lib.losses(logits, shape, jnp.array([0, 1, 2, 3]), mode)
  b = judge_lib.losses(logits, shape, jnp.array([0, 9, 2, 9]), mode)  # Only textureless labels changed.
  assert float(a["loss"]) == pytest.approx(float(b["loss"]))
  lc = np.asarray(logits["colour"])
  ce = -(lc - np.log(np.exp(lc).sum(-1, keepdims=True)))[[0, 2], [0, 2]]
  assert float(a["colour_ce"]) == pytest.approx(ce.mean(), rel=1e-5)
  # colour_from_shaded=False: the shaded render (index 2) carries no colour label either.
  c = judge_lib.losses(logits, shape, jnp.array([0, 1, 2, 3]), mode, colour_from_shaded=False)
  d = judge_lib.losses(logits, shape, jnp.array([0, 1, 7, 3]), mode, colour_from_shaded=False)
  assert float(c["loss"]) == pytest.approx(float(d["loss"]))
  assert float(c["colour_ce"]) == pytest.approx(ce[0], rel=1e-5)


def test_judge_training_rejects_a_colour_jitter_that_crosses_colour_names(tmp_path):
  assert judge_lib.max_colour_jitter() == pytest.approx(0.354 / 2, abs=1e-3)  # Orange-yellow, by hand.
  with pytest.raises(UserError, match="--config.colour_jitter"):
    judge_lib.train_classifier(judge_config(colour_jitter=0.2), str(tmp_path / "judge"))
  assert not os.path.exists(tmp_path / "judge")
  # With shades down to half brightness the closest names are orange and yellow again: the distance from
  # yellow x 0.5 to the orange segment is its distance to its projection on the orange direction, by hand.
  orange, yellow = (np.array(world.COLOURS[c]) for c in ("orange", "yellow"))
  y = 0.5 * yellow
  k = np.clip(y @ orange / (orange @ orange), 0.5, 1.0)
  assert judge_lib.colour_sets_distance(0.5) == pytest.approx(np.linalg.norm(y - k * orange), abs=2e-3)
  for bad, says in (
    (dict(shade_min=0.0), "darkest shade"),
    (dict(shade_min=1.5), "darkest shade"),
    (dict(shade_min=0.5, colour_jitter=0.1), "colour_jitter=0.1 is outside"),
  ):
    with pytest.raises(UserError, match=says):
      judge_lib.train_classifier(judge_config(**bad), str(tmp_path / "judge"))
  assert not os.path.exists(tmp_path / "judge")


def judge_config(**fields):
  """configs/judge.py:tiny with fields changed. The tiny judge of every test here: one TrainConfig, so they share
  compiled steps (make_step_fn is cached)."""
  from configs import judge as judge_configs

  config = judge_configs.get_config("tiny")
  config.update(fields)
  return config


def test_tiny_classifier_loss_goes_down_on_a_batch():
  # A fixed batch of random images and labels (no renders: those take the judge fixture's compile);
  # the judge's step must fit it.
  cfg = judge_lib.TrainConfig.of(judge_config())
  rng = np.random.default_rng(3)
  batch = dict(
    images=jnp.asarray(rng.uniform(size=(8, 16, 16, 3)), jnp.float32),
    shape=jnp.asarray(rng.integers(0, len(world.SHAPES), 8), jnp.int32),
    colour=jnp.asarray(rng.integers(0, len(world.COLOUR_NAMES), 8), jnp.int32),
    shading_mode=jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1], jnp.int32),
  )
  step = judge_lib.make_step_fn(cfg)
  state = judge_lib.init_state(cfg)
  losses = []
  for _ in range(25):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
  """A judge trained for 40 steps on renders (meaningless, but a complete export) by train_classifier,
  in two calls: the first stops at its time limit after one step, the second resumes (and logs at 20, 40)."""
  workdir = str(tmp_path_factory.mktemp("judge"))
  first = judge_lib.train_classifier(judge_config(time_limit_min=1e-9), workdir)
  assert first["step"] == 1 and not first["done"]
  second = judge_lib.train_classifier(judge_config(log_every=20), workdir)
  assert second["step"] == 40 and second["done"]
  return second["export"]


def test_train_classifier_resumes_exports_and_loads(tiny_judge):
  judge = judge_lib.load_classifier(tiny_judge)
  logits = judge.logits(np.zeros((2, 16, 16, 3), np.float32))
  assert logits["shape"].shape == (2, len(world.SHAPES)) and logits["colour"].shape == (2, len(world.COLOUR_NAMES))
  assert os.path.getsize(os.path.join(tiny_judge, judge_lib.PARAMS_FILE)) < 4e6
  with open(os.path.join(tiny_judge, judge_lib.CONFIG_FILE)) as f:
    meta = json.load(f)
  assert meta["step"] == 40 and meta["shapes"] == list(world.SHAPES)
  assert 0.0 <= meta["eval_metrics"]["shape_acc"] <= 1.0
  # The package's training skeleton: metrics.jsonl (and tensorboard), checkpoints with the config as JSON.
  workdir = os.path.dirname(tiny_judge)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [20, 40] and all(math.isfinite(r["loss"]) for r in records)
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  from dreamfusion_jax.checkpointing import Checkpoints

  ckpts = Checkpoints(workdir, judge_lib.KEEP_CHECKPOINTS)
  assert ckpts.latest_step() == 40 and ckpts.saved_config(40)["channels"] == [8, 16]
  ckpts.close()


def test_a_judge_checkpoint_of_another_model_is_refused_and_left_alone(tiny_judge):
  workdir = os.path.dirname(tiny_judge)
  with open(os.path.join(workdir, "config.json")) as f:
    before = f.read()
  with pytest.raises(WorkdirError, match="hidden: checkpoint 16, now 32"):
    judge_lib.train_classifier(judge_config(hidden=32), workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert f.read() == before


def test_the_judge_command_line_loads_the_config_file_and_refuses_mistakes(tmp_path):
  """`python -m dreamfusion_jax.shapes.judge`: a bad value that only the loaded config file reaches ends in
  one 'error:' paragraph, status 2, and nothing written."""
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "dreamfusion_jax.shapes.judge",
      "--config=configs/judge.py:tiny",
      f"--workdir={tmp_path / 'judge'}",
      "--config.colour_jitter=0.2",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert done.returncode == 2, done.stderr
  assert "error: --config.colour_jitter=0.2 is outside" in done.stderr and "Traceback" not in done.stderr
  assert not os.path.exists(tmp_path / "judge")


def write_untrained_run(workdir, config, step=2):
  """A run directory as train_and_evaluate leaves it (config.json, an orbax checkpoint of the seed-stacked
  TrainState), holding each seed's initial state: seconds instead of compiling a train step."""
  from dreamfusion_jax import checks, train
  from dreamfusion_jax.checkpointing import Checkpoints
  from dreamfusion_jax.nerf import views

  scene, tx = views.make_scene(config), train.make_optimizer(config)
  seeds = jnp.arange(config.num_seeds, dtype=jnp.int32) + config.seed
  state = jax.jit(jax.vmap(lambda s: train.init_state(s, scene, tx)))(seeds)
  state = state.replace(step=jnp.full_like(state.step, step))
  config_dict = checks.config_to_dict(config)
  files.write_json(os.path.join(workdir, "config.json"), config_dict)
  ckpts = Checkpoints(workdir, config.keep_checkpoints)
  ckpts.save(step, state, config_dict)
  ckpts.wait()
  ckpts.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A 2-seed run of 'a red cube'. DREAMFUSION_FULL_E2E=1 trains it for 2 steps with train.train_and_evaluate
  (about a minute of compiling on 2 CPU cores); by default its checkpoint is written directly."""
  from dreamfusion_jax import train

  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny_config(**{"prompt": "a red cube", "num_steps": 2, "num_seeds": 2})
  if os.environ.get("DREAMFUSION_FULL_E2E") == "1":
    train.train_and_evaluate(config, workdir)
  else:
    write_untrained_run(workdir, config)
  return workdir


def test_evaluate_run_writes_per_seed_and_mean_entries(tiny_run, tiny_judge, tmp_path, monkeypatch):
  from dreamfusion_jax.shapes import judge as judge_lib

  monkeypatch.setattr(judge_lib, "default_classifier_dir", lambda: str(tmp_path / "no_judge"))  # No shipped judge.
  result = ev.evaluate_run(tiny_run, resolution=24, num_views=2)
  with open(os.path.join(tiny_run, "evaluation.json")) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert saved["caption"] == "a red cube" and saved["step"] == 2
  assert saved["num_steps"] == 2 and saved["finished"] is True
  assert set(saved["per_seed"]) == {"seed_0", "seed_1"}
  for m in saved["per_seed"].values():
    assert 0.0 <= m["iou"] <= 1.0
    assert m["color_r_precision"] is None and m["janus"] is None
  assert saved["mean"]["num_seeds"] == 2 and saved["mean"]["color_r_precision"] is None
  assert saved["mean"]["iou"] == pytest.approx(np.mean([m["iou"] for m in saved["per_seed"].values()]))
  assert saved["mean"]["volume_ratio"] == pytest.approx(
    np.mean([m["volume_ratio"] for m in saved["per_seed"].values()])
  )
  for m in saved["per_seed"].values():  # The surface metrics (tests/test_surface.py checks their math).
    assert m["fog"] is None or 0.0 <= m["fog"] <= 1.0
    assert m["mesh_components"] >= 0 and (m["chamfer"] is None or m["chamfer"] >= 0.0)
    assert m["normal_error_deg"] is None or 0.0 <= m["normal_error_deg"] <= 180.0
  for name in (
    "fog",
    "normal_error_deg",
    "chamfer",
    "extent_error",
    "one_component_rate",
    "true_genus_rate",
    "fit_right_rate",
  ):
    assert name in saved["mean"], name
  for m in saved["per_seed"].values():  # An untrained field: any family, or none for an empty mesh.
    assert m["fit_right"] in (0.0, 1.0) and (m["fit_shape"] is None) == (m["fit_score"] is None)
    assert m["fit_right"] == float(m["fit_shape"] == "cube")
  page = open(os.path.join(tiny_run, "report.html")).read()  # evaluate refreshes the report with its scores.
  assert "Not evaluated" not in page and f"<td>{saved['per_seed']['seed_0']['iou']:.3f}</td>" in page
  # With a judge, both R-Precisions are fractions of the 2 views.
  judged = ev.evaluate_run(tiny_run, tiny_judge, resolution=24, num_views=2)
  for m in judged["per_seed"].values():
    assert m["color_r_precision"] in (0.0, 0.5, 1.0) and m["geo_r_precision"] in (0.0, 0.5, 1.0)
    assert len(m["top_captions"]) == 2
  assert judged["mean"]["geo_r_precision"] is not None


def test_seed_means_average_each_metric_over_the_seeds_that_have_it():
  def row(**kw):
    base = {k: None for k in ev.MEAN_METRICS}
    base.update(mesh_components=1, mesh_genus=0, true_genus=0, fit_right=1.0, janus=False)
    return dict(base, **kw)

  rows = [
    row(iou=0.9, chamfer=0.01, fit_rounding=0.2),
    row(iou=0.5, chamfer=None, mesh_components=3, mesh_genus=2, fit_right=0.0),
    row(iou=0.7, mesh_components=0, mesh_genus=None, true_genus=None, fit_right=0.0, janus=True),  # empty mesh
  ]
  mean = ev.seed_means(rows, "cube")
  assert mean["iou"] == pytest.approx(0.7) and mean["chamfer"] == pytest.approx(0.01)
  assert mean["fit_rounding"] == pytest.approx(0.2) and mean["fog"] is None
  assert mean["one_component_rate"] == pytest.approx(1 / 3)
  assert mean["true_genus_rate"] == pytest.approx(1 / 3)  # The empty mesh has no genus, so not the true one.
  assert mean["fit_right_rate"] == pytest.approx(1 / 3) and mean["num_seeds"] == 3
  assert mean["janus_rate"] is None  # A cube is symmetric.
  assert ev.seed_means(rows, "bird")["janus_rate"] == pytest.approx(1 / 3)


def test_cli_rejects_a_caption_outside_the_world(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(tiny_config(prompt="a photo of a corgi").to_dict()))
  proc = subprocess.run(
    [sys.executable, "-m", "dreamfusion_jax.evaluate", f"--workdir={workdir}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert "not a caption of the Shapes world" in proc.stderr and "Traceback" not in proc.stderr
  assert not (workdir / "evaluation.json").exists()


def test_views_sheet_layout_and_its_inverse():
  """judge_views_sheet puts seed r's view k at row r, column k (colour) and K + k (textureless); split_judge_views_sheet
  (what benchmarks/rescore_views.py reads back) undoes it up to the 8-bit rounding."""
  rng = np.random.default_rng(0)
  k, s = 3, 5
  views = [dict(colour=rng.uniform(0, 1, (k, s, s, 3)), textureless=rng.uniform(0, 1, (k, s, s, 3))) for _ in range(2)]
  sheet = ev.judge_views_sheet(views)
  expected = np.zeros((2 * s, 2 * k * s, 3))
  for r, v in enumerate(views):
    for j in range(k):
      expected[r * s : (r + 1) * s, j * s : (j + 1) * s] = v["colour"][j]
      expected[r * s : (r + 1) * s, (k + j) * s : (k + j + 1) * s] = v["textureless"][j]
  np.testing.assert_array_equal(sheet, (expected * 255).astype(np.uint8))
  back = ev.split_judge_views_sheet(sheet, k, s)
  assert len(back) == 2
  for got, want in zip(back, views):
    for name in ("colour", "textureless"):
      np.testing.assert_allclose(got[name], want[name], atol=1 / 255 + 1e-6)
  with pytest.raises(ValueError, match="does not hold"):
    ev.split_judge_views_sheet(sheet, k + 1, s)


def test_an_unfinished_run_is_scored_with_a_note_and_a_caption_in_any_case(tiny_run, tmp_path, monkeypatch, caplog):
  """A checkpoint short of num_steps is scored, with a warning and 'finished': false; 'A red cube.' (as train
  accepts it) is the world's 'a red cube'."""
  import logging
  import shutil

  monkeypatch.setattr(judge_lib, "default_classifier_dir", lambda: str(tmp_path / "no_judge"))
  workdir = str(tmp_path / "run")
  shutil.copytree(tiny_run, workdir)
  path = os.path.join(workdir, "config.json")
  saved = json.load(open(path))
  saved.update(num_steps=8, prompt="A red cube.")
  files.write_json(path, saved)
  with caplog.at_level(logging.WARNING):
    result = ev.evaluate_run(workdir, resolution=24, num_views=1)
  assert result["finished"] is False and result["step"] == 2 and result["num_steps"] == 8
  assert result["caption"] == "a red cube"
  assert "is unfinished: its latest checkpoint is at step 2 of num_steps=8" in caplog.text


def test_a_broken_config_json_is_one_paragraph_naming_the_file_and_line(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text('{\n  "prompt": "a red cube",\n  "num_steps": \n}')
  with pytest.raises(WorkdirError, match=r"config.json' is not valid JSON \(line 4, column 1"):
    ev.evaluate_run(str(workdir))
  (workdir / "config.json").write_text(json.dumps({"prompt": "a red cube", "num_steps": 0}))
  with pytest.raises(WorkdirError, match=r"does not hold a valid config: config.num_steps .* is 0"):
    ev.evaluate_run(str(workdir))
  (workdir / "config.json").write_text("[1, 2]")
  with pytest.raises(WorkdirError, match="holds list, not a config"):
    ev.evaluate_run(str(workdir))


@pytest.mark.parametrize(
  "flag, says",
  [
    ("--resolution=0", "--resolution=0 must be in [32, 512]"),
    ("--num_views=0", "--num_views=0 must be in [1, 360]"),
    ("--threshold=nan", "--threshold=nan must be a finite density >= 0"),
    ("--bound=0.1", "--bound=0.1 must be a number in [0.65, 10]"),
  ],
)
def test_evaluate_flags_are_validated_before_anything_is_read(tmp_path, flag, says):
  cmd = [sys.executable, "-m", "dreamfusion_jax.evaluate", f"--workdir={tmp_path / 'none'}", flag]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and says in errors[0], result.stderr[-2000:]
