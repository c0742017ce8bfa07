#!/usr/bin/env bash
# The smoothness's points from a thin shell around the surface (sdf.smoothness_points=shell; issue 'Solid objects'):
# the default (the volume's points, moved onto the surface, which gather on edges) against all of them from the
# shell (S) and half (H, sdf.smoothness_shell_share=0.5: the volume's half holds small, curved parts); one caption
# of each of the 11 shapes plus two chairs and a cube x 2 seeds, three sweeps sharing one GPU, in one call:
# `bash .gpu/src/benchmarks/results/shell_2026-12-07/gpu_screen.sh` (a `git archive` tree with the wheels in .whl/).
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.24
C="a white sphere;a blue cube;a green cylinder;a red cone;a pink torus;a cyan capsule;a orange pyramid"
C="$C;a yellow octahedron;a purple teardrop;a red bird;a orange chair;a blue chair;a red chair;a red cube"
R=$OUT/shell; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-520} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=${SEEDS:-2} --out=/tmp/$name \
    --config.progress_bar=false --fit_workers=4 "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run A_default &
run S_shell --config.sdf.smoothness_points=shell &
run H_shell_half --config.sdf.smoothness_points=shell --config.sdf.smoothness_shell_share=0.5 &
wait
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
cd $OUT && tar -czf shell.tgz shell && rm -rf shell && ls -la $OUT
