#!/usr/bin/env bash
# What ran on 2026-12-07 16:30 (see README.md): from the repository root, `bash gpu_probe.sh` with a `git archive`
# tree in .gpu/src and ../make_random_sd.py beside it. It installs no imageio-ffmpeg stub, so its three main jobs stopped.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
mkdir -p /tmp/o
nvidia-smi --query-gpu=name --format=csv,noheader > /tmp/o/log.txt
t0=$(date +%s)
python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > /tmp/o/make_sd.log 2>&1
echo "make_sd $(( $(date +%s)-t0 )) s" >> /tmp/o/log.txt
timeout 200 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random --config=configs/peacock.py --repeats=3 --timeout=120 --out=/tmp/o/start.json > /tmp/o/start.log 2>&1
echo "start exit $? at $(( $(date +%s)-t0 )) s" >> /tmp/o/log.txt; tail -2 /tmp/o/start.log >> /tmp/o/log.txt
main() { name=$1; shift; s=$(date +%s)
  timeout 80 python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/w_$name --config.progress_bar=false "$@" > /tmp/o/main_$name.log 2>&1
  echo "main $name exit $? in $(( $(date +%s)-s )) s (at $(( $(date +%s)-t0 )) s)" >> /tmp/o/log.txt
  grep -E "steps in|compiled in|Finished|wall" /tmp/o/main_$name.log | cut -c40-260 >> /tmp/o/log.txt
  cp /tmp/w_$name/views.png /tmp/o/views_$name.png 2>/dev/null; }
main default
main batch2 --config.batch_size=2
main fd003 --config.render.normal_step=0.03
left=$(( 400 - ($(date +%s)-t0) ))
timeout $left python3 benchmarks/shapes_sweep.py --captions="a blue chair;a red chair;a red cube" --seeds=2 --out=/tmp/fd \
  --config.progress_bar=false --fit_workers=4 --config.render.normal_step=0.03 > /tmp/o/sweep_fd.log 2>&1
echo "fd sweep exit $? at $(( $(date +%s)-t0 )) s" >> /tmp/o/log.txt; cp /tmp/fd/summary.json /tmp/o/sweep_fd.json 2>/dev/null; grep -i "trained" /tmp/o/sweep_fd.log >> /tmp/o/log.txt
tar -czf $OUT/o.tgz -C /tmp o; cp /tmp/o/log.txt $OUT/
cat /tmp/o/log.txt
