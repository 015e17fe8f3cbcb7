"""Memory planning without hardware: sizes of the train state on any mesh, from shapes alone.

`jax.eval_shape` of the task's init and the optimizer gives every leaf's shape, dtype and
logical axis names; the rules of `train/sharding.py` give each leaf's split over a mesh of any
shape (no devices needed), hence the bytes each device holds. Activations are not included:
they depend on the compiled program (see `compiled.memory_analysis()` on the real machine).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from audiolm_jax.errors import ConfigError
from audiolm_jax.train import optim, sharding
from audiolm_jax.train import state as state_lib
from audiolm_jax.train.task import build_task


@dataclasses.dataclass
class MemoryPlan:
  """Sizes of the train state of one config on one mesh shape.

  Attributes:
    mesh: mesh axis sizes, e.g. {"data": 4, "fsdp": 4, "tensor": 8}.
    param_count: number of trainable parameters.
    params_by_module: parameter count per top-level module.
    param_bytes, optimizer_bytes, extra_bytes, ema_bytes: whole-state sizes (all devices).
    per_device_bytes: bytes of the state held by each device.
    per_device_by_field: the same split by state field (params, opt_state, ...).
    batch_bytes_per_device: bytes of one global batch's share on one device.
  """
  mesh: dict[str, int]
  param_count: int
  params_by_module: dict[str, int]
  param_bytes: int
  optimizer_bytes: int
  extra_bytes: int
  ema_bytes: int
  per_device_bytes: int
  per_device_by_field: dict[str, int]
  batch_bytes_per_device: int

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def parse_mesh(text: str) -> dict[str, int]:
  """"4x4x8" -> {"data": 4, "fsdp": 4, "tensor": 8} (missing trailing axes are 1)."""
  if not re.fullmatch(r"\d+(x\d+){0,2}", text or ""):
    raise ConfigError(f"--mesh: expected DATAxFSDPxTENSOR like 4x4x8, got {text!r}")
  sizes = [int(x) for x in text.split("x")] + [1] * (3 - len(text.split("x")))
  if min(sizes) < 1:
    raise ConfigError(f"--mesh: sizes must be >= 1, got {text!r}")
  return dict(zip(sharding.MESH_AXES, sizes))


def _nbytes(x) -> int:
  return int(np.prod(x.shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize


def _shard_bytes(x, spec, mesh_sizes: Mapping[str, int]) -> int:
  shape = list(x.shape)
  for i, axes in enumerate(spec):
    if axes is not None:
      group = (axes,) if isinstance(axes, str) else axes
      shape[i] = math.ceil(shape[i] / math.prod(mesh_sizes[a] for a in group))
  return int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize


def count_by_module(params: Any) -> dict[str, int]:
  """Parameter count per top-level key of a params tree (of arrays or shape structs)."""
  if not isinstance(params, Mapping):
    return {"": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))}
  return {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v)) for k, v in params.items()}


def plan_memory(config: ml_collections.ConfigDict, mesh_sizes: Mapping[str, int]) -> MemoryPlan:
  """The memory plan of `config`'s train state on a mesh of `mesh_sizes` (no allocation)."""
  mesh_sizes = {a: int(mesh_sizes.get(a, 1)) for a in sharding.MESH_AXES}
  task = build_task(config)
  tx, _ = optim.make_optimizer(config.optimizer, config.total_steps)
  init_fn = state_lib.make_init_fn(task, tx, use_ema=config.optimizer.ema_decay > 0)
  boxed = state_lib.abstract_state(init_fn, config.seed)
  specs = sharding.mesh_specs(boxed, mesh_sizes)
  abstract = sharding.unbox(boxed)

  def total(tree):
    return sum(_nbytes(x) for x in jax.tree.leaves(tree))

  per_field = {}
  for field in ("params", "opt_state", "extra", "ema_params"):
    leaves = jax.tree.leaves(getattr(abstract, field))
    field_specs = jax.tree.leaves(getattr(specs, field),
                                  is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
    per_field[field] = sum(_shard_bytes(x, s, mesh_sizes) for x, s in zip(leaves, field_specs))
  per_field["other"] = sum(_nbytes(x) for x in jax.tree.leaves(
      (abstract.step, abstract.rng, abstract.nonfinite_total, abstract.nonfinite_streak)))

  batch_split = mesh_sizes["data"] * mesh_sizes["fsdp"]
  batch = task.batch_spec(config.batch_size)
  batch_bytes = sum(_nbytes(x) for x in batch.values()) // batch_split
  params_by_module = count_by_module(abstract.params)
  return MemoryPlan(
      mesh=mesh_sizes, param_count=sum(params_by_module.values()),
      params_by_module=params_by_module, param_bytes=total(abstract.params),
      optimizer_bytes=total(abstract.opt_state), extra_bytes=total(abstract.extra),
      ema_bytes=total(abstract.ema_params), per_device_bytes=sum(per_field.values()),
      per_device_by_field=per_field, batch_bytes_per_device=batch_bytes)
