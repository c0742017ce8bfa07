"""What a run's train step needs of a device's memory, estimated from the config before anything is compiled.

Compiling the step and asking XLA (`jit(step).lower(...).compile().memory_analysis()`) is exact but takes
seconds to minutes, and for the configs this check exists for (a huge num_seeds, render.image_size or
render.num_coarse) it would itself run out of memory or time. The estimate is analytic instead: the step's
activations are per ray sample, so

  activations = rays x (num_coarse x coarse_bytes + num_fine x fine_bytes)    rays = seeds x batch x image^2
  coarse_bytes = 40 + 80 L (F + 2) / 4            (the density pass: a hash gather per level, no gradient)
  fine_bytes = 613 + 208 L (F + 2) / 4 + 6 W H    (the shaded pass with normals and the backward pass)

with L hash levels, F features per level and an MLP of H hidden layers of width W; plus the hash tables four
times (parameters, gradient, Adam's two moments), the eikonal points of a signed-distance field (as fine
samples), and the prior. The constants were fitted to XLA's memory_analysis of the CPU step (temp + arguments
+ outputs) for the tiny test config with 16/32 renders, 8/64 coarse, 8/32 fine samples, 4/16 levels, width
16/64, one or two seeds, batch one or two: the estimates are 4-13% above those measurements, the smoke
config's 8% and the default's 27% (tests/test_checks.py measures two configs again). Stable Diffusion's part is BENCHMARKS.md's measured peak of
its whole step at 512x512 (configs/sd21_base.py: float32 55.6 GiB, bfloat16 3.91 GiB, remat 3.42 GiB; sd_step.py's
figures are GiB) less that config's renders and hash tables by the formula above, which are counted on their own,
scaled with the render count and area: so configs/sd21_base.py's estimate is its measured peak.

The check refuses a run whose estimate exceeds the memory of the device (a GPU's or TPU's `bytes_limit`; on the
CPU the host's available memory). The estimate is a guide, not a bound: DREAMFUSION_JAX_MEMORY_CHECK=0 turns
the check off.
"""

import dataclasses
import os
from typing import Optional

import ml_collections
from absl import logging

from dreamfusion_jax.errors import ConfigError

GB = 1e9
GIB = 2**30
# BENCHMARKS.md, 'Stable Diffusion step' (configs/sd21_base.py: one 64x64 render resized to 512x512, H200): the
# measured peaks of the whole step (benchmarks/sd_step.py's peak_gb, in GiB).
_SD_PEAK_512 = {("float32", False): 55.58 * GIB, ("bfloat16", False): 3.907 * GIB, ("bfloat16", True): 3.42 * GIB}


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Bytes one device needs for the train step (`device`) and the host for the export's mesh (`export`)."""

  activations: float  # The renders' samples of the seeds this device holds.
  tables: float  # Hash tables with gradient and Adam's moments.
  prior: float  # The prior's weights and activations.
  export: float  # Host memory of the marching cubes at export.mesh_resolution (0 without exports).

  @property
  def device(self) -> float:
    return self.activations + self.tables + self.prior


def seeds_per_device(num_seeds: int, num_devices: int) -> int:
  """Seeds one device holds: train.seed_mesh shards the seeds over the most devices that divide them evenly."""
  used = max(d for d in range(1, max(num_devices, 1) + 1) if num_seeds % d == 0)
  return num_seeds // used


def estimate(config: ml_collections.ConfigDict, num_devices: int = 1) -> Estimate:
  """The memory the config's train step needs on each of num_devices devices (see the module docstring)."""
  f, r = config.field, config.render
  seeds = seeds_per_device(config.num_seeds, num_devices)
  levels = f.num_levels * (f.features_per_level + 2) / 4.0
  coarse = 40.0 + 80.0 * levels
  fine = 613.0 + 208.0 * levels + 6.0 * f.mlp_width * max(f.mlp_num_hidden, 1)
  views = seeds * config.batch_size
  activations = views * r.image_size**2 * (r.num_coarse * coarse + r.num_fine * fine)
  if f.density_activation == "volsdf":
    # The eikonal term's points, and the smoothness term's two more passes over them.
    passes = 1 + (2 if config.sdf.smoothness > 0 else 0)
    activations += seeds * config.sdf.eikonal_points * fine * passes
  tables = seeds * 4.0 * 4 * f.num_levels * 2**f.log2_hashmap_size * f.features_per_level
  export = 40.0 * config.export.mesh_resolution**3 if config.export.enabled else 0.0
  return Estimate(activations, tables, _prior_bytes(config, views), export)


