"""Folder corpora: bad files never sink a split, small folders get held-out data, symlinks are
followed once and recorded (issue #15, point 7)."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax.data import corpora
from audiolm_jax.data.corpora import base
from audiolm_jax.errors import DataError


def speech_like(path, seed, seconds=0.5):
  rng = np.random.default_rng(seed)
  t = np.arange(int(16000 * seconds)) / 16000
  wav = 0.3 * np.sin(2 * np.pi * (150 + 10 * seed) * t) + 0.01 * rng.normal(size=t.size)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sf.write(path, wav.astype(np.float32), 16000)


def build(source, data_dir, layout="generic", name="b"):
  return corpora.build("audio_folder", source_dir=str(source), layout=layout,
                       data_dir=str(data_dir), build_name=name, workers=1)


def test_a_split_whose_only_file_is_bad_is_a_warning_not_a_failure(tmp_path):
  root = tmp_path / "ls"
  for i in range(6):
    speech_like(str(root / "train-clean-100" / f"103-1240-{i:04d}.flac"), i)
  os.makedirs(root / "test-other")
  (root / "test-other" / "1688-142285-0000.flac").write_bytes(b"not audio at all" * 100)
  # A split whose first file is good and the rest bad keeps its one example.
  speech_like(str(root / "dev-clean" / "84-121123-0000.flac"), 9)
  for i in (1, 2):
    (root / "dev-clean" / f"84-121123-000{i}.flac").write_bytes(b"junk" * 100)
  summary = build(root, tmp_path / "data", layout="librispeech")
  assert summary["examples_per_split"]["train"] == 6
  assert summary["examples_per_split"]["validation"] == 1
  assert summary["skipped"] == 3
  assert any("all 1 of its sources were bad" in w for w in summary["warnings"])
  assert any(w == "test: no examples" for w in summary["warnings"])


def test_a_small_hash_split_folder_still_gets_validation_and_test(tmp_path):
  root = tmp_path / "small"
  # 42 names whose hash puts every one in train (2% + 2% held out would give none anyway).
  names = [n for n in (f"clip{i:03d}.wav" for i in range(200))
           if base.stable_hash(n) >= 0.04][:42]
  for i, name in enumerate(names):
    speech_like(str(root / name), i)
  summary = build(root, tmp_path / "data")
  splits = summary["examples_per_split"]
  assert splits.get("validation", 0) >= 1 and splits.get("test", 0) >= 1
  assert sum(splits.values()) == 42
  assert any("moved there from train" in w for w in summary["warnings"])
  assert any("only 1 example" in w for w in summary["warnings"])
  # Deterministic: the same folder gives the same splits.
  again = build(root, tmp_path / "data2")
  assert again["examples_per_split"] == splits


def test_symlinks_are_followed_once_and_recorded(tmp_path):
  root, outside = tmp_path / "tree", tmp_path / "outside"
  for i in range(3):
    speech_like(str(root / "spk" / f"a{i}.wav"), i)
  speech_like(str(outside / "far.wav"), 7)
  for i in range(2):
    speech_like(str(outside / "linked_dir" / f"b{i}.wav"), 10 + i)
  os.symlink(outside / "far.wav", root / "spk" / "near.wav")
  os.symlink(outside / "linked_dir", root / "linked")
  os.symlink(root, root / "spk" / "loop")  # A loop back to the top.
  summary = build(root, tmp_path / "data")
  assert sum(summary["examples_per_split"].values()) == 6  # 3 + 1 + 2, the loop read once
  links = summary["symlinks"]
  assert links[os.path.join("spk", "near.wav")] == str(outside / "far.wav")
  assert links[os.path.join("linked", "b0.wav")] == str(outside / "linked_dir" / "b0.wav")
  saved = json.loads(open(os.path.join(summary["data_path"], "build_summary.json")).read())
  assert saved["symlinks"] == links


def test_a_folder_of_only_bad_files_fails_in_one_line(tmp_path):
  root = tmp_path / "bad"
  os.makedirs(root)
  for i in range(3):
    (root / f"x{i}.wav").write_bytes(b"RIFF junk" * 20)
  with pytest.raises(DataError, match="no usable examples: all 3 sources were bad"):
    build(root, tmp_path / "data")
