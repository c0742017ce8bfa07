"""Flax port of diffusers' `AutoencoderKL` (the Stable Diffusion 1.x / 2.x VAE).

Layout and parameter names mirror the PyTorch module tree with list indices joined by '_'
(`encoder.down_blocks.0.resnets.1.conv1.weight` -> params['encoder']['down_blocks_0']['resnets_1']['conv1']['kernel']),
so `dreamfusion_jax.guidance.convert.torch_to_flax` loads a diffusers checkpoint mechanically;
`vae_params_from_torch` also renames the legacy mid-block attention keys (query/key/value/proj_attn) that older
checkpoints such as the stable-diffusion-v1-5 hub files still use.

Tensors are NHWC (PyTorch is NCHW); images are in [-1, 1]. Mixed precision follows `unet.py`: `dtype` is the
compute dtype, `param_dtype` the storage dtype of the weights; GroupNorm statistics and the attention softmax are
always computed in float32.

Only the pieces the Stable Diffusion VAEs use are implemented (DownEncoderBlock2D, UNetMidBlock2D with one
single-head attention, UpDecoderBlock2D, SiLU); `AutoencoderKL.from_config` rejects anything else with a ValueError.
Dropout is not implemented (PyTorch eval() semantics). The latent scaling factor (0.18215 for SD) is NOT applied
inside the model: callers multiply `encode`'s output by `scaling_factor` and divide before `decode`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.guidance.convert import CheckpointError, checkpoint_param_shapes, shapes_once, torch_to_flax
from dreamfusion_jax.guidance.unet import Downsample2D, Upsample2D, _conv, _group_norm, _to_tuple, check_config_keys

Dtype = Any

# Block types this port implements (names as in diffusers configs).
DOWN_BLOCK_TYPES = ("DownEncoderBlock2D",)
UP_BLOCK_TYPES = ("UpDecoderBlock2D",)
# GroupNorm epsilon of every norm in diffusers' VAE Encoder / Decoder (fixed there, not a config key).
_EPS = 1e-6
# DiagonalGaussianDistribution clamps the log-variance to this range.
_LOGVAR_RANGE = (-30.0, 20.0)


class VAEResnetBlock2D(nn.Module):
  """diffusers ResnetBlock2D without a time embedding (temb=None): x [B,H,W,Cin] -> [B,H,W,Cout]."""

  out_channels: int  # output channels of conv1/conv2 (a 1x1 conv_shortcut is added when != input channels)
  groups: int = 32  # GroupNorm groups for norm1 and norm2
  eps: float = _EPS  # GroupNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.silu(_group_norm(x, self.groups, self.eps, self.param_dtype, "norm1"))
    h = _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv1")(h)
    h = nn.silu(_group_norm(h, self.groups, self.eps, self.param_dtype, "norm2"))
    h = _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv2")(h)
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, 1, self.dtype, self.param_dtype, "conv_shortcut")(x)
    return x + h  # output_scale_factor is 1 throughout the VAE


class VAEAttention(nn.Module):
  """Mid-block spatial self-attention (diffusers `Attention` built with `_from_deprecated_attn_block`).

  GroupNorm (`group_norm`), to_q/to_k/to_v/to_out_0 (all with bias), one head of width C, residual
  connection, rescale_output_factor 1: x [B,H,W,C] -> [B,H,W,C].
  """

  groups: int = 32  # GroupNorm groups
  eps: float = _EPS  # GroupNorm epsilon
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  implementation: str | None = None  # jax.nn.dot_product_attention backend: None (XLA) or 'cudnn' (bf16/fp16 GPU)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, hgt, wid, c = x.shape
    dense = lambda name: nn.Dense(c, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    h = _group_norm(x, self.groups, self.eps, self.param_dtype, "group_norm").reshape(b, hgt * wid, 1, c)
    q, k, v = dense("to_q")(h), dense("to_k")(h), dense("to_v")(h)
    # XLA path: float32 logits accumulation and float32 softmax for any input dtype.
    o = jax.nn.dot_product_attention(q, k, v, scale=c**-0.5, implementation=self.implementation)
    o = dense("to_out_0")(o.reshape(b, hgt * wid, c))
    return o.reshape(b, hgt, wid, c) + x


class _VAEBlockBase(nn.Module):
  """Fields shared by the VAE's down / mid / up blocks."""

  out_channels: int  # output channels of every resnet in the block
  num_layers: int = 1  # resnets in the block (mid block: resnets after the first)
  groups: int = 32  # GroupNorm groups
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet (and the mid attention) in the backward pass
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  def _resnet(self, name: str) -> nn.Module:
    cls = nn.remat(VAEResnetBlock2D) if self.remat else VAEResnetBlock2D
    return cls(self.out_channels, groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype, name=name)


