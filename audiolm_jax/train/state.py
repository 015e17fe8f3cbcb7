"""The train state and its sharded initialisation.

Sharded init the standard way: `jax.eval_shape(init)` gives the abstract state with the
logical axis names of every boxed leaf -> mesh `PartitionSpec`s (`train/sharding.py`) ->
`jax.jit(init, out_shardings=...)`, so no device ever holds the full unsharded state.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from audiolm_jax.train import sharding
from audiolm_jax.train.task import Task

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a checkpoint stores exactly this.

  Attributes:
    step: steps taken (including skipped non-finite ones), int32 scalar.
    params: trainable parameters, float32 master copy.
    opt_state: optax state of `params`.
    extra: the task's non-trainable state (see `Task.init`).
    ema_params: exponential moving average of `params`, or None when off.
    rng: raw key data of the run's base key; step `s` uses `fold_in(key, s)`.
    nonfinite_total: steps skipped because the loss or gradients were not finite.
    nonfinite_streak: consecutive skipped steps up to now.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  extra: PyTree
  ema_params: PyTree | None
  rng: jax.Array
  nonfinite_total: jax.Array
  nonfinite_streak: jax.Array

  def step_key(self) -> jax.Array:
    """The random key of the current step."""
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def make_init_fn(task: Task, tx: optax.GradientTransformation,
                 use_ema: bool) -> Callable[[jax.Array], TrainState]:
  """`init(seed_key) -> TrainState` whose leaves keep the task's logical-axis boxes."""

  def init(key: jax.Array) -> TrainState:
    init_key, run_key = jax.random.split(key)
    params, extra = task.init(init_key)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=tx.init(params), extra=extra,
                      ema_params=params if use_ema else None,
                      rng=jax.random.key_data(run_key), nonfinite_total=zero,
                      nonfinite_streak=zero)

  return init


def abstract_state(init_fn: Callable[[jax.Array], TrainState], seed: int) -> TrainState:
  """The boxed abstract state (shapes, dtypes, logical names); allocates nothing."""
  return jax.eval_shape(init_fn, jax.random.key(seed))


def with_shardings(abstract_unboxed: PyTree, shardings: PyTree) -> PyTree:
  """`ShapeDtypeStruct`s carrying their target sharding (a restore target)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract_unboxed, shardings)


def sharded_init(init_fn: Callable[[jax.Array], TrainState], seed: int,
                 mesh: Mesh) -> tuple[TrainState, TrainState, TrainState]:
  """Initialises the state directly in its shards.

  Returns:
    `(state, shardings, abstract)`: the unboxed state on `mesh`, its `NamedSharding` tree and
    its abstract (unboxed) shapes.
  """
  with sharding.axis_rules(mesh):
    boxed = abstract_state(init_fn, seed)
    shardings = sharding.tree_shardings(boxed, mesh)
    init = jax.jit(lambda key: sharding.unbox(init_fn(key)), out_shardings=shardings)
    state = init(jax.random.key(seed))
  return state, shardings, sharding.unbox(boxed)


def state_shardings(init_fn: Callable[[jax.Array], TrainState], seed: int,
                    mesh: Mesh) -> tuple[TrainState, TrainState]:
  """`(shardings, abstract)` of the state on `mesh`, without initialising it."""
  with sharding.axis_rules(mesh):
    boxed = abstract_state(init_fn, seed)
    return sharding.tree_shardings(boxed, mesh), sharding.unbox(boxed)
