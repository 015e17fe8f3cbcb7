"""Progress that reads well both on a terminal and in a log file.

On a terminal a tqdm bar redraws itself with carriage returns; written to a file (`nohup`, CI,
`make demo > log`) the same bar becomes one line of thousands of characters. So off a terminal
progress is plain log lines instead: `StageProgress` logs one line per finished stage, and the
trainer's `train.metrics.ProgressBar` one line per interval with the rate and an ETA.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("audiolm_jax.progress")


def interactive() -> bool:
  """Whether stderr is a terminal (where a tqdm bar is the right display)."""
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # A replaced or closed stream.
    return False


def format_duration(seconds: float) -> str:
  """`3725.2` -> "1:02:05", `65` -> "1:05"."""
  seconds = max(int(round(seconds)), 0)
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StageProgress:
  """Progress over a few long stages ("generate: 2/5 coarse tokens").

  `advance(msg)` marks one stage done. On a terminal: a tqdm bar of `total` stages; elsewhere
  one log line per stage with the elapsed time, e.g. `generate: 2/5 coarse tokens (0:41)`.
  """

  def __init__(self, total: int, desc: str, enabled: bool = True):
    self.total, self.desc, self.enabled = total, desc, enabled
    self.done = 0
    self._t0 = time.perf_counter()
    self._bar = None
    if enabled and interactive():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, desc=desc, bar_format="{desc}: {n}/{total} {postfix}")

  def advance(self, msg: str = "") -> None:
    self.done += 1
    if self._bar is not None:
      self._bar.set_postfix_str(msg, refresh=False)
      self._bar.update(1)
    elif self.enabled:
      elapsed = format_duration(time.perf_counter() - self._t0)
      log.info("%s: %d/%d %s(%s)", self.desc, self.done, self.total,
               f"{msg} " if msg else "", elapsed)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