class DownEncoderBlock2D(_VAEBlockBase):
  """Resnets then an optional stride-2 downsample with diffusers' (0, 1) padding: [B,H,W,Cin] -> [B,H/2,W/2,C]."""

  add_downsample: bool = True  # False for the last (lowest-resolution) block

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_layers):
      x = self._resnet(f"resnets_{i}")(x)
    if self.add_downsample:
      x = Downsample2D(
        self.out_channels, padding=0, dtype=self.dtype, param_dtype=self.param_dtype, name="downsamplers_0"
      )(x)
    return x


class UpDecoderBlock2D(_VAEBlockBase):
  """Resnets then an optional nearest x2 upsample: [B,H,W,Cin] -> [B,2H,2W,C]."""

  add_upsample: bool = True  # False for the last (full-resolution) block

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_layers):
      x = self._resnet(f"resnets_{i}")(x)
    if self.add_upsample:
      x = Upsample2D(self.out_channels, dtype=self.dtype, param_dtype=self.param_dtype, name="upsamplers_0")(x)
    return x


class UNetMidBlock2D(_VAEBlockBase):
  """Resnet, then (attention, resnet) x num_layers at the lowest resolution: [B,h,w,C] -> same."""

  add_attention: bool = True  # diffusers `mid_block_add_attention`

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    attn_cls = nn.remat(VAEAttention) if self.remat else VAEAttention
    x = self._resnet("resnets_0")(x)
    for i in range(self.num_layers):
      if self.add_attention:
        x = attn_cls(
          self.groups,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          implementation=self.attention_implementation,
          name=f"attentions_{i}",
        )(x)
      x = self._resnet(f"resnets_{i + 1}")(x)
    return x


class Encoder(nn.Module):
  """diffusers VAE `Encoder`: image [B,H,W,in_channels] -> moments [B,H/f,W/f,2*latent_channels] (f = 2**(levels-1)).

  With `double_z` the output holds the Gaussian's mean then log-variance (before quant_conv).
  """

  in_channels: int = 3  # image channels
  latent_channels: int = 4  # latent channels (the output has twice as many with double_z)
  block_out_channels: tuple[int, ...] = (64,)  # channels per resolution level, high to low resolution
  layers_per_block: int = 2  # resnets per down block
  norm_num_groups: int = 32  # GroupNorm groups everywhere
  double_z: bool = True  # output mean and log-variance
  mid_block_add_attention: bool = True  # self-attention in the mid block
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet and the mid attention in the backward pass
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n = len(self.block_out_channels)
    common = dict(
      groups=self.norm_num_groups,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      remat=self.remat,
      attention_implementation=self.attention_implementation,
    )
    x = _conv(self.block_out_channels[0], 3, self.dtype, self.param_dtype, "conv_in")(x.astype(self.dtype))
    for i, channels in enumerate(self.block_out_channels):
      x = DownEncoderBlock2D(
        channels, num_layers=self.layers_per_block, add_downsample=i < n - 1, name=f"down_blocks_{i}", **common
      )(x)
    x = UNetMidBlock2D(
      self.block_out_channels[-1], add_attention=self.mid_block_add_attention, name="mid_block", **common
    )(x)
    x = nn.silu(_group_norm(x, self.norm_num_groups, _EPS, self.param_dtype, "conv_norm_out"))
    out = 2 * self.latent_channels if self.double_z else self.latent_channels
    return _conv(out, 3, self.dtype, self.param_dtype, "conv_out")(x)


