"""The Stable Diffusion user path on a smaller card: JAX's memory capped, preallocated, as a user's would be.

  python ../shared/tools/make_random_sd.py /tmp/sd_random fp16     # SD 2.1-base shapes, random weights
  python benchmarks/sd_memory_cap.py --model=/tmp/sd_random --out=/tmp/sd_memory_cap.json
      [--cap_gib=6] [--step_cap_gib=4] [--steps=300] [--cases=path,step] [--config.FIELD=VALUE ...]

Each case runs in a child process whose JAX preallocates XLA_PYTHON_CLIENT_MEM_FRACTION of the device, the
fraction that leaves exactly the cap to JAX (fraction = cap / the device's total memory, read with nvidia-smi
before any JAX starts, or given as --total_gib): the allocator then holds the cap and nothing more, so a
program that needs more fails as on a card of that size (XLA's autotuner too can only try kernels whose
workspace fits). This process never imports JAX, so it holds no device memory of its own.

  path: configs/peacock.py (with --config.FIELD=VALUE overrides) for --steps steps on the model through
        train.train_and_evaluate, as `python -m dreamfusion_jax.main` runs it: the loader, the text encoder,
        the compiled step, validation every --val_every steps (renders and the guidance preview that the VAE
        decoder draws), checkpoints, and the export (turntable, views, meshes). Capped at --cap_gib.
  step: benchmarks/sd_step.py --noparts (the train step alone, with its compile) capped at --step_cap_gib.

The JSON (--out, and printed): the device, its total memory, and per case whether it finished (exit 0; for the
path also every export file written), the exit code, the wall time, the cap, the fraction, the allocator's
limit and the true peak (jax memory_stats' bytes_limit and peak_bytes_in_use of the child's device, GiB), and
the log's last lines when it failed. On a CPU (the tests) there is no cap: memory_stats is None there.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# The children's environment; this process itself keeps JAX (which the config and export modules import) off
# the GPU, so that it never preallocates device memory beside them.
CHILD_ENV = dict(os.environ)
if "--role=path" not in sys.argv:
  os.environ["JAX_PLATFORMS"] = "cpu"

from absl import app, flags  # noqa: E402

GIB = 2**30
flags.DEFINE_string("model", None, "A diffusers-layout folder or Hub repo id (e.g. from make_random_sd.py).")
flags.DEFINE_float("cap_gib", 6.0, "Memory left to JAX for the path (GiB).")
flags.DEFINE_float("step_cap_gib", 4.0, "Memory left to JAX for the step alone (GiB).")
flags.DEFINE_float("total_gib", None, "The device's total memory (GiB); default: nvidia-smi's memory.total.")
flags.DEFINE_list("cases", ["path", "step"], "Which cases to run: path, step.")
flags.DEFINE_integer("steps", 300, "The path's SDS steps.")
flags.DEFINE_integer("val_every", 100, "The path's steps between validations (renders and guidance previews).")
flags.DEFINE_integer("step_steps", 20, "sd_step.py's timed steps.")
flags.DEFINE_enum(
  "allocator", "bfc", ["bfc", "cuda_async"], "JAX's device allocator (XLA_PYTHON_CLIENT_ALLOCATOR) in the children."
)
flags.DEFINE_multi_string("step_flag", [], "More flags for sd_step.py, e.g. --step_flag=--dtype=float32.")
flags.DEFINE_string("workdir", None, "Parent folder of the path's workdir (default: a new temporary folder).")
flags.DEFINE_integer("timeout_s", 540, "Wall-clock limit of each case (s).")
flags.DEFINE_string("out", None, "Also write the result as JSON here.")
flags.DEFINE_string("role", "parent", "Internal: 'path' runs the path in this process (a child).")
flags.DEFINE_string("stats", None, "Internal: where the path child writes its device's memory_stats.")
FLAGS = flags.FLAGS


def device_total_bytes() -> int | None:
  """Total memory of the first visible GPU (nvidia-smi, MiB -> bytes), or None without nvidia-smi or a GPU."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
  cmd = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
  if visible:
    cmd.append(f"--id={visible}")
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  values = [line.strip() for line in out.splitlines() if line.strip()]
  return int(float(values[0]) * 2**20) if values else None