def _prior_bytes(config: ml_collections.ConfigDict, views: int) -> float:
  g = config.guidance
  if g.model == "stable_diffusion":
    peak = _SD_PEAK_512[(g.sd.dtype, bool(g.sd.remat and g.sd.dtype == "bfloat16"))] - _sd_measured_nerf_bytes()
    return peak * views * (g.sd.image_size / 512.0) ** 2
  if g.model == "shapes":  # 3.6M float32 parameters; a forward pass (no gradient) of 2 x views 64x64 images.
    return 15e6 + 2 * views * 64**2 * 96 * 4
  # The random prior: ~1M parameters at the base config's widths; it denoises the renders at their size.
  channels = max(g.unet.block_out_channels)
  return 4e6 * (channels / 64) ** 2 + 2 * views * config.render.image_size**2 * channels * 4 * 4


def _sd_measured_nerf_bytes() -> float:
  """The renders and hash tables of the step _SD_PEAK_512 measured (configs/sd21_base.py: the base config's field
  and samples, 64x64 renders, one view), by this module's formula."""
  from dreamfusion_jax import base_config

  c = base_config.get_config()
  c.render.image_size = 64
  c.guidance.model = "random"  # Only the renders and tables are wanted here, not a prior's part.
  est = estimate(c)
  return est.activations + est.tables


def host_available_bytes() -> Optional[float]:
  """The host's available memory (Linux: MemAvailable), or None where it can't be read."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return float(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return None


def device_bytes() -> tuple[Optional[float], str]:
  """(memory of one device in bytes or None, its description): an accelerator's bytes_limit, or the host's
  available memory for the CPU."""
  import jax

  device = jax.local_devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001 -- backends without memory statistics raise various errors.
    stats = None
  if stats and stats.get("bytes_limit"):
    return float(stats["bytes_limit"]), f"one {device.device_kind}"
  return host_available_bytes(), "the host (CPU, available memory)"


TIGHT = 0.85  # Above this share of the device's memory, check() warns of the allocator's fragmentation.


def _async_allocator() -> bool:
  return os.environ.get("XLA_PYTHON_CLIENT_ALLOCATOR", "").lower() == "cuda_async"


def _sd_advice(config: ml_collections.ConfigDict) -> str:
  """What lowers a Stable Diffusion step's memory most, as a sentence ('' for other priors or nothing left)."""
  if config.guidance.model != "stable_diffusion":
    return ""
  sd = config.guidance.sd
  fixes = ["--config.guidance.sd.dtype=bfloat16"] if sd.dtype == "float32" else []
  fixes += [] if sd.remat else ["--config.guidance.sd.remat=true"]
  return (
    f"For Stable Diffusion, first {' and '.join(fixes)} (BENCHMARKS.md, 'Stable Diffusion step'). " if fixes else ""
  )


def check(config: ml_collections.ConfigDict) -> Estimate:
  """Raises ConfigError when the step's estimate exceeds the device's memory, or the export's the host's;
  returns the estimate."""
  import jax

  devices = jax.devices()
  platform = devices[0].platform
  # On the CPU every device shares the host's memory: the whole program counts against it.
  est = estimate(config, 1 if platform == "cpu" else len(devices))
  if os.environ.get("DREAMFUSION_JAX_MEMORY_CHECK", "1") == "0":
    return est
  have, what = device_bytes()
  advice = _sd_advice(config)
  if have is not None and est.device > have:
    raise ConfigError(
      f"This config's train step needs about {est.device / GB:.1f} GB per device (renders {est.activations / GB:.1f} "
      f"GB, hash tables {est.tables / GB:.1f} GB, prior {est.prior / GB:.1f} GB); the device, {what}, has "
      f"{have / GB:.1f} GB. {advice}{'Otherwise lower' if advice else 'Lower'} num_seeds (or spread them over "
      "more devices), batch_size, render.image_size, render.num_coarse / num_fine or field.log2_hashmap_size. The "
      "estimate is a guide fitted to measured steps (dreamfusion_jax/memory.py); DREAMFUSION_JAX_MEMORY_CHECK=0 "
      "runs anyway."
    )
  if have is not None and platform == "gpu" and est.device > TIGHT * have and not _async_allocator():
    logging.warning(
      "This config's train step needs about %.1f GB of the %.1f GB this GPU gives JAX. So close to the limit JAX's "
      "default allocator can fragment and run out of memory (a 3.4 GB Stable Diffusion step did under a 4 GiB "
      "cap); if it does, run with XLA_PYTHON_CLIENT_ALLOCATOR=cuda_async. %s",
      est.device / GB,
      have / GB,
      advice,
    )
  host = host_available_bytes()
  if host is not None and est.export > host:
    raise ConfigError(
      f"The export's marching cubes at export.mesh_resolution={config.export.mesh_resolution} need about "
      f"{est.export / GB:.1f} GB of host memory after training; the host has {host / GB:.1f} GB available. Lower "
      "--config.export.mesh_resolution (e.g. 128), or run with --config.export.enabled=false. "
      "DREAMFUSION_JAX_MEMORY_CHECK=0 runs anyway."
    )
  return est
