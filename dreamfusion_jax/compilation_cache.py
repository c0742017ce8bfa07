"""Compiling: JAX's persistent compilation cache for the command-line tools, and XLA's options for a run.

Compiling is most of a short run's time (the main job on an H200: 23 s for the train step, 4 s for its
1,000 steps), and the same config compiles the same programs every time. The tools turn on JAX's own disk
cache, so a second run of a config (another caption, another seed) skips those compiles.
"""

import concurrent.futures
import os

from absl import flags, logging

ENV = "JAX_COMPILATION_CACHE_DIR"


def default_dir() -> str:
  """$JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/dreamfusion_jax/jax (or under $XDG_CACHE_HOME)."""
  if os.environ.get(ENV):
    return os.environ[ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dreamfusion_jax", "jax")


def define_flag() -> None:
  flags.DEFINE_string(
    "compilation_cache",
    default_dir(),
    "Directory of JAX's persistent compilation cache (later runs of a config skip its compiles); "
    "'' turns it off. Trusted: do not point it at a directory others can write to.",
  )


def enable(directory: str) -> None:
  """Points JAX's persistent cache at directory ('' leaves it off); call before anything is compiled."""
  import jax

  if not directory:
    return
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:  # A cache is an optimisation: never stop a run for it.
    logging.warning("Not caching compiled programs: cannot create %s (%s).", directory, e.strerror)
    return
  jax.config.update("jax_compilation_cache_dir", directory)


def compiler_options(config) -> dict | None:
  """XLA options for a run's large programs (the train step, its renders), or None for XLA's defaults.

  On a GPU: config.gpu_deterministic leaves out XLA's nondeterministic kernels
  (xla_gpu_exclude_nondeterministic_ops), so the same config and seed give the same result run to run;
  config.gpu_triton_gemm=False turns off XLA's Triton GEMM fusions, so XLA calls cuBLAS for the matrix
  products instead of autotuning Triton kernels for each, which is much of a short run's compile time
  (BENCHMARKS.md). Other backends ignore both fields.
  """
  import jax

  if jax.default_backend() != "gpu":
    return None
  options = {}
  if config.get("gpu_deterministic", False):
    options["xla_gpu_exclude_nondeterministic_ops"] = True
  if not config.get("gpu_triton_gemm", True):
    options["xla_gpu_enable_triton_gemm"] = False
  return options or None


def in_background(fn, name: str) -> concurrent.futures.Future:
  """Runs fn() on its own worker thread (named `name`); its future gives fn's result or re-raises its error.

  For compiles: XLA compiles outside Python's lock, so several run at once and beside the caller.
  """
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
  future = pool.submit(fn)
  pool.shutdown(wait=False)  # The thread ends with its one task.
  return future