def mem_fraction(cap_bytes: float, total_bytes: float) -> float:
  """XLA_PYTHON_CLIENT_MEM_FRACTION that leaves at most cap_bytes of total_bytes to JAX's allocator (which
  takes fraction x total), rounded down to 1e-6 so that the cap is never exceeded."""
  if not 0 < cap_bytes <= total_bytes:
    raise ValueError(f"a cap of {cap_bytes / GIB:.2f} GiB does not fit a device of {total_bytes / GIB:.2f} GiB")
  return math.floor(cap_bytes / total_bytes * 1e6) / 1e6


def capped_env(fraction: float, base: dict | None = None, allocator: str = "bfc") -> dict:
  """base (default os.environ) with JAX preallocating `fraction` of the device, as by default on a user's card,
  through `allocator` (XLA_PYTHON_CLIENT_ALLOCATOR: bfc, JAX's default, or cuda_async, CUDA's stream-ordered
  pool, which the same fraction bounds)."""
  if allocator not in ("bfc", "cuda_async"):  # 'platform' would allocate on demand, past any fraction.
    raise ValueError(f"allocator {allocator!r}: bfc or cuda_async")
  env = dict(os.environ if base is None else base)
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
  env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{fraction:.6f}"
  env["XLA_PYTHON_CLIENT_ALLOCATOR"] = allocator
  env.pop("XLA_CLIENT_MEM_FRACTION", None)  # Its newer name: JAX refuses both at once.
  return env


