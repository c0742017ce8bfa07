#!/usr/bin/env bash
# Round 32: the new default (field.albedo_bias=1.4) and the new shade-aware judge. (1) The main job alone on
# the GPU, timed start to last export, then scored by evaluate. (2) The Janus rate without view prompts on
# seeds 3, 4, 5 (the sweeps with view prompts ran in rounds 30 and 31: 0 Janus).
set -u
R=$OUT/r32; mkdir -p "$R"
nvidia-smi -L; date +%T
start=$(date +%s.%N)
python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/main_job --config.progress_bar=false \
    > "$R/main_job.log" 2>&1
echo "main job exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
start=$(date +%s.%N)
python3 -m dreamfusion_jax.evaluate --workdir=/tmp/main_job > "$R/evaluate.log" 2>&1
echo "evaluate exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
cp /tmp/main_job/evaluation.json "$R/"; ls -R /tmp/main_job | head -40 > "$R/main_job_files.txt"
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout 450 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep off_s3 --first_seed=3 --no_view_prompts &
sweep off_s4 --first_seed=4 --no_view_prompts &
sweep off_s5 --first_seed=5 --no_view_prompts &
wait
cd "$OUT" && tar -czf r32.tgz r32 && rm -rf r32; ls -la "$OUT"
