#!/usr/bin/env bash
# Round 23: the centred white-caption prior of round 21 (step 40,900, carried as runs/r21x/export) with
# centred NeRF cameras: seed 4, seed 3 without view prompts (the Janus comparison), and seed 3 with
# reg.distortion=1e3 (does condensing the fog help the colour?). Three sweeps share the GPU.
set -u
R=$OUT/r23; mkdir -p "$R"
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 470 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false --config.guidance.path=runs/r21x/export \
      --config.camera.look_at_std=0.0 --config.camera.position_jitter=0.0 "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  mkdir -p "$R/$name" && cp /tmp/$name/summary.* "$R/$name/" 2>/dev/null
}
nvidia-smi -L; date +%T
sweep x_s4 --first_seed=4 &
sweep x_off_s3 --first_seed=3 --no_view_prompts &
sweep x_d1000_s3 --first_seed=3 --config.reg.distortion=1000 &
wait
cd "$OUT" && tar -czf r23.tgz r23 && rm -rf r23; ls -la "$OUT"
