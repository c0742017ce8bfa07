"""Log set-up shared by the command-line tools."""

import logging as std_logging

from absl import logging


class QuietOrbax:
  """A log filter that keeps INFO chatter that reads as trouble but is not out of a run's log: orbax's per-save
  lines, and JAX's probe of backends this machine lacks ("Unable to initialize backend 'tpu': ... libtpu.so" on
  every CPU or GPU machine). Warnings and errors still show, and so does every other INFO line; orbax's errors
  lose their tracebacks (it logs a failed background save from each thread it passes through; the run confirms
  every save, checkpointing.Checkpoints.confirm, and reports a failure as one paragraph).
  """

  def filter(self, record):
    if "orbax" in record.pathname:
      if record.exc_info or record.exc_text:
        record.exc_info, record.exc_text = None, None
      return record.levelno >= std_logging.WARNING
    if record.levelno >= std_logging.WARNING:
      return True
    return not (record.pathname.endswith("xla_bridge.py") and record.getMessage().startswith("Unable to initialize"))


def quiet_orbax() -> None:
  """Installs QuietOrbax on absl's log handler."""
  logging.get_absl_handler().addFilter(QuietOrbax())
