set -u
T0=$(date +%s)
cd .gpu/src && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.whl/py
nvidia-smi -L > $OUT/log.txt
python3 ../make_random_sd.py /tmp/sd21_base_random fp16 > $OUT/make.log 2>&1
echo "checkpoint after $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
R=$OUT/r; mkdir -p $R/p1 $R/p2
t=$(date +%s)
timeout 200 python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random --config=configs/peacock.py --repeats=3 \
  --timeout=60 --out=$R/p2/sd_start.json > $R/p2/sd_start.log 2>&1
echo "sd_start exit $? in $(( $(date +%s) - t )) s" >> $OUT/log.txt
t=$(date +%s)
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 170 python3 benchmarks/sd_vs_torch.py --model=/tmp/sd21_base_random \
  --out=$R/p2/sd_vs_torch.json > $R/p2/sd_vs_torch.log 2>&1
echo "sd_vs_torch exit $? in $(( $(date +%s) - t )) s" >> $OUT/log.txt
t=$(date +%s)
left=$(( 575 - ($(date +%s) - T0) ))
MEM_JOBS="bf16_step_cap4_async peacock_cap6" timeout $left bash benchmarks/sd_gpu_one.sh 1 $R/p1 ../make_random_sd.py >> $OUT/log.txt 2>&1
echo "p1 exit $? in $(( $(date +%s) - t )) s; total $(( $(date +%s) - T0 )) s" >> $OUT/log.txt
cd $OUT && tar -czf r.tgz r && rm -rf r
