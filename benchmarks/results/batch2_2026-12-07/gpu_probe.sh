#!/usr/bin/env bash
# From the repository root, `bash gpu_probe.sh` with a `git archive` tree in .gpu/src and ../make_random_sd.py beside
# it: cold main jobs of configs/default.py (one view, then two views per step), each with its own empty compilation
# cache, then (unless SD=0) the SD start (sd_start.py, 3 repeats).
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
# No ffmpeg on the image: a stub that prints a version and writes an empty mp4 (the turntable is not timed apart).
printf '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version 6.0-stub"; exit 0;; esac\nfor last; do :; done\ncat > /dev/null\n: > "$last"\n' > /tmp/ffmpeg_stub
chmod +x /tmp/ffmpeg_stub; export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg_stub
mkdir -p /tmp/o
nvidia-smi --query-gpu=name --format=csv,noheader > /tmp/o/log.txt
t0=$(date +%s)
main() { name=$1; shift; s=$(date +%s.%N)
  timeout 150 python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/w_$name \
    --compilation_cache="" --config.progress_bar=false "$@" > /tmp/o/main_$name.log 2>&1
  rc=$?; python3 -c "print(f'main $name exit $rc in {$(date +%s.%N) - $s:.1f} s wall')" >> /tmp/o/log.txt
  grep -E "Set up in|steps in|Exported in" /tmp/o/main_$name.log | sed -E 's/^I[0-9]+ ([0-9:.]+) .*\] /\1 /' \
    | cut -c 1-250 >> /tmp/o/log.txt
  timeout 120 python3 -m dreamfusion_jax.evaluate --workdir=/tmp/w_$name > /tmp/o/evaluate_$name.log 2>&1
  cp /tmp/w_$name/views.png /tmp/o/views_$name.png 2>/dev/null; }
case " ${MAINS:-default batch2} " in *" default "*) main default ;; esac  # MAINS=batch2: the two-view job alone.
case " ${MAINS:-default batch2} " in *" batch2 "*) main batch2 --config.batch_size=2 ;; esac
if [ "${SD:-1}" = 1 ]; then
  python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > /tmp/o/make_sd.log 2>&1
  echo "make_sd done at $(( $(date +%s)-t0 )) s" >> /tmp/o/log.txt
  timeout 240 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random --config=configs/peacock.py --repeats=${REPEATS:-3} \
    --timeout=120 --out=/tmp/o/start.json > /tmp/o/start.log 2>&1
  echo "start exit $? at $(( $(date +%s)-t0 )) s" >> /tmp/o/log.txt; tail -3 /tmp/o/start.log >> /tmp/o/log.txt
fi
tar -czf $OUT/o.tgz -C /tmp o; cp /tmp/o/log.txt $OUT/
cat /tmp/o/log.txt
