set -u
T0=$(date +%s)
bash .gpu/src/benchmarks/results/smooth_points_2026-12-07/gpu_combo.sh > $OUT/combo.txt 2>&1
echo "combo done after $(( $(date +%s) - T0 )) s" >> $OUT/combo.txt
cd .gpu/src && export PYTHONPATH=/tmp/site:$PWD/.whl/py
left=$(( 585 - ($(date +%s) - T0) ))
echo "start: $left s left" >> $OUT/combo.txt
[ $left -gt 90 ] && timeout $left python3 benchmarks/sd_start.py --model=/tmp/sd21_base_random --config=configs/peacock.py \
  --repeats=2 --timeout=80 --out=$OUT/sd_start.json > $OUT/sd_start.log 2>&1
echo "start exit $? after $(( $(date +%s) - T0 )) s" >> $OUT/combo.txt
