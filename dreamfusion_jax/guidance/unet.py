"""Flax port of diffusers' `UNet2DConditionModel` (the Stable Diffusion 1.x / 2.x denoiser).

Layout and parameter names mirror the PyTorch module tree with list indices joined by '_'
(`down_blocks.0.resnets.1.conv1.weight` -> params['down_blocks_0']['resnets_1']['conv1']['kernel']),
so `dreamfusion_jax.guidance.convert.torch_to_flax` can load a diffusers checkpoint mechanically.

Tensors are NHWC (PyTorch is NCHW). Mixed precision follows maxdiffusion: `dtype` is the compute
dtype, `param_dtype` the storage dtype of the weights; GroupNorm / LayerNorm statistics, the
sinusoidal timestep features and the attention softmax are always computed in float32.

Only the pieces Stable Diffusion 1.x / 2.x use are implemented (CrossAttnDownBlock2D, DownBlock2D,
UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D, positional time embedding, no class or
added embeddings); `UNet2DConditionModel.from_config` rejects anything else with a ValueError.
Dropout is not implemented: the UNet is a frozen guidance model here (PyTorch eval() semantics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# Block types this port implements (names as in diffusers configs).
DOWN_BLOCK_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
MID_BLOCK_TYPES = ("UNetMidBlock2DCrossAttn", None)


def timestep_embedding(
  timesteps: jax.Array, dim: int, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10000.0
) -> jax.Array:
  """Sinusoidal DDPM timestep features, as diffusers' `get_timestep_embedding`.

  Args:
    timesteps: [B] diffusion timesteps (int or float; fractional allowed).
    dim: feature size; odd sizes are zero-padded by one column like diffusers.
    flip_sin_to_cos: order (cos, sin) if True else (sin, cos).
    freq_shift: `downscale_freq_shift`; frequencies are exp(-log(max_period) * i / (dim/2 - shift)).
  Returns:
    [B, dim] float32.
  """
  half = dim // 2
  # Same operation order as PyTorch so float32 rounding matches.
  exponent = (-math.log(max_period) * jnp.arange(half, dtype=jnp.float32)) / (half - freq_shift)
  args = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
  sin, cos = jnp.sin(args), jnp.cos(args)
  emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
  if dim % 2 == 1:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _group_norm(x: jax.Array, num_groups: int, eps: float, param_dtype: Dtype, name: str) -> jax.Array:
  """GroupNorm with float32 statistics and output cast back to x.dtype (call inside a compact method)."""
  y = nn.GroupNorm(
    num_groups=num_groups, epsilon=eps, use_fast_variance=False, dtype=jnp.float32, param_dtype=param_dtype, name=name
  )(x.astype(jnp.float32))
  return y.astype(x.dtype)


def _layer_norm(x: jax.Array, eps: float, param_dtype: Dtype, name: str) -> jax.Array:
  """LayerNorm over the last axis with float32 statistics (call inside a compact method)."""
  y = nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=jnp.float32, param_dtype=param_dtype, name=name)(
    x.astype(jnp.float32)
  )
  return y.astype(x.dtype)


def _conv(
  features: int, kernel: int, dtype: Dtype, param_dtype: Dtype, name: str, stride: int = 1, padding: int | None = None
) -> nn.Conv:
  """kxk conv with PyTorch-style symmetric zero padding ((k-1)//2 unless given)."""
  pad = (kernel - 1) // 2 if padding is None else padding
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
  )


class ResnetBlock2D(nn.Module):
  """diffusers ResnetBlock2D ("default" time embedding norm): x [B,H,W,Cin], temb [B,T] -> [B,H,W,Cout]."""

  out_channels: int  # output channels of conv1/conv2 (a 1x1 conv_shortcut is added when != input channels)
  groups: int = 32  # GroupNorm groups for norm1 and norm2
  eps: float = 1e-5  # GroupNorm epsilon
  output_scale_factor: float = 1.0  # (shortcut + residual) is divided by this
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
    h = nn.silu(_group_norm(x, self.groups, self.eps, self.param_dtype, "norm1"))
    h = _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv1")(h)
    t = nn.Dense(self.out_channels, dtype=self.dtype, param_dtype=self.param_dtype, name="time_emb_proj")(nn.silu(temb))
    h = h + t[:, None, None, :]
    h = nn.silu(_group_norm(h, self.groups, self.eps, self.param_dtype, "norm2"))
    h = _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv2")(h)
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, 1, self.dtype, self.param_dtype, "conv_shortcut")(x)
    return (x + h) / self.output_scale_factor


