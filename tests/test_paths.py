"""Paths through etils.epath: a URI (`gs://bucket/run`) reaches the filesystem layer as written,
for workdirs, checkpoints, metrics, token caches and output files; local paths as before."""

import importlib.util
import os

import numpy as np
import pytest
from etils import epath
from etils.epath import register

from audiolm_jax import checkpoint_files, paths
from audiolm_jax.commands import checks
from audiolm_jax.data import tokens
from audiolm_jax.errors import ConfigError, MissingExtraError
from audiolm_jax.formats import AcousticCodes
from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.train.trainer import train
from train_helpers import toy_config


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """A `mem://` scheme that epath serves from a local folder (as it serves `gs://` from a
  bucket); `os.path.abspath` of a URI fails, and the working directory is empty, so a URI
  taken for a local path (`./mem:/run`) shows."""
  root = tmp_path / "bucket"
  root.mkdir()
  # epath picks a path class by URI prefix from this registry (`epath.register_path_cls`).
  monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "mem://",  # pylint: disable=protected-access
                      lambda uri: epath.Path(str(root) + "/" + uri[len("mem://"):]))
  abspath = os.path.abspath

  def local_only(path):
    if "://" in os.fspath(path):
      raise AssertionError(f"os.path.abspath({path!r}): a URI taken for a local path")
    return abspath(path)

  monkeypatch.setattr(os.path, "abspath", local_only)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  yield root
  assert not os.listdir(cwd)


def test_uris_are_kept_and_local_paths_made_absolute(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  assert str(paths.resolve("runs/a")) == str(tmp_path / "runs" / "a")
  assert str(paths.resolve("s3://bucket/run") / "checkpoints") == "s3://bucket/run/checkpoints"
  assert paths.is_remote("gs://bucket/run") and not paths.is_remote("runs/gs:/a")
  with pytest.raises(ConfigError, match="no filesystem for memory:// paths"):
    paths.resolve("memory://run")
  with pytest.raises(ConfigError, match="--run_dir gs://b/demo: must be a local path"):
    paths.require_local("gs://b/demo", "--run_dir")
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in (
      "gcsfs", "tensorflow") else find_spec(name, *a))
  with pytest.raises(MissingExtraError, match=r"pip install 'audiolm-jax\[gcs\]'"):
    paths.resolve("gs://bucket/run")


def test_a_uri_workdir_trains_resumes_and_is_read_back(bucket):
  assert checks.output_dir("mem://run", "--workdir") == "mem://run"
  config = toy_config(mesh__data=1, total_steps=2, checkpoint_every=2, eval_every=0)
  assert train(config, "mem://run").origin == "fresh"
  run = bucket / "run"
  assert sorted(os.listdir(run / "checkpoints")) == ["2"]
  assert (run / "config.json").is_file() and os.listdir(run / "tb")
  assert [r["step"] for r in metrics_lib.read_jsonl("mem://run")] == [1, 2]
  assert checkpoint_files.find_step_dir("mem://run") == str(run / "checkpoints" / "2")
  assert checkpoint_files.read_config("mem://run/checkpoints/2")["task"] == "toy_lm"
  resumed = train(toy_config(mesh__data=1, total_steps=3, checkpoint_every=3, eval_every=0),
                  "mem://run")
  assert resumed.origin == "checkpoint" and resumed.step == 3
  assert sorted(os.listdir(run / "checkpoints")) == ["2", "3"]


def test_a_uri_token_cache_and_codes_file(bucket):
  rng = np.random.default_rng(0)
  written = [{"semantic": rng.integers(0, 8, 5), "acoustic": rng.integers(0, 8, (10, 2))}
             for _ in range(3)]
  tokens.write_token_cache("mem://tokens", {"train": written},
                           tokens.CacheInfo(semantic_vocab_size=8))
  assert tokens.read_cache_info("mem://tokens").semantic_vocab_size == 8
  source = tokens.token_source("mem://tokens", "train")
  assert len(source) == 3 and (bucket / "tokens" / tokens.INFO_FILE).is_file()
  codes = AcousticCodes([w["acoustic"] for w in written], [3200] * 3, ["a", "b", "c"], 8,
                        16000, 50.0)
  assert checks.output_file("mem://out/codes.npz", "--out") == "mem://out/codes.npz"
  codes.save("mem://out/codes.npz")
  np.testing.assert_array_equal(AcousticCodes.load("mem://out/codes.npz").codes[2],
                                written[2]["acoustic"])
  assert (bucket / "out" / "codes.npz").is_file()
