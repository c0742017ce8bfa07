"""Parity of the Flax UNet (dreamfusion_jax.guidance.unet) with diffusers' PyTorch UNet2DConditionModel.

Tiny random PyTorch UNets are converted with `torch_to_flax` and both are run on the same input
(PyTorch NCHW, Flax NHWC). Two layouts: SD 1.x-like (1x1 conv proj_in/proj_out, one int
attention_head_dim) and SD 2.x-like (linear projections, per-block heads, per-block transformer
depth), the latter also exercising non-default timestep / padding / mid-block-scale options.
"""

import functools
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dreamfusion_jax.guidance.convert import (
  CheckpointError,
  load_safetensors_numpy,
  torch_to_flax,  # noqa: E402
  unet_checkpoint_shapes,
  unet_param_shapes,
  unet_params_from_torch,
)
from dreamfusion_jax.guidance.unet import UNet2DConditionModel  # noqa: E402

TOL = 2e-5  # max abs difference allowed between PyTorch and Flax in float32 (observed ~4e-6)

COMMON = dict(
  in_channels=4,
  out_channels=4,
  block_out_channels=(32, 64),
  norm_num_groups=8,
  cross_attention_dim=32,
  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
CONFIGS = {
  # SD 1.x: conv proj_in/proj_out, attention_head_dim is the (int) number of heads.
  "sd1": dict(COMMON, layers_per_block=1, attention_head_dim=4),
  # SD 2.x: linear proj_in/proj_out, per-block heads, plus non-default options.
  "sd2": dict(
    COMMON,
    layers_per_block=2,
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    transformer_layers_per_block=(1, 2),
    flip_sin_to_cos=False,
    freq_shift=1,
    downsample_padding=0,
    mid_block_scale_factor=1.5,
  ),
}
B, H, W, L = 2, 16, 16, 7


def _torch_unet(config: dict, seed: int = 0):
  torch.manual_seed(seed)
  model = diffusers.UNet2DConditionModel(**config).eval()
  # Default init leaves some layers near zero (e.g. conv_out); perturb every parameter so each
  # one measurably affects the output and a wrongly converted tensor cannot hide.
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


def _inputs(seed: int = 1):
  rng = np.random.default_rng(seed)
  sample = rng.standard_normal((B, H, W, 4)).astype(np.float32)
  context = rng.standard_normal((B, L, 32)).astype(np.float32)
  return sample, np.array([10, 981], np.int64), context


def _torch_out(model, sample, t, context) -> np.ndarray:
  with torch.no_grad():
    out = model(
      torch.from_numpy(sample.transpose(0, 3, 1, 2)),
      torch.from_numpy(t),
      encoder_hidden_states=torch.from_numpy(context),
    ).sample
  return out.numpy().transpose(0, 2, 3, 1)


def _state_dict(model) -> dict:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


# XLA's CPU backend spends most of its compile time in LLVM optimisation, which these tiny
# models do not need; level 0 roughly halves the test's wall time.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_FORWARD: dict = {}  # model (hashable, equal for equal configs) -> compiled forward


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_COMPILER_OPTIONS)


def _flax_apply(model, params, sample, t, context) -> np.ndarray:
  args = (params, jnp.asarray(sample), jnp.asarray(t, jnp.int32), jnp.asarray(context))
  if model not in _FORWARD:
    _FORWARD[model] = _compile(lambda p, x, tt, c: model.apply({"params": p}, x, tt, c), *args)
  return np.asarray(_FORWARD[model](*args))


@functools.lru_cache(maxsize=None)
def _case(name: str) -> dict:
  """Config, torch model, inputs, torch output and converted Flax model/params for CONFIGS[name]."""
  config = CONFIGS[name]
  tmodel = _torch_unet(config)
  inputs = _inputs()
  fmodel = UNet2DConditionModel.from_config(config)
  return dict(
    name=name,
    config=config,
    torch=tmodel,
    inputs=inputs,
    expected=_torch_out(tmodel, *inputs),
    model=fmodel,
    params=unet_params_from_torch(_state_dict(tmodel), fmodel),
  )


