"""`audiolm-jax detect`: one `PATH<TAB>probability` line per file, exit 0; a bad file is one
line on stderr and the others are still scored; exit 1 only when none could be."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from audiolm_jax import cli, pretrained
from audiolm_jax.config import load_config
from audiolm_jax.data.audio import load_audio, write_wav
from audiolm_jax.eval import detector as detector_lib
from parts import write_checkpoint  # tests/support

RATE = 16000


def error_lines(err: str) -> list[str]:
  """The command's own lines on stderr (logging adds its INFO lines there too)."""
  return [line for line in err.splitlines() if line.startswith("audiolm-jax:")]


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
  """A `detector` run of the tiny preset with random weights, in the trainer's layout."""
  workdir = str(tmp_path_factory.mktemp("detector"))
  config = load_config("detector:tiny")
  params = nn.unbox(detector_lib.init_params(
      detector_lib.DetectorConfig.from_config(config.model), jax.random.key(0)))
  write_checkpoint(workdir, config, {"params": jax.tree.map(np.asarray, params),
                                     "step": np.int32(1)})
  return workdir


@pytest.fixture
def clips(tmp_path):
  rng = np.random.default_rng(0)
  good = []
  for i, rate in enumerate((RATE, 22050)):
    path = str(tmp_path / f"clip{i}.wav")
    write_wav(path, 0.1 * rng.normal(size=rate).astype(np.float32), rate)
    good.append(path)
  silent = str(tmp_path / "silent.wav")
  write_wav(silent, np.zeros(RATE, np.float32))
  not_audio = str(tmp_path / "notes.wav")
  with open(not_audio, "w") as f:
    f.write("not a wav file\n")
  return good, {"silent": silent, "unreadable": not_audio,
                "missing": str(tmp_path / "missing.wav")}


def test_one_line_per_file_and_exit_0(detector_run, clips, capsys):
  good, _ = clips
  assert cli.main(["detect", "--detector", detector_run, *good]) == 0
  out = capsys.readouterr()
  lines = out.out.strip().splitlines()
  assert [line.split("\t")[0] for line in lines] == good and not error_lines(out.err)
  detector = pretrained.load_detector(detector_run)
  for line, path in zip(lines, good):
    probability = float(line.split("\t")[1])
    assert 0.0 <= probability <= 1.0
    assert probability == pytest.approx(
        detector.probability(load_audio(path, RATE), RATE), abs=1e-4)


def test_bad_files_are_reported_and_the_others_scored(detector_run, clips, capsys):
  good, bad = clips
  argv = [bad["missing"], good[0], bad["silent"], bad["unreadable"], good[1]]
  assert cli.main(["detect", "--detector", detector_run, *argv]) == 0
  out = capsys.readouterr()
  assert [line.split("\t")[0] for line in out.out.strip().splitlines()] == good
  errors = error_lines(out.err)
  assert len(errors) == 3
  for line, (reason, path) in zip(errors, [("missing", bad["missing"]),
                                           ("silent", bad["silent"]),
                                           ("unreadable", bad["unreadable"])]):
    assert line.startswith(f"audiolm-jax: error: {path}: {reason}"), line


def test_exit_1_when_nothing_could_be_scored(detector_run, clips, capsys):
  _, bad = clips
  assert cli.main(["detect", "--detector", detector_run, bad["silent"], bad["missing"]]) == 1
  err = error_lines(capsys.readouterr().err)
  assert len(err) == 3 and "none of the 2 file(s) could be scored" in err[-1]


def test_a_run_that_is_not_a_detector_is_one_line(clips, tmp_path, capsys):
  good, _ = clips
  assert cli.main(["detect", "--detector", str(tmp_path / "nothing"), good[0]]) == 1
  err = error_lines(capsys.readouterr().err)
  assert len(err) == 1 and "no checkpoint" in err[0]
  codec_run = str(tmp_path / "codec")
  write_checkpoint(codec_run, load_config("codec:tiny"), {"step": np.int32(1)})
  assert cli.main(["detect", "--detector", codec_run, good[0]]) == 1
  err = error_lines(capsys.readouterr().err)
  assert len(err) == 1 and "a 'codec' checkpoint, not a detector" in err[0], err
