"""One line per variant of a chair screen: the chairs' mean IoU (and per seed), their true-genus count, the other
shapes' IoU, and the whole screen's genus, normal error, fog and chamfer (and the fit judge's right count
where the evaluation has it).

  python benchmarks/results/chair_2026-12-06/table.py benchmarks/results/chair_2026-12-06/screen1
"""

import collections
import glob
import json
import sys


def mean(values):
  return sum(values) / len(values)


def main(folder):
  for path in sorted(glob.glob(folder + "/*.json")):
    summary = json.load(open(path))
    chair, chair_genus, other, genus, normal, fog, chamfer, fit = [], [], [], [], [], [], [], []
    by_shape, chair_by_seed = collections.defaultdict(list), collections.defaultdict(list)
    for e in summary["evaluations"].values():
      for seed, r in e["per_seed"].items():
        ok = r["mesh_genus"] == r["true_genus"]
        genus.append(ok)
        normal.append(r["normal_error_deg"])
        fog.append(r["fog"])
        chamfer.append(r["chamfer"])
        if r.get("fit_right") is not None:  # The fit judge (shapes/fit.py), from 2026-12-06 16:00 on.
          fit.append(r["fit_right"])
        if e["shape"] == "chair":
          chair.append(r["iou"])
          chair_genus.append(ok)
          chair_by_seed[seed].append(r["iou"])
        else:
          other.append(r["iou"])
          by_shape[e["shape"]].append(r["iou"])
    seeds = " ".join(f"{mean(v):.2f}" for _, v in sorted(chair_by_seed.items()))
    shapes = " ".join(f"{k[:4]} {mean(v):.2f}" for k, v in sorted(by_shape.items()))
    print(
      path.split("/")[-1][:-5].ljust(14),
      f"chair {mean(chair):.3f} ({seeds}) genus_ok {sum(chair_genus)}/{len(chair_genus)} | others {mean(other):.3f}",
      shapes,
      f"| genus {sum(genus)}/{len(genus)} normal {mean(normal):.1f} fog {mean(fog):.3f} chamfer {mean(chamfer):.4f}",
      f"| fit right {int(sum(fit))}/{len(fit)}" if fit else "",
    )


if __name__ == "__main__":
  main(sys.argv[1])
