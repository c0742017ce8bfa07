"""Tables of BENCHMARKS.md's 'calibrated judge' section from sweeps.json (python aggregate.py)."""
import collections
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("color_r_precision", "color_r_precision_calibrated", "geo_r_precision", "geo_r_precision_calibrated",
           "iou", "color_error", "volume_ratio")


def mean(rows, key):
  vals = [r[key] for r in rows if r.get(key) is not None]
  return sum(vals) / len(vals) if vals else float("nan")


def rows_of(sweeps, names, where=lambda cap, r: True):
  return [dict(r, caption=cap) for n in names for cap, r in sweeps[n]["captions"].items() if where(cap, r)]


def line(label, rows):
  janus = [r["janus"] for r in rows if r["janus"] is not None]
  return (f"| {label} | " + " | ".join(f"{mean(rows, k):.3f}" for k in METRICS)
          + f" | {sum(janus)}/{len(janus)} |")


def main():
  sweeps = json.load(open(os.path.join(HERE, "sweeps.json")))
  print("| sweep | " + " | ".join(METRICS) + " | janus |")
  groups = {"default, seeds 3-5": ["default_s3", "default_s4", "default_s5"],
            "t_max_final 0.35, seeds 3-5": ["tmax035_s3", "tmax035_s4", "tmax035_s5"]}
  for label, names in groups.items():
    print(line(label, rows_of(sweeps, names)))
    print(line(label + ", training pairs", rows_of(sweeps, names, lambda c, r: not r["held_out"])))
    print(line(label + ", held-out pairs", rows_of(sweeps, names, lambda c, r: r["held_out"])))
  for name in sweeps:
    print(line(name, rows_of(sweeps, [name])))
  for label, names in groups.items():
    for part in ("colour", "shape"):
      by = collections.defaultdict(list)
      for r in rows_of(sweeps, names):
        words = r["caption"].split()
        by[words[1] if part == "colour" else words[2]].append(r)
      print(f"\n{label}, per {part}: name colour_R-P (calibrated judge) colour_error iou")
      for k, rows in by.items():
        print(f"  {k}: {mean(rows, 'color_r_precision'):.2f} ({mean(rows, 'color_r_precision_calibrated'):.2f}) "
              f"{mean(rows, 'color_error'):.2f} {mean(rows, 'iou'):.2f}")


if __name__ == "__main__":
  main()
