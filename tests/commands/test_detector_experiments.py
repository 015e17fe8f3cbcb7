"""experiments/detector_data.py and detector_accuracy.py at tiny size: untrained tiny AudioLM
parts continue prompts of the tiny built-in corpus; the folders it writes build into the two
corpora the `detector` task reads; held-out sets are scored into detector.json."""

import glob
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest
import soundfile as sf

import audiolm_jax.tasks  # noqa: F401  (registers the detector task)
import parts  # tests/support
from experiment_helpers import load_experiment

from audiolm_jax.config import load_config
from audiolm_jax.data import corpora
from audiolm_jax.eval import detector as detector_lib
from audiolm_jax.train.task import build_task


TINY = ["--prompt_seconds", "1", "--total_seconds", "2", "--min_rest_seconds", "0.3",
        "--heldout", "unseen=synthetic_speech:test_unseen_speakers"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return parts.make_run_dir(str(tmp_path_factory.mktemp("detector_run_dir")))


@pytest.fixture(scope="module")
def detector_data(tiny_data_dir, run_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("detector_data"))
  script = load_experiment("detector_data")
  code = script.main(["--run", run_dir, "--data_dir", tiny_data_dir, "--out", out,
                      "--max_utterances", "2", *TINY,
                      "--heldout", "libri=audio_folder/not_built_here:test"])
  assert code == 0
  return out, tiny_data_dir


def test_writes_both_classes_of_every_set(detector_data):
  out, _ = detector_data
  summary = json.load(open(os.path.join(out, "detector_data.json")))
  assert set(summary["sets"]) == {"synthetic_train", "synthetic_validation", "unseen"}
  assert "libri" in summary["skipped"]  # A corpus not built here: skipped, said so.
  layout = {"synthetic_train": "{label}/train/synthetic_train",
            "synthetic_validation": "{label}/validation/synthetic_validation",
            "unseen": "heldout/unseen/{label}"}
  for name, pattern in layout.items():
    assert summary["sets"][name]["clips"] == {"real": 2, "generated": 2}
    lengths = {}
    for label in detector_lib.LABELS:
      files = sorted(glob.glob(os.path.join(out, pattern.format(label=label), "*", "*.wav")))
      assert len(files) == 2, (name, label)
      lengths[label] = [sf.info(f).frames for f in files]
    # Both classes start at the prompt's end (1 s); the continuation ends at 2 s.
    assert lengths["generated"] == [16000, 16000]
    assert all(n >= 0.3 * 16000 for n in lengths["real"])


def test_codec_alone_writes_the_real_class_only(tiny_data_dir, run_dir, tmp_path, capsys):
  script = load_experiment("detector_data")
  out = str(tmp_path / "out")
  assert script.main(["--codec", os.path.join(run_dir, "codec"), "--data_dir", tiny_data_dir,
                      "--out", out, "--max_utterances", "1", *TINY]) == 0
  assert len(glob.glob(os.path.join(out, "real", "train", "*", "*", "*.wav"))) == 1
  assert len(glob.glob(os.path.join(out, "heldout", "unseen", "real", "*", "*.wav"))) == 1
  assert not os.path.exists(os.path.join(out, "generated"))
  assert not glob.glob(os.path.join(out, "heldout", "unseen", "generated"))
  capsys.readouterr()
  assert script.main(["--run", run_dir, "--codec", os.path.join(run_dir, "codec"),
                      "--out", out]) == 1
  assert "give --run" in capsys.readouterr().err


def test_folders_build_into_the_detector_task_corpora(detector_data):
  out, _ = detector_data
  data_dir = os.path.join(out, "corpora")
  for label in detector_lib.LABELS:
    summary = corpora.build("audio_folder", data_dir=data_dir, source_dir=os.path.join(out, label),
                            layout="librispeech", build_name=f"detector_{label}", workers=1)
    assert summary["examples_per_split"] == {"train": 2, "validation": 2}
  config = load_config("detector:tiny", [("data.data_dir", data_dir), ("mesh.data", "1")])
  batch = next(build_task(config).make_iterator("train", 0, 1))
  np.testing.assert_array_equal(batch["label"], np.arange(16) % 2)
  assert batch["valid"].all()


def test_detector_accuracy_scores_each_held_out_set(detector_data, tmp_path):
  out, _ = detector_data
  workdir = str(tmp_path / "detector")
  config = load_config("detector:tiny")
  params = nn.unbox(detector_lib.init_params(
      detector_lib.DetectorConfig.from_config(config.model), jax.random.key(0)))
  parts.write_checkpoint(workdir, config, {"params": jax.tree.map(np.asarray, params),
                                           "step": np.int32(1)})
  result = str(tmp_path / "detector.json")
  script = load_experiment("detector_accuracy")
  assert script.main(["--detector", workdir, "--heldout", os.path.join(out, "heldout"),
                      "--out", result]) == 0
  report = json.load(open(result))
  assert list(report["accuracy"]) == ["unseen"]
  assert report["clips"]["unseen"] == {"real": 2, "generated": 2}
  classes = report["class_accuracy"]["unseen"]
  assert report["accuracy"]["unseen"] == pytest.approx((classes["real"]
                                                        + classes["generated"]) / 2)
  assert report["unscored"] == [] and report["detector"]["step"] == 1
