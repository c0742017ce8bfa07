"""Errors a user can cause and fix. `main` prints their message as one paragraph, no traceback."""


class UserError(Exception):
  """A problem with the user's input or environment; the message names it and the fix."""


class ConfigError(UserError):
  """A config value is invalid."""


class WorkdirError(UserError):
  """The work directory can't be used (unwritable, or holds a run of another config)."""


class DivergenceError(UserError):
  """The optimisation produced NaN or infinite values."""
