"""The work directory's files: atomic writes, the one-writer lock, and telling a full disk from other errors.

Everything the package writes outside orbax's checkpoints goes through `atomic_write`: a temporary
file in the target's directory, then `os.replace`, which POSIX makes atomic within a filesystem.
"""

import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from typing import Any, Callable, Optional

from absl import logging

from dreamfusion_jax.errors import DiskFullError, WorkdirError


def _file_mode() -> int:
  """The mode open() gives a new file under this process's umask."""
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write(path: str, write: Callable[[str], None]) -> str:
  """Calls write(tmp_path) on a fresh temporary file beside `path`, then moves it over `path`; returns path.

  The temporary file keeps path's extension (encoders pick their format from it) and is removed if
  write raises; the file gets the permissions a plain open() would give it.
  """
  directory, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=os.path.splitext(name)[1], dir=directory)
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes files private (0600).
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def write_bytes(path: str, data: bytes) -> str:
  """Writes `data` to `path` atomically; returns path."""

  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(data)

  return atomic_write(path, write)


def write_json(path: str, obj: Any) -> str:
  """Writes obj as indented JSON to `path` atomically; returns path."""
  return write_bytes(path, json.dumps(obj, indent=2).encode())


# ----------------------------------------------------------------------------- one writer per workdir

LOCK_NAME = ".lock"


class WorkdirLock:
  """An exclusive flock on DIR/.lock, held while a run writes into DIR.

  The OS releases it when the process ends in any way (exit, crash, SIGKILL), so a lock file left by a
  dead process never blocks anyone: only a live holder does. The file holds the holder's PID, host and
  start time, for the message the next run gets. The file is never deleted (deleting a lock file races
  with a process that has just opened it).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.fd: Optional[int] = None

  def acquire(self) -> None:
    """Takes the lock; WorkdirError naming the holder if another live process has it."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.pread(fd, 512, 0).decode(errors="replace").split()
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):  # A filesystem without flock.
        logging.warning("Could not lock %s (%s); nothing stops a second run from writing there.", self.path, e)
        return
      pid, host = (holder + ["?", "?"])[:2]
      raise WorkdirError(
        f"The work directory '{os.path.dirname(self.path)}' is in use by another run (PID {pid} on host {host}): "
        "two runs writing the same checkpoints and metrics would mix them. Wait for that run to end, stop it "
        f"(kill -TERM {pid} on {host} makes it checkpoint and exit), or give this run another --workdir."
      ) from None
    self.fd = fd
    try:  # Who holds it; the lock does not depend on this (a full disk may refuse the write).
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
    except OSError:
      pass

  def release(self) -> None:
    if self.fd is not None:
      os.close(self.fd)  # Closing the only descriptor releases the flock.
      self.fd = None


# ----------------------------------------------------------------------------- a full disk

_FULL_DISK_TEXTS = ("No space left on device", "Disk quota exceeded", "ENOSPC", "EDQUOT")


def is_disk_full(error: BaseException) -> bool:
  """Whether error, or an error it was raised from, says the disk (or the user's quota) is full.

  orbax re-raises tensorstore's failures as other types, so the text counts too; an out-of-memory
  RESOURCE_EXHAUSTED from XLA does not match.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(text in str(error) for text in _FULL_DISK_TEXTS):
      return True
    error = error.__cause__ or error.__context__
  return False


def disk_full_error(workdir: str, resume_step: Optional[int], known: bool = True) -> DiskFullError:
  """The one paragraph a run that filled the disk ends with. known: whether resume_step was found yet (a
  full disk met before the checkpoints were read leaves it unknown)."""
  if not known:
    resumes = "it resumes from its latest checkpoint"
  elif resume_step is not None:
    resumes = f"it resumes from step {resume_step}, the last checkpoint written completely"
  else:
    resumes = "no checkpoint was written yet, so it starts anew"
  return DiskFullError(
    f"The disk holding the work directory '{os.path.abspath(workdir)}' is full (No space left on device), so "
    "the run stopped; what it had written is intact, and a checkpoint it was writing is left out. Free space "
    f"on that disk (or move the workdir to one with room) and rerun the same command: {resumes}."
  )
