#!/usr/bin/env bash
# Is the main job (configs/default.py) the same run to run on one GPU?  bash benchmarks/determinism_gpu.sh DIR
# Runs it several times and compares each run's metrics.jsonl (every logged loss, every seed, except the
# timing) and mesh.ply bytes with the first run's:
#   base_a  XLA's defaults, a fresh compilation cache; base_b  the same cache (the same compiled program,
#   so only the execution can differ); base_c  no cache (XLA compiles and autotunes again);
#   excl_a, excl_b  XLA_FLAGS=--xla_gpu_exclude_nondeterministic_ops=true, no cache;
#   det_a  XLA_FLAGS=--xla_gpu_deterministic_ops=true, no cache (also its time).
set -u
R=${1:?usage: determinism_gpu.sh RESULTS_DIR}
mkdir -p "$R"
job() {  # job NAME CACHE XLA_FLAGS
  local name=$1 cache=$2 flags=$3 start; start=$(date +%s.%N)
  XLA_FLAGS="$flags" timeout 120 python3 -m dreamfusion_jax.main --config=configs/default.py \
      --workdir="/tmp/det_$name" --compilation_cache="$cache" --config.progress_bar=false > "$R/$name.log" 2>&1
  python3 -c "print(f'$name: exit $?, {$(date +%s.%N) - $start:.1f} s wall')" | tee -a "$R/summary.txt"
  grep -E "steps in" "$R/$name.log" | sed 's/^.*\] //' | tee -a "$R/summary.txt"
}
nvidia-smi -L | tee "$R/summary.txt"
job base_a "$R/cache" ""
job base_b "$R/cache" ""
job base_c "" ""
job excl_a "" "--xla_gpu_exclude_nondeterministic_ops=true"
job excl_b "" "--xla_gpu_exclude_nondeterministic_ops=true"
job det_a "" "--xla_gpu_deterministic_ops=true"
python3 - "$R" <<'PY' | tee -a "$R/summary.txt"
import json, sys, filecmp
def metrics(name):
  try:
    rows = [json.loads(l) for l in open(f"/tmp/det_{name}/metrics.jsonl")]
  except OSError:
    return None
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows]
def compare(a, b):
  ma, mb = metrics(a), metrics(b)
  if ma is None or mb is None:
    return f"{b} vs {a}: missing"
  same = ma == mb
  worst = max(abs(x[k] - y[k]) / (abs(x[k]) + 1e-12) for x, y in zip(ma, mb) for k in x if k != "step")
  first = next((x["step"] for x, y in zip(ma, mb) if x != y), None)
  mesh = filecmp.cmp(f"/tmp/det_{a}/seed_0/mesh.ply", f"/tmp/det_{b}/seed_0/mesh.ply", shallow=False)
  return (f"{b} vs {a}: metrics identical {same}, first differing log step {first}, worst relative "
          f"difference {worst:.2e}, mesh.ply identical {mesh}, final loss {ma[-1]['loss']:.6g} / {mb[-1]['loss']:.6g}")
for a, b in [("base_a", "base_b"), ("base_a", "base_c"), ("excl_a", "excl_b"), ("base_a", "excl_a"), ("excl_a", "det_a")]:
  print(compare(a, b))
PY
rm -rf "$R/cache"
