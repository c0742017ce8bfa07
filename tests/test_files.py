"""The workdir's files: one writer per workdir (a second run is refused naming the holder, a dead holder never
blocks), and telling a full disk from other errors."""

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import ROOT

from dreamfusion_jax import files
from dreamfusion_jax.errors import WorkdirError

HOLD = "import sys, time; from dreamfusion_jax import files; files.WorkdirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, workdir], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_second_lock_on_a_held_workdir_is_refused_naming_the_holder(tmp_path):
  proc = _holder(str(tmp_path))
  try:
    with pytest.raises(WorkdirError, match=rf"in use by another run \(PID {proc.pid} on host {socket.gethostname()}\)"):
      files.WorkdirLock(str(tmp_path)).acquire()
  finally:
    proc.kill()
    proc.wait()
  lock = files.WorkdirLock(str(tmp_path))  # Killed with SIGKILL: the OS released its lock.
  lock.acquire()
  assert open(tmp_path / files.LOCK_NAME).read().split()[:2] == [str(os.getpid()), socket.gethostname()]
  lock.release()


def test_a_stale_lock_file_never_blocks(tmp_path):
  (tmp_path / files.LOCK_NAME).write_text("999999 elsewhere 2026-01-01T00:00:00\n")
  lock = files.WorkdirLock(str(tmp_path))
  lock.acquire()
  with pytest.raises(WorkdirError):  # Held now, even against another descriptor of this process.
    files.WorkdirLock(str(tmp_path)).acquire()
  lock.release()
  files.WorkdirLock(str(tmp_path)).acquire()


def test_a_second_run_on_a_locked_workdir_exits_2_naming_pid_and_host_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  proc = _holder(str(workdir))
  try:
    cmd = [sys.executable, "-m", "dreamfusion_jax.main", "--config=configs/smoke.py", f"--workdir={workdir}"]
    result = subprocess.run(
      cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300
    )
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert result.returncode == 2, result.stderr[-3000:]
  assert f"in use by another run (PID {proc.pid} on host {socket.gethostname()})" in result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  assert sorted(os.listdir(workdir)) == [files.LOCK_NAME]


def test_is_disk_full_finds_enospc_in_a_chain_and_text_but_not_out_of_memory():
  assert files.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
  assert files.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:
      raise RuntimeError("commit failed") from e
  except RuntimeError as chained:
    assert files.is_disk_full(chained)
  assert files.is_disk_full(ValueError("RESOURCE_EXHAUSTED: Error writing local file: No space left on device"))
  assert not files.is_disk_full(ValueError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GB"))
  assert not files.is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_full_disk_met_before_the_checkpoints_are_read_names_no_wrong_step(tmp_path, monkeypatch):
  """The writability probe is the first write of a run: a full disk there must not claim the run starts anew."""
  import builtins

  from conftest import tiny_config

  from dreamfusion_jax import checks, train
  from dreamfusion_jax.errors import DiskFullError

  def full_open(path, *args, **kwargs):
    if ".write_probe" in str(path):
      raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return builtins.open(path, *args, **kwargs)

  monkeypatch.setattr(checks, "open", full_open, raising=False)  # checks.py's open only.
  with pytest.raises(DiskFullError, match="is full .*it resumes from its latest checkpoint"):
    train.train_and_evaluate(tiny_config(), str(tmp_path / "run"))
