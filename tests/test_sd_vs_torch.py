"""benchmarks/sd_vs_torch.py: its PyTorch guidance half computes our SDS gradient, and one invocation times every
variant, on a tiny random pipeline (tests/sd_tiny.py) on the CPU."""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import sd_tiny  # noqa: E402
from conftest import ROOT  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import sd_vs_torch  # noqa: E402

from dreamfusion_jax import sds, train  # noqa: E402
from dreamfusion_jax.guidance import interface as guidance_lib  # noqa: E402

# A field and render small enough that our step compiles in seconds on a CPU.
SMALL = {
  "render.num_coarse": 8,
  "render.num_fine": 8,
  "field.num_levels": 4,
  "field.log2_hashmap_size": 10,
  "field.max_resolution": 32,
  "field.mlp_width": 16,
  "guidance.sd.dtype": "float32",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return sd_tiny.build("sd2", str(tmp_path_factory.mktemp("sd_vs_torch") / "sd2"), seed=3).folder


def test_torch_half_parity_gradient_is_ours(folder):
  """TorchHalf.loss's gradient with respect to the render equals jax.grad of sds.sds_loss (the train step's SDS
  term) for the same render, timesteps, noise and embeddings, in float32."""
  import sd_step

  config = sd_step.sd_config(folder, image_size=sd_tiny.IMAGE_SIZE, render_size=12, overrides=SMALL)
  prior = train.build_prior(config)
  params = guidance_lib.resolve(prior.params)
  cond, uncond = prior.embed(["a peacock", "a hamburger"]), prior.embed(["", ""])
  images = np.random.default_rng(0).uniform(0, 1, (2, 12, 12, 3)).astype(np.float32)
  key, t_range, scale = jax.random.PRNGKey(3), (20, 980), 7.5

  def loss(x):
    value, _ = sds.sds_loss(key, prior.guidance, params, x, cond, uncond, scale=scale, t_range=t_range)
    return value

  want = np.asarray(jax.jit(jax.grad(loss))(images))
  # The draws sds_residual makes from the key.
  k_t, k_eps = jax.random.split(key)
  t = np.array(jax.random.randint(k_t, (2,), t_range[0], t_range[1] + 1))
  latent = (2, sd_tiny.LATENT_SIZE, sd_tiny.LATENT_SIZE, 4)
  eps = np.array(jax.random.normal(k_eps, latent, jnp.float32))

  half = sd_vs_torch.TorchHalf(folder, "cpu", torch.float32, sd_tiny.IMAGE_SIZE, scale)
  rgb = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  context = torch.from_numpy(np.concatenate([uncond, cond]))
  half.loss(rgb, torch.from_numpy(t).long(), torch.from_numpy(eps.transpose(0, 3, 1, 2).copy()), context).backward()
  got = rgb.grad.numpy().transpose(0, 2, 3, 1)
  assert np.abs(want).max() > 1e-3  # A gradient that is there to compare.
  err = float(np.abs(got - want).max())
  print(f"SDS gradient: max|torch - ours| = {err:.2e}, max|ours| = {np.abs(want).max():.2e}")
  assert err < 1e-4 * np.abs(want).max() + 1e-7


def test_sd_vs_torch_parity_one_invocation_times_every_variant(folder, tmp_path):
  """compare() times ours, torch eager and torch.compile (the eager backend here: dynamo's capture without
  inductor's C++ compile) from one folder; the ratios are the medians' and the table names every variant."""
  result = sd_vs_torch.compare(
    folder,
    steps=2,
    warmup=1,
    image_size=sd_tiny.IMAGE_SIZE,
    render_size=16,
    scale=7.5,
    compile_backend="eager",
    overrides=SMALL,
  )
  for name in sd_vs_torch.VARIANTS:
    assert result[name]["finite"] and result[name]["ms"] > 0, name
  assert result["torch_dtype"] == "float32" and result["batch"] == 1
  assert result["ratios"] == {
    f"{name}_over_ours": round(result[name]["ms"] / result["ours"]["ms"], 2)
    for name in ("torch_eager", "torch_compile")
  }
  text = sd_vs_torch.table(result)
  assert all(f"| {name} |" in text for name in sd_vs_torch.VARIANTS) and "torch_compile_over_ours" in text
  with pytest.raises(ValueError, match="unknown variants"):
    sd_vs_torch.compare(folder, variants=["ours", "jax_compile"])
