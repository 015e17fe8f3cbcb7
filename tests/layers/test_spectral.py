"""The spectral front ends equal librosa's, and jit."""

import jax
import librosa
import numpy as np
import pytest

from audiolm_jax.layers import spectral


def _wav(batch=2, samples=4000, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000.0
  tone = np.sin(2 * np.pi * 440.0 * t) + 0.5 * np.sin(2 * np.pi * 3100.0 * t)
  return (0.3 * tone + 0.1 * rng.standard_normal((batch, samples))).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop,win_length,center", [(400, 160, None, False),
                                                          (512, 128, 400, False),
                                                          (256, 100, None, True)])
def test_stft_matches_librosa(n_fft, hop, win_length, center):
  wav = _wav()
  ours = np.asarray(spectral.stft(wav, n_fft, hop, win_length, center=center))
  ref = librosa.stft(wav, n_fft=n_fft, hop_length=hop, win_length=win_length, center=center)
  ref = np.swapaxes(ref, -1, -2)  # [B, F, T] -> [B, T, F]
  assert ours.shape == ref.shape
  assert ours.shape[1] == spectral.num_stft_frames(wav.shape[-1], n_fft, hop, center)
  np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 400, 80, 0.0, None),
                                                       (16000, 512, 40, 20.0, 7600.0),
                                                       (22050, 1024, 128, 0.0, None)])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
  ours = spectral.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
  ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
  assert ours.shape == (n_fft // 2 + 1, n_mels)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_htk_mel_filterbank_matches_librosa():
  ours = spectral.mel_filterbank(16000, 400, 40, htk=True, norm=None)
  ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, htk=True, norm=None).T
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_log_mel_matches_librosa_under_jit():
  wav = _wav()
  ours = np.asarray(jax.jit(spectral.log_mel_spectrogram)(wav))  # 80 bands, 25 ms / 10 ms
  mel = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160,
                                       n_mels=80, center=False, power=2.0)
  ref = np.swapaxes(np.log(np.maximum(mel, 1e-6)), -1, -2)
  assert ours.shape == (2, 1 + (4000 - 400) // 160, 80)
  np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_mfcc_matches_librosa():
  wav = _wav(batch=1)
  ours = np.asarray(jax.jit(spectral.mfcc)(wav))
  ref = librosa.feature.mfcc(y=wav, sr=16000, n_mfcc=13, n_fft=400, hop_length=160,
                             n_mels=40, center=False)
  ref = np.swapaxes(ref, -1, -2)
  assert ours.shape == ref.shape == (1, 23, 13)
  np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_top_db_is_per_example():
  wav = _wav()
  wav[1] *= 1e-3  # A much quieter second clip must not be clipped by the first's maximum.
  both = np.asarray(spectral.mfcc(wav))
  alone = np.asarray(spectral.mfcc(wav[1:]))
  np.testing.assert_allclose(both[1:], alone, atol=1e-3)


def test_too_short_input_is_an_error():
  with pytest.raises(ValueError, match="fewer than one frame"):
    spectral.stft(np.zeros((1, 100), np.float32), 400, 160)
