"""The train step: accumulation, the non-finite guard, extra state, mixed precision, EMA."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from audiolm_jax.train import optim, sharding
from audiolm_jax.train import state as state_lib
from audiolm_jax.train import step as step_lib
from audiolm_jax.train.defaults import base_config
from audiolm_jax.train.task import LossOutput, Task

D = 3


class ProbeTask(Task):
  """Weighted least squares, with extra state: a running count of valid rows seen and a
  one-parameter "discriminator" trained by `update_extra` with its own SGD."""

  seen_dtypes = []

  def make_iterator(self, split, process_index, process_count):
    return iter([])

  def batch_spec(self, batch_size):
    return {"x": jax.ShapeDtypeStruct((batch_size, D), jnp.float32),
            "y": jax.ShapeDtypeStruct((batch_size,), jnp.float32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

  def init(self, rng):
    w = nn.Partitioned(jax.random.normal(rng, (D, 2)), names=("embed", "mlp"))
    return {"w": w, "b": jnp.zeros((2,))}, {"seen": jnp.zeros(()), "disc": jnp.ones(())}

  def loss(self, params, extra, batch, rng, *, train):
    ProbeTask.seen_dtypes.append(params["w"].dtype)
    x = batch["x"].astype(params["w"].dtype)
    pred = (x @ params["w"] + params["b"]).sum(-1).astype(jnp.float32)
    v = batch["valid"]
    weight = v.sum()
    err = (pred - batch["y"]) ** 2
    new_extra = {**extra, "seen": extra["seen"] + weight}
    return LossOutput(loss=(err * v).sum() / weight, weight=weight,
                      metrics={"mae": (jnp.sqrt(err) * v).sum() / weight}, extra=new_extra)

  def update_extra(self, params, extra, batch, rng):
    # The "discriminator" d follows mean(x @ w) by one SGD step on (d - target)^2.
    target = (batch["x"] @ params["w"].astype(jnp.float32)).mean()
    grad = 2 * (extra["disc"] - target)
    return {**extra, "disc": extra["disc"] - 0.1 * grad}, {"disc_gap": extra["disc"] - target}


def probe_config(**opt):
  c = base_config()
  c.task = "probe"
  c.total_steps = 10
  c.batch_size = 8
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "constant"
  c.optimizer.learning_rate = 0.1
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.weight_decay = 0.0
  for k, v in opt.items():
    if k == "compute_dtype":
      c.compute_dtype = v
    else:
      c.optimizer[k] = v
  return c


def make(config):
  task = ProbeTask(config)
  tx, schedule = optim.make_optimizer(config.optimizer, config.total_steps)
  init_fn = state_lib.make_init_fn(task, tx, use_ema=config.optimizer.ema_decay > 0)
  state = sharding.unbox(init_fn(jax.random.key(0)))
  step = jax.jit(step_lib.make_train_step(task, tx, schedule, config))
  return task, tx, state, step


def batch(seed, valid=None):
  rng = np.random.default_rng(seed)
  b = {"x": rng.normal(size=(8, D)).astype(np.float32),
       "y": rng.normal(size=(8,)).astype(np.float32),
       "valid": np.ones(8, np.float32) if valid is None else np.asarray(valid, np.float32)}
  return b


def test_accumulation_equals_one_big_batch_with_uneven_valid_rows():
  # Micro-batches take rows i, i+4: with this mask they hold 1, 2, 1 and 2 valid rows.
  valid = [1, 0, 1, 1, 0, 1, 0, 1]
  _, tx, s1, step1 = make(probe_config())
  _, _, s4, step4 = make(probe_config(grad_accum_steps=4))
  b = batch(0, valid)
  s1, m1 = step1(s1, b)
  s4, m4 = step4(s4, b)
  np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
  np.testing.assert_allclose(m4["mae"], m1["mae"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               s1.params, s4.params)
  np.testing.assert_allclose(s4.extra["seen"], 5.0)  # extra threads through micro-batches
  # And both equal plain optax on the full weighted loss.
  _, _, s0, _ = make(probe_config())
  v = np.asarray(valid, np.float32)

  def full_loss(p):
    pred = (b["x"] @ p["w"] + p["b"]).sum(-1)
    return ((pred - b["y"]) ** 2 * v).sum() / v.sum()

  grads = jax.grad(full_loss)(s0.params)
  updates, _ = tx.update(grads, s0.opt_state, s0.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               optax.apply_updates(s0.params, updates), s1.params)


def test_nonfinite_step_is_skipped_and_counted():
  _, _, s, step = make(probe_config())
  s, _ = step(s, batch(0))
  before = jax.device_get(s)
  bad = batch(1)
  bad["x"][3, 1] = np.nan
  s, m = step(s, bad)
  after = jax.device_get(s)
  assert int(after.step) == 2 and float(m["nonfinite"]) == 1.0
  assert int(after.nonfinite_total) == 1 and int(after.nonfinite_streak) == 1
  for field in ("params", "opt_state", "extra"):
    jax.tree.map(np.testing.assert_array_equal, getattr(before, field), getattr(after, field))
  s, m = step(s, bad)
  assert int(s.nonfinite_streak) == 2 and int(s.nonfinite_total) == 2
  s, m = step(s, batch(2))
  assert float(m["nonfinite"]) == 0 and int(s.nonfinite_streak) == 0
  assert int(s.nonfinite_total) == 2 and np.isfinite(float(m["loss"]))
  assert not np.allclose(s.params["w"], after.params["w"])  # training went on


def test_extra_state_and_update_extra_follow_a_numpy_reference():
  _, _, s, step = make(probe_config())
  disc, seen = 1.0, 0.0
  for i in range(3):
    b = batch(i, [1, 1, 0, 1, 1, 1, 1, 0])
    s, m = step(s, b)
    target = float((b["x"] @ np.asarray(s.params["w"])).mean())  # uses the *new* params
    np.testing.assert_allclose(float(m["disc_gap"]), disc - target, rtol=1e-5)
    disc -= 0.1 * 2 * (disc - target)
    seen += 6
  np.testing.assert_allclose(float(s.extra["disc"]), disc, rtol=1e-5)
  np.testing.assert_allclose(float(s.extra["seen"]), seen)


def test_mixed_precision_computes_in_bf16_and_keeps_fp32_master_params():
  ProbeTask.seen_dtypes.clear()
  _, _, s32, step32 = make(probe_config())
  _, _, s16, step16 = make(probe_config(compute_dtype="bfloat16"))
  s32, m32 = step32(s32, batch(0))
  s16, m16 = step16(s16, batch(0))
  assert jnp.bfloat16 in ProbeTask.seen_dtypes and jnp.float32 in ProbeTask.seen_dtypes
  assert s16.params["w"].dtype == jnp.float32
  floats = [x.dtype for x in jax.tree.leaves(s16.opt_state) if jnp.issubdtype(x.dtype,
                                                                                jnp.floating)]
  assert floats and set(floats) == {jnp.dtype(jnp.float32)}
  np.testing.assert_allclose(float(m16["loss"]), float(m32["loss"]), rtol=3e-2)
  assert float(m16["loss"]) != float(m32["loss"])  # really computed in lower precision


def test_parameter_ema():
  _, _, s, step = make(probe_config(ema_decay=0.5))
  ema = jax.device_get(s.params)
  for i in range(3):
    s, _ = step(s, batch(i))
    ema = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema, jax.device_get(s.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ema, s.ema_params)


def test_task_metric_names_may_not_shadow_the_trainers():

  class Clash(ProbeTask):

    def loss(self, *args, **kw):
      out = super().loss(*args, **kw)
      return out.replace(metrics={"grad_norm": out.loss})

  config = probe_config()
  task = Clash(config)
  tx, schedule = optim.make_optimizer(config.optimizer, config.total_steps)
  state = sharding.unbox(state_lib.make_init_fn(task, tx, False)(jax.random.key(0)))
  with pytest.raises(ValueError, match="clash"):
    step_lib.make_train_step(task, tx, schedule, config)(state, batch(0))


def test_schedules():
  opt = ml_collections.ConfigDict(dict(learning_rate=1.0, warmup_steps=4, min_lr_ratio=0.1,
                                       schedule="cosine"))
  s = optim.make_schedule(opt, total_steps=10)
  # Update n uses the rate at n + 1: warmup 0.25, 0.5, 0.75, 1.0, then cosine to 0.1 at 10.
  np.testing.assert_allclose([float(s(n)) for n in (0, 1, 3)], [0.25, 0.5, 1.0])
  np.testing.assert_allclose(float(s(9)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(s(6)), 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 3 / 6)),
                             rtol=1e-5)
  opt.schedule = "linear"
  s = optim.make_schedule(opt, total_steps=10)
  np.testing.assert_allclose([float(s(n)) for n in (3, 6, 9)], [1.0, 0.55, 0.1], rtol=1e-6)
  opt.schedule = "constant"
  s = optim.make_schedule(opt, total_steps=10)
  np.testing.assert_allclose([float(s(n)) for n in (0, 3, 9)], [0.25, 1.0, 1.0])


def test_weight_decay_only_on_matrices_and_clipping():
  opt = probe_config(weight_decay=0.5, grad_clip_norm=1.0).optimizer
  tx, _ = optim.make_optimizer(opt, 10)
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["b"], 0.0)
  clip = optax.clip_by_global_norm(1.0)
  big = {"w": 30 * jnp.ones((2, 2)), "b": 40 * jnp.ones((2,))}
  clipped, _ = clip.update(big, clip.init(params))
  np.testing.assert_allclose(float(optax.tree.norm(clipped)), 1.0, rtol=1e-6)
