"""Parity of the Flax CLIP text encoder (dreamfusion_jax.guidance.clip_text) with transformers' PyTorch CLIPTextModel.

Tiny random PyTorch encoders are saved with `save_pretrained`, read back through
`load_safetensors_numpy` + config.json exactly as a Stable Diffusion `text_encoder/` folder would be,
converted, and both are run on the same token ids. Two layouts: SD 1.x-like (quick_gelu) and
SD 2.x-like (exact gelu, other width / heads / depth / LayerNorm epsilon). The tokenizer helpers are
checked against a tiny offline CLIP BPE tokenizer.
"""

import functools
import json
import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dreamfusion_jax.guidance.clip_text import (
  ACTIVATIONS,
  CLIPTextModel,
  clip_params_from_torch,  # noqa: E402
  load_tokenizer,
  tokenize,
)
from dreamfusion_jax.guidance.convert import CheckpointError, load_safetensors_numpy  # noqa: E402

TOL = 1e-4  # max abs difference allowed between PyTorch and Flax in float32

# Tiny CLIP BPE vocabulary (the style of transformers' tests/models/clip/test_tokenization_clip.py).
VOCAB = [
  "l",
  "o",
  "w",
  "e",
  "r",
  "s",
  "t",
  "i",
  "d",
  "n",
  "lo",
  "l</w>",
  "w</w>",
  "r</w>",
  "t</w>",
  "low</w>",
  "er</w>",
  "lowest</w>",
  "newer</w>",
  "wider",
  "<unk>",
  "<|startoftext|>",
  "<|endoftext|>",
]
MERGES = ["#version: 0.2", "l o", "lo w</w>", "e r</w>"]
V = len(VOCAB)
BOS, EOS = VOCAB.index("<|startoftext|>"), VOCAB.index("<|endoftext|>")

COMMON = dict(vocab_size=V, max_position_embeddings=16, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)
CONFIGS = {
  "sd1": dict(
    COMMON, hidden_act="quick_gelu", hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
  ),
  "sd2": dict(
    COMMON,
    hidden_act="gelu",
    hidden_size=48,
    intermediate_size=40,
    num_hidden_layers=3,
    num_attention_heads=6,
    layer_norm_eps=1e-6,
  ),
}
B, L = 3, 16

_TMP = tempfile.TemporaryDirectory(prefix="clip_text_parity_")
# XLA's CPU backend spends most of its compile time in LLVM optimisation, which these tiny models do not need.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_COMPILER_OPTIONS)


def _flax_apply(model, params, ids, **kwargs) -> np.ndarray:
  """Runs `model` with static keyword options (attention_mask, if given, is a traced argument)."""
  mask = kwargs.pop("attention_mask", None)
  args = (params, jnp.asarray(ids, jnp.int32)) + (() if mask is None else (jnp.asarray(mask, jnp.int32),))
  fn = lambda p, x, *m: model.apply({"params": p}, x, *m, **kwargs)
  return np.asarray(_compile(fn, *args)(*args))


