"""report.html: its parts against independent computations, and the page of a real run in headless Chromium."""

import glob
import hashlib
import io
import json
import os
import re
import shutil

import browser
import numpy as np
import pytest
from conftest import ROOT, tiny_config

from dreamfusion_jax import report

# ----------------------------------------------------------------------------- parts of the page


@pytest.mark.parametrize("lo, hi", [(0.0, 40.0), (0.45, 0.58), (-3.2, 7.9), (1e3, 2.5e5), (10.0, 10.5)])
def test_nice_ticks_are_round_evenly_spaced_and_inside_the_range(lo, hi):
  ticks = report.nice_ticks(lo, hi, 5)
  assert 2 <= len(ticks) <= 10
  assert lo - 1e-9 <= ticks[0] and ticks[-1] <= hi + 1e-9
  steps = np.diff(ticks)
  np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
  mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
  assert any(np.isclose(mantissa, m) for m in (1, 2, 5)), steps[0]
  assert (hi - lo) / steps[0] <= 2 * 5  # Not a uselessly fine grid.


def test_timestep_schedule_is_the_annealed_range_of_the_config():
  config = {
    "num_steps": 200,
    "guidance": dict(t_min=0.02, t_max=0.98, t_max_final=0.5, t_anneal_steps=100, num_train_timesteps=1000),
  }
  steps, lo, hi = report.timestep_schedule(config)
  assert steps[0] == 0 and steps[-1] == 200
  # By hand: t_max falls linearly over 100 steps from timestep 980 to 500, then stays; t_min is timestep 20.
  expected = np.round(980 + np.clip(steps / 100, 0, 1) * (500 - 980)) / 1000
  np.testing.assert_allclose(hi, expected, atol=1e-6)
  np.testing.assert_allclose(lo, 0.02)
  assert report.timestep_schedule({"num_steps": 10}) is None


def test_read_metrics_keeps_the_latest_record_of_each_step_and_skips_a_cut_line(tmp_path):
  lines = [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 2.0}, {"step": 20, "loss": 3.0}, {"step": 30, "loss": 4.0}]
  text = "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 40, "lo'
  (tmp_path / "metrics.jsonl").write_text(text)
  assert [(r["step"], r["loss"]) for r in report.read_metrics(str(tmp_path))] == [(10, 1.0), (20, 3.0), (30, 4.0)]


def polyline_points(svg: str) -> list[np.ndarray]:
  return [
    np.array([[float(v) for v in p.split(",")] for p in m.split()])
    for m in re.findall(r'<polyline points="([^"]+)"', svg)
  ]


def test_svg_plot_puts_the_data_where_the_axes_say():
  x = np.array([0.0, 10.0, 20.0, 40.0])
  y = np.array([0.2, 0.8, 0.5, 0.2])
  svg = report.svg_plot({"mean": (x, y)}, "opacity", width=400, height=200, ylim=(0.0, 1.0))
  (points,) = polyline_points(svg)
  left, top, pw, ph = 52, 22, 400 - 52 - 10, 200 - 22 - 30  # svg_plot's margins.
  np.testing.assert_allclose(points[:, 0], left + x / 40 * pw, atol=0.06)
  np.testing.assert_allclose(points[:, 1], top + (1 - y) * ph, atol=0.06)
  assert "log scale" not in svg and "<title>opacity</title>" in svg


def test_svg_plot_uses_a_log_scale_for_values_over_decades():
  x, y = np.arange(4.0), np.array([1e2, 1e3, 1e4, 1e5])
  svg = report.svg_plot({"loss": (x, y)}, "loss")
  (points,) = polyline_points(svg)
  assert "log scale" in svg
  steps = np.diff(points[:, 1])
  np.testing.assert_allclose(steps, steps[0], atol=0.11)  # Equal steps per decade, to the 0.1 px of the SVG.
  assert all(t in svg for t in (">100<", ">1000<", ">1e4<", ">1e5<"))


