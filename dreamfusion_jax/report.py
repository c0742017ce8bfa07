"""DIR/report.html: one page that shows a run, written at the end of `main` and refreshed by `evaluate`.

It reads only what the run left in DIR (config.json, run.json, metrics.jsonl, evaluation.json,
validation/*.png, seed_K/*), so it can be rewritten at any time, and it never fails the run: a file that
is missing is named on the page, and an error while writing is a warning in the log.

The page works offline from file://, with nothing fetched from the network:
  - images and the turntable video are relative links to the files beside the page (browsers show media
    from file:// URLs);
  - the 3D view is Google's model-viewer (assets/viewer/, pinned, Apache-2.0), inlined as a classic script;
  - each mesh.glb is inlined as a data: URI, because model-viewer fetches its model, and Chromium refuses
    fetches of file:// URLs (origin 'null');
  - the plots are inline SVG, drawn here.
A small script sets <body data-status> to 'ok' once every image, video and 3D view has loaded, or to
'failed: NAMES' (tests/test_report.py reads it in headless Chromium), and marks what failed on the page.
"""

import base64
import html
import json
import math
import os
import time
from typing import Any, Optional

import numpy as np
from absl import logging

from dreamfusion_jax import files

NAME = "report.html"
RUN_INFO = "run.json"  # Device and timing of each invocation of main (record_invocation).
VIEWER = os.path.join(os.path.dirname(__file__), "assets", "viewer", "model-viewer-umd.min.js")
VIEWER_VERSION = "@google/model-viewer 4.4.0"
# A mesh.glb larger than this is linked, not inlined (the page would take long to open); model-viewer can't
# show a linked file from file://, so the page says so.
MAX_INLINE_GLB_BYTES = 64 << 20

# The config fields the page's summary shows (the whole config is below it, folded).
KEY_FIELDS = (
  "prompt",
  "num_steps",
  "num_seeds",
  "seed",
  "batch_size",
  "guidance.model",
  "guidance.sd.model",
  "guidance.scale",
  "guidance.t_min",
  "guidance.t_max",
  "guidance.t_max_final",
  "guidance.t_anneal_steps",
  "render.image_size",
  "field.density_activation",
  "optim.lr",
  "optim.net_lr",
  "optim.schedule",
)

# metrics.jsonl's terms, in the order plotted, with what each is; others that appear are plotted after them.
METRIC_NOTES = {
  "loss": "The total loss. Its SDS part follows the noise drawn at each step, so it is not a progress measure.",
  "sds_residual_norm": "|w(t)(eps_hat - eps)|: the size of the SDS update.",
  "grad_norm": "The norm of the parameters' gradient.",
  "opacity": "The renders' mean opacity.",
  "orientation": "The orientation penalty: normals facing away from the camera.",
  "entropy": "The entropy of the renders' opacity (low: crisp masks).",
  "distortion": "The distortion term (mip-NeRF 360): spread of the weights along each ray.",
  "eikonal": "The eikonal term: mean (|grad s| - 1)^2 of the signed distance.",
  "smoothness": "The normals' change over a small step along the surface.",
  "textureless": "The share of textureless renders in the step's batch.",
  "steps_per_sec": "Training speed between records (the first includes compiling).",
}

# Evaluation table: (evaluation.json key, column heading, digits after the point).
EVAL_COLUMNS = (
  ("iou", "IoU", 3),
  ("volume_ratio", "volume ratio", 2),
  ("color_error", "colour error", 3),
  ("color_r_precision", "colour R-Precision", 2),
  ("geo_r_precision", "geometry R-Precision", 2),
  ("normal_error_deg", "normal error (deg)", 1),
  ("fog", "fog", 3),
  ("chamfer", "chamfer", 4),
  ("mesh_components", "mesh components", 0),
  ("janus", "Janus", None),
)

SEED_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def write_report(workdir: str) -> Optional[str]:
  """Writes workdir/report.html (atomically) from what the run left there; returns its path, or None.

  Never raises: a failure is logged as a warning, so that the report can't fail a finished run.
  """
  path = os.path.join(workdir, NAME)
  try:
    files.write_bytes(path, page(workdir).encode())
  except Exception as e:  # Any: the report is a convenience, and the run's results are already written.
    logging.warning("Could not write %s: %s: %s", path, type(e).__name__, e)
    return None
  logging.info("Wrote %s.", path)
  return path


