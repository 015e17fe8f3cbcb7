"""Exact resume after SIGKILL, and a clean checkpoint-and-exit on SIGTERM (real subprocesses)."""

import os
import signal
import subprocess
import sys
import time

from audiolm_jax.train import metrics as metrics_lib
from train_helpers import REPO, cli_args, fingerprint, run_cli, subprocess_env

# Runs the CLI with two test probes: every training batch drawn is logged (a hash per line) to
# $BATCH_LOG, and the process SIGKILLs itself right after the checkpoint of step
# $KILL_AFTER_CHECKPOINT has finished writing.
DRIVER = r"""
import hashlib, logging, os, signal, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import toy_lm
from audiolm_jax.train import checkpoint

kill_after = int(os.environ.get("KILL_AFTER_CHECKPOINT", "0"))
save = checkpoint.Checkpointer.save

def save_then_maybe_die(self, step, *args, **kwargs):
  out = save(self, step, *args, **kwargs)
  if step == kill_after:
    self.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
  return out

checkpoint.Checkpointer.save = save_then_maybe_die
make_iterator = toy_lm.ToyLMTask.make_iterator

class Logged:
  def __init__(self, it):
    self.it = it
  def __iter__(self):
    return self
  def __next__(self):
    batch = next(self.it)
    with open(os.environ["BATCH_LOG"], "a") as f:
      f.write(hashlib.sha256(batch["tokens"].tobytes()).hexdigest() + "\n")
    return batch
  def get_state(self):
    return self.it.get_state()
  def set_state(self, state):
    self.it.set_state(state)

def logged_iterator(self, split, *args):
  it = make_iterator(self, split, *args)
  return Logged(it) if split == "train" else it

toy_lm.ToyLMTask.make_iterator = logged_iterator
from audiolm_jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(workdir, batch_log, kill_after=0, **overrides):
  os.environ["BATCH_LOG"] = str(batch_log)  # inherited by the subprocess environment
  os.environ["KILL_AFTER_CHECKPOINT"] = str(kill_after)
  try:
    return run_cli(cli_args(workdir, **overrides), driver=DRIVER, devices=2)
  finally:
    del os.environ["BATCH_LOG"], os.environ["KILL_AFTER_CHECKPOINT"]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in metrics_lib.read_jsonl(str(workdir))}


def test_exact_resume_after_sigkill(tmp_path):
  """Acceptance: 20 straight steps == 10 steps, SIGKILL after the step-10 checkpoint, 10 more."""
  settings = dict(total_steps=20, checkpoint_every=10, eval_every=0)
  straight = _run(tmp_path / "straight", tmp_path / "straight.log", **settings)
  assert straight.returncode == 0, straight.stderr[-3000:]

  killed = _run(tmp_path / "resumed", tmp_path / "killed.log", kill_after=10, **settings)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert os.listdir(tmp_path / "resumed" / "checkpoints") == ["10"]

  resumed = _run(tmp_path / "resumed", tmp_path / "resumed.log", **settings)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resume: checkpoint step 10" in resumed.stderr

  all_batches = (tmp_path / "straight.log").read_text().split()
  assert len(all_batches) == 20 and len(set(all_batches)) == 20
  assert (tmp_path / "killed.log").read_text().split() == all_batches[:10]
  assert (tmp_path / "resumed.log").read_text().split() == all_batches[10:]
  assert fingerprint(tmp_path / "resumed", 20) == fingerprint(tmp_path / "straight", 20)
  assert fingerprint(tmp_path / "resumed", 10) == fingerprint(tmp_path / "straight", 10)
  straight_losses, resumed_losses = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
  assert [resumed_losses[s] for s in range(11, 21)] == [straight_losses[s] for s in range(11, 21)]


def test_sigterm_saves_the_current_step_and_exits_cleanly(tmp_path):
  """Acceptance: SIGTERM -> checkpoint at the current step, exit 0; a restart continues."""
  workdir = tmp_path / "run"
  args = cli_args(workdir, total_steps=1_000_000, checkpoint_every=1_000_000, eval_every=0)
  proc = subprocess.Popen([sys.executable, "-m", "audiolm_jax", *args], cwd=REPO,
                          env=subprocess_env(devices=2), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while len(metrics_lib.read_jsonl(str(workdir))) < 5:
      assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, stderr[-3000:]
  assert "SIGTERM received" in stderr and "stopped by SIGTERM" in stderr
  steps = os.listdir(workdir / "checkpoints")
  assert len(steps) == 1
  stopped_at = int(steps[0])
  assert stopped_at == max(_losses(workdir)) >= 5

  restart = run_cli(cli_args(workdir, total_steps=stopped_at + 3, checkpoint_every=1_000_000,
                             eval_every=0), devices=2)
  assert restart.returncode == 0, restart.stderr[-3000:]
  assert f"resume: checkpoint step {stopped_at}" in restart.stderr
  assert sorted(_losses(workdir))[-4:] == [stopped_at, stopped_at + 1, stopped_at + 2,
                                           stopped_at + 3]
  assert sorted(int(s) for s in os.listdir(workdir / "checkpoints")) == [
      stopped_at, stopped_at + 3]
