"""The detector (`eval/detector.py`, `tasks/detector.py`): the tiny preset trained by the
trainer separates two synthetic classes on clips it never saw; padding and windows never change
a score; bad clips are one-line errors; batches are balanced."""

import os

import flax.linen as nn
import jax
import numpy as np
import pytest

import audiolm_jax.tasks  # noqa: F401  (registers the detector task)
from audiolm_jax import pretrained
from audiolm_jax.config import load_config
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import load_audio, write_wav
from audiolm_jax.errors import BadAudioError, CheckpointError, ConfigError
from audiolm_jax.eval import detector as detector_lib
from audiolm_jax.train.task import build_task
from audiolm_jax.train.trainer import train

RATE = 16000


def noise_clip(rng, label: int) -> np.ndarray:
  """Class 0: noise low-passed at 2 kHz; class 1: full-band noise. Random length and gain."""
  n = int(rng.uniform(0.4, 1.2) * RATE)
  x = rng.normal(size=n)
  if label == 0:
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(n, 1 / RATE) > 2000] = 0
    x = np.fft.irfft(spectrum, n)
  return (rng.uniform(0.05, 0.5) * x / np.max(np.abs(x))).astype(np.float32)


def write_classes(root, rng, counts) -> dict[int, list[str]]:
  """`root/{real,generated}/<split>/spk<k>/<i>.wav` for each `(split, count)`; paths by label."""
  paths = {0: [], 1: []}
  for label, name in enumerate(detector_lib.LABELS):
    for split, count in counts:
      for i in range(count):
        path = os.path.join(root, name, split, f"spk{i % 3}", f"{i}.wav")
        write_wav(path, noise_clip(rng, label), RATE)
        paths[label].append(path)
  return paths


def tiny_config(data_dir, **overrides):
  pairs = {"data.data_dir": data_dir, "data.real": "audio_folder/det_real",
           "data.generated": "audio_folder/det_generated", "progress_bar": "false",
           "peak_flops_per_device": "1e12", "mesh.data": "1", **overrides}
  return load_config("detector:tiny", [(k, str(v)) for k, v in pairs.items()])


@pytest.fixture(scope="module")
def corpora_dir(tmp_path_factory):
  """Both classes as `audio_folder` builds (train: 24 clips each, validation: 8)."""
  root = tmp_path_factory.mktemp("detector_data")
  write_classes(str(root / "src"), np.random.default_rng(0), (("train", 24),
                                                              ("validation", 8)))
  data_dir = str(root / "data")
  for name in detector_lib.LABELS:
    corpora.build("audio_folder", data_dir=data_dir, source_dir=str(root / "src" / name),
                  layout="librispeech", build_name=f"det_{name}", workers=1)
  return data_dir


@pytest.fixture(scope="module")
def trained(corpora_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("detector_run"))
  with jax.default_prng_impl("rbg"):
    result = train(tiny_config(corpora_dir), workdir)
  return workdir, result


def test_trained_tiny_detector_separates_held_out_clips(trained, tmp_path):
  workdir, result = trained
  assert result.step == 40
  assert result.eval_metrics["accuracy"] >= 0.9, result.eval_metrics
  held_out = write_classes(str(tmp_path), np.random.default_rng(1), (("test", 16),))
  detector = pretrained.load_detector(workdir)
  assert detector.step == 40 and detector.config.channels == (4, 8)
  scores = {label: [detector.probability(load_audio(p), RATE) for p in paths]
            for label, paths in held_out.items()}
  assert detector_lib.accuracy(scores[0], scores[1]) >= 0.9, scores
  # At another rate: resampled to the model's, nearly the same score.
  at_24k = load_audio(held_out[1][0], 24000)
  assert detector.probability(at_24k, 24000) == pytest.approx(scores[1][0], abs=0.02)