@pytest.fixture(params=sorted(CONFIGS))
def case(request):
  return _case(request.param)


def test_parity_with_diffusers(case):
  got = _flax_apply(case["model"], case["params"], *case["inputs"])
  assert got.shape == (B, H, W, 4)
  err = np.abs(got - case["expected"]).max()
  print(f"{case['name']}: max|flax - torch| = {err:.2e}, max|torch| = {np.abs(case['expected']).max():.2f}")
  assert err < TOL


def test_parity_gradient_remat_scalar_timestep():
  """d(sum out^2)/d(sample, context) matches torch autograd with remat=True and a scalar float timestep."""
  case = _case("sd1")
  tmodel, (sample, _, context) = case["torch"], case["inputs"]
  xs = torch.from_numpy(sample.transpose(0, 3, 1, 2)).requires_grad_()
  cs = torch.from_numpy(context).requires_grad_()
  want_loss = (tmodel(xs, 437.5, encoder_hidden_states=cs).sample ** 2).sum()
  want_loss.backward()
  want_x, want_c = xs.grad.numpy().transpose(0, 2, 3, 1), cs.grad.numpy()

  model = UNet2DConditionModel.from_config(case["config"], remat=True)
  params = case["params"]
  loss = lambda x, c: jnp.sum(model.apply({"params": params}, x, 437.5, c) ** 2)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss))(jnp.asarray(sample), jnp.asarray(context)))
  assert "checkpoint" in jaxpr or "remat" in jaxpr  # remat really wraps blocks
  args = (jnp.asarray(sample), jnp.asarray(context))
  got_loss, (got_x, got_c) = _compile(jax.value_and_grad(loss, argnums=(0, 1)), *args)(*args)
  assert abs(float(got_loss) / want_loss.item() - 1) < 1e-5
  for got, want in ((got_x, want_x), (got_c, want_c)):
    err = np.abs(np.asarray(got) - want).max() / np.abs(want).max()
    print(f"remat gradient: max relative error {err:.2e}")
    assert err < 1e-4


def test_bfloat16_compute_close_to_float32():
  """dtype=bfloat16 (float32 params, float32 norms/softmax) stays close to the float32 reference."""
  case = _case("sd1")
  model = UNet2DConditionModel.from_config(case["config"], dtype=jnp.bfloat16)
  sample, t, context = case["inputs"]
  args = (case["params"], jnp.asarray(sample), jnp.asarray(t, jnp.int32), jnp.asarray(context))
  out = _compile(lambda p, x, tt, c: model.apply({"params": p}, x, tt, c), *args)(*args)
  assert out.dtype == jnp.bfloat16
  rel = np.abs(np.asarray(out, np.float32) - case["expected"]).max() / np.abs(case["expected"]).max()
  print(f"bf16 compute: max error relative to max|out| = {rel:.2e}")
  assert rel < 5e-2


def test_1x1_conv_and_linear_weights_swap_layouts():
  """SD 1.x 1x1-conv proj_in into a Dense kernel and SD 2.x linear into a 1x1 conv kernel: y = x @ W.T either way.

  (Both model layouts are checked end to end against diffusers by test_parity_with_diffusers.)
  """
  rng = np.random.default_rng(0)
  w = rng.standard_normal((3, 2)).astype(np.float32)  # torch Linear(2 -> 3) / Conv2d(2, 3, 1)
  x = rng.standard_normal((5, 2)).astype(np.float32)
  dense = {"proj_in": {"kernel": jax.ShapeDtypeStruct((2, 3), jnp.float32)}}
  conv = {"proj_in": {"kernel": jax.ShapeDtypeStruct((1, 1, 2, 3), jnp.float32)}}
  from_conv = torch_to_flax({"proj_in.weight": w[:, :, None, None]}, dense)["proj_in"]["kernel"]
  from_linear = torch_to_flax({"proj_in.weight": w}, conv)["proj_in"]["kernel"]
  assert from_conv.shape == (2, 3) and from_linear.shape == (1, 1, 2, 3)
  np.testing.assert_allclose(x @ from_conv, x @ w.T, rtol=1e-6)
  np.testing.assert_allclose(x @ from_linear[0, 0], x @ w.T, rtol=1e-6)


