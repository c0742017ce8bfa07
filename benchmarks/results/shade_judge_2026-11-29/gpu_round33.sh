#!/usr/bin/env bash
# Round 33: time the main job (the new default) on the GPU, export included. The image has no ffmpeg and
# imageio-ffmpeg's 68 MB wheel is too big to carry, so the pure-Python imageio_ffmpeg (from its sdist) is
# carried and pointed at a stub that swallows the frames (the x264 encode of 60 128x128 frames is not
# timed; ~1.6 s on the 2-core CPU for noise frames). Then evaluate scores the result.
set -u
R=$OUT/r33; mkdir -p "$R"
export IMAGEIO_FFMPEG_EXE=$PWD/runs/r33/ffmpeg_stub PYTHONPATH=$PWD/runs/r33/py:$PYTHONPATH
nvidia-smi -L; date +%T
start=$(date +%s.%N)
python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/main_job --config.progress_bar=false \
    > "$R/main_job.log" 2>&1
echo "main job exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
start=$(date +%s.%N)
python3 -m dreamfusion_jax.evaluate --workdir=/tmp/main_job > "$R/evaluate.log" 2>&1
echo "evaluate exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
cp /tmp/main_job/evaluation.json /tmp/main_job/seed_0/*.png /tmp/main_job/seed_0/*.ply "$R/" 2>/dev/null
ls -la /tmp/main_job/seed_0 >> "$R/main_job.log"
cd "$OUT" && tar -czf r33.tgz r33 && rm -rf r33; ls -la "$OUT"
