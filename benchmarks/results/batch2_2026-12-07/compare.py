"""Two views per step against one, seed by seed on the same (caption, seed) pairs:

  python benchmarks/results/batch2_2026-12-07/compare.py ONE_VIEW_PER_SEED.csv PART.json [PART.json ...]

ONE_VIEW_PER_SEED.csv is a merged sweep's per-seed table (sweep110x3_2026-12-06/default_110x3_per_seed.csv);
the PART.json files are shapes_sweep.py summaries of the other variant. Prints, per shape and over all pairs, the
mean of each metric for both variants on the pairs both scored, and the true genus and fit counts.
"""

import csv
import json
import sys

METRICS = ("iou", "normal_error_deg", "fog", "chamfer", "extent_error", "fit_rounding", "color_r_precision")


def number(v):
  return None if v in ("", None) else float(v)


def main(base_csv, parts):
  base = {(r["caption"], int(r["seed"])): r for r in csv.DictReader(open(base_csv))}
  pairs = []
  for path in parts:
    for caption, ev in json.load(open(path))["evaluations"].items():
      for key, s in ev["per_seed"].items():
        seed = int(key.split("_")[1])
        if (caption, seed) in base:
          pairs.append((ev["shape"], caption, seed, base[(caption, seed)], s))
  shapes = sorted({p[0] for p in pairs}, key=lambda s: [p[0] for p in pairs].index(s))
  print(f"{len(pairs)} (caption, seed) pairs; one view -> two views\n")
  header = "| shape | n | " + " | ".join(METRICS) + " | true genus | fit right |"
  print(header + "\n|" + " --- |" * (header.count("|") - 1))
  for shape in shapes + ["all"]:
    sel = [p for p in pairs if shape in ("all", p[0])]
    cells = []
    for m in METRICS:
      a = [number(p[3][m]) for p in sel]
      b = [number(p[4].get(m)) for p in sel]
      ab = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
      cells.append(f"{sum(x for x, _ in ab) / len(ab):.3f} -> {sum(y for _, y in ab) / len(ab):.3f}" if ab else "")
    g1 = sum(number(p[3]["mesh_genus"]) == number(p[3]["true_genus"]) for p in sel)
    g2 = sum(p[4]["mesh_genus"] == p[4]["true_genus"] for p in sel)
    fits = [(number(p[3]["fit_right"]), p[4].get("fit_right")) for p in sel if p[4].get("fit_right") is not None]
    f = f"{sum(a for a, _ in fits):.0f} -> {sum(b for _, b in fits):.0f} of {len(fits)}" if fits else ""
    print(f"| {shape} | {len(sel)} | " + " | ".join(cells) + f" | {g1} -> {g2} of {len(sel)} | {f} |")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
