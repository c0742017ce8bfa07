#!/usr/bin/env bash
# Two levers for the default (issue 'Solid objects'), four sweeps sharing one GPU in one call:
# - more steps: the CPU main job takes 3 min 40 s of its 10 minutes, so up to ~2,000 steps fit. B: 2,000 steps
#   whose schedules still end at step 1,000 (the extra 1,000 steps at beta 0.005 and t_max 0.5);
# - the training renders' normals from central differences (render.normal_step, Neuralangelo's numerical
#   gradient): C at a step of 0.01, D at 0.03 (about one cell of the finest grid level, 2 / 64).
# One caption of each of the 11 shapes plus two chairs and a cube x 2 seeds (the shell screen's), in one call:
# `bash .gpu/src/benchmarks/results/steps_2026-12-07/gpu_screen.sh` (a `git archive` tree with .whl/).
set -u
cd .gpu/src
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/.whl/py || exit 1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.23
C="a white sphere;a blue cube;a green cylinder;a red cone;a pink torus;a cyan capsule;a orange pyramid"
C="$C;a yellow octahedron;a purple teardrop;a red bird;a orange chair;a blue chair;a red chair;a red cube"
R=$OUT/steps; mkdir -p $R
run() { name=$1; shift
  timeout ${LIMIT:-575} python3 benchmarks/shapes_sweep.py --captions="$C" --seeds=${SEEDS:-2} --out=/tmp/$name \
    --config.progress_bar=false --fit_workers=3 "$@" > $R/$name.log 2>&1
  echo "$name exit $? at $(date +%T)" >> $R/status.txt
  cp /tmp/$name/summary.json $R/$name.json 2>/dev/null; cp /tmp/$name/summary.md $R/$name.md 2>/dev/null
  mkdir -p $R/views_$name; cp /tmp/$name/views/*.png $R/views_$name/ 2>/dev/null; }
date +%T > $R/status.txt
run A_default &
run B_2000_settle --config.num_steps=2000 &
run C_fd_normals_0.01 --config.render.normal_step=0.01 &
run D_fd_normals_0.03 --config.render.normal_step=0.03 &
wait
nvidia-smi --query-gpu=name --format=csv >> $R/status.txt
cd $OUT && tar -czf steps.tgz steps && rm -rf steps && ls -la $OUT
