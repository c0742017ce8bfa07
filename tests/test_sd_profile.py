"""benchmarks/step_profile.py (a profiler trace's device time by kernel, category and JAX op) and sd_step.py's
--profile / --compare_deterministic: the categoriser and the parser on a hand-written GPU-like trace with known
answers, and sd_step.py end to end on a tiny Stable Diffusion on the CPU (the trace's XLA instruction events)."""

import gzip
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sd_tiny  # noqa: E402
import step_profile  # noqa: E402


@pytest.mark.parametrize(
  "name, category",
  [
    (
      "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64_warpgroupsize1x1x1",
      "convolution",
    ),
    ("sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nchw", "convolution"),
    ("void cudnn::winograd_nonfused::winogradForwardData4x4<float, float>", "convolution"),
    ("cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_nn_align8", "gemm"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "gemm"),
    ("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_TNT", "gemm"),
    ("gemm_fusion_dot_42", "gemm"),
    ("flash_fwd_kernel", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x128", "attention"),
    ("loop_fusion_123", "fusion"),
    ("input_reduce_fusion_7", "fusion"),
    ("loop_convert_fusion_3", "fusion"),  # 'convert' is not a convolution.
    ("input_scatter_fusion", "scatter/gather/sort"),
    ("copy_gather_fusion.1", "scatter/gather/sort"),
    ("loop_transpose_fusion", "copy/transpose"),
    ("MemcpyD2D", "copy/transpose"),
    ("ThreadpoolListener::Record", "other"),
  ],
)
def test_kernel_names_fall_in_the_documented_categories(name, category):
  assert step_profile.categorise(name) == category


def test_op_names_read_as_model_parts():
  unet = "jit(single)/jvp(UNet2DConditionModel)/down_blocks_0/attentions_0/transformer_blocks_0/attn1/dot_general"
  assert step_profile.component(unet) == "UNet"
  assert step_profile.source_label(unet) == "UNet down_blocks_0/attentions_0/.../attn1 dot_general"
  vae = (
    "jit(single)/transpose(jvp(AutoencoderKL.encode))/AutoencoderKL.encode_moments/encoder/conv_in/conv_general_dilated"
  )
  assert step_profile.source_label(vae) == "VAE encoder backward conv_in conv_general_dilated"
  assert step_profile.component("jit(single)/jvp(Scene.field)/nerf/encoding/gather") == "NeRF field"
  assert step_profile.component("jit(single)/jvp()/reduce_sum") == "other" and step_profile.component("") == ""


# The step's HLO as XLA prints it after optimisation (only what the parser reads: the module name and each
# instruction's op_name).
HLO = """HloModule jit_single, is_scheduled=true

ENTRY %main.9 (p.1: f32[4,64,64,4]) -> f32[4,64,64,4] {
  %p.1 = f32[4,64,64,4]{3,2,1,0} parameter(0)
  %cudnn-conv.1 = (f32[4,64,64,4]{3,2,1,0}, u8[0]{0}) custom-call(%p.1, %p.1), custom_call_target="__cudnn$convForward", metadata={op_name="jit(single)/jvp(UNet2DConditionModel)/conv_in/conv_general_dilated"}
  %cudnn-conv.2 = (f32[4,64,64,4]{3,2,1,0}, u8[0]{0}) custom-call(%p.1, %p.1), custom_call_target="__cudnn$convBackwardInput", metadata={op_name="jit(single)/transpose(jvp(AutoencoderKL.encode))/AutoencoderKL.encode_moments/encoder/conv_in/conv_general_dilated"}
  %gemm.3 = (f32[64,64]{1,0}, s8[0]{0}) custom-call(%p.1), custom_call_target="__cublas$lt$matmul", metadata={op_name="jit(single)/jvp(UNet2DConditionModel)/mid_block/attentions_0/proj_in/dot_general"}
  %loop_add_fusion.4 = f32[4,64,64,4]{3,2,1,0} fusion(%p.1), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(single)/jvp(Scene.field)/nerf/hidden_0/add"}
  %fmha.5 = (f32[4,64,64,4]{3,2,1,0}, u8[0]{0}) custom-call(%p.1), custom_call_target="__cudnn$fmhaSoftmax", metadata={op_name="jit(single)/jvp(UNet2DConditionModel)/mid_block/attentions_0/transformer_blocks_0/attn1/dot_product_attention"}
  ROOT %input_scatter_fusion.6 = f32[4,64,64,4]{3,2,1,0} fusion(%p.1), kind=kInput, calls=%fused_computation.1, metadata={op_name="jit(single)/transpose(jvp(Scene.field))/nerf/encoding/scatter-add"}
}
"""


def _gpu_trace() -> tuple[dict, dict]:
  """A GPU-like trace of 2 steps as jax's perfetto_trace.json.gz holds it, and the answers: per step (us) a conv
  forward 100 + a conv backward 60 on stream 7 (one cuDNN kernel name for both), a GEMM 50, flash attention 40,
  a loop fusion 30, a scatter fusion 20, and a 10 us memcpy on stream 13 that overlaps the last 5 us of these; a
  kernel of another program (8 us), CUPTI overhead, a derived 'XLA Ops' line and host events, none of them
  the step's device time."""
  conv = "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc"
  meta = [
    dict(ph="M", pid=1, name="process_name", args=dict(name="/device:GPU:0 NVIDIA H200")),
    dict(ph="M", pid=1, tid=7, name="thread_name", args=dict(name="Stream #7(Kernel)")),
    dict(ph="M", pid=1, tid=13, name="thread_name", args=dict(name="Stream #13(MemcpyD2D)")),
    dict(ph="M", pid=1, tid=99, name="thread_name", args=dict(name="CUPTI overhead")),
    dict(ph="M", pid=1, tid=100, name="thread_name", args=dict(name="XLA Ops")),
    dict(ph="M", pid=2, name="process_name", args=dict(name="/host:CPU")),
    dict(ph="M", pid=2, tid=5, name="thread_name", args=dict(name="python")),
  ]
  events = []
  for step in range(2):
    t = 1000.0 * step
    for name, hlo_op, dur in [
      (conv, "cudnn-conv.1", 100),
      (conv, "cudnn-conv.2", 60),
      ("cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64", "gemm.3", 50),
      ("flash_fwd_kernel", "fmha.5", 40),
      ("loop_add_fusion", "loop_add_fusion.4", 30),
      ("input_scatter_fusion", "input_scatter_fusion.6", 20),
    ]:
      args = dict(hlo_op=hlo_op, hlo_module="jit_single", correlation_id="1")
      events.append(dict(ph="X", pid=1, tid=7, ts=t, dur=dur, name=name, args=args))
      t += dur
    memcpy = dict(ph="X", pid=1, tid=13, ts=t - 5, dur=10, name="MemcpyD2D", args=dict(hlo_module="jit_single"))
    events.append(memcpy)
    other = dict(hlo_op="fusion.1", hlo_module="jit_other")
    events.append(dict(ph="X", pid=1, tid=7, ts=t + 100, dur=8, name="loop_fusion_9", args=other))
    events.append(dict(ph="X", pid=1, tid=99, ts=1000.0 * step, dur=300, name="CUPTI overhead"))
    events.append(dict(ph="X", pid=1, tid=100, ts=1000.0 * step, dur=160, name="cudnn-conv.1"))
    events.append(dict(ph="X", pid=2, tid=5, ts=1000.0 * step, dur=900, name="PjitFunction(step)"))
  return dict(displayTimeUnit="ns", traceEvents=meta + events), dict(conv=conv)


def test_the_parser_sums_a_gpu_trace_by_kernel_category_and_source(tmp_path):
  trace, names = _gpu_trace()
  run = tmp_path / "plugins" / "profile" / "2026_01_01"
  run.mkdir(parents=True)
  with gzip.open(run / "perfetto_trace.json.gz", "wt") as f:
    json.dump(trace, f)
  path = step_profile.find_trace(str(tmp_path))
  assert path.endswith("perfetto_trace.json.gz")
  kind, events = step_profile.device_events(step_profile.load_trace(path))
  assert kind == "gpu" and len(events) == 2 * 8  # 6 kernels, a memcpy, another program's kernel; per step.
  p = step_profile.summarise(step_profile.load_trace(path), HLO, steps=2, wall_ms=2 * 0.5)
  assert p["trace"] == "gpu" and p["module"] == "jit_single"
  assert p["kernel_ms"] == pytest.approx(0.310) and p["busy_ms"] == pytest.approx(0.305)  # The memcpy overlaps 5 us.
  assert p["wall_ms"] == 0.5 and p["idle_ms"] == pytest.approx(0.195) and p["busy_share"] == pytest.approx(0.61)
  assert p["other_modules_ms"] == {"jit_other": pytest.approx(0.008)}
  top = p["kernels"][0]
  assert (top["name"], top["category"], top["ms"], top["count"]) == (names["conv"], "convolution", 0.16, 2.0)
  assert top["hlo_op"] == "cudnn-conv.1" and top["source"] == "UNet conv_in conv_general_dilated"
  cats = {name: c["ms"] for name, c in p["categories"].items()}
  assert cats == pytest.approx(
    {
      "attention": 0.04,
      "convolution": 0.16,
      "gemm": 0.05,
      "scatter/gather/sort": 0.02,
      "copy/transpose": 0.01,
      "fusion": 0.03,
      "other": 0.0,
    }
  )
  assert sum(c["share"] for c in p["categories"].values()) == pytest.approx(1.0, abs=1e-3)
  parts = {name: c["ms"] for name, c in p["components"].items()}
  assert parts == pytest.approx(
    {"UNet": 0.19, "VAE encoder backward": 0.06, "NeRF field": 0.03, "NeRF field backward": 0.02, "(unknown)": 0.01}
  )
  sources = {s["source"]: s["ms"] for s in p["sources"]}
  assert sources["VAE encoder backward conv_in conv_general_dilated"] == pytest.approx(0.06)
  assert sources["UNet mid_block/attentions_0/.../attn1 dot_product_attention"] == pytest.approx(0.04)
  assert p["hlo_op_share"] == pytest.approx(0.3 / 0.31, abs=1e-3)  # All but the memcpy name their instruction.
  text = step_profile.table(p)
  assert "convolution" in text and names["conv"][:40] in text and "UNet conv_in conv_general_dilated" in text
  p_short = step_profile.summarise(trace, HLO, steps=2, wall_ms=1.0, top=2)
  assert len(p_short["kernels"]) == 2 and p_short["other_kernels"]["n"] == 4
  assert sum(k["ms"] for k in p_short["kernels"]) + p_short["other_kernels"]["ms"] == pytest.approx(0.31)


def test_kernels_inside_a_command_buffer_are_named_by_their_fusion():
  """With command buffers (CUDA graphs) on, the trace's hlo_op of a fused kernel is the command buffer; the kernel's
  own name is its fusion's, with '.' as '_'. As in the H100 profile of 2026-12-06, where 72% of kernel time was
  unattributed before this."""
  hlo = HLO.replace(
    "ENTRY %main.9",
    """%command_buffer (p: f32[4,64,64,4]) -> f32[4,64,64,4] {
  %p = f32[4,64,64,4]{3,2,1,0} parameter(0)
  ROOT %loop_multiply_fusion.52 = f32[4,64,64,4]{3,2,1,0} fusion(%p), kind=kLoop, calls=%fused_computation.7, metadata={op_name="jit(single)/jvp(UNet2DConditionModel)/up_blocks_3/resnets_0/norm1/mul"}
}

ENTRY %main.9""",
  )
  trace, _ = _gpu_trace()
  for step in range(2):
    args = dict(hlo_op="command_buffer_3", hlo_module="jit_single")
    trace["traceEvents"].append(
      dict(ph="X", pid=1, tid=7, ts=1000.0 * step + 600, dur=25, name="loop_multiply_fusion_52", args=args)
    )
    # A kernel of the command buffer whose name is no instruction's stays unattributed.
    trace["traceEvents"].append(
      dict(ph="X", pid=1, tid=7, ts=1000.0 * step + 700, dur=5, name="loop_multiply_fusion_99", args=args)
    )
  p = step_profile.summarise(trace, hlo, steps=2, wall_ms=1.0)
  parts = {name: c["ms"] for name, c in p["components"].items()}
  assert parts["UNet"] == pytest.approx(0.19 + 0.025)
  assert parts["(unknown)"] == pytest.approx(0.01 + 0.005)
  row = next(k for k in p["kernels"] if k["name"] == "loop_multiply_fusion_52")
  assert row["hlo_op"] == "command_buffer_3" and row["source"] == "UNet up_blocks_3/resnets_0/norm1 mul"
  assert step_profile.kernel_op_names(hlo)["loop_multiply_fusion_52"].endswith("norm1/mul")
  assert step_profile.kernel_op_names(HLO)["cudnn_conv_1"].endswith("conv_in/conv_general_dilated")


def test_nested_cpu_events_count_once_and_end_markers_not_at_all():
  """The CPU's thunk events: a while loop's event encloses its body's on the same thread, so the loop's own time
  is what its body leaves; `end: ...` markers and events without hlo_op are not instructions."""
  meta = [dict(ph="M", pid=3, name="process_name", args=dict(name="/host:CPU"))]
  args = lambda op: dict(hlo_op=op, hlo_module="jit_single")  # noqa: E731
  events = [
    dict(ph="X", pid=3, tid=1, ts=0, dur=100, name="while.1", args=args("while.1")),
    dict(ph="X", pid=3, tid=1, ts=10, dur=30, name="dot.2", args=args("dot.2")),
    dict(ph="X", pid=3, tid=1, ts=50, dur=40, name="loop_fusion", args=args("loop_fusion")),
    dict(ph="X", pid=3, tid=1, ts=90, dur=0.1, name="end: loop_fusion", args=args("loop_fusion")),
    dict(ph="X", pid=3, tid=2, ts=20, dur=50, name="convolution", args=args("convolution")),
    dict(ph="X", pid=3, tid=2, ts=0, dur=500, name="ThunkExecutor::Execute (wait for completion)", args={}),
  ]
  kind, found = step_profile.device_events(dict(traceEvents=meta + events))
  assert kind == "cpu" and [e["name"] for e in found] == ["while.1", "dot.2", "loop_fusion", "convolution"]
  assert step_profile.self_times(found) == [30, 30, 40, 50]
  assert step_profile.busy_us(found) == 100  # The convolution on the other thread runs inside the loop's time.
  p = step_profile.summarise(dict(traceEvents=meta + events), "HloModule jit_single\n", steps=1, wall_ms=0.2)
  assert p["kernel_ms"] == 0.15 and p["busy_ms"] == 0.1 and p["categories"]["gemm"]["ms"] == 0.03
  assert p["categories"]["other"]["ms"] == 0.03  # The loop's own time: 'while' is no category of its own.
  assert step_profile.device_events(dict(traceEvents=[]))[0] == "none"


def test_the_difference_of_two_profiles_is_per_category_and_part():
  trace, _ = _gpu_trace()
  a = step_profile.summarise(trace, HLO, steps=2, wall_ms=1.0)
  b = step_profile.summarise(trace, HLO, steps=1, wall_ms=1.0)  # The same events as one step: every time doubles.
  d = step_profile.difference(b, a)
  assert d["busy_ms"] == pytest.approx(0.305) and d["wall_ms"] == pytest.approx(0.5)
  assert d["categories"]["convolution"] == pytest.approx(0.16) and d["components"]["UNet"] == pytest.approx(0.19)
  assert "convolution" in step_profile.diff_table(d, "b - a")


def test_sd_step_profiles_its_compiled_step_on_the_cpu(tmp_path):
  """sd_step.py --profile=2 --compare_deterministic on a tiny SD (CPU): the table is printed, the JSON's profile
  is of the step's own module, its kernels sum to its kernel time and its categories partition them, the busy
  time fits in the wall time, and the second variant is measured and differenced. The persistent compile cache
  lets the second (on a CPU identical) compile load the first's."""
  tiny = sd_tiny.build("sd2", str(tmp_path / "sd2"))
  out, traces = tmp_path / "profile.json", tmp_path / "traces"
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  small = ["--image_size=16", "--render_size=16", "--dtype=float32", "--steps=1", "--noparts"]
  proc = subprocess.run(
    [sys.executable, os.path.join("benchmarks", "sd_step.py"), f"--model={tiny.folder}", *small, "--profile=2"]
    + ["--compare_deterministic", f"--out={out}", f"--profile_dir={traces}"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
  assert (
    proc.stdout.count("device trace: cpu, module jit_single, 2 steps") == 2
    and "gpu_deterministic on - off" in proc.stdout
  )
  for p in (result["profile"], result["compare"]["profile"]):
    assert p["trace"] == "cpu" and p["module"] == "jit_single" and p["steps"] == 2 and p["hlo_op_share"] > 0.99
    assert len(p["kernels"]) == 40 and p["other_kernels"]["n"] > 0
    listed = sum(k["ms"] for k in p["kernels"]) + p["other_kernels"]["ms"]
    assert listed == pytest.approx(p["kernel_ms"], rel=1e-3, abs=2e-3)
    assert sum(c["ms"] for c in p["categories"].values()) == pytest.approx(p["kernel_ms"], rel=1e-3, abs=2e-3)
    assert sum(c["share"] for c in p["categories"].values()) == pytest.approx(1.0, abs=1e-3)
    assert all(k["category"] in p["categories"] for k in p["kernels"])
    assert sum(c["ms"] for c in p["components"].values()) == pytest.approx(p["kernel_ms"], rel=1e-3, abs=2e-3)
    assert 0 < p["busy_ms"] <= p["kernel_ms"] + 1e-3 and p["busy_ms"] <= p["wall_ms"] * 1.01
    assert "idle_ms_unprofiled" in p and p["idle_ms"] == pytest.approx(p["wall_ms"] - p["busy_ms"], abs=2e-3)
    assert {"UNet", "VAE encoder", "VAE encoder backward", "NeRF field", "NeRF field backward"} <= set(p["components"])
  assert result["deterministic"] and not result["compare"]["deterministic"]
  assert result["determinism_cost_ms"] == pytest.approx(result["step_ms"] - result["compare"]["step_ms"], abs=0.02)
  assert set(result["determinism_cost"]["categories"]) == set(result["profile"]["categories"])
  assert len(list(traces.glob("deterministic_*/**/perfetto_trace.json.gz"))) == 2  # --profile_dir keeps them.


def test_sd_step_set_overrides_the_config_with_literals_and_strings():
  import sd_step

  sets = ["sdf.eikonal=1000.0", "field.density_activation=volsdf", "camera.distance_range=(1.25, 1.25)"]
  parsed = sd_step.parse_sets(sets)
  assert parsed == {"sdf.eikonal": 1000.0, "field.density_activation": "volsdf", "camera.distance_range": (1.25, 1.25)}
  config = sd_step.sd_config("some/folder", overrides=parsed)
  assert config.sdf.eikonal == 1000.0 and config.field.density_activation == "volsdf"
  assert tuple(config.camera.distance_range) == (1.25, 1.25)
  with pytest.raises(SystemExit, match="KEY=VALUE"):
    sd_step.parse_sets(["sdf.eikonal"])
