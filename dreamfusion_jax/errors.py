"""Errors a user can cause and fix. `main` prints their message as one paragraph, no traceback."""

# The exit status of a run stopped by SIGTERM or SIGINT after writing its checkpoint (sysexits.h's
# EX_TEMPFAIL: "try again later"). Rerunning the same command resumes it, so launchers and schedulers
# can requeue on it. A second signal ends the process at once (status 128 + the signal: 143, 130).
EXIT_INTERRUPTED = 75


class UserError(Exception):
  """A problem with the user's input or environment; the message names it and the fix."""


class ConfigError(UserError):
  """A config value is invalid."""


class WorkdirError(UserError):
  """The work directory can't be used (unwritable, locked by another run, or holds a run of another config)."""


class DiskFullError(WorkdirError):
  """The disk holding the work directory is full."""


class DivergenceError(UserError):
  """The optimisation produced NaN or infinite values."""


class Interrupted(Exception):
  """The run stopped on a signal after writing its checkpoint; the message says where it resumes.

  Not a UserError: `main` exits with EXIT_INTERRUPTED, not 2.
  """
