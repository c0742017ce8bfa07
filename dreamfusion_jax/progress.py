"""The steps phase's console: progress in completed steps, with a rate and a time left measured on them.

The train step is dispatched asynchronously: a counter of dispatched steps races ahead of the device and then
stalls at every metrics fetch. So progress is told only at a metrics record (every log_every steps), where the
host has waited for that step: the step count is then the device's. The rate is measured from the first record
of this invocation on, so that the first step's compile does not count, and the time left is the remaining steps
at that rate. On a terminal a tqdm bar shows it; otherwise (a log file, a TPU VM's captured output) each record
is one plain line.

SDS's loss is no progress measure (its noise dwarfs its trend), so the console shows the diffusion-time range
of the step and the terms that do settle as the object forms: opacity, and the signed distance's eikonal and
smoothness terms.
"""

import sys
import time
from typing import Callable, Optional

import tqdm
from absl import logging

# Metrics shown beside the rate, in this order, when the record has them (means over seeds).
TERMS = ("opacity", "eikonal", "smoothness")


def clock_text(seconds: Optional[float]) -> str:
  """'1:02:03', '4:05', or '?' when unknown."""
  if seconds is None:
    return "?"
  seconds = int(round(max(seconds, 0.0)))
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
  """Tells the steps phase's progress at each metrics record (see the module docstring).

  total: the run's num_steps; start: the step this invocation starts from (a resumed run's checkpoint);
  bar: show a tqdm bar (else nothing between records); lines: log one plain line per record;
  t_range: step -> (lo, hi) diffusion times of that step, as fractions; clock: seconds (for replay in tests).
  """

  def __init__(
    self,
    total: int,
    start: int,
    *,
    bar: bool,
    lines: bool,
    t_range: Callable[[int], tuple[float, float]],
    clock: Callable[[], float] = time.perf_counter,
  ):
    self.total, self.start, self.lines, self.t_range, self.clock = total, start, lines, t_range, clock
    self.first: Optional[tuple[float, int]] = None  # (time, step) of the first record.
    self.bar = tqdm.tqdm(
      total=total,
      initial=min(start, total),
      unit="step",
      dynamic_ncols=True,
      disable=not bar,
      bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}",  # tqdm puts ", " before the postfix.
    )

  def rate(self, step: int, now: float) -> Optional[float]:
    """Completed steps per second since the first record; None until a second record."""
    if self.first is None or step <= self.first[1]:
      return None
    return (step - self.first[1]) / max(now - self.first[0], 1e-9)

  def time_left(self, step: int, now: float) -> Optional[float]:
    rate = self.rate(step, now)
    return None if rate is None else (self.total - step) / rate

  def record(self, step: int, terms: dict) -> str:
    """Step `step` is complete (its metrics reached the host); terms: name -> mean value. Returns the line."""
    now = self.clock()
    if self.first is None:
      self.first = (now, step)
    rate = self.rate(step, now)
    lo, hi = self.t_range(step)
    shown = [f"t {lo:.2f}-{hi:.2f}"] + [f"{k} {terms[k]:.3g}" for k in TERMS if k in terms]
    speed = "measuring" if rate is None else f"{rate:.3g} steps/s"
    text = f"{speed}, {clock_text(self.time_left(step, now))} left, {', '.join(shown)}"
    self.bar.n = step
    self.bar.set_postfix_str(text, refresh=True)
    if self.lines:
      logging.info("step %d/%d: %s", step, self.total, text)
    return text

  def close(self) -> None:
    self.bar.close()


def stderr_is_terminal() -> bool:
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # Replaced or closed stderr.
    return False
