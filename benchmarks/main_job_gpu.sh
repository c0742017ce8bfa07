#!/usr/bin/env bash
# Times the README's main job (configs/default.py) on one GPU, where compiling is most of its time:
#   bash benchmarks/main_job_gpu.sh RESULTS_DIR
# Runs, each with its own empty compilation cache unless said: (1) cold, as a user's first run; (2) warm:
# run 1's cache, another caption; (3) cold again (the spread); (4) cold with XLA's Triton GEMM fusions on
# (--config.gpu_triton_gemm=true, XLA's default; configs/default.py turns them off). Each log has the
# run's time split (set-up, the first step, the other steps, validation, checkpoints, export) and, with
# JAX_LOG_COMPILES=1, every compile's time. Then run 1's result is scored (dreamfusion_jax.evaluate).
# The turntable needs ffmpeg: on an image without it, point IMAGEIO_FFMPEG_EXE at one (or at a stub, and
# say so).
set -u
R=${1:?usage: main_job_gpu.sh RESULTS_DIR}
mkdir -p "$R"
job() {  # job NAME CACHE [overrides...]
  local name=$1 cache=$2; shift 2
  local start; start=$(date +%s.%N)
  echo "$name: started $(date +%T.%N)" >> "$R/timing.txt"
  JAX_LOG_COMPILES=1 timeout 150 python3 -m dreamfusion_jax.main --config=configs/default.py \
      --workdir="/tmp/main_job_$name" --compilation_cache="$cache" --config.progress_bar=false "$@" \
      > "$R/$name.log" 2>&1
  local rc=$?
  python3 -c "print(f'$name: exit $rc, {$(date +%s.%N) - $start:.1f} s wall')" | tee -a "$R/timing.txt"
  grep -E "Unable to initialize backend|Seeds|Set up in|steps in|Exported in" "$R/$name.log" \
      | sed -E 's/^I[0-9]+ ([0-9:.]+) .*\] /\1 /' | cut -c 1-250 | tee -a "$R/timing.txt"
  grep -E "Finished XLA compilation" "$R/$name.log" | sed -E 's/^.*compilation of //' \
      | awk '$NF == "sec" && $(NF-1) > 0.5' | tee -a "$R/timing.txt"
}
nvidia-smi -L | tee "$R/timing.txt"
python3 -c "
import time; t = time.time()
import jax; t1 = time.time(); jax.devices(); t2 = time.time()
import dreamfusion_jax.train, dreamfusion_jax.outputs; t3 = time.time()
print(f'start-up: import jax {t1 - t:.1f} s, first device {t2 - t1:.1f} s, import the package {t3 - t2:.1f} s')
" 2>&1 | tail -1 | tee -a "$R/timing.txt"
job cold "$R/cache"
job warm "$R/cache" --config.prompt="a blue sphere"
job cold2 ""
job cold_triton_gemm "" --config.gpu_triton_gemm=true
start=$(date +%s.%N)
python3 -m dreamfusion_jax.evaluate --workdir=/tmp/main_job_cold > "$R/evaluate_cold.log" 2>&1
python3 -c "print(f'evaluate cold: exit $?, {$(date +%s.%N) - $start:.1f} s wall')" | tee -a "$R/timing.txt"
python3 -c "import json; print(json.dumps(json.load(open('/tmp/main_job_cold/evaluation.json'))['mean']))" \
    | tee -a "$R/timing.txt"
rm -rf "$R/cache"
