"""Checkpoint integrity: damaged files are caught at restore, never restored silently, never
saved over good ones (issue #15, point 1)."""

import glob
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import checkpoint_files
from audiolm_jax.errors import CheckpointError
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train.trainer import train
from train_helpers import fingerprint, toy_config

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def run6(tmp_path_factory):
  """Six toy-LM steps, checkpoints at 2, 4 and 6."""
  workdir = tmp_path_factory.mktemp("run6")
  train(toy_config(mesh__data=1, total_steps=6, checkpoint_every=2, eval_every=0),
        str(workdir))
  return workdir


def flip_bits(step_dir, every=997):
  """XORs one byte in every `every` of the largest array file of a checkpoint."""
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  largest = max(files, key=os.path.getsize)
  data = bytearray(open(largest, "rb").read())
  for i in range(every // 2, len(data), every):
    data[i] ^= 0x5A
  open(largest, "wb").write(bytes(data))


def test_a_bit_flipped_checkpoint_is_caught_and_the_previous_good_one_restored(run6, tmp_path,
                                                                               caplog):
  workdir = tmp_path / "run"
  shutil.copytree(run6, workdir)
  flip_bits(str(workdir / "checkpoints" / "6"))
  with caplog.at_level(logging.INFO):
    result = train(toy_config(mesh__data=1, total_steps=8, checkpoint_every=2, eval_every=0),
                   str(workdir))
  warnings = [m for m in caplog.messages if "checkpoint step 6" in m]
  assert len(warnings) == 1 and "\n" not in warnings[0] and "trying step 4" in warnings[0]
  assert any("resume: checkpoint step 4" in m for m in caplog.messages)
  assert result.step == 8
  assert os.path.isdir(workdir / "checkpoints.corrupt" / "6")
  # Steps 5-6 redone from the good step 4 exactly as the first time; nothing non-finite.
  assert fingerprint(workdir, 6) == fingerprint(run6, 6)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6", "8"]
  for step in (4, 6, 8):
    step_dir = str(workdir / "checkpoints" / str(step))
    assert not checkpoint_files.read_integrity(step_dir)["nonfinite"]


def test_a_run_whose_every_checkpoint_is_damaged_stops_with_one_line(run6, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run6, workdir)
  for step in (2, 4, 6):
    flip_bits(str(workdir / "checkpoints" / str(step)))
  config = toy_config(mesh__data=1, total_steps=8, checkpoint_every=2, eval_every=0)
  with pytest.raises(CheckpointError, match="all 3 checkpoints failed") as e:
    train(config, str(workdir))
  assert "\n" not in str(e.value)
  # Nothing was trained from scratch over it, and the damaged ones are kept for inspection.
  assert not os.listdir(workdir / "checkpoints")
  assert sorted(os.listdir(workdir / "checkpoints.corrupt")) == ["2", "4", "6"]


def test_checksums_catch_one_flipped_bit_whatever_the_sharding():
  x = jnp.arange(4096, dtype=jnp.float32).reshape(64, 64) / 7
  reference = checkpoint_files.integrity_record({"w": x})["checksums"]["w"]
  mesh = jax.make_mesh((4, 2), ("a", "b"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("a", "b")))
  assert checkpoint_files.integrity_record({"w": sharded})["checksums"]["w"] == reference
  bits = np.asarray(x).view(np.uint32).copy()
  for index, bit in ((0, 0), (1234, 31), (4095, 7), (77, 22)):
    flipped = bits.copy()
    flipped.flat[index] ^= np.uint32(1 << bit)
    got = checkpoint_files.integrity_record({"w": flipped.view(np.float32)})["checksums"]["w"]
    assert got != reference, (index, bit)
  # Host arrays take a numpy path (no compile): the same checksums for every dtype.
  for dtype in (jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_):
    on_device = {"w": x.astype(dtype), "v": (x[:7, :3] * 1e6).astype(dtype)}
    on_host = jax.tree.map(np.asarray, on_device)
    assert isinstance(on_host["w"], np.ndarray)
    assert (checkpoint_files.integrity_record(on_host)
            == checkpoint_files.integrity_record(on_device)), dtype
  nan = np.array([1.0, np.nan], np.float32)
  assert checkpoint_files.integrity_record({"w": nan})["nonfinite"] == ["w"]
  assert checkpoint_files.integrity_record({"w": jnp.asarray(nan)})["nonfinite"] == ["w"]


def test_a_state_holding_nan_is_never_saved(tmp_path, caplog):
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), keep=1,
                                       async_save=False)
  good = {"w": jnp.ones((3,)), "step": jnp.int32(1)}
  assert checkpointer.save(1, good, {}, {})
  bad = {"w": jnp.array([1.0, jnp.nan, 2.0]), "step": jnp.int32(2)}
  with caplog.at_level(logging.ERROR):
    assert not checkpointer.save(2, bad, {}, {})
  assert checkpointer.all_steps() == [1]  # keep=1 did not drop the good one
  assert any("not saved" in m and "w" in m for m in caplog.messages)
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), good)
  restored = checkpointer.restore_latest(target)
  assert restored.step == 1
  checkpointer.close()


def test_checkpoints_saved_before_checksums_still_restore(run6, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run6, workdir)
  for step in (2, 4, 6):
    shutil.rmtree(workdir / "checkpoints" / str(step) / checkpoint_files.INTEGRITY)
  result = train(toy_config(mesh__data=1, total_steps=6, checkpoint_every=2, eval_every=0),
                 str(workdir))
  assert result.origin == "checkpoint" and result.step == 6


def test_a_failed_save_is_one_clear_error_and_keeps_the_earlier_checkpoints(tmp_path,
                                                                           monkeypatch):
  """A full disk, simulated: the second save fails inside orbax (as an asynchronous write's
  failure surfaces, at the next save)."""
  import orbax.checkpoint as ocp
  original = ocp.CheckpointManager.save
  calls = []

  def failing_save(self, step, *args, **kwargs):
    calls.append(step)
    if len(calls) == 2:
      raise ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on device")
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
  config = toy_config(mesh__data=1, total_steps=6, checkpoint_every=2, eval_every=0)
  with pytest.raises(CheckpointError, match="save failed .*No space left on device.*kept \\(2\\)"):
    train(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


def test_too_little_free_space_is_found_before_step_1(tmp_path, monkeypatch):
  import collections
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
  with pytest.raises(CheckpointError, match="MiB free, but a checkpoint takes about"):
    train(toy_config(mesh__data=1, total_steps=2), str(tmp_path))
  assert not os.path.exists(tmp_path / "metrics.jsonl")
