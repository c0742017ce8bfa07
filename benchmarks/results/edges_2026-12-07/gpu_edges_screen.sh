#!/usr/bin/env bash
# Sharp edges (issue 'Solid objects'): the default against its smoothness faded out late, 4 variants x 10 captions
# (cubes, cylinders and a pyramid, whose edges the outside judge reads, plus a cone, a bird and a chair as guards) x 3
# seeds, at once, in one GPU call (`bash .gpu/src/benchmarks/results/edges_2026-12-07/gpu_edges_screen.sh`).
# CPU, 'a red cube' seed 0 (BENCHMARKS.md, 'Surface quality'): fading the smoothness over steps 700-900 took the
# edges' rounding 0.22 -> 0.12 at normal error 15.8 -> 19.6 deg.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.18
C="a red cube;a green cube;a white cube;a yellow cylinder;a pink cylinder;a blue pyramid"
C="$C;a green cone;a green bird;a blue chair;a red chair"
R=$OUT/edges; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-565} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=3 --out=/tmp/$name \
    --config.progress_bar=false "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*cube*.png /tmp/$name/views/*cylinder*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run A_default &
run B_fade600 --config.sdf.smoothness_fade_start=600 --config.sdf.smoothness_fade_steps=200 &
run C_fade700 --config.sdf.smoothness_fade_start=700 --config.sdf.smoothness_fade_steps=200 &
run D_fade800 --config.sdf.smoothness_fade_start=800 --config.sdf.smoothness_fade_steps=150 &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $R/status.txt
cd $OUT && tar -czf edges.tgz edges && rm -rf edges && ls -la $OUT
