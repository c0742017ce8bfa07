#!/usr/bin/env bash
# Round 36: the sweep's seeds 3, 4, 5 with the default after this round's change (gpu_triton_gemm=false:
# cuBLAS for the matrix products instead of XLA's Triton GEMM fusions, so the numbers move a little),
# to compare with round 30-31's albedo_bias14_s3..s5 (the same default with Triton GEMM fusions).
set -u
R=$OUT/r36; mkdir -p "$R"
nvidia-smi -L; date +%T
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 540 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --out="/tmp/$name" --levels=2,5 --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
  (cd /tmp && tar -czf "$OUT/$name.tgz" "$name")
}
sweep cublas_s3 --first_seed=3 &
sweep cublas_s4 --first_seed=4 &
sweep cublas_s5 --first_seed=5 &
wait
cd "$OUT" && tar -czf r36.tgz r36 && rm -rf r36; ls -la "$OUT"
