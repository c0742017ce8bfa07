"""Where a compiled program's device time goes, read from a profiler trace of the real program.

`jax.profiler.trace(dir, create_perfetto_trace=True)` writes `perfetto_trace.json.gz` (a Chrome trace: JSON with
`traceEvents`) under dir/plugins/profile/<run>/. This reads it with the standard library alone (the GPU machine
has neither tensorboard nor xprof) and sums the device-side events, so the profile is of the program as XLA
compiled it (its fusions, its library calls), not of parts jitted on their own.

Which events are the device's, keyed on the trace's process and thread names (`device_events`):

  GPU: process `/device:GPU:N...`, threads `Stream #K(...)`: one event per CUDA kernel, memcpy or memset (CUPTI).
       The kernel's name is the CUDA symbol (cuDNN, cuBLAS/cutlass, XLA's own `loop_add_fusion` etc.); XLA's
       annotation of the launch becomes args such as `hlo_op` (the HLO instruction), `hlo_module` and `tf_op`
       (XLA's cupti_collector.cc parses `name:#hlo_op=...,hlo_module=...#`). Other threads of that process
       (`CUPTI overhead`, or the `XLA Ops`/`XLA Modules` lines a profiler may derive from the kernels) are not
       counted: they would count the kernels twice.
  CPU: process `/host:CPU`: XLA's thunk executor records one event per HLO instruction it runs (the fusion, the
       convolution, the dot), named after the instruction, with args `hlo_op` and `hlo_module`, on the thread pool's
       threads; its `end: ...` markers and everything without `hlo_op` (Python, PjRt's bookkeeping) are left out.

Per step: every kernel's time and count, the categories below, the JAX op each came from (the HLO instruction's
metadata op_name, through benchmarks/hlo_memory.py) grouped by model part, the summed kernel time, the
device-busy time (the union of the kernels' intervals, so overlapping streams or CPU threads count once), and
the wall time the caller measured: wall - busy is launch overhead and idle.
"""

import collections
import glob
import gzip
import json
import os
import re

import hlo_memory

# Kernel (or HLO instruction) name -> category; the first pattern that matches (case-insensitive) wins. The order
# matters: cuDNN's flash-attention kernels say `fprop` and cuDNN's convolutions say `implicit_gemm`.
CATEGORIES = (
  # cuDNN SDPA (`cudnn_generated_fort_native_sdpa_..._flash_fprop...`), flash-attention, XLA's fmha custom calls.
  ("attention", r"flash|fmha|sdpa|attention|\bmha"),
  # cuDNN convolutions (`sm90_xmma_fprop_implicit_gemm_...`, `..._dgrad_...`, `..._wgrad_...`, winograd, the
  # `__cudnn$conv...` custom calls) and the CPU's `convolution` / `conv_general_dilated` instructions (not XLA's
  # `loop_convert_fusion`).
  ("convolution", r"conv(?!ert)|fprop|dgrad|wgrad|implicit_gemm|winograd|cudnn"),
  # cuBLAS (`sm90_xmma_gemm_...`, `nvjet_...`), cutlass, XLA's Triton GEMM fusions (`gemm_fusion_dot...`), the
  # CPU's `dot` instructions.
  ("gemm", r"gemm|matmul|cublas|cutlass|nvjet|wgmma|dot"),
  ("scatter/gather/sort", r"scatter|gather|sort|dynamic[-_]update|dynamic[-_]slice"),
  ("copy/transpose", r"copy|transpose|memcpy|memset"),
  # XLA's emitted kernels: `loop_..._fusion`, `input_reduce_fusion`, `wrapped_...`; the CPU's YNNPACK fusions.
  ("fusion", r"fusion|fused|^loop_|^input_|^wrapped_|reduce|broadcast|ynn"),
)
OTHER = "other"
_CATEGORY_RES = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in CATEGORIES)

# The model part an HLO instruction's op_name (its JAX source) belongs to; the first match wins.
COMPONENTS = (
  ("UNet", r"UNet2DConditionModel"),
  ("VAE encoder", r"AutoencoderKL"),
  ("NeRF field", r"Scene\.field|/nerf/|/bg/"),
  ("RNG", r"threefry|_uniform|_normal|randint|random_bits"),
)
_COMPONENT_RES = tuple((name, re.compile(pattern)) for name, pattern in COMPONENTS)
# Scope names that say nothing about where in the model an op is.
_NOISE = {"while", "body", "cond", "closed_call", "AutoencoderKL.encode_moments", "encoder", "nerf"}


