"""Parity of the Flax VAE (dreamfusion_jax.guidance.vae) with diffusers' PyTorch AutoencoderKL.

Tiny random PyTorch VAEs are saved with `save_pretrained` and read back without torch (config.json +
safetensors), converted with `vae_params_from_torch`, and both models are run on the same input
(PyTorch NCHW, Flax NHWC). Two layouts: 2 levels with one resnet per block on a square image, and
3 levels with two resnets per block, 8 latent channels and a non-square image.
"""

import functools
import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dreamfusion_jax.guidance.convert import CheckpointError, load_safetensors_numpy  # noqa: E402
from dreamfusion_jax.guidance.vae import (  # noqa: E402
  AutoencoderKL,
  rename_legacy_attention_keys,
  vae_checkpoint_shapes,
  vae_param_shapes,
  vae_params_from_torch,
)

TOL = 1e-4  # max abs difference allowed between PyTorch and Flax in float32

CONFIGS = {
  "2level": dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    sample_size=16,
  ),
  "3level": dict(
    block_out_channels=(16, 32, 32),
    layers_per_block=2,
    norm_num_groups=8,
    latent_channels=8,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    sample_size=32,
  ),
}
IMAGE_SIZE = {"2level": (16, 16), "3level": (24, 16)}
B = 2

# XLA's CPU backend spends most of its compile time in LLVM optimisation, which these tiny
# models do not need; level 0 roughly halves the test's wall time.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_COMPILER_OPTIONS)


def _torch_vae(config: dict, seed: int = 0):
  torch.manual_seed(seed)
  model = diffusers.AutoencoderKL(**config).eval()
  # Default init leaves some layers near zero; perturb every parameter so each one measurably
  # affects the output and a wrongly converted tensor cannot hide.
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


