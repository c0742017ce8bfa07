"""The memory estimate of the train step against XLA's own accounting, and a refusal that comes before compiling."""

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, set_fields, tiny_config

from dreamfusion_jax import memory
from dreamfusion_jax.errors import ConfigError


def measured_bytes(config) -> int:
  """XLA's memory_analysis of the compiled train step: temporaries, arguments and outputs (less what aliases)."""
  from dreamfusion_jax import train

  prior = train.build_prior(config)
  trainer = train.Trainer(config, prior)
  emb = trainer.text_embeddings(train.embed_prompts(prior, config))
  m = trainer._step.lower(trainer.abstract_state(), emb, trainer.prior_params).compile().memory_analysis()
  return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


@pytest.mark.parametrize(
  "overrides",
  [
    {},  # 16x16, 8 + 8 samples, 4 levels: the constants' smallest point.
    {"render.image_size": 32, "render.num_coarse": 24, "field.num_levels": 8, "num_seeds": 2},  # Off the fit's points.
  ],
)
def test_the_estimate_is_within_a_factor_of_xla_s_measure(overrides):
  config = tiny_config(**overrides)
  estimate, measured = memory.estimate(config).device, measured_bytes(config)
  assert 0.67 <= estimate / measured <= 1.5, (estimate, measured)


def test_the_estimate_grows_as_the_step_does():
  base = memory.estimate(tiny_config()).activations
  assert memory.estimate(tiny_config(**{"render.image_size": 32})).activations == pytest.approx(4 * base)
  assert memory.estimate(tiny_config(**{"num_seeds": 3})).activations == pytest.approx(3 * base)
  # Seeds spread over devices: each holds its share (train.seed_mesh: the most devices that divide them).
  assert (
    memory.seeds_per_device(8, 4) == 2 and memory.seeds_per_device(6, 4) == 2 and memory.seeds_per_device(5, 4) == 5
  )
  tables = memory.estimate(tiny_config()).tables
  assert tables == 4 * 4 * 4 * 2**10 * 2  # 4 copies (params, grad, Adam's 2) x float32 x L x T x F.


def test_a_config_beyond_the_device_is_refused_naming_both_sizes(monkeypatch):
  monkeypatch.setattr(memory, "device_bytes", lambda: (1e9, "a test device"))
  config = tiny_config(**{"render.image_size": 512, "render.num_coarse": 256})
  with pytest.raises(ConfigError, match=r"needs about \d+\.\d GB per device .*the device, a test device, has 1\.0 GB"):
    memory.check(config)
  monkeypatch.setenv("DREAMFUSION_JAX_MEMORY_CHECK", "0")
  memory.check(config)  # The way around an estimate that is wrong.
  monkeypatch.delenv("DREAMFUSION_JAX_MEMORY_CHECK")
  memory.check(tiny_config())  # 10 MB fit.
  monkeypatch.setattr(memory, "host_available_bytes", lambda: 1e9)
  with pytest.raises(ConfigError, match="export.mesh_resolution=1024 need about 42.9 GB of host memory"):
    memory.check(set_fields(tiny_config(), {"export.enabled": True, "export.mesh_resolution": 1024}))


def test_a_huge_config_is_refused_in_seconds_with_the_workdir_untouched(tmp_path):
  cmd = [
    sys.executable,
    "-m",
    "dreamfusion_jax.main",
    f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}",
    f"--workdir={tmp_path / 'w'}",
    "--config.num_seeds=20000",
  ]
  start = time.perf_counter()
  result = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True)
  assert time.perf_counter() - start < 60  # No compile (the step of 20,000 seeds would not even fit).
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "error: This config's train step needs about 1" in result.stderr and "GB per device" in result.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("dtype,remat", [("bfloat16", False), ("bfloat16", True), ("float32", False)])
def test_stable_diffusion_estimate_is_the_measured_step_where_it_was_measured(dtype, remat):
  """configs/sd21_base.py's estimate is its measured peak (the peak counts the renders and tables once), and the
  prior's share grows with the views and the encoder's area."""
  sys.path.insert(0, ROOT)
  from configs import sd21_base

  measured = {"guidance.sd.dtype": dtype, "guidance.sd.remat": remat, "field.density_activation": "exp"}
  est = memory.estimate(set_fields(sd21_base.get_config(), measured))  # The density field it was measured with.
  assert est.device == pytest.approx(memory._SD_PEAK_512[(dtype, remat)])
  surface = memory.estimate(set_fields(sd21_base.get_config(), {**measured, "field.density_activation": "volsdf"}))
  assert est.device < surface.device < 1.01 * est.device  # Plus the eikonal and smoothness points.
  assert 0 < est.activations + est.tables < est.device
  two = memory.estimate(
    set_fields(
      sd21_base.get_config(),
      {**measured, "batch_size": 2, "guidance.sd.image_size": 256},
    )
  )
  assert two.prior == pytest.approx(est.prior * 2 / 4)


def test_a_stable_diffusion_step_near_the_cards_limit_is_told_remat_and_the_async_allocator(monkeypatch, caplog):
  """A 4 GB card (JAX's limit 3.976 GB, as under benchmarks/sd_memory_cap.py's 4 GiB cap on an H100): the
  bfloat16 step without remat (estimate 4.2 GB) is refused with the fix named; with remat (3.7 GB) it runs, with a
  warning naming the allocator that fitted it there (BFC ran out of memory), unless that allocator is in use."""
  import jax

  sys.path.insert(0, ROOT)
  from configs import sd21_base

  class FakeGPU:
    platform = "gpu"

  monkeypatch.setattr(jax, "devices", lambda: [FakeGPU()])
  monkeypatch.setattr(memory, "device_bytes", lambda: (3.976e9, "one 4 GB card"))
  monkeypatch.setattr(memory, "host_available_bytes", lambda: None)
  monkeypatch.delenv("XLA_PYTHON_CLIENT_ALLOCATOR", raising=False)
  monkeypatch.delenv("DREAMFUSION_JAX_MEMORY_CHECK", raising=False)
  with pytest.raises(ConfigError, match=r"For Stable Diffusion, first --config.guidance.sd.remat=true \("):
    memory.check(sd21_base.get_config())
  with pytest.raises(ConfigError, match=r"first --config.guidance.sd.dtype=bfloat16 and --config.guidance.sd.remat"):
    memory.check(set_fields(sd21_base.get_config(), {"guidance.sd.dtype": "float32"}))
  remat = set_fields(sd21_base.get_config(), {"guidance.sd.remat": True})
  with caplog.at_level("WARNING"):
    memory.check(remat)
  assert "XLA_PYTHON_CLIENT_ALLOCATOR=cuda_async" in caplog.text and "sd.remat" not in caplog.text
  caplog.clear()
  monkeypatch.setenv("XLA_PYTHON_CLIENT_ALLOCATOR", "cuda_async")
  with caplog.at_level("WARNING"):
    memory.check(remat)
  assert "cuda_async" not in caplog.text
  monkeypatch.setattr(memory, "device_bytes", lambda: (80e9, "one H100"))
  monkeypatch.delenv("XLA_PYTHON_CLIENT_ALLOCATOR")
  with caplog.at_level("WARNING"):
    memory.check(sd21_base.get_config())  # Far from the limit: no word.
  assert "cuda_async" not in caplog.text
  monkeypatch.setattr(memory, "device_bytes", lambda: (1e6, "a test device"))
  with pytest.raises(ConfigError) as refused:
    memory.check(tiny_config())  # Another prior: no Stable Diffusion advice.
  assert "Stable Diffusion" not in str(refused.value)
