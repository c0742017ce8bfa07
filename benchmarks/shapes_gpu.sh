#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md's Shapes section, as run on a 4-GPU host (one job per GPU):
#   bash benchmarks/shapes_gpu.sh RESULTS_DIR
# GPU 3 times the README's main job (configs/default.py, one seed, export included) and scores it;
# the other GPUs sweep every caption x 2 seeds under configs/default.py and variants of it. Each job
# has a time limit so that the whole script ends within ~9.5 minutes.
set -u
R=${1:?usage: shapes_gpu.sh RESULTS_DIR}
mkdir -p "$R"
sweep() {  # sweep GPU LIMIT_S NAME [flags...]
  local gpu=$1 limit=$2 name=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=2 \
      --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
main_job() {
  local t0 t1 t2
  t0=$(date +%s.%N)
  CUDA_VISIBLE_DEVICES=3 timeout 150 python3 -m dreamfusion_jax.main --config=configs/default.py \
      --workdir="$R/default" --config.progress_bar=false > "$R/default.log" 2>&1
  t1=$(date +%s.%N)
  CUDA_VISIBLE_DEVICES=3 timeout 90 python3 -m dreamfusion_jax.evaluate --workdir="$R/default" >> "$R/default.log" 2>&1
  t2=$(date +%s.%N)
  python3 -c "print(f'main job wall {$t1 - $t0:.1f} s, evaluate wall {$t2 - $t1:.1f} s')" | tee "$R/default_timing.txt"
}
nvidia-smi -L
(sweep 0 290 default_on; sweep 0 230 default_off --no_view_prompts) &
(sweep 1 330 steps3000_on --config.num_steps=3000; sweep 1 190 cfg30_on --config.guidance.scale=30) &
(sweep 2 290 entropy20_on --config.reg.entropy=20; sweep 2 230 render64_on --config.render.image_size=64 \
     --config.render.num_coarse=64 --config.render.num_fine=32) &
(main_job; sweep 3 300 default_on_seeds23 --first_seed=2) &
wait
