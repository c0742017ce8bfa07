"""What every training loop of the package records, and how it stops on NaN: DreamFusion runs, the
Shapes prior and the judge share these.
"""

import json
import os
from typing import Any, Optional, Sequence

import numpy as np

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
  `enabled=False` (the non-lead processes of a multi-host job) writes nothing.
  """

  def __init__(self, workdir: str, seeds: Optional[np.ndarray] = None, enabled: bool = True):
    self.enabled = enabled
    self.seeds = seeds
    if enabled:
      SummaryWriter = import_summary_writer()  # Imported here: only the writing process needs it.
      self.path = os.path.join(workdir, "metrics.jsonl")
      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

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