class Decoder(nn.Module):
  """diffusers VAE `Decoder`: latent [B,h,w,latent_channels] -> image [B,h*f,w*f,out_channels] (f = 2**(levels-1))."""

  latent_channels: int = 4  # input (latent) channels
  out_channels: int = 3  # image channels
  block_out_channels: tuple[int, ...] = (64,)  # channels per resolution level, high to low resolution (as the encoder)
  layers_per_block: int = 2  # the up blocks have layers_per_block + 1 resnets
  norm_num_groups: int = 32  # GroupNorm groups everywhere
  mid_block_add_attention: bool = True  # self-attention in the mid block
  dtype: Dtype = jnp.float32  # compute dtype
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet and the mid attention in the backward pass
  attention_implementation: str | None = None  # passed to jax.nn.dot_product_attention

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    n = len(self.block_out_channels)
    common = dict(
      groups=self.norm_num_groups,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      remat=self.remat,
      attention_implementation=self.attention_implementation,
    )
    x = _conv(self.block_out_channels[-1], 3, self.dtype, self.param_dtype, "conv_in")(z.astype(self.dtype))
    x = UNetMidBlock2D(
      self.block_out_channels[-1], add_attention=self.mid_block_add_attention, name="mid_block", **common
    )(x)
    for i, channels in enumerate(reversed(self.block_out_channels)):
      x = UpDecoderBlock2D(
        channels, num_layers=self.layers_per_block + 1, add_upsample=i < n - 1, name=f"up_blocks_{i}", **common
      )(x)
    x = nn.silu(_group_norm(x, self.norm_num_groups, _EPS, self.param_dtype, "conv_norm_out"))
    return _conv(self.out_channels, 3, self.dtype, self.param_dtype, "conv_out")(x)


# Config keys that do not change the forward pass (or that the caller applies outside the model).
_IGNORED_KEYS = frozenset(
  {
    "sample_size",  # the model is fully convolutional (diffusers only uses it for tiling)
    "force_upcast",  # precision is chosen with `dtype` here
    "latents_mean",
    "latents_std",  # latent normalisation statistics, applied by the caller if at all
  }
)


