"""Meshes and the one table that maps logical axis names to mesh axes.

Every parameter carries logical axis names (`nn.with_logical_partitioning`), key activations
carry them through `nn.with_logical_constraint`, and the KV cache has its own family. The table
below is the only place where those names meet the device mesh, so data, FSDP and tensor
parallelism are a change of `config.mesh`, never of model code:

  mesh axis  what is split across it
  ---------  ----------------------------------------------------------------------
  data       the batch (pure data parallelism: parameters replicated)
  fsdp       the batch too, and the `embed` (or conv input) dimension of parameters and
             optimizer state (ZeRO-3 style: gathered for compute, reduce-scattered for grads)
  tensor     heads, MLP hidden units, vocabulary and conv outputs (Megatron style)

A dimension whose size is not divisible by its mesh axes falls back to fewer axes (then to
replicated) instead of failing, so a tiny model runs on a big mesh. The batch must divide.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from audiolm_jax.errors import ConfigError

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (or axes, or None = replicated). Rules are tried in order; a
# mesh axis already used by another dimension of the same array is skipped.
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # Parameters.
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("relpos_buckets", None),
    ("conv_kernel", None),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    ("codebook", None),
    ("codebook_dim", None),
    ("norm", None),
    # Activations.
    ("activation_batch", BATCH_AXES),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_vocab", "tensor"),
    # KV cache.
    ("cache_batch", BATCH_AXES),
    ("cache_length", None),
    ("cache_heads", "tensor"),
    ("cache_kv", None),
)

Rules = Sequence[tuple[str, Any]]


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Resolves `{data, fsdp, tensor}` sizes; at most one may be -1 (= the remaining devices).

  The product may be smaller than `num_devices` only without a -1 (a mesh over the first
  devices, e.g. a 1-device mesh in tests); it must divide evenly otherwise.
  """
  unknown = set(mesh_cfg.keys()) - set(MESH_AXES)
  if unknown:
    raise ConfigError(f"mesh: unknown axes {sorted(unknown)}; the axes are {MESH_AXES}")
  sizes = {a: int(mesh_cfg.get(a, 1)) for a in MESH_AXES}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh: only one axis may be -1, got {sizes}")
  if any(s == 0 or s < -1 for s in sizes.values()):
    raise ConfigError(f"mesh: sizes must be positive or -1, got {sizes}")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f"mesh: {num_devices} devices are not divisible by the fixed axes "
                        f"{ {a: s for a, s in sizes.items() if s != -1} }")
    sizes[free[0]] = num_devices // fixed
  elif fixed > num_devices:
    raise ConfigError(f"mesh: {sizes} needs {fixed} devices, only {num_devices} present")
  return sizes


def make_mesh(mesh_cfg: Mapping[str, int]) -> Mesh:
  """The `(data, fsdp, tensor)` mesh described by `mesh_cfg` over the devices of all processes."""
  devices = jax.devices()
  sizes = mesh_shape(mesh_cfg, len(devices))
  shape = tuple(sizes[a] for a in MESH_AXES)
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  n = math.prod(shape)
  if n == len(devices):
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)
  if jax.process_count() > 1:
    raise ConfigError(f"mesh: {sizes} uses {n} of {len(devices)} devices; a multi-process "
                      "mesh must use them all (set one axis to -1)")
  log.warning("mesh %s uses %d of %d devices", sizes, n, len(devices))
  return Mesh(np.asarray(devices[:n]).reshape(shape), MESH_AXES, axis_types=axis_types)


def logical_to_mesh_spec(names: Sequence[str | None] | None, shape: Sequence[int],
                         mesh_sizes: Mapping[str, int],
                         rules: Rules = LOGICAL_AXIS_RULES) -> PartitionSpec:
  """The mesh `PartitionSpec` for an array of `shape` whose dimensions are called `names`.

  A dimension whose size its mesh axes do not divide keeps the longest dividing prefix of
  them (("data", "fsdp") -> ("data",) -> replicated).
  """
  if not names:
    return PartitionSpec()
  axes = nn.logical_to_mesh_axes(tuple(names), rules)
  out = []
  for dim, ax in zip(shape, axes):
    group = (ax,) if isinstance(ax, str) else tuple(ax or ())
    group = tuple(a for a in group if mesh_sizes.get(a, 1) > 1)
    while group and dim % math.prod(mesh_sizes[a] for a in group):
      group = group[:-1]
    out.append(None if not group else group[0] if len(group) == 1 else group)
  while out and out[-1] is None:
    out.pop()
  return PartitionSpec(*out)


def _is_box(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _is_spec(x) -> bool:
  return isinstance(x, PartitionSpec)


def unbox(tree: Any) -> Any:
  """Strips `nn.Partitioned` boxes (without adding sharding constraints)."""
  return jax.tree.map(lambda x: unbox(x.unbox(apply_constraint=False)) if _is_box(x) else x,
                      tree, is_leaf=_is_box)


def logical_specs(boxed_tree: Any) -> Any:
  """Logical `PartitionSpec` (axis names) per leaf; `PartitionSpec()` for unboxed leaves."""
  return jax.tree.map(lambda x: PartitionSpec(*x.names) if _is_box(x) else PartitionSpec(),
                      boxed_tree, is_leaf=_is_box)


def mesh_specs(boxed_abstract: Any, mesh_sizes: Mapping[str, int],
               rules: Rules = LOGICAL_AXIS_RULES) -> Any:
  """Mesh `PartitionSpec` per leaf of an abstract, boxed tree (from `jax.eval_shape`)."""
  return jax.tree.map(lambda spec, x: logical_to_mesh_spec(tuple(spec), x.shape, mesh_sizes,
                                                           rules),
                      logical_specs(boxed_abstract), unbox(boxed_abstract), is_leaf=_is_spec)


def tree_shardings(boxed_abstract: Any, mesh: Mesh, rules: Rules = LOGICAL_AXIS_RULES) -> Any:
  """`NamedSharding` per leaf of the unboxed tree, from the boxes' logical names."""
  specs = mesh_specs(boxed_abstract, dict(mesh.shape), rules)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=_is_spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data` and `fsdp`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
  """The global batch size must be a multiple of this."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def shard_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global arrays from this process's rows of the batch (each process passes its own part).

  Every process holds `global_batch / process_count` consecutive rows, process 0 first, which
  is what the tasks' iterators yield.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)

  return {k: put(v) for k, v in local_batch.items()}


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules: Rules = LOGICAL_AXIS_RULES):
  """Context in which `nn.with_logical_constraint` and boxed params resolve against `mesh`."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield
