"""Logs that match the checkpoints: on resume, metrics.jsonl and the TensorBoard events are cut back to the
restored step, so that every step appears once."""

import json
import os
import struct

import numpy as np

from dreamfusion_jax import metrics


def _events(board):
  """(tag, step) of every scalar and image summary in the event files of `board` (TFRecords of Event protos)."""
  metrics.import_summary_writer()
  from tensorboardX.proto import event_pb2

  out = []
  for name in sorted(os.listdir(board)):
    data = open(os.path.join(board, name), "rb").read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      out += [(v.tag, event.step) for v in event.summary.value]
  return out


def _write(workdir, steps):
  writer = metrics.MetricsWriter(str(workdir), resume_step=None)
  for step in steps:
    writer.write(step, {"loss": np.float32(step)}, {"steps_per_sec": 1.0})
    writer.image("validation", np.zeros((4, 4, 3), np.uint8), step)
  writer.close()


def test_a_resumed_writer_cuts_metrics_and_tensorboard_back_to_its_step(tmp_path):
  _write(tmp_path, range(1, 11))
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 11, "loss": 0.')  # A write cut short (a kill, a full disk).

  writer = metrics.MetricsWriter(str(tmp_path), resume_step=6)
  for step in range(7, 9):
    writer.write(step, {"loss": np.float32(step)}, {"steps_per_sec": 1.0})
  writer.close()

  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == list(range(1, 9))
  events = _events(tmp_path / "tensorboard")
  for tag in ("loss", "steps_per_sec"):
    assert sorted(step for t, step in events if t == tag) == list(range(1, 9)), tag
  assert sorted(step for t, step in events if t == "validation") == list(range(1, 7))


def test_a_new_run_in_a_workdir_with_old_logs_starts_them_anew(tmp_path):
  _write(tmp_path, range(1, 4))
  metrics.MetricsWriter(str(tmp_path), resume_step=0).close()
  assert open(tmp_path / "metrics.jsonl").read() == ""
  assert _events(tmp_path / "tensorboard") == []


def test_cut_logs_leaves_files_without_later_steps_untouched(tmp_path):
  _write(tmp_path, range(1, 4))
  before = {name: os.stat(tmp_path / "tensorboard" / name).st_mtime_ns for name in os.listdir(tmp_path / "tensorboard")}
  mtime = os.stat(tmp_path / "metrics.jsonl").st_mtime_ns
  metrics.cut_logs(str(tmp_path), 3)
  assert os.stat(tmp_path / "metrics.jsonl").st_mtime_ns == mtime
  assert before == {name: os.stat(tmp_path / "tensorboard" / name).st_mtime_ns for name in before}
