"""Times the pure-JAX multi-resolution hash encoding alone.

Forward (encode P points) and forward+backward w.r.t. the tables (the
scatter-add that dominates training), each jitted, warmed up, then the median
of --repeats timed calls with block_until_ready. Prints one JSON line.

    python benchmarks/bench_hash.py                    # 1M points, 16 x 2^19 x 2 (GPU)
    python benchmarks/bench_hash.py --points 65536     # quick CPU run

Memory: the gather materialises [P, L, 8, F] floats, ~1 GiB at 1M points.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from timing import median_ms  # noqa: E402  (benchmarks/timing.py)

from dreamfusion_jax.nerf.hash_encoding import hash_encode, level_resolutions  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--points", type=int, default=1_000_000, help="Points per call (P).")
  parser.add_argument("--levels", type=int, default=16, help="L, resolution levels.")
  parser.add_argument("--log2_hashmap_size", type=int, default=19, help="log2 T, rows per level.")
  parser.add_argument("--features", type=int, default=2, help="F, features per level.")
  parser.add_argument("--base_resolution", type=int, default=16, help="N_min.")
  parser.add_argument("--max_resolution", type=int, default=512, help="N_max.")
  parser.add_argument("--warmup", type=int, default=2, help="Untimed calls (first compiles).")
  parser.add_argument("--repeats", type=int, default=20, help="Timed calls; the median is reported.")
  args = parser.parse_args()

  resolutions = level_resolutions(args.levels, args.base_resolution, args.max_resolution)
  key_t, key_x, key_c = jax.random.split(jax.random.key(0), 3)
  table_shape = (args.levels, 2**args.log2_hashmap_size, args.features)
  tables = jax.random.uniform(key_t, table_shape, minval=-1e-4, maxval=1e-4)
  x = jax.random.uniform(key_x, (args.points, 3))
  cotangent = jax.random.normal(key_c, (args.points, args.levels * args.features))

  forward = jax.jit(lambda t, p: hash_encode(t, p, resolutions))

  @jax.jit
  def forward_backward(t, p, c):
    out, vjp_fn = jax.vjp(lambda tt: hash_encode(tt, p, resolutions), t)
    return out, vjp_fn(c)[0]

  fwd_ms = median_ms(forward, tables, x, warmup=args.warmup, repeats=args.repeats)
  fwd_bwd_ms = median_ms(forward_backward, tables, x, cotangent, warmup=args.warmup, repeats=args.repeats)
  device = jax.devices()[0]
  print(
    json.dumps(
      dict(
        benchmark="hash_encoding",
        device=getattr(device, "device_kind", str(device)),
        platform=device.platform,
        jax=jax.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        points=args.points,
        levels=args.levels,
        log2_hashmap_size=args.log2_hashmap_size,
        features=args.features,
        resolutions=list(resolutions),
        repeats=args.repeats,
        forward_ms=round(fwd_ms, 3),
        forward_backward_ms=round(fwd_bwd_ms, 3),
      )
    )
  )


if __name__ == "__main__":
  main()
