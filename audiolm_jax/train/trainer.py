"""The one training loop: every AudioLM model is a `Task` (train/task.py) trained by this.

    result = train(config, workdir)             # or: audiolm-jax train --config ... --workdir ...

The trainer owns the mesh and sharding, the optimizer, checkpoints, preemption, metrics,
progress and the evaluation cadence. Where a run starts from, in this order:

  1. the latest readable checkpoint in `WORKDIR/checkpoints/` (a restart after preemption or a
     crash continues exactly: state, RNG and data iterator position);
  2. `init_from`: parameters, extra state and EMA of another run's checkpoint, with a fresh
     optimizer, step 0 and a fresh data order (fine-tuning);
  3. a fresh initialisation from `config.seed`.

The log says which one happened. Workdir layout: `checkpoints/`, `metrics.jsonl`, `tb/`,
`config.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils

from audiolm_jax import checkpoint_files
from audiolm_jax import config as config_lib
from audiolm_jax import paths
from audiolm_jax.errors import AudioLMError, ConfigError
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.train import optim, sharding
from audiolm_jax.train import state as state_lib
from audiolm_jax.train import step as step_lib
from audiolm_jax.train import task as task_lib
from audiolm_jax.train.defaults import check_config
from audiolm_jax.train.state import TrainState
from audiolm_jax.train.task import build_task

log = logging.getLogger(__name__)


class NonFiniteError(AudioLMError):
  """Too many consecutive steps had a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
  """How a `train` call ended.

  Attributes:
    step: the step reached.
    state: the final train state (on the mesh).
    origin: where the run started: "checkpoint", "init_from" or "fresh".
    preempted: True if a SIGTERM/SIGINT stopped it (a checkpoint of `step` was saved).
    last_metrics: the last logged training metrics.
    eval_metrics: the last evaluation metrics.
  """
  step: int
  state: TrainState
  origin: str
  preempted: bool = False
  last_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
  eval_metrics: dict[str, float] = dataclasses.field(default_factory=dict)


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          init_from: str | None = None) -> TrainResult:
  """Trains `config.task` in `workdir` (a local path or a URI such as `gs://bucket/run`) until
  `config.total_steps` (or a stop signal)."""
  trainer = Trainer(config, workdir)
  try:
    return trainer.run(init_from)
  finally:
    trainer.checkpointer.close()


