"""The Shapes benchmark sweep: many captions x seeds of DreamFusion in ONE multi-seed program, each scored.

  python benchmarks/shapes_sweep.py --config=configs/default.py --captions=all --seeds=2 \
      --out=/tmp/shapes_sweep [--no_view_prompts] [--config.num_steps=1500 ...]

Every (caption, seed) pair is one seed of a multi-seed run (train.Trainer with per-seed text
embeddings): the whole sweep is one compiled step vmapped over all pairs (sharded over the
devices, like --config.num_seeds). It is not free per seed: at two views per step on one H100, four sweeps of 14
seeds sharing it ran 6 steps/s each, against one seed's 200 steps/s alone. --group
splits the pairs into sequential programs of at most that many seeds (one compile per program size); each
program's captions are scored as soon as all their seeds are trained, so a sweep cut short keeps what it scored,
and --resume goes on with it. --group=1 trains every seed as its own program, the program of `main`: the seed is
then the draw `main --config.prompt=CAPTION --config.seed=SEED` gives on that device (tests/test_default.py).
Each seed is scored by dreamfusion_jax.evaluate.Scorer, the same code as
`python -m dreamfusion_jax.evaluate`. Seed k of caption c starts as a `main` run of caption c with
--config.seed=FIRST_SEED+k does (the same initial field and keys), but it is not the same draw: the vmapped
program's size changes XLA's fusions and reduction orders, and 1,000 SDS steps amplify the difference (the same
17 pairs trained in sweeps of 28 and 14 seeds: IoU 0.04 apart on average; BENCHMARKS.md). OUT/summary.md (a table) and
OUT/summary.json hold, per caption and overall: color_r_precision, geo_r_precision, mean IoU,
color_error, the surface metrics, fit_right_rate (the share of seeds whose mesh the primitive fit,
dreamfusion_jax/shapes/fit.py, names as the caption's shape) and the Janus rate;
OUT/views/<caption>.png shows each seed's colour and textureless views as the judge saw them.

--captions: 'all' (every colour x shape), 'heldout' (world.HELD_OUT), an integer N (N random
captions, --caption_seed), or captions separated by ';' ("a red cube;a blue teardrop").
--no_view_prompts turns view-dependent prompting off (camera.view_dependent_prompts=false), to
measure the Janus rate without it. --config.FIELD=VALUE overrides apply to every seed.

Overall numbers weight every caption equally (the mean of per-caption means); the Janus rate
pools the seeds of the asymmetric captions (world.ASYMMETRIC). 'train' and 'held_out' rows split
the captions by whether the prior saw the pair.
"""

import datetime
import json
import os
import re
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from dreamfusion_jax import files  # noqa: E402  (standard library only: --help stays free of JAX)

METRICS = (
  "color_r_precision",
  "geo_r_precision",
  "iou",
  "color_error",
  "volume_ratio",
  "normal_error_deg",
  "fog",
  "chamfer",
  "extent_error",
  "one_component_rate",
  "true_genus_rate",
  "fit_right_rate",  # None for bird and chair: the overall and per-colour rates are over the analytic shapes.
  "fit_rounding",  # Cubes and cylinders only: their best rounded fit's edge radius / smallest half-size.
)

