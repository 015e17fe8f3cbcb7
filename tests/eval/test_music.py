"""Music-structure measures rank synthetic piano-like signals the right way, agree with the same
measures on the notes, and refuse bad input in one line."""

import numpy as np
import pytest

from audiolm_jax.errors import BadAudioError, DataError
from audiolm_jax.eval import music

RATE = 16000
C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # I IV V I


def render(notes, seconds):
  """Piano-like tones: 6 decaying partials per note. `notes` [N, 3] = (onset s, pitch, dur s)."""
  t = np.arange(int(seconds * RATE)) / RATE
  out = np.zeros_like(t)
  for onset, pitch, dur in notes:
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    a, b = int(onset * RATE), min(t.size, int((onset + dur) * RATE))
    tt = t[a:b] - onset
    env = np.exp(-3.0 * tt) * np.minimum(1.0, tt / 0.005)
    out[a:b] += env * sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in range(1, 7)
                          if k * f0 < RATE / 2)
  return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


def chords(progression, step, seconds, transpose=0):
  """Notes [N, 3] of a chord progression repeated every `step` seconds."""
  notes, i = [], 0
  while i * step < seconds:
    notes += [(i * step, p + transpose, step) for p in progression[i % len(progression)]]
    i += 1
  return np.asarray(notes, np.float64)


def melody(pitches, step, seconds):
  n = int(round(seconds / step))
  return np.asarray([(i * step, pitches[i % len(pitches)], step) for i in range(n)])


@pytest.fixture(scope="module")
def clips():
  """Features of named synthetic clips (computed once: the CQT and onsets are the slow part)."""
  scale = [60, 62, 64, 65, 67, 69, 71]
  shuffled = [60, 69, 64, 71, 62, 67, 65]  # The same notes, other order.
  notes = {
      "c_major": chords(C_MAJOR, 0.5, 4.0),
      "c_major_other": chords([[64, 67, 72], [67, 71, 74], [65, 69, 72], [64, 67, 72]],
                              0.5, 4.0),
      "fs_major": chords(C_MAJOR, 0.5, 4.0, transpose=6),
      "c_high": chords(C_MAJOR, 0.5, 4.0, transpose=24),
      "c_low": chords(C_MAJOR, 0.5, 4.0, transpose=-24),
      "fast": melody(scale, 0.25, 4.0),
      "fast_other": melody(scale[::-1], 0.25, 4.0),
      "slow": melody(scale, 1.0, 4.0),
      "scale_up": melody(scale, 0.3, 4.2),
      "scale_up_later": melody(scale[3:] + scale[:3], 0.3, 4.2),
      "scale_shuffled": melody(shuffled, 0.3, 4.2),
  }
  seconds = {k: 4.2 if k.startswith("scale") else 4.0 for k in notes}
  audio = {k: render(v, seconds[k]) for k, v in notes.items()}
  return {"notes": notes, "audio": audio,
          "features": {k: music.audio_features(v) for k, v in audio.items()},
          "seconds": seconds}


def test_key_and_pitch_class_profile_rank_same_key_above_far_key(clips):
  f = clips["features"]
  for measure in (music.pcp_correlation, music.key_agreement, music.chroma_similarity):
    same = measure(f["c_major"], f["c_major_other"])
    far = measure(f["c_major"], f["fs_major"])
    assert same > far + 0.2, (measure.__name__, same, far)
  assert music.pcp_correlation(f["c_major"], f["c_major"]) == pytest.approx(1.0)
  assert music.estimate_key(f["c_major"]) == "C major"
  assert music.estimate_key(f["fs_major"]) == "F# major"


def test_chroma_similarity_sees_harmony_in_time():
  """A held C-D-E-G-B sonority against C and G major chords alternating: close profiles, but
  no window of the alternation sounds like the sonority."""
  held = render(chords([[48, 60, 64, 67, 59, 62, 43]], 1.0, 6.0), 6.0)
  held_again = render(chords([[43, 59, 62, 67, 48, 60, 64]], 1.0, 6.0), 6.0)
  alternating = render(chords([[48, 60, 64, 67], [43, 59, 62, 67]], 1.0, 6.0), 6.0)
  assert music.pcp_correlation(held, alternating) > 0.9
  assert music.chroma_similarity(held, held_again) > 0.99
  assert music.chroma_similarity(held, alternating) < 0.96


