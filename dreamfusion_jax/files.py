"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Everything the package writes outside orbax's checkpoints goes through `atomic_write`: a temporary
file in the target's directory, then `os.replace`, which POSIX makes atomic within a filesystem.
"""

import json
import os
import tempfile
from typing import Any, Callable


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
