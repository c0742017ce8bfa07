"""The shell's 110 captions x seed 0 against the default's seed 0 of 2026-12-06 (sweep110x3_2026-12-06), per shape:
python benchmarks/results/shell_2026-12-07/compare_seed0.py
"""

import csv
import glob
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "..", "sweep110x3_2026-12-06", "default_110x3_per_seed.csv")
KEYS = (
  "iou",
  "normal_error_deg",
  "fog",
  "chamfer",
  "extent_error",
  "true_genus_ok",
  "fit_rounding",
  "color_r_precision",
)


def shape_of(caption):
  return caption.split(" ", 2)[2]


def base_rows():
  rows = {}
  for r in csv.DictReader(open(BASE)):
    if r["seed"] == "0":
      rows[r["caption"]] = {
        "iou": float(r["iou"]),
        "normal_error_deg": float(r["normal_error_deg"]),
        "fog": float(r["fog"]),
        "chamfer": float(r["chamfer"]),
        "extent_error": float(r["extent_error"]),
        "true_genus_ok": float(r["mesh_genus"] == r["true_genus"]),
        "fit_rounding": float(r["fit_rounding"]) if r["fit_rounding"] else None,
        "color_r_precision": float(r["color_r_precision"]),
      }
  return rows


def new_rows():
  rows = {}
  for path in glob.glob(os.path.join(HERE, "sweep110_seed0", "part*.json")):
    for caption, ev in json.load(open(path))["evaluations"].items():
      s = ev["per_seed"]["seed_0"]
      rows[caption] = {k: s.get(k) for k in KEYS if k != "true_genus_ok"}
      rows[caption]["true_genus_ok"] = float(s["mesh_genus"] == s["true_genus"])
  return rows


def main():
  base, new = base_rows(), new_rows()
  captions = sorted(set(base) & set(new))
  shapes = sorted({shape_of(c) for c in captions})
  print(f"{len(captions)} captions, seed 0: default (2026-12-06) -> shell (2026-12-07)\n")
  print("| shape | " + " | ".join(KEYS) + " |")
  print("| --- |" + " --- |" * len(KEYS))
  for group in [*shapes, "all"]:
    cs = [c for c in captions if group == "all" or shape_of(c) == group]
    cells = []
    for k in KEYS:
      a = [base[c][k] for c in cs if base[c][k] is not None]
      b = [new[c][k] for c in cs if new[c][k] is not None]
      cells.append(f"{np.mean(a):.3f} -> {np.mean(b):.3f}" if a and b else "-")
    print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
