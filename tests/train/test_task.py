"""The task registry, the toy task's data contract and model, configs, multi-process settings."""

import itertools
import os

import jax
import numpy as np
import pytest
import toy_lm

from audiolm_jax.errors import ConfigError
from audiolm_jax.train import distributed, sharding, task as task_lib
from audiolm_jax.train.defaults import REQUIRED, base_config, check_config
from train_helpers import toy_config


def test_registry():
  assert task_lib.get_task_class("toy_lm") is toy_lm.ToyLMTask
  assert task_lib.get_task_class("toy_lm:ToyLMTask") is toy_lm.ToyLMTask
  assert isinstance(task_lib.build_task(toy_config()), toy_lm.ToyLMTask)
  with pytest.raises(ConfigError, match="unknown task 'nope'"):
    task_lib.get_task_class("nope")
  with pytest.raises(ConfigError):
    task_lib.get_task_class("toy_lm:model_config")  # not a Task
  with pytest.raises(ValueError, match="registered twice"):
    task_lib.register("toy_lm")(type("Other", (toy_lm.ToyLMTask,), {}))


@pytest.mark.parametrize("variant", ["tiny", "cpu", "paper"])
def test_toy_config_variants_have_every_trainer_key(variant):
  config = toy_config(variant)
  check_config(config)
  for key in REQUIRED:
    assert key in config
  assert set(config.mesh) == {"data", "fsdp", "tensor"}


def test_check_config_names_what_is_wrong():
  config = base_config()
  config.task = "toy_lm"
  check_config(config)
  for key, value, message in (("batch_size", 0, "batch_size must be positive"),
                              ("compute_dtype", "float8", "compute_dtype")):
    bad = base_config()
    bad[key] = value
    with pytest.raises(ConfigError, match=message):
      check_config(bad)
  bad = base_config()
  del bad["eval_every"]
  with pytest.raises(ConfigError, match="eval_every"):
    check_config(bad)
  bad = base_config()
  bad.optimizer.grad_accum_steps = 3
  with pytest.raises(ConfigError, match="grad_accum_steps"):
    check_config(bad)


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_toy_data_is_the_same_global_batch_for_any_process_count():
  task = toy_lm.ToyLMTask(toy_config())
  one = _take(task.make_iterator("train", 0, 1), 3)
  halves = [_take(task.make_iterator("train", p, 2), 3) for p in range(2)]
  quarters = [_take(task.make_iterator("train", p, 4), 3) for p in range(4)]
  for b in range(3):
    assert one[b]["tokens"].shape == (8, 17) and one[b]["valid"].shape == (8,)
    np.testing.assert_array_equal(
        one[b]["tokens"], np.concatenate([h[b]["tokens"] for h in halves]))
    np.testing.assert_array_equal(
        one[b]["tokens"], np.concatenate([q[b]["tokens"] for q in quarters]))
  # Sequences are progressions mod V with strides in 1..max_stride.
  steps = np.diff(one[0]["tokens"], axis=1) % 64
  assert np.all(steps == steps[:, :1]) and np.all((steps >= 1) & (steps <= 7))


def test_toy_iterator_state_resumes_exactly():
  task = toy_lm.ToyLMTask(toy_config(data__num_examples=20))  # 2.5 batches per epoch
  it = task.make_iterator("train", 1, 2)
  _take(it, 7)
  state = it.get_state()
  expected = _take(it, 6)
  resumed = task.make_iterator("train", 1, 2)
  resumed.set_state(state)
  for a, b in zip(expected, _take(resumed, 6)):
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
  # Epochs are reshuffled: the first 20 and the next 20 examples are the same set, new order.
  full = task.make_iterator("train", 0, 1)
  rows = np.concatenate([b["tokens"] for b in _take(full, 5)])
  first, second = rows[:20], rows[20:40]
  assert sorted(map(tuple, first)) == sorted(map(tuple, second))
  assert not np.array_equal(first, second)


def test_toy_eval_split_is_finite_and_different():
  task = toy_lm.ToyLMTask(toy_config())
  batches = list(itertools.islice(task.make_iterator("validation", 0, 1), 100))
  assert len(batches) == 256 // 8
  train = next(task.make_iterator("train", 0, 1))
  assert not np.array_equal(batches[0]["tokens"], train["tokens"])
  with pytest.raises(ConfigError, match="unknown split"):
    task.make_iterator("test", 0, 1)


@pytest.mark.parametrize("variant", ["tiny", "paper"])
def test_toy_model_param_count_and_logical_names(variant):
  task = toy_lm.ToyLMTask(toy_config(variant))
  boxed, extra = jax.eval_shape(task.init, jax.random.key(0))
  params = sharding.unbox(boxed)
  assert extra == {}
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert n == toy_lm.param_count(toy_config(variant))
  def leaves(tree):
    return jax.tree.leaves(tree, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))

  specs = sharding.logical_specs(boxed)
  assert all(len(s) == len(x.shape) for s, x in zip(leaves(specs), leaves(params)))
  assert all(s[0] == "layers" for s in leaves(specs["layers"]))  # scanned layer axis
  assert specs["token_embed"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")


def test_distributed_settings(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
              "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(var, raising=False)
  assert distributed.initialize() == distributed.ProcessInfo(0, 1, "single process")
  assert distributed.initialize("127.0.0.1:1234", 1, 0).count == 1  # one process: no-op
  with pytest.raises(ConfigError, match="incomplete"):
    distributed.initialize("127.0.0.1:1234", None, None)
  with pytest.raises(ConfigError, match="not in"):
    distributed.initialize("127.0.0.1:1234", 2, 2)
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  with pytest.raises(ConfigError, match="from environment are incomplete"):
    distributed.initialize()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
  monkeypatch.setenv("JAX_PROCESS_ID", "0")
  assert distributed.initialize() == distributed.ProcessInfo(0, 1, "environment")
  assert os.environ["JAX_PROCESS_ID"] == "0"


def test_every_task_splits_the_global_batch_over_processes_in_one_place():
  task = toy_lm.ToyLMTask(toy_config(batch_size=6))
  assert task.rows_per_process(1) == 6 and task.rows_per_process(3) == 2
  with pytest.raises(ConfigError, match="batch_size=6 is not divisible by 4 processes"):
    task.make_iterator("train", 0, 4)
