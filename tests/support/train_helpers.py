"""Helpers for the trainer tests: toy configs, CLI subprocesses."""

import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = os.path.join(REPO, "tests", "support", "toy_lm_config.py")

# Quiet, deterministic defaults for trainer runs in tests.
# A constant schedule keeps the compiled step independent of total_steps, so runs of different
# lengths share one compilation (through the persistent cache).
TEST_OVERRIDES = {"progress_bar": "false", "peak_flops_per_device": "1e12",
                  "optimizer.schedule": "constant"}


def toy_config(variant="tiny", **overrides):
  """The toy LM config with dotted-key overrides given as `a__b=value` keyword arguments."""
  from audiolm_jax.config import load_config
  pairs = {**TEST_OVERRIDES, **{k.replace("__", "."): str(v) for k, v in overrides.items()}}
  return load_config(f"{TOY}:{variant}", list(pairs.items()))


def cli_args(workdir, *extra, **overrides):
  pairs = {**TEST_OVERRIDES, **{k.replace("__", "."): str(v) for k, v in overrides.items()}}
  return (["train", "--config", f"{TOY}:tiny", "--workdir", str(workdir)]
          + [f"--config.{k}={v}" for k, v in pairs.items()] + list(extra))


# Set by the `compilation_cache` fixture.
CACHE = {}


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache shared by this session's trainer runs, subprocesses included.

  Imported by tests/conftest.py, for the whole session. The same programs are
  compiled many times (straight run, killed run, resumed run); the cache only skips
  recompilation, the programs and their results are unchanged.
  """
  import jax
  path = str(tmp_path_factory.mktemp("jax_cache"))
  CACHE["dir"] = path
  jax.config.update("jax_compilation_cache_dir", path)
  yield path


def subprocess_env(devices=1):
  env = dict(os.environ)
  if "dir" in CACHE:
    env["JAX_COMPILATION_CACHE_DIR"] = CACHE["dir"]
  # Unoptimised XLA:CPU code compiles 2-3x faster; runs compared with each other share flags.
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                      "--xla_backend_optimization_level=0")
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO, os.path.join(REPO, "tests", "support"), env.get("PYTHONPATH", "")])
  return env


def run_cli(args, devices=1, timeout=120, driver=None):
  """Runs `python -m audiolm_jax ARGS` (or a driver script calling cli.main) to completion."""
  cmd = [sys.executable, "-c", driver, *args] if driver else [
      sys.executable, "-m", "audiolm_jax", *args]
  return subprocess.run(cmd, env=subprocess_env(devices), capture_output=True, text=True,
                        timeout=timeout, cwd=REPO)


def run_processes(args_of, num_processes=2, timeout=240):
  """Runs `python -m audiolm_jax ARGS --coordinator_address ... --process_id I` for every
  process I (`args_of(I)` gives ARGS) on a free local port, to completion; asserts each
  exited 0 and returns their (stdout, stderr)."""
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "audiolm_jax", *args_of(i), "--coordinator_address",
       f"127.0.0.1:{port}", "--num_processes", str(num_processes), "--process_id", str(i)],
      cwd=REPO, env=subprocess_env(devices=1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(num_processes)]
  try:
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  return outputs


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_steps(config, workdir, n, batches=None):
  """Initialises a `Trainer` for `config` and runs `n` jitted train steps by hand.

  Returns (state, [metrics per step as floats]). `batches` (host dicts) replace the data.
  """
  import jax
  from audiolm_jax.train import metrics as metrics_lib
  from audiolm_jax.train import sharding
  from audiolm_jax.train.trainer import Trainer
  trainer = Trainer(config, str(workdir))
  state, _, _ = trainer.restore_or_init(None)
  train_step, _ = trainer.compile_steps()
  if batches is None:
    it = trainer.task.make_iterator("train", jax.process_index(), jax.process_count())
    batches = [next(it) for _ in range(n)]
  history = []
  for batch in batches[:n]:
    state, m = train_step(state, sharding.shard_batch(batch, trainer.mesh))
    history.append(metrics_lib.to_host(m))
  return state, history


def tb_values(tb_dir):
  """`(step, summary value)` of every value in the TensorBoard event files in `tb_dir`."""
  import glob
  import struct
  from tensorboardX.proto import event_pb2
  for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 16 + n
      for v in event.summary.value:
        yield event.step, v


def read_tb_scalars(tb_dir):
  """{tag: [(step, value)]} from the TensorBoard event files in `tb_dir` (no TensorFlow)."""
  out = {}
  for step, v in tb_values(tb_dir):
    if not v.HasField("audio"):
      out.setdefault(v.tag, []).append((step, v.simple_value))
  return out


def read_tb_audio(tb_dir):
  """{tag: [(step, sample_rate, frames)]} of the audio clips in `tb_dir`."""
  out = {}
  for step, v in tb_values(tb_dir):
    if v.HasField("audio"):
      out.setdefault(v.tag, []).append((step, int(v.audio.sample_rate),
                                        int(v.audio.length_frames)))
  return out


def fingerprint(workdir, step=None):
  from audiolm_jax import checkpoint_files
  from audiolm_jax.train import checkpoint
  path = os.path.join(str(workdir), "checkpoints", str(step)) if step else str(workdir)
  step_dir = checkpoint_files.find_step_dir(path)
  return checkpoint_files.param_fingerprint(
      checkpoint.read_numpy(step_dir, ("params",))["params"])


class NaNInjector:
  """Wraps a data iterator; the batches of the given (1-based) steps get a NaN `valid` entry."""

  def __init__(self, it, bad_steps):
    self.it, self.bad_steps, self.n = it, set(bad_steps), 0

  def __iter__(self):
    return self

  def __next__(self):
    import numpy as np
    batch = dict(next(self.it))
    self.n += 1
    if self.n in self.bad_steps:
      batch["valid"] = batch["valid"].copy()
      batch["valid"][0] = np.nan
    return batch

  def get_state(self):
    return self.it.get_state()

  def set_state(self, state):
    self.it.set_state(state)


def inject_nans(monkeypatch, bad_steps):
  """The toy LM's training batches of `bad_steps` (1-based) get a NaN."""
  import toy_lm
  original = toy_lm.ToyLMTask.make_iterator

  def make_iterator(self, split, process_index, process_count):
    it = original(self, split, process_index, process_count)
    return NaNInjector(it, bad_steps) if split == "train" else it

  monkeypatch.setattr(toy_lm.ToyLMTask, "make_iterator", make_iterator)


def write_fake_token_cache(path, codebook_size=32, levels=4, seed=0):
  """A token cache of random ids (12 train, 5 validation utterances of 20-35 semantic frames,
  2 acoustic frames each) for the stage tasks."""
  import numpy as np
  from audiolm_jax.data.tokens import write_token_cache
  rng = np.random.default_rng(seed)

  def utterances(n):
    for i in range(n):
      t = int(rng.integers(20, 36))
      yield {"semantic": rng.integers(0, codebook_size, t),
             "acoustic": rng.integers(0, codebook_size, (2 * t, levels)),
             "speaker_id": i % 2, "sentence_id": i, "transcript": ""}

  write_token_cache(path, {"train": utterances(12), "validation": utterances(5)})
  return path