def test_parity_save_pretrained_roundtrip(tmp_path):
  """diffusers save_pretrained -> config.json + safetensors (no torch on the read side) -> same output."""
  tmodel = _torch_unet(CONFIGS["sd2"], seed=3)
  tmodel.save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  assert "_class_name" in config and "sample_size" in config  # keys from_config must ignore
  state = load_safetensors_numpy(str(tmp_path / "diffusion_pytorch_model.safetensors"))
  fmodel = UNet2DConditionModel.from_config(config)
  params = unet_params_from_torch(state, fmodel)
  inputs = _inputs()
  assert np.abs(_flax_apply(fmodel, params, *inputs) - _torch_out(tmodel, *inputs)).max() < TOL


def test_num_attention_heads_overrides_attention_head_dim():
  """num_attention_heads (rejected by diffusers itself) counts heads, like attention_head_dim's quirk.

  Compared by traced program (abstract shapes, no compile): identical jaxpr to the parity-checked
  per-block-heads model. If the field were ignored, 999 heads would not divide the channels.
  """
  config = CONFIGS["sd2"]
  base = UNet2DConditionModel.from_config(config)
  same = UNet2DConditionModel.from_config(
    config, num_attention_heads=config["attention_head_dim"], attention_head_dim=999
  )
  args = (
    jax.ShapeDtypeStruct((B, H, W, 4), jnp.float32),
    jax.ShapeDtypeStruct((B,), jnp.int32),
    jax.ShapeDtypeStruct((B, L, 32), jnp.float32),
  )
  params = jax.eval_shape(base.init, jax.random.PRNGKey(0), *args)["params"]
  trace = lambda m: str(jax.make_jaxpr(lambda p, *a: m.apply({"params": p}, *a))(params, *args))
  assert same._heads() == (2, 4)
  assert trace(same) == trace(base)


# The real Stable Diffusion UNet configs (unet/config.json of SD 1.5 and SD 2.1, abridged to the
# keys that differ from the defaults).
SD15 = dict(
  attention_head_dim=8,
  block_out_channels=[320, 640, 1280, 1280],
  cross_attention_dim=768,
  down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
  layers_per_block=2,
  up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
  sample_size=64,
  act_fn="silu",
)
SD21 = dict(
  SD15,
  attention_head_dim=[5, 10, 20, 20],
  cross_attention_dim=1024,
  use_linear_projection=True,
  upcast_attention=True,
  sample_size=96,
)


# Published parameter counts of the SD 1.5 and SD 2.1 UNets.
@pytest.mark.parametrize("config,num_params", [(SD15, 859_520_964), (SD21, 865_910_724)], ids=["sd1.5", "sd2.1"])
def test_full_size_stable_diffusion_layout_converts(config, num_params):
  """Every tensor of the full-size diffusers UNet maps onto the Flax tree with matching shapes.

  Shapes only: the PyTorch model lives on the meta device and its tensors become zero-stride
  numpy views, so nothing of the ~3.4 GB is allocated.
  """
  with torch.device("meta"):
    tmodel = diffusers.UNet2DConditionModel(**config)
  zero = np.zeros((), np.float32)
  state = {k: np.broadcast_to(zero, tuple(v.shape)) for k, v in tmodel.state_dict().items()}
  model = UNet2DConditionModel.from_config(config)
  params = unet_params_from_torch(state, model)
  n_flax = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  assert n_flax == sum(int(np.prod(v.shape)) for v in state.values()) == num_params


