#!/usr/bin/env bash
# Round 8 (one H200): a longer zoom fine-tune of the prior (pA2) while prior pA (1,700 fine-tune steps)
# sweeps opacity penalties that counter the classifier-free guidance's growth push.
set -u
R=$OUT/r8; mkdir -p "$R"
sweep() {  # sweep LIMIT_S NAME [flags...]
  local limit=$1 name=$2; shift 2
  timeout "$limit" python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 \
      --first_seed=2 --out="$R/$name" --config.progress_bar=false "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"; rm -rf "$R/$name/views"
}
finetune() {  # finetune NAME [camera flags...]
  local name=$1; shift
  mkdir -p /tmp/$name && cat runs/prior_carry2/ckpt.tar.* | tar -xf - -C /tmp/$name
  timeout 450 python3 -m dreamfusion_jax.train_prior --workdir=/tmp/$name --steps=40000 \
      --batch=256 --lr=6e-4 --pool_size=4096 --time_limit_min=6.5 --export_on_stop --noprogress_bar "$@" \
      > "$R/$name.log" 2>&1
  echo "$name finetune exit $? at $(date +%T)"
  cp /tmp/$name/metrics.jsonl "$R/$name.metrics.jsonl"
  mkdir -p "$OUT/$name" && cp -r /tmp/$name/export "$OUT/$name/"
}
P="--config.guidance.path=runs/r7x/pA/export --config.camera.distance_range=(1.25,1.25) --config.camera.focal_range=(1.0,1.0)"
nvidia-smi -L; date +%T
finetune pA2 --distance_range=1.25,1.25 --focal_range=1.0,1.0 &
(sweep 275 pA_op1000 $P --config.reg.opacity=1000; sweep 255 pA_op3000 $P --config.reg.opacity=3000) &
(sweep 275 pA_op300 $P --config.reg.opacity=300; sweep 255 pA_cfg30 $P --config.guidance.scale=30) &
(sweep 275 pA_op1000_netlr $P --config.reg.opacity=1000 --config.optim.net_lr=1e-2) &
wait
cd "$OUT" && tar -czf r8.tgz r8 && rm -rf r8; tar -czf pA2.tgz pA2 && rm -rf pA2; ls -la
