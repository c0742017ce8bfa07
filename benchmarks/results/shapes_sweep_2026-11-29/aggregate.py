"""Prints the tables of BENCHMARKS.md's 'Shapes sweep' section: python aggregate.py

Reads captions.csv (one row per sweep and caption) and sweeps.json (each sweep's settings and overall
scores). No package imports: the numbers are the sweeps' own.
"""

import collections
import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = (
  "color_r_precision",
  "color_r_precision_previous_judge",
  "geo_r_precision",
  "iou",
  "color_error",
  "volume_ratio",
)
GROUPS = {
  "albedo_bias 0 (the previous default), seeds 3-5": [f"albedo_bias0_s{s}" for s in (3, 4, 5)],
  "albedo_bias 1.4 (the default), seeds 3-5": [f"albedo_bias14_s{s}" for s in (3, 4, 5)],
  "albedo_bias 1.4 (the default), seeds 0-2": [f"albedo_bias14_s{s}" for s in (0, 1, 2)],
  "albedo_bias 1.4 (the default), seeds 0-5": [f"albedo_bias14_s{s}" for s in range(6)],
  "the default without view prompts, seeds 3-5": [f"albedo_bias14_no_view_prompts_s{s}" for s in (3, 4, 5)],
  "the default with gpu_triton_gemm=false (round 36), seeds 3-5": [f"cublas_s{s}" for s in (3, 4, 5)],
}


def load():
  """Returns {sweep: [row, ...]}, each row a dict with the caption's numbers (None where blank)."""
  sweeps = collections.defaultdict(list)
  with open(os.path.join(HERE, "captions.csv"), newline="") as f:
    for r in csv.DictReader(f):
      row = {"caption": r["caption"], "held_out": r["held_out"] == "1"}
      for k, v in r.items():
        if k not in ("sweep", "caption", "held_out"):
          row[k] = None if v == "" else float(v)
      sweeps[r["sweep"]].append(row)
  return sweeps


def mean(rows, key):
  vals = [r[key] for r in rows if r.get(key) is not None]
  return sum(vals) / len(vals) if vals else float("nan")


def rows_of(sweeps, names, where=lambda r: True):
  return [r for n in names for r in sweeps[n] if where(r)]


def line(label, rows):
  janus = [r["janus"] for r in rows if r["janus"] is not None]
  return f"| {label} | " + " | ".join(f"{mean(rows, k):.3f}" for k in METRICS) + f" | {int(sum(janus))}/{len(janus)} |"


def main():
  sweeps = load()
  print("| sweep | " + " | ".join(METRICS) + " | janus |")
  for label, names in GROUPS.items():
    print(line(label, rows_of(sweeps, names)))
    print(line(label + ", training pairs", rows_of(sweeps, names, lambda r: not r["held_out"])))
    print(line(label + ", held-out pairs", rows_of(sweeps, names, lambda r: r["held_out"])))
  for name in sweeps:
    print(line(name, rows_of(sweeps, [name])))
  for label in ("albedo_bias 0 (the previous default), seeds 3-5", "albedo_bias 1.4 (the default), seeds 0-5"):
    for part in ("colour", "shape"):
      by = collections.defaultdict(list)
      for r in rows_of(sweeps, GROUPS[label]):
        words = r["caption"].split()
        by[words[1] if part == "colour" else words[2]].append(r)
      print(f"\n{label}, per {part}: name colour_R-P (previous judge) geo_R-P colour_error iou")
      for k, rows in by.items():
        print(
          f"  {k}: {mean(rows, 'color_r_precision'):.2f} ({mean(rows, 'color_r_precision_previous_judge'):.2f}) "
          f"{mean(rows, 'geo_r_precision'):.2f} {mean(rows, 'color_error'):.2f} {mean(rows, 'iou'):.2f}"
        )


if __name__ == "__main__":
  main()
