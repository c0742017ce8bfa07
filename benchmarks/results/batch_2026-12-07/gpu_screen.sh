#!/usr/bin/env bash
# Views per step (`batch_size`, never screened: the paper renders 4 views per step, the default 1): the SDS
# gradient of one view is noisy, and the chairs' tangles and the seed-to-seed spread look like noise. Three sweeps
# sharing one GPU in one call, the steps screen's 14 captions (the 11 shapes, two more chairs and a cube) x 2 seeds:
# A the default again (the same call, the same machine), B 2 views per step, C 4 views per step (seed 0 only).
# `bash .gpu/src/benchmarks/results/batch_2026-12-07/gpu_screen.sh` (a `git archive` tree with .whl/ in .gpu/src).
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.3
C="a white sphere;a blue cube;a green cylinder;a red cone;a pink torus;a cyan capsule;a orange pyramid"
C="$C;a yellow octahedron;a purple teardrop;a red bird;a orange chair;a blue chair;a red chair;a red cube"
R=$OUT/batch; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-520} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=${SEEDS:-2} --out=/tmp/$name \
    --config.progress_bar=false --fit_workers=4 "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
nvidia-smi --query-gpu=name --format=csv,noheader >> $R/status.txt
run A_default &
run B_batch2 --config.batch_size=2 &
SEEDS=1 run C_batch4_seed0 --config.batch_size=4 &
wait
cd $OUT && tar -czf batch.tgz batch && rm -rf batch && ls -la $OUT
