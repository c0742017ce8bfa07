"""What the Shapes trainers (train_prior, judge) share beyond dreamfusion_jax.checkpointing and metrics: the
command line, the wall-clock deadline and the periodic metrics record.

The command line is dreamfusion_jax.main's: --config=FILE[:VARIANT] (an ml_collections config file, locked),
--workdir=DIR and --config.FIELD=VALUE overrides; a user mistake prints one 'error: ...' paragraph and
exits with status 2.
"""

import math
import sys
from typing import Callable, Optional, Sequence

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from dreamfusion_jax import cli, logs
from dreamfusion_jax import metrics as metrics_lib
from dreamfusion_jax.errors import UserError


def define_flags(example: str, flag_values: flags.FlagValues = flags.FLAGS, argv: Optional[list[str]] = None) -> None:
  """--config and --workdir; example: the config file to name in the help, e.g. 'configs/judge.py'.

  Called by a trainer's command line only (other modules' command lines define --workdir too); `parse` uses
  its own FlagValues. argv: where the --config.FIELD overrides are read from (None: sys.argv).
  """
  config_flags.DEFINE_config_file(
    "config", None, f"Config file, e.g. {example}.", flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and the export; a run there resumes.", flag_values=flag_values
  )
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def parse_flags(argv: list[str], example: str, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's parser (cli.parse_flags); raises UserError with one clear sentence for a bad config or flag."""
  return cli.parse_flags(
    flag_values, argv, fields_doc=example, example_config=example, example_override="--config.steps=2000"
  )


def parse(argv: list[str], example: str) -> tuple[ml_collections.ConfigDict, str]:
  """(config, workdir) of a trainer's command line, argv[0] the program, parsed as `run` parses it but on a
  private FlagValues (tests, notebooks); raises UserError as parse_flags does."""
  values = flags.FlagValues()
  define_flags(example, values, argv)
  parse_flags(argv, example, values)
  return values.config, values.workdir


def run(train: Callable[[ml_collections.ConfigDict, str], dict], example: str) -> None:
  """A trainer's `python -m` entry point: defines and parses the flags, then calls train(config, workdir)."""

  def parse_or_fail(argv):
    try:
      return parse_flags(argv, example)
    except UserError as e:
      cli.fail(str(e))

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
      train(flags.FLAGS.config, flags.FLAGS.workdir)
    except UserError as e:
      cli.fail(str(e))

  define_flags(example)
  for name in ("config", "workdir"):  # Key flags of the main module: --helpshort lists them.
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  logs.quiet_orbax()
  app.run(main, flags_parser=parse_or_fail)


def deadline(started: float, time_limit_min: float) -> float:
  """The wall-clock time (time.time()) at which a run started at `started` stops; inf for no limit (0)."""
  return started + 60.0 * time_limit_min if time_limit_min > 0 else math.inf


def record(
  writer: metrics_lib.MetricsWriter,
  metrics: dict,
  step: int,
  last_saved: Optional[int],
  advice: str,
  extra: dict,
  keys: Sequence[str] = ("loss", "grad_norm"),
) -> dict:
  """Fetches a step's metrics (waiting for the device), stops on NaN (metrics.check_finite: nothing of the
  diverged step is written) and appends them with `extra` to metrics.jsonl; returns them as floats."""
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  metrics_lib.check_finite(host, step, last_saved, advice, keys=keys)
  writer.write(step, host, extra)
  return host
