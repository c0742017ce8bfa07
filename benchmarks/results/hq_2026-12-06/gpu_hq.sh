#!/usr/bin/env bash
# The quality config's sweep (issue 'Solid objects', part 4): 22 captions (two colours per shape, the 6 held-out
# pairs among them) x seeds 0-1 at configs/shapes_hq.py, as two 22-seed programs (HALF=0: the first 11 captions,
# 1: the rest), one per GPU call: the 44-seed program (3.03 steps/s on an H100) needs ~11 min, more than one call.
set -u
HALF=${1:?half}; shift
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
C0="a purple sphere;a cyan sphere;a red cube;a green cube;a yellow cylinder;a pink cylinder;a green cone;a blue cone"
C0="$C0;a red torus;a gray torus;a orange capsule"
C1="a white capsule;a blue pyramid;a yellow pyramid;a cyan octahedron;a red octahedron;a blue teardrop"
C1="$C1;a pink teardrop;a green bird;a orange bird;a orange chair;a purple chair"
[ "$HALF" = 0 ] && C=$C0 || C=$C1
R=$OUT/hq$HALF; mkdir -p $R
date +%T > $R/status.txt
/usr/bin/time -f "wall %e s" timeout ${LIMIT:-560} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=2 \
  --out=/tmp/hq --config=configs/shapes_hq.py --config.progress_bar=false "$@" > $R/hq.log 2>&1
echo "exit $? at $(date +%T)" >> $R/status.txt; grep -h "Trained\|wall\|steps/s" $R/hq.log | tail -5 >> $R/status.txt
cp /tmp/hq/summary.json $R/hq$HALF.json 2>/dev/null; cp /tmp/hq/summary.md $R/hq$HALF.md 2>/dev/null
mkdir -p $R/views; cp /tmp/hq/views/*.png $R/views/ 2>/dev/null
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
cd $OUT && tar -czf hq$HALF.tgz hq$HALF && rm -rf hq$HALF && ls -la $OUT
