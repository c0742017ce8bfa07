#!/usr/bin/env bash
# Round 17: the density inside results is speckled (hash collisions: 16k-entry tables for 37^3-64^3
# grids). configs/default.py (seed 2, all 110 captions) with larger hash tables, a coarser finest
# level, and a table of 2^18 with the distortion loss.
set -u
R=$OUT/r17; mkdir -p "$R"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.18
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  timeout 560 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=2 --out="$R/$name" \
      --levels=1,2,3,10,silhouette --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep h16 --config.field.log2_hashmap_size=16 &
sweep h18 --config.field.log2_hashmap_size=18 &
sweep h18d --config.field.log2_hashmap_size=18 --config.reg.distortion=10000 &
sweep m32 --config.field.max_resolution=32 &
sweep h18m128 --config.field.log2_hashmap_size=18 --config.field.max_resolution=128 &
wait
rm -rf "$R"/*/views
cd "$OUT" && tar -czf r17.tgz r17 && rm -rf r17; ls -la "$OUT"
