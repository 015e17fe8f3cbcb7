"""Multi-process start-up: `jax.distributed.initialize` from flags or the environment.

Where the coordinator, the process count and this process's id come from, first match wins:

  1. flags `--coordinator_address HOST:PORT --num_processes N --process_id I`;
  2. environment `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
  3. a cluster JAX detects by itself (SLURM, Open MPI, Kubernetes, Cloud TPU pods) when it
     runs more than one task: `jax.distributed.initialize()` with no arguments;
  4. otherwise a single process, nothing to initialise.

On CPU the collectives between processes use gloo. Must run before anything touches a device.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax

from audiolm_jax.errors import ConfigError

log = logging.getLogger(__name__)

# Variables that say "JAX's own cluster detection will find several processes".
_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
  index: int
  count: int
  source: str  # where the settings came from


def _cluster_size() -> int:
  for var in _CLUSTER_ENV:
    if os.environ.get(var, "").isdigit():
      return int(os.environ[var])
  return 1


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo") -> ProcessInfo:
  """Joins the multi-process job described by flags or environment (see module docstring)."""
  source = "flags"
  if coordinator_address is None and num_processes is None and process_id is None:
    env = os.environ
    coordinator_address = env.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None
    process_id = int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None
    source = "environment"
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ConfigError(f"multi-process settings from {source} are incomplete: need the "
                        "coordinator address, the number of processes and this process's id")
    if not 0 <= process_id < num_processes:
      raise ConfigError(f"process id {process_id} is not in [0, {num_processes})")
    if num_processes == 1:
      return ProcessInfo(0, 1, source)
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif _cluster_size() > 1 or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
    source = "cluster environment"
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize()
  else:
    return ProcessInfo(0, 1, "single process")
  info = ProcessInfo(jax.process_index(), jax.process_count(), source)
  log.info("process %d of %d (%s), %d local / %d global devices", info.index, info.count,
           info.source, jax.local_device_count(), jax.device_count())
  return info
