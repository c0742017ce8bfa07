#!/usr/bin/env bash
set -u
bash benchmarks/sd_gpu.sh "$OUT/sd" runs/make_random_sd.py
R=$OUT/r4; mkdir -p "$R"
sweep() {  # sweep GPU LIMIT_S NAME SEEDS [flags...]
  local gpu=$1 limit=$2 name=$3 seeds=$4; shift 4
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=$seeds \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"; rm -rf "$R/$name/views"
}
left=$(( 560 - SECONDS )); echo "sweeps get $left s"
sweep 0 $left noalbedo_on 1 --config.shading.albedo_warmup_steps=0 --config.shading.shaded_prob=1.0 &
sweep 1 $left scale50_on 1 --config.guidance.scale=50 &
sweep 2 $left noalbedo_lr3e2_on 1 --config.shading.albedo_warmup_steps=0 --config.shading.shaded_prob=1.0 --config.optim.lr=3e-2 &
sweep 3 $left tex03_on 1 --config.shading.textureless_prob=0.3 &
wait
cd "$OUT" && tar -czf r4.tgz r4 sd && rm -rf r4 sd && ls -la
