#!/usr/bin/env bash
# Round 15: configs/default.py (seed 2, all 110 captions), IoU at several occupancy levels, and variants
# aimed at a crisp density: mip-NeRF 360's distortion loss (reg.distortion) and the exp density
# activation; plus the default without view-dependent prompts (the Janus comparison).
set -u
R=$OUT/r15; mkdir -p "$R"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.13
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  timeout 560 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=2 --out="$R/$name" \
      --levels=1,2,3,10,20,silhouette --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep base &
sweep off --no_view_prompts &
sweep d100 --config.reg.distortion=100 &
sweep d1000 --config.reg.distortion=1000 &
sweep d10000 --config.reg.distortion=10000 &
sweep exp --config.field.density_activation=exp &
sweep expd1000 --config.field.density_activation=exp --config.reg.distortion=1000 &
wait
rm -rf "$R"/*/views
cd "$OUT" && tar -czf r15.tgz r15 && rm -rf r15; ls -la "$OUT"
