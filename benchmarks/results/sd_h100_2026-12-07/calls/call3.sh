set -u
T0=$(date +%s)
cd .gpu/src && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
printf '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version 6.0-stub"; exit 0;; esac\nfor last; do :; done\ncat > /dev/null\n: > "$last"\n' > /tmp/ffmpeg_stub
chmod +x /tmp/ffmpeg_stub; export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg_stub
R=$OUT/r; mkdir -p $R
t=$(date +%s)
timeout 150 python3 -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/main_default --compilation_cache= \
  --config.progress_bar=false > $R/main_default.log 2>&1
echo "main default exit $? in $(( $(date +%s) - t )) s (cold compile cache)" >> $OUT/log.txt
(cd /tmp/main_default && tar -czf $R/main_default_out.tgz --exclude='checkpoints' .)
[ -f /tmp/sd21_base_random/unet/diffusion_pytorch_model.safetensors ] || python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > /dev/null 2>&1
for n in c d; do
  [ $(( $(date +%s) - T0 )) -lt 250 ] || break
  timeout 150 python3 benchmarks/sd_memory_cap.py --model=/tmp/sd21_base_random --cases=path --cap_gib=6 \
    --timeout_s=140 --out=$R/new_$n.json > $R/new_$n.log 2>&1
  echo "new_$n exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
done
cd $OUT && tar -czf r.tgz r && rm -rf r
