"""benchmarks/sd_memory_cap.py (a memory cap as a smaller card's) and benchmarks/hlo_memory.py (where a compiled
program's memory goes): the cap's arithmetic, the device's total from nvidia-smi, the HLO reading against
hand-counted buffers, and one capped child end to end on a tiny Stable Diffusion (CPU: the cap reaches the
child's environment, the JSON is whole)."""

import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hlo_memory  # noqa: E402
import sd_memory_cap  # noqa: E402
import sd_tiny  # noqa: E402

GIB = 2**30


def test_fraction_leaves_the_cap_and_never_more():
  total = 143771 * 2**20  # An H200 as nvidia-smi reports it (MiB).
  f = sd_memory_cap.mem_fraction(6 * GIB, total)
  assert f * total <= 6 * GIB < (f + 1e-6) * total  # The largest fraction (to 1e-6) within the cap.
  assert sd_memory_cap.mem_fraction(4 * GIB, 16 * GIB) == 0.25
  with pytest.raises(ValueError, match="does not fit"):
    sd_memory_cap.mem_fraction(20 * GIB, 16 * GIB)
  base = {"XLA_PYTHON_CLIENT_ALLOCATOR": "platform", "XLA_CLIENT_MEM_FRACTION": "0.9", "KEEP": "1"}
  capped = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.041234", "KEEP": "1"}
  assert sd_memory_cap.capped_env(0.041234, base) == {**capped, "XLA_PYTHON_CLIENT_ALLOCATOR": "bfc"}
  env = sd_memory_cap.capped_env(0.041234, base, "cuda_async")
  assert env == {**capped, "XLA_PYTHON_CLIENT_ALLOCATOR": "cuda_async"}
  with pytest.raises(ValueError, match="bfc or cuda_async"):  # It would allocate past the fraction.
    sd_memory_cap.capped_env(0.041234, base, "platform")


def test_device_total_comes_from_nvidia_smi_of_the_first_visible_gpu(tmp_path, monkeypatch):
  fake = tmp_path / "nvidia-smi"
  fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\necho 81559\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
  assert sd_memory_cap.device_total_bytes() == 81559 * 2**20
  assert "--id=3" in (tmp_path / "args").read_text()
  monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
  assert sd_memory_cap.device_total_bytes() is None


def test_the_path_finishes_only_with_exit_0_and_every_export_file(tmp_path):
  from dreamfusion_jax import export

  seed = tmp_path / "seed_0"
  seed.mkdir()
  (tmp_path / "validation").mkdir()
  (tmp_path / "validation" / "step_100.png").write_bytes(b"png")
  stats = tmp_path / "memory_stats.json"
  stats.write_text(json.dumps({"device": "NVIDIA H200", "memory_stats": {"peak_bytes_in_use": 3 * GIB}}))
  names = [n for part in export.PARTS.values() for n in part]
  for name in names[:-1]:
    (seed / name).write_bytes(b"x")
  out = sd_memory_cap.path_outcome(str(tmp_path), 0, str(stats))
  assert not out["finished"] and out["exports"] == {"seed_0": ["mesh"]}  # One mesh file is missing.
  assert out["peak_gib"] == 3.0 and out["bytes_limit_gib"] is None and out["device"] == "NVIDIA H200"
  assert out["validation_images"] == 1
  (seed / names[-1]).write_bytes(b"x")
  assert sd_memory_cap.path_outcome(str(tmp_path), 0, str(stats))["finished"]
  assert not sd_memory_cap.path_outcome(str(tmp_path), 1, str(stats))["finished"]  # Failed after the export.
  assert not sd_memory_cap.path_outcome(str(tmp_path), None, str(tmp_path / "none"))["finished"]  # Timed out.


# Two instructions as XLA's GPU compiler prints them after autotuning: a cuDNN convolution with its workspace and
# a cuBLAS GEMM with its own, in the entry computation; a fusion body, whose values are not buffers.
GPU_HLO = """HloModule jit_step, is_scheduled=true

%fused_computation.7 (param_0: f32[1,512,512,128]) -> f32[1,512,512,128] {
  %param_0 = f32[1,512,512,128]{3,2,1,0} parameter(0)
  ROOT %big.1 = f32[4,512,512,128]{3,2,1,0} broadcast(%param_0), dimensions={1,2,3,4}
}

ENTRY %main.9 (p.1: f32[1,512,512,128], w.2: f32[3,3,128,128]) -> f32[1,512,512,128] {
  %p.1 = f32[1,512,512,128]{3,2,1,0} parameter(0), metadata={op_name="x"}
  %w.2 = f32[3,3,128,128]{3,2,1,0} parameter(1)
  %custom-call.3 = (f32[1,512,512,128]{3,2,1,0}, u8[34359738368]{0}) custom-call(%p.1, %w.2), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, custom_call_target="__cudnn$convForward", metadata={op_name="jit(step)/vae/conv_in/conv_general_dilated"}, backend_config={"cudnn_conv_backend_config":{"algorithm":{"algo_id":"14","math_type":"DEFAULT_MATH","tuning_knobs":{"2":"1"},"is_cudnn_frontend":true,"workspace_size":"34359738368"}}}
  %gte.4 = f32[1,512,512,128]{3,2,1,0} get-tuple-element(%custom-call.3), index=0
  %custom-call.5 = (f32[4096,512]{1,0}, s8[33554432]{0}) custom-call(%gte.4, %w.2), custom_call_target="__cublas$lt$matmul"
  ROOT %fusion.6 = f32[1,512,512,128]{3,2,1,0} fusion(%gte.4), kind=kLoop, calls=%fused_computation.7
}
"""


