"""Two local processes (jax.distributed on 127.0.0.1, gloo CPU collectives) == one process."""

import json
import os
import subprocess
import sys

import numpy as np

from audiolm_jax import checkpoint_files
from audiolm_jax.train import checkpoint
from audiolm_jax.train import metrics as metrics_lib
from train_helpers import REPO, cli_args, free_port, run_cli, subprocess_env

SETTINGS = dict(total_steps=20, checkpoint_every=10, eval_every=0)


def test_two_processes_match_one(tmp_path):
  """Acceptance: the same 20 steps on 2 processes x 1 device and on 1 process x 2 devices."""
  port = free_port()
  procs = [
      subprocess.Popen(
          [sys.executable, "-m", "audiolm_jax",
           *cli_args(tmp_path / "multi", "--coordinator_address", f"127.0.0.1:{port}",
                     "--num_processes", "2", "--process_id", str(i), **SETTINGS)],
          cwd=REPO, env=subprocess_env(devices=1), stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=240) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
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
