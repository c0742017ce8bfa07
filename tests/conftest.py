"""Shared test fixtures: a tiny config that trains in seconds on a CPU."""

import os
import sys
import tempfile

import pytest

# Many tests compile the same train step (resume runs, the CLI's subprocesses); JAX's persistent
# cache turns every compile after the first into a disk read. Set before anything imports jax.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "dreamfusion_jax_test_xla_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def tiny_config(**overrides):
  """The smoke config shrunk further: 16x16 renders, a 4-level hash grid, no export."""
  sys.path.insert(0, ROOT)
  from configs import smoke  # noqa: E402  (configs/ is a folder of files, not a package)

  c = smoke.get_config()
  c.num_steps = 4
  c.field.num_levels = 4
  c.field.log2_hashmap_size = 10
  c.field.max_resolution = 64
  c.field.mlp_width = 16
  c.render.image_size = 16
  c.render.num_coarse = 8
  c.render.num_fine = 8
  c.shading.albedo_warmup_steps = 2
  c.log_every = 1
  c.checkpoint_every = 2
  c.val_every = 0
  c.progress_bar = False
  c.export.enabled = False
  return set_fields(c, overrides)


def set_fields(config, overrides: dict):
  """Sets dotted fields ({'render.image_size': 8}) of a ConfigDict in place; returns it."""
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


@pytest.fixture
def tiny():
  return tiny_config