def run_child(argv: list[str], env: dict, timeout_s: int) -> dict:
  """Runs argv; its exit code (None if it ran past timeout_s), wall time and the last lines of its output."""
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    code, log = proc.returncode, proc.stdout + proc.stderr
  except subprocess.TimeoutExpired as e:
    code, log = None, (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
  lines = [line for line in log.splitlines() if line.strip() and "Warning" not in line]
  return dict(exit_code=code, wall_s=round(time.perf_counter() - t0, 1), log_tail=lines[-25:])


def stats_fields(stats: dict | None) -> dict:
  """jax memory_stats (or None) -> peak_gib, bytes_limit_gib."""
  stats = stats or {}
  gib = lambda key: None if stats.get(key) is None else round(stats[key] / GIB, 3)
  return dict(peak_gib=gib("peak_bytes_in_use"), bytes_limit_gib=gib("bytes_limit"))


def path_case(total: float | None, config_args: list[str]) -> dict:
  """The peacock path in a capped child; the workdir is removed afterwards."""
  parent = FLAGS.workdir or tempfile.gettempdir()
  os.makedirs(parent, exist_ok=True)
  workdir = tempfile.mkdtemp(prefix="sd_memory_cap_path_", dir=parent)
  stats_file = os.path.join(workdir, "memory_stats.json")
  argv = [sys.executable, os.path.abspath(__file__), "--role=path", f"--stats={stats_file}", f"--workdir={workdir}"]
  argv += [f"--model={FLAGS.model}", f"--steps={FLAGS.steps}", f"--val_every={FLAGS.val_every}", *config_args]
  case = dict(cap_gib=FLAGS.cap_gib)
  env = dict(CHILD_ENV)
  if total is not None:
    case["mem_fraction"] = mem_fraction(FLAGS.cap_gib * GIB, total)
    env = capped_env(case["mem_fraction"], CHILD_ENV, FLAGS.allocator)
  case.update(run_child(argv, env, FLAGS.timeout_s))
  case.update(path_outcome(workdir, case["exit_code"], stats_file))
  if case["finished"]:
    case.pop("log_tail")
  shutil.rmtree(workdir, ignore_errors=True)
  return case


def path_outcome(workdir: str, exit_code: int | None, stats_file: str) -> dict:
  """What the path child left: the device's peak and limit (its stats file), each seed's export parts still
  missing, the validation images, and whether it finished (exit 0 and every seed's export whole)."""
  from dreamfusion_jax import export  # The names of the files an export writes (JAX on the CPU here).

  stats = None
  if os.path.isfile(stats_file):
    with open(stats_file) as f:
      stats = json.load(f)
  out = stats_fields(stats and stats.get("memory_stats"))
  out["device"] = stats and stats.get("device")
  seeds = sorted(d for d in os.listdir(workdir) if d.startswith("seed_"))
  out["exports"] = {d: sorted(export.missing_parts(os.path.join(workdir, d))) for d in seeds}
  validations = os.path.join(workdir, "validation")
  out["validation_images"] = len(os.listdir(validations)) if os.path.isdir(validations) else 0
  out["finished"] = bool(exit_code == 0 and seeds and not any(out["exports"].values()))
  return out


def step_case(total: float | None) -> dict:
  """benchmarks/sd_step.py --noparts in a capped child."""
  out = tempfile.mktemp(prefix="sd_memory_cap_step_", suffix=".json")
  argv = [sys.executable, os.path.join(ROOT, "benchmarks", "sd_step.py"), f"--model={FLAGS.model}"]
  argv += ["--noparts", f"--steps={FLAGS.step_steps}", f"--out={out}", *FLAGS.step_flag]
  case = dict(cap_gib=FLAGS.step_cap_gib)
  env = dict(CHILD_ENV)
  if total is not None:
    case["mem_fraction"] = mem_fraction(FLAGS.step_cap_gib * GIB, total)
    env = capped_env(case["mem_fraction"], CHILD_ENV, FLAGS.allocator)
  case.update(run_child(argv, env, FLAGS.timeout_s))
  step = None
  if os.path.isfile(out):
    with open(out) as f:
      step = json.load(f)
    os.remove(out)
  case["finished"] = bool(case["exit_code"] == 0 and step and step.get("finite"))
  if step:
    case.update(peak_gib=step.get("peak_gb"), bytes_limit_gib=step.get("bytes_limit_gb"), sd_step=step)
  if case["finished"]:
    case.pop("log_tail")
  return case


def run_path_child() -> None:
  """The path in this process (role 'path'): configs/peacock.py with the overrides, then its memory_stats."""
  import jax

  from dreamfusion_jax import train

  config = FLAGS.config
  with config.unlocked():
    config.guidance.sd.model = FLAGS.model
    config.num_steps = FLAGS.steps
    config.val_every = FLAGS.val_every
    config.progress_bar = False
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  finally:  # A run that fails (out of memory) still tells its peak so far and the allocator's limit.
    device = jax.devices()[0]
    with open(FLAGS.stats, "w") as f:
      json.dump(dict(device=device.device_kind, memory_stats=device.memory_stats()), f)


def main(argv):
  del argv
  if FLAGS.role == "path":
    run_path_child()
    return
  unknown = set(FLAGS.cases) - {"path", "step"}
  if unknown:
    raise app.UsageError(f"--cases: unknown {sorted(unknown)}; choose from path, step.")
  total = FLAGS.total_gib * GIB if FLAGS.total_gib else device_total_bytes()
  config_args = [a for a in sys.argv[1:] if a.startswith("--config.")]
  result = dict(
    date=time.strftime("%Y-%m-%d"),
    model=FLAGS.model,
    total_gib=None if total is None else round(total / GIB, 3),
    capped=total is not None,
    allocator=FLAGS.allocator,
    config_overrides=config_args,
  )
  if "path" in FLAGS.cases:
    result["path"] = path_case(total, config_args)
  if "step" in FLAGS.cases:
    result["step"] = step_case(total)
    result["device"] = (result["step"].get("sd_step") or {}).get("device")
  print(json.dumps(result))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", os.path.join(ROOT, "configs", "peacock.py"), "The path's config.")
  flags.mark_flags_as_required(["model"])
  app.run(main)
