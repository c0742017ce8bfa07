"""One line per variant of a screen's sweeps (summary.json files in a folder): IoU over all seeds and per shape,
the chairs', normal error, fog, chamfer, true genus, the fit judge's right count, cube rounding, cylinder rims and
colour R-Precision.

  python benchmarks/results/steps_2026-12-07/table.py benchmarks/results/steps_2026-12-07/screen
"""

import collections
import glob
import json
import sys


def mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else float("nan")


def main(folder):
  for path in sorted(glob.glob(folder + "/*.json")):
    summary = json.load(open(path))
    rows = collections.defaultdict(list)
    by_shape = collections.defaultdict(list)
    for e in summary["evaluations"].values():
      for r in e["per_seed"].values():
        by_shape[e["shape"]].append(r["iou"])
        rows["iou"].append(r["iou"])
        rows["normal"].append(r["normal_error_deg"])
        rows["fog"].append(r["fog"])
        rows["chamfer"].append(r["chamfer"])
        rows["genus"].append(r["mesh_genus"] == r["true_genus"])
        rows["colour"].append(r["color_r_precision"])
        if r.get("fit_right") is not None:
          rows["fit"].append(r["fit_right"])
        if e["shape"] in ("cube", "cylinder"):
          rows[e["shape"] + "_rounding"].append(r.get("fit_rounding"))
    shapes = " ".join(f"{k[:4]} {mean(v):.3f}" for k, v in sorted(by_shape.items()))
    print(
      path.split("/")[-1][:-5].ljust(20),
      f"IoU {mean(rows['iou']):.3f} | {shapes}",
      f"| normal {mean(rows['normal']):.1f} fog {mean(rows['fog']):.3f} chamfer {mean(rows['chamfer']):.4f}",
      f"genus {sum(rows['genus'])}/{len(rows['genus'])} fit {int(sum(rows['fit']))}/{len(rows['fit'])}",
      f"cube rounding {mean(rows['cube_rounding']):.3f} cylinder rim {mean(rows['cylinder_rounding']):.3f}",
      f"colour R-P {mean(rows['colour']):.3f}",
    )


if __name__ == "__main__":
  main(sys.argv[1])
