#!/usr/bin/env bash
# Round 11: fine-tune the prior from step 23,000 on the zoom with textureless renders captioned 'white',
# then sweep configs/default.py (seed 2) with it.
set -u
T0=$(date +%s)
R=$OUT/r11; mkdir -p "$R"
nvidia-smi -L; date +%T
mkdir -p /tmp/pW && cat runs/prior_carry2/ckpt.tar.* | tar -xf - -C /tmp/pW
timeout 420 python3 -m dreamfusion_jax.train_prior --workdir=/tmp/pW --steps=60000 --batch=256 --lr=6e-4 \
    --distance_range=1.25,1.25 --focal_range=1.0,1.0 --textureless_caption=white \
    --time_limit_min=6.2 --checkpoint_every_min=10 --export_on_stop --noprogress_bar > "$R/finetune.log" 2>&1
echo "finetune exit $? at $(date +%T)"
cp /tmp/pW/metrics.jsonl "$R/finetune.metrics.jsonl"
cp -r /tmp/pW/export "$OUT/pW_export"
(cd /tmp/pW && tar -cf - checkpoints metrics.jsonl | split -b 15m - "$OUT/pW_ckpt.tar.")
LEFT=$(( 590 - ($(date +%s) - T0) - 15 ))
echo "sweep gets $LEFT s"
timeout $LEFT python3 benchmarks/shapes_sweep.py --captions=all --seeds=1 --first_seed=2 --out="$R/pW_default" \
    --config.progress_bar=false --config.guidance.path=/tmp/pW/export > "$R/pW_default.log" 2>&1
echo "sweep exit $? at $(date +%T)"
mv "$R/pW_default/views" "$OUT/viewsW" 2>/dev/null; cd "$OUT" && tar -cf viewsW.tar viewsW && rm -rf viewsW; cd "$OUT" && tar -czf r11.tgz r11 && rm -rf r11; ls -la "$OUT"
