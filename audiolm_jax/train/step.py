"""The train and eval steps: pure functions `(state, batch) -> (state, metrics)`.

The trainer jits them with explicit shardings and a donated state. What happens in one step:

  1. the batch [B, ...] is split into A micro-batches [A, B/A, ...] (gradient accumulation);
     each gives `loss * weight` and its gradient, summed, then divided by the total weight, so
     accumulating equals one big batch even when micro-batches hold different numbers of
     valid examples;
  2. parameters are cast to `config.compute_dtype` for the task (fp32 master copy kept);
  3. AdamW (with clipping and schedule) updates the parameters; the task's `update_extra`
     runs with the new parameters; the parameter EMA moves;
  4. non-finite guard: if the loss, the gradient norm or any floating leaf of the new extra
     state is not finite, all of that is thrown away and the state is left as it was except
     for `step` and the non-finite counters.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from audiolm_jax.train.optim import ema_update
from audiolm_jax.train.state import TrainState
from audiolm_jax.train.task import LossOutput, Task

PyTree = Any
Batch = Mapping[str, jax.Array]

# Names the trainer's own metrics use; task metrics may not reuse them.
RESERVED_METRICS = ("loss", "weight", "grad_norm", "param_norm", "learning_rate", "nonfinite",
                    "nonfinite_total", "nonfinite_streak")
# Folded into the run key for evaluation (steps fold in their own index).
_EVAL_KEY = 2**31 - 1


def cast_floating(tree: PyTree, dtype) -> PyTree:
  """Casts floating-point leaves of `tree` to `dtype`, leaves others alone."""
  dtype = jnp.dtype(dtype)

  def cast(x):
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def all_finite(tree: PyTree) -> jax.Array:
  """True when every floating leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def split_microbatches(batch: Batch, n: int) -> Batch:
  """[B, ...] -> [n, B/n, ...]; micro-batch i holds rows i, i+n, ... (keeps shards local)."""

  def split(x):
    if x.shape[0] % n:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {n} micro-batches")
    x = x.reshape((x.shape[0] // n, n) + x.shape[1:]).swapaxes(0, 1)
    names = (None, "activation_batch") + (None,) * (x.ndim - 2)
    return nn.with_logical_constraint(x, names)

  return jax.tree.map(split, batch)


def _check_metric_names(metrics: Mapping[str, Any]) -> None:
  clash = sorted(set(metrics) & set(RESERVED_METRICS))
  if clash:
    raise ValueError(f"task metrics {clash} clash with the trainer's own metric names")


def make_train_step(task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    config: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """The train step for `task` (see the module docstring)."""
  accum = int(config.optimizer.grad_accum_steps)
  ema_decay = float(config.optimizer.ema_decay)
  compute_dtype = jnp.dtype(config.compute_dtype)

  def weighted_loss(params, extra, batch, key):
    out: LossOutput = task.loss(cast_floating(params, compute_dtype), extra, batch, key,
                                train=True)
    weight = jnp.asarray(out.weight, jnp.float32)
    return out.loss.astype(jnp.float32) * weight, out

  grad_fn = jax.value_and_grad(weighted_loss, has_aux=True)

  def micro_step(params, extra, batch, key):
    (loss_sum, out), grads = grad_fn(params, extra, batch, key)
    _check_metric_names(out.metrics)
    weight = jnp.asarray(out.weight, jnp.float32)
    sums = {"loss": loss_sum, "weight": weight, "grads": grads,
            "metrics": {k: jnp.asarray(v, jnp.float32) * weight for k, v in out.metrics.items()}}
    return (extra if out.extra is None else out.extra), sums

  def accumulate(params, extra, batch, key):
    """Sums of loss*weight, weight, metrics*weight and gradients over the micro-batches."""
    if accum == 1:
      return micro_step(params, extra, batch, jax.random.fold_in(key, 0))
    micro = split_microbatches(batch, accum)
    extra, total = micro_step(params, extra, jax.tree.map(lambda x: x[0], micro),
                              jax.random.fold_in(key, 0))

    def body(carry, xs):
      extra, total = carry
      mb, i = xs
      extra, sums = micro_step(params, extra, mb, jax.random.fold_in(key, i))
      return (extra, jax.tree.map(jnp.add, total, sums)), None

    rest = (jax.tree.map(lambda x: x[1:], micro), jnp.arange(1, accum))
    (extra, total), _ = jax.lax.scan(body, (extra, total), rest)
    return extra, total

  def train_step(state: TrainState, batch: Batch):
    loss_key, extra_key = jax.random.split(state.step_key())
    new_extra, sums = accumulate(state.params, state.extra, batch, loss_key)
    weight = sums["weight"]
    loss = sums["loss"] / weight
    grads = jax.tree.map(lambda g: g / weight, sums["grads"])
    grad_norm = optax.tree.norm(grads)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_extra, extra_metrics = task.update_extra(cast_floating(params, compute_dtype),
                                                 new_extra, batch, extra_key)
    _check_metric_names(extra_metrics)
    ema = state.ema_params
    if ema is not None:
      ema = ema_update(ema, params, ema_decay)

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(new_extra)

    def keep_if_finite(new, old):
      return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    bad = (~finite).astype(jnp.int32)
    new_state = state.replace(
        step=state.step + 1,
        params=keep_if_finite(params, state.params),
        opt_state=keep_if_finite(opt_state, state.opt_state),
        extra=keep_if_finite(new_extra, state.extra),
        ema_params=None if ema is None else keep_if_finite(ema, state.ema_params),
        nonfinite_total=state.nonfinite_total + bad,
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1))

    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "param_norm": optax.tree.norm(new_state.params),
        # The schedule's count is the number of applied updates.
        "learning_rate": schedule(state.step - state.nonfinite_total),
        "nonfinite": bad.astype(jnp.float32),
        "nonfinite_total": new_state.nonfinite_total.astype(jnp.float32),
        "nonfinite_streak": new_state.nonfinite_streak.astype(jnp.float32),
    }
    metrics.update({k: v / weight for k, v in sums["metrics"].items()})
    metrics.update({k: jnp.asarray(v, jnp.float32) for k, v in extra_metrics.items()})
    return new_state, metrics

  return train_step


def make_eval_step(task: Task, config: ml_collections.ConfigDict
                   ) -> Callable[[TrainState, Batch], dict[str, jax.Array]]:
  """`eval_step(state, batch) -> sums`: weighted sums of loss and metrics, and the weight.

  Uses the parameter EMA when there is one. The caller adds the sums over batches and divides
  by the total weight.
  """
  compute_dtype = jnp.dtype(config.compute_dtype)

  def eval_step(state: TrainState, batch: Batch):
    params = state.params if state.ema_params is None else state.ema_params
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), _EVAL_KEY)
    out = task.evaluate(cast_floating(params, compute_dtype), state.extra, batch, key)
    weight = jnp.asarray(out.weight, jnp.float32)
    sums = {k: jnp.asarray(v, jnp.float32) * weight for k, v in out.metrics.items()}
    sums["loss"] = out.loss.astype(jnp.float32) * weight
    sums["weight"] = weight
    return sums

  return eval_step
