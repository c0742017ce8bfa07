#!/usr/bin/env bash
# The default over all 110 captions x 3 seeds (seeds 0-2), every seed its own program (--group=1: the draw that
# `main --config.prompt=CAPTION --config.seed=SEED` gives), as PARTS sweeps sharing one GPU, each over every
# PARTS-th caption (colour-major, so each part has every shape). Each sweep starts no new caption after DEADLINE s
# and keeps what it scored; a part whose summary.json was carried in .gpu/prev/partN/ is resumed (--resume), so
# the same command in the next call goes on where this one stopped. Writes $OUT/single.tgz (summaries, logs, views),
# refreshed every minute, so a call cut short still brings back what was scored.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
PARTS=${PARTS:-6}
export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $PARTS, 3))")
R=$OUT/single; mkdir -p $R
mapfile -t ALL < <(python3 -c "
from dreamfusion_jax.shapes import world
for c in world.COLOUR_NAMES:
  for s in world.SHAPES: print(world.caption(c, s))")
snapshot() {  # $OUT/single.tgz: every part's summary and views so far, written whole, then renamed.
  for ((p=0; p<PARTS; p++)); do
    mkdir -p $R/part$p; cp /tmp/part$p/summary.json /tmp/part$p/summary.md $R/part$p/ 2>/dev/null
    cp -r /tmp/part$p/views $R/part$p/ 2>/dev/null
  done
  (cd $OUT && tar -czf .single.tgz single && mv .single.tgz single.tgz); }
date +%T > $R/status.txt
for ((p=0; p<PARTS; p++)); do
  caps=""; for ((i=p; i<110; i+=PARTS)); do caps="$caps${ALL[$i]};"; done
  mkdir -p /tmp/part$p; cp ../prev/part$p/summary.json /tmp/part$p/ 2>/dev/null
  ( timeout ${LIMIT:-560} python3 benchmarks/shapes_sweep.py --captions="${caps%;}" --seeds=3 --first_seed=0 --group=1 \
      --resume --deadline_s=${DEADLINE:-470} --out=/tmp/part$p --config.progress_bar=false --fit_workers=2 "$@" \
      > $R/part$p.log 2>&1
    echo "part$p exit $? at $(date +%T)" >> $R/status.txt ) &
done
(while sleep 60; do snapshot; done) & SNAP=$!
wait $(jobs -p | grep -v "^$SNAP$")
kill $SNAP
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
snapshot; rm -rf $R; ls -la $OUT
