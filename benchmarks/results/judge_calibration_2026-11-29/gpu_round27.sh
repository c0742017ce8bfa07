#!/usr/bin/env bash
# Round 27: the step-33,000 prior (before the centred fine-tune; carried as runs/r11x/pW_export) with the
# default's centred NeRF cameras, seed 3: does the centring of the views alone keep the IoU, and does
# that prior's weaker dark pull keep pink and white results bright?
set -u
nvidia-smi -L; date +%T
XLA_PYTHON_CLIENT_MEM_FRACTION=0.8 timeout 285 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
    --out=/tmp/w_s3 --levels=2,5 --config.progress_bar=false --first_seed=3 \
    --config.guidance.path=runs/r11x/pW_export > /tmp/w_s3.log 2>&1
echo "w_s3 exit $? at $(date +%T)"; cp /tmp/w_s3.log /tmp/w_s3/
(cd /tmp && tar -czf "$OUT/w_s3.tgz" w_s3); ls -la "$OUT"
