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

`checkpoint_param_shapes` applies the same rules the other way: the tree `torch_to_flax` would make of a checkpoint,
from its tensors' shapes alone (a safetensors header), with the kinds of layer the rules read off the target told
instead (`unet_checkpoint_shapes`: proj_in / proj_out follow use_linear_projection). A run compiles from that tree at
once and checks the checkpoint against the model's own (traced) tree later, off its critical path.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

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
      return value.transpose((2, 3, 1, 0))
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


def _flax_weight(shape: tuple[int, ...], dense: Optional[bool]) -> tuple[str, tuple[int, ...]]:
  """(leaf name, Flax shape) of a PyTorch `weight` of this shape, as `_flax_name` and `_convert_weight` place it in a
  module that is a Dense layer (dense=True), a convolution (False), or whichever the weight's rank says (None)."""
  if len(shape) == 1:  # GroupNorm / LayerNorm
    return "scale", shape
  if len(shape) == 4 and dense and shape[2:] == (1, 1):  # 1x1 conv -> Dense
    return "kernel", (shape[1], shape[0])
  if len(shape) == 4:  # conv OIHW -> HWIO
    return "kernel", (shape[2], shape[3], shape[1], shape[0])
  if len(shape) == 2 and dense is False:  # linear -> 1x1 conv
    return "kernel", (1, 1, shape[1], shape[0])
  if len(shape) == 2:  # linear [out, in] -> [in, out]
    return "kernel", (shape[1], shape[0])
  return "weight", shape  # No Flax layer takes it: the model's check reports it.


def checkpoint_param_shapes(
  state_dict: Mapping[str, Any], dtype: Any, *, dense: Callable[[tuple[str, ...]], Optional[bool]] = lambda _: None
) -> dict:
  """The params tree `torch_to_flax` makes of state_dict for a model whose params are all `dtype`, as
  jax.ShapeDtypeStructs, from the tensors' shapes alone (a memory-mapped safetensors file's header: nothing read, no
  init traced; milliseconds where tracing SD's UNet init takes seconds).

  torch_to_flax reads a `weight`'s kind of layer off its target; here dense(module path) tells it where the
  checkpoint's rank does not: True for a Dense layer (a 1x1 conv weight [O,I,1,1] becomes a kernel [I,O]), False
  for a convolution (a linear weight [O,I] becomes [1,1,I,O]), None where a 4-D weight is a convolution's and a 2-D
  one a Dense layer's. A 1-D weight is a norm's scale. Embeddings ([N,D] -> `embedding`) are not told apart from
  Dense kernels: not for models with nn.Embed. For a checkpoint of the model this is its own params tree; for
  another it differs, which the model's check (torch_to_flax against the traced tree) reports tensor by tensor.
  """
  leaves = {}
  for key, value in state_dict.items():
    path = torch_module_path(key)
    shape = tuple(value.shape)
    if path[-1] == "weight":
      leaf, shape = _flax_weight(shape, dense(path[:-1]))
      path = path[:-1] + (leaf,)
    leaves[path] = jax.ShapeDtypeStruct(shape, dtype)
  return traverse_util.unflatten_dict(leaves)


def _listing(title: str, items: list[str]) -> str:
  shown = items[:_MAX_LISTED]
  more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
  return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def torch_to_flax(
  state_dict: Mapping[str, np.ndarray],
  target: Any,
  *,
  name: str = "model",
  ignore: Iterable[str] = (),
  on_device: bool = False,
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
    on_device: check now, convert later on the device: return a function of no arguments that puts each tensor
      on the default device as stored (e.g. float16 views of a memory-mapped file from `read_safetensors`),
      rearranges and casts it there (`to_device`) and returns the params as jax arrays.
  Returns:
    Nested dict of numpy arrays with exactly the structure of `target` (with on_device, the function that
    makes it, of jax arrays).
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
    if on_device:  # Checked here on a view (free); moved and converted below, once every tensor fits.
      out[path] = (value, path[-1] if key.endswith("weight") else None, expected, dtype)
    else:
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
  if on_device:
    return lambda: traverse_util.unflatten_dict(to_device(out))
  return traverse_util.unflatten_dict(out)


# Tensors smaller than this are cast on the host and moved as held: 3% of SD 2.1-base's UNet bytes in 511 of its
# 686 tensors, so the device casts the other 97% with about half as many distinct programs to compile.
_HOST_CAST_BYTES = 2**20


def to_device(stored: Mapping[Any, tuple]) -> dict:
  """{name: (host array as stored, torch leaf kind or None, Flax shape, dtype)} -> {name: jax array}.

  A large array goes to the default device in its stored dtype (no host-side cast or copy beyond the transfer's);
  the layout change of `_convert_weight` and the cast to `dtype` run there, in one compiled program per distinct
  (stored shape and dtype, layout change, dtype), the programs compiled on several threads at once (XLA compiles
  outside Python's lock). Arrays under _HOST_CAST_BYTES are converted in numpy, as `torch_to_flax` does on the
  host. The values equal the host path's: a transpose is exact and XLA's float conversions round to nearest
  even, as numpy's and ml_dtypes' do.
  """
  out, large = {}, {}
  for name, (value, leaf, shape, dtype) in stored.items():
    if value.nbytes >= _HOST_CAST_BYTES:
      large[name] = (value.shape, np.dtype(value.dtype), leaf, tuple(shape), dtype and np.dtype(dtype))
      continue
    converted = _convert_weight(value, leaf, shape) if leaf is not None else value
    out[name] = jax.device_put(np.asarray(converted, dtype=dtype) if dtype is not None else np.array(converted))
  signatures = list(dict.fromkeys(large.values()))
  workers = max(1, min(8, (os.cpu_count() or 2) - 1))
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="compile_convert") as pool:
    list(pool.map(_converter, signatures))  # Compiled (and cached) ahead of the transfers.
  for name, signature in large.items():
    out[name] = _converter(signature)(jax.device_put(stored[name][0]))
  return out


