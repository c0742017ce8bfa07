#!/usr/bin/env bash
# Round 16: does render resolution lift the IoU? configs/default.py at 48x48 and 64x64 renders (the
# prior's own size), alone and with reg.distortion=1e4; 55 random captions (--caption_seed 0), seed 2.
set -u
R=$OUT/r16; mkdir -p "$R"
sweep() {  # sweep NAME MEM_FRACTION [flags...]
  local name=$1 frac=$2; shift 2
  XLA_PYTHON_CLIENT_MEM_FRACTION=$frac timeout 560 python3 benchmarks/shapes_sweep.py --captions=55 --seeds=1 \
      --first_seed=2 --out="$R/$name" --levels=1,2,3,10,silhouette --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep r64 0.3 --config.render.image_size=64 &
sweep r64d 0.3 --config.render.image_size=64 --config.reg.distortion=10000 &
sweep r48 0.17 --config.render.image_size=48 &
sweep r48d 0.17 --config.render.image_size=48 --config.reg.distortion=10000 &
wait
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
rm -rf "$R"/*/views
cd "$OUT" && tar -czf r16.tgz r16 && rm -rf r16; ls -la "$OUT"
