"""`audiolm-jax tokenize acoustic` and `audiolm-jax generate decode` on a tiny codec checkpoint,
bad input, and the bitrate experiment (experiments/codec_bitrate.py) on two utterances.

The checkpoint is a real trainer checkpoint of the `codec` task (tiny preset) whose weights are
drawn with numpy, so no initialiser is compiled; training itself is tested in
tests/codec/test_codec_task.py.
"""

import json
import math
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from audiolm_jax import cli
from audiolm_jax import config as config_lib
import audiolm_jax.tasks  # noqa: F401  (registers the codec task)
from audiolm_jax import formats, pretrained, tokenize
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, load_audio, write_wav
from audiolm_jax.frames import num_frames
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train import optim
from audiolm_jax.train import state as state_lib
from audiolm_jax.train.task import build_task

from experiment_helpers import load_experiment



def write_codec_checkpoint(workdir: str, step: int = 7) -> str:
  """A `codec:tiny` trainer checkpoint with numpy weights and codebooks marked trained."""
  config = config_lib.load_config("codec:tiny")
  task = build_task(config)
  tx, _ = optim.make_optimizer(config.optimizer, config.total_steps)
  abstract = nn.unbox(jax.eval_shape(state_lib.make_init_fn(task, tx, use_ema=False),
                                     jax.random.key(0)))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = getattr(path[-1], "key", getattr(path[-1], "name", None))
    if name == "kernel":
      return (rng.normal(size=leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))).astype(
          leaf.dtype)
    if name == "codebook":
      return rng.normal(size=leaf.shape).astype(leaf.dtype)
    if name == "initialized":
      return np.array(True)
    return np.zeros(leaf.shape, leaf.dtype)

  state = jax.tree_util.tree_map_with_path(fill, abstract)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  checkpointer.save(step, state, {}, json.loads(config_lib.to_json(config)))
  checkpointer.wait_until_finished()
  checkpointer.close()
  return workdir


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
  return write_codec_checkpoint(str(tmp_path_factory.mktemp("codec")))


@pytest.fixture(scope="module")
def wav_files(tmp_path_factory, tiny_data_dir):
  """Two test utterances as wav files (as read back: 16-bit), with their samples."""
  source = corpora.data_source("synthetic_speech", "test", tiny_data_dir, "tiny")
  directory = tmp_path_factory.mktemp("wavs")
  paths, wavs = [], []
  for i in (0, 1):
    paths.append(str(directory / f"utt{i}.wav"))
    write_wav(paths[-1], from_int16(np.asarray(source[i]["audio"])))
    wavs.append(load_audio(paths[-1]))
  return paths, wavs


def read_npz(path):
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def test_tokenize_acoustic_then_decode(codec_dir, wav_files, tmp_path, capsys):
  paths, wavs = wav_files
  codes_file = str(tmp_path / "codes.npz")
  assert cli.main(["tokenize", "acoustic", "--codec", codec_dir, *paths, "--out", codes_file]) == 0
  out = read_npz(codes_file)
  codec = pretrained.load_codec(codec_dir)
  frames = [2 * num_frames(len(w)) for w in wavs]
  assert list(out["paths"]) == paths and list(out["num_samples"]) == [len(w) for w in wavs]
  np.testing.assert_array_equal(out["num_frames"], frames)
  assert out["codes"].shape == (2, max(frames), 4) and out["codes"].dtype == np.int32
  assert (int(out["codebook_size"]), int(out["sample_rate"]), float(out["frame_rate"])) == (
      32, 16000, 50.0)
  for row, (wav, n) in enumerate(zip(wavs, frames)):  # Batched equals alone, padding is -1.
    alone = np.asarray(tokenize.tokenize_for_lm(codec, wav[None]))[0]
    np.testing.assert_array_equal(out["codes"][row, :n], alone)
    assert np.all(out["codes"][row, n:] == formats.PAD_CODE)
  assert "1000 bps" in capsys.readouterr().out  # 4 levels x 5 bits x 50 Hz

  assert cli.main(["generate", "decode", "--codec", codec_dir, codes_file,
                   str(tmp_path / "all.wav")]) == 0
  for i, wav in enumerate(wavs):
    decoded = load_audio(str(tmp_path / f"all-{i}.wav"), checks=None)
    assert decoded.shape == wav.shape  # Cut back to the clip's own length.
    reference = np.asarray(codec.decode(out["codes"][i:i + 1, :frames[i]]))[0, :len(wav)]
    np.testing.assert_allclose(decoded, np.clip(reference, -1, 1), atol=2e-4)

  low = str(tmp_path / "low.wav")
  assert cli.main(["generate", "decode", "--codec", codec_dir, codes_file, low, "--n_q", "1",
                   "--index", "1"]) == 0
  reference = np.asarray(codec.decode(out["codes"][1:2, :frames[1], :1]))[0, :len(wavs[1])]
  np.testing.assert_allclose(load_audio(low, checks=None), np.clip(reference, -1, 1),
                             atol=2e-4)
  assert "250 bps" in capsys.readouterr().out