@functools.lru_cache(maxsize=None)
def _converter(signature: tuple):
  """The compiled program that takes a stored array of signature's (shape, dtype) to its Flax layout and dtype."""
  stored_shape, stored_dtype, leaf, shape, dtype = signature

  def convert(value):
    value = _convert_weight(value, leaf, shape) if leaf is not None else value
    return value.astype(dtype) if dtype is not None else value

  return jax.jit(convert).lower(jax.ShapeDtypeStruct(stored_shape, stored_dtype)).compile()


# safetensors' dtype names -> numpy dtypes (bfloat16 through ml_dtypes, as jax.numpy names it).
_SAFETENSORS_DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": jnp.bfloat16,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U8": np.uint8,
  "BOOL": np.bool_,
}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """The tensors of a .safetensors file as read-only numpy views of the memory-mapped file, in their stored dtype.

  Nothing is read until a tensor's bytes are used (a device transfer reads them straight from the page cache);
  the views keep the mapping open. Raises ValueError for a damaged or truncated file.
  """
  import json
  import mmap

  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    if size < 8:
      raise ValueError(f"{size} bytes, too short for a safetensors header")
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
  (header_len,) = np.frombuffer(mapped, "<u8", count=1)
  if 8 + int(header_len) > size:
    raise ValueError(f"its header claims {int(header_len)} bytes of the file's {size}")
  header = json.loads(bytes(mapped[8 : 8 + int(header_len)]))
  header.pop("__metadata__", None)
  start = 8 + int(header_len)
  tensors = {}
  for key, info in header.items():
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if start + end > size or end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
      raise ValueError(f"tensor '{key}' lies outside the file or does not match its shape {shape}")
    tensors[key] = np.frombuffer(
      mapped, dtype, count=int(np.prod(shape, dtype=np.int64)), offset=start + begin
    ).reshape(shape)
  return tensors


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


def unet_params_from_torch(
  state_dict: Mapping[str, np.ndarray],
  model: Any,
  *,
  ignore: Iterable[str] = (),
  on_device: bool = False,
  target: Any = None,
) -> dict:
  """Converts a diffusers UNet2DConditionModel state dict for a `dreamfusion_jax.guidance.unet.UNet2DConditionModel`.

  The target shapes come from `jax.eval_shape(model.init, ...)` on the smallest valid input, so no
  parameter memory is allocated twice; or are `target` (e.g. `unet_checkpoint_shapes`: the weights then move at
  once, checked against the model later). Returns a params dict in `model.param_dtype`.
  """
  target = unet_param_shapes(model) if target is None else target
  return torch_to_flax(state_dict, target, name=type(model).__name__, ignore=ignore, on_device=on_device)


def shapes_once(fn):
  """Memoises fn(model) -> a params tree of jax.ShapeDtypeStructs per (hashable, equal-by-fields) Flax module, and
  hands each caller its own copy of the tree. Tracing SD 2.1's UNet init takes 2-3 s of host time, and a run
  needs its shapes twice before its compile can start: to check the checkpoint and to compile from abstract
  weights."""
  cached = functools.lru_cache(maxsize=16)(fn)

  @functools.wraps(fn)
  def shapes(model):
    return jax.tree.map(lambda x: x, cached(model))

  shapes.cache_clear, shapes.cache_info = cached.cache_clear, cached.cache_info
  return shapes


@shapes_once
def unet_param_shapes(model: Any) -> dict:
  """The params tree of a `unet.UNet2DConditionModel` as jax.ShapeDtypeStructs (nothing allocated)."""
  size = 2 ** (len(model.block_out_channels) - 1)
  sample = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
  context = jax.ShapeDtypeStruct((1, 1, model.cross_attention_dim), jnp.float32)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), sample, jnp.zeros((1,), jnp.int32), context)["params"]


# The UNet's modules whose kind of layer the checkpoint's rank does not say: its transformers' projections.
_UNET_PROJECTIONS = ("proj_in", "proj_out")


def unet_checkpoint_shapes(state_dict: Mapping[str, Any], model: Any) -> dict:
  """`unet_param_shapes(model)` from a checkpoint's tensors' shapes (its safetensors header) instead of a traced init:
  the tree `unet_params_from_torch` makes of it. proj_in / proj_out are Dense with the model's use_linear_projection
  (SD 2.x) and 1x1 convolutions without (SD 1.x), whichever the checkpoint stores."""
  linear = bool(model.use_linear_projection)
  return checkpoint_param_shapes(
    state_dict, model.param_dtype, dense=lambda module: linear if module[-1] in _UNET_PROJECTIONS else None
  )