class AutoencoderKL(nn.Module):
  """Stable Diffusion VAE with diffusers' AutoencoderKL layout.

  Methods (use `model.apply({'params': p}, x, method='encode')` etc.):
    encode(x [B,H,W,in_channels] in [-1,1]) -> latent mean [B,H/f,W/f,latent_channels] (unscaled; f = 2**(levels-1))
    encode_moments(x) -> (mean, logvar), logvar clamped to [-30, 20] like DiagonalGaussianDistribution
    decode(z [B,h,w,latent_channels], unscaled) -> image [B,h*f,w*f,out_channels] (roughly [-1,1], not clipped)
    __call__(x) -> decode(encode(x)) (diffusers' forward with sample_posterior=False); used by `init`.
  Outputs are in `dtype`. Only the submodules a method uses are touched, so `encode` runs with encoder and
  quant_conv params alone.
  """

  in_channels: int = 3  # image channels
  out_channels: int = 3  # decoded image channels
  down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4  # encoder blocks, high to low resolution
  up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4  # decoder blocks, low to high resolution
  block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # channels per resolution level
  layers_per_block: int = 2  # resnets per encoder block (decoder blocks get one more)
  latent_channels: int = 4  # latent channels
  norm_num_groups: int = 32  # GroupNorm groups everywhere
  scaling_factor: float = 0.18215  # SD latent scale (NOT applied inside the model): z_unet = scaling_factor * encode(x)
  shift_factor: float | None = None  # latent shift of newer VAEs (NOT applied; None for SD 1.x / 2.x)
  use_quant_conv: bool = True  # 1x1 conv on the encoder moments
  use_post_quant_conv: bool = True  # 1x1 conv on the latent before the decoder
  mid_block_add_attention: bool = True  # self-attention in the encoder and decoder mid blocks
  dtype: Dtype = jnp.float32  # compute dtype (bf16 on GPU); norms and softmax stay float32
  param_dtype: Dtype = jnp.float32  # parameter storage dtype
  remat: bool = False  # rematerialise each resnet and the mid attentions in the backward pass (saves memory)
  attention_implementation: str | None = None  # jax.nn.dot_product_attention implementation: None (XLA) or 'cudnn'

  @classmethod
  def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "AutoencoderKL":
    """Builds the model from a diffusers `vae/config.json` dict; `overrides` set module fields (dtype, remat...).

    Raises ValueError naming any config key whose value this port does not implement, and unknown keys.
    """
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    kwargs: dict[str, Any] = {}
    unknown, unsupported = [], []
    for key, value in config.items():
      if key.startswith("_") or key in _IGNORED_KEYS:
        continue
      if key == "act_fn":
        if value not in ("silu", "swish"):
          unsupported.append(f"act_fn={value!r} (only 'silu' is implemented)")
      elif key in fields:
        kwargs[key] = _to_tuple(value)
      else:
        unknown.append(key)
    check_config_keys("AutoencoderKL", "VAE", unsupported, unknown)
    kwargs.update(overrides)
    model = cls(**kwargs)
    model.check_config()
    return model

  def check_config(self) -> None:
    """Raises ValueError (naming the config key) for block layouts this port cannot build."""
    n = len(self.block_out_channels)
    for key, types, allowed in (
      ("down_block_types", self.down_block_types, DOWN_BLOCK_TYPES),
      ("up_block_types", self.up_block_types, UP_BLOCK_TYPES),
    ):
      if len(types) != n:
        raise ValueError(f"{key} {types} needs one entry per block_out_channels {self.block_out_channels}.")
      bad = [t for t in types if t not in allowed]
      if bad:
        raise ValueError(f"{key}: unsupported VAE block types {bad}; implemented: {allowed}.")
    if not isinstance(self.layers_per_block, int):
      raise ValueError(f"layers_per_block={self.layers_per_block!r}: the VAE takes one int for every block.")
    bad_groups = [c for c in self.block_out_channels if c % self.norm_num_groups]
    if bad_groups:
      raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad_groups}.")

  def setup(self) -> None:
    self.check_config()
    common = dict(
      block_out_channels=self.block_out_channels,
      layers_per_block=self.layers_per_block,
      norm_num_groups=self.norm_num_groups,
      mid_block_add_attention=self.mid_block_add_attention,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      remat=self.remat,
      attention_implementation=self.attention_implementation,
    )
    self.encoder = Encoder(self.in_channels, self.latent_channels, double_z=True, **common)
    self.decoder = Decoder(self.latent_channels, self.out_channels, **common)
    if self.use_quant_conv:
      self.quant_conv = _conv(2 * self.latent_channels, 1, self.dtype, self.param_dtype, "quant_conv")
    if self.use_post_quant_conv:
      self.post_quant_conv = _conv(self.latent_channels, 1, self.dtype, self.param_dtype, "post_quant_conv")

  def encode_moments(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B,H,W,in_channels] in [-1,1] -> (mean, logvar), each [B,H/f,W/f,latent_channels], logvar clamped."""
    if x.shape[-1] != self.in_channels:
      raise ValueError(f"image has {x.shape[-1]} channels but the VAE expects in_channels={self.in_channels}.")
    h = self.encoder(x.astype(self.dtype))
    if self.use_quant_conv:
      h = self.quant_conv(h)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  def encode(self, x: jax.Array) -> jax.Array:
    """x [B,H,W,in_channels] in [-1,1] -> latent mean [B,H/f,W/f,latent_channels] (multiply by scaling_factor)."""
    return self.encode_moments(x)[0]

  def decode(self, z: jax.Array) -> jax.Array:
    """Unscaled latent z [B,h,w,latent_channels] (divide by scaling_factor first) -> image [B,h*f,w*f,out_channels]."""
    if z.shape[-1] != self.latent_channels:
      raise ValueError(f"latent has {z.shape[-1]} channels but the VAE expects latent_channels={self.latent_channels}.")
    z = z.astype(self.dtype)
    if self.use_post_quant_conv:
      z = self.post_quant_conv(z)
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Reconstruction decode(encode(x)) with the posterior mean; initialises every parameter."""
    return self.decode(self.encode(x))


