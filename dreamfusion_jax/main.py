"""Command line: python -m dreamfusion_jax.main --config=configs/smoke.py --workdir=DIR [--config.FIELD=VALUE].

Thin by design: the library (`dreamfusion_jax.train.train_and_evaluate`) is what tests and notebooks call.
"""

from absl import app, flags
from ml_collections import config_flags

from dreamfusion_jax import cli, compilation_cache, logs
from dreamfusion_jax.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/smoke.py.", lock_config=True)
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
  import jax  # Imported after flag parsing so that --help is fast.

  if FLAGS.jax_distributed:
    jax.distributed.initialize()
  compilation_cache.enable(FLAGS.compilation_cache)
  from dreamfusion_jax import train

  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, reexport=FLAGS.reexport)
  except UserError as e:
    cli.fail(str(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser; a bad config file, an unknown --config.FIELD or a bad flag ends in one clear paragraph."""
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
