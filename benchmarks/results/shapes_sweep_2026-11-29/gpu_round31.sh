#!/usr/bin/env bash
# Round 31: finish round 30's shade-aware judge (step 6,306 -> 8,000), and field.albedo_bias=1.4 on seeds
# 0, 1, 2 (round 30 swept seeds 3, 4, 5): with the judge at step 6,306 it read colour R-P 0.935 against the
# default's 0.917, so check that it holds on other seeds before making it the default.
set -u
R=$OUT/r31; mkdir -p "$R"
nvidia-smi -L; date +%T
cp -r runs/r31/judge /tmp/judge
( XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 python3 -m dreamfusion_jax.shapes.judge --workdir=/tmp/judge --steps=8000 \
    --batch=256 --bump_max=0.05 --colour_jitter=0.07 --shade_min=0.5 --nocolour_from_shaded --time_limit_min=7.9 \
    --checkpoint_every=1000 > "$R/judge.log" 2>&1; echo "judge exit $? at $(date +%T)";
  rm -rf /tmp/judge/checkpoints/6306; cd /tmp && tar -czf "$OUT/judge.tgz" judge ) &
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout 520 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep ab14_s0 --first_seed=0 --config.field.albedo_bias=1.4 &
sweep ab14_s1 --first_seed=1 --config.field.albedo_bias=1.4 &
sweep ab14_s2 --first_seed=2 --config.field.albedo_bias=1.4 &
wait
cd "$OUT" && tar -czf r31.tgz r31 && rm -rf r31; ls -la "$OUT"