def test_onset_rate_consistency_ranks_same_pace_above_other(clips):
  f = clips["features"]
  assert f["fast"].onset_rate == pytest.approx(4.0, abs=0.5)
  assert f["slow"].onset_rate == pytest.approx(1.0, abs=0.3)
  same = music.onset_rate_consistency(f["fast"], f["fast_other"])
  assert same > -0.2
  assert music.onset_rate_consistency(f["fast"], f["slow"]) < same - 1.0  # About -2: 4x.


def test_register_consistency_ranks_same_octave_above_far(clips):
  f = clips["features"]
  assert f["c_low"].mean_pitch < f["c_major"].mean_pitch < f["c_high"].mean_pitch
  same = music.register_consistency(f["c_major"], f["c_major_other"])
  assert same > -3.0
  for far in ("c_low", "c_high"):
    assert music.register_consistency(f["c_major"], f[far]) < same - 10.0


def test_transition_similarity_sees_note_order(clips):
  f = clips["features"]
  assert music.pcp_correlation(f["scale_up"], f["scale_shuffled"]) > 0.9  # Same notes...
  same = music.transition_similarity(f["scale_up"], f["scale_up_later"])
  shuffled = music.transition_similarity(f["scale_up"], f["scale_shuffled"])
  assert same > shuffled + 0.3, (same, shuffled)  # ...other moves.


def test_note_features_agree_with_audio(clips):
  for name in ("c_major", "fs_major", "fast", "scale_up"):
    audio = clips["features"][name]
    notes = music.note_features(clips["notes"][name], 0.0, clips["seconds"][name])
    assert np.corrcoef(audio.pitch_class_profile, notes.pitch_class_profile)[0, 1] > 0.8, name
    assert abs(audio.onset_rate - notes.onset_rate) < 0.6, name
  notes = {k: music.note_features(clips["notes"][k], 0.0, 4.0) for k in ("c_major", "fs_major")}
  assert music.estimate_key(notes["fs_major"]) == "F# major"
  scores = music.structure_measures(notes["c_major"], notes["c_major"])
  assert set(scores) == set(music.MEASURES)
  assert scores["pcp_correlation"] == pytest.approx(1.0)
  assert scores["transition_similarity"] == pytest.approx(1.0)
  assert scores["register_consistency"] == 0.0


@pytest.mark.parametrize("wav, rate, reason", [
    (np.zeros(0, np.float32), RATE, "empty"),
    (np.full(RATE * 2, np.nan, np.float32), RATE, "non-finite"),
    (np.zeros(RATE * 2, np.float32), RATE, "silent"),
    (np.ones(RATE * 2, np.float32) * 0.1, 22050, "bad sample rate"),
    (np.ones(RATE // 4, np.float32) * 0.1, RATE, "too short"),
    (np.ones((2, RATE * 2), np.float32) * 0.1, RATE, "unreadable"),
    ((np.ones(RATE * 2) * 1000).astype(np.int16), RATE, "unreadable"),
])
def test_bad_input_is_one_line(wav, rate, reason):
  good = render(chords(C_MAJOR, 0.5, 2.0), 2.0)
  for call in (lambda: music.audio_features(wav, rate, "clip.wav"),
               lambda: music.pcp_correlation(good, wav, rate),
               lambda: music.structure_measures(wav, good, rate)):
    with pytest.raises(BadAudioError) as err:
      call()
    assert err.value.reason == reason and "\n" not in str(err.value)


def test_note_features_errors():
  notes = chords(C_MAJOR, 0.5, 2.0)
  with pytest.raises(DataError, match="no notes sound"):
    music.note_features(notes, 10.0, 4.0)
  with pytest.raises(DataError, match="shorter than"):
    music.note_features(notes, 0.0, 0.5)
