#!/usr/bin/env bash
# Run a config on every worker of a Cloud TPU VM (single- or multi-host), e.g.
#
#   launch/tpu_vm.sh my-tpu us-central2-b configs/smoke.py /mnt/shared/runs/smoke \
#       --config.prompt="a red cube" --config.num_seeds=8
#
# Every worker runs the same program; jax.distributed.initialize() joins them into one JAX job, and
# the seeds are sharded over all chips of all hosts (num_seeds must be a multiple of the chip count
# on a multi-host slice). On a multi-host slice the workdir must be a path every host sees (NFS,
# Filestore or a bucket mounted with gcsfuse): orbax writes checkpoints there from all hosts, and
# process 0 writes metrics and exports. A single-host TPU VM can use any local directory.
#
# A preempted or signalled run stops at a checkpoint and exits 75 (every host at the same step); the
# script then exits 75 too, so a wrapper or scheduler can requeue it: rerunning the same command resumes.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
name=$1 zone=$2 config=$3 workdir=$4
shift 4
overrides=$(printf ' %q' "$@")
# Ship this checkout (committed files) to every worker, so all hosts run the same code.
cd "$(dirname "$0")/.."
archive=$(mktemp -d)/dreamfusion_jax.tar.gz
git archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$name":~/dreamfusion_jax.tar.gz --zone="$zone" --worker=all
remote="set -e
rm -rf ~/dreamfusion_jax && mkdir ~/dreamfusion_jax && tar -xzf ~/dreamfusion_jax.tar.gz -C ~/dreamfusion_jax
cd ~/dreamfusion_jax
python3 -m pip install -q -U 'jax[tpu]' -e .
python3 -m dreamfusion_jax.main --config=$config --workdir=$workdir --jax_distributed=true$overrides"
status=0
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$remote" || status=$?
if [ "$status" -eq 75 ]; then
  echo "Interrupted at a checkpoint (exit 75): rerun this command to resume." >&2
fi
exit "$status"
