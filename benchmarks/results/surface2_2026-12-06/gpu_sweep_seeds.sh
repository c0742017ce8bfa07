#!/usr/bin/env bash
# The default over all 110 captions (or the first NCAP, colour-major: NCAP=44 is every shape in 4 colours)
# x SEEDS seeds from FIRST (gpu_sweep_seeds.sh 2 0: seeds 0-1; then 1 2: seed 2); FROM=55 starts at caption 55,
# as 4 sweeps at once, in one GPU call: every shape in each call, where gpu_sweep.sh's halves split the shapes.
# Each sweep is cut at LIMIT s (default 560); its summary is rewritten after every caption, so a cut keeps what
# was scored. The primitive fits run in three CPU workers per sweep.
set -u
SEEDS=${1:?seeds}; FIRST=${2:?first seed}; shift 2
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.24
R=$OUT/seeds$FIRST; mkdir -p $R  # (the folder and tar are named by FIRST alone)
mapfile -t ALL < <(python3 -c "
from dreamfusion_jax.shapes import world
for c in world.COLOUR_NAMES:  # Colour-major: every 4th caption cycles through the shapes, so a sweep cut short
  for s in world.SHAPES: print(world.caption(c, s))")  # has scored some of each.
run() { name=$1; caps=$2; shift 2
  timeout ${LIMIT:-560} python3 benchmarks/shapes_sweep.py --captions="$caps" --seeds=$SEEDS --first_seed=$FIRST \
    --out=/tmp/$name --config.progress_bar=false --fit_workers=3 "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views; cp /tmp/$name/views/*.png $R/views/ 2>/dev/null; }
date +%T > $R/status.txt
for p in 0 1 2 3; do  # Every 4th caption: each sweep gets every shape.
  caps=""; for ((i=${FROM:-0}+p; i<${NCAP:-110}; i+=4)); do caps="$caps${ALL[$i]};"; done
  run part$p "${caps%;}" "$@" &
done
wait
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
cd $OUT && tar -czf seeds$FIRST.tgz seeds$FIRST && rm -rf seeds$FIRST && ls -la $OUT
