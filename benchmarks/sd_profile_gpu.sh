#!/usr/bin/env bash
# Issue 20: where the Stable Diffusion step's GPU time goes, in ONE GPU call of under 9 minutes:
#   bash benchmarks/sd_profile_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY
# MAKE_RANDOM_SD_PY is ../shared/tools/make_random_sd.py (torch + diffusers): SD 2.1-base with random fp16 weights,
# written once per machine (~1 min). Two jobs, each sd_step.py with --profile (10 steps of the compiled step under
# jax.profiler, read into a table of kernels, categories and JAX ops) and --compare_deterministic (the step built
# and profiled with gpu_deterministic on and off in one process): XLA's attention, then cuDNN's. Each job's JSON
# (`profile`, `compare`, `determinism_cost`) and log (the tables) land in RESULTS_DIR; the raw traces do not (too
# big to bring back). A job past its limit is cut and the next one still runs.
set -u
R=${1:?usage: sd_profile_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}; MAKER=${2:?usage: sd_profile_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}
mkdir -p "$R"
CKPT=/tmp/sd21_base_random
t0=$(date +%s)
[ -f "$CKPT/unet/diffusion_pytorch_model.safetensors" ] || timeout 100 python3 "$MAKER" "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
echo "checkpoint ready after $(( $(date +%s) - t0 )) s"
nvidia-smi -L
job() {  # job NAME LIMIT_S command...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T) ($(( $(date +%s) - t0 )) s in)"
}
# Per job: loading ~30 s, two compiles of 40-60 s, 2 x (3 + 30 + 10) steps and reading two traces.
for attention in xla cudnn; do
  XLA_PYTHON_CLIENT_PREALLOCATE=false job "profile_bf16_$attention" 215 python3 benchmarks/sd_step.py \
    --model=$CKPT --dtype=bfloat16 --attention=$attention --noparts --steps=30 --profile=10 --compare_deterministic \
    --out="$R/profile_bf16_$attention.json"
done
for f in "$R"/profile_bf16_*.log; do
  echo "== $f"; grep -E "^(device trace|profile failed)" "$f"; grep -A 20 "^gpu_deterministic" "$f" | grep -E "^(gpu_det|  )"
done
