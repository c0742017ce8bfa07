"""Log set-up shared by the command-line tools."""

import logging as std_logging

from absl import logging


class QuietOrbax:
  """A log filter that keeps orbax's per-save INFO chatter out of a run's log (its warnings and errors still show)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
  """Installs QuietOrbax on absl's log handler."""
  logging.get_absl_handler().addFilter(QuietOrbax())
