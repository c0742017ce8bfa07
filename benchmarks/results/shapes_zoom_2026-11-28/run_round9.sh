#!/usr/bin/env bash
# Round 9 (one H200): configs/default.py with the zoom-fine-tuned prior, seeds 2 and 3, view prompts on / off.
set -u
R=$OUT/r9; mkdir -p "$R"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
sweep() {  # sweep LIMIT_S NAME [flags...]
  local limit=$1 name=$2; shift 2
  timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=2 \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep 520 default_on &
sweep 520 default_off --no_view_prompts &
wait
cd "$OUT" && mkdir -p views && for n in default_on default_off; do mv r9/$n/views views/$n; done
tar -czf r9.tgz r9 && rm -rf r9; tar -cf views_on.tar views/default_on; tar -cf views_off.tar views/default_off; rm -rf views; ls -la
