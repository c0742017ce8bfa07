#!/usr/bin/env bash
# Times the README's main job (configs/default.py) on one GPU, where compiling is most of its time:
#   bash benchmarks/main_job_gpu.sh RESULTS_DIR
# (1) cold: an empty compilation cache; (2) warm: the same cache, another caption; (3) cold with XLA's GPU
# autotuning off (XLA_FLAGS=--xla_gpu_autotune_level=0), no cache. Each run's log has its time split (the first
# step, the other steps, validation, checkpoints, export). The turntable needs ffmpeg: on an image without
# it, point IMAGEIO_FFMPEG_EXE at one (or at a stub, and say so).
set -u
R=${1:?usage: main_job_gpu.sh RESULTS_DIR}
mkdir -p "$R"
job() {  # job NAME CACHE [overrides...]
  local name=$1 cache=$2; shift 2
  local start; start=$(date +%s.%N)
  python3 -m dreamfusion_jax.main --config=configs/default.py --workdir="/tmp/main_job_$name" \
      --compilation_cache="$cache" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  local rc=$?
  python3 -c "print(f'$name: exit $rc, {$(date +%s.%N) - $start:.1f} s wall')" | tee -a "$R/timing.txt"
  grep -E "steps in|Exported in" "$R/$name.log" | sed 's/^.*\] //' | tee -a "$R/timing.txt"
}
nvidia-smi -L | tee "$R/timing.txt"
job cold "$R/cache"
job warm "$R/cache" --config.prompt="a blue sphere"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" job cold_no_autotune ""
