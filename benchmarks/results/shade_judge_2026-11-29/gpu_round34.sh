#!/usr/bin/env bash
# Round 34: where the main job's GPU time goes (round 33: 65.8 s wall, over the 60 s target). The run now logs
# its first step (compiling), the other steps, validation, checkpoints and the export. Once as configured,
# once without validation (val_every=0: no validation renders, no guidance previews).
set -u
R=$OUT/r34; mkdir -p "$R"
export IMAGEIO_FFMPEG_EXE=$PWD/runs/r33/ffmpeg_stub PYTHONPATH=$PWD/runs/r33/py:$PYTHONPATH
nvidia-smi -L; date +%T
job() {  # job NAME [overrides...]
  local name=$1; shift
  local start=$(date +%s.%N)
  python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/$name --config.progress_bar=false "$@" \
      > "$R/$name.log" 2>&1
  echo "$name exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
  grep -E "steps in|Exported|Starting" "$R/$name.log" | cut -c 1-300
}
job default
job noval --config.val_every=0
cd "$OUT" && tar -czf r34.tgz r34 && rm -rf r34