def test_a_workdir_without_outputs_gets_a_page_that_names_what_is_missing(tmp_path):
  path = report.write_report(str(tmp_path))
  text = open(path).read()
  for missing in ("the caption is unknown", "metrics.jsonl is missing", "Not evaluated", "config.json is missing"):
    assert missing in text, missing
  (tmp_path / "config.json").write_text(json.dumps({"prompt": "a red cube", "num_seeds": 1, "seed": 3}))
  text = open(report.write_report(str(tmp_path))).read()
  assert "<h1>a red cube</h1>" in text
  for missing in ("seed_3/turntable.mp4 is missing", "seed_3/mesh.glb is missing", "seed_3/views.png is missing"):
    assert missing in text, missing


def test_broken_files_are_read_as_missing(tmp_path):
  (tmp_path / "config.json").write_text("[1, 2]")
  (tmp_path / "run.json").write_text('{"invocations": 3}')
  (tmp_path / "evaluation.json").write_text("{")
  (tmp_path / "metrics.jsonl").write_text('[]\n{"step": "ten"}\n{"step": 10, "loss": 2.5}\n')
  text = open(report.write_report(str(tmp_path))).read()
  assert "the caption is unknown" in text and "Not evaluated" in text and "10 of ?" in text
  report.record_invocation(str(tmp_path), {"device": "cpu"})
  assert json.load(open(tmp_path / "run.json")) == {"invocations": [{"device": "cpu"}]}


def test_writing_the_report_never_raises(tmp_path, caplog):
  not_a_directory = tmp_path / "file"
  not_a_directory.write_text("")
  assert report.write_report(str(not_a_directory)) is None
  assert "Could not write" in caplog.text


