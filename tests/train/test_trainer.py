"""The training loop in-process: non-finite steps, corrupt checkpoints, other meshes,
--init_from, metrics/TensorBoard/profile output, evaluation, learning."""

import glob
import io
import json
import logging
import os
import shutil
import sys

import jax
import numpy as np
import pytest
import toy_lm
from jax.sharding import PartitionSpec as P

from audiolm_jax import progress
from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.checkpoint_files import param_fingerprint
from audiolm_jax.train.trainer import NonFiniteError, Trainer, train
from train_helpers import fingerprint, inject_nans, read_tb_scalars, toy_config


def records(workdir, split="train"):
  return {r["step"]: r for r in metrics_lib.read_jsonl(str(workdir), split)}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  """Six steps on one device: checkpoints at 2, 4, 6, eval every 2, a profile of steps 2:4."""
  workdir = tmp_path_factory.mktemp("base")
  config = toy_config(mesh__data=1, total_steps=6, checkpoint_every=2, eval_every=2,
                      profile_steps="2:4")
  result = train(config, str(workdir))
  return workdir, result


def test_base_run_writes_metrics_tensorboard_profile_and_checkpoints(base_run):
  workdir, result = base_run
  assert result.origin == "fresh" and result.step == 6 and not result.preempted
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
  train_records = records(workdir)
  assert sorted(train_records) == [1, 2, 3, 4, 5, 6]
  for key in ("loss", "accuracy", "grad_norm", "param_norm", "learning_rate", "nonfinite",
              "nonfinite_total", "steps_per_s", "examples_per_s", "tokens_per_s", "mfu"):
    assert key in train_records[3], key
  r = train_records[3]
  np.testing.assert_allclose(r["tokens_per_s"], r["examples_per_s"] * 16, rtol=1e-6)
  np.testing.assert_allclose(r["examples_per_s"], r["steps_per_s"] * 8, rtol=1e-6)
  flops = toy_lm.flops_per_example(toy_lm.model_config(toy_config()), 16) * 8
  np.testing.assert_allclose(r["mfu"], flops * r["steps_per_s"] / 1e12, rtol=1e-6)
  eval_records = records(workdir, "eval")
  assert sorted(eval_records) == [2, 4, 6] and eval_records[6]["loss"] > 0
  assert result.eval_metrics["loss"] == pytest.approx(eval_records[6]["loss"])
  scalars = read_tb_scalars(str(workdir / "tb"))
  assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([v for _, v in scalars["train/loss"]],
                             [train_records[s]["loss"] for s in range(1, 7)], rtol=1e-6)
  assert [s for s, _ in scalars["eval/loss"]] == [2, 4, 6]
  assert glob.glob(str(workdir / "tb" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["task"] == "toy_lm" and saved["total_steps"] == 6


def test_nan_batch_is_skipped_counted_and_training_goes_on(tmp_path, monkeypatch, caplog):
  """Acceptance: a NaN in one batch is skipped (state unchanged) and counted."""
  inject_nans(monkeypatch, bad_steps={3})
  config = toy_config(mesh__data=1, total_steps=6, checkpoint_every=100, eval_every=0)
  with caplog.at_level(logging.WARNING):
    result = train(config, str(tmp_path))
  assert result.step == 6
  r = records(tmp_path)
  assert r[3]["nonfinite"] == 1.0 and not np.isfinite(r[3]["loss"])
  assert [r[s]["nonfinite_total"] for s in range(1, 7)] == [0, 0, 1, 1, 1, 1]
  assert r[3]["param_norm"] == r[2]["param_norm"]  # the skipped step changed nothing
  assert all(np.isfinite(r[s]["loss"]) and r[s]["param_norm"] != r[s - 1]["param_norm"]
             for s in (4, 5, 6))
  assert any("step 3: non-finite" in m for m in caplog.messages)


def test_too_many_consecutive_nonfinite_steps_stop_the_run(tmp_path, monkeypatch):
  inject_nans(monkeypatch, bad_steps=range(2, 100))
  config = toy_config(mesh__data=1, total_steps=20, checkpoint_every=100, eval_every=0,
                      max_nonfinite_steps=3)
  with pytest.raises(NonFiniteError, match="stopped at step 4: 3 consecutive steps"):
    train(config, str(tmp_path))


# Reading the truncated files fails inside tensorstore; a read still in flight then reports to
# orbax's already closed event loop, which Python prints as an "unraisable" exception.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_latest_checkpoint_is_reported_and_the_previous_one_used(base_run, tmp_path,
                                                                        caplog):
  """Acceptance: a truncated latest checkpoint -> one warning line, resume from the one before."""
  workdir = tmp_path / "run"
  shutil.copytree(base_run[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / "6")
  data_files = [f for f in glob.glob(str(workdir / "checkpoints" / "4" / "state" / "**" / "*"),
                                     recursive=True)
                if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  assert data_files
  for f in data_files:
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)
  config = toy_config(mesh__data=1, total_steps=4, checkpoint_every=2, eval_every=0)
  with caplog.at_level(logging.INFO):
    result = train(config, str(workdir))
  warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  assert "checkpoint step 4 is unreadable" in warnings[0] and "trying step 2" in warnings[0]
  assert any("resume: checkpoint step 2" in m for m in caplog.messages)
  assert result.origin == "checkpoint" and result.step == 4
  assert os.path.isdir(str(workdir / "checkpoints.corrupt" / "4"))
  # Steps 3 and 4 were redone from step 2 exactly as the first time.
  assert fingerprint(workdir, 4) == fingerprint(base_run[0], 4)


def test_restore_onto_a_different_mesh(base_run, tmp_path):
  """Saved on 1 device, restored sharded over a 2x2x2 mesh of 8 devices."""
  workdir = tmp_path / "run"
  shutil.copytree(base_run[0], workdir)
  config = toy_config(mesh__data=2, mesh__fsdp=2, mesh__tensor=2, total_steps=6)
  trainer = Trainer(config, str(workdir))
  state, data_state, origin = trainer.restore_or_init(None)
  assert origin == "checkpoint" and int(state.step) == 6 and data_state == {"next_index": 6}
  spec = P(None, "fsdp", "tensor")
  assert state.params["layers"]["mlp"]["wi_0"].sharding.spec == spec
  assert state.opt_state[1][0].mu["layers"]["mlp"]["wi_0"].sharding.spec == spec  # Adam moments
  assert len(state.params["token_embed"]["embedding"].sharding.device_set) == 8
  assert param_fingerprint(state.params) == fingerprint(base_run[0], 6)


def test_init_from_takes_the_parameters_and_starts_fresh(base_run, tmp_path, caplog):
  config = toy_config(mesh__data=1)
  with caplog.at_level(logging.INFO):
    state, data_state, origin = Trainer(config, str(tmp_path)).restore_or_init(
        str(base_run[0]))
  assert origin == "init_from" and data_state is None and int(state.step) == 0
  assert param_fingerprint(state.params) == fingerprint(base_run[0], 6)
  assert all(int(x) == 0 for x in jax.tree.leaves(state.opt_state) if x.dtype == np.int32)
  assert any("from --init_from" in m for m in caplog.messages)
  # A checkpoint in the workdir wins over --init_from.
  state, _, origin = Trainer(config, str(base_run[0])).restore_or_init("/nonexistent")
  assert origin == "checkpoint" and int(state.step) == 6


def test_the_toy_lm_learns(tmp_path):
  config = toy_config(mesh__data=1, total_steps=80, checkpoint_every=1000, eval_every=80,
                      eval_steps=4, log_every=10)
  result = train(config, str(tmp_path))
  first = records(tmp_path)[10]["loss"]
  assert result.eval_metrics["loss"] < 0.6 * first, (first, result.eval_metrics)
  assert result.eval_metrics["accuracy"] > 0.25  # chance is 1/64


def test_progress_off_a_terminal_is_short_log_lines_with_rate_and_eta(tmp_path, caplog,
                                                                        monkeypatch):
  """In a log file (not a terminal) progress is one line per interval: no tqdm carriage
  returns piling up into one long line; the compile is announced."""
  monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under `pytest -s`
  config = toy_config(mesh__data=1, total_steps=4, checkpoint_every=4, eval_every=2,
                      progress_bar="true", progress_every_s=1e-6)
  with caplog.at_level(logging.INFO):
    train(config, str(tmp_path))
  messages = [r.getMessage() for r in caplog.records]
  lines = [m for m in messages if m.startswith("train: step ")]
  assert [m.split(",")[0] for m in lines] == [
      "train: step 1/4 (25%)", "train: step 2/4 (50%)", "train: step 3/4 (75%)",
      "train: step 4/4 (100%)"]
  assert all("steps/s" in m and "loss=" in m and "\r" not in m and len(m) < 300
             for m in lines)
  assert all("ETA " in m for m in lines[:-1]) and "ETA" not in lines[-1]
  assert "eval " in lines[-1] and "% of the time" in lines[-1]
  assert any(m.startswith("compiling the train step") for m in messages)


def test_progress_lines_keep_to_their_interval():
  bar = metrics_lib.ProgressBar(total=1000, initial=10, enabled=True, every_s=3600.0,
                                interactive=False)
  assert not bar.interactive
  for _ in range(5):
    bar.update()
  assert bar.step == 15 and bar._step_line == 10  # no line yet: the hour has not passed
  assert progress.format_duration(3725.2) == "1:02:05"
  assert progress.format_duration(65) == "1:05"


def test_the_eval_log_line_is_a_short_summary():
  values = {"loss": 2.5, "accuracy": 0.25, **{f"codebook/perplexity_q{i}": 10.0 + i
                                             for i in range(30)}}
  line = metrics_lib.summary_line(values)
  assert line.startswith("loss=2.5, accuracy=0.25, codebook/perplexity_q0=10, ")
  assert line.endswith("more in metrics.jsonl)") and len(line) < 260
  assert metrics_lib.summary_line({"loss": 1.0, "b": 2.0}) == "loss=1, b=2"
