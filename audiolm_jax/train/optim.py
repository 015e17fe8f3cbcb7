"""The optimizer from `config.optimizer`: AdamW, a warmup + decay schedule, global-norm clipping.

Gradient accumulation, the non-finite guard and the parameter EMA live in the train step
(`train/step.py`), because they need the loss and the state, not just the gradients.

`config.optimizer` keys:
  learning_rate    peak learning rate
  schedule         "cosine" (warmup, then cosine to min_lr_ratio * peak at total_steps),
                   "linear" (warmup, then linear to min_lr_ratio * peak) or "constant"
  warmup_steps     linear warmup from 0 to the peak
  min_lr_ratio     final learning rate as a fraction of the peak (cosine, linear)
  b1, b2, eps      Adam moments
  weight_decay     decoupled weight decay, applied to parameters with 2 or more dimensions
  grad_clip_norm   clip the global gradient norm to this (0 = no clipping)
  grad_accum_steps micro-batches per step (the batch is split, gradients averaged)
  ema_decay        keep an exponential moving average of the parameters (0 = off)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from audiolm_jax.errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the number of updates already applied.

  Update `n` (counting from 0) uses the rate at `n + 1`, so warmup starts at `peak / warmup`
  rather than wasting the first step on a zero rate, and reaches the peak at update `warmup`.
  """
  peak, warmup = float(opt.learning_rate), int(opt.warmup_steps)
  if opt.schedule not in SCHEDULES:
    raise ConfigError(f"optimizer.schedule: {opt.schedule!r} is not one of {SCHEDULES}")
  if warmup < 0 or total_steps <= 0:
    raise ConfigError("optimizer.warmup_steps must be >= 0 and total_steps > 0")
  end = peak * float(opt.min_lr_ratio)
  decay_steps = max(total_steps, warmup + 1)
  if opt.schedule == "constant":
    base = optax.warmup_constant_schedule(0.0, peak, warmup) if warmup else (
        optax.constant_schedule(peak))
  elif opt.schedule == "cosine":
    base = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, decay_steps, end_value=end)
  else:
    base = optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup),
         optax.linear_schedule(peak, end, decay_steps - warmup)], [warmup])
  return lambda count: base(count + 1)


def _decay_mask(params):
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(opt: ml_collections.ConfigDict,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`(tx, schedule)`: clipping, then AdamW with the schedule."""
  schedule = make_schedule(opt, total_steps)
  parts = []
  if opt.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                           weight_decay=opt.weight_decay, mask=_decay_mask))
  return optax.chain(*parts), schedule


def ema_update(ema, params, decay: float):
  """`decay * ema + (1 - decay) * params`, leaf by leaf, in the EMA's dtype."""
  return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype),
                      ema, params)
