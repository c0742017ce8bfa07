#!/usr/bin/env bash
# Round 24: a judge whose colour head learns from albedo-only renders with albedos jittered within 0.15
# of their named colour (the shipped judge calls a flat 0.55 grey 'white'), trained while three sweeps of
# the current default (seeds 3, 4, 5) share the GPU and save their views for re-scoring on the CPU.
set -u
R=$OUT/r24; mkdir -p "$R"
nvidia-smi -L; date +%T
( XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 python3 -m dreamfusion_jax.classifier --workdir=/tmp/judge --steps=8000 \
    --batch=256 --bump_max=0.05 --colour_jitter=0.15 --nocolour_from_shaded --time_limit_min=7.9 \
    --checkpoint_every=1000 > "$R/judge.log" 2>&1; echo "judge exit $? at $(date +%T)" ) &
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout 500 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep d_s3 --first_seed=3 &
sweep d_s4 --first_seed=4 &
sweep d_s5 --first_seed=5 &
wait
(cd /tmp && tar -czf "$OUT/judge.tgz" judge)
cd "$OUT" && tar -czf r24.tgz r24 && rm -rf r24; ls -la "$OUT"