# Legacy diffusers names of the mid-block attention projections (AttentionBlock before diffusers 0.14).
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LEGACY_ATTENTION_KEY = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")


def rename_legacy_attention_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Renames legacy VAE attention keys to diffusers' current names (a new dict; tensors are shared).

  `...attentions.N.{query,key,value,proj_attn}.*` -> `...attentions.N.{to_q,to_k,to_v,to_out.0}.*`, as
  diffusers' `ModelMixin._fix_state_dict_keys_on_load` does when it loads such a checkpoint.

  Other keys, including already-new names, are kept as they are; the tensors are not copied or reshaped
  (1x1 conv weights [O,I,1,1] load into the Dense kernels through `torch_to_flax`).
  Raises CheckpointError if a tensor is present under both its legacy and its new name.
  """
  out: dict[str, Any] = {}
  renamed: dict[str, str] = {}
  for key, value in state_dict.items():
    m = _LEGACY_ATTENTION_KEY.match(key)
    if m:
      renamed[f"{m.group(1)}.{_LEGACY_ATTENTION[m.group(2)]}.{m.group(3)}"] = key
    else:
      out[key] = value
  both = [f"{old} and {new}" for new, old in renamed.items() if new in out]
  if both:
    raise CheckpointError("checkpoint holds attention tensors under both legacy and new names: " + ", ".join(both))
  out.update((new, state_dict[old]) for new, old in renamed.items())
  return out


def vae_params_from_torch(
  state_dict: Mapping[str, np.ndarray],
  model: AutoencoderKL,
  *,
  ignore: Iterable[str] = (),
  on_device: bool = False,
  target: Any = None,
) -> dict:
  """Converts a diffusers AutoencoderKL state dict (new or legacy attention names) for `model`.

  The target shapes come from `jax.eval_shape(model.init, ...)` on the smallest valid input, so no
  parameter memory is allocated twice; or are `target` (e.g. `vae_checkpoint_shapes`: the weights then move at
  once, checked against the model later). Returns a params dict in `model.param_dtype`.
  Raises `dreamfusion_jax.guidance.convert.CheckpointError` listing every mismatched, missing or unexpected tensor.
  """
  return torch_to_flax(
    rename_legacy_attention_keys(state_dict),
    vae_param_shapes(model) if target is None else target,
    name=type(model).__name__,
    ignore=ignore,
    on_device=on_device,
  )


# The mid blocks' attention projections: Dense layers, which legacy checkpoints may store as 1x1 conv weights.
_ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out_0")


def vae_checkpoint_shapes(state_dict: Mapping[str, Any], model: AutoencoderKL) -> dict:
  """`vae_param_shapes(model)` from a checkpoint's tensors' shapes (its safetensors header) instead of a traced init:
  the tree `vae_params_from_torch` makes of it (legacy attention names renamed, their weights Dense kernels).
  Raises CheckpointError for a tensor under both its legacy and its new name."""
  return checkpoint_param_shapes(
    rename_legacy_attention_keys(state_dict),
    model.param_dtype,
    dense=lambda module: True if module[-1] in _ATTENTION_PROJECTIONS else None,
  )


@shapes_once
def vae_param_shapes(model: AutoencoderKL) -> dict:
  """The params tree of `model` (encoder and decoder) as jax.ShapeDtypeStructs (nothing allocated)."""
  size = 2 ** (len(model.block_out_channels) - 1)
  image = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), image)["params"]
