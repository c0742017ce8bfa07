#!/usr/bin/env bash
# Chair levers: progressive view over 300 steps x (the 10 chairs + 3 other shapes) x 3 seeds, at once.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.18
C=$(python3 -c "
from dreamfusion_jax.shapes import world
print(';'.join(world.caption(c, 'chair') for c in world.COLOUR_NAMES))")
C="$C;a red cube;a green cone;a red torus"
R=$OUT/chair; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-250} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=3 --out=/tmp/$name \
    --config.progress_bar=false "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*chair*.png /tmp/$name/views/*cube*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run P300 --config.camera.progressive_view_steps=300 &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $R/status.txt
cd $OUT && tar -czf chair.tgz chair && rm -rf chair && ls -la $OUT
