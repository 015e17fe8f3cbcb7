"""metrics.jsonl is strict JSON and one history across restarts (issue #15, point 8)."""

import json
import math
import shutil

from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.train.trainer import train
from train_helpers import inject_nans, toy_config


def test_one_nan_step_neither_poisons_its_window_nor_the_json(tmp_path, monkeypatch):
  inject_nans(monkeypatch, {3})
  train(toy_config(mesh__data=1, total_steps=8, log_every=4, checkpoint_every=100,
                   eval_every=0), str(tmp_path))
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()

  def strict(token):
    raise ValueError(f"not strict JSON: {token}")

  rows = [json.loads(line, parse_constant=strict) for line in lines]
  train_rows = {r["step"]: r for r in rows if r["split"] == "train"}
  assert sorted(train_rows) == [4, 8]
  assert math.isfinite(train_rows[4]["loss"]) and train_rows[4]["nonfinite"] == 0.25
  assert train_rows[4]["nonfinite_total"] == 1


def test_a_nan_alone_in_its_window_is_null(tmp_path, monkeypatch):
  inject_nans(monkeypatch, {2})
  train(toy_config(mesh__data=1, total_steps=3, log_every=1, checkpoint_every=100,
                   eval_every=0), str(tmp_path))
  raw = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["loss"] for r in raw if r["split"] == "train" and r["step"] == 2] == [None]
  assert math.isnan(metrics_lib.read_jsonl(str(tmp_path))[1]["loss"])


def test_a_resumed_run_has_one_row_per_step(tmp_path):
  config = toy_config(mesh__data=1, total_steps=6, log_every=1, checkpoint_every=2,
                      eval_every=2)
  train(config, str(tmp_path))
  first = {r["step"]: r["loss"] for r in metrics_lib.read_jsonl(str(tmp_path))}
  shutil.rmtree(tmp_path / "checkpoints" / "6")
  shutil.rmtree(tmp_path / "checkpoints" / "4")
  train(config, str(tmp_path))  # resumes from step 2 and redoes 3-6
  rows = metrics_lib.read_jsonl(str(tmp_path))
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert {r["step"]: r["loss"] for r in rows} == first  # an exact resume
  assert [r["step"] for r in metrics_lib.read_jsonl(str(tmp_path), "eval")] == [2, 4, 6]
  raw = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["origin"]) for r in raw if r["split"] == "restart"] == [
      (0, "fresh"), (2, "checkpoint")]