def record_invocation(workdir: str, info: dict) -> None:
  """Appends one invocation of main (device, steps, seconds, steps/s) to workdir/run.json (atomically)."""
  path = os.path.join(workdir, RUN_INFO)
  invocations = _read_json(path, {}).get("invocations", [])
  invocations = invocations if isinstance(invocations, list) else []  # A broken file is started afresh.
  files.write_json(path, {"invocations": invocations + [info]})


# ----------------------------------------------------------------------------- reading the run


def _read_json(path: str, default: Any) -> Any:
  """The JSON object ({...}) in path, or default when the file is missing, broken or holds something else."""
  try:
    with open(path) as f:
      value = json.load(f)
  except (OSError, ValueError):
    return default
  return value if isinstance(value, dict) else default


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl's records, in order, with a resumed run's repeated steps kept once (the latest)."""
  by_step = {}
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue  # A line cut by a crash.
        if isinstance(record, dict) and isinstance(record.get("step"), int):
          by_step[record["step"]] = record
  except OSError:
    return []
  return [by_step[s] for s in sorted(by_step)]


def _field(config: dict, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return value


def _seed_dirs(workdir: str, config: dict) -> list[str]:
  """seed_K of the config's seeds, else of the folders found."""
  if isinstance(config.get("num_seeds"), int) and isinstance(config.get("seed"), int):
    return [f"seed_{config['seed'] + k}" for k in range(config["num_seeds"])]
  found = [d for d in os.listdir(workdir) if d.startswith("seed_") and os.path.isdir(os.path.join(workdir, d))]
  return sorted(found, key=lambda d: int(d[5:]) if d[5:].isdigit() else 0)


# ----------------------------------------------------------------------------- the page


def page(workdir: str) -> str:
  """report.html's text."""
  config = _read_json(os.path.join(workdir, "config.json"), {})
  records = read_metrics(workdir)
  evaluation = _read_json(os.path.join(workdir, "evaluation.json"), None)
  invocations = _read_json(os.path.join(workdir, RUN_INFO), {}).get("invocations")
  invocations = [i for i in invocations if isinstance(i, dict)] if isinstance(invocations, list) else []
  caption = config.get("prompt") or "(no config.json: the caption is unknown)"
  seeds = _seed_dirs(workdir, config)
  body = [
    f"<h1>{_e(caption)}</h1>",
    f'<p class="note">{_e(os.path.abspath(workdir))} &middot; page written {_e(time.strftime("%Y-%m-%d %H:%M"))}'
    f" &middot; offline: everything is in this folder</p>",
    _summary(config, records, invocations),
    _evaluation(evaluation),
    *[_seed_section(workdir, seed) for seed in seeds],
    _plots(config, records),
    _validation(workdir),
    _full_config(config),
    f'<p class="note">3D view: {VIEWER_VERSION} (Apache-2.0), inlined; dreamfusion_jax/assets/viewer/.</p>',
  ]
  return TEMPLATE.format(
    title=_e(caption), style=STYLE, viewer=_viewer_script(), body="\n".join(body), status_script=STATUS_SCRIPT
  )


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _missing(what: str) -> str:
  return f'<p class="missing">{_e(what)}</p>'


def _summary(config: dict, records: list[dict], invocations: list[dict]) -> str:
  rows = []
  for name in KEY_FIELDS:
    value = _field(config, name)
    if value is None or (name == "guidance.sd.model" and _field(config, "guidance.model") != "stable_diffusion"):
      continue
    rows.append((name, value))
  last = records[-1]["step"] if records else None
  rows.append(("steps reached", f"{last} of {config.get('num_steps', '?')}" if last is not None else "no metrics"))
  for i, inv in enumerate(invocations):
    label = "run" if len(invocations) == 1 else f"run {i + 1}"
    rows.append((label, _invocation_text(inv)))
  if not invocations:
    rows.append(("device and time", "unknown (no run.json: written at the end of main)"))
  cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
  return f'<h2>Run</h2>\n<table class="kv">{cells}</table>'


