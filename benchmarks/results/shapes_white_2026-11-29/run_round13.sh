#!/usr/bin/env bash
# Round 13: the white-caption prior (pW). configs/default.py seed 3 and (view prompts off) seed 2; variants
# with a 3x hash-table learning rate (the density can move 3x further in 1000 Adam steps), with and without a
# mild t_max anneal, and a denser initial blob.
set -u
R=$OUT/r13; mkdir -p "$R"
P=runs/r11x/pW_export
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.17
sweep() {  # sweep NAME SEED [flags...]
  local name=$1 seed=$2; shift 2
  timeout 555 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=$seed --out="$R/$name" \
      --config.progress_bar=false --config.guidance.path=$P "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep base_s3 3 &
sweep base_off 2 --no_view_prompts &
sweep lr3 2 --config.optim.lr=3e-2 &
sweep lr3ann07 2 --config.optim.lr=3e-2 --config.guidance.t_anneal_steps=1000 --config.guidance.t_max_final=0.7 &
sweep blob20lr2 2 --config.optim.lr=2e-2 --config.field.blob_density=20 &
wait
rm -rf "$R"/*/views; cd "$OUT" && tar -czf r13.tgz r13 && rm -rf r13; ls -la "$OUT"
