"""The Shapes benchmark sweep: many captions x seeds through DreamFusion, each scored against ground truth.

  python benchmarks/shapes_sweep.py --config=configs/default.py --captions=heldout --seeds=4 \
      --workdir_root=/tmp/shapes_sweep [--no_view_prompts] [-- --config.num_steps=5000 ...]

For each caption, one multi-seed run (`python -m dreamfusion_jax.main --config.num_seeds=SEEDS`, in
WORKDIR_ROOT/<caption>) and its evaluation (`python -m dreamfusion_jax.evaluate`, which writes
evaluation.json there). Runs are separate processes, so each gets the whole accelerator; a
finished run is not retrained (main resumes it and finds nothing to do) and, with --skip_evaluated,
not re-scored. Then WORKDIR_ROOT/summary.md (a table) and summary.json hold, per caption and
overall: color_r_precision, geo_r_precision, mean IoU, color_error, and the Janus rate.

--captions: 'all' (every colour x shape), 'heldout' (shapes.HELD_OUT), an integer N (N random
captions, --caption_seed), or captions separated by ';' ("a red cube;a blue teardrop").
--no_view_prompts turns view-dependent prompting off (--config.camera.view_dependent_prompts=false),
to measure the Janus rate without it. Arguments after '--' (and unknown --config.FIELD=VALUE flags)
are passed to every run.

Overall numbers weight every caption equally (the mean of per-caption means); the Janus rate
pools the seeds of the asymmetric captions (shapes.ASYMMETRIC). 'train' and 'held_out' rows split
the captions by whether the prior saw the pair.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METRICS = ("color_r_precision", "geo_r_precision", "iou", "color_error")


def shapes_module():
  from dreamfusion_jax import shapes  # Imported late: --help needs no JAX.
  return shapes


def select_captions(spec: str, seed: int) -> list[str]:
  shapes = shapes_module()
  every = [shapes.caption(c, s) for s in shapes.SHAPES for c in shapes.COLOUR_NAMES]
  if spec == "all":
    return every
  if spec == "heldout":
    return [shapes.caption(c, s) for c, s in shapes.HELD_OUT]
  if spec.isdigit():
    import random
    return sorted(random.Random(seed).sample(every, min(int(spec), len(every))))
  captions = [c.strip() for c in spec.split(";") if c.strip()]
  for c in captions:
    shapes.parse_caption(c)  # A ValueError names a caption outside the world.
  return [shapes.caption(*shapes.parse_caption(c)) for c in captions]


def slug(caption: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_")


def run_commands(args, caption: str, workdir: str, extra: list[str]) -> tuple[list[str], list[str]]:
  train = [sys.executable, "-m", "dreamfusion_jax.main", f"--config={args.config}", f"--workdir={workdir}",
           f"--config.prompt={caption}", f"--config.num_seeds={args.seeds}", f"--config.seed={args.first_seed}",
           "--config.progress_bar=false"]
  if args.no_view_prompts:
    train.append("--config.camera.view_dependent_prompts=false")
  train += extra
  evaluate = [sys.executable, "-m", "dreamfusion_jax.evaluate", f"--workdir={workdir}"]
  if args.classifier_dir:
    evaluate.append(f"--classifier_dir={args.classifier_dir}")
  return train, evaluate


def mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def caption_row(caption: str, evaluation: dict | None, error: str | None) -> dict:
  shapes = shapes_module()
  colour, shape = shapes.parse_caption(caption)
  row = dict(caption=caption, held_out=(colour, shape) in shapes.HELD_OUT, asymmetric=shape in shapes.ASYMMETRIC,
             error=error)
  if evaluation is None:
    row.update({m: None for m in METRICS}, janus_rate=None, janus_count=None, num_seeds=0)
    return row
  row.update({m: evaluation["mean"][m] for m in METRICS})
  seeds = evaluation["per_seed"].values()
  janus = [s["janus"] for s in seeds if s.get("janus") is not None]
  row.update(janus_rate=evaluation["mean"]["janus_rate"], janus_count=sum(janus) if janus else None,
             num_seeds=len(evaluation["per_seed"]), step=evaluation["step"])
  return row


def overall(rows: list[dict]) -> dict:
  ok = [r for r in rows if r["num_seeds"]]
  out = {m: mean([r[m] for r in ok]) for m in METRICS}
  asym = [r for r in ok if r["asymmetric"] and r["janus_count"] is not None]
  seeds = sum(r["num_seeds"] for r in asym)
  out["janus_rate"] = sum(r["janus_count"] for r in asym) / seeds if seeds else None
  out["num_captions"] = len(ok)
  out["num_failed"] = len(rows) - len(ok)
  return out


def fmt(v) -> str:
  return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def markdown(rows: list[dict], summary: dict, header: str) -> str:
  cols = ("caption", "held_out", *METRICS, "janus_rate", "num_seeds")
  lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    cells = [r["caption"] + (" (failed)" if r["error"] else ""), "yes" if r["held_out"] else ""]
    cells += [fmt(r[m]) for m in METRICS] + [fmt(r["janus_rate"]), fmt(r["num_seeds"])]
    lines.append("| " + " | ".join(cells) + " |")
  for name in ("overall", "train", "held_out"):
    s = summary[name]
    lines.append("| " + " | ".join([f"**{name}** ({s['num_captions']} captions)", ""]
                                   + [fmt(s[m]) for m in METRICS] + [fmt(s["janus_rate"]), ""]) + " |")
  return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              allow_abbrev=False)
  p.add_argument("--config", default="configs/default.py", help="Config file of every run.")
  p.add_argument("--captions", default="heldout", help="all | heldout | N (random) | 'a red cube;a blue teardrop'.")
  p.add_argument("--caption_seed", type=int, default=0, help="Seed of the random caption choice.")
  p.add_argument("--seeds", type=int, default=4, help="Seeds per caption (one multi-seed run).")
  p.add_argument("--first_seed", type=int, default=0, help="config.seed of every run.")
  p.add_argument("--workdir_root", required=True, help="One run folder per caption, and the summary, go here.")
  p.add_argument("--no_view_prompts", action="store_true", help="Set camera.view_dependent_prompts=false.")
  p.add_argument("--classifier_dir", default=None, help="The judge's export (default: the package's assets).")
  p.add_argument("--skip_evaluated", action="store_true", help="Reuse an existing evaluation.json.")
  p.add_argument("--dry_run", action="store_true", help="Print the commands only.")
  args, unknown = p.parse_known_args()
  extra = [a for a in unknown if a != "--"]
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"unrecognized arguments: {' '.join(bad)} (only --config.FIELD=VALUE overrides are passed to the runs)")
  if not os.path.isfile(os.path.join(ROOT, args.config)) and not os.path.isfile(args.config):
    p.error(f"--config={args.config} does not exist; pass a file of configs/, e.g. --config=configs/paper.py.")
  try:
    captions = select_captions(args.captions, args.caption_seed)
  except ValueError as e:
    p.error(str(e))
  os.makedirs(args.workdir_root, exist_ok=True)
  rows = []
  for i, caption in enumerate(captions):
    workdir = os.path.join(os.path.abspath(args.workdir_root), slug(caption))
    train_cmd, eval_cmd = run_commands(args, caption, workdir, extra)
    print(f"[{i + 1}/{len(captions)}] {caption}: python {shlex.join(train_cmd[1:])}", flush=True)
    if args.dry_run:
      continue
    result_path = os.path.join(workdir, "evaluation.json")
    error = None
    if not (args.skip_evaluated and os.path.isfile(result_path)):
      for cmd in (train_cmd, eval_cmd):
        proc = subprocess.run(cmd, cwd=ROOT)
        if proc.returncode:
          error = f"{cmd[2]} exited with status {proc.returncode}"
          break
    evaluation = None
    if error is None:
      with open(result_path) as f:
        evaluation = json.load(f)
    rows.append(caption_row(caption, evaluation, error))
    write_summary(args, rows, extra)  # After every caption, so a long sweep can be read while it runs.
  if args.dry_run:
    return
  summary = write_summary(args, rows, extra)
  print(json.dumps(summary["overall"]))


def write_summary(args, rows: list[dict], extra: list[str]) -> dict:
  summary = dict(
      overall=overall(rows), train=overall([r for r in rows if not r["held_out"]]),
      held_out=overall([r for r in rows if r["held_out"]]), captions=rows,
      settings=dict(config=args.config, captions=args.captions, seeds=args.seeds, first_seed=args.first_seed,
                    view_dependent_prompts=not args.no_view_prompts, overrides=extra,
                    classifier_dir=args.classifier_dir, date=datetime.date.today().isoformat()))
  header = (f"# Shapes sweep: {args.config}, {len(rows)} captions x {args.seeds} seeds, view-dependent prompts "
            f"{'off' if args.no_view_prompts else 'on'}" + (f", overrides {' '.join(extra)}" if extra else ""))
  write_atomic(os.path.join(args.workdir_root, "summary.json"), json.dumps(summary, indent=2))
  write_atomic(os.path.join(args.workdir_root, "summary.md"), markdown(rows, summary, header))
  return summary


if __name__ == "__main__":
  main()
