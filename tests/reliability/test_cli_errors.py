"""Every OS, library and argument error is one line that names what to fix, found before the
expensive work (issue #15, points 5, 6 and 9)."""

import errno
import glob
import os
import shutil

import pytest

import audiolm_jax.tasks  # noqa: F401  (registers the stage tasks)
from audiolm_jax import config as config_lib
from audiolm_jax.cli import main
from audiolm_jax.errors import ConfigError
from train_helpers import write_fake_token_cache


def run(capsys, *argv):
  code = main(list(argv))
  err = [line for line in capsys.readouterr().err.splitlines()
         if line.startswith("audiolm-jax")]
  return code, err


def one_line_error(capsys, *argv, match):
  code, err = run(capsys, *argv)
  assert code == 1, err
  assert len(err) == 1 and match in err[0], err
  return err[0]


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf", "1e9"])
def test_generate_seconds_outside_its_limits(seconds, capsys, tmp_path):
  line = one_line_error(capsys, "generate", "--run", str(tmp_path), "--seconds", seconds,
                        "--out", str(tmp_path / "x.wav"), match="--seconds")
  assert "(0, 3600]" in line
  assert not os.listdir(tmp_path)


def test_generate_checks_its_outputs_before_generating(capsys, tmp_path):
  (tmp_path / "dir.wav").mkdir()
  one_line_error(capsys, "generate", "--run", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "dir.wav"), match="is a directory")
  (tmp_path / "file").write_text("")
  one_line_error(capsys, "generate", "--run", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "file" / "x.wav"), match="is a file, not a directory")
  one_line_error(capsys, "generate", "--run", str(tmp_path), "--num_samples", "0", "--out",
                 str(tmp_path / "x.wav"), match="--num_samples 0")


def test_tokenize_and_decode_check_their_outputs_first(capsys, tmp_path):
  (tmp_path / "out.npz").mkdir()
  one_line_error(capsys, "tokenize", "acoustic", "--codec", str(tmp_path / "missing"),
                 "a.wav", "--out", str(tmp_path / "out.npz"), match="--out")
  one_line_error(capsys, "tokenize", "semantic", "--tokenizer", str(tmp_path / "missing"),
                 "a.wav", "--out", str(tmp_path / "out.npz"), match="--out")


def test_a_file_as_workdir_or_data_dir(capsys, tmp_path):
  (tmp_path / "file").write_text("")
  one_line_error(capsys, "train", "--config", "semantic_lm.py:tiny", "--workdir",
                 str(tmp_path / "file"), match="--workdir")
  one_line_error(capsys, "data", "build", "synthetic_speech", "--size", "tiny", "--data_dir",
                 str(tmp_path / "file"), match="--data_dir")


def test_os_errors_are_one_line(capsys, tmp_path, monkeypatch):
  # A full disk while the run writes (simulated at the first file the trainer writes).
  from audiolm_jax.train import trainer

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "w" / "config.json"))

  monkeypatch.setattr(trainer.Trainer, "check_workdir_task", full_disk)
  line = one_line_error(capsys, "train", "--config", "semantic_lm.py:tiny", "--workdir",
                        str(tmp_path / "w"), match="No space left on device")
  assert "config.json" in line
  monkeypatch.undo()
  # Folders that cannot be made (root can write almost anywhere, but not under /proc).
  one_line_error(capsys, "tokenize", "fit-kmeans", "--features", "mfcc", "--out",
                 "/proc/audiolm-test/tokenizer", match="cannot make")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return write_fake_token_cache(str(tmp_path_factory.mktemp("tokens")))


def _garbage(path):
  with open(path, "wb") as f:
    f.write(b"garbage" * 10)


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    "features.json garbage": lambda b: _garbage(os.path.join(b, "features.json")),
    "features.json missing": lambda b: os.remove(os.path.join(b, "features.json")),
    "dataset_info.json garbage": lambda b: _garbage(os.path.join(b, "dataset_info.json")),
    "records garbage": lambda b: _garbage(glob.glob(os.path.join(b, "*train.array_record*"))[0]),
    "records truncated": lambda b: _truncate(
        glob.glob(os.path.join(b, "*train.array_record*"))[0]),
    "records missing": lambda b: os.remove(glob.glob(os.path.join(b, "*train.array_record*"))[0]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_token_cache_is_one_line(damage, cache, capsys, tmp_path):
  damaged = str(tmp_path / "cache")
  shutil.copytree(cache, damaged)
  DAMAGE[damage](glob.glob(os.path.join(damaged, "token_cache", "tokens", "*"))[0])
  one_line_error(capsys, "train", "--config", "semantic_lm.py:tiny",
                 f"--config.data.tokens_dir={damaged}", "--config.stage.codebook_size=32",
                 "--workdir", str(tmp_path / "w"), "--config.total_steps=2",
                 match=f"token cache {damaged} is damaged")
  assert not os.path.exists(tmp_path / "w" / "checkpoints" / "2")


def test_a_bare_config_name_is_the_shipped_config_never_a_local_file(tmp_path, monkeypatch):
  marker = tmp_path / "ran"
  (tmp_path / "codec.py").write_text(
      f"open({str(marker)!r}, 'w').close()\n"
      "from audiolm_jax.config import load_config\n"
      "def get_config(arg=None):\n  raise RuntimeError('the local file ran')\n")
  monkeypatch.chdir(tmp_path)
  config = config_lib.load_config("codec.py:tiny")
  assert config.task == "codec" and not marker.exists()
  config_lib.load_config("codec:tiny")
  assert not marker.exists()
  with pytest.raises(ConfigError, match="the local file ran"):
    config_lib.load_config("./codec.py:tiny")  # named with its folder: that file
  assert marker.exists()
  (tmp_path / "mine.py").write_text("def get_config(arg=None):\n  return None\n")
  with pytest.raises(ConfigError, match="e.g. ./mine.py"):
    config_lib.load_config("mine.py")


def test_a_config_value_never_imports_a_module(tmp_path, monkeypatch, capsys):
  marker = tmp_path / "imported"
  (tmp_path / "evil_task_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  one_line_error(capsys, "train", "--config", "semantic_lm.py:tiny",
                 "--config.task=evil_task_module:Task", "--workdir", str(tmp_path / "w"),
                 match="--task_module evil_task_module")
  assert not marker.exists()
  # Asked for explicitly, it is imported (and then found to hold no such task).
  one_line_error(capsys, "train", "--config", "semantic_lm.py:tiny", "--task_module",
                 "evil_task_module", "--config.task=evil_task_module:Task", "--workdir",
                 str(tmp_path / "w"), match="has no 'Task'")
  assert marker.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_overrides_are_rejected(value):
  with pytest.raises(ConfigError, match="optimizer.learning_rate: expected a finite number"):
    config_lib.load_config("semantic_lm.py:tiny", [("optimizer.learning_rate", value)])
