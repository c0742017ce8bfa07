"""Re-scores a finished Shapes sweep's R-Precisions with another judge, from the views it saved.

  python benchmarks/rescore_views.py --sweep=/tmp/shapes_sweep [--classifier_dir=DIR] [--name=rescored]

shapes_sweep.py writes OUT/views/<caption>.png: per seed, the judge's colour views then its
textureless views (8-bit PNG). This script feeds those images to a judge (default: the package's
dreamfusion_jax/assets/classifier/), recomputes color_r_precision and geo_r_precision per seed
with evaluate.r_precision, keeps every other metric (IoU, colour error, Janus: they do not depend
on the judge) from OUT/summary.json, and writes OUT/summary_<name>.md / .json. The original
summary is left as it is. Scores from the PNGs differ from scoring the float renders only by the
8-bit rounding (on the default sweep: 0.769 / 0.541 vs 0.767 / 0.543 with the same judge).
"""

import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shapes_sweep  # noqa: E402  (its helpers, and its --classifier_dir flag)
from absl import app, flags, logging  # noqa: E402

from dreamfusion_jax import files  # noqa: E402

flags.DEFINE_string("sweep", None, "A shapes_sweep.py output folder (summary.json and views/).")
flags.DEFINE_string("name", "rescored", "Writes summary_<name>.md and summary_<name>.json.")
FLAGS = flags.FLAGS


def rescore(summary: dict, views_dir: str, judge) -> dict:
  """A copy of summary.json with each seed's R-Precisions recomputed by `judge` from the views sheets."""
  import imageio.v3 as iio

  from dreamfusion_jax.shapes import evaluate, world

  out = copy.deepcopy(summary)
  rows = []
  for caption, ev in out["evaluations"].items():
    colour, shape = evaluate.parse_run_caption(caption)
    st = ev["settings"]
    sheet = iio.imread(os.path.join(views_dir, shapes_sweep.slug(caption) + ".png"))
    seeds = list(ev["per_seed"])
    views = evaluate.split_judge_views_sheet(sheet, st["num_views"], st["image_size"])
    if len(views) != len(seeds):
      raise ValueError(f"{caption}: {len(views)} rows of views for {len(seeds)} seeds")
    for seed, v in zip(seeds, views):
      ev["per_seed"][seed].update(
        evaluate.r_precision(
          judge, v["colour"], v["textureless"], world.COLOUR_NAMES.index(colour), world.SHAPES.index(shape)
        )
      )
    for m in ("color_r_precision", "geo_r_precision"):
      ev["mean"][m] = float(np.mean([s[m] for s in ev["per_seed"].values()]))
    rows.append(shapes_sweep.caption_row(caption, ev, None))
  out.update(
    captions=rows,
    overall=shapes_sweep.overall(rows),
    train=shapes_sweep.overall([r for r in rows if not r["held_out"]]),
    held_out=shapes_sweep.overall([r for r in rows if r["held_out"]]),
  )
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.sweep:
    raise app.UsageError("--sweep is required: a shapes_sweep.py output folder.")
  from dreamfusion_jax.shapes import evaluate
  from dreamfusion_jax.shapes import judge as judge_lib

  path = os.path.join(FLAGS.sweep, "summary.json")
  if not os.path.isfile(path) or not os.path.isdir(os.path.join(FLAGS.sweep, "views")):
    raise app.UsageError(f"'{FLAGS.sweep}' has no summary.json and views/ (run benchmarks/shapes_sweep.py first).")
  with open(path) as f:
    summary = json.load(f)
  from dreamfusion_jax.errors import UserError

  try:
    judge_dir = evaluate.find_classifier(FLAGS.classifier_dir)
    judge = judge_lib.load_classifier(judge_dir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  out = rescore(summary, os.path.join(FLAGS.sweep, "views"), judge)
  out["settings"]["rescored_with"] = judge_dir
  base = os.path.join(FLAGS.sweep, f"summary_{FLAGS.name}")
  header = (
    f"# {FLAGS.sweep}: R-Precisions re-scored from views/ with the judge in {judge_dir}\n\n"
    f"Original settings: {json.dumps({k: v for k, v in summary['settings'].items() if k != 'training'})}"
  )
  files.write_bytes(base + ".json", json.dumps(out, indent=2).encode())
  files.write_bytes(base + ".md", shapes_sweep.markdown(out["captions"], out, header).encode())
  logging.info("Wrote %s.md and .json.", base)
  print(json.dumps(out["overall"]))


if __name__ == "__main__":
  app.run(main)