_CONFIG = config_flags.DEFINE_config_file(
  "config", os.path.join(ROOT, "configs", "default.py"), "Config of every seed.", lock_config=True
)
flags.DEFINE_string("captions", "all", "all | heldout | N (random) | 'a red cube;a blue teardrop'.")
flags.DEFINE_integer("caption_seed", 0, "Seed of the random caption choice (--captions=N).")
flags.DEFINE_integer("seeds", 2, "Seeds per caption.")
flags.DEFINE_integer("first_seed", 0, "Seed of each caption's first seed (then +1, +2, ...).")
flags.DEFINE_integer("group", 0, "Most seeds per compiled program (0: all pairs in one).")
flags.DEFINE_string("out", None, "Output folder: summary.md, summary.json, views/.")
flags.DEFINE_bool(
  "resume",
  False,
  "Go on with the sweep in --out: keep the captions its summary.json scored (same config, overrides, seeds, "
  "first seed and group) and train the rest. Without it an --out holding a summary.json is refused.",
)
flags.DEFINE_float(
  "deadline_s",
  0,
  "Start no new caption after this many seconds from the sweep's start (the seeds of a caption begun are "
  "finished and scored); what was scored is kept, and --resume goes on. 0: no deadline.",
)
flags.DEFINE_bool("no_view_prompts", False, "Set camera.view_dependent_prompts=false.")
flags.DEFINE_string("classifier_dir", None, "The judge's export (default: the package's assets).")
flags.DEFINE_bool(
  "save_params",
  False,
  "Also write each seed's field parameters to OUT/params/<caption>_seed<k>.msgpack "
  "(read back with flax.serialization.msgpack_restore) to re-score or export a result without retraining.",
)
flags.DEFINE_list(
  "levels",
  [],
  "Extra occupancy levels to report the IoU at (a diagnostic): numbers, or 'silhouette' "
  "(export.silhouette_level of each result).",
)
flags.DEFINE_integer(
  "fit_workers",
  0,
  "Processes (CPU only) that fit the primitives to the meshes (dreamfusion_jax/shapes/fit.py, seconds of "
  "single-threaded Python a mesh) while the next seeds are scored; 0: in turn, in this process.",
)
FLAGS = flags.FLAGS
STARTED = 0.0  # perf_counter() at main's start: --deadline_s counts from it.


def shapes_module():
  from dreamfusion_jax.shapes import world  # Imported late: --help needs no JAX.

  return world


def select_captions(spec: str, seed: int) -> list[str]:
  world = shapes_module()
  every = [world.caption(c, s) for s in world.SHAPES for c in world.COLOUR_NAMES]
  if spec == "all":
    return every
  if spec == "heldout":
    return [world.caption(c, s) for c, s in world.HELD_OUT]
  if spec.isdigit():
    import random

    return sorted(random.Random(seed).sample(every, min(int(spec), len(every))))
  captions = [c.strip() for c in spec.split(";") if c.strip()]
  for c in captions:
    world.parse_caption(c)  # A ValueError names a caption outside the world.
  return [world.caption(*world.parse_caption(c)) for c in captions]