def test_wrong_shape_missing_and_unexpected_keys_are_reported(case):
  state = _state_dict(case["torch"])
  target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), case["params"])
  bad_key = "down_blocks.0.resnets.0.conv1.weight"
  state[bad_key] = state[bad_key][:, :-1]
  del state["mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"]
  state["mid_block.extra.position_ids"] = np.zeros(3)
  with pytest.raises(CheckpointError) as info:
    torch_to_flax(state, target, name="tiny unet")
  msg = str(info.value)
  expected_shape = tuple(case["params"]["down_blocks_0"]["resnets_0"]["conv1"]["kernel"].shape)
  assert bad_key in msg and str(expected_shape) in msg and str(state[bad_key].shape) in msg
  assert "mid_block/attentions_0/transformer_blocks_0/attn2/to_k/kernel" in msg
  assert "mid_block.extra.position_ids" in msg
  assert "tiny unet" in msg
  # Ignored keys are not "unexpected"; with the other two problems fixed the load succeeds.
  good = _state_dict(case["torch"])
  good["mid_block.extra.position_ids"] = np.zeros(3)
  params = torch_to_flax(good, target, ignore=[r"position_ids$"])
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: np.array_equal(a, b), params, case["params"]))


def test_each_leaf_filled_once():
  """Two checkpoint keys that name the same Flax leaf are an error, not a silent overwrite."""
  target = {
    "to_out_0": {"kernel": jax.ShapeDtypeStruct((2, 3), jnp.float32), "bias": jax.ShapeDtypeStruct((3,), jnp.float32)}
  }
  state = {"to_out.0.weight": np.ones((3, 2)), "to_out_0.weight": np.ones((3, 2)), "to_out.0.bias": np.ones(3)}
  with pytest.raises(CheckpointError, match="both map to"):
    torch_to_flax(state, target)


def test_from_config_rejects_unsupported_features():
  with pytest.raises(ValueError, match="class_embed_type"):
    UNet2DConditionModel.from_config(dict(CONFIGS["sd1"], class_embed_type="timestep"))
  with pytest.raises(ValueError, match="time_cond_proj_dim"):
    UNet2DConditionModel.from_config(dict(CONFIGS["sd1"], time_cond_proj_dim=8))
  with pytest.raises(ValueError, match="AttnDownBlock2D"):
    UNet2DConditionModel.from_config(dict(CONFIGS["sd1"], down_block_types=("AttnDownBlock2D", "DownBlock2D")))
  with pytest.raises(ValueError, match="some_new_option"):
    UNet2DConditionModel.from_config(dict(CONFIGS["sd1"], some_new_option=1))


def test_load_safetensors_numpy_upcasts(tmp_path):
  from safetensors.numpy import save_file

  path = str(tmp_path / "x.safetensors")
  bf16 = np.array([1.5, -2.25], dtype=jnp.bfloat16)
  save_file({"a": bf16, "b": np.array([0.5], np.float16), "i": np.arange(3, dtype=np.int64)}, path)
  out = load_safetensors_numpy(path)
  assert out["a"].dtype == np.float32 and np.array_equal(out["a"], [1.5, -2.25])
  assert out["b"].dtype == np.float32 and out["i"].dtype == np.int64


def test_param_shapes_are_traced_once_per_model_and_each_caller_gets_its_own_tree():
  """build_prior needs the UNet's shapes twice (the checkpoint's check, the compile from abstract weights); the
  second call reuses the first trace (2-3 s of host time at full size), and equal modules share it."""
  from dreamfusion_jax.guidance.convert import unet_param_shapes

  unet_param_shapes.cache_clear()
  first = unet_param_shapes(UNet2DConditionModel.from_config(CONFIGS["sd2"]))
  second = unet_param_shapes(UNet2DConditionModel.from_config(CONFIGS["sd2"]))  # Equal by fields: a hit.
  assert unet_param_shapes.cache_info().misses == 1 and unet_param_shapes.cache_info().hits == 1
  assert jax.tree.structure(first) == jax.tree.structure(second) and jax.tree.leaves(first) == jax.tree.leaves(second)
  first.clear()  # A caller that changes its tree does not change the next caller's.
  assert unet_param_shapes(UNet2DConditionModel.from_config(CONFIGS["sd2"])) == second
  other = unet_param_shapes(UNet2DConditionModel.from_config(CONFIGS["sd1"]))
  assert unet_param_shapes.cache_info().misses == 2 and other != second


