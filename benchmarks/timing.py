"""Timing helpers: compile once, warm up, then a median over several timed runs.

Every figure is reported as {"median", "min", "max", "runs"} plus the compile time measured
separately, so a reader can tell steady-state speed from start-up cost.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import time
from typing import Any, Callable

import jax
import numpy as np


@dataclasses.dataclass
class Timing:
  median: float
  min: float
  max: float
  runs: int
  compile_s: float

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def block(x: Any) -> Any:
  return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(
      a, "block_until_ready") else a, x)


def time_fn(fn: Callable[[], Any], *, runs: int = 5, warmup: int = 1,
            min_seconds: float = 0.0) -> Timing:
  """Times `fn()` (which must block on its result): the first call is the compile."""
  t0 = time.perf_counter()
  block(fn())
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    block(fn())
  times = []
  start = time.perf_counter()
  while len(times) < runs or time.perf_counter() - start < min_seconds:
    t = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t)
  return Timing(statistics.median(times), min(times), max(times), len(times), compile_s)


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "device": getattr(dev, "device_kind", str(dev)), "device_count": jax.device_count(),
          "cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
          "platform": platform.platform()}


def peak_matmul_gflops(n: int | None = None, dtype=np.float32) -> dict:
  """The machine's measured peak: a large square matmul in JAX, 2*n^3 FLOPs per call."""
  import jax.numpy as jnp
  n = n or (8192 if jax.default_backend() != "cpu" else 2048)
  a = jnp.ones((n, n), dtype)
  b = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  t = time_fn(lambda: f(a, b), runs=5)
  return {"peak_matmul_gflops": 2 * n**3 / t.min / 1e9, "peak_matmul_n": n,
          "peak_matmul_timing": t.as_dict()}