def slug(caption: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_")


def mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def caption_row(caption: str, evaluation: dict | None, error: str | None) -> dict:
  world = shapes_module()
  colour, shape = world.parse_caption(caption)
  row = dict(
    caption=caption, held_out=(colour, shape) in world.HELD_OUT, asymmetric=shape in world.ASYMMETRIC, error=error
  )
  if evaluation is None:
    row.update({m: None for m in METRICS}, janus_rate=None, janus_count=None, num_seeds=0)
    return row
  row.update({m: evaluation["mean"].get(m) for m in METRICS})  # get: evaluations from before volume_ratio.
  seeds = evaluation["per_seed"].values()
  janus = [s["janus"] for s in seeds if s.get("janus") is not None]
  row.update(
    janus_rate=evaluation["mean"]["janus_rate"],
    janus_count=sum(janus) if janus else None,
    num_seeds=len(evaluation["per_seed"]),
    step=evaluation["step"],
  )
  levels = [s.get("iou_by_level", {}) for s in seeds]
  row["iou_by_level"] = (
    {lv: {k: mean([s[lv][k] for s in levels]) for k in ("level", "iou", "volume_ratio")} for lv in levels[0]}
    if levels
    else {}
  )
  return row


def overall(rows: list[dict]) -> dict:
  ok = [r for r in rows if r["num_seeds"]]
  out = {m: mean([r[m] for r in ok]) for m in METRICS}
  asym = [r for r in ok if r["asymmetric"] and r["janus_count"] is not None]
  seeds = sum(r["num_seeds"] for r in asym)
  out["janus_rate"] = sum(r["janus_count"] for r in asym) / seeds if seeds else None
  levels = ok[0]["iou_by_level"] if ok else {}
  out["iou_by_level"] = {
    lv: {k: mean([r["iou_by_level"][lv][k] for r in ok]) for k in ("level", "iou", "volume_ratio")} for lv in levels
  }
  out["num_captions"] = len(ok)
  out["num_failed"] = len(rows) - len(ok)
  return out


def grouped(rows: list[dict], part: int) -> dict:
  """overall() of the captions of each colour (part 0) or shape (part 1), in the world's order."""
  world = shapes_module()
  names = world.COLOUR_NAMES if part == 0 else world.SHAPES
  groups = {n: [r for r in rows if world.parse_caption(r["caption"])[part] == n] for n in names}
  return {n: overall(g) for n, g in groups.items() if g}


def fmt(v) -> str:
  return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def markdown(rows: list[dict], summary: dict, header: str) -> str:
  cols = ("caption", "held_out", *METRICS, "janus_rate", "num_seeds")
  lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    cells = [r["caption"] + (" (failed)" if r["error"] else ""), "yes" if r["held_out"] else ""]
    cells += [fmt(r[m]) for m in METRICS] + [fmt(r["janus_rate"]), fmt(r["num_seeds"])]
    lines.append("| " + " | ".join(cells) + " |")
  for name in ("overall", "train", "held_out"):
    s = summary[name]
    lines.append(
      "| "
      + " | ".join(
        [f"**{name}** ({s['num_captions']} captions)", ""] + [fmt(s[m]) for m in METRICS] + [fmt(s["janus_rate"]), ""]
      )
      + " |"
    )
  for group in ("per_shape", "per_colour"):
    lines += [
      "",
      f"{group.replace('_', ' ').capitalize()} (means over its captions):",
      "",
      "| " + " | ".join((group[4:], *METRICS, "janus_rate")) + " |",
      "|" + "---|" * (len(METRICS) + 2),
    ]
    lines += [
      "| " + " | ".join([name] + [fmt(v[m]) for m in METRICS] + [fmt(v["janus_rate"])]) + " |"
      for name, v in summary[group].items()
    ]
  if summary["overall"]["iou_by_level"]:
    lines += [
      "",
      "IoU at other occupancy levels (mean level, IoU, volume_ratio over all captions):",
      "",
      "| level | mean level | IoU | volume_ratio |",
      "|---|---|---|---|",
    ]
    lines += [
      f"| {lv} | {fmt(v['level'])} | {fmt(v['iou'])} | {fmt(v['volume_ratio'])} |"
      for lv, v in summary["overall"]["iou_by_level"].items()
    ]
  return "\n".join(lines) + "\n"


def train_group(trainers: dict, config, prior, captions: list[str], seeds: list[int], embeddings: dict):
  """Trains one multi-seed program (seed i: captions[i], seeds[i]); returns ([params per seed], seconds, steps/s).

  trainers caches one train.Trainer per program size, so groups of the same size reuse its compiled step.
  """
  import jax
  from tqdm import tqdm

  from dreamfusion_jax import train

  if len(captions) not in trainers:
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.num_seeds = len(captions)
    trainers[len(captions)] = train.Trainer(config, prior)
  trainer = trainers[len(captions)]
  text = trainer.text_embeddings(np.stack([embeddings[c] for c in captions]))
  start = time.perf_counter()
  state = trainer.init(np.asarray(seeds, np.int32))
  first_step_done = None
  for step in tqdm(
    range(1, config.num_steps + 1), desc=f"{len(captions)} seeds", unit="step", disable=not config.progress_bar
  ):
    state, _ = trainer.step(state, text)
    if step == 1:
      jax.block_until_ready(state)
      first_step_done = time.perf_counter()
  jax.block_until_ready(state)
  end = time.perf_counter()
  rate = (config.num_steps - 1) / max(end - first_step_done, 1e-9) if config.num_steps > 1 else float("nan")
  # A seed that diverged is not a reason to lose the others: it is scored as it is (NaN density
  # occupies nothing) and listed in summary.json's 'diverged'.
  return train.host_params(state), end - start, rate


def save_params(out: str, caption: str, seed: int, params) -> str:
  """Writes one seed's params (host arrays) atomically to OUT/params/<caption>_seed<k>.msgpack; returns the path.

  flax.serialization.msgpack_restore reads them back as the nested dict train.host_params gives.
  """
  from flax import serialization

  path = os.path.join(out, "params", f"{slug(caption)}_seed{seed}.msgpack")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return files.write_bytes(path, serialization.msgpack_serialize(params))


def judge_views(scorer, params_list: list) -> np.ndarray:
  """uint8 sheet: one row per seed, the judge's colour views then its textureless views."""

  from dreamfusion_jax.shapes import evaluate

  st = scorer.settings
  return evaluate.judge_views_sheet(
    [evaluate.render_views(scorer.render_view, p, st["num_views"], st["elevation"]) for p in params_list]
  )


def main(argv):
  global STARTED
  STARTED = time.perf_counter()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  import jax

  from dreamfusion_jax import checks, export, train
  from dreamfusion_jax.errors import UserError
  from dreamfusion_jax.shapes import evaluate, fit

  if not FLAGS.out:
    raise app.UsageError("--out is required: the folder for summary.md, summary.json and views/.")
  try:
    captions = select_captions(FLAGS.captions, FLAGS.caption_seed)
  except ValueError as e:
    raise app.UsageError(str(e))
  try:
    extra_levels = [lv if lv == "silhouette" else float(lv) for lv in FLAGS.levels]
  except ValueError:
    raise app.UsageError(
      f"--levels={','.join(FLAGS.levels)}: each level is a density (a number such as 2 or 2.5) or 'silhouette'."
    )
  if not FLAGS.resume and os.path.exists(os.path.join(FLAGS.out, "summary.json")):
    raise app.UsageError(
      f"{FLAGS.out} holds a sweep's summary.json already: pass --resume to go on with that sweep (its scored "
      "captions are kept), or give another --out."
    )
  previous = resumed() if FLAGS.resume else ([], {}, [], [])  # Checked before the prior is built.
  config = _CONFIG.value
  with config.unlocked():
    if FLAGS.no_view_prompts:
      config.camera.view_dependent_prompts = False
    config.prompt = captions[0]
    config.num_seeds = 1
  try:
    checks.validate_config(config)
    prior = train.build_prior(config)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(os.path.join(FLAGS.out, "views"), exist_ok=True)
  embeddings = {}
  for c in captions:
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.prompt = c
    embeddings[c] = train.embed_prompts(prior, cfg)
  executor = fit.executor(FLAGS.fit_workers)
  scorer = evaluate.Scorer(config, FLAGS.classifier_dir, extra_levels=extra_levels, fit_executor=executor)
  rows, results, timing, diverged = previous
  extra = dict(
    device=jax.devices()[0].device_kind,
    num_devices=jax.device_count(),
    training=timing,
    num_steps=config.num_steps,
    diverged=diverged,
  )
  pairs = [(c, FLAGS.first_seed + k) for c in captions if c not in results for k in range(FLAGS.seeds)]
  if FLAGS.resume and results:
    logging.info("Resuming: %d captions scored in %s, %d seeds to train.", len(results), FLAGS.out, len(pairs))
  group = FLAGS.group or max(len(pairs), 1)
  trainers, trained, pending = {}, {}, []

  def finish(caption, per_seed):
    # The summary is rewritten after every caption, so a sweep cut short by a time limit keeps what it scored.
    results[caption] = scorer.result(caption, config.num_steps, per_seed)
    rows.append(caption_row(caption, results[caption], None))
    write_summary(rows, results, extra)

  def score(caption):
    seeds = [s for c, s in pairs if c == caption]
    per_seed = [trained.pop((caption, s)) for s in seeds]
    pending.append((caption, {f"seed_{s}": scorer.score(p, caption) for s, p in zip(seeds, per_seed)}))
    diverged.extend(f"{caption} seed {s}" for s, p in zip(seeds, per_seed) if not bool(train.params_finite(p)))
    if scorer.judge is not None:
      export.write_png(os.path.join(FLAGS.out, "views", slug(caption) + ".png"), judge_views(scorer, per_seed))

  # Each group is scored as soon as its captions have all their seeds, so a sweep of small groups (--group=1:
  # every seed its own program, the program of `main`) keeps every caption scored before a cut.
  for i in range(0, len(pairs), group):
    if FLAGS.deadline_s and not trained and time.perf_counter() - STARTED > FLAGS.deadline_s:
      logging.warning(
        "Deadline: %.0f s passed; %d seeds not trained (--resume goes on).", FLAGS.deadline_s, len(pairs) - i
      )
      break
    chunk = pairs[i : i + group]
    logging.info("Training %d seeds (%d steps) on %s.", len(chunk), config.num_steps, jax.devices()[0].device_kind)
    p, seconds, rate = train_group(trainers, config, prior, [c for c, _ in chunk], [s for _, s in chunk], embeddings)
    timing.append(dict(seeds=len(chunk), seconds=seconds, steps_per_sec=rate))
    logging.info("Trained %d seeds in %.1f s (%.2f steps/s after the first step).", len(chunk), seconds, rate)
    for pair, params in zip(chunk, p):
      trained[pair] = params
      if FLAGS.save_params:
        save_params(FLAGS.out, *pair, params)
    for caption in dict.fromkeys(c for c, _ in chunk):
      if all((caption, s) in trained for c, s in pairs if c == caption):
        score(caption)
    while pending and evaluate.fits_done(pending[0][1]):
      finish(*pending.pop(0))
  for caption, per_seed in pending:
    finish(caption, per_seed)
  if executor is not None:
    executor.shutdown()
  if diverged:
    logging.warning("Non-finite parameters (scored as they are): %s", "; ".join(diverged))
  print(json.dumps(overall(rows)))


def draw_settings() -> dict:
  """What decides each seed's draw: a sweep resumes only with the same (summary.json's settings hold them)."""
  return dict(
    config=config_file(),
    seeds=FLAGS.seeds,
    first_seed=FLAGS.first_seed,
    group=FLAGS.group,
    view_dependent_prompts=not FLAGS.no_view_prompts,
    overrides=overrides(),
  )


def resumed() -> tuple[list, dict, list, list]:
  """(rows, evaluations, training timings, diverged seeds) of the sweep in --out, for --resume; all empty if none.

  Raises app.UsageError if that sweep's settings differ from this one's: its results would not be this sweep's.
  """
  path = os.path.join(FLAGS.out, "summary.json")
  if not os.path.exists(path):
    return [], {}, [], []
  with open(path) as f:
    old = json.load(f)
  settings = old["settings"]
  differ = {k: (settings.get(k), v) for k, v in draw_settings().items() if settings.get(k) != v}
  if differ:
    raise app.UsageError(
      f"--resume: the sweep in {FLAGS.out} ran with other settings ("
      + "; ".join(f"{k} {a} there, {b} here" for k, (a, b) in differ.items())
      + "). Run with the same settings to go on with it, or give another --out."
    )
  results = dict(old["evaluations"])  # All of them, the captions this call leaves out too: nothing is dropped.
  rows = [caption_row(c, e, None) for c, e in results.items()]
  return rows, results, list(settings.get("training", [])), list(settings.get("diverged", []))


def write_summary(rows: list[dict], results: dict, extra: dict) -> dict:
  summary = dict(
    overall=overall(rows),
    train=overall([r for r in rows if not r["held_out"]]),
    held_out=overall([r for r in rows if r["held_out"]]),
    captions=rows,
    evaluations=results,
    per_shape=grouped(rows, 1),
    per_colour=grouped(rows, 0),
    settings=dict(
      **draw_settings(),
      captions=FLAGS.captions,
      classifier_dir=FLAGS.classifier_dir,
      date=datetime.date.today().isoformat(),
      **extra,
    ),
  )
  time_s = sum(t["seconds"] for t in extra["training"])
  header = (
    f"# Shapes sweep: {config_file()}, {len(rows)} captions x {FLAGS.seeds} seeds, view-dependent prompts "
    f"{'off' if FLAGS.no_view_prompts else 'on'}"
    + (f", overrides {' '.join(overrides())}" if overrides() else "")
    + f"\n\n{extra['num_steps']} steps; trained on {extra['num_devices']} x {extra['device']} in "
    f"{time_s:.1f} s (compile included), {datetime.date.today().isoformat()}."
  )
  files.write_bytes(os.path.join(FLAGS.out, "summary.json"), json.dumps(summary, indent=2).encode())
  files.write_bytes(os.path.join(FLAGS.out, "summary.md"), markdown(rows, summary, header).encode())
  return summary


def config_file() -> str:
  return os.path.relpath(config_flags.get_config_filename(FLAGS["config"]), ROOT)


def overrides() -> list[str]:
  return [a for a in sys.argv[1:] if a.startswith("--config.")]


if __name__ == "__main__":
  app.run(main)
