#!/usr/bin/env bash
# Round 25: finish round 24's judge (step 6,534 -> 8,000), and three seed-3 sweeps of the default against
# the darkening of pink and white results: (a) shading.colour_from_shaded=false (shaded views train the
# geometry only), (b) guidance.t_max_final=0.35 (the prior's dark pull grows with t), (c) both.
set -u
R=$OUT/r25; mkdir -p "$R"
nvidia-smi -L; date +%T
cp -r runs/r24x/judge /tmp/judge
( XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 python3 -m dreamfusion_jax.classifier --workdir=/tmp/judge --steps=8000 \
    --batch=256 --bump_max=0.05 --colour_jitter=0.15 --nocolour_from_shaded --time_limit_min=8 \
    --checkpoint_every=1000 > "$R/judge.log" 2>&1; echo "judge exit $? at $(date +%T)";
  rm -rf /tmp/judge/checkpoints/6534; cd /tmp && tar -czf "$OUT/judge.tgz" judge ) &
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout 520 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep a_s3 --first_seed=3 --config.shading.colour_from_shaded=false &
sweep b_s3 --first_seed=3 --config.guidance.t_max_final=0.35 &
sweep c_s3 --first_seed=3 --config.shading.colour_from_shaded=false --config.guidance.t_max_final=0.35 &
wait
cd "$OUT" && tar -czf r25.tgz r25 && rm -rf r25; ls -la "$OUT"
