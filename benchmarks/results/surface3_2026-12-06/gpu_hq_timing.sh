#!/usr/bin/env bash
# The quality config's cost and quality at 64x64: (1) the 22x2 sweep's 44-seed program for 30 steps (its steps/s),
# (2) 11 captions (one per shape, 5 held-out pairs) x 1 seed of 64x64 renders, 1000 steps, 32+16 samples.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
R=$OUT/hq; mkdir -p $R
C22="a purple sphere;a cyan sphere;a red cube;a green cube;a yellow cylinder;a pink cylinder;a green cone;a blue cone"
C22="$C22;a red torus;a gray torus;a orange capsule;a white capsule;a blue pyramid;a yellow pyramid;a cyan octahedron"
C22="$C22;a red octahedron;a blue teardrop;a pink teardrop;a green bird;a orange bird;a orange chair;a purple chair"
C11="a purple sphere;a red cube;a yellow cylinder;a green cone;a red torus;a orange capsule;a blue pyramid"
C11="$C11;a cyan octahedron;a blue teardrop;a green bird;a orange chair"
Q="--config=configs/shapes_hq.py --config.optim.net_lr=1e-3 --config.progress_bar=false"
L1000="--config.num_steps=1000 --config.guidance.t_anneal_steps=1000 --config.sdf.beta_anneal_steps=1000 --config.reg.orientation_anneal_steps=1000"
run() { name=$1; caps=$2; seeds=$3; lim=$4; shift 4
  /usr/bin/time -f "$name wall %e s" timeout $lim python3 benchmarks/shapes_sweep.py --captions="$caps" --seeds=$seeds \
    --out=/tmp/$name $Q "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt; tail -1 $R/$name.log >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run t44_hq "$C22" 2 150 --config.num_steps=30
run t44_lite "$C22" 2 120 --config.num_steps=30 --config.render.num_coarse=32 --config.render.num_fine=16
run q11_lite1000 "$C11" 1 ${QLIM:-330} $L1000 --config.render.num_coarse=32 --config.render.num_fine=16
nvidia-smi --query-gpu=name,memory.used --format=csv >> $R/status.txt
grep -h "Trained" $R/*.log >> $R/status.txt
cd $OUT && tar -czf hq.tgz hq && rm -rf hq && ls -la $OUT