def parse_profile_steps(text: str) -> tuple[int, int] | None:
  """"a:b" -> (a, b): trace the steps that take the step count from a to b."""
  if not text:
    return None
  try:
    a, b = (int(x) for x in text.split(":"))
  except ValueError:
    raise ConfigError(f"profile_steps: expected 'a:b' with integers, got {text!r}") from None
  if not 0 <= a < b:
    raise ConfigError(f"profile_steps: need 0 <= a < b, got {text!r}")
  return a, b


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag checked between steps (single process).

  With several processes, SIGTERM is left to JAX's preemption service (started by
  `jax.distributed.initialize`) and the processes agree on the step to stop at through
  `reached_preemption_sync_point`; SIGINT keeps its default. A second SIGINT interrupts.
  """

  def __init__(self):
    self.received: str | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name
    log.warning("%s received: saving a checkpoint after this step, then exiting",
                self.received)
    if signum == signal.SIGINT:  # A second Ctrl-C interrupts for real.
      signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      signals = (signal.SIGINT, signal.SIGTERM) if jax.process_count() == 1 else ()
      for s in signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.received is not None


class Trainer:
  """Sets up one run; `run()` trains it. Use `train()` unless you need the pieces."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    check_config(config)
    self.config = config
    self.workdir = paths.resolve(workdir)  # A local folder or a URI (`gs://bucket/run`).
    self.is_chief = jax.process_index() == 0
    self.task = build_task(config)
    self._eval_audio = None  # the jitted `Task.eval_audio`, made at the first evaluation
    self.mesh = sharding.make_mesh(config.mesh)
    divisor = sharding.batch_divisor(self.mesh) * config.optimizer.grad_accum_steps
    if config.batch_size % divisor or config.batch_size % jax.process_count():
      raise ConfigError(f"batch_size={config.batch_size} must be divisible by data x fsdp x "
                        f"grad_accum_steps = {divisor} and by {jax.process_count()} processes")
    self.tx, self.schedule = optim.make_optimizer(config.optimizer, config.total_steps)
    self.init_fn = state_lib.make_init_fn(self.task, self.tx,
                                          use_ema=config.optimizer.ema_decay > 0)
    self.shardings, self.abstract = state_lib.state_shardings(self.init_fn, config.seed,
                                                              self.mesh)
    self.checkpointer = ckpt_lib.Checkpointer(self.workdir / "checkpoints",
                                              keep=config.keep_checkpoints)
    self.config_dict = json.loads(config_lib.to_json(config))

  def _info(self, msg, *args):
    if self.is_chief:
      log.info(msg, *args)

  # ------------------------------------------------------------------------------ resume order

  def restore_or_init(self, init_from: str | None) -> tuple[TrainState, dict | None, str]:
    """`(state, data_iterator_state, origin)` following the resume order of the docstring."""
    target = state_lib.with_shardings(self.abstract, self.shardings)
    # 1. The latest readable checkpoint in the workdir.
    restored = self.checkpointer.restore_latest(target)
    if restored is not None:
      self._info("resume: checkpoint step %d from %s (latest in the workdir)", restored.step,
                 restored.path)
      self._log_config_changes(restored.config)
      return restored.state, restored.data_state, "checkpoint"
    state, _, _ = state_lib.sharded_init(self.init_fn, self.config.seed, self.mesh)
    # 2. --init_from: the model of another run, a fresh optimizer and data order.
    if init_from:
      step_dir = checkpoint_files.find_step_dir(init_from)
      saved = ckpt_lib.saved_fields(step_dir)
      fields = tuple(f for f in ("params", "extra", "ema_params")
                     if jax.tree.leaves(getattr(state, f)) and (f in saved or f == "params"))
      loaded = ckpt_lib.restore_subtrees(step_dir, {f: getattr(target, f) for f in fields})
      if state.ema_params is not None and "ema_params" not in loaded:
        loaded["ema_params"] = loaded["params"]  # The EMA starts at the loaded parameters.
      state = state.replace(**loaded)
      self._info("resume: %s from --init_from %s; optimizer, step and data start fresh",
                 "+".join(fields), step_dir)
      return state, None, "init_from"
    # 3. A fresh initialisation.
    self._info("resume: fresh initialisation (seed %d); no checkpoint in %s",
               self.config.seed, self.checkpointer.directory)
    return state, None, "fresh"

  def _log_config_changes(self, saved: dict | None) -> None:
    if not saved:
      return
    old, new = config_lib.flatten(saved), config_lib.flatten(self.config_dict)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
      self._info("config differs from the checkpoint's in: %s",
                 ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed))

  # ------------------------------------------------------------------------------ compiled steps

  def phase_of(self, step: int) -> int:
    """The task phase the step after `step` belongs to (`Task.phase_starts`)."""
    starts = tuple(self.task.phase_starts())
    return max(i for i, start in enumerate(starts) if start <= step)

  def compile_steps(self, phase: int = 0):
    """AOT-compiled `(train_step, eval_step)` of a task phase with explicit shardings; state
    donated."""
    self.task.set_phase(phase)
    batch_spec = self.task.batch_spec(self.config.batch_size)
    batch_sharding = sharding.batch_sharding(self.mesh)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding)
                      for k, v in batch_spec.items()}
    abstract_state = state_lib.with_shardings(self.abstract, self.shardings)
    replicated = sharding.replicated(self.mesh)
    self._info("compiling the train step%s (XLA; minutes for large models) ...",
               f" of phase {phase}" if phase else "")
    start = time.perf_counter()
    with sharding.axis_rules(self.mesh):
      train_step = jax.jit(
          step_lib.make_train_step(self.task, self.tx, self.schedule, self.config),
          in_shardings=(self.shardings, batch_sharding),
          out_shardings=(self.shardings, replicated), donate_argnums=0)
      train_step = train_step.lower(abstract_state, abstract_batch).compile()
      eval_step = jax.jit(step_lib.make_eval_step(self.task, self.config),
                          in_shardings=(self.shardings, batch_sharding),
                          out_shardings=replicated)
    self._info("compiled the train step in %.1f s", time.perf_counter() - start)
    return train_step, eval_step

  def flops_per_step(self, compiled_train_step) -> tuple[float | None, str]:
    per_example = self.task.flops_per_example()
    if per_example:
      return per_example * self.config.batch_size, "task model FLOPs"
    return metrics_lib.xla_flops(compiled_train_step, self.mesh.size), "XLA cost analysis"

  # ------------------------------------------------------------------------------ evaluation

  def evaluate(self, state: TrainState, eval_step,
               reporter: metrics_lib.Reporter | None = None) -> dict[str, float]:
    """Weighted means of the eval loss and metrics over `eval_steps` validation batches;
    with a `reporter`, also the task's `eval_audio` clips of the first batch."""
    iterator = self.task.make_iterator(self.config.data.eval_split, jax.process_index(),
                                       jax.process_count())
    totals: dict[str, float] = {}
    for i in range(self.config.eval_steps):
      try:
        batch = next(iterator)
      except StopIteration:
        break
      with sharding.axis_rules(self.mesh):
        batch = sharding.shard_batch(batch, self.mesh)
        sums = eval_step(state, batch)
        if i == 0 and reporter is not None:
          self.write_eval_audio(state, batch, reporter)
      for k, v in metrics_lib.to_host(sums).items():
        totals[k] = totals.get(k, 0.0) + v
    weight = totals.pop("weight", 0.0)
    if not weight:
      return {}
    return {k: v / weight for k, v in totals.items()}

  def write_eval_audio(self, state: TrainState, batch, reporter: metrics_lib.Reporter) -> None:
    """The task's clips (`Task.eval_audio`), if it gives any, to TensorBoard."""
    if type(self.task).eval_audio is task_lib.Task.eval_audio:
      return
    if self._eval_audio is None:
      fn = lambda params, extra, batch: self.task.eval_audio(params, extra, batch)
      self._eval_audio = jax.jit(fn, out_shardings=sharding.replicated(self.mesh))
    params = state.params if state.ema_params is None else state.ema_params  # as eval_step
    clips = self._eval_audio(params, state.extra, batch)
    step = int(jax.device_get(state.step))
    for name, audio in jax.device_get(clips).items():
      reporter.writer.write_audio(step, f"eval_audio/{name}", audio, self.task.audio_sample_rate)

  # ------------------------------------------------------------------------------ the loop

  def _check_finite(self, step: int, values: dict[str, float]) -> None:
    """Warns about a skipped non-finite step; stops after `max_nonfinite_steps` in a row."""
    if not values["nonfinite"]:
      return
    streak, limit = int(values["nonfinite_streak"]), self.config.max_nonfinite_steps
    log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row, %d in total)",
                step, streak, int(values["nonfinite_total"]))
    if streak >= limit:
      raise NonFiniteError(
          f"stopped at step {step}: {streak} consecutive steps had a non-finite loss or "
          f"gradient (max_nonfinite_steps={limit}); the checkpoints in "
          f"{self.checkpointer.directory} hold finite parameters")

  def check_workdir_task(self) -> None:
    """Raises `ConfigError` if the workdir holds another task's run (checkpoints or config).

    Training a task into another's workdir would mix their checkpoints (and, when the shapes
    happen to match, resume one from the other). Starting from another run's parameters is
    `--init_from`, into a new workdir.
    """
    steps = self.checkpointer.all_steps()
    if steps:
      where = self.checkpointer.directory / str(steps[-1])
      saved = checkpoint_files.read_config(where)
    else:
      where = self.workdir / "config.json"
      try:
        saved = json.loads(where.read_text())
      except (OSError, ValueError):
        saved = None
    old = (saved or {}).get("task")
    if old is not None and old != self.config.task:
      raise ConfigError(
          f"{self.workdir} holds a {old!r} run ({where}), not {self.config.task!r}: use a new "
          f"workdir (with --init_from {self.workdir} to start from that run's parameters)")

  def check_data(self) -> None:
    """Draws one evaluation batch before any training, so that a missing or empty eval split
    (or an unreadable token cache) fails before step 1 rather than at the first evaluation."""
    if not self.config.eval_every:
      return
    iterator = self.task.make_iterator(self.config.data.eval_split, jax.process_index(),
                                       jax.process_count())
    try:
      next(iterator)
    except StopIteration:
      raise ConfigError(f"data.eval_split={self.config.data.eval_split!r} gives no batch of "
                        f"{self.config.batch_size} (too few examples); choose another split, "
                        "or set eval_every=0") from None

  def run(self, init_from: str | None = None) -> TrainResult:
    cfg = self.config
    profile = parse_profile_steps(cfg.profile_steps)
    # Every check before anything is written or trained.
    self.check_workdir_task()
    iterator = self.task.make_iterator(cfg.data.split, jax.process_index(),
                                       jax.process_count())
    self.check_data()
    # Every process writes its own shards (and if one alone raised, the others would wait
    # at the first collective), so every process checks its disk.
    self.checkpointer.check_free_space(sum(
        x.size * x.dtype.itemsize for x in jax.tree.leaves(self.abstract)))
    state, data_state, origin = self.restore_or_init(init_from)
    step = int(jax.device_get(state.step))
    if data_state:
      iterator.set_state(data_state)
    if self.is_chief:
      self.workdir.mkdir(parents=True, exist_ok=True)
      (self.workdir / "config.json").write_text(config_lib.to_json(cfg))
    result = TrainResult(step=step, state=state, origin=origin)
    if step >= cfg.total_steps:
      self._info("step %d >= total_steps %d: nothing to train", step, cfg.total_steps)
      return result

    phase = self.phase_of(step)
    train_step, eval_step = self.compile_steps(phase)
    flops, flops_source = self.flops_per_step(train_step)
    peak, peak_source = metrics_lib.peak_flops_per_device(cfg.peak_flops_per_device)
    self._info("mesh %s over %d devices, %d process(es); %s FLOPs/step (%s); peak %.3g "
               "FLOP/s per device (%s)", dict(self.mesh.shape), self.mesh.size,
               jax.process_count(), f"{flops:.3g}" if flops else "unknown", flops_source,
               peak, peak_source)
    batch_spec = self.task.batch_spec(cfg.batch_size)
    throughput = metrics_lib.Throughput(cfg.batch_size, self.task.units_per_example(batch_spec),
                                        self.task.throughput_unit, flops, peak * self.mesh.size)
    reporter = metrics_lib.Reporter(self.workdir, self.is_chief, cfg.log_every,
                                    cfg.total_steps, step, throughput, cfg.progress_bar,
                                    origin, cfg.progress_every_s)
    pending = []  # The last step's (step, device metrics), read after the next dispatch.
    profiling = False

    def finish_pending() -> None:
      """Reads the last step's metrics (a step late, so the device never waits on the host)."""
      while pending:
        done_step, device_metrics = pending.pop()
        values = metrics_lib.to_host(device_metrics)
        self._check_finite(done_step, values)
        reporter.step_done(done_step, values)

    # On a terminal, log lines (evaluations, phases) are printed above the bar, not through it.
    redirect = contextlib.nullcontext()
    if reporter.bar.interactive:
      from tqdm.contrib.logging import logging_redirect_tqdm  # pylint: disable=g-import-not-at-top
      redirect = logging_redirect_tqdm()
    try:
      with StopSignal() as stop, redirect:
        while step < cfg.total_steps:
          if profile and step == profile[0] and self.is_chief:
            jax.profiler.start_trace(os.fspath(self.workdir / "tb"))
            profiling = True
          if self.phase_of(step) != phase:  # The task's step changes here: compile the next.
            finish_pending()
            phase = self.phase_of(step)
            self._info("step %d: task phase %d starts; compiling its step", step, phase)
            train_step, _ = self.compile_steps(phase)
            throughput.flops_per_step, _ = self.flops_per_step(train_step)
            throughput.restart()
          batch = sharding.shard_batch(next(iterator), self.mesh)
          state, device_metrics = train_step(state, batch)
          step += 1
          finish_pending()
          pending.append((step, device_metrics))
          if profiling and step == profile[1]:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            profiling = False
            self._info("profile of steps %d:%d written to %s", *profile,
                       self.workdir / "tb")
          preempted = stop.should_stop(step)
          # Save first: an evaluation that fails must not cost the steps since the last save.
          if step % cfg.checkpoint_every == 0 or step == cfg.total_steps or preempted:
            finish_pending()  # Never save before the non-finite streak is checked.
            self.checkpointer.save(step, state, iterator.get_state(), self.config_dict)
          if cfg.eval_every and step % cfg.eval_every == 0 and not preempted:
            finish_pending()
            start = time.perf_counter()
            result.eval_metrics = self.evaluate(state, eval_step, reporter)
            reporter.eval_done(step, result.eval_metrics, time.perf_counter() - start)
            self._info("step %d eval: %s", step,
                       metrics_lib.summary_line(result.eval_metrics))
          if preempted:
            result.preempted = True
            break
        finish_pending()
    finally:
      if profiling:
        jax.profiler.stop_trace()
      reporter.close()
      self.checkpointer.wait_until_finished()
    result.last_metrics = reporter.last
    if result.preempted:
      log.warning("stopped by %s at step %d; checkpoint saved in %s; rerun the same command "
                  "to continue", stop.received or "preemption", step,
                  self.checkpointer.directory)
    else:
      self._info("done: step %d, checkpoint in %s", step, self.checkpointer.directory)
    result.step, result.state = step, state
    return result
