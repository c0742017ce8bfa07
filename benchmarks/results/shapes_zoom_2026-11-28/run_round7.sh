#!/usr/bin/env bash
# Round 7: a zoom-aware Shapes prior. GPUs 0/1 fine-tune the shipped prior (step 23000) on one fixed zoom,
# then sweep with it; GPUs 2/3 sweep the old prior with the NeRF's zoom fixed, then net_lr variants.
set -u
R=$OUT/r7; mkdir -p "$R"
sweep() {  # sweep GPU LIMIT_S NAME [flags...]
  local gpu=$1 limit=$2 name=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
finetune() {  # finetune GPU NAME [camera flags...]
  local gpu=$1 name=$2; shift 2
  mkdir -p /tmp/$name && cat runs/prior_carry2/ckpt.tar.* | tar -xf - -C /tmp/$name
  CUDA_VISIBLE_DEVICES=$gpu timeout 260 python3 -m dreamfusion_jax.train_prior --workdir=/tmp/$name --steps=40000 \
      --batch=256 --lr=6e-4 --time_limit_min=3.3 --export_on_stop --noprogress_bar "$@" > "$R/$name.log" 2>&1
  echo "$name finetune exit $? at $(date +%T)"
  cp /tmp/$name/metrics.jsonl "$R/$name.metrics.jsonl"
  mkdir -p "$OUT/$name" && cp -r /tmp/$name/export "$OUT/$name/"
}
Z="--config.camera.distance_range=(1.25,1.25) --config.camera.focal_range=(1.0,1.0)"
nvidia-smi -L; date +%T
# One GPU: the fine-tune shares it with a sweep of the old prior, then two sweeps share it.
(finetune 0 pA --distance_range=1.25,1.25 --focal_range=1.0,1.0
 sweep 0 265 pA_z08 --config.guidance.path=/tmp/pA/export $Z) &
(sweep 0 255 old_z08 $Z; sweep 0 255 old_netlr1e2 --config.optim.net_lr=1e-2) &
wait
cd "$OUT" && mkdir -p viewsA && mv r7/pA_z08/views viewsA/ 2>/dev/null; rm -rf r7/*/views
tar -czf r7.tgz r7 && rm -rf r7; tar -czf pA.tgz pA && rm -rf pA; 
tar -cf viewsA.tar viewsA && rm -rf viewsA; ls -la
