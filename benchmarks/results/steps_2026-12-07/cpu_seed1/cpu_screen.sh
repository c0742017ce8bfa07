#!/usr/bin/env bash
# CPU mini-screen of render.normal_step=0.03 against the default: 4 captions x seed 1.
cd "$(git rev-parse --show-toplevel)"
mkdir -p ${OUT:-/tmp/cpufd}
C="a blue chair;a red chair;a red cube;a white cylinder"
for v in default:0 fd03:0.03; do
  n=${v%%:*}; s=${v##*:}
  python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=1 --first_seed=1 --out=${OUT:-/tmp/cpufd}/$n \
    --config.progress_bar=false --fit_workers=1 --config.render.normal_step=$s > ${OUT:-/tmp/cpufd}/$n.log 2>&1
  echo "$n exit $? at $(date +%T)" >> ${OUT:-/tmp/cpufd}/status.txt
done
