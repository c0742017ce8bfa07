"""Graceful stops: SIGTERM (a preempted Cloud VM, a scheduler) and SIGINT (Ctrl-C) end a run at a checkpoint.

The first signal is a request that the run loop polls after each step: it finishes the step in flight,
writes and confirms a checkpoint, and ends with errors.Interrupted (`main` exits with EXIT_INTERRUPTED).
Before the first step and during the exports there is nothing to save, so a signal ends the process at
once with that status. The first signal also hands both signals back to the OS's default action, so a
second one ends the process at once, even inside a long compile.

On a multi-host job the hosts must stop at the same step (every host writes its shards of the same
checkpoint): they agree at the log records, with one tiny all-gather of the flag. A single process polls
a Python attribute and pays nothing.
"""

import os
import signal
import sys
import threading
from typing import Callable, Optional

import jax
import numpy as np

from dreamfusion_jax.errors import EXIT_INTERRUPTED

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Signal handlers for the duration of a run, and the flag they set.

  at_once: while set, a signal ends the process at once with EXIT_INTERRUPTED after printing at_once(name)
  (the phases with nothing to save); while None, a signal is a request polled with `agreed`.
  """

  def __init__(self):
    self.signal_name: Optional[str] = None
    self.at_once: Optional[Callable[[str], str]] = None
    self._previous: dict = {}
    self._processes: Optional[int] = None  # jax.process_count(), asked once.

  def install(self) -> "StopRequest":
    """Installs the handlers (only the main thread can; elsewhere signals keep their handlers)."""
    if threading.current_thread() is threading.main_thread():
      for s in SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def uninstall(self) -> None:
    """Restores the handlers there were before `install`."""
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    self.signal_name = name
    for s in SIGNALS:  # A second signal: the OS's default, which ends the process at once.
      signal.signal(s, signal.SIG_DFL)
    if self.at_once is not None:
      print(f"interrupted: {self.at_once(name)}", file=sys.stderr, flush=True)
      os._exit(EXIT_INTERRUPTED)
    print(
      f"{name}: finishing the step in flight and writing a checkpoint (a second signal stops at once, "
      "losing the steps since the last checkpoint).",
      file=sys.stderr,
      flush=True,
    )

  def agreed(self, sync_point: bool) -> bool:
    """Whether the run stops after this step. Multi-host: decided only at sync points, by every host alike."""
    if self._processes is None:
      self._processes = jax.process_count()
    if self._processes == 1:
      return self.signal_name is not None
    if not sync_point:
      return False
    from jax.experimental import multihost_utils

    # The decision is the gathered flags alone, which every host sees alike: a signal that lands here after this
    # host's flag was read (during the gather) must wait for the next sync point, or this host alone would stop
    # and wait in the checkpoint's collectives for hosts that went on (a hang seen in CI).
    mine = np.int32(0 if self.signal_name is None else 1)
    anyone = bool(int(np.max(multihost_utils.process_allgather(mine))))
    if anyone and self.signal_name is None:
      self.signal_name = "a signal to another host"
    return anyone