class Downsample2D(nn.Module):
  """Stride-2 3x3 conv (`downsamplers.0.conv`): [B,H,W,C] -> [B,ceil(H/2),ceil(W/2),C] for padding 1."""

  out_channels: int  # output channels
  padding: int = 1  # diffusers `downsample_padding`; 0 means pad bottom/right by one, like diffusers
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.padding == 0:
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv", stride=2, padding=self.padding)(x)


class Upsample2D(nn.Module):
  """Nearest-neighbour x2 then 3x3 conv (`upsamplers.0.conv`): [B,H,W,C] -> [B,2H,2W,C]."""

  out_channels: int  # output channels
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    # Broadcast + reshape is an exact nearest x2 and lowers to a cheap copy.
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)
    return _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv")(x)


class Attention(nn.Module):
  """Multi-head attention with diffusers' `Attention` names (to_q/to_k/to_v without bias, to_out_0 with).

  x [B,T,Dq], context [B,S,Dc] (None -> self-attention) -> [B,T,Dq].
  """

  heads: int  # number of heads
  dim_head: int  # channels per head; softmax scale is dim_head**-0.5
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  implementation: str | None = None  # jax.nn.dot_product_attention backend: None (XLA) or 'cudnn' (bf16/fp16 GPU)

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
    context = x if context is None else context
    inner = self.heads * self.dim_head
    dense = lambda feats, bias, name: nn.Dense(
      feats, use_bias=bias, dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )
    b, t, s = x.shape[0], x.shape[1], context.shape[1]
    q = dense(inner, False, "to_q")(x).reshape(b, t, self.heads, self.dim_head)
    k = dense(inner, False, "to_k")(context).reshape(b, s, self.heads, self.dim_head)
    v = dense(inner, False, "to_v")(context).reshape(b, s, self.heads, self.dim_head)
    # The XLA path computes logits with float32 accumulation and the softmax in float32 for any
    # input dtype; in float32 it matches a hand-written softmax attention bit for bit on CPU.
    o = jax.nn.dot_product_attention(q, k, v, scale=self.dim_head**-0.5, implementation=self.implementation)
    return dense(x.shape[-1], True, "to_out_0")(o.reshape(b, t, inner))


class GEGLU(nn.Module):
  """GEGLU input projection of the feed-forward (`ff.net.0.proj`): [..., D] -> [..., inner]."""

  inner_dim: int  # output features (the projection produces 2*inner_dim: value and gate)
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.Dense(2 * self.inner_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="proj")(x)
    value, gate = jnp.split(h, 2, axis=-1)
    return value * jax.nn.gelu(gate, approximate=False)  # torch F.gelu default is the exact erf form


class FeedForward(nn.Module):
  """diffusers FeedForward with GEGLU (`ff.net.0`, dropout `net.1` omitted, `ff.net.2`): [...,D] -> [...,D]."""

  mult: int = 4  # inner width = mult * D
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dim = x.shape[-1]
    h = GEGLU(dim * self.mult, dtype=self.dtype, param_dtype=self.param_dtype, name="net_0")(x)
    return nn.Dense(dim, dtype=self.dtype, param_dtype=self.param_dtype, name="net_2")(h)


class BasicTransformerBlock(nn.Module):
  """Pre-LayerNorm self-attention, cross-attention and GEGLU MLP: x [B,T,D], context [B,S,Dc] -> [B,T,D]."""

  heads: int  # attention heads
  dim_head: int  # channels per head
  norm_eps: float = 1e-5  # LayerNorm epsilon (diffusers' Transformer2DModel default)
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
    attn = lambda name: Attention(
      self.heads,
      self.dim_head,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      implementation=self.attention_implementation,
      name=name,
    )
    x = x + attn("attn1")(_layer_norm(x, self.norm_eps, self.param_dtype, "norm1"))
    x = x + attn("attn2")(_layer_norm(x, self.norm_eps, self.param_dtype, "norm2"), context)
    h = _layer_norm(x, self.norm_eps, self.param_dtype, "norm3")
    return x + FeedForward(dtype=self.dtype, param_dtype=self.param_dtype, name="ff")(h)


