#!/usr/bin/env bash
set -u
R=$OUT/sd5; mkdir -p "$R"; CKPT=/tmp/sd21_base_random
python3 runs/make_random_sd.py "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
variant() {  # variant GPU NAME [flags...]
  local gpu=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 300 python3 benchmarks/sd_step.py \
      --model="$CKPT" --out="$R/$name.json" "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
variant 0 bf16_remat_cudnn --dtype=bfloat16 --remat --attention=cudnn &
variant 1 bf16_cudnn --dtype=bfloat16 --attention=cudnn &
variant 2 fp32_remat --dtype=float32 --remat &
XLA_FLAGS=--xla_gpu_autotune_level=0 variant 3 fp32_noautotune --dtype=float32 &
wait
for f in "$R"/*.json; do echo "$f"; tr -d '\n ' < "$f"; echo; done
for f in "$R"/*.log; do grep -v "^W1128\|Warning" "$f" | tail -30 > "$f.tail"; mv "$f.tail" "$f"; done
