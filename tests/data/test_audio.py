"""Audio I/O and the checks at the door: every kind of bad file gets its exact reason."""

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax.data.audio import (AudioChecks, check_audio, from_int16, load_audio, rms_db,
                                    to_int16, write_wav)
from audiolm_jax.errors import BadAudioError


def tone(seconds=1.0, rate=16000, freq=440.0, amp=0.5):
  t = np.arange(int(seconds * rate)) / rate
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, data, rate=16000, subtype="PCM_16"):
  sf.write(str(path), data, rate, subtype=subtype)
  return str(path)


def reason_of(path, **kw):
  with pytest.raises(BadAudioError) as e:
    load_audio(path, **kw)
  assert e.value.path == str(path)
  return e.value.reason


def test_good_file_round_trip(tmp_path):
  x = tone()
  path = write(tmp_path / "a.wav", x)
  y = load_audio(path)
  assert y.dtype == np.float32 and y.shape == x.shape
  np.testing.assert_allclose(y, x, atol=1e-4)


def test_stereo_is_mixed_to_mono_and_resampled(tmp_path):
  left, right = tone(freq=300, rate=44100), tone(freq=300, rate=44100, amp=0.1)
  path = write(tmp_path / "s.flac", np.stack([left, right], 1), rate=44100)
  y = load_audio(path, 16000)
  assert y.shape == (16000,)
  # Mono mix of two in-phase tones has the mean amplitude (0.3): RMS of a 0.3 sine.
  assert abs(rms_db(y) - 20 * np.log10(0.3 / np.sqrt(2))) < 0.2


@pytest.mark.parametrize("ext,fmt", [(".ogg", "OGG"), (".mp3", "MP3")])
def test_compressed_formats(tmp_path, ext, fmt):
  path = str(tmp_path / f"c{ext}")
  sf.write(path, tone(rate=22050), 22050, format=fmt)
  y = load_audio(path, 16000)
  assert abs(y.size - 16000) < 2000 and np.isfinite(y).all()


def test_missing_and_empty(tmp_path):
  assert reason_of(tmp_path / "nope.wav") == "missing"
  (tmp_path / "zero.wav").write_bytes(b"")
  assert reason_of(tmp_path / "zero.wav") == "empty"
  assert reason_of(write(tmp_path / "nosamples.wav", np.zeros(0, np.float32))) == "empty"


def test_unreadable(tmp_path):
  (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 100)
  assert reason_of(tmp_path / "junk.wav") == "unreadable"


def test_truncated(tmp_path):
  data = open(write(tmp_path / "ok.flac", tone(2.0), subtype="PCM_16"), "rb").read()
  (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
  assert reason_of(tmp_path / "cut.flac") in ("truncated", "unreadable")
  data = open(write(tmp_path / "ok.wav", tone(2.0)), "rb").read()
  (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
  assert reason_of(tmp_path / "cut.wav") == "truncated"


def test_non_finite(tmp_path):
  x = tone()
  x[100] = np.nan
  assert reason_of(write(tmp_path / "nan.wav", x, subtype="FLOAT")) == "non-finite"
  x[100] = np.inf
  assert reason_of(write(tmp_path / "inf.wav", x, subtype="FLOAT")) == "non-finite"


def test_too_short_too_long_silent(tmp_path):
  assert reason_of(write(tmp_path / "short.wav", tone(0.1))) == "too short"
  assert reason_of(write(tmp_path / "long.wav", tone(3.0)),
                   checks=AudioChecks(max_seconds=2.0)) == "too long"
  assert reason_of(write(tmp_path / "zeros.wav", np.zeros(16000, np.float32))) == "silent"
  quiet = tone(amp=1e-4)  # -83 dBFS
  assert reason_of(write(tmp_path / "quiet.wav", quiet, subtype="FLOAT")) == "silent"
  # A threshold below the level lets it through.
  load_audio(str(tmp_path / "quiet.wav"), checks=AudioChecks(silence_db=-100))


def test_bad_sample_rate(tmp_path):
  assert reason_of(write(tmp_path / "low.wav", tone(1.0, rate=1000), rate=1000)) == \
      "bad sample rate"
  with pytest.raises(BadAudioError, match="bad sample rate"):
    check_audio(tone(), 10**7)


def test_check_audio_on_arrays():
  with pytest.raises(BadAudioError, match="non-finite"):
    check_audio(np.array([0.1, np.nan] * 8000, np.float32), 16000)
  assert check_audio(tone(), 16000) is not None
  with pytest.raises(ValueError):
    AudioChecks(min_seconds=2, max_seconds=1)


def test_int16_round_trip_and_write(tmp_path):
  x = tone()
  np.testing.assert_allclose(from_int16(to_int16(x)), x, atol=1 / 32767)
  write_wav(tmp_path / "w.wav", x)
  np.testing.assert_allclose(load_audio(tmp_path / "w.wav"), x, atol=1e-4)
  with pytest.raises(BadAudioError, match="non-finite"):
    write_wav(tmp_path / "bad.wav", np.array([np.nan], np.float32))


def test_resample_equals_librosa_soxr_hq():
  """`resample` calls soxr directly (no librosa/numba import); it must give librosa's
  `soxr_hq` output exactly, length included."""
  import librosa
  from audiolm_jax.data.audio import resample
  rng = np.random.default_rng(0)
  for n in (1, 7, 12345, 44101):
    for rates in ((22050, 16000), (44100, 16000), (8000, 16000), (16000, 24000)):
      x = rng.normal(size=n).astype(np.float32)
      want = librosa.resample(x, orig_sr=rates[0], target_sr=rates[1], res_type="soxr_hq")
      np.testing.assert_array_equal(resample(x, *rates), want.astype(np.float32))
