"""Audio I/O and the checks every clip passes at the door.

`load_audio` reads wav/flac/ogg/mp3 (soundfile, falling back to librosa/audioread), mixes to
mono, resamples to the target rate and returns float32 samples in [-1, 1]. `check_audio` raises
one error type, `BadAudioError(path, reason, detail)`, whose `reason` is one of `REASONS`, so a
corpus build or a long run can count bad files by reason and go on.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import warnings

import numpy as np
import soundfile as sf

from audiolm_jax import paths
from audiolm_jax.errors import BadAudioError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif")

# Every reason `check_audio` / `load_audio` can give.
REASONS = (
    "missing",          # no such file
    "unreadable",       # not audio, or a codec/container error
    "truncated",        # the container promises more samples than the file holds
    "bad sample rate",  # a sample rate no real recording has
    "empty",            # zero samples
    "non-finite",       # NaN or inf samples
    "too short",        # shorter than `min_seconds`
    "too long",         # longer than `max_seconds`
    "silent",           # RMS below `silence_db` (dBFS) everywhere
    "constant",         # no variation: a DC offset (or a stuck converter) with no signal on it
)


@dataclasses.dataclass(frozen=True)
class AudioChecks:
  """What a clip must satisfy to be used. Defaults suit speech and music corpora."""
  min_seconds: float = 0.25      # Shorter clips carry no usable content.
  max_seconds: float = 4 * 3600.0  # Longer is almost surely a broken header or wrong file.
  silence_db: float = -60.0      # A clip whose RMS is below this (dBFS) is "silent".
  min_sample_rate: int = 4000    # Rates outside [min, max] are reported as bad.
  max_sample_rate: int = 384000

  def __post_init__(self):
    if not 0 <= self.min_seconds < self.max_seconds:
      raise ValueError(f"need 0 <= min_seconds < max_seconds, got {self.min_seconds}, "
                       f"{self.max_seconds}")


def rms_db(wav: np.ndarray) -> float:
  """Root-mean-square level in dBFS (-inf for digital silence)."""
  if wav.size == 0:
    return float("-inf")
  rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
  return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def check_audio(wav: np.ndarray, sample_rate: int, path: str = "<array>",
                checks: AudioChecks = AudioChecks()) -> np.ndarray:
  """Raises `BadAudioError` if `wav` ([S] mono) fails a check; returns it unchanged otherwise."""
  if not checks.min_sample_rate <= sample_rate <= checks.max_sample_rate:
    raise BadAudioError(path, "bad sample rate",
                        f"{sample_rate} Hz is outside [{checks.min_sample_rate}, "
                        f"{checks.max_sample_rate}]")
  if wav.ndim != 1:
    raise BadAudioError(path, "unreadable", f"expected mono samples [S], got shape {wav.shape}")
  if wav.size == 0:
    raise BadAudioError(path, "empty", "the file holds no samples")
  if not np.all(np.isfinite(wav)):
    bad = int(np.size(wav) - np.count_nonzero(np.isfinite(wav)))
    raise BadAudioError(path, "non-finite", f"{bad} of {wav.size} samples are NaN or inf")
  seconds = wav.size / sample_rate
  if seconds < checks.min_seconds:
    raise BadAudioError(path, "too short", f"{seconds:.3f} s < {checks.min_seconds} s")
  if seconds > checks.max_seconds:
    raise BadAudioError(path, "too long", f"{seconds:.0f} s > {checks.max_seconds:.0f} s")
  level = rms_db(wav)
  if level < checks.silence_db:
    raise BadAudioError(path, "silent", f"RMS {level:.1f} dBFS < {checks.silence_db} dBFS")
  ac_level = rms_db(wav - np.mean(wav, dtype=np.float64))
  if ac_level < checks.silence_db:
    raise BadAudioError(path, "constant",
                        f"a DC offset of {float(np.mean(wav)):+.3f} with {ac_level:.1f} dBFS of "
                        f"signal on it (< {checks.silence_db} dBFS)")
  return wav


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
  """Band-limited resampling of [S] (soxr, high quality), `ceil(S * target / orig)` samples
  out (as librosa's `soxr_hq`, without importing librosa and numba); a no-op when the rates
  match."""
  if orig_rate == target_rate:
    return wav
  import soxr  # pylint: disable=g-import-not-at-top
  wav = np.asarray(wav)
  n = int(np.ceil(wav.shape[-1] * float(target_rate) / orig_rate))
  out = soxr.resample(wav, orig_rate, target_rate, quality="HQ").astype(np.float32)
  if out.shape[-1] >= n:
    return out[:n]
  return np.pad(out, (0, n - out.shape[-1]))


def _wav_data_shortfall(path: str) -> int:
  """Bytes the RIFF `data` chunk promises beyond the end of the file (0 if whole / not WAV).

  libsndfile quietly reads a truncated WAV up to where the bytes stop; the header tells.
  """
  import struct
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
      return 0
    fmt = "<I" if head[:4] == b"RIFF" else ">I"
    pos = 12
    while pos + 8 <= size:
      f.seek(pos)
      chunk_id, chunk_len = f.read(4), struct.unpack(fmt, f.read(4))[0]
      if chunk_id == b"data":
        if chunk_len in (0, 0xFFFFFFFF):  # Streaming writers leave the size open.
          return 0
        return max(0, pos + 8 + chunk_len - size)
      pos += 8 + chunk_len + (chunk_len & 1)
  return 0


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
  missing = _wav_data_shortfall(path)
  if missing:
    raise BadAudioError(path, "truncated", f"the header promises {missing} more bytes of "
                        "samples than the file holds")
  with sf.SoundFile(path) as f:
    expected = f.frames
    data = f.read(dtype="float32", always_2d=True)
    rate = f.samplerate
  if expected > 0 and data.shape[0] < expected:
    raise BadAudioError(path, "truncated",
                        f"header promises {expected} samples, file holds {data.shape[0]}")
  return data, rate


def _read_librosa(path: str) -> tuple[np.ndarray, int]:
  import librosa
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    data, rate = librosa.load(path, sr=None, mono=False)
  data = np.asarray(data, np.float32)
  data = data[:, None] if data.ndim == 1 else data.T  # [S, C]
  return data, int(rate)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """Reads a file as float32 [S, C] at its own rate; errors are `BadAudioError`."""
  path = os.fspath(path)
  if paths.is_remote(path):
    raise BadAudioError(path, "unreadable", "audio is read from local files only; copy it to "
                        "a local disk first")
  if not os.path.exists(path):
    raise BadAudioError(path, "missing", "no such file")
  if os.path.getsize(path) == 0:
    raise BadAudioError(path, "empty", "the file has zero bytes")
  try:
    return _read_soundfile(path)
  except BadAudioError:
    raise
  except Exception as sf_error:  # soundfile knows no such container: try audioread/ffmpeg.
    try:
      return _read_librosa(path)
    except Exception as e:
      raise BadAudioError(path, "unreadable",
                          f"{type(sf_error).__name__}: {sf_error}; fallback: {type(e).__name__}"
                          ) from e


STREAM_SECONDS = 60.0   # Files longer than this are read and resampled block by block.
_BLOCK_SECONDS = 10.0


def _stream_resampled(path: str, sample_rate: int, checks: AudioChecks | None
                      ) -> np.ndarray | None:
  """A long file read block by block, mixed to mono and resampled as it streams (memory: the
  output plus a block, not the file at its own rate and channels). None when the file is not
  long, is at `sample_rate` already, or soundfile cannot read it."""
  import soxr  # pylint: disable=g-import-not-at-top
  try:
    f = sf.SoundFile(path)
  except Exception:  # Not for soundfile: the whole-file path reports it.
    return None
  with f:
    rate, expected = f.samplerate, f.frames
    if rate == sample_rate or expected < STREAM_SECONDS * rate or _wav_data_shortfall(path):
      return None
    if checks is not None and not checks.min_sample_rate <= rate <= checks.max_sample_rate:
      raise BadAudioError(path, "bad sample rate", f"{rate} Hz is outside "
                          f"[{checks.min_sample_rate}, {checks.max_sample_rate}]")
    if checks is not None and expected / rate > checks.max_seconds:
      raise BadAudioError(path, "too long",
                          f"{expected / rate:.0f} s > {checks.max_seconds:.0f} s")
    stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
    out = np.empty(int(np.ceil(expected * sample_rate / rate)) + 16, np.float32)
    n, read, peak = 0, 0, 0.0
    for block in f.blocks(blocksize=int(_BLOCK_SECONDS * rate), dtype="float32",
                          always_2d=True):
      mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
      if not np.all(np.isfinite(mono)):
        raise BadAudioError(path, "non-finite", "NaN or inf samples")
      read += len(mono)
      peak = max(peak, float(np.max(np.abs(mono))) if mono.size else 0.0)
      y = stream.resample_chunk(mono, last=read >= expected)
      out[n:n + len(y)] = y
      n += len(y)
    if read < expected:
      raise BadAudioError(path, "truncated", f"header promises {expected} samples, file "
                          f"holds {read}")
  wav = out[:n]
  if peak > 1.0:
    log.warning("%s: samples peak at %.3g, above full scale; scaled by 1/%.3g (not clipped)",
                path, peak, peak)
    wav /= peak
  return np.clip(wav, -1.0, 1.0, out=wav)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, *,
               checks: AudioChecks | None = AudioChecks()) -> np.ndarray:
  """Reads `path`, mixes to mono, resamples to `sample_rate`: float32 [S] in [-1, 1].

  A float file peaking above full scale is scaled down to it, with a warning (clipping would
  distort it). Files longer than `STREAM_SECONDS` that need resampling are streamed: read,
  mixed and resampled block by block.

  Args:
    path: a wav/flac/ogg/mp3 (or anything libsndfile or audioread can read).
    sample_rate: the rate of the returned samples.
    checks: the checks to apply (on the file's own rate, then after resampling); None
      skips them.

  Raises:
    BadAudioError: naming the path and one of `REASONS`.
  """
  path = os.fspath(path)
  if os.path.isfile(path) and os.path.getsize(path) > 0:
    streamed = _stream_resampled(path, sample_rate, checks)
    if streamed is not None:
      if checks is not None:
        check_audio(streamed, sample_rate, path, checks)
      return streamed
  data, rate = read_audio(path)
  if checks is not None:
    if not checks.min_sample_rate <= rate <= checks.max_sample_rate:
      raise BadAudioError(path, "bad sample rate",
                          f"{rate} Hz is outside [{checks.min_sample_rate}, "
                          f"{checks.max_sample_rate}]")
    if data.size and not np.all(np.isfinite(data)):
      check_audio(data.mean(axis=1), rate, path, checks)  # Reports "non-finite".
  wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  peak = float(np.max(np.abs(wav))) if wav.size else 0.0
  if peak > 1.0 and np.isfinite(peak):  # Float files can exceed full scale; PCM cannot.
    log.warning("%s: samples peak at %.3g, above full scale; scaled by 1/%.3g (not clipped)",
                path, peak, peak)
    wav = wav / peak
  # Only the resampler's overshoot of at most a few percent is clipped.
  wav = np.clip(resample(wav.astype(np.float32), rate, sample_rate), -1.0, 1.0)
  if checks is not None:
    check_audio(wav, sample_rate, path, checks)
  return wav


def write_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = 16000) -> None:
  """Writes float samples [S] (or [S, C]) as 16-bit PCM wav, clipping to [-1, 1], to a local
  path or a URI (`gs://...`)."""
  wav = np.asarray(wav, np.float32)
  if not np.all(np.isfinite(wav)):
    raise BadAudioError(os.fspath(path), "non-finite", "refusing to write NaN/inf samples")
  if paths.is_remote(path):  # libsndfile seeks back to finish the header: write in memory.
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    paths.resolve(path).write_bytes(buffer.getvalue())
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  sf.write(os.fspath(path), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")


def to_int16(wav: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> int16 PCM (how corpora store audio: half the bytes of float32)."""
  return np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_int16(pcm: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 in [-1, 1]."""
  return pcm.astype(np.float32) / 32767.0
