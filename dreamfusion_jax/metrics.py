"""What every training loop of the package records, and how it stops on NaN: DreamFusion runs, the
Shapes prior and the judge share these.
"""

import json
import os
import struct
import time
from typing import Any, Optional, Sequence

import numpy as np

from dreamfusion_jax import files
from dreamfusion_jax.errors import DivergenceError


def check_finite(
  metrics: dict,
  step: int,
  last_checkpoint: Optional[int],
  advice: str,
  seeds: Optional[Sequence[int]] = None,
  keys: Sequence[str] = ("loss", "grad_norm"),
) -> None:
  """Raises DivergenceError when metrics[key] (a scalar, or one value per seed) is NaN or infinite.

  last_checkpoint: the step of the last checkpoint written (None: none yet); advice: what to change,
  one sentence. With seeds, the message names the seeds that diverged.
  """
  values = np.stack([np.asarray(metrics[k], np.float64).reshape(-1) for k in keys])  # [keys, seeds]
  bad = ~np.all(np.isfinite(values), axis=0)
  if not bad.any():
    return
  which = f" for seed(s) {[int(s) for s, b in zip(seeds, bad) if b]}" if seeds is not None else ""
  saved = (
    f"the last checkpoint (step {last_checkpoint}) is intact and the run resumes from it"
    if last_checkpoint is not None
    else "no checkpoint was written yet"
  )
  raise DivergenceError(
    f"The loss or its gradient became NaN or infinite by step {step}{which}; the run stopped and {saved}. {advice}"
  )


def import_summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch.

  tensorboardX's writer module imports torch whenever it is installed, only to accept torch tensors
  (this project passes numpy arrays); with CUDA that import took ~5 s of the GPU main job. While
  sys.modules['torch'] is None, `import torch` raises ImportError, which tensorboardX handles.
  """
  import sys

  if "torch" in sys.modules or "tensorboardX" in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricsWriter:
  """Appends one record per call to DIR/metrics.jsonl and DIR/tensorboard/.

  With seeds (a multi-seed run), each metric holds one value per seed and the record is
  {'step': N, 'name': mean over seeds, 'seed_K/name': value, ...}; without, {'step': N, 'name': value}.
  `enabled=False` (the non-lead processes of a multi-host job) writes nothing. resume_step: the step
  the run starts at (its checkpoint's; 0 for a new run); what was logged after it, by a run that stopped
  past its last checkpoint, is cut away first (cut_logs), so that every step appears once.
  """

  def __init__(
    self, workdir: str, seeds: Optional[np.ndarray] = None, enabled: bool = True, resume_step: Optional[int] = None
  ):
    self.enabled = enabled
    self.seeds = seeds
    if enabled:
      if resume_step is not None:
        cut_logs(workdir, resume_step)
      SummaryWriter = import_summary_writer()  # Imported here: only the writing process needs it.
      self.path = os.path.join(workdir, "metrics.jsonl")
      # The name's time has whole seconds: a suffix keeps a writer started within the second of the last
      # (a quick resume) from overwriting its file.
      suffix = f".{os.getpid()}.{time.time_ns() % 10**9:09d}"
      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=suffix)

  def write(self, step: int, metrics: dict[str, np.ndarray], extra: dict[str, float]) -> None:
    if not self.enabled:
      return
    record: dict[str, Any] = {"step": int(step)}
    for name, values in metrics.items():
      if self.seeds is None:
        record[name] = float(values)
        continue
      values = np.asarray(values, np.float64).reshape(len(self.seeds))
      record[name] = float(values.mean())
      for seed, v in zip(self.seeds, values):
        record[f"seed_{seed}/{name}"] = float(v)
    record.update({k: float(v) for k, v in extra.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in record.items():
      if k != "step":
        self.tb.add_scalar(k, v, step)
    self.tb.flush()

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    if self.enabled:
      self.tb.add_image(tag, image, step, dataformats="HWC")
      self.tb.flush()

  def close(self) -> None:
    if self.enabled:
      self.tb.close()


# ----------------------------------------------------------------------------- cutting logs back to a checkpoint


def cut_logs(workdir: str, step: int) -> None:
  """Drops what DIR/metrics.jsonl and DIR/tensorboard/ hold of steps after `step` (rewriting them atomically).

  A run logs every log_every steps but checkpoints every checkpoint_every; after a stop it resumes from
  its checkpoint and would log the steps in between a second time. A line that does not parse (the end
  of a write cut short by a full disk or a kill) goes too.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.isfile(path):
    with open(path, "rb") as f:
      lines = f.read().split(b"\n")
    kept = [line for line in lines if _record_step(line) is not None and _record_step(line) <= step]
    if len(kept) != len([line for line in lines if line]):
      files.write_bytes(path, b"".join(line + b"\n" for line in kept))
  board = os.path.join(workdir, "tensorboard")
  if os.path.isdir(board):
    for name in sorted(os.listdir(board)):
      if name.startswith("events.out.tfevents"):
        _cut_events(os.path.join(board, name), step)


def _record_step(line: bytes) -> Optional[int]:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


def _cut_events(path: str, step: int) -> None:
  """Rewrites a TensorBoard event file without the summaries of steps after `step`.

  The file is TFRecords: [uint64 length][uint32 crc][data][uint32 crc] per record, data an Event proto.
  Kept records are copied byte for byte; a truncated last record is dropped.
  """
  import_summary_writer()  # tensorboardX, without importing torch; then its protos.
  from tensorboardX.proto import event_pb2

  with open(path, "rb") as f:
    data = f.read()
  kept, offset = [], 0
  while offset + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[offset : offset + 8])
    end = offset + 12 + length + 4
    if end > len(data):
      break
    event = event_pb2.Event()
    try:
      event.ParseFromString(data[offset + 12 : offset + 12 + length])
    except Exception:  # A damaged record: what follows it can't be trusted either.
      break
    if not (event.HasField("summary") and event.step > step):
      kept.append(data[offset:end])
    offset = end
  out = b"".join(kept)
  if out != data:
    files.write_bytes(path, out)