class Transformer2DModel(nn.Module):
  """Spatial transformer: x [B,H,W,C], context [B,S,Dc] -> [B,H,W,C] (residual around the whole stack)."""

  heads: int  # attention heads
  dim_head: int  # channels per head; inner width = heads * dim_head
  num_layers: int = 1  # BasicTransformerBlocks in the stack
  groups: int = 32  # GroupNorm groups of the input norm (its epsilon is fixed at 1e-6 in diffusers)
  use_linear_projection: bool = False  # proj_in/proj_out are Dense (SD 2.x) instead of 1x1 conv (SD 1.x)
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention
  remat: bool = False  # rematerialise each BasicTransformerBlock in the backward pass

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
    b, hgt, wid, c = x.shape
    inner = self.heads * self.dim_head
    h = _group_norm(x, self.groups, 1e-6, self.param_dtype, "norm")
    if self.use_linear_projection:
      proj = lambda feats, name: nn.Dense(feats, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    else:
      proj = lambda feats, name: _conv(feats, 1, self.dtype, self.param_dtype, name)
    # A 1x1 conv on NHWC and a Dense on the last axis are the same map, so both paths share the reshape.
    h = proj(inner, "proj_in")(h).reshape(b, hgt * wid, inner)
    block_cls = nn.remat(BasicTransformerBlock) if self.remat else BasicTransformerBlock
    for i in range(self.num_layers):
      h = block_cls(
        self.heads,
        self.dim_head,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        attention_implementation=self.attention_implementation,
        name=f"transformer_blocks_{i}",
      )(h, context)
    h = proj(c, "proj_out")(h.reshape(b, hgt, wid, inner))
    return h + x


class _BlockBase(nn.Module):
  """Fields shared by the UNet's down / mid / up blocks."""

  out_channels: int  # output channels of every resnet in the block
  num_layers: int = 1  # resnets (and attentions) in the block
  groups: int = 32  # GroupNorm groups
  eps: float = 1e-5  # resnet GroupNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet and BasicTransformerBlock in the backward pass
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  def _resnet(self, name: str, output_scale_factor: float = 1.0) -> nn.Module:
    cls = nn.remat(ResnetBlock2D) if self.remat else ResnetBlock2D
    return cls(
      self.out_channels,
      groups=self.groups,
      eps=self.eps,
      output_scale_factor=output_scale_factor,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )


class _CrossAttnMixin(_BlockBase):
  """Adds the transformer settings of cross-attention blocks."""

  heads: int = 8  # attention heads (dim_head = out_channels // heads, as diffusers)
  transformer_layers: tuple[int, ...] = (1,)  # BasicTransformerBlocks per attention, one entry per layer
  use_linear_projection: bool = False  # Dense proj_in/proj_out (SD 2.x) instead of 1x1 conv (SD 1.x)

  def _transformer(self, index: int) -> nn.Module:
    return Transformer2DModel(
      self.heads,
      self.out_channels // self.heads,
      num_layers=self.transformer_layers[index],
      groups=self.groups,
      use_linear_projection=self.use_linear_projection,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_implementation=self.attention_implementation,
      remat=self.remat,
      name=f"attentions_{index}",
    )


class DownBlock2D(_BlockBase):
  """Resnets then an optional stride-2 downsample. Returns (x, skips) with one skip per resnet (+ downsample)."""

  add_downsample: bool = True  # False for the last (lowest-resolution) block
  downsample_padding: int = 1  # padding of the downsampling conv

  @nn.compact
  def __call__(
    self, x: jax.Array, temb: jax.Array, context: jax.Array | None = None
  ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    del context  # same signature as the cross-attention block
    skips = []
    for i in range(self.num_layers):
      x = self._resnet(f"resnets_{i}")(x, temb)
      skips.append(x)
    if self.add_downsample:
      x = Downsample2D(
        self.out_channels,
        self.downsample_padding,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="downsamplers_0",
      )(x)
      skips.append(x)
    return x, tuple(skips)


class CrossAttnDownBlock2D(_CrossAttnMixin):
  """(Resnet, Transformer2D) pairs then an optional downsample. Returns (x, skips)."""

  add_downsample: bool = True  # False for the last (lowest-resolution) block
  downsample_padding: int = 1  # padding of the downsampling conv

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, context: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    skips = []
    for i in range(self.num_layers):
      x = self._resnet(f"resnets_{i}")(x, temb)
      x = self._transformer(i)(x, context)
      skips.append(x)
    if self.add_downsample:
      x = Downsample2D(
        self.out_channels,
        self.downsample_padding,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="downsamplers_0",
      )(x)
      skips.append(x)
    return x, tuple(skips)


class UNetMidBlock2DCrossAttn(_CrossAttnMixin):
  """Resnet, then (Transformer2D, Resnet) x num_layers, at the lowest resolution: [B,h,w,C] -> same."""

  output_scale_factor: float = 1.0  # diffusers `mid_block_scale_factor`, applied in the resnets

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, context: jax.Array) -> jax.Array:
    x = self._resnet("resnets_0", self.output_scale_factor)(x, temb)
    for i in range(self.num_layers):
      x = self._transformer(i)(x, context)
      x = self._resnet(f"resnets_{i + 1}", self.output_scale_factor)(x, temb)
    return x


class UpBlock2D(_BlockBase):
  """Resnets on [x, popped skip] concatenations then an optional nearest x2 upsample."""

  add_upsample: bool = True  # False for the last (full-resolution) block

  @nn.compact
  def __call__(
    self, x: jax.Array, skips: Sequence[jax.Array], temb: jax.Array, context: jax.Array | None = None
  ) -> jax.Array:
    del context  # same signature as the cross-attention block
    skips = list(skips)
    for i in range(self.num_layers):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = self._resnet(f"resnets_{i}")(x, temb)
    if self.add_upsample:
      x = Upsample2D(self.out_channels, dtype=self.dtype, param_dtype=self.param_dtype, name="upsamplers_0")(x)
    return x


class CrossAttnUpBlock2D(_CrossAttnMixin):
  """(Resnet on [x, popped skip], Transformer2D) pairs then an optional upsample."""

  add_upsample: bool = True  # False for the last (full-resolution) block

  @nn.compact
  def __call__(self, x: jax.Array, skips: Sequence[jax.Array], temb: jax.Array, context: jax.Array) -> jax.Array:
    skips = list(skips)
    for i in range(self.num_layers):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = self._resnet(f"resnets_{i}")(x, temb)
      x = self._transformer(i)(x, context)
    if self.add_upsample:
      x = Upsample2D(self.out_channels, dtype=self.dtype, param_dtype=self.param_dtype, name="upsamplers_0")(x)
    return x


def _per_block(value: Any, n: int, name: str) -> tuple:
  """Broadcasts an int (or None) to n blocks, or checks a per-block sequence has length n."""
  if value is None or isinstance(value, (int, float)):
    return (value,) * n
  value = tuple(value)
  if len(value) != n:
    raise ValueError(f"`{name}` has {len(value)} entries but the UNet has {n} blocks; give one per block.")
  return value


def _per_layer(value: int | Sequence[int], n: int) -> tuple[int, ...]:
  """Transformer depth per layer of a block: an int is used for every layer."""
  if isinstance(value, int):
    return (value,) * n
  value = tuple(int(v) for v in value)
  if len(value) != n:
    raise ValueError(f"transformer layers {value} must have one entry per layer ({n}).")
  return value


def check_config_keys(model: str, part: str, unsupported: Sequence[str], unknown: Sequence[str]) -> None:
  """Raises one ValueError listing a diffusers config's unsupported options and unknown keys (if any)."""
  if not (unsupported or unknown):
    return
  msg = []
  if unsupported:
    msg.append(f"unsupported {part} features: " + ", ".join(unsupported))
  if unknown:
    msg.append("unknown config keys: " + ", ".join(sorted(unknown)))
  raise ValueError(
    f"{model}.from_config: "
    + "; ".join(msg)
    + f". Only the Stable Diffusion 1.x/2.x {part} architecture is implemented."
  )


def _to_tuple(value: Any) -> Any:
  """JSON lists -> (nested) tuples so module fields stay hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_to_tuple(v) for v in value)
  return value


# Config keys with the only value this port implements. Anything else is rejected by from_config.
_REQUIRED_VALUES: dict[str, Any] = {
  "class_embed_type": None,
  "num_class_embeds": None,
  "projection_class_embeddings_input_dim": None,
  "class_embeddings_concat": False,
  "addition_embed_type": None,
  "addition_time_embed_dim": None,
  "encoder_hid_dim": None,
  "encoder_hid_dim_type": None,
  "time_cond_proj_dim": None,
  "time_embedding_type": "positional",
  "time_embedding_act_fn": None,
  "timestep_post_act": None,
  "resnet_time_scale_shift": "default",
  "dual_cross_attention": False,
  "attention_type": "default",
}
# Config keys that do not change the forward pass of the supported architecture.
_IGNORED_KEYS = frozenset(
  {
    "sample_size",  # the model is fully convolutional
    "dropout",  # inference only (PyTorch eval() semantics)
    "upcast_attention",  # the softmax is always float32 here, with float32 logits
    "resnet_skip_time_act",
    "resnet_out_scale_factor",  # only used by ResnetDownsample/Upsample blocks
    "cross_attention_norm",
    "mid_block_only_cross_attention",  # only used by SimpleCrossAttn blocks
    "addition_embed_type_num_heads",  # only used by addition_embed_type='text'
  }
)


class UNet2DConditionModel(nn.Module):
  """Stable Diffusion denoiser eps_theta(z_t, t, y) with diffusers' UNet2DConditionModel layout.

  Call: `model.apply({'params': p}, sample [B,H,W,in_channels], timesteps [B] or scalar,
  encoder_hidden_states [B,L,cross_attention_dim]) -> [B,H,W,out_channels]` in `dtype`.
  H and W must be divisible by 2**(len(block_out_channels) - 1).

  Heads follow diffusers' naming quirk: when `num_attention_heads` is None, `attention_head_dim`
  is the NUMBER of heads per block (SD 1.x: 8 everywhere; SD 2.x: (5, 10, 20, 20) -> 64 channels
  per head), and the head width is block channels // heads.
  """

  in_channels: int = 4  # latent channels of `sample`
  out_channels: int = 4  # predicted channels (epsilon or v)
  down_block_types: tuple[str, ...] = (
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  )  # encoder blocks, high to low res
  mid_block_type: str | None = "UNetMidBlock2DCrossAttn"  # bottleneck block (None skips it)
  up_block_types: tuple[str, ...] = (
    "UpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
  )  # decoder blocks, low to high res
  block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)  # channels per resolution level
  layers_per_block: int | tuple[int, ...] = 2  # resnets per down block (up blocks get one more)
  transformer_layers_per_block: int | tuple = 1  # BasicTransformerBlocks per attention: int, or per block
  reverse_transformer_layers_per_block: tuple | None = None  # per up block override (asymmetric UNets)
  attention_head_dim: int | tuple[int, ...] = 8  # diffusers quirk: number of heads unless num_attention_heads is set
  num_attention_heads: int | tuple[int, ...] | None = None  # heads per block (overrides attention_head_dim)
  cross_attention_dim: int = 1280  # width of encoder_hidden_states (768 SD 1.x, 1024 SD 2.x)
  use_linear_projection: bool = False  # Dense proj_in/out in transformers (SD 2.x) vs 1x1 conv (SD 1.x)
  norm_num_groups: int = 32  # GroupNorm groups everywhere
  norm_eps: float = 1e-5  # GroupNorm epsilon of resnets and conv_norm_out
  flip_sin_to_cos: bool = True  # timestep features ordered (cos, sin)
  freq_shift: float = 0.0  # timestep frequency shift (0 for SD)
  downsample_padding: int = 1  # padding of the stride-2 downsampling convs
  mid_block_scale_factor: float = 1.0  # output scale of the mid block resnets
  center_input_sample: bool = False  # map sample from [0,1] to [-1,1] first
  conv_in_kernel: int = 3  # kernel of conv_in
  conv_out_kernel: int = 3  # kernel of conv_out
  time_embedding_dim: int | None = None  # width of the time embedding MLP (None -> 4 * block_out_channels[0])
  dtype: Dtype = jnp.float32  # compute dtype (bf16 on GPU); norms and softmax stay float32
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet and BasicTransformerBlock in the backward pass (saves memory)
  attention_implementation: str | None = None  # jax.nn.dot_product_attention implementation: None (XLA) or 'cudnn'

  @classmethod
  def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "UNet2DConditionModel":
    """Builds the model from a diffusers `unet/config.json` dict; `overrides` set module fields (dtype, remat...).

    Raises ValueError naming any config feature this port does not implement.
    """
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    kwargs: dict[str, Any] = {}
    unknown, unsupported = [], []
    for key, value in config.items():
      if key.startswith("_") or key in _IGNORED_KEYS:
        continue
      if key in _REQUIRED_VALUES:
        if value != _REQUIRED_VALUES[key]:
          unsupported.append(f"{key}={value!r}")
      elif key == "act_fn":
        if value not in ("silu", "swish"):
          unsupported.append(f"act_fn={value!r}")
      elif key == "only_cross_attention":
        if any(_per_block(value, 1 if isinstance(value, bool) else len(value), key)):
          unsupported.append(f"only_cross_attention={value!r}")
      elif key == "cross_attention_dim":
        dims = set(_per_block(value, 1 if isinstance(value, int) else len(value), key))
        if len(dims) != 1:
          unsupported.append(f"cross_attention_dim={value!r} (one encoder_hidden_states width per block)")
        else:
          kwargs[key] = dims.pop()
      elif key in fields:
        kwargs[key] = _to_tuple(value)
      else:
        unknown.append(key)
    check_config_keys("UNet2DConditionModel", "UNet", unsupported, unknown)
    kwargs.update(overrides)
    model = cls(**kwargs)
    model.check_config()
    return model

  def check_config(self) -> None:
    """Raises ValueError for block types or per-block settings this port cannot build."""
    n = len(self.block_out_channels)
    if self.norm_num_groups is None:
      raise ValueError("norm_num_groups=None (no output norm) is not supported by this UNet port.")
    if len(self.down_block_types) != n or len(self.up_block_types) != n:
      raise ValueError(
        f"down_block_types {self.down_block_types} and up_block_types {self.up_block_types} "
        f"need one entry per block_out_channels {self.block_out_channels}."
      )
    bad = [t for t in self.down_block_types if t not in DOWN_BLOCK_TYPES]
    bad += [t for t in self.up_block_types if t not in UP_BLOCK_TYPES]
    if self.mid_block_type not in MID_BLOCK_TYPES:
      bad.append(self.mid_block_type)
    if bad:
      raise ValueError(
        f"unsupported UNet block types {bad}; implemented: {DOWN_BLOCK_TYPES + UP_BLOCK_TYPES} "
        f"and mid block {MID_BLOCK_TYPES[0]!r} or None."
      )
    for name in ("layers_per_block", "transformer_layers_per_block", "attention_head_dim", "num_attention_heads"):
      _per_block(getattr(self, name), n, name)
    for c, h in zip(self.block_out_channels, self._heads()):
      if c % h:
        raise ValueError(f"block channels {c} are not divisible by {h} attention heads.")

  def _heads(self) -> tuple[int, ...]:
    """Attention heads per block (diffusers: num_attention_heads or, failing that, attention_head_dim)."""
    n = len(self.block_out_channels)
    heads = self.num_attention_heads if self.num_attention_heads is not None else self.attention_head_dim
    return _per_block(heads, n, "num_attention_heads")

  @nn.compact
  def __call__(
    self, sample: jax.Array, timesteps: jax.Array | float | int, encoder_hidden_states: jax.Array
  ) -> jax.Array:
    """sample [B,H,W,in_channels], timesteps [B] or scalar, encoder_hidden_states [B,L,D] -> [B,H,W,out_channels]."""
    self.check_config()
    n = len(self.block_out_channels)
    b, hgt, wid, c = sample.shape
    factor = 2 ** (n - 1)
    if hgt % factor or wid % factor:
      raise ValueError(f"sample spatial size {(hgt, wid)} must be divisible by {factor} for this UNet.")
    if c != self.in_channels:
      raise ValueError(f"sample has {c} channels but the UNet expects in_channels={self.in_channels}.")
    heads = self._heads()
    layers = _per_block(self.layers_per_block, n, "layers_per_block")
    tlayers = _per_block(self.transformer_layers_per_block, n, "transformer_layers_per_block")
    up_tlayers = (
      tuple(reversed(tlayers))
      if self.reverse_transformer_layers_per_block is None
      else _per_block(self.reverse_transformer_layers_per_block, n, "reverse_transformer_layers_per_block")
    )
    common = dict(
      groups=self.norm_num_groups,
      eps=self.norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      remat=self.remat,
      attention_implementation=self.attention_implementation,
    )

    x = sample.astype(self.dtype)
    context = encoder_hidden_states.astype(self.dtype)
    if self.center_input_sample:
      x = 2 * x - 1.0

    # Time embedding: float32 sinusoid -> Dense -> SiLU -> Dense.
    t = jnp.broadcast_to(jnp.asarray(timesteps).reshape(-1), (b,))
    t_feat = timestep_embedding(t, self.block_out_channels[0], self.flip_sin_to_cos, self.freq_shift)
    time_dim = self.time_embedding_dim or 4 * self.block_out_channels[0]
    temb = _TimestepEmbedding(time_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="time_embedding")(
      t_feat.astype(self.dtype)
    )

    x = _conv(self.block_out_channels[0], self.conv_in_kernel, self.dtype, self.param_dtype, "conv_in")(x)

    skips: list[jax.Array] = [x]
    for i, block_type in enumerate(self.down_block_types):
      last = i == n - 1
      kw = dict(
        common,
        num_layers=layers[i],
        add_downsample=not last,
        downsample_padding=self.downsample_padding,
        name=f"down_blocks_{i}",
      )
      if block_type == "CrossAttnDownBlock2D":
        block = CrossAttnDownBlock2D(
          self.block_out_channels[i],
          heads=heads[i],
          transformer_layers=_per_layer(tlayers[i], layers[i]),
          use_linear_projection=self.use_linear_projection,
          **kw,
        )
      else:
        block = DownBlock2D(self.block_out_channels[i], **kw)
      x, res = block(x, temb, context)
      skips.extend(res)

    if self.mid_block_type is not None:
      x = UNetMidBlock2DCrossAttn(
        self.block_out_channels[-1],
        num_layers=1,
        heads=heads[-1],
        transformer_layers=_per_layer(tlayers[-1], 1),
        use_linear_projection=self.use_linear_projection,
        output_scale_factor=self.mid_block_scale_factor,
        name="mid_block",
        **common,
      )(x, temb, context)

    rev_channels = tuple(reversed(self.block_out_channels))
    rev_heads, rev_layers = tuple(reversed(heads)), tuple(reversed(layers))
    for i, block_type in enumerate(self.up_block_types):
      num = rev_layers[i] + 1
      res, skips = skips[-num:], skips[:-num]
      kw = dict(common, num_layers=num, add_upsample=i < n - 1, name=f"up_blocks_{i}")
      if block_type == "CrossAttnUpBlock2D":
        block = CrossAttnUpBlock2D(
          rev_channels[i],
          heads=rev_heads[i],
          transformer_layers=_per_layer(up_tlayers[i], num),
          use_linear_projection=self.use_linear_projection,
          **kw,
        )
      else:
        block = UpBlock2D(rev_channels[i], **kw)
      x = block(x, res, temb, context)

    x = nn.silu(_group_norm(x, self.norm_num_groups, self.norm_eps, self.param_dtype, "conv_norm_out"))
    return _conv(self.out_channels, self.conv_out_kernel, self.dtype, self.param_dtype, "conv_out")(x)


class _TimestepEmbedding(nn.Module):
  """diffusers TimestepEmbedding (`time_embedding.linear_1/linear_2`, SiLU between): [B,Cin] -> [B,dim]."""

  dim: int  # output width (4 * block_out_channels[0] for SD)
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="linear_1")(x)
    return nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="linear_2")(nn.silu(x))
