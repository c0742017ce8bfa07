#!/usr/bin/env bash
set -u
R=$OUT/r10; mkdir -p "$R"
timeout 255 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=2 --out="$R/netlr3e3" \
    --config.progress_bar=false --config.optim.net_lr=3e-3 > "$R/netlr3e3.log" 2>&1
echo "exit $? at $(date +%T)"; rm -rf "$R/netlr3e3/views"; cd "$OUT" && tar -czf r10.tgz r10 && rm -rf r10