def test_the_evaluation_table_shows_each_seed_and_the_mean(tmp_path):
  evaluation = {
    "caption": "a red cube",
    "step": 40,
    "finished": True,
    "per_seed": {"seed_0": {"iou": 0.81234, "janus": None}, "seed_1": {"iou": 0.5, "janus": None}},
    "mean": {"iou": 0.65617},
  }
  (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
  text = report.page(str(tmp_path))
  assert "Not evaluated" not in text
  rows = re.findall(r"<tr><th>(seed_0|seed_1|mean)</th><td>([^<]*)</td>", text)
  assert rows == [("seed_0", "0.812"), ("seed_1", "0.500"), ("mean", "0.656")]


def test_the_viewer_is_the_pinned_release_with_its_licence_and_is_shipped():
  directory = os.path.join(ROOT, "dreamfusion_jax", "assets", "viewer")
  readme = open(os.path.join(directory, "README.md")).read()
  data = open(report.VIEWER, "rb").read()
  assert hashlib.sha256(data).hexdigest() in readme and "4.4.0" in readme and "4.4.0" in report.VIEWER_VERSION
  assert len(data) < 1.5e6
  assert "Apache License" in open(os.path.join(directory, "LICENSE")).read()
  assert b"<script" not in data.lower() and b"</script" not in data.lower()  # Safe to inline in a <script>.
  # setup.py's package_data globs (setuptools expands them with glob's recursive '**') reach the files.
  setup = open(os.path.join(ROOT, "setup.py")).read()
  patterns = re.search(r'package_data=\{"dreamfusion_jax": \[([^\]]*)\]', setup).group(1)
  package = os.path.join(ROOT, "dreamfusion_jax")
  shipped = set()
  for pattern in re.findall(r'"([^"]+)"', patterns):
    shipped |= {os.path.relpath(p, package) for p in glob.glob(os.path.join(package, pattern), recursive=True)}
  for name in ("model-viewer-umd.min.js", "LICENSE", "README.md"):
    assert os.path.join("assets", "viewer", name) in shipped, name


# ----------------------------------------------------------------------------- a real run in a real browser

needs_chromium = pytest.mark.skipif(
  browser.find_chromium() is None,
  reason="no Chromium on PATH (.ci/run installs Debian's 'chromium'; locally: apt-get install chromium)",
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """A finished 2-seed run of 'a red cube' (4 steps, validation at 2 and 4, a small export) with its report."""
  from dreamfusion_jax import train

  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny_config(
    **{
      "num_seeds": 2,
      "val_every": 2,
      "export.enabled": True,
      "export.mesh_resolution": 32,
      "export.num_frames": 4,
      "export.image_size": 32,
    }
  )
  train.train_and_evaluate(config, workdir)
  return workdir


def test_main_writes_run_json_and_the_report(smoke_run):
  (invocation,) = json.load(open(os.path.join(smoke_run, "run.json")))["invocations"]
  assert invocation["steps"] == [0, 4] and invocation["num_devices"] >= 1 and invocation["device"]
  assert invocation["train_seconds"] > 0 and invocation["export_seconds"] > 0 and invocation["steps_per_sec"] > 0
  text = open(os.path.join(smoke_run, "report.html")).read()
  assert "<h1>a red cube</h1>" in text and "steps 0-4 in" in text and "4 of 4" in text
  assert text.count("<model-viewer ") == 2 and text.count("<video ") == 2
  assert text.count("<svg ") >= 1 + 8  # The t schedule and the loss terms.
  for name in ("step_000002.png", "step_000004.png", "step_000004_guidance.png"):
    assert f'src="validation/{name}"' in text, name


def screenshot_of(b: browser.Browser, selector_index: int) -> np.ndarray:
  """RGB pixels [H, W, 3] of the selector_index-th model-viewer, scrolled into view and rendered."""
  import imageio.v3 as iio

  rect = b.evaluate(
    f"(() => {{ const el = document.querySelectorAll('model-viewer')[{selector_index}]; el.scrollIntoView(); "
    "const r = el.getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, "
    "height: r.height}; })()"
  )
  b.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # A frame after scrolling.
  return iio.imread(io.BytesIO(b.screenshot(rect)))[..., :3].astype(np.float64)


@needs_chromium
def test_the_report_loads_in_chromium_with_no_errors_and_the_meshes_render(smoke_run):
  with browser.Browser(width=1280, height=900, timeout=120) as b:
    b.open("file://" + os.path.join(smoke_run, "report.html"))
    b.wait_for("document.body.dataset.status !== 'loading'")
    status = b.evaluate("document.body.dataset.status")
    checked = b.evaluate("Array.from(document.querySelectorAll('[data-check]')).map(e => e.dataset.check)")
    shots = [screenshot_of(b, i) for i in range(2)]
    b.evaluate("1")  # Collects the events that arrived last.
    assert status == "ok", (status, b.messages)
    assert not b.errors, b.errors
  # Every video, image and mesh was checked by the page: 2 seeds x 3, and the sheet and guidance preview of steps 2, 4.
  assert len(checked) == 2 * 3 + 4, checked
  background = np.array([0xF4, 0xF4, 0xF4])  # model-viewer's background in the page's style.
  for shot in shots:
    assert shot.shape[0] > 100 and shot.shape[1] > 100
    drawn = np.abs(shot - background).max(axis=-1) > 24
    assert drawn.mean() > 0.05, f"the 3D view is blank: {drawn.mean():.3f} of its pixels differ from the background"


@needs_chromium
def test_the_page_reports_what_failed_to_load(smoke_run, tmp_path):
  # Without this, a page whose status never leaves 'ok' would pass the test above.
  broken = str(tmp_path / "broken")
  shutil.copytree(smoke_run, broken, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
  with open(os.path.join(broken, "seed_0", "mesh.glb"), "wb") as f:
    f.write(b"not a glTF file")
  report.write_report(broken)
  os.remove(os.path.join(broken, "seed_1", "views.png"))  # After the page was written: a broken link.
  with browser.Browser(timeout=120) as b:
    b.open("file://" + os.path.join(broken, "report.html"))
    b.wait_for("document.body.dataset.status !== 'loading'")
    status = b.evaluate("document.body.dataset.status")
    notes = b.evaluate("Array.from(document.querySelectorAll('.missing')).map(e => e.textContent)")
    b.evaluate("1")
  assert status.startswith("failed: ") and set(status[len("failed: ") :].split(", ")) == {
    "seed_0/mesh.glb",
    "seed_1/views.png",
  }, status
  assert "Could not load seed_1/views.png." in notes and "Could not load seed_0/mesh.glb." in notes
  assert any("views.png" in e for e in b.errors), b.errors  # The browser's own log names the missing file.
