"""Command line: python -m dreamfusion_jax.main --config=configs/smoke.py --workdir=DIR [--config.FIELD=VALUE].

Thin by design: the library (`dreamfusion_jax.train.train_and_evaluate`) is what tests and notebooks call.
"""

import re
import sys

from absl import app, flags
from ml_collections import config_flags

from dreamfusion_jax import compilation_cache, logs
from dreamfusion_jax.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/smoke.py.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs; a run there resumes.")
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
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except UserError as e:
    _fail(str(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with unknown --config.FIELD overrides reported as one clear sentence."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections raises these for an unknown field.
    text = e.args[0] if e.args else str(e)
    found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", str(text))  # The message starts with the quoted name.
    name = found.group(0) if found else str(text)
    hint = re.search(r'Did you mean "([^"]+)"', str(text))
    given = [a for a in argv if a.startswith("--config.") and name in a.split("=")[0].split(".")]
    shown = given[0].split("=")[0] if given else name
    suggestion = f" Did you mean '{hint.group(1)}'?" if hint else ""
    _fail(
      f"The config has no field '{name}' ({shown}).{suggestion} Check its spelling against "
      "dreamfusion_jax/base_config.py, which lists every field with a comment; fields are set with "
      "--config.FIELD=VALUE, e.g. --config.num_steps=2000."
    )
  except flags.Error as e:
    _fail(f"{e}. Run with --helpshort to see the flags.")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run():
  logs.quiet_orbax()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
