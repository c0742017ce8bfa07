"""Speed-up of a multi-seed run from one GPU to several: the same config, seeds sharded over devices.

  python benchmarks/multiseed_speedup.py --config=configs/smoke.py --num_seeds=2 --gpus=0 --gpus=0,1

Runs `dreamfusion_jax.main` once per --gpus value (CUDA_VISIBLE_DEVICES) in a fresh workdir and
reads steps/s from metrics.jsonl, skipping the first record (it includes compilation). Prints one
JSON line.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile


def run(config, gpus, num_seeds, num_steps, extra):
  workdir = tempfile.mkdtemp(prefix="multiseed_")
  env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus, XLA_PYTHON_CLIENT_PREALLOCATE="false")
  cmd = [
    sys.executable,
    "-m",
    "dreamfusion_jax.main",
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.num_seeds={num_seeds}",
    f"--config.num_steps={num_steps}",
    "--config.log_every=50",
    "--config.val_every=0",
    "--config.checkpoint_every=100000",
    "--config.export.enabled=false",
    "--config.progress_bar=false",
    *extra,
  ]
  subprocess.run(cmd, env=env, check=True)
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  rates = [r["steps_per_sec"] for r in records[1:-1]] or [records[-1]["steps_per_sec"]]
  return sum(rates) / len(rates)


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--config", default="configs/smoke.py")
  p.add_argument("--num_seeds", type=int, default=2)
  p.add_argument("--num_steps", type=int, default=500)
  p.add_argument("--gpus", action="append", default=None, help="CUDA_VISIBLE_DEVICES values, e.g. 0 and 0,1.")
  p.add_argument("extra", nargs="*", help="More --config.FIELD=VALUE overrides (after --).")
  args = p.parse_args()
  gpus = args.gpus or ["0", "0,1"]
  rates = {g: run(args.config, g, args.num_seeds, args.num_steps, args.extra) for g in gpus}
  import jax

  print(
    json.dumps(
      {
        "bench": "multiseed_speedup",
        "config": args.config,
        "num_seeds": args.num_seeds,
        "steps_per_sec": rates,
        "speedup": rates[gpus[-1]] / rates[gpus[0]],
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "overrides": args.extra,
      }
    )
  )


if __name__ == "__main__":
  main()
