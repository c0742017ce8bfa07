#!/usr/bin/env bash
# Round 3 of the Shapes measurements (4 GPUs): sweeps with views kept for re-scoring, variants, bumpy judge.
set -u
R=$OUT/r3; mkdir -p "$R"
sweep() {  # sweep GPU LIMIT_S NAME SEEDS [flags...]
  local gpu=$1 limit=$2 name=$3 seeds=$4; shift 4
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=$seeds \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L
date +%T
(sweep 0 540 default_on 2) &
(sweep 1 330 default_off 2 --no_view_prompts; sweep 1 200 res32_on 1 --config.field.max_resolution=32 --config.field.num_levels=4) &
(sweep 2 260 blob5_on 1 --config.field.blob_density=5; sweep 2 260 lr3e2_on 1 --config.optim.lr=3e-2) &
(CUDA_VISIBLE_DEVICES=3 timeout 560 python3 -m dreamfusion_jax.classifier --workdir="$R/judge_bumpy" --steps=8000 \
   --batch=256 --bump_max=0.05 --time_limit_min=8.2 > "$R/judge_bumpy.log" 2>&1; echo "judge exit $? at $(date +%T)") &
wait
rm -rf "$R/judge_bumpy/checkpoints" "$R"/judge_bumpy/ckpt* 2>/dev/null
for n in res32_on blob5_on lr3e2_on; do rm -rf "$R/$n/views"; done
du -sh "$R"/* | tail -20
cd "$OUT" && tar -cf r3.tar r3 && rm -rf r3 && split -b 15m r3.tar r3.tar. && rm r3.tar && ls -la
