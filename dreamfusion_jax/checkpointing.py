"""Orbax checkpoints of the multi-seed train state, with the config saved beside each one."""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from dreamfusion_jax import checks
from dreamfusion_jax.errors import WorkdirError


class Checkpoints:
  """A CheckpointManager over DIR/checkpoints keeping the last few; items 'state' and 'config'."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_handlers={"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()},
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def saved_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config

  def check_compatible(self, config_dict: dict, workdir: str) -> Optional[int]:
    """The latest step if DIR holds a checkpoint of a compatible config; raises WorkdirError if not."""
    step = self.latest_step()
    if step is not None:
      checks.check_resume_compatible(self.saved_config(step), config_dict, workdir)
    return step

  def save(self, step: int, state: Any, config_dict: dict) -> None:
    self.manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_dict)),
      force=True,
    )

  def restore(self, step: int, abstract_state: Any) -> Any:
    try:
      return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))).state
    except (ValueError, KeyError, TypeError) as e:
      raise WorkdirError(
        f"The checkpoint at step {step} in '{self.directory}' does not fit this config's model ({e.__class__.__name__}: "
        f"{str(e).splitlines()[0][:200]}). Nothing was changed there. Use a new --workdir, or the config the "
        "checkpoint was made with."
      ) from None

  def restore_params(self, step: int) -> Any:
    """The field parameters [S, ...] (every seed's) at `step`, on this process's first device.

    Needs no model: the state's tree, shapes and dtypes come from the checkpoint's own metadata.
    """
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    meta = self.manager.item_metadata(step).state
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state["params"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