def _invocation_text(inv: dict) -> str:
  parts = [f"{inv.get('date', '?')} on {inv.get('num_devices', '?')} x {inv.get('device', '?')}"]
  steps = inv.get("steps")
  if steps and steps[1] > steps[0]:
    parts.append(f"steps {steps[0]}-{steps[1]} in {_seconds(inv.get('train_seconds'))}")
    if inv.get("compile_seconds") is not None:
      parts.append(f"the first (compiling) {_seconds(inv['compile_seconds'])}")
    if inv.get("steps_per_sec"):
      parts.append(f"{inv['steps_per_sec']:.2f} steps/s after it")
  else:
    parts.append("no steps trained (the checkpoint was finished)")
  if inv.get("export_seconds") is not None:
    parts.append(f"export {_seconds(inv['export_seconds'])}")
  return ", ".join(parts)


def _seconds(s: Optional[float]) -> str:
  if s is None:
    return "?"
  return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _evaluation(evaluation: Optional[dict]) -> str:
  if not isinstance(evaluation, dict) or "per_seed" not in evaluation:
    return "<h2>Evaluation</h2>\n" + _missing(
      "Not evaluated: python -m dreamfusion_jax.evaluate --workdir=DIR (Shapes captions) writes "
      "evaluation.json and refreshes this page."
    )
  head = "".join(f"<th>{_e(title)}</th>" for _, title, _ in EVAL_COLUMNS)
  rows = [(seed, m) for seed, m in evaluation["per_seed"].items()]
  mean = evaluation.get("mean") or {}
  if len(rows) > 1 or mean:
    rows.append(("mean", {**mean, "janus": mean.get("janus_rate")}))
  body = "".join(
    f"<tr><th>{_e(seed)}</th>{''.join(f'<td>{_e(_number(m.get(k), d))}</td>' for k, _, d in EVAL_COLUMNS)}</tr>"
    for seed, m in rows
  )
  finished = "" if evaluation.get("finished", True) else " (an unfinished run)"
  return (
    f"<h2>Evaluation</h2>\n<p>{_e(evaluation.get('caption', ''))} at step {_e(evaluation.get('step', '?'))}"
    f"{finished}; the metrics are defined in dreamfusion_jax/shapes/evaluate.py. Empty: not measured.</p>\n"
    f'<table class="grid"><tr><th>seed</th>{head}</tr>{body}</table>'
  )


def _number(value: Any, digits: Optional[int]) -> str:
  if value is None:
    return ""
  if isinstance(value, bool) or digits is None:
    return str(value)
  if isinstance(value, (int, float)) and math.isfinite(value):
    return f"{value:.{digits}f}"
  return str(value)


def _seed_section(workdir: str, seed: str) -> str:
  directory = os.path.join(workdir, seed)
  parts = [f"<h2>{_e(seed.replace('_', ' '))}</h2>", '<div class="row">']
  video = os.path.join(directory, "turntable.mp4")
  if os.path.isfile(video):
    parts.append(
      f'<figure><video data-check="{seed}/turntable.mp4" src="{seed}/turntable.mp4" autoplay muted loop controls '
      f'playsinline preload="auto"></video><figcaption>Turntable, 360 degrees: colour, textureless shading and '
      f"normals.</figcaption></figure>"
    )
  else:
    parts.append(_missing(f"{seed}/turntable.mp4 is missing (the export did not run, or failed)."))
  parts.append(_mesh_view(directory, seed))
  parts.append("</div>")
  views = os.path.join(directory, "views.png")
  if os.path.isfile(views):
    parts.append(
      f'<figure><img data-check="{seed}/views.png" src="{seed}/views.png" alt="{seed} views"><figcaption>Eight '
      f"turntable views; rows: colour, textureless, normals. For a Shapes caption the true object's rows are above "
      f"the result's, from the same cameras.</figcaption></figure>"
    )
  else:
    parts.append(_missing(f"{seed}/views.png is missing."))
  return "\n".join(parts)


def _mesh_view(directory: str, seed: str) -> str:
  path = os.path.join(directory, "mesh.glb")
  if not os.path.isfile(path):
    return _missing(f"{seed}/mesh.glb is missing (an empty surface exports no mesh; the log says why).")
  size = os.path.getsize(path)
  if size > MAX_INLINE_GLB_BYTES:
    return _missing(
      f"{seed}/mesh.glb is {size / 2**20:.0f} MB, too large to inline in this page; open it in a glTF viewer "
      "(e.g. Blender)."
    )
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode()
  return (
    f'<figure><model-viewer data-check="{seed}/mesh.glb" src="data:model/gltf-binary;base64,{data}" camera-controls '
    f'loading="eager" interaction-prompt="none" shadow-intensity="0.6" exposure="1" alt="{seed} mesh"></model-viewer>'
    f"<figcaption>{seed}/mesh.glb ({size / 1024:.0f} KB): drag to turn, scroll to zoom.</figcaption></figure>"
  )


