"""Flax port of transformers' `CLIPTextModel` (the Stable Diffusion 1.x / 2.x text encoders).

SD 1.x conditions on OpenAI CLIP ViT-L/14's text tower (12 layers, width 768, quick_gelu); SD 2.x on
OpenCLIP ViT-H/14's text tower in the same layout (width 1024, exact gelu), whose hub config already
says num_hidden_layers=23 (the penultimate layer of the 24-layer tower). Both use last_hidden_state:
the output of the last layer after `final_layer_norm`.

Parameter names mirror the PyTorch state dict of transformers 4.x checkpoints (the Stable Diffusion
hub files) with list indices joined by '_':

  text_model.embeddings.token_embedding.weight        text_model/embeddings/token_embedding/embedding
  text_model.encoder.layers.0.self_attn.q_proj.weight  text_model/encoder/layers_0/self_attn/q_proj/kernel
  text_model.encoder.layers.0.layer_norm1.weight       text_model/encoder/layers_0/layer_norm1/scale
  text_model.final_layer_norm.bias                     text_model/final_layer_norm/bias

so `dreamfusion_jax.guidance.convert.torch_to_flax` loads `text_encoder/model.safetensors` mechanically; use
`clip_params_from_torch`, which also accepts the prefix-less keys transformers 5.x writes.

Mixed precision as in `unet.py`: `dtype` is the compute dtype, `param_dtype` the storage dtype; the
LayerNorms and the attention softmax are computed in float32. Dropout is not implemented (frozen
encoder, PyTorch eval() semantics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.guidance.convert import torch_to_flax

Dtype = Any

# Checkpoint keys that are not parameters of this port: the position_ids buffer (saved by older
# transformers versions) and the projection head of CLIPTextModelWithProjection.
CHECKPOINT_IGNORE = (r"position_ids$", r"^text_projection\.")

# transformers `hidden_act` names this port implements.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # OpenAI CLIP (SD 1.x)
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact erf GELU (OpenCLIP, SD 2.x)
  "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # tanh approximation
  "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # same formula as gelu_new
}

# Config keys that do not change the forward pass (token ids, initialisers, dropout, bookkeeping). `dtype`
# (transformers 5.x; `torch_dtype` in 4.x) is the storage dtype of the PyTorch weights, not this module's field.
_IGNORED_KEYS = frozenset(
  {
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "projection_dim",
    "attention_dropout",
    "dropout",
    "initializer_range",
    "initializer_factor",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
  }
)

# Text encoder configs of the Stable Diffusion releases (their `text_encoder/config.json`, relevant keys).
SD1_TEXT_CONFIG: dict[str, Any] = dict(  # openai/clip-vit-large-patch14 text tower
  vocab_size=49408,
  hidden_size=768,
  intermediate_size=3072,
  num_hidden_layers=12,
  num_attention_heads=12,
  max_position_embeddings=77,
  hidden_act="quick_gelu",
  layer_norm_eps=1e-5,
)
SD2_TEXT_CONFIG: dict[str, Any] = dict(  # OpenCLIP ViT-H/14 text tower, penultimate layer
  vocab_size=49408,
  hidden_size=1024,
  intermediate_size=4096,
  num_hidden_layers=23,
  num_attention_heads=16,
  max_position_embeddings=77,
  hidden_act="gelu",
  layer_norm_eps=1e-5,
)


def _layer_norm(x: jax.Array, eps: float, param_dtype: Dtype, name: str) -> jax.Array:
  """LayerNorm over the last axis with float32 statistics (call inside a compact method)."""
  y = nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=jnp.float32, param_dtype=param_dtype, name=name)(
    x.astype(jnp.float32)
  )
  return y.astype(x.dtype)


class CLIPAttention(nn.Module):
  """Multi-head self-attention with transformers' names (q_proj/k_proj/v_proj/out_proj, all with bias).

  x [B,L,D] -> [B,L,D]; causal, optionally also masking padded keys.
  """

  hidden_size: int  # model width D
  num_heads: int  # attention heads; head width D // num_heads
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  implementation: str | None = None  # jax.nn.dot_product_attention backend: None (XLA) or 'cudnn'

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    """x [B,L,D], key_mask [B,L] bool (True = attend) or None -> [B,L,D]."""
    b, l, d = x.shape
    head_dim = self.hidden_size // self.num_heads
    dense = lambda name: nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    q = dense("q_proj")(x).reshape(b, l, self.num_heads, head_dim)
    k = dense("k_proj")(x).reshape(b, l, self.num_heads, head_dim)
    v = dense("v_proj")(x).reshape(b, l, self.num_heads, head_dim)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # [B,1,1,L] broadcast over heads, queries
    # The XLA path computes the logits with float32 accumulation and the softmax in float32.
    o = jax.nn.dot_product_attention(
      q, k, v, mask=mask, scale=head_dim**-0.5, is_causal=True, implementation=self.implementation
    )
    return dense("out_proj")(o.reshape(b, l, d))


class CLIPMLP(nn.Module):
  """fc1 -> activation -> fc2: [..., D] -> [..., D]."""

  hidden_size: int  # model width
  intermediate_size: int  # hidden width of the MLP
  hidden_act: str = "quick_gelu"  # key of ACTIVATIONS
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.intermediate_size, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1")(x)
    x = ACTIVATIONS[self.hidden_act](x)
    return nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(x)


class CLIPEncoderLayer(nn.Module):
  """Pre-LayerNorm transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x)); [B,L,D] -> [B,L,D]."""

  hidden_size: int  # model width
  intermediate_size: int  # MLP hidden width
  num_heads: int  # attention heads
  hidden_act: str = "quick_gelu"  # key of ACTIVATIONS
  layer_norm_eps: float = 1e-5  # LayerNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    h = _layer_norm(x, self.layer_norm_eps, self.param_dtype, "layer_norm1")
    x = x + CLIPAttention(
      self.hidden_size,
      self.num_heads,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      implementation=self.attention_implementation,
      name="self_attn",
    )(h, key_mask)
    h = _layer_norm(x, self.layer_norm_eps, self.param_dtype, "layer_norm2")
    return x + CLIPMLP(
      self.hidden_size,
      self.intermediate_size,
      self.hidden_act,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="mlp",
    )(h)


class CLIPTextEmbeddings(nn.Module):
  """Token plus learned absolute position embeddings: ids [B,L] -> [B,L,D] in `dtype`."""

  vocab_size: int  # number of token ids
  hidden_size: int  # model width
  max_position_embeddings: int  # longest sequence
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, input_ids: jax.Array) -> jax.Array:
    embed = lambda n, name: nn.Embed(n, self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    tokens = embed(self.vocab_size, "token_embedding")(input_ids)
    positions = embed(self.max_position_embeddings, "position_embedding")(jnp.arange(input_ids.shape[-1]))
    return tokens + positions[None]


class CLIPEncoder(nn.Module):
  """The stack of `CLIPEncoderLayer`s (`layers_0` ... `layers_{n-1}`); runs the first `num_run` of them."""

  num_hidden_layers: int  # layers in the checkpoint
  hidden_size: int  # model width
  intermediate_size: int  # MLP hidden width
  num_attention_heads: int  # attention heads
  hidden_act: str = "quick_gelu"  # key of ACTIVATIONS
  layer_norm_eps: float = 1e-5  # LayerNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None, num_run: int | None = None) -> jax.Array:
    """x [B,L,D] -> hidden state after `num_run` layers (all if None) [B,L,D].

    At init every layer is created (and run) whatever `num_run` is, so the params always hold the full stack.
    """
    num_run = self.num_hidden_layers if num_run is None else num_run
    out = x
    for i in range(self.num_hidden_layers if self.is_initializing() else num_run):
      x = CLIPEncoderLayer(
        self.hidden_size,
        self.intermediate_size,
        self.num_attention_heads,
        self.hidden_act,
        self.layer_norm_eps,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        attention_implementation=self.attention_implementation,
        name=f"layers_{i}",
      )(x, key_mask)
      if i == num_run - 1:
        out = x
    return out


class CLIPTextTransformer(nn.Module):
  """embeddings -> encoder -> final_layer_norm (transformers 4.x `CLIPTextModel.text_model`)."""

  vocab_size: int  # number of token ids
  hidden_size: int  # model width
  intermediate_size: int  # MLP hidden width
  num_hidden_layers: int  # layers in the checkpoint
  num_attention_heads: int  # attention heads
  max_position_embeddings: int  # longest sequence
  hidden_act: str = "quick_gelu"  # key of ACTIVATIONS
  layer_norm_eps: float = 1e-5  # LayerNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, input_ids: jax.Array, key_mask: jax.Array | None, num_run: int) -> jax.Array:
    x = CLIPTextEmbeddings(
      self.vocab_size,
      self.hidden_size,
      self.max_position_embeddings,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="embeddings",
    )(input_ids)
    x = CLIPEncoder(
      self.num_hidden_layers,
      self.hidden_size,
      self.intermediate_size,
      self.num_attention_heads,
      self.hidden_act,
      self.layer_norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_implementation=self.attention_implementation,
      name="encoder",
    )(x, key_mask, num_run)
    return _layer_norm(x, self.layer_norm_eps, self.param_dtype, "final_layer_norm")


class CLIPTextModel(nn.Module):
  """CLIP text encoder with transformers' `CLIPTextModel` layout; returns last_hidden_state.

  Call: `model.apply({'params': p}, input_ids [B,L] int, attention_mask=None, skip_last_layers=None)
  -> [B,L,hidden_size]` in `dtype`, L <= max_position_embeddings. Attention is causal, as in CLIP;
  Stable Diffusion passes no padding mask (padded positions attend to the whole prompt).

  Field defaults are transformers' `CLIPTextConfig` defaults (so a config.json missing a key means
  the same here); `SD1_TEXT_CONFIG` / `SD2_TEXT_CONFIG` hold the Stable Diffusion encoders' values.
  """

  vocab_size: int = 49408  # number of token ids
  hidden_size: int = 512  # model width (768 SD 1.x, 1024 SD 2.x)
  intermediate_size: int = 2048  # MLP hidden width
  num_hidden_layers: int = 12  # layers (12 SD 1.x; 23 in the SD 2.x checkpoints)
  num_attention_heads: int = 8  # attention heads (12 SD 1.x, 16 SD 2.x)
  max_position_embeddings: int = 77  # longest token sequence
  hidden_act: str = "quick_gelu"  # MLP activation, a key of ACTIVATIONS ('quick_gelu' SD 1.x, 'gelu' SD 2.x)
  layer_norm_eps: float = 1e-5  # LayerNorm epsilon
  skip_last_layers: int = 0  # "CLIP skip": output the hidden state this many layers before the last
  dtype: Dtype = jnp.float32  # compute dtype (bf16 on GPU); LayerNorms and softmax stay float32
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # jax.nn.dot_product_attention implementation: None (XLA) or 'cudnn'

  @classmethod
  def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "CLIPTextModel":
    """Builds the model from a transformers `text_encoder/config.json` dict; `overrides` set module fields.

    A full `CLIPConfig` dict (with `text_config`) uses its text part. Keys that do not affect the
    forward pass (token ids, initialisers, dropout, bookkeeping) are ignored.

    Raises:
      ValueError: for an unsupported `hidden_act` or a `model_type` other than 'clip_text_model'.
    """
    if isinstance(config.get("text_config"), Mapping):
      config = config["text_config"]
    model_type = config.get("model_type", "clip_text_model")
    if model_type != "clip_text_model":
      raise ValueError(
        f"CLIPTextModel.from_config: model_type={model_type!r}; expected a 'clip_text_model' "
        "config (a Stable Diffusion text_encoder/config.json)."
      )
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    kwargs = {k: v for k, v in config.items() if k in fields and not k.startswith("_") and k not in _IGNORED_KEYS}
    kwargs.update(overrides)
    model = cls(**kwargs)
    model.check_config()
    return model

  def check_config(self, skip_last_layers: int | None = None) -> None:
    """Raises ValueError for settings this port cannot build (`skip_last_layers` overrides the field)."""
    skip = self.skip_last_layers if skip_last_layers is None else skip_last_layers
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(
        f"unsupported hidden_act={self.hidden_act!r} in the CLIP text config; implemented: {sorted(ACTIVATIONS)}."
      )
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
        f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}."
      )
    if not 0 <= skip < self.num_hidden_layers:
      raise ValueError(f"skip_last_layers={skip} must be in [0, {self.num_hidden_layers}).")

  @nn.compact
  def __call__(
    self, input_ids: jax.Array, attention_mask: jax.Array | None = None, skip_last_layers: int | None = None
  ) -> jax.Array:
    """Encodes token ids.

    Args:
      input_ids: [B,L] integer token ids, L <= max_position_embeddings.
      attention_mask: optional [B,L] (1/True = real token, 0/False = padding) masking padded keys on
        top of the causal mask, as transformers' `attention_mask`. Stable Diffusion passes None.
      skip_last_layers: overrides the field; the output is the hidden state after
        num_hidden_layers - skip_last_layers layers, passed through final_layer_norm.
    Returns:
      [B,L,hidden_size] in `dtype`.
    """
    skip = self.skip_last_layers if skip_last_layers is None else skip_last_layers
    self.check_config(skip)
    length = input_ids.shape[-1]
    if input_ids.ndim != 2 or length > self.max_position_embeddings:
      raise ValueError(
        f"input_ids must be [batch, length] with length <= {self.max_position_embeddings}, got shape {input_ids.shape}."
      )
    key_mask = None if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    return CLIPTextTransformer(
      self.vocab_size,
      self.hidden_size,
      self.intermediate_size,
      self.num_hidden_layers,
      self.num_attention_heads,
      self.max_position_embeddings,
      self.hidden_act,
      self.layer_norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_implementation=self.attention_implementation,
      name="text_model",
    )(input_ids, key_mask, self.num_hidden_layers - skip)


def _canonical_key(key: str) -> str:
  """transformers 5.x saves CLIPTextModel without the `text_model.` prefix of 4.x (hub) checkpoints; add it."""
  if key.startswith(("text_model.", "text_projection.")):
    return key
  return "text_model." + key


def clip_params_from_torch(
  state_dict: Mapping[str, np.ndarray],
  model: CLIPTextModel,
  *,
  ignore: Iterable[str] = CHECKPOINT_IGNORE,
  on_device: bool = False,
) -> dict:
  """Converts a transformers CLIPTextModel state dict (e.g. `text_encoder/model.safetensors`) for `model`.

  Args:
    state_dict: checkpoint key -> array, e.g. from `dreamfusion_jax.guidance.convert.load_safetensors_numpy`.
      Keys with the `text_model.` prefix (transformers 4.x, the Stable Diffusion hub files) and
      without it (transformers 5.x `save_pretrained`) are both accepted.
    model: the Flax model; target shapes come from `jax.eval_shape`, nothing is allocated twice.
    ignore: regexes of checkpoint keys to skip (default: the position_ids buffer and text_projection).
  Returns:
    A params dict in `model.param_dtype`.
  Raises:
    dreamfusion_jax.guidance.convert.CheckpointError: listing every mismatching, missing or unexpected tensor.
  """
  ids = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  shapes = jax.eval_shape(lambda rng, x: model.init(rng, x, skip_last_layers=0), jax.random.PRNGKey(0), ids)
  renamed = {_canonical_key(k): v for k, v in state_dict.items()}
  return torch_to_flax(renamed, shapes["params"], name=type(model).__name__, ignore=ignore, on_device=on_device)


def load_tokenizer(folder: str) -> Any:
  """Loads the CLIP BPE tokenizer of a Stable Diffusion `tokenizer/` folder (transformers `CLIPTokenizer`)."""
  from transformers import CLIPTokenizer  # local: optional dependency of the Stable Diffusion path only

  return CLIPTokenizer.from_pretrained(folder)


def cut(tokenizer: Any, text: str, max_length: int | None = None) -> Optional[tuple[str, str]]:
  """None if text fits max_length tokens (None: the tokenizer's model_max_length) with <|startoftext|> and
  <|endoftext|>; else (the text kept, the text dropped), decoded from the tokens `tokenize` keeps and drops."""
  max_length = max_length or tokenizer.model_max_length
  ids = tokenizer(text, truncation=False).input_ids[1:-1]  # Without <|startoftext|> and <|endoftext|>.
  room = max_length - 2
  if len(ids) <= room:
    return None
  return tokenizer.decode(ids[:room]).strip(), tokenizer.decode(ids[room:]).strip()


def tokenize(tokenizer: Any, texts: str | Sequence[str], max_length: int | None = None) -> np.ndarray:
  """Token ids as diffusers' StableDiffusionPipeline makes them: padded to max_length, truncated.

  Args:
    tokenizer: a transformers tokenizer, e.g. from `load_tokenizer`.
    texts: one prompt or a sequence of prompts.
    max_length: tokens per prompt; None -> `tokenizer.model_max_length` (77 for Stable Diffusion).
  Returns:
    int32 [N, max_length] (<|startoftext|> ... <|endoftext|> then padding).
  """
  if isinstance(texts, str):
    texts = [texts]
  if max_length is None:
    max_length = tokenizer.model_max_length
    if max_length is None or max_length > 100_000:  # transformers' "no limit" sentinel is ~1e30
      raise ValueError("the tokenizer sets no model_max_length; pass max_length (77 for Stable Diffusion).")
  ids = tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True).input_ids
  return np.asarray(ids, dtype=np.int32)
