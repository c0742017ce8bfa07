#!/usr/bin/env bash
# Round 22: the centred prior (step 40,900, round 21) fine-tuned on with textureless renders captioned with the
# albedo's colour again (the white captions make the unconditional score brighter than every coloured
# caption's, so CFG pushes albedo dark), then the sweep on seeds 3 and 4 with centred NeRF cameras.
# Run: carry ["runs/whl", "runs/r21x/pX_ckpt.tar.aa", ".ab", ".ac", "runs/r22"]; install line first.
set -u
T0=$(date +%s)
R=$OUT/r22; mkdir -p "$R"
nvidia-smi -L; date +%T
mkdir -p /tmp/pY && cat runs/r21x/pX_ckpt.tar.* | tar -xf - -C /tmp/pY
timeout 330 python3 -m dreamfusion_jax.train_prior --workdir=/tmp/pY --steps=80000 --batch=256 --lr=6e-4 \
    --distance_range=1.25,1.25 --focal_range=1.0,1.0 --look_at_std=0 --position_jitter=0 --textureless_caption=albedo \
    --time_limit_min=4.5 --checkpoint_every_min=10 --export_on_stop --noprogress_bar > "$R/finetune.log" 2>&1
echo "finetune exit $? at $(date +%T)"
cp /tmp/pY/metrics.jsonl "$R/finetune.metrics.jsonl"
(cd /tmp/pY && tar -czf "$OUT/pY_export.tgz" export)
(cd /tmp/pY && tar -cf - checkpoints metrics.jsonl | split -b 15m - "$OUT/pY_ckpt.tar.")
LEFT=$(( 585 - ($(date +%s) - T0) ))
echo "sweep gets $LEFT s"
timeout $LEFT python3 benchmarks/shapes_sweep.py --captions=all --seeds=2 --first_seed=3 --out=/tmp/y_s34 \
    --levels=2,5 --config.progress_bar=false --config.guidance.path=/tmp/pY/export \
    --config.camera.look_at_std=0.0 --config.camera.position_jitter=0.0 > "$R/y_s34.log" 2>&1
echo "sweep exit $? at $(date +%T)"
cp /tmp/y_s34/summary.* "$R/" 2>/dev/null
(cd /tmp/y_s34 && tar -cf - views | gzip -1 > "$R/views.tgz") 2>/dev/null
cd "$OUT" && tar -czf r22.tgz r22 && rm -rf r22; ls -la "$OUT"
