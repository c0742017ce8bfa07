"""Checkpoints that heal and saves that are confirmed: every corruption of the latest checkpoint the issue-18
campaign found ends in a resume from the one before (moved aside, never deleted), and a failed asynchronous
save, a full disk among them, is reported within log_every steps with the step a rerun resumes from."""

import errno
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import tiny_config

from dreamfusion_jax import train
from dreamfusion_jax.checkpointing import DAMAGED, Checkpoints, SaveFailed
from dreamfusion_jax.errors import DiskFullError, WorkdirError


def _params(state):
  return jax.tree.map(np.asarray, jax.device_get(state.params))


def _logged_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """(workdir with checkpoints 2 and 4 of a 4-step run, that run's final params, its config)."""
  workdir = str(tmp_path_factory.mktemp("made") / "run")
  config = tiny_config(**{"num_steps": 4, "checkpoint_every": 2})
  state = train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  return workdir, _params(state), config


def _largest_file(folder):
  return max(glob.glob(os.path.join(folder, "**", "*"), recursive=True), key=lambda p: os.path.getsize(p))


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garbage(path):
  with open(path, "wb") as f:
    f.write(os.urandom(max(os.path.getsize(path), 64)))


def _empty(folder):
  for name in os.listdir(folder):
    p = os.path.join(folder, name)
    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


CORRUPTIONS = {
  "missing config item": lambda d: shutil.rmtree(os.path.join(d, "config")),
  "missing state item": lambda d: shutil.rmtree(os.path.join(d, "state")),
  "truncated array file": lambda d: _truncate(_largest_file(os.path.join(d, "state", "ocdbt.process_0"))),
  "garbage array file": lambda d: _garbage(_largest_file(os.path.join(d, "state", "ocdbt.process_0"))),
  "garbage state metadata": lambda d: _garbage(os.path.join(d, "state", "_METADATA")),
  "garbage config json": lambda d: _garbage(os.path.join(d, "config", "metadata")),
  "config json not a dict": lambda d: open(os.path.join(d, "config", "metadata"), "w").write("[1, 2]"),
  "emptied step folder": _empty,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_one_before_resumes(
  tmp_path, two_checkpoints, corruption, caplog
):
  caplog.set_level("INFO")
  made, final, config = two_checkpoints
  workdir = str(tmp_path / "run")
  shutil.copytree(made, workdir)
  CORRUPTIONS[corruption](os.path.join(workdir, "checkpoints", "4"))
  damaged_bytes = sorted(
    (os.path.relpath(p, os.path.join(workdir, "checkpoints", "4")), open(p, "rb").read())
    for p in glob.glob(os.path.join(workdir, "checkpoints", "4", "**", "*"), recursive=True)
    if os.path.isfile(p)
  )

  state = train.train_and_evaluate(config, workdir)  # Resumes from 2 and trains steps 3 and 4 again.

  jax.tree.map(np.testing.assert_array_equal, final, _params(state))
  assert "Resuming from the checkpoint at step 2" in caplog.text
  moved = os.listdir(os.path.join(workdir, DAMAGED))
  assert len(moved) == 1 and moved[0].startswith("4-"), moved
  assert "The checkpoint at step 4 does not restore" in caplog.text and moved[0] in caplog.text
  kept = os.path.join(workdir, DAMAGED, moved[0])
  assert damaged_bytes == sorted(
    (os.path.relpath(p, kept), open(p, "rb").read())
    for p in glob.glob(os.path.join(kept, "**", "*"), recursive=True)
    if os.path.isfile(p)
  ), "the damaged checkpoint was not kept as it was"
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]  # 4 written anew.


def test_all_checkpoints_damaged_is_one_error_naming_them_and_nothing_is_deleted(tmp_path, two_checkpoints):
  made, _, config = two_checkpoints
  workdir = str(tmp_path / "run")
  shutil.copytree(made, workdir)
  for step in ("2", "4"):
    _garbage(os.path.join(workdir, "checkpoints", step, "state", "_METADATA"))
  with pytest.raises(WorkdirError, match=r"No checkpoint in .* restores: step 4 \(.*\); step 2 \(") as e:
    train.train_and_evaluate(config, workdir)
  assert "Nothing was deleted" in str(e.value)
  assert sorted(m.split("-")[0] for m in os.listdir(os.path.join(workdir, DAMAGED))) == ["2", "4"]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == []
  # The advice works: the same command starts anew.
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step[0]) == 4


def test_a_config_mismatch_is_reported_only_for_a_checkpoint_that_reads(tmp_path, two_checkpoints):
  made, _, config = two_checkpoints
  workdir = str(tmp_path / "run")
  shutil.copytree(made, workdir)
  _garbage(os.path.join(workdir, "checkpoints", "4", "state", "_METADATA"))
  other = tiny_config(**{"num_steps": 4, "checkpoint_every": 2, "field.mlp_width": 8})
  with pytest.raises(WorkdirError, match=r"holds a checkpoint of a different config \(field.mlp_width"):
    train.train_and_evaluate(other, workdir)
  assert [m.split("-")[0] for m in os.listdir(os.path.join(workdir, DAMAGED))] == ["4"]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]  # The intact one is untouched.


def test_an_unknown_guidance_model_is_named_before_the_resume_check(tmp_path, two_checkpoints):
  made, _, _ = two_checkpoints
  from dreamfusion_jax.errors import ConfigError

  with pytest.raises(ConfigError, match="guidance.model='nope' is not a known model"):
    train.train_and_evaluate(tiny_config(**{"guidance.model": "nope"}), made)


