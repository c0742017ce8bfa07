#!/usr/bin/env bash
# Round 30 (rounds 28 and 29 of the eighth session's plan, in one call): a shade-aware judge (albedo-only
# colour data, chromatic albedos darkened by U(0.5, 1), albedos jittered within 0.07; trained while three
# sweeps share the GPU, resumed next round), and field.albedo_bias=1.4 (initial albedo 0.8) on seeds 3, 4, 5
# against the darkening of pink and white results. Views saved for re-scoring on the CPU.
set -u
R=$OUT/r30; mkdir -p "$R"
nvidia-smi -L; date +%T
( XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 python3 -m dreamfusion_jax.shapes.judge --workdir=/tmp/judge --steps=8000 \
    --batch=256 --bump_max=0.05 --colour_jitter=0.07 --shade_min=0.5 --nocolour_from_shaded --time_limit_min=7.9 \
    --checkpoint_every=1000 > "$R/judge.log" 2>&1; echo "judge exit $? at $(date +%T)" ) &
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout 520 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep ab14_s3 --first_seed=3 --config.field.albedo_bias=1.4 &
sweep ab14_s4 --first_seed=4 --config.field.albedo_bias=1.4 &
sweep ab14_s5 --first_seed=5 --config.field.albedo_bias=1.4 &
wait
(cd /tmp && tar -czf "$OUT/judge.tgz" judge)
cd "$OUT" && tar -czf r30.tgz r30 && rm -rf r30; ls -la "$OUT"
