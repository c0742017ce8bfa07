#!/usr/bin/env bash
# Round 14: the chosen default (t_max annealed to 0.5) with the white-caption prior, seed 3.
set -u
mkdir -p $OUT/r14
timeout 250 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=3 --out=$OUT/r14/ann05_s3 \
    --config.progress_bar=false --config.guidance.path=runs/r11x/pW_export --config.guidance.t_anneal_steps=1000 \
    --config.guidance.t_max_final=0.5 > $OUT/r14/ann05_s3.log 2>&1