def categorise(name: str) -> str:
  """The category (CATEGORIES' first match, else 'other') of a kernel or HLO instruction name."""
  for category, pattern in _CATEGORY_RES:
    if pattern.search(name):
      return category
  return OTHER


def component(op_name: str) -> str:
  """The model part (COMPONENTS) an op_name is from, with ' backward' for the gradient's ops (JAX's transpose
  of a jvp); 'other' (the render's compositing, the loss, the optimiser) when none matches, '' for no op_name."""
  if not op_name:
    return ""
  part = next((name for name, pattern in _COMPONENT_RES if pattern.search(op_name)), OTHER)
  return part + (" backward" if "transpose(" in op_name else "")


def source_label(op_name: str) -> str:
  """A short readable name of the JAX op behind an op_name: its component, the module scope (wrappers such as
  jvp(...) dropped, long paths cut in the middle) and the primitive, e.g.
  'UNet backward down_blocks_0/attentions_0/.../attn2 dot_general'; '(no op_name)' when there is none."""
  if not op_name:
    return "(no op_name)"
  tokens = [t for t in op_name.split("/") if t and "(" not in t and t not in _NOISE]
  primitive, scope = (tokens[-1], tokens[:-1]) if tokens else ("", [])
  if len(scope) > 3:
    scope = scope[:2] + ["..."] + scope[-1:]
  return " ".join(filter(None, [component(op_name), "/".join(scope), primitive]))


def find_trace(directory: str) -> str:
  """The newest perfetto_trace.json.gz under directory (else a *.trace.json.gz, the same events); raises
  FileNotFoundError when the profiler wrote neither."""
  for pattern in ("perfetto_trace.json.gz", "*.trace.json.gz"):
    found = glob.glob(os.path.join(directory, "**", pattern), recursive=True)
    if found:
      return max(found, key=os.path.getmtime)
  raise FileNotFoundError(f"no perfetto_trace.json.gz or *.trace.json.gz under {directory}")


def load_trace(path: str) -> dict:
  """A Chrome/Perfetto JSON trace, gzipped or not."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    return json.load(f)


def device_events(trace: dict) -> tuple[str, list[dict]]:
  """(kind, events): 'gpu' with the complete ('X') events of GPU streams when the trace has any, else 'cpu' with
  the XLA instructions the CPU ran (module docstring), else ('none', []). Each event: name, ts and dur (us),
  thread (pid, tid), hlo_op, hlo_module and tf_op ('' when the trace does not say)."""
  processes, threads = {}, {}
  for e in trace.get("traceEvents", []):
    if e.get("ph") == "M" and e.get("name") == "process_name":
      processes[e.get("pid")] = str(e.get("args", {}).get("name", ""))
    elif e.get("ph") == "M" and e.get("name") == "thread_name":
      threads[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name", ""))
  gpu, cpu = [], []
  for e in trace.get("traceEvents", []):
    if e.get("ph") != "X" or "dur" not in e:
      continue
    args = e.get("args") or {}
    process = processes.get(e.get("pid"), "")
    event = dict(
      name=str(e.get("name", "")),
      ts=float(e["ts"]),
      dur=float(e["dur"]),
      thread=(e.get("pid"), e.get("tid")),
      hlo_op=str(args.get("hlo_op", "")),
      hlo_module=str(args.get("hlo_module", "")),
      tf_op=str(args.get("tf_op", "")),
    )
    if process.startswith("/device:GPU") and threads.get((e.get("pid"), e.get("tid")), "").startswith("Stream"):
      gpu.append(event)
    elif process.startswith("/host:CPU") and event["hlo_op"] and not event["name"].startswith("end: "):
      cpu.append(event)
  if gpu:
    return "gpu", gpu
  return ("cpu", cpu) if cpu else ("none", [])


def self_times(events: list[dict]) -> list[float]:
  """Each event's duration less that of the events nested in it on its own thread (a CPU control-flow
  instruction's event encloses its body's); GPU kernels do not nest, so theirs are their durations."""
  out = [e["dur"] for e in events]
  by_thread = collections.defaultdict(list)
  for i, e in enumerate(events):
    by_thread[e["thread"]].append(i)
  for indices in by_thread.values():
    indices.sort(key=lambda i: (events[i]["ts"], -events[i]["dur"]))
    stack = []  # Open events: (index, end).
    for i in indices:
      start, end = events[i]["ts"], events[i]["ts"] + events[i]["dur"]
      while stack and stack[-1][1] <= start:
        stack.pop()
      if stack:  # Nested in the innermost open event.
        out[stack[-1][0]] -= min(end, stack[-1][1]) - start
      stack.append((i, end))
  return [max(t, 0.0) for t in out]


def busy_us(events: list[dict]) -> float:
  """The time at least one event runs: the length of the union of their intervals."""
  total, reach = 0.0, None
  for start, end in sorted((e["ts"], e["ts"] + e["dur"]) for e in events):
    if reach is None or start > reach:
      total += end - start
      reach = end
    elif end > reach:
      total += end - reach
      reach = end
  return total


def module_name(hlo_text: str) -> str:
  """The HloModule's name from a compiled program's text (e.g. 'jit_single'), '' if none."""
  m = re.match(r"\s*HloModule\s+([^\s,]+)", hlo_text or "")
  return m.group(1) if m else ""


def op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the JAX op it came from (its metadata op_name), for the instructions that have one."""
  return {i["name"]: i["op_name"] for i in hlo_memory.instructions(hlo_text or "") if i["op_name"]}