def test_evaluate_reads_through_the_same_path_and_moves_nothing(tmp_path, two_checkpoints, caplog):
  from dreamfusion_jax.shapes import evaluate

  made, final, config = two_checkpoints
  workdir = str(tmp_path / "run")
  shutil.copytree(made, workdir)
  _truncate(_largest_file(os.path.join(workdir, "checkpoints", "4", "state", "ocdbt.process_0")))
  step, per_seed = evaluate.restore_params(workdir, config)
  assert step == 2 and "The checkpoint at step 4 does not restore" in caplog.text and "skipping it" in caplog.text
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"] and not os.path.exists(
    os.path.join(workdir, DAMAGED)
  )
  _garbage(os.path.join(workdir, "checkpoints", "2", "state", "_METADATA"))
  with pytest.raises(WorkdirError, match="No checkpoint in .* restores: step 4 .*; step 2"):
    evaluate.restore_params(workdir, config)


def test_a_new_run_that_stops_before_training_leaves_no_checkpoints_folder(tmp_path, monkeypatch):
  def no_prior(cfg):
    raise WorkdirError("no weights here")

  monkeypatch.setattr(train, "build_prior", no_prior)
  with pytest.raises(WorkdirError, match="no weights here"):
    train.train_and_evaluate(tiny_config(), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# ----------------------------------------------------------------------------- failed saves and full disks


def _fail_config_write_at(monkeypatch, step, error):
  """Makes orbax's background write of the checkpoint at `step` fail with `error` (what a full disk does)."""
  from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler

  real = handler.JsonCheckpointHandler._save_fn

  async def failing(self, x, directory):
    if str(step) in [part.split(".")[0] for part in str(directory).split(os.sep)[-2:]]:
      raise error
    return await real(self, x, directory)

  monkeypatch.setattr(handler.JsonCheckpointHandler, "_save_fn", failing)


def test_a_full_disk_during_an_async_save_is_reported_at_the_next_log_record_and_the_rerun_resumes(
  tmp_path, two_checkpoints, monkeypatch
):
  _, final, _ = two_checkpoints
  config = tiny_config(**{"num_steps": 4, "checkpoint_every": 2, "log_every": 1})
  workdir = str(tmp_path / "run")
  _fail_config_write_at(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
  with pytest.raises(DiskFullError) as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert "is full" in message and "no checkpoint was written yet, so it starts anew" in message
  assert "\n" not in message
  assert _logged_steps(workdir)[-1] == 2, "trained past the log record after the failed save"
  monkeypatch.undo()

  state = train.train_and_evaluate(config, workdir)
  jax.tree.map(np.testing.assert_array_equal, final, _params(state))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]  # No unfinished save left.
  assert _logged_steps(workdir) == [1, 2, 3, 4]


def test_a_full_disk_names_the_step_it_resumes_from(tmp_path, monkeypatch):
  config = tiny_config(**{"num_steps": 6, "checkpoint_every": 2, "log_every": 1})
  _fail_config_write_at(monkeypatch, 4, OSError(errno.ENOSPC, "No space left on device"))
  with pytest.raises(DiskFullError, match="rerun the same command: it resumes from step 2, the last checkpoint"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_another_failed_save_is_an_error_with_the_resume_step(tmp_path, monkeypatch):
  config = tiny_config(**{"num_steps": 6, "checkpoint_every": 2, "log_every": 1})
  _fail_config_write_at(monkeypatch, 4, PermissionError(errno.EACCES, "Permission denied"))
  with pytest.raises(WorkdirError, match=r"step 4 could not be written .*Permission denied.*resume from step 2"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_a_full_disk_while_logging_metrics_names_the_resume_step(tmp_path, monkeypatch):
  from dreamfusion_jax import metrics as metrics_lib

  real = metrics_lib.MetricsWriter.write

  def write(self, step, metrics, extra):
    if step == 3:
      raise OSError(errno.ENOSPC, "No space left on device", os.path.join(str(tmp_path), "run", "metrics.jsonl"))
    return real(self, step, metrics, extra)

  monkeypatch.setattr(metrics_lib.MetricsWriter, "write", write)
  config = tiny_config(**{"num_steps": 6, "checkpoint_every": 2, "log_every": 1})
  with pytest.raises(DiskFullError, match="it resumes from step 2"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_checkpoints_lists_no_folder_until_the_first_save(tmp_path):
  ckpts = Checkpoints(str(tmp_path), 2)
  assert ckpts.latest_step() is None and ckpts.restore_latest(ckpts.restore_params) == (None, None)
  assert not os.path.exists(tmp_path / "checkpoints")
  ckpts.close()


def test_a_failed_save_is_reported_only_once_its_other_writes_have_landed(tmp_path, monkeypatch):
  """orbax's wait returns at the first failed part of a save; a part still writing must not outlive confirm."""
  import threading
  import time

  from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler

  late = []

  async def failing(self, x, directory):
    # A sibling write still landing 0.2 s after the failure, as a tensorstore write of the state item can.
    target = os.path.join(os.path.dirname(str(directory)), "late_part")
    late.append(target)
    threading.Timer(0.2, lambda: open(target, "w").write("x" * 1000)).start()
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(handler.JsonCheckpointHandler, "_save_fn", failing)
  ckpts = Checkpoints(str(tmp_path), 2)
  ckpts.save(1, {"w": np.ones(3, np.float32)}, {"a": 1})
  start = time.monotonic()
  with pytest.raises(SaveFailed, match="step 1 could not be written"):
    ckpts.confirm()
  assert late and os.path.exists(late[0]), f"confirm returned after {time.monotonic() - start:.2f} s, before the write"
  ckpts.close()
