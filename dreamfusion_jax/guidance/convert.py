"""PyTorch state dicts (as numpy arrays) -> Flax linen params, shape-checked leaf by leaf.

Works for any Flax module whose submodule names mirror the PyTorch module tree with list indices
joined by '_' (the UNet in `unet.py`; later the VAE and the CLIP text encoder):

  checkpoint key                                     Flax leaf
  down_blocks.0.resnets.1.conv1.weight [O,I,kh,kw]   down_blocks_0/resnets_1/conv1/kernel [kh,kw,I,O]
  time_embedding.linear_1.weight [O,I]               time_embedding/linear_1/kernel [I,O]
  ...norm1.weight (GroupNorm / LayerNorm) [C]         .../norm1/scale [C]
  token_embedding.weight (nn.Embedding) [N,D]        .../token_embedding/embedding [N,D]
  *.bias                                             *.bias (unchanged)

Which of kernel / scale / embedding a `weight` becomes is read off the target tree, so no
per-model table is needed. A 1x1 conv weight [O,I,1,1] loads into a Dense kernel [I,O] and a
linear weight into a 1x1 conv kernel [1,1,I,O] (SD 1.x uses 1x1 conv proj_in, SD 2.x Dense).

Every target leaf must be filled exactly once; all mismatches are collected and reported together
in one `CheckpointError` so a bad checkpoint is diagnosed in one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from flax.core import unfreeze

# Flax leaf names a PyTorch `weight` can become, by module kind.
_WEIGHT_LEAVES = ("kernel", "scale", "embedding")
_MAX_LISTED = 25  # names listed per problem kind in an error message


class CheckpointError(ValueError):
  """A checkpoint does not match the model: wrong shapes, missing or unexpected tensors."""


def torch_module_path(key: str) -> tuple[str, ...]:
  """'down_blocks.0.attentions.1.to_out.0.weight' -> ('down_blocks_0', 'attentions_1', 'to_out_0', 'weight')."""
  out: list[str] = []
  for part in key.split("."):
    if part.isdigit() and out:
      out[-1] = f"{out[-1]}_{part}"
    else:
      out.append(part)
  return tuple(out)


def _convert_weight(value: np.ndarray, leaf: str, shape: tuple[int, ...]) -> np.ndarray | None:
  """Rearranges a PyTorch `weight` for a Flax leaf of the given name and shape; None if impossible."""
  if leaf == "kernel":
    if value.ndim == 4 and len(shape) == 4:  # conv OIHW -> HWIO
      return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 2 and len(shape) == 2:  # linear [out, in] -> [in, out]
      return value.T
    if value.ndim == 4 and len(shape) == 2 and value.shape[2:] == (1, 1):  # 1x1 conv -> Dense
      return value[:, :, 0, 0].T
    if value.ndim == 2 and len(shape) == 4 and tuple(shape[:2]) == (1, 1):  # linear -> 1x1 conv
      return value.T[None, None]
    return None
  return value  # scale / embedding / same-named parameters keep their layout


def _flax_name(path: tuple[str, ...], leaves: Mapping[tuple[str, ...], Any]) -> tuple[str, ...] | None:
  """Maps a converted PyTorch path to an existing target leaf path (None if there is none)."""
  module, leaf = path[:-1], path[-1]
  if leaf == "weight":
    hits = [module + (name,) for name in _WEIGHT_LEAVES if module + (name,) in leaves]
    if len(hits) == 1:
      return hits[0]
  return path if path in leaves else None


def _listing(title: str, items: list[str]) -> str:
  shown = items[:_MAX_LISTED]
  more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
  return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def torch_to_flax(
  state_dict: Mapping[str, np.ndarray], target: Any, *, name: str = "model", ignore: Iterable[str] = ()
) -> dict:
  """Converts a PyTorch state dict into a Flax params tree shaped like `target`.

  Args:
    state_dict: checkpoint key -> array (numpy, or anything np.asarray accepts, e.g. float32 CPU torch
      tensors; bfloat16 torch tensors need `.float()` first, or use `load_safetensors_numpy`).
    target: params pytree whose leaves have `.shape` (and optionally `.dtype`), e.g.
      `jax.eval_shape(model.init, ...)['params']`. Converted arrays are cast to the leaf dtype.
    name: model name used in error messages.
    ignore: regular expressions (re.search); checkpoint keys matching any are skipped, e.g.
      buffers such as r"position_ids$".
  Returns:
    Nested dict of numpy arrays with exactly the structure of `target`.
  Raises:
    CheckpointError: listing every shape mismatch (checkpoint key, expected vs found shape),
      every target leaf nothing loaded into, every unexpected checkpoint key, and duplicates.
  """
  leaves = traverse_util.flatten_dict(unfreeze(target))
  patterns = [re.compile(p) for p in ignore]
  out: dict[tuple[str, ...], np.ndarray] = {}
  source: dict[tuple[str, ...], str] = {}
  mismatched, unexpected, duplicated = [], [], []
  for key, value in state_dict.items():
    if any(p.search(key) for p in patterns):
      continue
    path = _flax_name(torch_module_path(key), leaves)
    if path is None:
      unexpected.append(key)
      continue
    if path in source:
      duplicated.append(f"{key} and {source[path]} both map to {'/'.join(path)}")
      continue
    source[path] = key
    value = np.asarray(value)
    expected = tuple(leaves[path].shape)
    converted = _convert_weight(value, path[-1], expected) if key.endswith("weight") else value
    if converted is None or tuple(converted.shape) != expected:
      mismatched.append(
        f"{key} -> {'/'.join(path)}: expected shape {expected} (Flax), found {tuple(value.shape)} "
        f"(checkpoint){'' if converted is None else f', {tuple(converted.shape)} after conversion'}"
      )
      continue
    dtype = getattr(leaves[path], "dtype", None)
    out[path] = np.asarray(converted, dtype=dtype) if dtype is not None else np.array(converted)
  missing = ["/".join(p) for p in leaves if p not in source]
  if mismatched or missing or unexpected or duplicated:
    parts = [f"checkpoint does not match {name}:"]
    problems = (
      ("shape mismatches", mismatched),
      ("missing parameters (no checkpoint tensor maps to them)", missing),
      ("unexpected checkpoint keys", unexpected),
      ("duplicate sources", duplicated),
    )
    for title, items in problems:
      if items:
        parts.append(_listing(title, items))
    raise CheckpointError("\n".join(parts))
  return traverse_util.unflatten_dict(out)


def load_safetensors_numpy(path: str, dtype: Any = np.float32) -> dict[str, np.ndarray]:
  """Reads a .safetensors file into numpy without torch.

  Floating tensors (float16 / bfloat16 / float32 ...) are cast to `dtype` (None keeps the stored
  dtype; bfloat16 then comes back as an ml_dtypes array); integer tensors are left alone.
  """
  from safetensors.numpy import load_file  # local: optional dependency of the checkpoint path only

  tensors = load_file(path)
  if dtype is None:
    return dict(tensors)
  return {k: (v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v) for k, v in tensors.items()}


def unet_params_from_torch(state_dict: Mapping[str, np.ndarray], model: Any, *, ignore: Iterable[str] = ()) -> dict:
  """Converts a diffusers UNet2DConditionModel state dict for a `dreamfusion_jax.guidance.unet.UNet2DConditionModel`.

  The target shapes come from `jax.eval_shape(model.init, ...)` on the smallest valid input, so no
  parameter memory is allocated twice. Returns a params dict in `model.param_dtype`.
  """
  size = 2 ** (len(model.block_out_channels) - 1)
  sample = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
  context = jax.ShapeDtypeStruct((1, 1, model.cross_attention_dim), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), sample, jnp.zeros((1,), jnp.int32), context)
  return torch_to_flax(state_dict, shapes["params"], name=type(model).__name__, ignore=ignore)
