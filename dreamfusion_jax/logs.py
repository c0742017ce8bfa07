"""Log set-up shared by the command-line tools."""

import logging as std_logging

from absl import logging


class QuietOrbax:
  """A log filter that keeps orbax's per-save INFO chatter out of a run's log, and its errors to one line each.

  orbax logs a failed background save with its traceback from each thread it passes through; the run
  confirms every save (checkpointing.Checkpoints.confirm) and reports a failure as one paragraph.
  """

  def filter(self, record):
    if "orbax" not in record.pathname:
      return True
    if record.exc_info or record.exc_text:
      record.exc_info, record.exc_text = None, None
    return record.levelno >= std_logging.WARNING


def quiet_orbax() -> None:
  """Installs QuietOrbax on absl's log handler."""
  logging.get_absl_handler().addFilter(QuietOrbax())
