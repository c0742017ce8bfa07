"""The default's surface metrics per shape (BENCHMARKS.md, 'Surface quality'): round 39's per-seed log rows
(shapes sphere..pyramid, seeds 0-1; it ran out of time in the octahedra) and round 40's sweep (octahedron,
teardrop, bird, chair, seeds 0-1), each shape a mean over its 10 colours x 2 seeds.

  python benchmarks/results/surface_2026-12-06/aggregate.py
"""

import collections
import csv
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("iou", "normal_error_deg", "fog", "chamfer")
LATE = ("octahedron", "teardrop", "bird", "chair")  # Round 40's shapes.

rows = collections.defaultdict(list)
with open(os.path.join(HERE, "round39_per_seed.csv")) as f:
  for r in csv.DictReader(f):
    if r["shape"] not in LATE:
      rows[r["shape"]].append({m: float(r[m]) for m in METRICS})
table = {s: {m: sum(r[m] for r in rs) / len(rs) for m in METRICS} | {"n": len(rs)} for s, rs in rows.items()}
late = json.load(open(os.path.join(HERE, "round40_summary.json")))["per_shape"]
for shape in LATE:
  table[shape] = (
    {m: late[shape][m] for m in METRICS}
    | {"n": 20}
    | {k: late[shape][k] for k in ("extent_error", "one_component_rate", "true_genus_rate")}
  )
print("| shape | seeds | IoU | normal error (deg) | fog | chamfer |")
print("| --- | --- | --- | --- | --- | --- |")
for shape, v in table.items():
  print(f"| {shape} | {v['n']} | {v['iou']:.2f} | {v['normal_error_deg']:.0f} | {v['fog']:.2f} | {v['chamfer']:.3f} |")
means = {m: sum(v[m] for v in table.values()) / len(table) for m in METRICS}
print(
  f"| **all 11 shapes** | {sum(v['n'] for v in table.values())} | {means['iou']:.2f} | "
  f"{means['normal_error_deg']:.0f} | {means['fog']:.2f} | {means['chamfer']:.3f} |"
)
