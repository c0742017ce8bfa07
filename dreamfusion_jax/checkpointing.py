"""Orbax checkpoints of the multi-seed train state, with the config saved beside each one.

Checkpoints heal: `restore_latest` tries the newest checkpoint first, and one that does not read (a missing
item, a truncated or garbage file, bad metadata, an emptied folder) is moved to DIR/checkpoints_damaged/
(never deleted) with a one-line warning, and the one before it is tried. Saves are asynchronous; `confirm`
waits for the one in flight and raises if it failed, so a run never trains long on a lost checkpoint.
"""

import glob
import os
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from dreamfusion_jax.errors import WorkdirError

DAMAGED = "checkpoints_damaged"  # DIR/checkpoints_damaged/STEP-TIME: the checkpoints that did not restore.


class SaveFailed(Exception):
  """An asynchronous save did not complete; `step` is the checkpoint lost, the cause is chained."""

  def __init__(self, step: int, directory: str):
    super().__init__(f"The checkpoint at step {step} could not be written to '{directory}'.")
    self.step = step


class Checkpoints:
  """A CheckpointManager over DIR/checkpoints keeping the last few; items 'state' and 'config'.

  DIR/checkpoints is made by the first save, so a run that stops before training leaves none. writer:
  whether this process owns the workdir (it holds its lock): only then are unfinished saves of a run that
  died cleaned up and damaged checkpoints moved aside; a reader (evaluate) only skips them.
  """

  def __init__(self, workdir: str, keep: int, *, writer: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self.writer = writer
    self.manager = self._manager(keep)
    self.pending: Optional[int] = None  # The step of the save in flight, until `confirm`.

  def _manager(self, keep: int) -> ocp.CheckpointManager:
    exists = os.path.isdir(self.directory)
    return ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=False, cleanup_tmp_directories=self.writer and exists, read_only=not self.writer
      ),
      item_handlers={"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()},
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def saved_config(self, step: int) -> dict:
    config = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    if not isinstance(config, dict):
      raise ValueError(f"its config item is a {type(config).__name__}, not a dict")
    return config

  def save(self, step: int, state: Any, config_dict: dict) -> None:
    os.makedirs(self.directory, exist_ok=True)  # The first save of a new run makes it (the manager does not).
    self.manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_dict)),
      force=True,
    )
    self.pending = step

  def confirm(self) -> Optional[int]:
    """Waits for the save in flight; returns its step (None: none was in flight). SaveFailed if it failed."""
    step, self.pending = self.pending, None
    if step is None:
      return None
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      self._settle(step)
      raise SaveFailed(step, self.directory) from e
    # orbax logs, and does not raise, some failures of its background thread: the folder tells.
    if not os.path.isdir(os.path.join(self.directory, str(step))):
      raise SaveFailed(step, self.directory)
    return step

  def _settle(self, step: int, quiet_s: float = 0.3, limit_s: float = 30.0) -> None:
    """Waits until the failed save of `step` stops writing into its unfinished folder.

    orbax's wait returns at the first failed part of a save while the other parts may still be landing;
    a rerun in this process (a notebook, a test) that cleans the folder up meanwhile would race them.
    Done when the folder's files and sizes stay the same for quiet_s (or it is gone), at most limit_s.
    """

    def listing():
      found = []
      for tmp in sorted(glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*"))):
        for root, _, files in os.walk(tmp):
          for path in (os.path.join(root, name) for name in files):
            try:
              found.append((path, os.path.getsize(path)))
            except OSError:  # Gone between the walk and the size.
              found.append((path, -1))
      return found

    end = time.monotonic() + limit_s
    last, quiet_since = listing(), time.monotonic()
    while last and time.monotonic() < end and time.monotonic() - quiet_since < quiet_s:
      time.sleep(0.05)
      now = listing()
      if now != last:
        last, quiet_since = now, time.monotonic()

  def restore_raw(self, step: int, abstract_state: Any) -> Any:
    """The state at `step` in the tree, shapes and shardings of abstract_state; orbax's errors as they come."""
    return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))).state

  def restore(self, step: int, abstract_state: Any) -> Any:
    """restore_raw, with WorkdirError when the checkpoint does not fit abstract_state."""
    try:
      return self.restore_raw(step, abstract_state)
    except (ValueError, KeyError, TypeError) as e:
      raise self.does_not_fit(step, e) from None

  def does_not_fit(self, step: int, error: BaseException) -> WorkdirError:
    return WorkdirError(
      f"The checkpoint at step {step} in '{self.directory}' does not fit this config's model ({one_line(error)}). "
      "Nothing was changed there. Use a new --workdir, or the config the checkpoint was made with."
    )

  def restore_as_saved(self, step: int) -> Any:
    """The state at `step` (every seed's) on this process's first device, read with the checkpoint's own
    metadata: needs no model, and proves that the checkpoint reads."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    meta = self.manager.item_metadata(step).state
    if meta is None:
      raise ValueError("its state item has no metadata")
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return self.restore_raw(step, abstract)

  def restore_params(self, step: int) -> Any:
    """The field parameters [S, ...] (every seed's) at `step`, on this process's first device."""
    return self.restore_as_saved(step)["params"]

  def restore_latest(self, read: Callable[[int], Any]) -> tuple[Optional[int], Any]:
    """(step, read(step)) of the newest checkpoint that reads; (None, None) if there is none.

    read(step) raises WorkdirError for a checkpoint that reads but does not fit the run (that ends the
    search: the user must decide), and anything else for a damaged one, which a writer moves aside and a
    reader skips, with a one-line warning each. WorkdirError naming them all when none reads.
    """
    if not os.path.isdir(self.directory):
      return None, None
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      why = None
      try:
        result = read(step)
      except WorkdirError:
        raise
      except Exception as e:  # Damage takes every form (tensorstore, orbax, json, KeyError, ...).
        why = one_line(e)
      if not _damaged_anywhere(why is not None):
        return step, result
      why = why or "it did not restore on another process"
      where = self._move_aside(step) if self.writer else os.path.join(self.directory, str(step))
      logging.warning(
        "The checkpoint at step %d does not restore (%s); %s, and trying the one before it.",
        step,
        why,
        f"moved it to {where}" if self.writer else "skipping it",
      )
      damaged.append(f"step {step} ({why}; now at {where})")
    if damaged:
      raise WorkdirError(
        f"No checkpoint in '{self.directory}' restores: {'; '.join(damaged)}. Nothing was deleted. Rerun "
        f"the same command to start the run anew in '{self.workdir}', or use a new --workdir; if those "
        "checkpoints are intact but were written by another version of this package, run that version."
      )
    return None, None

  def _move_aside(self, step: int) -> str:
    """Moves checkpoints/STEP to checkpoints_damaged/STEP-TIME (never deleting it); returns where.

    On a multi-host job the first process moves it and the others wait for that (they found the same damage).
    """
    target_dir = os.path.join(self.workdir, DAMAGED)
    target = os.path.join(target_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0:
      os.makedirs(target_dir, exist_ok=True)
      n = 1
      while os.path.exists(target):
        target = f"{target.rsplit('~', 1)[0]}~{n}"
        n += 1
      os.rename(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
    self.manager.reload()
    return target

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def one_line(error: BaseException) -> str:
  """'Type: first line of the message', at most 200 characters."""
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def _damaged_anywhere(damaged_here: bool) -> bool:
  """Whether any process of the job found the checkpoint damaged (a single process: whether this one did)."""
  if jax.process_count() == 1:
    return damaged_here
  from jax.experimental import multihost_utils

  return bool(np.max(multihost_utils.process_allgather(np.int32(damaged_here))))
