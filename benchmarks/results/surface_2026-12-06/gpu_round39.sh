#!/usr/bin/env bash
# Round 39: the default (configs/default.py) over all 110 captions, seeds 0 and 1, scored with the surface
# metrics. (Round 38 ran six sweeps at once on one H100 with 12% of its memory each: none finished in 530 s.)
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
R=$OUT/r39; mkdir -p "$R"
nvidia-smi -L; date +%T
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 timeout 540 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  cp "/tmp/$name/summary.json" "$R/$name.json" 2>/dev/null; cp "/tmp/$name/summary.md" "$R/$name.md" 2>/dev/null
}
sweep default_s0 --first_seed=0 &
sweep default_s1 --first_seed=1 &
wait
cd "$OUT" && tar -czf r39.tgz r39 && rm -rf r39; ls -la "$OUT"