def test_hlo_reading_names_the_workspaces_and_the_buffers():
  spaces = hlo_memory.workspaces(GPU_HLO)
  assert [(w["name"], w["target"], w["workspace_bytes"]) for w in spaces] == [
    ("custom-call.3", "__cudnn$convForward", 32 * GIB),
    ("custom-call.5", "__cublas$lt$matmul", 32 * 2**20),
  ]
  assert spaces[0]["output"] == "f32[1,512,512,128]{3,2,1,0}" and spaces[0]["op_name"].endswith(
    "conv_in/conv_general_dilated"
  )
  assert spaces[0]["engine"] == '14 {"2":"1"}' and spaces[1]["engine"] == ""
  arrays = hlo_memory.largest_arrays(GPU_HLO, top=100)
  assert (arrays[0]["name"], arrays[0]["bytes"]) == ("custom-call.3", 32 * GIB)
  # Then the 128 MiB activations; the fusion body's 512 MiB broadcast is not a buffer, so it is not listed.
  assert {a["name"] for a in arrays if a["bytes"] == 128 * 2**20} == {"p.1", "custom-call.3", "gte.4", "fusion.6"}
  assert "big.1" not in {a["name"] for a in arrays} and len(arrays) == 8
  assert hlo_memory.array_bytes("bf16", "2,5,4096,4096") == 2 * 5 * 4096 * 4096 * 2
  assert hlo_memory.array_bytes("f32", "") == 4


def test_a_compiled_programs_summary_matches_its_memory_analysis():
  import jax
  import jax.numpy as jnp

  def f(x):
    return jnp.sum(jnp.tanh(x @ x.T) ** 2)

  compiled = jax.jit(jax.grad(f)).lower(jax.ShapeDtypeStruct((512, 256), jnp.float32)).compile()
  s = hlo_memory.summary(compiled)
  assert s["memory_analysis"]["argument_gb"] == round(512 * 256 * 4 / GIB, 3)
  assert s["workspaces"] == []  # The CPU compiler calls no library with a workspace.
  assert max(a["gb"] for a in s["largest_arrays"]) == round(512 * 512 * 4 / GIB, 3)  # x @ x.T, the largest.


def _run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
  """benchmarks/SCRIPT ARGS in a child on the CPU, from the repository root."""
  return subprocess.run(
    [sys.executable, os.path.join("benchmarks", script), *args],
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_the_step_runs_in_a_capped_child_and_reports_it(tmp_path):
  """--cases=step on a tiny SD (CPU, a device of 24 GiB as if nvidia-smi said so): the fraction of a 4 GiB cap
  reaches sd_step.py's environment with preallocation on, and the JSON (printed and written) is whole."""
  tiny = sd_tiny.build("sd2", str(tmp_path / "sd2"))
  out = tmp_path / "cap.json"
  small = ["--step_flag=--image_size=16", "--step_flag=--render_size=16", "--step_flag=--dtype=float32"]
  proc = _run_benchmark(
    "sd_memory_cap.py",
    f"--model={tiny.folder}",
    "--cases=step",
    "--total_gib=24",
    "--step_steps=1",
    f"--out={out}",
    *small,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
  assert result["capped"] and result["total_gib"] == 24.0 and "path" not in result
  step = result["step"]
  assert step["finished"] and step["exit_code"] == 0 and step["cap_gib"] == 4.0
  assert step["mem_fraction"] == sd_memory_cap.mem_fraction(4 * GIB, 24 * GIB) == 0.166666
  child = step["sd_step"]
  assert child["mem_fraction"] == "0.166666" and child["preallocate"] == "true"
  assert child["finite"] and child["step_memory"]["memory_analysis"]["temp_gb"] > 0
  assert step["peak_gib"] is None  # The CPU keeps no allocator statistics; a GPU's peak lands here.
  # sd_step.py --abstract compiles the same step from the folder's config files alone (the weights as shapes):
  # the program is the one the loaded weights ran, so its memory_analysis is the same to the byte.
  abstract = tmp_path / "abstract.json"
  proc = _run_benchmark(
    "sd_step.py", f"--model={tiny.folder}", "--abstract", f"--out={abstract}", *[f.split("=", 1)[1] for f in small]
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  shapes_only = json.loads(abstract.read_text())
  assert shapes_only["abstract"] and shapes_only["dtype"] == "float32"
  assert shapes_only["step_memory"]["memory_analysis"] == child["step_memory"]["memory_analysis"]