def _viewer_script() -> str:
  """The vendored model-viewer, ready to inline: its source map comment dropped (there is no map beside the
  page), and any '</script' escaped so that the HTML parser can't end the element early."""
  with open(VIEWER, encoding="utf-8") as f:
    source = f.read()
  source = "\n".join(line for line in source.splitlines() if not line.startswith("//# sourceMappingURL="))
  return source.replace("</script", "<\\/script")


def _validation(workdir: str) -> str:
  directory = os.path.join(workdir, "validation")
  names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
  sheets = [n for n in names if n.endswith(".png") and n.startswith("step_")]
  if not sheets:
    return "<h2>Validation</h2>\n" + _missing("No validation sheets (val_every=0, or the run wrote none yet).")
  parts = ["<h2>Validation</h2>"]
  for name in sheets:
    stem = name[:-4]
    step = int(stem.split("_")[1]) if stem.split("_")[1].isdigit() else stem
    if stem.endswith("_guidance"):
      text = (
        f"Step {step}, guidance preview; a row per seed: the front view as the prior sees it, that view noised to "
        "guidance.preview_t, the prior's one-step denoised estimate at guidance.scale (what SDS pulls towards), and "
        "the prior's own sample of the caption at guidance.preview_sample_scale (columns labelled on the image)."
      )
    else:
      text = (
        f"Step {step}; a row per seed (for a Shapes caption, the true object's row on top): colour and textureless "
        "renders from the front, side, back and above."
      )
    parts.append(
      f'<figure><img class="pixelated" data-check="validation/{name}" src="validation/{name}" alt="{_e(text)}">'
      f"<figcaption>{_e(text)}</figcaption></figure>"
    )
  return "\n".join(parts)


def _full_config(config: dict) -> str:
  if not config:
    return "<h2>Config</h2>\n" + _missing("config.json is missing.")
  return (
    "<details><summary>The whole config (config.json)</summary>"
    f"<pre>{_e(json.dumps(config, indent=2, sort_keys=True))}</pre></details>"
  )


# ----------------------------------------------------------------------------- plots


def _plots(config: dict, records: list[dict]) -> str:
  parts = ["<h2>Training curves</h2>"]
  schedule = timestep_schedule(config)
  if schedule is not None:
    steps, lo, hi = schedule
    parts.append(
      _figure(
        svg_plot({"t max": (steps, hi), "t min": (steps, lo)}, "diffusion time t", band=True, ylim=(0.0, 1.0)),
        "The diffusion-time schedule (from the config): each step draws t uniformly in the shaded range, as a "
        "fraction of the noise schedule.",
      )
    )
  if not records:
    parts.append(_missing("metrics.jsonl is missing or empty."))
    return "\n".join(parts)
  names = [k for k in records[0] if k != "step" and "/" not in k]
  for r in records[1:]:
    names += [k for k in r if k != "step" and "/" not in k and k not in names]
  names = [k for k in METRIC_NOTES if k in names] + [k for k in names if k not in METRIC_NOTES]
  if any("/" in k for r in records for k in r):
    seeds = sorted({k.split("/")[0] for r in records for k in r if "/" in k}, key=lambda d: int(d[5:] or 0))
    if len(seeds) > 1:
      keys = " ".join(
        f'<span style="color:{SEED_COLOURS[i % len(SEED_COLOURS)]}">&#9644; {_e(seed.replace("_", " "))}</span>'
        for i, seed in enumerate(seeds)
      )
      parts.append(f'<p class="note">Each plot: {keys} <span>&#9644; the mean over seeds</span> (black).</p>')
  parts.append('<div class="plots">')
  for name in names:
    steps = np.array([r["step"] for r in records if _finite(r.get(name))], float)
    series = {"mean over seeds": (steps, np.array([r[name] for r in records if _finite(r.get(name))], float))}
    seed_keys = sorted({k for r in records for k in r if k.endswith("/" + name)})
    if len(seed_keys) > 1:
      series = {
        k.split("/")[0].replace("_", " "): (
          np.array([r["step"] for r in records if _finite(r.get(k))], float),
          np.array([r[k] for r in records if _finite(r.get(k))], float),
        )
        for k in seed_keys
      } | series
    parts.append(_figure(svg_plot(series, name), METRIC_NOTES.get(name, f"{name} from metrics.jsonl.")))
  parts.append("</div>")
  return "\n".join(parts)


