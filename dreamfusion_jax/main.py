"""DreamFusion from a caption: trains a NeRF with a diffusion prior by Score Distillation Sampling, then exports it.

The main job (the embedded Shapes prior, 'a red cube'; 4-9 minutes on a 2-core CPU, under a minute on a GPU):

  python -m dreamfusion_jax.main --config=configs/default.py --workdir=/tmp/default
  python -m dreamfusion_jax.evaluate --workdir=/tmp/default      # scores it against the true object

A run in an existing --workdir resumes from its last checkpoint. Outputs: DIR/seed_K/ (turntable.mp4,
mesh.glb, mesh.ply, views.png), DIR/validation/, DIR/metrics.jsonl (README.md, 'Outputs').
Thin by design: the library (`dreamfusion_jax.train.train_and_evaluate`) is what tests and notebooks call.
Exit status: 0 done; 2 a problem the message names (bad input, a locked or unusable workdir, a full disk,
a divergence); EXIT_INTERRUPTED (75) stopped by SIGTERM or SIGINT at a checkpoint: rerunning resumes it.
A hung run: `kill -USR1 PID` prints the Python stack of each of its threads to stderr.
"""

import faulthandler
import signal
import sys

from absl import app, flags
from ml_collections import config_flags

from dreamfusion_jax import cli, compilation_cache, logs
from dreamfusion_jax.errors import EXIT_INTERRUPTED, Interrupted, UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/default.py.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs; a run there resumes.")
flags.DEFINE_bool(
  "reexport", False, "Rewrite every export of a finished run (by default it writes only the files that are missing)."
)
flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (multi-host TPU VM or GPU jobs).")
compilation_cache.define_flag()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # `kill -USR1 PID` prints every thread's Python stack to stderr: where a hung (e.g. multi-host) run waits.
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  import jax  # Imported after flag parsing so that --help is fast.

  if FLAGS.jax_distributed:
    jax.distributed.initialize()
  compilation_cache.enable(FLAGS.compilation_cache)
  from dreamfusion_jax import train

  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, reexport=FLAGS.reexport)
  except UserError as e:
    cli.fail(str(e))
  except Interrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


# The fields most runs set, shown by --help with base_config's comment on each.
COMMON_FIELDS = (
  "prompt",
  "num_steps",
  "num_seeds",
  "seed",
  "guidance.model",
  "guidance.scale",
  "render.image_size",
  "log_every",
  "checkpoint_every",
  "export.enabled",
  "progress_bar",
)


def help_text() -> str:
  """--help: what main does, the main job's command, its flags and the config fields most runs set."""
  from dreamfusion_jax import config_rules

  comments = config_rules.field_comments()
  lines = [__doc__.strip(), "", "Flags:"]
  for name in ("config", "workdir", "reexport", "compilation_cache", "jax_distributed"):
    flag = FLAGS[name]
    lines.append(f"  --{name}: {flag.help} (default: {flag.default!r})")
  lines += ["", "Common config fields, set as --config.FIELD=VALUE (every field: dreamfusion_jax/base_config.py):"]
  lines += [f"  --config.{name}: {comments.get(name, '')}" for name in COMMON_FIELDS]
  lines += ["", "All of absl's flags: --helpfull."]
  return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser; a bad config file, an unknown --config.FIELD or a bad flag ends in one clear paragraph."""
  if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
    print(help_text())
    sys.exit(0)
  try:
    return cli.parse_flags(
      FLAGS,
      argv,
      fields_doc="dreamfusion_jax/base_config.py",
      example_config="configs/default.py",
      example_override="--config.num_steps=2000",
    )
  except UserError as e:
    cli.fail(str(e))


def run():
  logs.quiet_orbax()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