def test_batches_are_balanced_and_eval_pads_with_invalid_rows(corpora_dir):
  task = build_task(tiny_config(corpora_dir))
  batch = next(task.make_iterator("train", 0, 1))
  assert sorted(batch) == ["audio", "label", "mask", "valid"]
  assert batch["audio"].shape == (16, 8000) and batch["valid"].all()
  np.testing.assert_array_equal(batch["label"], np.arange(16) % 2)
  # Clips shorter than the crop are masked after their end.
  assert (batch["mask"].sum(1) <= 8000).all() and (batch["mask"].sum(1) >= 0.4 * RATE).all()
  evals = list(task.make_iterator("validation", 0, 1))
  assert len(evals) == 1  # 8 + 8 clips, one padded batch of 16
  np.testing.assert_array_equal(evals[0]["label"], np.arange(16) % 2)
  assert evals[0]["valid"].all()
  halves = [next(task.make_iterator("train", p, 2)) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h["audio"] for h in halves]), batch["audio"])


def test_each_class_needs_a_corpus(corpora_dir):
  with pytest.raises(ConfigError, match="data.generated"):
    build_task(tiny_config(corpora_dir, **{"data.generated": ""}))


def random_detector(seed=0) -> detector_lib.Detector:
  config = detector_lib.DetectorConfig.from_config(load_config("detector:tiny").model)
  params = nn.unbox(detector_lib.init_params(config, jax.random.key(seed)))
  return detector_lib.Detector(config, jax.tree.map(np.asarray, params))


def test_padding_and_other_rows_never_change_a_score():
  detector = random_detector()
  model = detector_lib.DetectorNet(detector.config)
  rng = np.random.default_rng(0)
  clip = rng.normal(size=(1, 7000)).astype(np.float32) * 0.1
  alone = model.apply({"params": detector.params}, clip, np.ones_like(clip, bool))
  for pad in (1, 160, 2345):  # Either parity of frames, and more than a whole layer's stride.
    wav = np.concatenate([clip, rng.normal(size=(1, pad)).astype(np.float32)], axis=1)
    mask = np.arange(wav.shape[1])[None] < clip.shape[1]
    other = rng.normal(size=wav.shape).astype(np.float32)
    logits = model.apply({"params": detector.params}, np.concatenate([wav, other]),
                         np.concatenate([mask, np.ones_like(mask)]))
    np.testing.assert_allclose(logits[:1], alone, rtol=1e-4, atol=1e-5)


def test_windows_add_up_to_the_whole(monkeypatch):
  """A clip of one window repeated twice scores as the window alone: windows are pooled
  together, then classified once."""
  detector = random_detector(1)
  window = np.random.default_rng(2).normal(size=RATE).astype(np.float32) * 0.1
  monkeypatch.setattr(detector_lib, "WINDOW_SECONDS", 1.0)
  twice = detector.probability(np.concatenate([window, window]), RATE)
  assert twice == pytest.approx(detector.probability(window, RATE), abs=1e-6)
  assert 0.0 < twice < 1.0


@pytest.mark.parametrize("wav,reason", [
    (np.zeros(0, np.float32), "empty"),
    (np.full(RATE, np.nan, np.float32), "non-finite"),
    (np.zeros(RATE, np.float32), "silent"),
    (np.full(100, 0.1, np.float32), "too short"),
    (np.zeros((RATE, 2), np.float32), "unreadable"),
])
def test_bad_clips_are_one_line_errors(wav, reason):
  with pytest.raises(BadAudioError, match=reason):
    random_detector().probability(wav, RATE, name="clip")


def test_accuracy_is_balanced_and_needs_both_classes():
  assert detector_lib.accuracy([0.1, 0.2, 0.9, 0.4], [0.8]) == pytest.approx((0.75 + 1) / 2)
  with pytest.raises(ConfigError):
    detector_lib.accuracy([], [0.7])


def test_load_detector_refuses_what_is_not_a_detector_run(tmp_path):
  with pytest.raises(CheckpointError, match="no checkpoint"):
    pretrained.load_detector(str(tmp_path))