def test_fewer_levels_are_the_leading_levels(codec_dir, wav_files, tmp_path):
  paths, _ = wav_files
  all_levels, two = str(tmp_path / "all.npz"), str(tmp_path / "two.npz")
  assert cli.main(["tokenize", "acoustic", "--codec", codec_dir, paths[0],
                   "--out", all_levels]) == 0
  assert cli.main(["tokenize", "acoustic", "--codec", codec_dir, paths[0], "--out", two,
                   "--n_q", "2"]) == 0
  np.testing.assert_array_equal(read_npz(two)["codes"], read_npz(all_levels)["codes"][..., :2])


def test_bad_input_is_one_line_and_exit_1(codec_dir, wav_files, tmp_path, capsys):
  paths, _ = wav_files
  codes_file = str(tmp_path / "codes.npz")
  assert cli.main(["tokenize", "acoustic", "--codec", codec_dir, paths[0],
                   "--out", codes_file]) == 0
  other_codec = str(tmp_path / "other.npz")
  codes = formats.AcousticCodes.load(codes_file)
  codes.codebook_size = 16
  codes.codes = [c % 16 for c in codes.codes]
  codes.save(other_codec)
  cases = {
      "no checkpoint found": ["tokenize", "acoustic", "--codec", str(tmp_path / "none"),
                              paths[0], "--out", codes_file],
      "missing": ["tokenize", "acoustic", "--codec", codec_dir, str(tmp_path / "no.wav"),
                  "--out", codes_file],
      "1 to 4 levels": ["tokenize", "acoustic", "--codec", codec_dir, paths[0], "--out",
                        codes_file, "--n_q", "5"],
      "holds 4 levels": ["generate", "decode", "--codec", codec_dir, codes_file,
                         str(tmp_path / "x.wav"), "--n_q", "6"],
      "holds 1 clip": ["generate", "decode", "--codec", codec_dir, codes_file,
                       str(tmp_path / "x.wav"), "--index", "3"],
      "not an npz": ["generate", "decode", "--codec", codec_dir, paths[0],
                     str(tmp_path / "x.wav")],
      "16 codes per level": ["generate", "decode", "--codec", codec_dir, other_codec,
                             str(tmp_path / "x.wav")],
  }
  capsys.readouterr()
  for expected, argv in cases.items():
    assert cli.main(argv) == 1, expected
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("audiolm-jax: error:"), (expected, errors)
    assert expected in errors[0], (expected, errors)
  assert not os.path.exists(tmp_path / "x.wav")


@pytest.fixture(scope="module")
def bitrate_experiment():
  """experiments/codec_bitrate.py as a module."""
  return load_experiment("codec_bitrate")


def test_codec_bitrate_experiment(bitrate_experiment, codec_dir, tiny_data_dir, tmp_path):
  out_dir = str(tmp_path / "results")
  assert bitrate_experiment.main([
      "--codec", codec_dir, "--data_dir", tiny_data_dir, "--max_utterances", "2",
      "--test_set", "tiny_test=synthetic_speech/tiny:test",
      "--test_set", "tiny_validation=synthetic_speech/tiny:validation", "--levels", "1,4",
      "--examples", "1", "--diagnose", "--out_dir", out_dir]) == 0
  with open(os.path.join(out_dir, "codec_bitrate.json")) as f:
    report = json.load(f)
  assert report["codec"]["bps_per_level"] == 250.0
  assert set(report["test_sets"]) == {"tiny_test", "tiny_validation"}
  for result in report["test_sets"].values():
    assert result["utterances"] == 2
    assert [r["n_q"] for r in result["rows"]] == [1, 4]
    assert [r["kbps"] for r in result["rows"]] == [0.25, 1.0]
    for row in result["rows"]:
      assert row["n"] == 2 and -0.5 <= row["pesq"] <= 4.7 and 0.0 <= row["mel_distance"]
      assert row["stoi"] <= 1.0 and math.isfinite(row["si_snr"])
      lo, hi = row["pesq_ci"]
      assert lo <= row["pesq"] <= hi
      for key in ("pesq_true_magnitude", "pesq_true_phase"):  # --diagnose
        assert -0.5 <= row[key] <= 4.7
    unquantized = result["unquantized"]                    # --diagnose: no quantiser
    assert unquantized["n"] == 2 and -0.5 <= unquantized["pesq"] <= 4.7
    assert unquantized["mel_distance"] >= 0.0 and math.isfinite(unquantized["si_snr"])
    usage = result["codebook_usage"]
    assert [u["level"] for u in usage] == [1, 2, 3, 4]
    assert all(0.0 <= u["dead_fraction"] < 1.0 and 1.0 <= u["perplexity"] <= 32 for u in usage)
  examples = sorted(os.listdir(os.path.join(out_dir, "codec_examples")))
  assert "tiny_test_0_original.wav" in examples and "tiny_test_0_q4.wav" in examples
  with open(os.path.join(out_dir, "codec_bitrate.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert bitrate_experiment.main(["--codec", codec_dir, "--levels", "x"]) == 1
  assert bitrate_experiment.main(["--codec", codec_dir, "--levels", "5"]) == 1   # Q is 4
  assert bitrate_experiment.main(["--codec", codec_dir, "--test_set", "nonsense"]) == 1
