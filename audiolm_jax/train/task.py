"""The Task interface: what a model brings to the one trainer, and the registry of tasks.

The trainer (`train/trainer.py`) owns the mesh, sharding, optimizer, mixed precision, gradient
accumulation, the non-finite guard, checkpoints, logging, progress and evaluation cadence. A task
owns only what is specific to one model. Writing a new task is one file:

    @register("my_task")
    class MyTask(Task):
      throughput_unit = "tokens"                  # what `units_per_example` counts

      def make_iterator(self, split, process_index, process_count):
        ...  # yields this process's rows of each global batch, with get_state()/set_state()

      def batch_spec(self, batch_size):
        return {"tokens": jax.ShapeDtypeStruct((batch_size, T), jnp.int32),
                "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

      def init(self, rng):
        variables = self.model.init({"params": rng}, dummy_input)   # boxed with logical names
        return variables["params"], {}                               # (params, extra)

      def loss(self, params, extra, batch, rng, *, train):
        ...
        return LossOutput(loss=mean_nll, weight=n_valid_tokens, metrics={"accuracy": acc})

registered where it is defined: the trainer keeps no list of models. The package's tasks
register when `audiolm_jax.tasks` is imported (the `train` and `inspect` commands do); a fork's
task registers when its module is imported, or is named as `config.task =
"package.module:ClassName"`.

The contract, method by method (B = this process's batch rows, `config.batch_size` is global):

* `make_iterator(split, process_index, process_count)`: an iterator over dicts of numpy arrays
  with fixed shapes whose leading dimension is `config.batch_size // process_count`; process `p`
  yields rows `[p * B, (p + 1) * B)` of every global batch, so the global batch does not depend
  on the number of processes. It must offer `get_state() -> dict` (JSON-serialisable) and
  `set_state(dict)`: the state is saved with every checkpoint and restored on resume, so a
  resumed run sees exactly the batches it would have seen. A grain `DatasetIterator` qualifies.
  The training split repeats forever; an evaluation split yields the same number of batches on
  every process and may pad with `valid = 0` rows. An optional `valid` entry ([B], 1 = real
  example) must weight the loss.
* `batch_spec(batch_size)`: `jax.ShapeDtypeStruct` per batch entry for a *global* batch;
  used to lower the train step before any data is read (FLOPs, memory plans).
* `init(rng) -> (params, extra)`: the trainable parameters and any non-trainable state (EMA
  codebook statistics, batch statistics, a discriminator with its own optimizer state, ...).
  Called under `jax.eval_shape` and `jax.jit`, so it must be pure. Leaves boxed with
  `nn.with_logical_partitioning` / `nn.Partitioned` are sharded by their logical names
  (`train/sharding.py`); unboxed leaves are replicated.
* `loss(params, extra, batch, rng, *, train) -> LossOutput`: differentiated with respect to
  `params`. `params` arrive in `config.compute_dtype` (bf16 compute, fp32 master copy kept by
  the trainer): cast floating inputs to it if the model should compute in it, and return the
  loss in float32. `loss` is a *mean* over `weight` things (valid tokens, examples): gradient
  accumulation and evaluation combine micro-batches weighted by it. `metrics` are scalars
  averaged the same way. `extra`, if not None, is the new extra state (e.g. updated codebook
  EMA); it is discarded, like every other update, when the step is not finite.
* `update_extra(params, extra, batch, rng) -> (extra, metrics)` (optional): runs after the
  parameter update within the same jitted step with the *new* fp32 params, e.g. a GAN
  discriminator step with its optimizer state held in `extra`. Its metrics are not weighted.
* `evaluate(params, extra, batch, rng) -> LossOutput` (optional): the evaluation loss and
  metrics on one validation batch; by default `loss(..., train=False)`.
* `units_per_example(batch_spec)` and `throughput_unit` (optional): e.g. tokens or seconds of
  audio per example, for the "tokens/s" style throughput metric.
* `flops_per_example()` (optional): model FLOPs of forward + backward for one example, for
  model FLOPs utilisation; if None, the trainer uses XLA's count of the compiled step.
* `phase_starts()` and `set_phase(i)` (optional): a task whose step changes shape during a run
  (the codec: reconstruction only during the discriminator warm-up, then adversarial) names
  the steps where each phase starts; the trainer compiles one train step per phase, calling
  `set_phase(i)` before tracing it, and switches at the boundary. `loss` and `update_extra`
  may then read the phase as a Python value (no `lax.cond`, no dead work).
"""

from __future__ import annotations

import abc
import sys
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol

import flax.struct
import jax
import ml_collections
import numpy as np

from audiolm_jax.errors import ConfigError

PyTree = Any
Metrics = Mapping[str, jax.Array]


@flax.struct.dataclass
class LossOutput:
  """What `Task.loss` returns.

  Attributes:
    loss: scalar float32, a mean over `weight` things; the value that is minimised.
    weight: how many things `loss` averages (valid tokens, examples); 1.0 if all equal.
    metrics: scalar metrics, averaged over `weight` like the loss.
    extra: the new extra state, or None for "unchanged".
  """
  loss: jax.Array
  weight: jax.Array | float = 1.0
  metrics: Mapping[str, jax.Array] = flax.struct.field(default_factory=dict)
  extra: PyTree = None


