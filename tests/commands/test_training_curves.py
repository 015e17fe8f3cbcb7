"""experiments/training_curves.py on a fake run's metrics.jsonl."""

import json

from experiment_helpers import load_experiment


def test_training_curves_plots_train_and_eval(tmp_path, capsys):
  curves = load_experiment("training_curves")
  run = tmp_path / "run"
  run.mkdir()
  with open(run / "metrics.jsonl", "w") as f:
    for step in range(10, 110, 10):
      f.write(json.dumps({"step": step, "split": "train", "time": 1.0, "loss": 100.0 / step,
                          "codebook/dead_fraction_q0": 0.1}) + "\n")
    f.write(json.dumps({"step": 50, "split": "eval", "loss": 2.5}) + "\n")
    # A resumed run logs step 100 again: the last row wins.
    f.write(json.dumps({"step": 100, "split": "train", "loss": 0.5}) + "\n")
  rows = curves.read_metrics(str(run))
  steps, values = curves.series(rows, "train", "loss")
  assert list(steps) == list(range(10, 110, 10)) and values[-1] == 0.5
  assert list(curves.series(rows, "eval", "loss")[0]) == [50]
  out = str(tmp_path / "curves.png")
  assert curves.main(["--run", str(run), "--metrics", "loss,codebook/dead_fraction_q0",
                      "--out", out]) == 0
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert curves.main(["--run", str(run), "--list"]) == 0
  assert "codebook/dead_fraction_q0" in capsys.readouterr().out.split()
  assert curves.main(["--run", str(run), "--metrics", "nope"]) == 1
  assert curves.main(["--run", str(tmp_path / "missing")]) == 1