def _nchw(x: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _state_dict(model) -> dict:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _case(name: str, tmp_dir: str) -> dict:
  """Torch VAE saved to tmp_dir, its outputs, and the Flax model/params loaded back from the files."""
  config = CONFIGS[name]
  tmodel = _torch_vae(config)
  path = pathlib.Path(tmp_dir) / name / "vae"
  tmodel.save_pretrained(str(path), safe_serialization=True)
  file_config = json.loads((path / "config.json").read_text())
  state = load_safetensors_numpy(str(path / "diffusion_pytorch_model.safetensors"))
  model = AutoencoderKL.from_config(file_config)
  params = vae_params_from_torch(state, model)

  h, w = IMAGE_SIZE[name]
  f = 2 ** (len(config["block_out_channels"]) - 1)
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (B, h, w, 3)).astype(np.float32)
  z = rng.standard_normal((B, h // f, w // f, config["latent_channels"])).astype(np.float32)
  with torch.no_grad():
    posterior = tmodel.encode(_nchw(x)).latent_dist
    decoded = tmodel.decode(_nchw(z)).sample
  return dict(
    config=config,
    file_config=file_config,
    torch=tmodel,
    state=state,
    model=model,
    params=params,
    x=x,
    z=z,
    mean=_nhwc(posterior.mean),
    logvar=_nhwc(posterior.logvar),
    decoded=_nhwc(decoded),
  )


@pytest.fixture(scope="session")
def tmp_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("vae"))


@pytest.fixture(params=sorted(CONFIGS))
def case(request, tmp_dir):
  return _case(request.param, tmp_dir)


def _run(model, params, method: str, x: np.ndarray):
  fn = lambda p, a: model.apply({"params": p}, a, method=method)
  return _compile(fn, params, jnp.asarray(x))(params, jnp.asarray(x))


def test_parity_encode_decode_with_diffusers(case):
  """Latent mean / log-variance (torch: vae.encode(x).latent_dist) and vae.decode(z).sample, float32."""
  model, params = case["model"], case["params"]
  assert model.scaling_factor == case["file_config"]["scaling_factor"] == 0.18215
  mean, logvar = _run(model, params, "encode_moments", case["x"])
  decoded = _run(model, params, "decode", case["z"])
  assert mean.shape == case["mean"].shape and decoded.shape == case["decoded"].shape
  for label, got, want in (
    ("mean", mean, case["mean"]),
    ("logvar", logvar, case["logvar"]),
    ("decoded", decoded, case["decoded"]),
  ):
    err = np.abs(np.asarray(got) - want).max()
    print(f"{label}: max|flax - torch| = {err:.2e}, max|torch| = {np.abs(want).max():.2f}")
    assert err < TOL, label
  # `encode` (the mean) needs only the encoder-side params.
  encoder_params = {k: params[k] for k in ("encoder", "quant_conv")}
  mean_only = jax.eval_shape(lambda p, a: model.apply({"params": p}, a, method="encode"), encoder_params, case["x"])
  assert mean_only.shape == mean.shape


def test_parity_legacy_attention_names_load(tmp_dir):
  """query/key/value/proj_attn (as Linear [O,I] or 1x1 conv [O,I,1,1]) load like to_q/to_k/to_v/to_out.0."""
  case = _case("2level", tmp_dir)
  state, model, params = case["state"], case["model"], case["params"]
  new_to_old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
  for as_conv in (False, True):
    legacy = {}
    for key, value in state.items():
      for new, old in new_to_old.items():
        if f".attentions.0.{new}." in key:
          key = key.replace(f".{new}.", f".{old}.")
          value = value[:, :, None, None] if as_conv and value.ndim == 2 else value
      legacy[key] = value
    assert "encoder.mid_block.attentions.0.proj_attn.weight" in legacy
    assert not any(".to_q." in k for k in legacy)
    loaded = vae_params_from_torch(legacy, model)
    same = jax.tree_util.tree_map(np.array_equal, loaded, params)
    assert jax.tree_util.tree_all(same)
  assert rename_legacy_attention_keys(state) == state  # new names pass through untouched
  # A checkpoint with both names of one tensor is an error, not a silent overwrite.
  both = dict(state, **{"decoder.mid_block.attentions.0.query.bias": state["decoder.mid_block.attentions.0.to_q.bias"]})
  with pytest.raises(CheckpointError, match=r"decoder\.mid_block\.attentions\.0\.query\.bias and .*to_q\.bias"):
    vae_params_from_torch(both, model)


def test_parity_checkpoint_mismatch_names_tensor(tmp_dir):
  case = _case("2level", tmp_dir)
  state = dict(case["state"])
  bad = "encoder.down_blocks.0.resnets.0.conv1.weight"
  state[bad] = state[bad][:, :-1]
  del state["decoder.up_blocks.1.resnets.1.norm2.bias"]
  state["encoder.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError) as info:
    vae_params_from_torch(state, case["model"])
  msg = str(info.value)
  assert bad in msg and str(state[bad].shape) in msg and "AutoencoderKL" in msg
  assert "decoder/up_blocks_1/resnets_1/norm2/bias" in msg
  assert "encoder.extra.weight" in msg
  # `ignore` skips keys; with the other problems fixed the load succeeds.
  good = dict(case["state"], **{"encoder.extra.weight": np.zeros(3, np.float32)})
  vae_params_from_torch(good, case["model"], ignore=[r"^encoder\.extra\."])


def test_parity_bfloat16_compute(tmp_dir):
  """dtype=bfloat16 (float32 params, float32 norms/softmax) stays close to the float32 reference."""
  case = _case("2level", tmp_dir)
  model = AutoencoderKL.from_config(case["file_config"], dtype=jnp.bfloat16)
  for method, x, want in (("encode", case["x"], case["mean"]), ("decode", case["z"], case["decoded"])):
    out = _run(model, case["params"], method, x)
    assert out.dtype == jnp.bfloat16
    rel = np.abs(np.asarray(out, np.float32) - want).max() / np.abs(want).max()
    print(f"bf16 {method}: max error relative to max|out| = {rel:.2e}")
    assert rel < 5e-2


def test_parity_remat_gradient(tmp_dir):
  """d sum(encode(x)) / dx is the same with remat=True and remat=False, and matches torch autograd."""
  case = _case("2level", tmp_dir)
  xs = _nchw(case["x"]).requires_grad_()
  case["torch"].encode(xs).latent_dist.mean.sum().backward()
  want = _nhwc(xs.grad)
  grads = {}
  for remat in (False, True):
    model = AutoencoderKL.from_config(case["file_config"], remat=remat)
    loss = lambda p, x: jnp.sum(model.apply({"params": p}, x, method="encode"))
    grad = jax.grad(loss, argnums=1)
    jaxpr = str(jax.make_jaxpr(grad)(case["params"], jnp.asarray(case["x"])))
    assert (("checkpoint" in jaxpr) or ("remat" in jaxpr)) == remat
    grads[remat] = np.asarray(
      _compile(grad, case["params"], jnp.asarray(case["x"]))(case["params"], jnp.asarray(case["x"]))
    )
  scale = np.abs(want).max()
  remat_err = np.abs(grads[True] - grads[False]).max() / scale
  torch_err = np.abs(grads[True] - want).max() / scale
  print(f"gradient: remat vs no remat {remat_err:.2e}, vs torch {torch_err:.2e} (relative to max|grad|)")
  assert remat_err < 1e-5 and torch_err < 1e-4  # remat changes XLA's fusion, so float32 rounding


def test_parity_full_size_stable_diffusion_layout_converts():
  """Every tensor of the full-size SD 1.x/2.x VAE (83,653,863 parameters) maps onto the Flax tree.

  Shapes only: the PyTorch model lives on the meta device and its tensors become zero-stride numpy
  views, and the Flax target comes from jax.eval_shape, so nothing of the ~335 MB is allocated.
  """
  config = dict(
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    in_channels=3,
    out_channels=3,
    act_fn="silu",
    sample_size=512,
  )
  with torch.device("meta"):
    tmodel = diffusers.AutoencoderKL(**config)
  zero = np.zeros((), np.float32)
  state = {k: np.broadcast_to(zero, tuple(v.shape)) for k, v in tmodel.state_dict().items()}
  params = vae_params_from_torch(state, AutoencoderKL.from_config(config))
  n_flax = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  assert n_flax == sum(int(np.prod(v.shape)) for v in state.values()) == 83_653_863


def test_parity_from_config_rejects_unsupported_options():
  base = CONFIGS["2level"]
  with pytest.raises(ValueError, match="act_fn"):
    AutoencoderKL.from_config(dict(base, act_fn="gelu"))
  with pytest.raises(ValueError, match="down_block_types"):
    AutoencoderKL.from_config(dict(base, down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D")))
  with pytest.raises(ValueError, match="up_block_types"):
    AutoencoderKL.from_config(dict(base, up_block_types=("UpDecoderBlock2D",)))
  with pytest.raises(ValueError, match="some_new_option"):
    AutoencoderKL.from_config(dict(base, some_new_option=1))
  # Keys that do not change the forward pass are accepted; swish is silu.
  model = AutoencoderKL.from_config(
    dict(base, act_fn="swish", force_upcast=False, latents_mean=None, _class_name="AutoencoderKL")
  )
  assert model.block_out_channels == (32, 64)


def test_parity_without_quant_convs_and_mid_attention():
  """use_quant_conv / use_post_quant_conv / mid_block_add_attention = False drop those tensors (shapes only)."""
  config = dict(CONFIGS["2level"], use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False)
  with torch.device("meta"):
    tmodel = diffusers.AutoencoderKL(**config)
  zero = np.zeros((), np.float32)
  state = {k: np.broadcast_to(zero, tuple(v.shape)) for k, v in tmodel.state_dict().items()}
  params = vae_params_from_torch(state, AutoencoderKL.from_config(config))
  assert "quant_conv" not in params and "attentions_0" not in params["encoder"]["mid_block"]


def _signature(tree) -> dict:
  """{leaf path: (shape, dtype)} of a params tree."""
  return {
    jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype)) for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }


def _legacy(state: dict, as_conv: bool) -> dict:
  """state with the mid blocks' attention under the legacy names, their weights 1x1 convs [O,I,1,1] if as_conv."""
  out = {}
  for key, value in state.items():
    for new, old in {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}.items():
      if f".attentions.0.{new}." in key:
        key = key.replace(f".{new}.", f".{old}.")
        value = value[:, :, None, None] if as_conv and value.ndim == 2 else value
    out[key] = value
  return out


@pytest.mark.parametrize("name", [*sorted(CONFIGS), "no_quant_convs"])
def test_parity_checkpoint_shapes_are_the_traced_init_shapes(name):
  """vae_checkpoint_shapes (a checkpoint's tensor shapes, as a safetensors header gives them; no init traced) is
  vae_param_shapes (the model's init traced): the same tree, shapes and dtypes, in float32 and bfloat16, for current
  and legacy attention names, the legacy weights linear or 1x1 conv."""
  config = CONFIGS.get(name) or dict(CONFIGS["2level"], use_quant_conv=False, use_post_quant_conv=False)
  with torch.device("meta"):
    tmodel = diffusers.AutoencoderKL(**config)
  zero = np.zeros((), np.float32)
  state = {k: np.broadcast_to(zero, tuple(v.shape)) for k, v in tmodel.state_dict().items()}
  checkpoints = (state, _legacy(state, as_conv=False), _legacy(state, as_conv=True))
  assert any(v.ndim == 4 for k, v in checkpoints[2].items() if ".query." in k)
  for dtype in (jnp.float32, jnp.bfloat16):
    model = AutoencoderKL.from_config(config, dtype=dtype, param_dtype=dtype)
    traced = vae_param_shapes(model)
    assert {d for _, d in _signature(traced).values()} == {jnp.dtype(dtype)}
    assert ("quant_conv" in traced) == (name != "no_quant_convs")
    for checkpoint in checkpoints:
      shapes = vae_checkpoint_shapes(checkpoint, model)
      assert jax.tree.structure(shapes) == jax.tree.structure(traced)
      assert _signature(shapes) == _signature(traced)