class DataIterator(Protocol):
  """The iterator a task's `make_iterator` returns (a grain `DatasetIterator` is one)."""

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    ...

  def __next__(self) -> dict[str, np.ndarray]:
    ...

  def get_state(self) -> dict[str, Any]:
    ...

  def set_state(self, state: dict[str, Any]) -> None:
    ...


class Task(abc.ABC):
  """A model plugged into the trainer; see the module docstring for the contract."""

  name: ClassVar[str] = ""
  throughput_unit: ClassVar[str] = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def rows_per_process(self, process_count: int) -> int:
    """This process's share of the global `config.batch_size` (a clear error if uneven)."""
    if self.config.batch_size % process_count:
      raise ConfigError(f"batch_size={self.config.batch_size} is not divisible by "
                        f"{process_count} processes")
    return self.config.batch_size // process_count

  @abc.abstractmethod
  def make_iterator(self, split: str, process_index: int, process_count: int) -> DataIterator:
    """This process's rows of every global batch of `split`, with get_state/set_state."""

  @abc.abstractmethod
  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every entry of a global batch of `batch_size` examples."""

  @abc.abstractmethod
  def init(self, rng: jax.Array) -> tuple[PyTree, PyTree]:
    """`(params, extra)`; leaves may be boxed with logical axis names."""

  @abc.abstractmethod
  def loss(self, params: PyTree, extra: PyTree, batch: Mapping[str, jax.Array], rng: jax.Array,
           *, train: bool) -> LossOutput:
    """The loss to minimise on `batch` (a mean over `LossOutput.weight`)."""

  def update_extra(self, params: PyTree, extra: PyTree, batch: Mapping[str, jax.Array],
                   rng: jax.Array) -> tuple[PyTree, Metrics]:
    """A second update after the parameter update (e.g. a discriminator step). Default: none."""
    del params, batch, rng
    return extra, {}

  def evaluate(self, params: PyTree, extra: PyTree, batch: Mapping[str, jax.Array],
               rng: jax.Array) -> LossOutput:
    """Evaluation loss and metrics on one batch. Default: the loss without dropout."""
    return self.loss(params, extra, batch, rng, train=False)

  def eval_audio(self, params: PyTree, extra: PyTree,
                 batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Clips to listen to at each evaluation, from the first eval batch: name -> `[S]`
    waveform at `audio_sample_rate`, written to TensorBoard as "eval_audio/<name>".
    Default: none (and the trainer never calls it)."""
    del params, extra, batch
    return {}

  audio_sample_rate: int = 0

  def units_per_example(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> float:
    """How many `throughput_unit`s one example holds (1 for "examples")."""
    del batch_spec
    return 1.0

  def flops_per_example(self) -> float | None:
    """Model FLOPs (forward + backward) per example, or None to use XLA's count."""
    return None

  def phase_starts(self) -> tuple[int, ...]:
    """The steps at which each phase of the compiled step starts (one phase by default)."""
    return (0,)

  def set_phase(self, phase: int) -> None:
    """Selects the phase traced next (see `phase_starts`)."""
    del phase


_REGISTRY: dict[str, type[Task]] = {}


def register(name: str) -> Callable[[type[Task]], type[Task]]:
  """Class decorator: makes `config.task = name` build this task."""

  def wrap(cls: type[Task]) -> type[Task]:
    if name in _REGISTRY and _REGISTRY[name] is not cls:
      raise ValueError(f"task {name!r} is registered twice ({_REGISTRY[name]} and {cls})")
    cls.name = name
    _REGISTRY[name] = cls
    return cls

  return wrap


def get_task_class(name: str) -> type[Task]:
  """The task class for `name`: a registered name or `package.module:ClassName`.

  A config value never imports code: `package.module` must already be imported (by the
  config file, by your script, or by `audiolm-jax train --task_module package.module`).
  """
  if ":" in name:
    module, _, cls_name = name.partition(":")
    if module not in sys.modules:
      raise ConfigError(
          f"task {name!r}: module {module!r} is not imported; a config value does not import "
          f"code: pass --task_module {module} to `audiolm-jax train` (that imports it and "
          "runs its code), or import it before calling train()")
    cls = getattr(sys.modules[module], cls_name, None)
    if cls is None:
      raise ConfigError(f"task {name!r}: module {module!r} has no {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
      raise ConfigError(f"task {name!r} is not a Task subclass")
    return cls
  if name not in _REGISTRY:
    raise ConfigError(f"unknown task {name!r}; registered: "
                      f"{', '.join(sorted(_REGISTRY)) or 'none'} (the package's tasks register "
                      "on `import audiolm_jax.tasks`; a task of your own when its module is "
                      "imported, or name it as package.module:ClassName)")
  return _REGISTRY[name]


def build_task(config: ml_collections.ConfigDict) -> Task:
  """The task named by `config.task`, constructed with the whole config."""
  if "task" not in config:
    raise ConfigError("the config has no `task` key naming what to train")
  return get_task_class(config.task)(config)