def _finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value)


def _figure(svg: str, caption: str) -> str:
  return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def timestep_schedule(config: dict) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(steps, t_lo, t_hi) over the run, as fractions of the noise schedule (sds.annealed_timestep_range), or
  None when the config lacks the fields."""
  g = config.get("guidance") or {}
  keys = ("t_min", "t_max", "t_max_final", "t_anneal_steps", "num_train_timesteps")
  if not all(isinstance(g.get(k), (int, float)) for k in keys) or not isinstance(config.get("num_steps"), int):
    return None
  from dreamfusion_jax import sds  # Here: the page's other parts need no JAX.

  steps = np.unique(np.linspace(0, config["num_steps"], 101).round())
  lo, hi = sds.annealed_timestep_range(
    g["t_min"], g["t_max"], g["t_max_final"], g["t_anneal_steps"], g["num_train_timesteps"], steps
  )
  total = g["num_train_timesteps"]
  return steps, np.full_like(steps, lo / total), np.broadcast_to(np.asarray(hi, float) / total, steps.shape)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
  """About `count` round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
  if not hi > lo:
    return [lo]
  raw = (hi - lo) / max(count - 1, 1)
  power = 10 ** math.floor(math.log10(raw))
  step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
  first = math.ceil(lo / step - 1e-9) * step
  return [first + i * step for i in range(int(math.floor((hi - first) / step + 1e-9)) + 1)]


def _tick_text(v: float, log: bool) -> str:
  v = 10**v if log else v
  if v == 0:
    return "0"
  if abs(v) >= 1e4 or abs(v) < 1e-2:
    return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
  return np.format_float_positional(v, precision=3, fractional=False, trim="-")


def svg_plot(
  series: dict[str, tuple[np.ndarray, np.ndarray]],
  title: str,
  width: int = 380,
  height: int = 210,
  band: bool = False,
  ylim: Optional[tuple[float, float]] = None,
) -> str:
  """An inline SVG line plot of series {label: (x [N], y [N])}, the last drawn black and thick (the mean) unless
  band. A y range over more than two decades of positive values is drawn on a log scale. band: the area
  between the first two series is filled; ylim: a fixed y range (linear scale)."""
  series = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items() if len(x)}
  if not series:
    return f'<svg width="{width}" height="{height}"><text x="10" y="20">{_e(title)}: no values</text></svg>'
  ys = np.concatenate([y for _, y in series.values()])
  xs = np.concatenate([x for x, _ in series.values()])
  log = ylim is None and bool(np.all(ys > 0) and ys.max() / ys.min() > 100)
  if log:
    series = {k: (x, np.log10(y)) for k, (x, y) in series.items()}
    ys = np.log10(ys)
  x0, x1 = float(xs.min()), float(xs.max())
  y0, y1 = (float(ys.min()), float(ys.max())) if ylim is None else ylim
  if x1 == x0:
    x0, x1 = x0 - 1, x1 + 1
  if y1 == y0:
    pad = abs(y0) * 0.1 or 1.0
    y0, y1 = y0 - pad, y1 + pad
  yticks = nice_ticks(y0, y1, 4) if not log else list(range(math.ceil(y0), math.floor(y1) + 1)) or [y0, y1]
  y0, y1 = min(y0, yticks[0]), max(y1, yticks[-1])
  left, right, top, bottom = 52, 10, 22, 30
  pw, ph = width - left - right, height - top - bottom
  sx = lambda x: left + (x - x0) / (x1 - x0) * pw
  sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * ph
  out = [
    f'<svg class="plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
    f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
    f'<text x="{left}" y="14" class="title">{_e(title)}{" (log scale)" if log else ""}</text>',
    f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>',
  ]
  for t in yticks:
    y = sy(t)
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="gridline"/>')
    out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" class="ytick">{_tick_text(t, log)}</text>')
  for t in nice_ticks(x0, x1, 5):
    x = sx(t)
    out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" class="xtick">{_tick_text(t, False)}</text>')
  out.append(f'<text x="{left + pw}" y="{height - 2}" class="xlabel">step</text>')
  items = list(series.items())
  if band and len(items) >= 2:
    (xa, ya), (xb, yb) = items[0][1], items[1][1]
    points = [(sx(x), sy(y)) for x, y in zip(xa, ya)] + [(sx(x), sy(y)) for x, y in zip(xb[::-1], yb[::-1])]
    out.append(f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in points)}" class="band"/>')
  for i, (label, (x, y)) in enumerate(items):
    mean = not band and i == len(items) - 1
    colour = "#000" if mean else SEED_COLOURS[i % len(SEED_COLOURS)]
    stroke = 2 if mean else 1.2
    points = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x, y))
    if len(x) == 1:
      out.append(f'<circle cx="{sx(x[0]):.1f}" cy="{sy(y[0]):.1f}" r="3" fill="{colour}"/>')
    else:
      out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="{stroke}"/>')
  out.append("</svg>")
  return "".join(out)


