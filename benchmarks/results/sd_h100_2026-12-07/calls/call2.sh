set -u
T0=$(date +%s)
cd .gpu/src && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
[ -f /tmp/sd21_base_random/unet/diffusion_pytorch_model.safetensors ] || python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > /dev/null 2>&1
printf '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version 6.0-stub"; exit 0;; esac\nfor last; do :; done\ncat > /dev/null\n: > "$last"\n' > /tmp/ffmpeg_stub
chmod +x /tmp/ffmpeg_stub; export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg_stub
R=$OUT/r; mkdir -p $R
echo "ready after $(( $(date +%s) - T0 )) s" > $OUT/log.txt
path() { # path NAME TREE
  (cd ../$2 && timeout 150 python3 benchmarks/sd_memory_cap.py --model=/tmp/sd21_base_random --cases=path --cap_gib=6 \
    --timeout_s=140 --out=$R/$1.json > $R/$1.log 2>&1)
  echo "$1 exit $? after $(( $(date +%s) - T0 )) s: $(python3 -c "import json;p=json.load(open('$R/$1.json'))['path'];print(p.get('finished'),p.get('peak_gib'),p.get('validation_images'),p.get('exports'),p['log_tail'][-1][-200:])" 2>&1)" >> $OUT/log.txt
}
path new_a src
path old_a old
path new_b src
[ $(( $(date +%s) - T0 )) -lt 380 ] && timeout 120 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random --config=configs/peacock.py --repeats=2 \
  --timeout=55 --out=$R/sd_start.json > $R/sd_start.log 2>&1
echo "start exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
[ $(( $(date +%s) - T0 )) -lt 440 ] && XLA_FLAGS=--xla_gpu_autotune_level=0 timeout 100 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random \
  --config=configs/peacock.py --repeats=2 --timeout=55 --out=$R/sd_start_at0.json > $R/sd_start_at0.log 2>&1
echo "start at0 exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
for at in 0 4; do
  [ $(( $(date +%s) - T0 )) -lt 500 ] || break
  XLA_FLAGS=--xla_gpu_autotune_level=$at XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 75 python3 benchmarks/sd_step.py \
    --model=/tmp/sd21_base_random --steps=20 --noparts --out=$R/step_at$at.json > $R/step_at$at.log 2>&1
  echo "step at$at exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
done
cd $OUT && tar -czf r.tgz r && rm -rf r
