#!/usr/bin/env bash
# Screening: 3 variants x 22 captions (two colours per shape, the 6 held-out pairs among them) x 2 seeds, at once.
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2
C="a purple sphere;a cyan sphere;a red cube;a green cube;a yellow cylinder;a pink cylinder;a green cone;a blue cone"
C="$C;a red torus;a gray torus;a orange capsule;a white capsule;a blue pyramid;a yellow pyramid;a cyan octahedron"
C="$C;a red octahedron;a blue teardrop;a pink teardrop;a green bird;a orange bird;a orange chair;a purple chair"
R=$OUT/screen; mkdir -p $R
SDF="--config.field.density_activation=volsdf --config.sdf.beta_start=0.05 --config.sdf.eikonal=1000 --config.field.blob_radius=0.3"
run() { name=$1; shift
  timeout ${LIMIT:-540} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=2 --out=/tmp/$name \
    --config.progress_bar=false "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run A_density &
run B_sdf $SDF --config.export.mesh_threshold=50 &
run C_sdf_b005 $SDF --config.field.sdf_beta=0.005 --config.export.mesh_threshold=100 &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $R/status.txt
cd $OUT && tar -czf screen.tgz screen && rm -rf screen && ls -la $OUT
