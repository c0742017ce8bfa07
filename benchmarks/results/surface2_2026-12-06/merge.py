"""Merges the summary.json files of sweeps over parts of the world, or over different seeds of the same captions,
into one table (overall, train / held-out, per shape, per colour), with shapes_sweep.py's own means. A caption
scored in several sweeps gets its per-seed rows joined and its means recomputed from them (evaluate.seed_means):

  python benchmarks/results/surface2_2026-12-06/merge.py OUT.md PART.json [PART.json ...]
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import shapes_sweep  # noqa: E402

from dreamfusion_jax.shapes import evaluate  # noqa: E402


def joined_rows(summaries: list[dict]) -> list[dict]:
  """shapes_sweep's caption rows, one per caption, from every sweep's per-seed evaluations."""
  evaluations = {}
  for s in summaries:
    for caption, ev in s["evaluations"].items():
      if caption not in evaluations:
        evaluations[caption] = dict(ev, per_seed=dict(ev["per_seed"]))
        continue
      seen = evaluations[caption]["per_seed"]
      twice = set(seen) & set(ev["per_seed"])
      if twice:
        raise SystemExit(f"{caption}: {sorted(twice)} scored in two sweeps; merge each seed once.")
      seen.update(ev["per_seed"])
      evaluations[caption]["step"] = min(evaluations[caption]["step"], ev["step"])
  rows = []
  for caption, ev in evaluations.items():
    ev["mean"] = evaluate.seed_means(list(ev["per_seed"].values()), ev["shape"])
    rows.append(shapes_sweep.caption_row(caption, ev, None))
  return rows


def main(out: str, parts: list[str]) -> None:
  summaries = [json.load(open(p)) for p in parts]
  rows = joined_rows(summaries)
  summary = dict(
    overall=shapes_sweep.overall(rows),
    train=shapes_sweep.overall([r for r in rows if not r["held_out"]]),
    held_out=shapes_sweep.overall([r for r in rows if r["held_out"]]),
    per_shape=shapes_sweep.grouped(rows, 1),
    per_colour=shapes_sweep.grouped(rows, 0),
  )
  st = summaries[0]["settings"]
  train_s = [t["seconds"] for s in summaries for t in s["settings"]["training"]]
  seeds = sorted({k for r in summaries for ev in r["evaluations"].values() for k in ev["per_seed"]})
  header = (
    f"# Shapes sweep: {st['config']}, {len(rows)} captions x {len(seeds)} seeds (merged from {len(parts)} sweeps), "
    f"overrides {' '.join(st['overrides']) or 'none'}\n\n"
    f"{st['num_steps']} steps; {st['device']}, {st['date']}; training per sweep "
    f"{min(train_s):.0f}-{max(train_s):.0f} s (compile included, sweeps sharing the GPU)."
  )
  with open(out, "w") as f:
    f.write(shapes_sweep.markdown(rows, summary, header))
  json.dump(summary, open(out.replace(".md", ".json"), "w"), indent=1)
  print(json.dumps({k: summary["overall"][k] for k in shapes_sweep.METRICS}, indent=1))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
