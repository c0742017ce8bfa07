"""Merges the summary.json files of sweeps over parts of the world into one table (overall, train / held-out,
per shape, per colour), with shapes_sweep.py's own means:

  python benchmarks/results/surface2_2026-12-06/merge.py OUT.md PART.json [PART.json ...]
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import shapes_sweep  # noqa: E402


def main(out: str, parts: list[str]) -> None:
  summaries = [json.load(open(p)) for p in parts]
  rows = [r for s in summaries for r in s["captions"]]
  summary = dict(
    overall=shapes_sweep.overall(rows),
    train=shapes_sweep.overall([r for r in rows if not r["held_out"]]),
    held_out=shapes_sweep.overall([r for r in rows if r["held_out"]]),
    per_shape=shapes_sweep.grouped(rows, 1),
    per_colour=shapes_sweep.grouped(rows, 0),
  )
  st = summaries[0]["settings"]
  train_s = [t["seconds"] for s in summaries for t in s["settings"]["training"]]
  header = (
    f"# Shapes sweep: {st['config']}, {len(rows)} captions x {st['seeds']} seeds (merged from {len(parts)} sweeps "
    f"run {len(parts) // 2 or 1} at a time), overrides {' '.join(st['overrides']) or 'none'}\n\n"
    f"{st['num_steps']} steps; {st['device']}, {st['date']}; training per sweep "
    f"{min(train_s):.0f}-{max(train_s):.0f} s (compile included, sweeps sharing the GPU)."
  )
  with open(out, "w") as f:
    f.write(shapes_sweep.markdown(rows, summary, header))
  json.dump(summary, open(out.replace(".md", ".json"), "w"), indent=1)
  print(json.dumps({k: summary["overall"][k] for k in shapes_sweep.METRICS}, indent=1))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
