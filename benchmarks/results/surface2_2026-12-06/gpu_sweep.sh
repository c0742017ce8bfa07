#!/usr/bin/env bash
# The default over half the world's 110 captions (HALF=0: the first 55, 1: the rest) x 3 seeds, as 4 sweeps at once.
# Each sweep is cut at 565 s. Since 2026-12-06 16:00 the evaluation also fits primitives (5-6 s a seed with four
# sweeps sharing the machine, which would push a 42-seed sweep past that): three CPU workers per sweep
# (--fit_workers=3) fit them while the next seeds are scored, and the summary is rewritten after every caption.
set -u
HALF=${1:?half}; shift
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2
R=$OUT/sweep$HALF; mkdir -p $R
mapfile -t ALL < <(python3 -c "
from dreamfusion_jax.shapes import world
for s in world.SHAPES:
  for c in world.COLOUR_NAMES: print(world.caption(c, s))")
half=("${ALL[@]:$((HALF*55)):55}")
run() { name=$1; caps=$2; shift 2
  timeout ${LIMIT:-565} python3 benchmarks/shapes_sweep.py --captions="$caps" --seeds=3 --out=/tmp/$name \
    --config.progress_bar=false --fit_workers=3 "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views; cp /tmp/$name/views/*.png $R/views/ 2>/dev/null; }
date +%T > $R/status.txt
for p in 0 1 2 3; do
  lo=$((p*14)); n=14; [ $p = 3 ] && n=$((55-42))
  caps=$(printf "%s;" "${half[@]:$lo:$n}"); run part$HALF$p "${caps%;}" "$@" &
done
wait
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
cd $OUT && tar -czf sweep$HALF.tgz sweep$HALF && rm -rf sweep$HALF && ls -la $OUT
