#!/usr/bin/env bash
# 11 captions x 1 seed at 64x64, 32+16 samples, 2000 steps, final beta 0.002.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
R=$OUT/hq2; mkdir -p $R
C11="a purple sphere;a red cube;a yellow cylinder;a green cone;a red torus;a orange capsule;a blue pyramid"
C11="$C11;a cyan octahedron;a blue teardrop;a green bird;a orange chair"
S=2000
/usr/bin/time -f "wall %e s" timeout 280 python3 benchmarks/shapes_sweep.py --captions="$C11" --seeds=1 --out=/tmp/q \
  --config=configs/shapes_hq.py --config.optim.net_lr=1e-3 --config.progress_bar=false --config.num_steps=$S \
  --config.guidance.t_anneal_steps=$S --config.sdf.beta_anneal_steps=$S --config.reg.orientation_anneal_steps=$S \
  --config.render.num_coarse=32 --config.render.num_fine=16 --config.field.sdf_beta=0.002 > $R/q.log 2>&1
echo "exit $?" >> $R/status.txt; grep -h "Trained\|wall" $R/q.log >> $R/status.txt
cp /tmp/q/summary.json /tmp/q/summary.md $R/ 2>/dev/null; mkdir -p $R/views; cp /tmp/q/views/*.png $R/views/ 2>/dev/null
cd $OUT && tar -czf hq2.tgz hq2 && rm -rf hq2
