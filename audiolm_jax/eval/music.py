"""Music-structure measures: does a continuation keep the key, harmony, pace and register of a
reference (the prompt, or the true continuation)?

Every measure compares two clips and is "higher = more alike":

| measure | what it compares | range |
| --- | --- | --- |
| `pcp_correlation` | time-averaged chroma (pitch-class profiles), Pearson | -1..1 |
| `key_agreement` | Krumhansl-Kessler scores of the 24 keys, Pearson | -1..1 |
| `chroma_similarity` | 1 s chroma windows of the continuation: best match in the reference | 0..1 |
| `onset_rate_consistency` | onsets per second, minus abs log2 ratio (-1: twice or half) | <= 0 |
| `register_consistency` | CQT-power-weighted mean pitch, minus abs difference in semitones | <= 0 |
| `transition_similarity` | pitch-class transition histograms between onsets, intersection | 0..1 |

Clips go in as 16 kHz mono float waveforms [S] (checked at the door: a one-line
`BadAudioError` for empty, non-finite, silent or wrong-rate input) or as `MusicFeatures`
already computed, from audio (`audio_features`) or from MIDI notes (`note_features`: the same
measures on the score, to validate the audio ones). `structure_measures` computes them all.

Features of a clip: a constant-Q transform from MIDI 24 (C1) to 107 (B7), three bins per
semitone (librosa, tuning fixed at A440, hop 512 samples = 32 ms), the largest magnitude of
each semitone's three bins kept (a third of a semitone of mistuning is tolerated): `S` [P, T].
With one bin per semitone the filters are so wide that a note shows half its level in its
neighbours, and the chroma of C major and F# major came out nearly alike. Frames below
-40 dB of the loudest frame are "silent" and left out of every statistic. Chroma [12, T] is `S`
folded over octaves and scaled to a maximum of 1 per frame. Onsets come from librosa's
spectral-flux onset detector on the same hop.

Shape letters: S samples, T frames, P semitone bins (84), C pitch classes (12), W windows.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from audiolm_jax.data.audio import AudioChecks, check_audio
from audiolm_jax.errors import BadAudioError, DataError
from audiolm_jax.frames import SAMPLE_RATE

HOP = 512                # Samples per analysis frame (32 ms at 16 kHz).
LOWEST_MIDI = 24         # C1: the lowest CQT bin (the piano's A0 = 21 is barely used).
N_PITCHES = 84           # 7 octaves, up to B7 (3951 Hz, below the 8 kHz Nyquist).
BINS_PER_SEMITONE = 3    # Narrow filters: at 1 bin per semitone, neighbours leak in by half.
SILENCE_DB = -40.0       # Frames this far below the loudest frame are left out.
WINDOW_S, WINDOW_HOP_S = 1.0, 0.5  # Chroma windows of `chroma_similarity`.
MIN_SECONDS = 1.0        # Shorter clips hold too few frames and onsets to say anything.

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclasses.dataclass(frozen=True)
class MusicFeatures:
  """What every measure reads from one clip (audio or notes), at `HOP` samples per frame."""
  chroma: np.ndarray      # [C=12, T] >= 0, max 1 per sounding frame, 0 in silent frames.
  active: np.ndarray      # [T] bool: the frame sounds (above `SILENCE_DB`).
  onsets: np.ndarray      # [N] int frame indices of note onsets, ascending.
  mean_pitch: float       # CQT-power- (audio) or duration- (notes) weighted mean MIDI pitch.
  seconds: float          # Length of the clip.

  @property
  def onset_rate(self) -> float:
    """Onsets per second."""
    return len(self.onsets) / self.seconds

  @property
  def pitch_class_profile(self) -> np.ndarray:
    """[12] mean chroma over sounding frames, summing to 1."""
    pcp = self.chroma[:, self.active].mean(axis=1)
    return pcp / max(pcp.sum(), 1e-12)


def frame_rate(sample_rate: int = SAMPLE_RATE) -> float:
  return sample_rate / HOP


def check_clip(wav, sample_rate: int, name: str = "<array>") -> np.ndarray:
  """The clip as float32 [S]; one-line `BadAudioError` if it is not 16 kHz mono, at least
  `MIN_SECONDS` long, finite and above -60 dBFS."""
  if sample_rate != SAMPLE_RATE:
    raise BadAudioError(name, "bad sample rate",
                        f"music measures expect {SAMPLE_RATE} Hz, got {sample_rate}: resample "
                        "first")
  wav = np.asarray(wav)
  if wav.dtype.kind != "f":
    raise BadAudioError(name, "unreadable", f"expected a float waveform in [-1, 1], got "
                        f"{wav.dtype} (int16 PCM: use data.audio.from_int16)")
  wav = wav.astype(np.float32)
  return check_audio(wav, sample_rate, name, AudioChecks(min_seconds=MIN_SECONDS))


def audio_features(wav, sample_rate: int = SAMPLE_RATE, name: str = "<array>"
                   ) -> MusicFeatures:
  """`MusicFeatures` of a 16 kHz mono waveform [S] (checked: see `check_clip`)."""
  import librosa  # pylint: disable=g-import-not-at-top
  wav = check_clip(wav, sample_rate, name)
  with warnings.catch_warnings():  # Clips under ~2 s: the C1 octave's frames are padded.
    warnings.filterwarnings("ignore", message="n_fft=.* is too large")
    cqt = np.abs(librosa.cqt(wav, sr=sample_rate, hop_length=HOP,
                             fmin=librosa.midi_to_hz(LOWEST_MIDI - 1 / BINS_PER_SEMITONE),
                             n_bins=N_PITCHES * BINS_PER_SEMITONE,
                             bins_per_octave=12 * BINS_PER_SEMITONE, tuning=0.0))  # [P * 3, T]
  spec = cqt.reshape(N_PITCHES, BINS_PER_SEMITONE, -1).max(axis=1)  # [P, T]
  energy = spec.sum(axis=0)  # [T]
  active = energy > energy.max() * 10 ** (SILENCE_DB / 20)
  chroma = spec.reshape(N_PITCHES // 12, 12, -1).sum(axis=0)  # [C, T]; bin p is pitch class p.
  chroma = np.where(active, chroma / np.maximum(chroma.max(axis=0), 1e-12), 0.0)
  pitches = LOWEST_MIDI + np.arange(N_PITCHES)
  # Power, not magnitude: over 156 held-out piano segments its mean pitch follows the notes'
  # better (r 0.79 against 0.64; per-frame-normalised or log weights did worse).
  weights = spec[:, active] ** 2
  mean_pitch = float((pitches[:, None] * weights).sum() / weights.sum())
  # librosa's peak-picking windows are given in frames at 22.05 kHz / 512; at 16 kHz they round
  # to 0 and a chord gives two onsets a frame apart: at least one frame each side, 64 ms apart.
  onsets = librosa.onset.onset_detect(y=wav, sr=sample_rate, hop_length=HOP, units="frames",
                                      pre_max=1, post_max=2, pre_avg=3, post_avg=4, wait=2,
                                      delta=0.07)
  return MusicFeatures(chroma=chroma.astype(np.float32), active=active,
                       onsets=np.asarray(onsets, np.int64), mean_pitch=mean_pitch,
                       seconds=wav.size / sample_rate)


def note_features(notes, start: float, seconds: float, sample_rate: int = SAMPLE_RATE
                  ) -> MusicFeatures:
  """`MusicFeatures` of the notes sounding in [start, start + seconds) of a score.

  `notes` [N, 3] = (onset s, MIDI pitch, duration s), as the `synthetic_piano` corpus keeps
  them. Chroma is the binary piano roll folded over octaves (no partials, no decay); the mean
  pitch is weighted by the time each note sounds inside the window; onsets are distinct note
  starts inside it (starts within one frame count once).
  """
  notes = np.asarray(notes, np.float64).reshape(-1, 3)
  if seconds < MIN_SECONDS:
    raise DataError(f"note window of {seconds:.3f} s is shorter than {MIN_SECONDS} s")
  end = start + seconds
  on, off = notes[:, 0], notes[:, 0] + notes[:, 2]
  keep = (on < end) & (off > start)
  if not keep.any():
    raise DataError(f"no notes sound in [{start:.2f}, {end:.2f}) s")
  rate = frame_rate(sample_rate)
  n_frames = int(np.ceil(seconds * rate))
  chroma = np.zeros((12, n_frames), np.float32)
  pitch_sum = weight_sum = 0.0
  for t0, pitch, t1 in zip(on[keep] - start, notes[keep, 1], off[keep] - start):
    a, b = max(0, int(round(t0 * rate))), min(n_frames, max(int(round(t1 * rate)), 0) + 1)
    chroma[int(pitch) % 12, a:b] = 1.0
    sounding = min(t1, seconds) - max(t0, 0.0)
    pitch_sum, weight_sum = pitch_sum + pitch * sounding, weight_sum + sounding
  active = chroma.max(axis=0) > 0
  starts = on[(on >= start) & (on < end)] - start
  onsets = np.unique(np.round(starts * rate).astype(np.int64))
  return MusicFeatures(chroma=chroma, active=active, onsets=onsets,
                       mean_pitch=pitch_sum / max(weight_sum, 1e-12), seconds=seconds)


def _features(clip, sample_rate: int, name: str) -> MusicFeatures:
  if isinstance(clip, MusicFeatures):
    return clip
  return audio_features(clip, sample_rate, name)


def _pair(reference, continuation, sample_rate):
  return (_features(reference, sample_rate, "reference"),
          _features(continuation, sample_rate, "continuation"))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / denom) if denom > 0 else 0.0


# ----------------------------------------------------------------------------- key


def key_scores(clip, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """[24] Pearson correlation of the clip's pitch-class profile with the Krumhansl-Kessler
  profile of each key: C..B major, then C..B minor."""
  pcp = _features(clip, sample_rate, "clip").pitch_class_profile
  return np.array([_pearson(pcp, np.roll(profile, tonic))
                   for profile in (KK_MAJOR, KK_MINOR) for tonic in range(12)])


def estimate_key(clip, sample_rate: int = SAMPLE_RATE) -> str:
  """The best-scoring key, e.g. "G major" or "F# minor"."""
  best = int(np.argmax(key_scores(clip, sample_rate)))
  return f"{PITCH_CLASSES[best % 12]} {'major' if best < 12 else 'minor'}"


def pcp_correlation(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """Pearson correlation of the two time-averaged chroma vectors (pitch-class profiles):
  1 when the same pitch classes are used in the same proportions."""
  ref, cont = _pair(reference, continuation, sample_rate)
  return _pearson(ref.pitch_class_profile, cont.pitch_class_profile)


def key_agreement(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """Pearson correlation of the two clips' 24 Krumhansl-Kessler key scores: 1 when both
  clips lean towards the same keys (relative and neighbouring keys count partly), lower when
  the continuation modulates far or loses the key. Smoother than `pcp_correlation`: a
  different voicing of the same key barely moves it."""
  ref, cont = _pair(reference, continuation, sample_rate)
  return _pearson(key_scores(ref), key_scores(cont))


# ----------------------------------------------------------------------------- chroma in time


def chroma_windows(features: MusicFeatures, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """[W, 12] unit-norm mean chroma of `WINDOW_S` windows every `WINDOW_HOP_S` (sounding
  frames only; windows with none are dropped; a clip shorter than a window is one window)."""
  rate = frame_rate(sample_rate)
  size, hop = max(1, int(round(WINDOW_S * rate))), max(1, int(round(WINDOW_HOP_S * rate)))
  n_frames = features.chroma.shape[1]
  out = []
  for a in range(0, max(1, n_frames - size + 1), hop):
    mask = features.active[a:a + size]
    if mask.any():
      v = features.chroma[:, a:a + size][:, mask].mean(axis=1)  # [C]
      out.append(v / max(np.linalg.norm(v), 1e-12))
  return np.asarray(out, np.float64).reshape(-1, 12)  # [W, C]


def chroma_similarity(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """Mean over the continuation's 1 s chroma windows of the cosine to its best-matching
  window of the reference.

  A prompt and its continuation are different stretches of time, so there is no frame-to-frame
  correspondence to score, and dynamic time warping would force a monotone alignment that
  music need not follow (a continuation may return to the prompt's chords in any order).
  Nearest-window matching asks instead whether every moment of the continuation sounds like
  some moment of the reference: the local harmonic vocabulary in time, which the global
  profile of `pcp_correlation` averages away (a reference holding C, D, E, G and B as one
  sonority and a continuation alternating C and G major chords have close profiles, but no
  window of the continuation sounds like the sonority). Asymmetric on purpose: a continuation
  need not revisit every harmony of its prompt.
  """
  ref, cont = _pair(reference, continuation, sample_rate)
  r, c = chroma_windows(ref, sample_rate), chroma_windows(cont, sample_rate)  # [W, C]
  return float((c @ r.T).max(axis=1).mean())


# ----------------------------------------------------------------------------- onsets, register


def onset_rate_consistency(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """-|log2(onset rate of the continuation / of the reference)|: 0 at the same number of
  onsets per second, -1 at twice or half as many. A clip without onsets counts 0.25 per
  second (one onset in the shortest clip), so the figure stays finite."""
  ref, cont = _pair(reference, continuation, sample_rate)
  floor = 1.0 / (4 * MIN_SECONDS)
  return -abs(float(np.log2(max(cont.onset_rate, floor) / max(ref.onset_rate, floor))))


def register_consistency(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """-|difference of mean pitch| in semitones: 0 in the same register, -12 an octave apart.
  From audio the mean pitch is the CQT-power-weighted mean MIDI pitch (its offset from the
  notes' mean, from partials and the piano's spectrum, is alike in both clips)."""
  ref, cont = _pair(reference, continuation, sample_rate)
  return -abs(cont.mean_pitch - ref.mean_pitch)


# ----------------------------------------------------------------------------- note-level proxy


def transition_histogram(features: MusicFeatures, peak: float = 0.5) -> np.ndarray:
  """[12, 12] pitch-class transition histogram between consecutive onsets, summing to 1.

  The clip is cut at its onsets into segments (the stretch before the first onset is one
  too); each segment's mean chroma, scaled to a maximum of 1, keeps the pitch classes at or
  above `peak` as the notes it sounds. Between consecutive segments every pair (pitch class of
  the earlier, pitch class of the later) gets an equal share of one count, so each step between
  note events weighs the same however many notes it holds. A transcription-free stand-in for a
  note bigram: it sees both which pitch classes are used (like the profile) and in what order
  they follow one another (unlike it), e.g. a scale going up against the same notes shuffled.
  """
  bounds = np.unique(np.concatenate([[0], features.onsets, [features.chroma.shape[1]]]))
  sets = []
  for a, b in zip(bounds[:-1], bounds[1:]):
    mask = features.active[a:b]
    if not mask.any():
      continue
    v = features.chroma[:, a:b][:, mask].mean(axis=1)  # [C]
    sets.append(np.flatnonzero(v >= peak * v.max()))
  hist = np.zeros((12, 12))
  for prev, nxt in zip(sets[:-1], sets[1:]):
    hist[np.ix_(prev, nxt)] += 1.0 / (len(prev) * len(nxt))
  total = hist.sum()
  return hist / total if total > 0 else hist


def transition_similarity(reference, continuation, sample_rate: int = SAMPLE_RATE) -> float:
  """Histogram intersection of the two clips' `transition_histogram`s: the share of
  pitch-class transitions the two have in common (1: the same moves in the same proportions;
  0 when either clip has fewer than two note events)."""
  ref, cont = _pair(reference, continuation, sample_rate)
  return float(np.minimum(transition_histogram(ref), transition_histogram(cont)).sum())


MEASURES = {
    "pcp_correlation": pcp_correlation,
    "key_agreement": key_agreement,
    "chroma_similarity": chroma_similarity,
    "onset_rate_consistency": onset_rate_consistency,
    "register_consistency": register_consistency,
    "transition_similarity": transition_similarity,
}


def structure_measures(reference, continuation, sample_rate: int = SAMPLE_RATE
                       ) -> dict[str, float]:
  """Every measure of `MEASURES` for one pair (features computed once per clip)."""
  ref, cont = _pair(reference, continuation, sample_rate)
  return {name: fn(ref, cont, sample_rate) for name, fn in MEASURES.items()}
