"""Where a compiled program's memory goes, read from XLA's optimised HLO (`compiled.as_text()`).

`memory_analysis()` gives one number per kind (temporaries, arguments, outputs); this names the buffers behind
them: the largest instruction results, and the workspaces the GPU compiler gave its library calls. On a GPU a
cuDNN convolution or a cuBLAS GEMM is a custom call whose result is a tuple (the output, u8[N] or s8[N]); N is
the workspace of the algorithm the autotuner chose, which XLA sizes at compile time and allocates with the
program's temporaries. Shapes are parsed from the text, so the sizes are those of the arrays, not of the
allocator's rounding.
"""

import re

_BYTES = {
  "pred": 1,
  "s8": 1,
  "u8": 1,
  "s16": 2,
  "u16": 2,
  "f16": 2,
  "bf16": 2,
  "s32": 4,
  "u32": 4,
  "f32": 4,
  "s64": 8,
  "u64": 8,
  "f64": 8,
  "c64": 8,
  "c128": 16,
}
# An array shape such as f32[1,512,512,128]{3,2,1,0} (the layout is optional).
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
# The same with its layout (minor to major: {3,2,1,0} is NHWC for an NHWC-labelled convolution, {1,3,2,0} NCHW).
_ARRAY_LAYOUT = re.compile(r"\b(?:" + "|".join(_BYTES) + r")\[[\d,]*\](?:\{[\d,]*\})?")
# One instruction: `[ROOT ]%name = SHAPE opcode(`; SHAPE is an array or a tuple of arrays.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\(")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]+)"')
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
# The cuDNN engine (and its knobs) the autotuner chose, from a convolution's backend_config.
_ALGO = re.compile(r'"algo_id":"?(-?\d+)"?')
_KNOBS = re.compile(r'"tuning_knobs":(\{[^}]*\})')


def array_bytes(dtype: str, dims: str) -> int:
  """Bytes of one array given its element type ('f32') and dimensions ('1,512,512,128'; '' for a scalar)."""
  n = 1
  for d in filter(None, dims.split(",")):
    n *= int(d)
  return n * _BYTES[dtype]


def instructions(hlo_text: str) -> list[dict]:
  """Every instruction of the module: name, opcode, custom-call target ('' if none), the JAX op it came from
  (metadata op_name, '' if none), the (dtype, dims, bytes) of each array of its result (one for an array, several
  for a tuple), the computation it is in, and whether that computation is a fusion's body (whose values are not
  buffers of their own)."""
  out, computation, fused = [], "", set()
  for line in hlo_text.splitlines():
    stripped = line.strip()
    if stripped.endswith("{") and "=" not in stripped.split("(")[0]:
      computation = stripped.split()[1 if stripped.startswith("ENTRY") else 0].lstrip("%")
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    name, shape, opcode = m.groups()
    target, op_name = _TARGET.search(line), _OP_NAME.search(line)
    if opcode == "fusion":
      fused.update(_CALLS.findall(line))
    out.append(
      dict(
        name=name,
        opcode=opcode,
        target=target.group(1) if target else "",
        op_name=op_name.group(1) if op_name else "",
        arrays=[(dtype, dims, array_bytes(dtype, dims)) for dtype, dims in _ARRAY.findall(shape)],
        computation=computation,
      )
    )
  for ins in out:
    ins["in_fusion"] = ins["computation"] in fused
  return out


def workspaces(hlo_text: str, top: int = 10) -> list[dict]:
  """The custom calls with a byte-array workspace in their result tuple (cuDNN convolutions, cuBLAS GEMMs), the
  largest first: [{name, target, workspace_bytes, output, op_name, engine}]; output is the call's first result
  shape with its layout, engine the cuDNN engine id and knobs its backend_config names ('' for a GEMM)."""
  found, engines = [], {}
  for line in hlo_text.splitlines():
    m, algo = _INSTRUCTION.match(line), _ALGO.search(line)
    if m and algo:
      knobs = _KNOBS.search(line)
      engines[m.group(1)] = algo.group(1) + (f" {knobs.group(1)}" if knobs and knobs.group(1) != "{}" else "")
  layouts = {}
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      shapes = _ARRAY_LAYOUT.findall(m.group(2))
      layouts[m.group(1)] = shapes[0] if shapes else ""
  for ins in instructions(hlo_text):
    if ins["opcode"] != "custom-call" or len(ins["arrays"]) < 2:
      continue
    scratch = [a for a in ins["arrays"][1:] if a[0] in ("u8", "s8")]
    if not scratch:
      continue
    dtype, dims, _ = ins["arrays"][0]
    found.append(
      dict(
        name=ins["name"],
        target=ins["target"],
        workspace_bytes=sum(a[2] for a in scratch),
        output=layouts.get(ins["name"]) or f"{dtype}[{dims}]",
        op_name=ins["op_name"],
        engine=engines.get(ins["name"], ""),
      )
    )
  found.sort(key=lambda w: -w["workspace_bytes"])
  return found[:top]


def largest_arrays(hlo_text: str, top: int = 10) -> list[dict]:
  """The largest arrays that instructions outside fusion bodies produce (parameters included), the largest
  first: [{name, opcode, target, op_name, bytes, shape}]."""
  found = []
  for ins in instructions(hlo_text):
    if ins["in_fusion"]:
      continue
    for dtype, dims, size in ins["arrays"]:
      found.append(
        dict(
          name=ins["name"],
          opcode=ins["opcode"],
          target=ins["target"],
          op_name=ins["op_name"],
          bytes=size,
          shape=f"{dtype}[{dims}]",
        )
      )
  found.sort(key=lambda a: -a["bytes"])
  return found[:top]


def summary(compiled, top: int = 8) -> dict:
  """memory_analysis() in GiB (the `_gb` keys, as benchmarks/sd_step.py's peaks), the largest workspaces and the
  largest arrays of a compiled program (jax `Compiled`); what a backend does not report is None / empty."""
  gb = lambda b: None if b is None else round(b / 2**30, 3)
  ma = compiled.memory_analysis()
  fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes")
  sizes = {f.replace("_size_in_bytes", "_gb"): gb(getattr(ma, f, None)) for f in fields} if ma else {}
  text = compiled.as_text() or ""
  return dict(
    memory_analysis=sizes,
    workspaces=[dict(w, workspace_gb=gb(w.pop("workspace_bytes"))) for w in workspaces(text, top)],
    largest_arrays=[dict(a, gb=gb(a.pop("bytes"))) for a in largest_arrays(text, top)],
  )