def _signature(tree) -> dict:
  """{leaf path: (shape, dtype)} of a params tree."""
  return {
    jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype)) for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }


def _meta_state(config: dict) -> dict:
  """The diffusers UNet's state dict as zero-stride views (shapes only; nothing allocated)."""
  with torch.device("meta"):
    tmodel = diffusers.UNet2DConditionModel(**config)
  zero = np.zeros((), np.float32)
  return {k: np.broadcast_to(zero, tuple(v.shape)) for k, v in tmodel.state_dict().items()}


def _projections_swapped(state: dict) -> dict:
  """state with proj_in / proj_out stored the other way: linear [O,I] as 1x1 conv [O,I,1,1] and back."""
  swap = lambda v: v[:, :, None, None] if v.ndim == 2 else v[:, :, 0, 0]
  return {k: swap(v) if re.search(r"\.proj_(in|out)\.weight$", k) else v for k, v in state.items()}


@pytest.mark.parametrize("name", ["sd1", "sd2", "sd1.5", "sd2.1"])
def test_checkpoint_shapes_are_the_traced_init_shapes(name):
  """unet_checkpoint_shapes (a checkpoint's tensor shapes, as a safetensors header gives them; no init traced) is
  unet_param_shapes (the model's init traced): the same tree, shapes and dtypes, in float32 and bfloat16, for 1x1-conv
  (SD 1.x) and linear (SD 2.x) projections, and for a checkpoint storing its projections the other way, which
  torch_to_flax loads too."""
  config = {"sd1": CONFIGS["sd1"], "sd2": CONFIGS["sd2"], "sd1.5": SD15, "sd2.1": SD21}[name]
  state = _meta_state(config)
  swapped = _projections_swapped(state)
  assert any(v.ndim == 4 for k, v in swapped.items() if "proj_in" in k) != ("use_linear_projection" not in config)
  for dtype in (jnp.float32, jnp.bfloat16):
    model = UNet2DConditionModel.from_config(config, dtype=dtype, param_dtype=dtype)
    traced = unet_param_shapes(model)
    kinds = {len(shape) for path, (shape, _) in _signature(traced).items() if path.endswith("['kernel']")}
    assert kinds == {2, 4} and {d for _, d in _signature(traced).values()} == {jnp.dtype(dtype)}
    unet_params_from_torch(swapped, model, on_device=True)  # A checkpoint the model takes (checked, not moved).
    for checkpoint in (state, swapped):
      shapes = unet_checkpoint_shapes(checkpoint, model)
      assert jax.tree.structure(shapes) == jax.tree.structure(traced)
      assert _signature(shapes) == _signature(traced)


def test_checkpoint_shapes_of_another_model_differ_where_its_tensors_do():
  """The header's shapes follow the checkpoint, not the model: a tensor of another shape, a missing and an extra one
  show there (the model's check names them; test_sd_pipeline_parity runs it)."""
  model = UNet2DConditionModel.from_config(CONFIGS["sd2"])
  state = _meta_state(CONFIGS["sd2"])
  state["conv_in.weight"] = state["conv_in.weight"][:16]
  del state["conv_out.bias"]
  state["extra.weight"] = np.zeros((3,), np.float32)
  got, want = _signature(unet_checkpoint_shapes(state, model)), _signature(unet_param_shapes(model))
  differ = {k for k in got.keys() | want.keys() if got.get(k) != want.get(k)}
  assert differ == {"['conv_in']['kernel']", "['conv_out']['bias']", "['extra']['scale']"}
  assert got["['conv_in']['kernel']"][0][-1] == 16
