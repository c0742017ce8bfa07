#!/usr/bin/env bash
# Issue 20's memory measurements (fp32 that fits; the user path on a 6 GB card), on a 4-GPU host, one job per GPU:
#   bash benchmarks/sd_memory_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY
# MAKE_RANDOM_SD_PY is ../shared/tools/make_random_sd.py (torch + diffusers): SD 2.1-base with random fp16 weights.
#   GPU 0  fp32 step, as configured (deterministic), no preallocation: peak after compiling and after the steps, the
#          compiled step's memory_analysis, its largest cuDNN/cuBLAS workspaces and arrays (sd_step.py's step_memory);
#          then with every convolution in NHWC (--xla_gpu_force_conv_nhwc: XLA's older heuristic puts float32 ones in
#          NCHW, where cuDNN also offers FFT engines, whose workspace grows with the image)
#   GPU 1  the same with gpu_deterministic=false (XLA then picks each convolution's fastest cuDNN engine, whatever
#          its workspace), then with XLA's autotuning off (--xla_gpu_autotune_level=0: no candidates tried on the device)
#   GPU 2  fp32 step under a 12 GiB preallocated cap (does it run on a 16-24 GB card?), then the bf16 step under 4 GiB
#   GPU 3  the peacock path, 300 steps with validation and export, bf16, under a 6 GiB preallocated cap
# The turntable needs ffmpeg (IMAGEIO_FFMPEG_EXE on an image without one, as benchmarks/main_job_gpu.sh says).
set -u
R=${1:?usage: sd_memory_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}; MAKER=${2:?usage: sd_memory_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}
mkdir -p "$R"
CKPT=/tmp/sd21_base_random
[ -f "$CKPT/unet/diffusion_pytorch_model.safetensors" ] || python3 "$MAKER" "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
nvidia-smi -L
job() {  # job GPU NAME LIMIT_S command...
  local gpu=$1 name=$2 limit=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
STEP="python3 benchmarks/sd_step.py --model=$CKPT --steps=20 --noparts"
CAP="python3 benchmarks/sd_memory_cap.py --model=$CKPT"
(XLA_PYTHON_CLIENT_PREALLOCATE=false job 0 fp32_det 280 $STEP --dtype=float32 --out="$R/fp32_det.json"
 XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_FLAGS=--xla_gpu_force_conv_nhwc=true job 0 fp32_nhwc 280 $STEP \
    --dtype=float32 --out="$R/fp32_nhwc.json") &
(XLA_PYTHON_CLIENT_PREALLOCATE=false job 1 fp32_nondet 280 $STEP --dtype=float32 --deterministic=false \
    --out="$R/fp32_nondet.json"
 XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_FLAGS=--xla_gpu_autotune_level=0 job 1 fp32_noautotune 280 $STEP \
    --dtype=float32 --out="$R/fp32_noautotune.json") &
(job 2 fp32_cap12 280 $CAP --cases=step --step_cap_gib=12 --step_flag=--dtype=float32 --timeout_s=270 \
    --out="$R/fp32_cap12.json"
 job 2 bf16_step_cap4 280 $CAP --cases=step --step_cap_gib=4 --timeout_s=270 --out="$R/bf16_step_cap4.json") &
job 3 peacock_cap6 560 $CAP --cases=path --cap_gib=6 --timeout_s=550 --out="$R/peacock_cap6.json" &
wait
python3 - "$R" <<'EOF'
import json, os, sys
r = sys.argv[1]
for name in ("fp32_det", "fp32_nhwc", "fp32_nondet", "fp32_noautotune", "fp32_cap12", "bf16_step_cap4", "peacock_cap6"):
  path = os.path.join(r, name + ".json")
  if not os.path.isfile(path):
    print(name, "no result; see", name + ".log"); continue
  j = json.load(open(path))
  if "step_memory" in j:
    m = j["step_memory"]
    print(name, "peak after compile", j["peak_gb_compiled"], "GiB, after steps", j["peak_gb"], "GiB,",
          j["step_ms"], "ms, memory_analysis", m["memory_analysis"])
    for w in m["workspaces"][:5]:
      print("   workspace", w["workspace_gb"], "GiB", w["target"], "engine", w["engine"], w["output"], w["op_name"][-80:])
    for a in m["largest_arrays"][:5]:
      print("   array", a["gb"], "GiB", a["shape"], a["op_name"][-90:])
  for case in ("path", "step"):
    if case in j:
      c = j[case]
      print(name, case, "finished" if c["finished"] else "FAILED", "cap", c["cap_gib"], "GiB, peak", c["peak_gib"],
            "GiB, limit", c["bytes_limit_gib"], "GiB,", c["wall_s"], "s")
      for line in c.get("log_tail", [])[-6:]:
        print("   ", line[:200])
EOF
