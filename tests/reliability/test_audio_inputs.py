"""Odd audio is reported or handled, never passed on silently (issue #15, point 8)."""

import logging

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax.data.audio import load_audio
from audiolm_jax.errors import BadAudioError


def test_a_constant_dc_file_is_not_audio(tmp_path):
  path = str(tmp_path / "dc.wav")
  sf.write(path, np.full(16000, 0.3, np.float32), 16000, subtype="FLOAT")
  with pytest.raises(BadAudioError, match="constant.*DC offset of \\+0.300") as e:
    load_audio(path)
  assert e.value.reason == "constant"
  # A DC offset under real signal is still audio.
  t = np.arange(16000) / 16000
  sf.write(path, (0.3 + 0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000,
           subtype="FLOAT")
  assert load_audio(path).shape == (16000,)


def test_a_float_file_above_full_scale_is_scaled_not_clipped(tmp_path, caplog):
  path = str(tmp_path / "loud.wav")
  t = np.arange(16000) / 16000
  wav = (2.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
  sf.write(path, wav, 16000, subtype="FLOAT")
  with caplog.at_level(logging.WARNING):
    got = load_audio(path)
  assert any("peak at 2.5" in m and "not clipped" in m for m in caplog.messages)
  np.testing.assert_allclose(got, wav / 2.5, atol=1e-6)  # the shape of the wave is kept
