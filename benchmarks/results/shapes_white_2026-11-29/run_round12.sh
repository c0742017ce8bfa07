#!/usr/bin/env bash
# Round 12: configs/default.py with the white-caption prior (round 11's pW export), seed 2: as is,
# and with t_max annealed (0.98 -> 0.5, -> 0.35 over the 1000 steps), and anneal + entropy 1e-2.
set -u
R=$OUT/r12; mkdir -p "$R"
P=runs/r11x/pW_export
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.22
sweep() {  # sweep NAME [flags...]
  local name=$1; shift
  timeout 575 python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=2 --out="$R/$name" \
      --config.progress_bar=false --config.guidance.path=$P "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
nvidia-smi -L; date +%T
sweep base &
sweep ann05 --config.guidance.t_anneal_steps=1000 --config.guidance.t_max_final=0.5 &
sweep ann035 --config.guidance.t_anneal_steps=1000 --config.guidance.t_max_final=0.35 &
sweep ann05ent --config.guidance.t_anneal_steps=1000 --config.guidance.t_max_final=0.5 --config.reg.entropy=1e-2 &
wait
mkdir -p "$OUT/views12"; for d in "$R"/*/; do n=$(basename "$d"); [ -d "$d/views" ] && mv "$d/views" "$OUT/views12/$n"; done
cd "$OUT" && tar -czf r12.tgz r12 && rm -rf r12; tar -cf views12.tar views12 && rm -rf views12; ls -la "$OUT"