# ----------------------------------------------------------------------------- the page's fixed parts

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1250px; padding: 0 1em; color: #222; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; margin-top: 1.6em; }
.note { color: #666; font-size: 0.9em; }
.missing { color: #a33; background: #fbeeee; padding: 0.3em 0.6em; }
table { border-collapse: collapse; }
.kv th { text-align: left; font-weight: normal; color: #555; padding: 0.1em 1.2em 0.1em 0; vertical-align: top; }
.grid th, .grid td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
figure { margin: 0.5em 0; display: inline-block; vertical-align: top; max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; max-width: 600px; }
figure img, figure video { max-width: 100%; border: 1px solid #ddd; }
img.pixelated { image-rendering: pixelated; min-width: min(600px, 100%); }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
video { height: 240px; }
model-viewer { width: 360px; height: 240px; background: #f4f4f4; border: 1px solid #ddd; }
.plots figure { width: 390px; }
.plots figcaption { max-width: 380px; }
svg.plot { font: 11px sans-serif; }
svg.plot .title { font-weight: bold; font-size: 12px; }
svg.plot .frame { fill: none; stroke: #999; }
svg.plot .gridline { stroke: #e4e4e4; }
svg.plot .ytick { text-anchor: end; fill: #555; }
svg.plot .xtick { text-anchor: middle; fill: #555; }
svg.plot .xlabel { text-anchor: end; fill: #555; }
svg.plot .legend { text-anchor: end; }
svg.plot .band { fill: #9ecae1; opacity: 0.6; }
.failed { outline: 3px solid #c33; }
pre { background: #f6f6f6; padding: 0.6em; font-size: 0.8em; overflow: auto; }
"""

# Sets body[data-status] once every [data-check] element has loaded ('ok') or failed ('failed: NAMES'), and
# marks a failed element on the page.
STATUS_SCRIPT = """
(function () {
  const items = Array.from(document.querySelectorAll('[data-check]'));
  let pending = items.length;
  const failed = [];
  function done(el, ok) {
    if (el.dataset.checked) return;
    el.dataset.checked = ok ? 'ok' : 'failed';
    if (!ok) {
      failed.push(el.dataset.check);
      el.classList.add('failed');
      const note = document.createElement('p');
      note.className = 'missing';
      note.textContent = 'Could not load ' + el.dataset.check + '.';
      el.insertAdjacentElement('afterend', note);
    }
    pending -= 1;
    if (pending === 0) document.body.dataset.status = failed.length ? 'failed: ' + failed.join(', ') : 'ok';
  }
  if (!items.length) document.body.dataset.status = 'ok';
  for (const el of items) {
    const tag = el.tagName.toLowerCase();
    if (tag === 'img') {
      if (el.complete) done(el, el.naturalWidth > 0);
      el.addEventListener('load', () => done(el, el.naturalWidth > 0));
      el.addEventListener('error', () => done(el, false));
    } else if (tag === 'video') {
      if (el.readyState >= 2) done(el, true);
      el.addEventListener('loadeddata', () => done(el, true));
      el.addEventListener('error', () => done(el, false));
    } else {
      if (el.loaded) done(el, true);
      el.addEventListener('load', () => done(el, true));
      el.addEventListener('error', () => done(el, false));
    }
  }
})();
"""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
<script>{viewer}</script>
</head>
<body data-status="loading">
{body}
<script>{status_script}</script>
</body>
</html>
"""
