#!/usr/bin/env bash
# Chair levers, second screen (the default now has the 300-step progressive view): 4 variants x (5 chairs + 5 other shapes) x 3 seeds, at once.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.18
C="a red chair;a blue chair;a orange chair;a purple chair;a gray chair"
C="$C;a red cube;a yellow cylinder;a green cone;a red torus;a green bird"
R=$OUT/chair; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-565} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=3 --out=/tmp/$name \
    --config.progress_bar=false "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*chair*.png /tmp/$name/views/*cube*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run A_default &
run B_pv600 --config.camera.progressive_view_steps=600 &
run C_coarse64 --config.render.num_coarse=64 --config.render.num_fine=32 &
run D_l1 --config.sdf.smoothness_norm=l1 &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $R/status.txt
cd $OUT && tar -czf chair.tgz chair && rm -rf chair && ls -la $OUT
