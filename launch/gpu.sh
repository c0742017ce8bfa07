#!/usr/bin/env bash
# Run a config on one GPU host, using all of its GPUs (seeds are sharded over them), e.g.
#
#   launch/gpu.sh configs/smoke.py /tmp/runs/smoke --config.num_seeds=2
#
# Installs JAX with CUDA if it is missing. Seeds are split over as many GPUs as evenly divide
# num_seeds; CUDA_VISIBLE_DEVICES picks which GPUs.
#
# The run replaces this shell (exec), so a scheduler's SIGTERM reaches it and its exit status is the
# script's: 0 done; 2 an error its message explains (bad input, a workdir in use, a full disk); 75
# (EX_TEMPFAIL) stopped by SIGTERM/SIGINT after writing a checkpoint: requeue on 75 (e.g. Slurm's
# RequeueExit=75, or `until launch/gpu.sh ...; [ $? -ne 75 ]; do :; done`), the same command resumes.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
cd "$(dirname "$0")/.."
if ! python3 -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
  python3 -m pip install -q -U 'jax[cuda13]'
fi
python3 -m pip install -q -e .
# JAX takes 75% of GPU memory up front by default; growing on demand lets several jobs share a GPU.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec python3 -m dreamfusion_jax.main --config="$config" --workdir="$workdir" "$@"