def kernel_op_names(hlo_text: str) -> dict[str, str]:
  """A kernel's name -> the JAX op of the instruction it was emitted for. XLA's GPU backend names a fusion's kernel
  after the instruction, with '.' and '-' as '_' ('loop_multiply_fusion.52' -> 'loop_multiply_fusion_52'). Inside a
  command buffer (a CUDA graph), the trace's hlo_op names the command buffer, not the fusion; the kernel's name
  still says which fusion it is."""
  return {re.sub(r"[.\-]", "_", name): op for name, op in op_names(hlo_text).items()}


def summarise(trace: dict, hlo_text: str, steps: int, wall_ms: float, top: int = 40) -> dict:
  """The device time of `steps` runs of the program compiled as hlo_text, from its trace; wall_ms is the
  caller's wall time for those steps. All times in ms per step, shares of the summed kernel time.

  Returns dict(trace: 'gpu'|'cpu'|'none', module, steps, wall_ms, kernel_ms (the per-kernel times' sum), busy_ms
  (their union), idle_ms (wall - busy), busy_share (busy / wall), kernels (the `top` longest: name, category, ms,
  count, share, hlo_op and source of the longest-running instruction behind it), other_kernels (what `top` left
  out: n, ms), categories ({category: ms, count, share}, every kernel in exactly one), components ({model part:
  ms, share}), sources (the `top` longest JAX ops: source, ms, share), hlo_op_share (the share of kernel time
  whose event names its HLO instruction), other_modules_ms (device time of other programs in the trace))."""
  kind, events = device_events(trace)
  module = module_name(hlo_text)
  other_modules = collections.Counter()
  if module and any(e["hlo_module"] == module for e in events):
    for e in events:
      if e["hlo_module"] and e["hlo_module"] != module:
        other_modules[e["hlo_module"]] += e["dur"]
    events = [e for e in events if not e["hlo_module"] or e["hlo_module"] == module]
  sources, by_kernel = op_names(hlo_text), kernel_op_names(hlo_text)
  times = self_times(events)
  per_step = lambda us: us / 1e3 / steps  # noqa: E731
  kernels = collections.defaultdict(lambda: dict(us=0.0, count=0, ops=collections.Counter()))
  categories = {name: dict(us=0.0, count=0) for name, _ in CATEGORIES + ((OTHER, ""),)}
  components, by_source = collections.Counter(), collections.Counter()
  named = 0.0
  for e, t in zip(events, times):
    k = kernels[e["name"]]
    k["us"] += t
    k["count"] += 1
    k["ops"][e["hlo_op"]] += t
    c = categories[categorise(e["name"])]
    c["us"] += t
    c["count"] += 1
    op_name = sources.get(e["hlo_op"], "") or by_kernel.get(e["name"], "") or e["tf_op"]
    named += t if e["hlo_op"] else 0.0
    components[component(op_name) or "(unknown)"] += t
    by_source[source_label(op_name)] += t
  kernel_us = sum(times)
  share = lambda us: round(us / kernel_us, 4) if kernel_us else 0.0  # noqa: E731
  ranked = sorted(kernels.items(), key=lambda kv: -kv[1]["us"])
  rows = []
  for name, k in ranked[:top]:
    hlo_op = k["ops"].most_common(1)[0][0]
    rows.append(
      dict(
        name=name,
        category=categorise(name),
        ms=round(per_step(k["us"]), 4),
        count=round(k["count"] / steps, 2),
        share=share(k["us"]),
        hlo_op=hlo_op,
        source=source_label(sources.get(hlo_op, "") or by_kernel.get(name, "")),
      )
    )
  rest = ranked[top:]
  busy = busy_us(events)
  return dict(
    trace=kind,
    module=module,
    steps=steps,
    wall_ms=round(wall_ms / steps, 3),
    kernel_ms=round(per_step(kernel_us), 3),
    busy_ms=round(per_step(busy), 3),
    idle_ms=round(wall_ms / steps - per_step(busy), 3),
    busy_share=round(per_step(busy) / (wall_ms / steps), 4) if wall_ms else None,
    kernels=rows,
    other_kernels=dict(n=len(rest), ms=round(per_step(sum(k["us"] for _, k in rest)), 4)),
    categories={
      name: dict(ms=round(per_step(c["us"]), 4), count=round(c["count"] / steps, 2), share=share(c["us"]))
      for name, c in categories.items()
    },
    components={name: dict(ms=round(per_step(us), 4), share=share(us)) for name, us in components.most_common()},
    sources=[dict(source=s, ms=round(per_step(us), 4), share=share(us)) for s, us in by_source.most_common(top)],
    hlo_op_share=share(named),
    other_modules_ms={name: round(per_step(us), 4) for name, us in other_modules.items()},
  )


