set -u
T0=$(date +%s)
cd .gpu/src && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
[ -f /tmp/sd21_base_random/unet/diffusion_pytorch_model.safetensors ] || python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > /dev/null 2>&1
echo "ready after $(( $(date +%s) - T0 )) s" > $OUT/log.txt
for at in 1 4; do
  XLA_FLAGS=--xla_gpu_autotune_level=$at timeout 100 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random \
    --config=configs/peacock.py --repeats=2 --timeout=48 --out=$OUT/start_at$at.json > /dev/null 2>&1
  echo "start at$at exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
done
for at in 1 4; do
  XLA_FLAGS=--xla_gpu_autotune_level=$at XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 70 python3 benchmarks/sd_step.py \
    --model=/tmp/sd21_base_random --steps=20 --noparts --out=$OUT/step_at$at.json > $OUT/step_at$at.log 2>&1
  echo "step at$at exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
done
