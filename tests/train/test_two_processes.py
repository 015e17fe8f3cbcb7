"""Two local processes (jax.distributed on 127.0.0.1, gloo CPU collectives) == one process."""

import json
import os

import numpy as np

from audiolm_jax import checkpoint_files
from audiolm_jax.train import checkpoint
from audiolm_jax.train import metrics as metrics_lib
from train_helpers import cli_args, run_cli, run_processes

SETTINGS = dict(total_steps=20, checkpoint_every=10, eval_every=0)


def test_two_processes_match_one(tmp_path):
  """Acceptance: the same 20 steps on 2 processes x 1 device and on 1 process x 2 devices."""
  outputs = run_processes(lambda i: cli_args(tmp_path / "multi", **SETTINGS))
  assert "process 1 of 2" in outputs[1][1]

  single = run_cli(cli_args(tmp_path / "single", **SETTINGS), devices=2)
  assert single.returncode == 0, single.stderr[-3000:]

  multi_records = metrics_lib.read_jsonl(str(tmp_path / "multi"))
  single_records = metrics_lib.read_jsonl(str(tmp_path / "single"))
  assert [r["step"] for r in multi_records] == list(range(1, 21))  # process 0 writes alone
  np.testing.assert_allclose([r["loss"] for r in multi_records],
                             [r["loss"] for r in single_records], rtol=1e-5)
  step_dirs = [checkpoint_files.find_step_dir(str(tmp_path / d)) for d in ("multi", "single")]
  multi, single = (checkpoint.read_numpy(d, ("params",))["params"] for d in step_dirs)
  for path, value in checkpoint_files.tree_paths(single).items():
    np.testing.assert_allclose(checkpoint_files.tree_paths(multi)[path], value, rtol=1e-4, atol=1e-6)
  # Each process saved its own data iterator position: 20 local batches each.
  data_dir = os.path.join(step_dirs[0], "data")
  for i in range(2):
    with open(os.path.join(data_dir, f"process_{i}-of-2.json")) as f:
      assert json.load(f) == {"next_index": 20}
