#!/usr/bin/env bash
# Round 21: the prior's white-caption fine-tune continued from step 33,000 with CENTRED cameras
# (look-at std 0, position jitter 0), then the default sweep on seed 3 with the new prior and centred
# NeRF cameras, params saved and converted to density grids for offline analysis.
# Run: carry ["runs/whl", "runs/r11x", "runs/r21"]; install line first.
set -u
T0=$(date +%s)
R=$OUT/r21; mkdir -p "$R"
nvidia-smi -L; date +%T
mkdir -p /tmp/pX && cat runs/r11x/pW_ckpt.tar.* | tar -xf - -C /tmp/pX
timeout 360 python3 -m dreamfusion_jax.train_prior --workdir=/tmp/pX --steps=60000 --batch=256 --lr=6e-4 \
    --distance_range=1.25,1.25 --focal_range=1.0,1.0 --look_at_std=0 --position_jitter=0 --textureless_caption=white \
    --time_limit_min=5.0 --checkpoint_every_min=10 --export_on_stop --noprogress_bar > "$R/finetune.log" 2>&1
echo "finetune exit $? at $(date +%T)"
cp /tmp/pX/metrics.jsonl "$R/finetune.metrics.jsonl"
(cd /tmp/pX && tar -czf "$OUT/pX_export.tgz" export)
(cd /tmp/pX && tar -cf - checkpoints metrics.jsonl | split -b 15m - "$OUT/pX_ckpt.tar.")
LEFT=$(( 585 - ($(date +%s) - T0) ))
echo "sweep gets $LEFT s"
timeout $LEFT python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=3 --out=/tmp/c_s3 \
    --levels=2,5 --save_params --config.progress_bar=false --config.guidance.path=/tmp/pX/export \
    --config.camera.look_at_std=0.0 --config.camera.position_jitter=0.0 > "$R/c_s3.log" 2>&1
echo "sweep exit $? at $(date +%T)"
cp /tmp/c_s3/summary.* "$R/" 2>/dev/null
timeout 60 python3 runs/r21/grids.py /tmp/c_s3 "$OUT/grids_c_s3.npz" > "$R/grids.log" 2>&1
echo "grids exit $? at $(date +%T)"
cd "$OUT" && tar -czf r21.tgz r21 && rm -rf r21; ls -la "$OUT"
