"""benchmarks/sd_start.py: when the step's compile started, from the run's log; a failed run kept with its log."""

import datetime
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import sd_start  # noqa: E402

LOG = """I1207 08:30:06.189160 140101845971264 train.py:720] Seeds [0] on 1 device(s) (NVIDIA H100 80GB HBM3).
I1207 08:30:27.106714 1400775 train.py:556] The train step compiled in 19.4 s (traced and lowered 5.2 s, then XLA 14.2 s;
"""


def test_the_compile_start_is_the_compiled_lines_time_less_its_duration_after_the_launch():
  launched = datetime.datetime(2026, 12, 7, 8, 30, 1, 500000)
  # 08:30:27.106714 - 19.4 s = 08:30:07.706714, 6.206714 s after the launch.
  assert sd_start.compile_started_s(LOG, launched) == 6.21
  late = datetime.datetime(2026, 12, 6, 23, 59, 58)
  text = "I1207 00:00:30.000000 1 train.py:556] The train step compiled in 20.0 s (on a worker thread).\n"
  assert sd_start.compile_started_s(text, late) == 12.0  # Across midnight.
  assert sd_start.compile_started_s("no such line", launched) is None
  parts = {k: float(re.search(sd_start.PATTERNS[k], LOG)[1]) for k in ("step_compile_lowering_s", "step_compile_xla_s")}
  assert parts == {"step_compile_lowering_s": 5.2, "step_compile_xla_s": 14.2}


def test_a_failed_run_is_kept_with_its_log_and_the_script_exits_non_zero(tmp_path):
  out = tmp_path / "start.json"
  cmd = [sys.executable, "benchmarks/sd_start.py", f"--model={tmp_path / 'nowhere'}", "--repeats=1", "--timeout=120"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([*cmd, f"--out={out}"], cwd=ROOT, env=env, capture_output=True, text=True)
  assert result.returncode != 0 and "1 of 1 runs failed" in result.stderr
  summary = json.loads(out.read_text())
  (run,) = summary["runs"]
  assert run["failed"].startswith("exit 2") and "nowhere" in run["log_tail"]  # The user's error, exit 2.
  assert summary["start_to_second_step_s"] is None


def test_a_run_that_took_its_second_step_is_timed_and_stopped_there_whatever_it_does_next(tmp_path):
  # A stand-in run: logs its set-up, writes two metric rows 0.3 s apart, then hangs (as a run's final validation
  # may). It counts, and is stopped long before the limit.
  workdir = str(tmp_path / "run0")
  script = (
    "import os, sys, time\n"
    f"os.makedirs({workdir!r})\n"
    "print('I1207 08:30:00.000000 1 train.py:1] Set up in 1.5 s: prior 0.5 s, caption embeddings 0.7 s.', flush=True)\n"
    f"m = open(os.path.join({workdir!r}, 'metrics.jsonl'), 'w')\n"
    "m.write('{}\\n'); m.flush(); time.sleep(0.3); m.write('{}\\n'); m.flush()\n"
    "time.sleep(600)\n"
  )
  t = time.perf_counter()
  result = sd_start.one_run(workdir, [sys.executable, "-c", script], timeout=120)
  assert time.perf_counter() - t < 60 and "failed" not in result
  assert 0.2 <= result["start_to_second_step_s"] - result["start_to_first_step_s"] < 5  # 0.3 s, polled.
  assert result["setup_s"] == 1.5 and result["setup_caption_embeddings_s"] == 0.7

  # One that dies after its first step is a failure, with its exit code.
  dead = str(tmp_path / "run1")
  script = f"import os\nos.makedirs({dead!r})\nopen(os.path.join({dead!r}, 'metrics.jsonl'), 'w').write('{{}}\\n')\nraise SystemExit(3)\n"
  result = sd_start.one_run(dead, [sys.executable, "-c", script], timeout=120)
  assert result["failed"] == "exit 3, 1 step(s) within 120 s"
