"""The command line end to end: the smoke config with two seeds, resume, and every bad input."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def run_main(*args, timeout=600):
  cmd = [sys.executable, "-m", "dreamfusion_jax.main", f"--config={SMOKE}", *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def tree_listing(path):
  """{relative path: (size, mtime)} of every file below path, but the lock (each run writes its PID there)."""
  out = {}
  for dirpath, _, files in os.walk(path):
    for f in files:
      p = os.path.join(dirpath, f)
      if os.path.relpath(p, path) != ".lock":
        out[os.path.relpath(p, path)] = (os.path.getsize(p), os.path.getmtime(p))
  return out


def test_smoke_config_two_seeds_trains_exports_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  cache = tmp_path / "compiled"
  first = run_main(f"--workdir={workdir}", "--config.num_seeds=2", f"--compilation_cache={cache}")
  assert first.returncode == 0, first.stderr[-4000:]
  assert os.listdir(cache), "JAX's persistent cache kept no compiled program"
  for line in ("Set up in", "prior", "40 steps in", "the first (compiling)", "Exported in"):
    assert line in first.stderr, line
  # stderr is no terminal here: no bar, one plain progress line per record, in completed steps.
  progress_lines = [line for line in first.stderr.splitlines() if "] step " in line and "/40: " in line]
  assert [line.split("] step ")[1].split("/")[0] for line in progress_lines] == ["10", "20", "30", "40"]
  assert "steps/s" in progress_lines[-1] and " left, t " in progress_lines[-1] and "\r" not in first.stderr
  for seed in (0, 1):
    for name in ("turntable.mp4", "mesh.glb", "mesh.ply", "views.png"):
      path = os.path.join(workdir, f"seed_{seed}", name)
      assert os.path.getsize(path) > 0, path
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["num_seeds"] == 2 and saved["prompt"] == "a red cube"
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert records[-1]["step"] == 40 and "seed_1/grad_norm" in records[-1] and "steps_per_sec" in records[-1]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard")))
  validation = sorted(os.listdir(os.path.join(workdir, "validation")))
  assert validation == ["step_000020.png", "step_000020_guidance.png", "step_000040.png", "step_000040_guidance.png"]
  import imageio.v3 as iio

  from dreamfusion_jax import outputs

  preview = iio.imread(os.path.join(workdir, "validation", "step_000040_guidance.png"))
  # One row per seed of 4 tiles (render, noised, denoised, the prior's sample), 32x32 each shown at 6x = 192 px,
  # under the label strip.
  assert preview.shape == (outputs.PREVIEW_HEADER + 2 * 192, 4 * 192, 3)

  import trimesh

  mesh = trimesh.load(os.path.join(workdir, "seed_0", "mesh.ply"))
  assert len(mesh.vertices) > 0 and mesh.visual.vertex_colors.shape[1] == 4

  second = run_main(
    f"--workdir={workdir}", "--config.num_seeds=2", "--config.num_steps=50", "--config.export.enabled=false"
  )
  assert second.returncode == 0, second.stderr[-4000:]
  assert "Resuming from the checkpoint at step 40" in second.stderr
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert records[-1]["step"] == 50
  assert "50" in os.listdir(os.path.join(workdir, "checkpoints"))


QUICK = [
  "--config.num_steps=2",
  "--config.export.enabled=false",
  "--config.val_every=0",
  "--config.render.image_size=16",
  "--config.checkpoint_every=1",
]


@pytest.mark.parametrize(
  "args, expected",
  [
    (["--config.field.bogus=1"], "has no field 'bogus'"),
    (["--config.num_step=5"], "has no field 'num_step'"),
    (["--config.num_steps=0"], "is 0, which is out of range: it must be an integer in [1, 10000000]"),
    (["--config.num_steps=-3"], "is -3, which is out of range"),
    (["--config.prompt="], "The prompt is empty"),
    (["--config.prompt=   "], "The prompt is empty"),
    (["--config.guidance.t_min=0.99"], "t_min"),
    (["--config.guidance.t_anneal_steps=100", "--config.guidance.t_max_final=0.01"], "guidance.t_max_final=0.01"),
    (["--config.camera.focal_range=(1.2, 0.8)"], "is (1.2, 0.8), which has MIN > MAX"),
    (["--config.camera.distance_range=(0.0, 1.0)"], "is (0.0, 1.0), which is out of range: it must be two numbers"),
    (["--config.camera.look_at_std=-0.1"], "camera.look_at_std (Std of the look-at point"),
    (["--config.camera.focal_range=(1.0,)"], "is (1.0,), which is not two numbers"),
    # Issue 18: tracebacks at the end of training or at the start, or accepted silently.
    (["--config.export.image_size=0"], "config.export.image_size (Turntable and contact-sheet render size) is 0"),
    (["--config.export.mesh_resolution=0"], "config.export.mesh_resolution (Marching-cubes grid resolution"),
    (["--config.export.num_frames=-1"], "config.export.num_frames (Turntable frames over 360 degrees; 0: 120"),
    (["--config.field.num_levels=0"], "config.field.num_levels (L in Instant-NGP: hash-grid levels) is 0"),
    (["--config.field.max_resolution=0"], "config.field.max_resolution (N_max in Instant-NGP"),
    (["--config.guidance.num_train_timesteps=0"], "config.guidance.num_train_timesteps (Length of the DDPM"),
    (["--config.optim.lr=-1"], "config.optim.lr (Learning rate of the hash tables (threestudio: 1e-2)) is -1.0"),
    (["--config.guidance.scale=-100"], "config.guidance.scale (Classifier-free guidance weight w_cfg) is -100.0"),
    (["--config.num_steps=1000000000000"], "is 1000000000000, which is out of range"),
    (["--config.num_seeds=60000"], "This config's train step needs about"),
    (["--config.render.image_size=4096"], "This config's train step needs about"),
    (["--config.render.num_coarse=4096", "--config.num_seeds=64"], "This config's train step needs about"),
    (["--config.prompt=🐱🚀"], "holds no word of letters or digits"),
    (["--config.guidance.model=shapes", "--config.prompt=a crimson dodecahedron"], "is not of the Shapes world"),
    (["--config.export.mesh_threshold=0"], "export.mesh_threshold=0.0 asks for the field's own surface"),
    (["--config.render.normal_step=0.01"], "render.normal_step=0.01 takes the training renders' normals"),
  ],
)
def test_bad_config_gets_one_clear_error(tmp_path, args, expected):
  result = run_main(f"--workdir={tmp_path / 'w'}", *args)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
  assert "Traceback" not in result.stderr + result.stdout
  assert not os.path.exists(tmp_path / "w")  # Refused before the workdir was even created.


def test_a_missing_config_file_gets_one_clear_error(tmp_path):
  cmd = [
    sys.executable,
    "-m",
    "dreamfusion_jax.main",
    "--config=configs/no_such_file.py",
    f"--workdir={tmp_path / 'w'}",
  ]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
  assert "error: The config file 'configs/no_such_file.py' does not exist" in result.stderr
  assert not os.path.exists(tmp_path / "w")


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = run_main(f"--workdir={blocker / 'run'}")
  assert result.returncode == 2
  assert "Cannot write to the work directory" in result.stderr and "Traceback" not in result.stderr
  assert blocker.read_text() == "not a directory"


def test_workdir_of_an_incompatible_config_is_refused_untouched(tmp_path):
  workdir = str(tmp_path / "run")
  first = run_main(f"--workdir={workdir}", *QUICK)
  assert first.returncode == 0, first.stderr[-3000:]
  before = tree_listing(workdir)
  second = run_main(f"--workdir={workdir}", *QUICK, "--config.field.mlp_width=16", "--config.prompt=a blue cone")
  assert second.returncode == 2
  assert "holds a checkpoint of a different config" in second.stderr
  assert "field.mlp_width" in second.stderr and "prompt" in second.stderr
  assert "Traceback" not in second.stderr
  assert tree_listing(workdir) == before
  # An unknown model is named as such (with the known ones), not as a mismatch with the checkpoint.
  third = run_main(f"--workdir={workdir}", *QUICK, "--config.guidance.model=dalle")
  assert third.returncode == 2 and "Traceback" not in third.stderr
  assert "guidance.model='dalle' is not a known model; choose one of random, shapes, stable_diffusion" in third.stderr
  assert "different config" not in third.stderr
  assert tree_listing(workdir) == before


def test_resume_accepts_a_checkpoint_without_fields_added_later_at_their_default():
  """A run saved before a field existed computed with its default; a resume at that default is the same run."""
  import copy

  from dreamfusion_jax import base_config, checks

  current = checks.config_to_dict(base_config.get_config())
  saved = copy.deepcopy(current)
  del saved["camera"]["look_at_std"]
  assert checks.config_differences(saved, current) == []
  current["camera"]["look_at_std"] = 0.05
  assert checks.config_differences(saved, current) == ["camera.look_at_std: checkpoint has '<missing>', now 0.05"]


def test_resume_and_reexport_may_change_how_the_views_are_chunked_but_not_the_renders():
  from dreamfusion_jax import base_config, checks

  saved = checks.config_to_dict(base_config.get_config())
  current = checks.config_to_dict(base_config.get_config())
  current["render"]["view_chunk_samples"] *= 4
  assert checks.config_differences(saved, current) == []
  current["render"]["num_fine"] += 1
  assert [d.split(":")[0] for d in checks.config_differences(saved, current)] == ["render.num_fine"]


def test_missing_video_encoder_is_reported_before_training(tmp_path):
  """Round 32 of the GPU sweeps ran the main job on an image without imageio-ffmpeg's binary: it trained,
  then ended in a traceback at the turntable. The check must stop such a run before anything is trained."""
  cmd = [sys.executable, "-m", "dreamfusion_jax.main", f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", IMAGEIO_FFMPEG_EXE=str(tmp_path / "no" / "ffmpeg"))
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "needs ffmpeg through imageio-ffmpeg" in result.stderr and "export.enabled=false" in result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_the_backend_probe_is_not_in_the_log_but_warnings_are():
  """JAX logs "Unable to initialize backend 'tpu'" at INFO on every machine without a TPU; logs.quiet_orbax's
  filter keeps that line (and orbax's INFO chatter) out, and lets the same logger's warnings through."""
  script = (
    "import sys, logging as std\n"
    "from absl import logging\n"
    "from dreamfusion_jax import logs\n"
    "logging.use_absl_handler(); logging.set_verbosity(logging.INFO)\n"
    "if sys.argv[1] == 'quiet': logs.quiet_orbax()\n"
    "import jax; jax.devices()\n"
    "std.getLogger('jax._src.xla_bridge').warning('a real warning')\n"
  )
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  out = {}
  for mode in ("plain", "quiet"):
    proc = subprocess.run([sys.executable, "-c", script, mode], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out[mode] = proc.stderr
  if "Unable to initialize backend" not in out["plain"]:
    pytest.skip("this machine's JAX probes no missing backend, so there is no line to filter")
  assert "Unable to initialize backend" not in out["quiet"] and "a real warning" in out["quiet"]


def test_help_exits_0_with_the_main_job_the_flags_and_the_common_fields():
  for flag in ("--help", "-h"):
    proc = subprocess.run(
      [sys.executable, "-m", "dreamfusion_jax.main", flag], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (
      "--config=configs/default.py --workdir=",
      "--compilation_cache",
      "--config.prompt:",
      "--config.num_steps:",
    ):
      assert text in proc.stdout, (flag, text)


ENOSPC_AT_STEP_4 = """
import errno, os, sys
from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler
real = handler.JsonCheckpointHandler._save_fn
async def failing(self, x, directory):
  if "4" in [part.split(".")[0] for part in str(directory).split(os.sep)[-2:]]:
    raise OSError(errno.ENOSPC, "No space left on device", str(directory))
  return await real(self, x, directory)
handler.JsonCheckpointHandler._save_fn = failing
from dreamfusion_jax import main
sys.argv = ["main"] + sys.argv[1:]
main.run()
"""


def test_a_full_disk_is_one_paragraph_and_the_rerun_resumes(tmp_path):
  """The asynchronous save of checkpoint 4 fails as on a full disk (a mocked ENOSPC: no tmpfs here)."""
  workdir = str(tmp_path / "run")
  args = [
    f"--config={SMOKE}",
    f"--workdir={workdir}",
    *QUICK[1:],
    "--config.num_steps=6",
    "--config.checkpoint_every=2",
  ]
  args += ["--config.log_every=1", "--config.progress_bar=false"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  full = subprocess.run(
    [sys.executable, "-c", ENOSPC_AT_STEP_4, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  assert full.returncode == 2, full.stderr[-3000:]
  assert "Traceback" not in full.stderr + full.stdout, full.stderr[-3000:]
  errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and f"The disk holding the work directory '{workdir}' is full" in errors[0]
  assert "it resumes from step 2" in errors[0]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]  # Stopped at the record after the save.

  again = run_main(*args[1:])
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resuming from the checkpoint at step 2" in again.stderr
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["2", "4", "6"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4, 5, 6]
