#!/usr/bin/env bash
# Round 18: configs/default.py scored at occupancy level 3 (--config.export.mesh_threshold=3, the level at
# which round 15's results have about the true volume) on fresh seeds 3 and 4, and without
# view-dependent prompts on seed 3 (the Janus comparison at that level).
set -u
R=$OUT/r18; mkdir -p "$R"
sweep() {  # sweep NAME MEM_FRACTION [flags...]
  local name=$1 frac=$2; shift 2
  XLA_PYTHON_CLIENT_MEM_FRACTION=$frac timeout 420 python3 benchmarks/shapes_sweep.py --captions=all --out="$R/$name" \
      --levels=2,5,silhouette --config.progress_bar=false --config.export.mesh_threshold=3 "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep l3_s34 0.55 --seeds=2 --first_seed=3 &
sweep l3_off_s3 0.35 --seeds=1 --first_seed=3 --no_view_prompts &
wait
rm -rf "$R"/*/views
cd "$OUT" && tar -czf r18.tgz r18 && rm -rf r18; ls -la "$OUT"
