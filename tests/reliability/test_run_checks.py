"""Config and workdir errors are found before step 1 and lose nothing (issue #15, points 2-3)."""

import json
import os

import pytest

import audiolm_jax.tasks  # noqa: F401  (registers the stage tasks)
from audiolm_jax.config import load_config
from audiolm_jax.errors import AudioLMError, ConfigError
from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.train.trainer import train
from train_helpers import toy_config, write_fake_token_cache


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
  return write_fake_token_cache(str(tmp_path_factory.mktemp("tokens")))


def stage(task, tokens_dir, **overrides):
  pairs = {"data.tokens_dir": tokens_dir, "progress_bar": "false",
           "peak_flops_per_device": "1e12", "checkpoint_every": "5", "eval_every": "10",
           **{k.replace("__", "."): str(v) for k, v in overrides.items()}}
  return load_config(f"{task}:tiny", list(pairs.items()))


def test_a_missing_eval_split_fails_before_step_1_and_writes_nothing(tokens_dir, tmp_path):
  config = stage("semantic_lm", tokens_dir, total_steps=20, data__eval_split="test")
  with pytest.raises(AudioLMError, match="no split 'test'"):
    train(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "metrics.jsonl")
  assert not os.path.exists(tmp_path / "w" / "config.json")


def test_the_checkpoint_is_saved_before_an_evaluation_on_the_same_step(tokens_dir, tmp_path,
                                                                       monkeypatch):
  from audiolm_jax.train.trainer import Trainer
  calls = []

  def failing_evaluate(self, state, eval_step, reporter=None):
    calls.append(self.checkpointer.all_steps())
    raise RuntimeError("the evaluation broke")

  monkeypatch.setattr(Trainer, "evaluate", failing_evaluate)
  config = stage("semantic_lm", tokens_dir, total_steps=20, checkpoint_every=10)
  with pytest.raises(RuntimeError):
    train(config, str(tmp_path))
  assert calls and 10 in calls[0]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]


@pytest.mark.parametrize("key,value", [("eval_every", -1), ("eval_steps", -2)])
def test_negative_eval_settings_are_rejected(key, value, tmp_path):
  with pytest.raises(ConfigError, match=f"config.{key} must be >= 0"):
    train(toy_config(mesh__data=1, **{key: value}), str(tmp_path))


def test_a_run_of_another_task_in_the_workdir_is_refused_and_left_as_it_was(tokens_dir,
                                                                            tmp_path):
  workdir = tmp_path / "fine"
  train(stage("fine_lm", tokens_dir, total_steps=5, eval_every=0), str(workdir))
  before = (workdir / "config.json").read_text()
  rows = len(metrics_lib.read_jsonl(str(workdir)))
  # coarse_lm and fine_lm of the tiny presets need not differ in shapes: refused by task.
  with pytest.raises(ConfigError, match="holds a 'fine_lm' run.*--init_from"):
    train(stage("coarse_lm", tokens_dir, total_steps=10, eval_every=0), str(workdir))
  assert (workdir / "config.json").read_text() == before
  assert sorted(os.listdir(workdir / "checkpoints")) == ["5"]
  assert len(metrics_lib.read_jsonl(str(workdir))) == rows
  # Only a config.json (a run that died before its first checkpoint) counts as well.
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"task": "fine_lm"}))
  with pytest.raises(ConfigError, match="holds a 'fine_lm' run"):
    train(stage("coarse_lm", tokens_dir, total_steps=10, eval_every=0), str(other))
