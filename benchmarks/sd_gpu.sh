#!/usr/bin/env bash
# BENCHMARKS.md's Stable Diffusion step measurements, on a 4-GPU host (one variant per GPU, in parallel):
#   bash benchmarks/sd_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY
# MAKE_RANDOM_SD_PY is ../shared/tools/make_random_sd.py (needs torch and diffusers): it writes the SD
# 2.1-base architecture with random fp16 weights in the diffusers layout, which benchmarks/sd_step.py
# loads through the project's loader.
set -u
R=${1:?usage: sd_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}; MAKER=${2:?usage: sd_gpu.sh RESULTS_DIR MAKE_RANDOM_SD_PY}
mkdir -p "$R"
CKPT=/tmp/sd21_base_random
t0=$(date +%s)
[ -f "$CKPT/unet/diffusion_pytorch_model.safetensors" ] || python3 "$MAKER" "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
echo "random checkpoint ready after $(( $(date +%s) - t0 )) s"; du -sh "$CKPT"/* | tee -a "$R/make_random_sd.log"
variant() {  # variant GPU NAME [flags...]
  local gpu=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 330 python3 benchmarks/sd_step.py \
      --model="$CKPT" --out="$R/$name.json" "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L
variant 0 fp32 --dtype=float32 &
variant 1 bf16 --dtype=bfloat16 &
variant 2 bf16_remat --dtype=bfloat16 --remat &
variant 3 bf16_remat_cudnn --dtype=bfloat16 --remat --attention=cudnn &
wait
for f in "$R"/*.json; do echo "$f"; cat "$f"; echo; done
