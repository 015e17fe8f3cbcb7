"""Metrics out of a run: JSON lines, TensorBoard events (tensorboardX), progress, FLOPs.

Only process 0 writes; on other processes every writer is a no-op. Files in the workdir:

  metrics.jsonl   one JSON object per line: {"step", "split" ("train" | "eval"), "time", ...};
                  a value that is not finite is written as null (strict JSON). Each start of
                  the trainer adds {"step": S, "split": "restart", "origin": ...}: the run goes
                  on from step S, so rows of steps after S written before it were redone
                  (`read_jsonl` drops them).
  tb/             TensorBoard event files, scalars named "<split>/<metric>", and the clips of
                  tasks that give audio at evaluation ("eval_audio/<name>", `Task.eval_audio`)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import paths, progress

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per device for common accelerators (by `device_kind` prefix).
KNOWN_PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H200": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10": 125e12,
}


class MetricWriter:
  """Appends metrics to `metrics.jsonl` and TensorBoard event files under `workdir`."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      workdir = paths.resolve(workdir)
      workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl_path = workdir / "metrics.jsonl"
      self._jsonl = self._jsonl_path.open("a")
      self._tb = SummaryWriter(os.fspath(workdir / "tb"), flush_secs=30)

  def write(self, step: int, metrics: Mapping[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in metrics.items()}
    record = {"step": int(step), "split": split, "time": round(time.time(), 3),
              **{k: v if math.isfinite(v) else None for k, v in clean.items()}}
    self._append(json.dumps(record, allow_nan=False))
    for k, v in clean.items():
      if math.isfinite(v):
        self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def _append(self, line: str) -> None:
    try:
      self._jsonl.write(line + "\n")
      self._jsonl.flush()
    except OSError as e:  # A full disk: say which file (the OS error names none).
      raise OSError(e.errno, e.strerror or str(e), os.fspath(self._jsonl_path)) from e

  def write_restart(self, step: int, origin: str) -> None:
    """Marks that the run (re)starts from `step` (see the module docstring)."""
    if self.enabled:
      record = {"step": int(step), "split": RESTART, "time": round(time.time(), 3),
                "origin": origin}
      self._append(json.dumps(record))

  def write_audio(self, step: int, tag: str, audio: np.ndarray, sample_rate: int) -> None:
    """One clip (`[S]` float, clipped to [-1, 1]) under TensorBoard's Audio tab."""
    if self.enabled:
      clip = np.clip(np.nan_to_num(np.asarray(audio, np.float32).reshape(-1)), -1.0, 1.0)
      self._tb.add_audio(tag, clip, int(step), sample_rate=int(sample_rate))

  def write_text(self, tag: str, text: str, step: int = 0) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


RESTART = "restart"


def read_jsonl(workdir: str | os.PathLike, split: str | None = "train") -> list[dict]:
  """The records of `metrics.jsonl` (of one split, or all with split=None) as the run's one
  history: rows that a restart redid are dropped, restart markers are left out, and null
  values (not finite when written) read as NaN. A damaged line (a crash mid-write) is skipped.
  """
  path = paths.resolve(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  records: list[dict] = []
  with path.open() as f:
    for line in f:
      try:
        r = json.loads(line)
      except ValueError:
        continue
      if not isinstance(r, dict) or "step" not in r:
        continue
      if r.get("split") == RESTART:
        records = [old for old in records if old["step"] <= r["step"]]
        continue
      records.append({k: (math.nan if v is None else v) for k, v in r.items()})
  return [r for r in records if split is None or r.get("split") == split]


class WindowMean:
  """Averages per-step metrics between two log points.

  A skipped non-finite step's values are left out of every mean (its `nonfinite` flag still
  counts), so one bad step does not turn a whole window into NaN; a key with no finite value
  in the window is NaN.
  """

  def __init__(self):
    self.sums: dict[str, float] = {}
    self.counts: dict[str, int] = {}

  def add(self, metrics: Mapping[str, float]) -> None:
    for k, v in metrics.items():
      v = float(v)
      self.sums.setdefault(k, 0.0)
      self.counts.setdefault(k, 0)
      if math.isfinite(v):
        self.sums[k] += v
        self.counts[k] += 1

  def mean(self) -> dict[str, float]:
    return {k: v / self.counts[k] if self.counts[k] else math.nan
            for k, v in self.sums.items()}

  def reset(self) -> None:
    self.sums, self.counts = {}, {}


class Throughput:
  """Steps/s, examples/s, task units/s and model FLOPs utilisation between log points."""

  def __init__(self, batch_size: int, units_per_example: float, unit: str,
               flops_per_step: float | None, peak_flops_total: float | None):
    self.batch_size = batch_size
    self.units_per_example = units_per_example
    self.unit = unit
    self.flops_per_step = flops_per_step
    self.peak_flops_total = peak_flops_total
    self._t = time.perf_counter()
    self._steps = 0

  def restart(self) -> None:
    """Starts a new window (e.g. after evaluation or a checkpoint wait)."""
    self._t = time.perf_counter()
    self._steps = 0

  def tick(self) -> None:
    self._steps += 1

  def measure(self) -> dict[str, float]:
    """Rates over the window since the last measure/restart, then restarts."""
    now = time.perf_counter()
    dt, steps = max(now - self._t, 1e-9), self._steps
    self._t, self._steps = now, 0
    if not steps:
      return {}
    steps_per_s = steps / dt
    out = {"steps_per_s": steps_per_s, "examples_per_s": steps_per_s * self.batch_size}
    if self.unit != "examples":
      out[f"{self.unit}_per_s"] = out["examples_per_s"] * self.units_per_example
    if self.flops_per_step and self.peak_flops_total:
      out["mfu"] = self.flops_per_step * steps_per_s / self.peak_flops_total
    return out


def xla_flops(compiled, num_devices: int) -> float | None:
  """FLOPs of one call of a compiled SPMD computation over `num_devices` (None if unknown).

  XLA counts one device's share, including any computation that is replicated, so this is
  an upper bound on model FLOPs; tasks that know their FLOPs say so.
  """
  try:
    cost = compiled.cost_analysis()
  except Exception:  # Not every backend implements it.
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or cost.get("flops", 0) <= 0:
    return None
  return float(cost["flops"]) * num_devices


def measure_peak_flops(size: int = 1024, repeats: int = 3) -> float:
  """Achieved matmul FLOP/s of one local device (a stand-in when the peak is unknown)."""
  dtype = jnp.bfloat16 if jax.default_backend() != "cpu" else jnp.float32
  dev = jax.local_devices()[0]
  a = jax.device_put(jnp.ones((size, size), dtype), dev)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * size**3 / best


def peak_flops_per_device(configured: float) -> tuple[float, str]:
  """`(FLOP/s, source)`: the config value, a known device peak, or a start-up measurement."""
  if configured > 0:
    return float(configured), "config"
  kind = jax.devices()[0].device_kind
  for prefix, peak in KNOWN_PEAK_FLOPS.items():
    if kind.startswith(prefix):
      return peak, f"known peak of {kind}"
  return measure_peak_flops(), f"measured matmul on {kind}"


class ProgressBar:
  """Training progress on process 0 (when enabled).

  On a terminal: a tqdm bar. Anywhere else (a log file, CI, `nohup`): one log line at most
  every `every_s` seconds, and one at the last step, e.g.

    train: step 3400/12000 (28%), 3.91 steps/s, ETA 36:40, loss=2.871, audio_seconds/s=12.4,
    eval 3% of the time

  (one line). The rate and the ETA are wall-clock over the lines' window, evaluation and
  checkpoint waits included, so the ETA is what the run will take; the eval share is of the
  whole run so far.
  """

  def __init__(self, total: int, initial: int, enabled: bool, every_s: float = 60.0,
               interactive: bool | None = None):
    self._bar = None
    self._lines = False
    self.total, self.step = total, initial
    self.every_s = every_s
    self._values: dict[str, str] = {}
    self._t_start = self._t_line = time.perf_counter()
    self._step_line = initial
    self._eval_s = 0.0
    if not enabled:
      return
    if interactive is None:
      interactive = progress.interactive()
    if interactive:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, file=sys.stderr, dynamic_ncols=True,
                       unit="step", desc="train")
    else:
      self._lines = True

  @property
  def interactive(self) -> bool:
    return self._bar is not None

  def update(self, n: int = 1) -> None:
    self.step += n
    if self._bar is not None:
      self._bar.update(n)
    elif self._lines:
      now = time.perf_counter()
      if now - self._t_line >= self.every_s or self.step >= self.total:
        self._line(now)

  def show(self, values: Mapping[str, float]) -> None:
    self._values = {k: f"{v:.4g}" for k, v in values.items()}
    if self._bar is not None:
      self._bar.set_postfix(self._values, refresh=False)

  def eval_seconds(self, seconds: float) -> None:
    """Adds the wall time of one evaluation (for the eval share)."""
    self._eval_s += seconds

  def _line(self, now: float) -> None:
    steps, dt = self.step - self._step_line, max(now - self._t_line, 1e-9)
    self._t_line, self._step_line = now, self.step
    if steps <= 0:
      return
    rate = steps / dt
    parts = [f"step {self.step}/{self.total} ({100 * self.step / self.total:.0f}%)",
             f"{rate:.3g} steps/s"]
    if self.step < self.total:
      parts.append(f"ETA {progress.format_duration((self.total - self.step) / rate)}")
    parts += [f"{k}={v}" for k, v in self._values.items()]
    if self._eval_s:
      share = self._eval_s / max(now - self._t_start, 1e-9)
      parts.append(f"eval {100 * share:.0f}% of the time")
    log.info("train: %s", ", ".join(parts))

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class Reporter:
  """Per-step training metrics -> window means + throughput -> JSONL, TensorBoard, progress bar.

  Args:
    workdir: where `metrics.jsonl` and `tb/` go.
    enabled: False on every process but 0 (nothing is written or shown).
    log_every: write the mean of the last `log_every` steps' metrics.
    total_steps, start_step: for the progress bar (and a final log at `total_steps`).
    throughput: the rate meter (see `Throughput`).
    progress_bar: show progress: a tqdm bar on a terminal, else a log line every
      `progress_every_s` seconds.
    origin: where the run started ("checkpoint", "init_from", "fresh"), for the restart mark.
  """

  def __init__(self, workdir: str | os.PathLike, enabled: bool, log_every: int,
               total_steps: int, start_step: int, throughput: Throughput, progress_bar: bool,
               origin: str = "", progress_every_s: float = 60.0):
    self.log_every, self.total_steps = log_every, total_steps
    self.throughput = throughput
    self.writer = MetricWriter(workdir, enabled)
    self.bar = ProgressBar(total_steps, start_step, enabled and progress_bar, progress_every_s)
    self.window = WindowMean()
    self.last: dict[str, float] = {}
    self.writer.write_restart(start_step, origin)

  def step_done(self, step: int, values: Mapping[str, float]) -> None:
    """Records one finished step; every `log_every` steps writes the window's means."""
    self.throughput.tick()
    self.window.add(values)
    if step % self.log_every == 0 or step == self.total_steps:
      logged = {**self.window.mean(), **self.throughput.measure()}
      logged["nonfinite_total"] = float(values["nonfinite_total"])  # a count, not a mean
      self.window.reset()
      self.writer.write(step, logged, "train")
      self.last = logged
      rate = f"{self.throughput.unit}_per_s"
      self.bar.show({"loss": logged["loss"],
                     rate.replace("_per_s", "/s"): logged.get(rate,
                                                              logged.get("examples_per_s", 0.0))})
    self.bar.update()

  def eval_done(self, step: int, values: Mapping[str, float], seconds: float = 0.0) -> None:
    self.writer.write(step, values, "eval")
    self.bar.eval_seconds(seconds)
    self.throughput.restart()  # Evaluation time is not training time.

  def close(self) -> None:
    self.bar.close()
    self.writer.close()


def summary_line(metrics: Mapping[str, float], width: int = 200) -> str:
  """"loss=2.31, accuracy=0.41, ... (12 more in metrics.jsonl)": the loss first, then the
  metrics without a "/" group (the headline ones), then the rest, as many as fit `width`."""
  order = sorted(metrics, key=lambda k: (k != "loss", "/" in k, k))
  parts: list[str] = []
  for k in order:
    item = f"{k}={metrics[k]:.4g}"
    if parts and sum(len(p) + 2 for p in parts) + len(item) > width:
      break
    parts.append(item)
  rest = len(order) - len(parts)
  return ", ".join(parts) + (f", ... ({rest} more in metrics.jsonl)" if rest else "")


def to_host(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
  """Device scalars -> Python floats (blocks until they are computed)."""
  return {k: float(np.asarray(v)) for k, v in jax.device_get(dict(metrics)).items()}
