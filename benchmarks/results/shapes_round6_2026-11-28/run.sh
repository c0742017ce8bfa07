#!/usr/bin/env bash
set -u
R=$OUT/r6; mkdir -p "$R"
sweep() {  # sweep GPU LIMIT_S NAME SEEDS [flags...]
  local gpu=$1 limit=$2 name=$3 seeds=$4; shift 4
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=$seeds \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"; rm -rf "$R/$name/views"
}
sweep 0 245 r040_on 1 --config.field.blob_radius=0.4 &
sweep 1 245 r035_on 1 --config.field.blob_radius=0.35 &
sweep 2 245 r040_d5_on 1 --config.field.blob_radius=0.4 --config.field.blob_density=5 &
sweep 3 245 r030_on 1 --config.field.blob_radius=0.3 &
wait
cd "$OUT" && tar -czf r6.tgz r6 && rm -rf r6 && ls -la