def difference(a: dict, b: dict) -> dict:
  """a - b of two summaries (ms per step): wall, kernel and busy time, each category and each component."""
  keys = ("wall_ms", "kernel_ms", "busy_ms", "idle_ms")
  names = list(a["categories"]) + [n for n in b["categories"] if n not in a["categories"]]
  parts = list(a["components"]) + [n for n in b["components"] if n not in a["components"]]
  get = lambda d, n: d.get(n, {}).get("ms", 0.0)  # noqa: E731
  return dict(
    {k: round(a[k] - b[k], 3) for k in keys},
    categories={n: round(get(a["categories"], n) - get(b["categories"], n), 4) for n in names},
    components={n: round(get(a["components"], n) - get(b["components"], n), 4) for n in parts},
  )


def table(profile: dict, rows: int = 25) -> str:
  """A readable text table of a summary: totals, the categories, the components and the longest kernels."""
  p = profile
  lines = [
    f"device trace: {p['trace']}, module {p['module'] or '?'}, {p['steps']} steps; per step: wall {p['wall_ms']:.3f} ms, "
    f"device busy {p['busy_ms']:.3f} ms ({100 * (p['busy_share'] or 0):.1f}%), kernels summed {p['kernel_ms']:.3f} ms, "
    f"idle/launch {p['idle_ms']:.3f} ms"
    + (f" ({p['idle_ms_unprofiled']:.3f} ms against the unprofiled median)" if "idle_ms_unprofiled" in p else "")
    + f"; HLO op named for {100 * p['hlo_op_share']:.1f}% of kernel time",
    f"{'category':<22}{'ms/step':>10}{'count':>9}{'share':>8}",
  ]
  for name, c in sorted(p["categories"].items(), key=lambda kv: -kv[1]["ms"]):
    lines.append(f"{name:<22}{c['ms']:>10.3f}{c['count']:>9.1f}{100 * c['share']:>7.1f}%")
  lines.append(f"{'model part':<22}{'ms/step':>10}{'share':>17}")
  for name, c in p["components"].items():
    lines.append(f"{name:<22}{c['ms']:>10.3f}{100 * c['share']:>16.1f}%")
  lines.append(f"{'ms/step':>9}{'count':>7}{'share':>7}  {'category':<20}kernel  <-  JAX op")
  for k in p["kernels"][:rows]:
    name = k["name"] if len(k["name"]) <= 60 else k["name"][:57] + "..."
    lines.append(
      f"{k['ms']:>9.3f}{k['count']:>7.1f}{100 * k['share']:>6.1f}%  {k['category']:<20}{name}  <-  {k['source']}"
    )
  lines.append(f"{'ms/step':>9}{'share':>7}  JAX op (all its kernels)")
  for s in p["sources"][:rows]:
    lines.append(f"{s['ms']:>9.3f}{100 * s['share']:>6.1f}%  {s['source']}")
  return "\n".join(lines)


def diff_table(diff: dict, label: str) -> str:
  """The per-category and per-component difference of `difference` as text, titled `label`."""
  lines = [
    f"{label} (ms per step): wall {diff['wall_ms']:+.3f}, busy {diff['busy_ms']:+.3f}, idle {diff['idle_ms']:+.3f}"
  ]
  for name, ms in sorted(diff["categories"].items(), key=lambda kv: -abs(kv[1])):
    lines.append(f"  {name:<22}{ms:>+10.3f}")
  for name, ms in sorted(diff["components"].items(), key=lambda kv: -abs(kv[1])):
    lines.append(f"  {name:<22}{ms:>+10.3f}  (model part)")
  return "\n".join(lines)
