"""Shared timing for the benchmark scripts."""

import statistics
import time

import jax


def median_ms(fn, *args, warmup: int, repeats: int) -> float:
  """Median wall time of fn(*args) in milliseconds, after `warmup` untimed calls (the first compiles)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - start) * 1e3)
  return statistics.median(times)
