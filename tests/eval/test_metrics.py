"""Quality metrics and word error rate against hand-computed values."""

import numpy as np
import pytest

from audiolm_jax.eval import asr, quality


def speechlike(seconds=2.0, rate=16000, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * rate)) / rate
  env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # Syllable-rate envelope.
  x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 900, 1800), 1))
  return (0.2 * env * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_si_snr_known_values():
  x = speechlike()
  assert quality.si_snr(x, 3.0 * x) > 80  # Scale-invariant: perfect.
  noise = np.random.default_rng(1).standard_normal(x.size).astype(np.float32)
  noise *= np.sqrt(np.sum((x - x.mean()) ** 2) / np.sum(noise ** 2)) / np.sqrt(10)  # 10 dB.
  assert abs(quality.si_snr(x, x + noise) - 10.0) < 0.5


def test_mel_distance_zero_for_identical_and_grows_with_noise():
  x = speechlike()
  assert quality.mel_distance(x, x) == 0.0
  rng = np.random.default_rng(0)
  small = quality.mel_distance(x, x + 0.001 * rng.standard_normal(x.size).astype(np.float32))
  large = quality.mel_distance(x, x + 0.05 * rng.standard_normal(x.size).astype(np.float32))
  assert 0 < small < large


def test_pesq_and_stoi_rank_clean_above_noisy():
  x = speechlike(3.0)
  noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)
  clean = quality.quality_metrics(x, x)
  bad = quality.quality_metrics(x, noisy)
  assert clean["pesq"] > 4.0 and clean["stoi"] > 0.99
  assert bad["pesq"] < clean["pesq"] and bad["stoi"] < clean["stoi"]


def test_edit_distance_and_wer():
  assert asr.edit_distance("a b c".split(), "a x c".split()) == 1
  assert asr.edit_distance([], "a b".split()) == 2
  assert asr.edit_distance("a b c d".split(), "b c d e".split()) == 2
  assert asr.word_error_rate(["The cat sat.", "Hi there"], ["the cat sat", "hi"]) == \
      pytest.approx(1 / 5)
  with pytest.raises(ValueError):
    asr.word_error_rate(["a"], [])


def test_pocketsphinx_transcribes_synthetic_speech(tiny_data_dir):
  from audiolm_jax.data import corpora
  from audiolm_jax.data.audio import from_int16
  src = corpora.data_source("synthetic_speech", "train", tiny_data_dir, "tiny")
  recognizer = asr.PocketSphinxASR()
  flite = [src[i] for i in range(len(src)) if src[i]["voice"].startswith(b"flite voice=slt")]
  refs = [e["transcript"].decode() for e in flite[:3]]
  hyps = [recognizer.transcribe(from_int16(e["audio"])) for e in flite[:3]]
  assert asr.word_error_rate(refs, hyps) < 0.5, list(zip(refs, hyps))
  silence = recognizer.transcribe(np.zeros(16000, np.float32))
  assert asr.word_error_rate(refs[:1], [silence]) >= 0.9


def test_stft_swaps_tell_phase_errors_from_magnitude_errors():
  from scipy import signal
  x = speechlike(3.0)
  same = quality.stft_swaps(x, x)
  for wav in same.values():
    np.testing.assert_allclose(wav, x, atol=1e-4)
  # The same magnitudes with random phases: putting the true phases back repairs it, putting
  # the true magnitudes back does not.
  kw = dict(window="hann", nperseg=512, noverlap=384)
  _, _, spec = signal.stft(x, **kw)
  phase = np.exp(2j * np.pi * np.random.default_rng(0).random(spec.shape))
  scrambled = signal.istft(np.abs(spec) * phase, **kw)[1][:x.size].astype(np.float32)
  scores = quality.pesq_diagnosis(x, scrambled)
  # (Overlap-add of the scrambled frames also smears the magnitudes: true phases give 2.9, not
  # the clean 4.6; true magnitudes 1.9.)
  assert scores["pesq_true_phase"] > scores["pesq_true_magnitude"] + 0.5
  assert scores["pesq_true_magnitude"] < 2.5 < scores["pesq_true_phase"]