def _ids(length: int = L, seed: int = 1) -> np.ndarray:
  """SD-like rows: <|startoftext|> random words <|endoftext|>, padded with <|endoftext|> (one row unpadded)."""
  rng = np.random.default_rng(seed)
  ids = np.full((B, length), EOS, np.int64)
  for row, n in enumerate([length - 2, 3, length // 2][:B]):
    ids[row, 0] = BOS
    ids[row, 1 : 1 + n] = rng.integers(0, V - 3, n)
  return ids


@functools.lru_cache(maxsize=None)
def _case(name: str) -> dict:
  """Torch model (eager attention), its saved folder, and the Flax model/params loaded from that folder."""
  torch.manual_seed(0)
  config = transformers.CLIPTextConfig(**CONFIGS[name])
  config._attn_implementation = "eager"
  tmodel = transformers.CLIPTextModel(config).eval()
  # Perturb every parameter so that LayerNorm scales/biases etc. differ from their init values and a
  # wrongly converted tensor cannot hide.
  with torch.no_grad():
    for p in tmodel.parameters():
      p.add_(0.02 * torch.randn_like(p))
  folder = os.path.join(_TMP.name, name, "text_encoder")
  tmodel.save_pretrained(folder)
  with open(os.path.join(folder, "config.json")) as f:
    fconfig = json.load(f)
  state = load_safetensors_numpy(os.path.join(folder, "model.safetensors"))
  fmodel = CLIPTextModel.from_config(fconfig)
  return dict(
    name=name, torch=tmodel, state=state, config=fconfig, model=fmodel, params=clip_params_from_torch(state, fmodel)
  )


@pytest.fixture(params=sorted(CONFIGS))
def case(request):
  return _case(request.param)


def _check(name: str, got: np.ndarray, want: np.ndarray) -> float:
  assert got.shape == want.shape
  err = float(np.abs(got - want).max())
  print(f"{name}: max|flax - torch| = {err:.2e}, max|torch| = {np.abs(want).max():.2f}")
  assert err < TOL
  return err


def test_parity_last_hidden_state(case):
  ids = _ids()
  with torch.no_grad():
    want = case["torch"](torch.from_numpy(ids)).last_hidden_state.numpy()
  got = _flax_apply(case["model"], case["params"], ids)
  assert got.dtype == np.float32 and got.shape == (B, L, case["model"].hidden_size)
  _check(case["name"], got, want)


def test_parity_skip_last_layers(case):
  """skip_last_layers=1 (call argument, and as a field) = hidden_states[-2] -> final_layer_norm; shorter L."""
  ids = _ids(length=9, seed=2)
  tmodel = case["torch"]
  with torch.no_grad():
    hidden = tmodel(torch.from_numpy(ids), output_hidden_states=True).hidden_states
    want = tmodel.final_layer_norm(hidden[-2]).numpy()
  _check(case["name"] + " skip 1", _flax_apply(case["model"], case["params"], ids, skip_last_layers=1), want)
  if case["name"] == "sd2":  # the field, set through from_config overrides
    model = CLIPTextModel.from_config(case["config"], skip_last_layers=1)
    _check("sd2 skip field", _flax_apply(model, case["params"], ids), want)


def test_parity_attention_mask():
  """An explicit padding mask (right padding) masks keys on top of the causal mask, as in transformers."""
  case = _case("sd1")
  ids = _ids(seed=3)
  mask = (np.arange(L)[None] <= np.array([L - 1, 4, L // 2 + 1])[:, None]).astype(np.int64)
  with torch.no_grad():
    want = case["torch"](torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    unmasked = case["torch"](torch.from_numpy(ids)).last_hidden_state.numpy()
  assert np.abs(want - unmasked).max() > 1e-3  # the mask matters for these inputs
  _check("sd1 attention_mask", _flax_apply(case["model"], case["params"], ids, attention_mask=mask), want)


def test_parity_bfloat16_compute():
  """dtype=bfloat16 (float32 LayerNorm / softmax) stays close to the float32 reference."""
  case = _case("sd2")
  ids = _ids()
  with torch.no_grad():
    want = case["torch"](torch.from_numpy(ids)).last_hidden_state.numpy()
  model = CLIPTextModel.from_config(case["config"], dtype=jnp.bfloat16)
  got = _flax_apply(model, case["params"], ids)
  assert got.dtype == jnp.bfloat16
  err = np.abs(got.astype(np.float32) - want).max()
  print(f"sd2 bfloat16: max|flax - torch| = {err:.2e}")
  assert err < 0.1 * np.abs(want).max()


def test_parity_hub_key_layout():
  """transformers 4.x hub layout (`text_model.` prefix, position_ids buffer, text_projection) loads the same."""
  case = _case("sd1")
  hub = {"text_model." + k: v for k, v in case["state"].items()}
  hub["text_model.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
  hub["text_projection.weight"] = np.zeros((8, 32), np.float32)
  params = clip_params_from_torch(hub, case["model"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, case["params"])
  assert set(params) == {"text_model"}
  assert params["text_model"]["encoder"]["layers_1"]["self_attn"]["q_proj"]["kernel"].shape == (32, 32)
  assert params["text_model"]["embeddings"]["token_embedding"]["embedding"].shape == (V, 32)


def test_parity_checkpoint_errors():
  """A checkpoint of the wrong layout is rejected with a CheckpointError naming the tensors."""
  case = _case("sd1")
  with pytest.raises(CheckpointError, match="layers_2"):  # sd2 has 3 layers, the sd1 checkpoint 2
    clip_params_from_torch(case["state"], _case("sd2")["model"])


def test_parity_config_errors():
  config = dict(CONFIGS["sd1"], model_type="clip_text_model", architectures=["CLIPTextModel"], projection_dim=768)
  assert CLIPTextModel.from_config(config).hidden_act == "quick_gelu"
  assert CLIPTextModel.from_config({"text_config": config, "model_type": "clip"}).hidden_size == 32
  with pytest.raises(ValueError, match="hidden_act='relu2'"):
    CLIPTextModel.from_config(dict(config, hidden_act="relu2"))
  with pytest.raises(ValueError, match="model_type"):
    CLIPTextModel.from_config(dict(config, model_type="t5"))
  with pytest.raises(ValueError, match="skip_last_layers"):
    CLIPTextModel.from_config(config, skip_last_layers=2)


def test_parity_activations():
  x = np.linspace(-6, 6, 1001, dtype=np.float32)
  for name, fn in ACTIVATIONS.items():
    want = transformers.activations.ACT2FN[name](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(fn(jnp.asarray(x))), want, atol=1e-6, err_msg=name)


def test_parity_tokenizer():
  """load_tokenizer + tokenize on a hub-style folder (vocab.json, merges.txt) and on a save_pretrained copy."""
  raw = os.path.join(_TMP.name, "raw_tokenizer")
  os.makedirs(raw, exist_ok=True)
  with open(os.path.join(raw, "vocab.json"), "w") as f:
    json.dump({t: i for i, t in enumerate(VOCAB)}, f)
  with open(os.path.join(raw, "merges.txt"), "w") as f:
    f.write("\n".join(MERGES) + "\n")
  with open(os.path.join(raw, "tokenizer_config.json"), "w") as f:
    json.dump({"model_max_length": 12, "unk_token": "<unk>", "tokenizer_class": "CLIPTokenizer"}, f)
  reference = transformers.CLIPTokenizer.from_pretrained(raw)
  saved = os.path.join(_TMP.name, "sd", "tokenizer")
  reference.save_pretrained(saved)
  texts = ["lower newer", "Lowest  LOWER wider", "low " * 20, ""]
  for folder in (raw, saved):
    tok = load_tokenizer(folder)
    for max_length in (None, 6):
      got = tokenize(tok, texts, max_length=max_length)
      n = 12 if max_length is None else max_length
      want = reference(texts, padding="max_length", max_length=n, truncation=True).input_ids
      assert got.dtype == np.int32 and got.shape == (len(texts), n)
      np.testing.assert_array_equal(got, np.asarray(want))
      assert (got[:, 0] == BOS).all() and (got[:, -1] == EOS).all()  # truncation keeps <|endoftext|>
    assert tokenize(tok, "lower").shape == (1, 12)
  assert tokenize(reference, ["lower"])[0, :4].tolist() == [
    BOS,
    VOCAB.index("lo"),
    VOCAB.index("w"),
    VOCAB.index("er</w>"),
  ]
