#!/usr/bin/env bash
# Round 37: gpu_deterministic=true (the base config's default now: XLA's nondeterministic kernels left out).
# (1) Two cold main jobs must be identical (benchmarks/determinism_gpu.sh showed it with XLA_FLAGS);
# (2) its cost on the Stable Diffusion step (benchmarks/sd_step.py, bfloat16, SD 2.1-base architecture with
# random weights), with and without.
set -u
R=$OUT/r37; mkdir -p "$R"
nvidia-smi -L | tee "$R/summary.txt"
for name in a b; do
  start=$(date +%s.%N)
  timeout 120 python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/det_$name \
      --compilation_cache= --config.progress_bar=false > "$R/main_$name.log" 2>&1
  python3 -c "print(f'main_$name: exit $?, {$(date +%s.%N) - $start:.1f} s wall')" | tee -a "$R/summary.txt"
  grep -E "steps in" "$R/main_$name.log" | sed 's/^.*\] //' | tee -a "$R/summary.txt"
done
python3 - <<'PY' | tee -a "$R/summary.txt"
import filecmp, json
rows = {n: [{k: v for k, v in json.loads(l).items() if k != "steps_per_sec"} for l in open(f"/tmp/det_{n}/metrics.jsonl")]
        for n in "ab"}
print("metrics identical", rows["a"] == rows["b"], "final loss", rows["a"][-1]["loss"], rows["b"][-1]["loss"],
      "mesh.ply identical", filecmp.cmp("/tmp/det_a/seed_0/mesh.ply", "/tmp/det_b/seed_0/mesh.ply", shallow=False))
PY
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/sdsite runs/sdwhl/*.whl
CKPT=/tmp/sd21_base_random; start=$(date +%s)
PYTHONPATH=/tmp/sdsite:$PYTHONPATH python3 runs/make_random_sd.py "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
echo "random SD checkpoint: exit $? after $(( $(date +%s) - start )) s" | tee -a "$R/summary.txt"
for det in true false; do
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 170 python3 benchmarks/sd_step.py --model="$CKPT" --dtype=bfloat16 \
      --deterministic=$det --out="$R/sd_bf16_det_$det.json" > "$R/sd_bf16_det_$det.log" 2>&1
  echo "sd deterministic=$det exit $?" | tee -a "$R/summary.txt"
  tr -d '\n ' < "$R/sd_bf16_det_$det.json" | tee -a "$R/summary.txt"; echo | tee -a "$R/summary.txt"
done
for f in "$R"/*.log; do grep -v "^W1129\|Warning" "$f" | tail -40 > "$f.tail"; mv "$f.tail" "$f"; done
