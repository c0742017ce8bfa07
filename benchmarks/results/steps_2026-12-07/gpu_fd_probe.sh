#!/usr/bin/env bash
# The central-difference normals' GPU probe (not run: no machine could be started on 2026-12-07 afternoon): the
# default main job with render.normal_step=0.03 and without (its cold time against the 60 s budget, steps/s), then
# one sweep of 3 captions x 2 seeds with it alone on the GPU. One call, ~200 s: `bash .gpu/src/benchmarks/results/steps_2026-12-07/gpu_fd_probe.sh`
# from the repository root with a `git archive` tree and .whl/ in .gpu/src (A's numbers for these seeds: screen/A_default.json).
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
for v in 0.03 0; do
  timeout 70 python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/w$v --config.render.normal_step=$v \
    --config.progress_bar=false > $OUT/main_fd$v.log 2>&1
  echo "main normal_step=$v exit $?" >> $OUT/log.txt; grep -E "steps in|compiled in" $OUT/main_fd$v.log | cut -c40-260 >> $OUT/log.txt
done
timeout 110 python3 benchmarks/shapes_sweep.py --captions="a blue chair;a red chair;a red cube" --seeds=2 --out=/tmp/fd \
  --config.progress_bar=false --fit_workers=4 --config.render.normal_step=0.03 > $OUT/sweep_fd.log 2>&1
echo "sweep exit $?" >> $OUT/log.txt; cp /tmp/fd/summary.json $OUT/sweep_fd.json 2>/dev/null; grep Trained $OUT/sweep_fd.log >> $OUT/log.txt
cat $OUT/log.txt
