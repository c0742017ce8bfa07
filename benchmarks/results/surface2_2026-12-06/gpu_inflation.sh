#!/usr/bin/env bash
# Inflation: the default inflated 'a green cube' and 'a gray cube' at seed 2 (of 330 seeds). Levers on the 10 cubes at
# seed 2, and the smaller start sphere on the 22-caption screen at seed 2.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2
R=$OUT/infl; mkdir -p $R
CUBES=$(python3 -c "
from dreamfusion_jax.shapes import world
print(';'.join(world.caption(c, 'cube') for c in world.COLOUR_NAMES))")
C="a purple sphere;a cyan sphere;a red cube;a green cube;a yellow cylinder;a pink cylinder;a green cone;a blue cone"
C="$C;a red torus;a gray torus;a orange capsule;a white capsule;a blue pyramid;a yellow pyramid;a cyan octahedron"
C="$C;a red octahedron;a blue teardrop;a pink teardrop;a green bird;a orange bird;a orange chair;a purple chair"
run() { name=$1; caps=$2; shift 2
  timeout 380 python3 benchmarks/shapes_sweep.py --captions="$caps" --seeds=1 --first_seed=2 --out=/tmp/$name \
    --config.progress_bar=false "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; }
date +%T > $R/status.txt
run cubes_r02 "$CUBES" --config.field.blob_radius=0.2 &
run cubes_netlr1e3 "$CUBES" --config.optim.net_lr=1e-3 &
run screen_r02 "$C" --config.field.blob_radius=0.2 &
wait
cd $OUT && tar -czf infl.tgz infl && rm -rf infl
