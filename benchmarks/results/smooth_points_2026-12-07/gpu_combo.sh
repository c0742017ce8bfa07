#!/usr/bin/env bash
# `bash .gpu/src/benchmarks/results/smooth_points_2026-12-07/gpu_combo.sh` from the repo root, in one GPU call (~340 s; not yet
# run): the 11-shape screen in the background; beside it (memory, not pace) the 6 GiB peacock path,
# then the step under a 4 GiB cap with remat.
set -u
SET=shapes SEEDS=${SEEDS:-2} LIMIT=${LIMIT:-300} bash .gpu/src/benchmarks/results/smooth_points_2026-12-07/gpu_screen.sh > $OUT/screen.txt 2>&1 &
sleep 30   # The screen's wheel install is done before the other jobs import from /tmp/site.
cd .gpu/src && export PYTHONPATH=/tmp/site:$PWD/.whl/py
MEM_JOBS="peacock_cap6" bash benchmarks/sd_gpu_one.sh 1 $OUT/mem ../make_random_sd.py > $OUT/mem.txt 2>&1
timeout 100 python3 benchmarks/sd_memory_cap.py --model=/tmp/sd21_base_random --cases=step --step_cap_gib=4 \
  --step_flag=--remat --timeout_s=95 --out=$OUT/mem/bf16_step_cap4_remat.json > $OUT/mem/bf16_step_cap4_remat.log 2>&1
echo "cap4 remat exit $?" >> $OUT/mem.txt
wait
cd $OUT && tar -czf mem.tgz mem && rm -rf mem && ls -la $OUT
