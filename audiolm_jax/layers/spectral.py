"""Spectral front ends in jnp: STFT, mel filterbank, log-mel spectrogram and MFCC.

Every function is pure jnp and jit-able (sizes such as `n_fft` and `hop` are static Python
ints). Conventions follow librosa so that results can be checked against it:

* `stft` frames `x[t*hop : t*hop + n_fft]`, multiplies by a periodic Hann window of
  `win_length` samples centred in `n_fft`, and takes the real FFT (no normalisation).
* `mel_filterbank` equals `librosa.filters.mel` (Slaney mel scale and Slaney area
  normalisation by default), transposed to `[F, M]`.
* `mfcc` equals `librosa.feature.mfcc` (power in dB, DCT-II with orthonormal scaling).

Shape letters: B batch, S samples, T frames, F frequency bins (n_fft // 2 + 1),
M mel bands, C cepstral coefficients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def hann_window(win_length: int, n_fft: int | None = None) -> np.ndarray:
  """Periodic Hann window of `win_length` samples, zero-padded (centred) to `n_fft`."""
  n_fft = win_length if n_fft is None else n_fft
  if win_length > n_fft:
    raise ValueError(f"win_length={win_length} must be <= n_fft={n_fft}")
  n = np.arange(win_length)
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
  left = (n_fft - win_length) // 2
  return np.pad(window, (left, n_fft - win_length - left))


def num_stft_frames(num_samples: int, n_fft: int, hop: int, center: bool = False) -> int:
  """Frames `stft` returns for `num_samples` samples."""
  if center:
    num_samples += 2 * (n_fft // 2)
  if num_samples < n_fft:
    raise ValueError(f"{num_samples} samples are fewer than one frame of n_fft={n_fft}")
  return 1 + (num_samples - n_fft) // hop


def frame(x: jax.Array, frame_length: int, hop: int) -> jax.Array:
  """Slices `x [B, S]` into overlapping frames `[B, T, frame_length]`."""
  num_frames = num_stft_frames(x.shape[-1], frame_length, hop)
  idx = hop * np.arange(num_frames)[:, None] + np.arange(frame_length)[None, :]  # [T, n_fft]
  return x[..., idx]


def stft(x: jax.Array,
         n_fft: int,
         hop: int,
         win_length: int | None = None,
         center: bool = False,
         pad_mode: str = "constant") -> jax.Array:
  """Short-time Fourier transform with a Hann window.

  Args:
    x: waveform `[B, S]` (or `[S]`).
    n_fft: FFT size.
    hop: hop between frames in samples.
    win_length: Hann window length (default `n_fft`), centred inside `n_fft`.
    center: pad `n_fft // 2` samples on both sides first (as librosa's `center=True`).
    pad_mode: `"constant"` (zeros, librosa's default) or `"reflect"`, used when `center`.

  Returns:
    complex64 `[B, T, F]` with `T = 1 + (S - n_fft) // hop` (S after centre padding) and
    `F = n_fft // 2 + 1`.
  """
  x = jnp.asarray(x, jnp.float32)
  window = hann_window(win_length or n_fft, n_fft).astype(np.float32)
  if center:
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    x = jnp.pad(x, pad, mode=pad_mode)
  frames = frame(x, n_fft, hop) * window  # [B, T, n_fft]
  return jnp.fft.rfft(frames, n=n_fft, axis=-1)  # [B, T, F]


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
  f = np.asarray(f, np.float64)
  if htk:
    return 2595.0 * np.log10(1.0 + f / 700.0)
  f_sp = 200.0 / 3  # Slaney: linear below 1 kHz, logarithmic above.
  min_log_hz = 1000.0
  min_log_mel = min_log_hz / f_sp
  logstep = np.log(6.4) / 27.0
  return np.where(f >= min_log_hz,
                  min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                  f / f_sp)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
  m = np.asarray(m, np.float64)
  if htk:
    return 700.0 * (10.0**(m / 2595.0) - 1.0)
  f_sp = 200.0 / 3
  min_log_hz = 1000.0
  min_log_mel = min_log_hz / f_sp
  logstep = np.log(6.4) / 27.0
  return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=32)
def _mel_filterbank_np(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm):
  fmax = sample_rate / 2.0 if fmax is None else float(fmax)
  fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # [F]
  mel_edges = _mel_to_hz(
      np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)  # [M + 2]
  fdiff = np.diff(mel_edges)
  ramps = mel_edges[:, None] - fft_freqs[None, :]  # [M + 2, F]
  lower = -ramps[:-2] / fdiff[:-1, None]
  upper = ramps[2:] / fdiff[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper))  # [M, F]
  if norm == "slaney":
    weights *= (2.0 / (mel_edges[2:] - mel_edges[:-2]))[:, None]
  elif norm is not None:
    raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
  out = weights.T.astype(np.float32)  # [F, M]
  out.setflags(write=False)
  return out


def mel_filterbank(sample_rate: int,
                   n_fft: int,
                   n_mels: int,
                   fmin: float = 0.0,
                   fmax: float | None = None,
                   htk: bool = False,
                   norm: str | None = "slaney") -> np.ndarray:
  """Triangular mel filters `[F, M]`, equal to `librosa.filters.mel(...).T`.

  A numpy constant (computed once per argument set), so it folds into jitted code.
  """
  return _mel_filterbank_np(int(sample_rate), int(n_fft), int(n_mels), float(fmin),
                            None if fmax is None else float(fmax), bool(htk), norm)


def mel_spectrogram(wav: jax.Array,
                    sample_rate: int = 16000,
                    n_fft: int = 400,
                    hop: int = 160,
                    n_mels: int = 80,
                    win_length: int | None = None,
                    fmin: float = 0.0,
                    fmax: float | None = None,
                    power: float = 2.0,
                    center: bool = False) -> jax.Array:
  """Mel spectrogram `[B, T, M]` of `|stft|**power` (librosa's `melspectrogram`)."""
  spec = jnp.abs(stft(wav, n_fft, hop, win_length, center=center))**power  # [B, T, F]
  fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
  return jnp.einsum("...tf,fm->...tm", spec, fb, precision=jax.lax.Precision.HIGHEST)


def log_mel_spectrogram(wav: jax.Array,
                        sample_rate: int = 16000,
                        n_fft: int = 400,
                        hop: int = 160,
                        n_mels: int = 80,
                        win_length: int | None = None,
                        fmin: float = 0.0,
                        fmax: float | None = None,
                        center: bool = False,
                        floor: float = 1e-6) -> jax.Array:
  """Natural log of the power mel spectrogram, floored at `floor`: `[B, T, M]`.

  Defaults are the w2v-BERT front end: 25 ms windows, 10 ms hop, 80 bands at 16 kHz.
  """
  mel = mel_spectrogram(wav, sample_rate, n_fft, hop, n_mels, win_length, fmin, fmax,
                        power=2.0, center=center)
  return jnp.log(jnp.maximum(mel, floor))


def power_to_db(spec: jax.Array,
                amin: float = 1e-10,
                top_db: float | None = 80.0,
                axes: tuple[int, ...] = (-2, -1)) -> jax.Array:
  """`10 log10(spec)` as librosa's `power_to_db(ref=1.0)`; `top_db` clips per example.

  The clip floor is `max - top_db` with the maximum taken over `axes` (per example, so a
  batch gives the same result as its clips one by one).
  """
  db = 10.0 * jnp.log10(jnp.maximum(spec, amin))
  if top_db is not None:
    db = jnp.maximum(db, jnp.max(db, axis=axes, keepdims=True) - top_db)
  return db


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Orthonormal DCT-II matrix `[n_in, n_out]` (scipy's `dct(type=2, norm='ortho')`)."""
  n = np.arange(n_in)[:, None]
  k = np.arange(n_out)[None, :]
  mat = np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in)) * np.sqrt(2.0 / n_in)
  mat[:, 0] *= np.sqrt(0.5)
  return mat.astype(np.float32)


def mfcc(wav: jax.Array,
         sample_rate: int = 16000,
         n_mfcc: int = 13,
         n_fft: int = 400,
         hop: int = 160,
         n_mels: int = 40,
         win_length: int | None = None,
         fmin: float = 0.0,
         fmax: float | None = None,
         center: bool = False,
         top_db: float | None = 80.0) -> jax.Array:
  """Mel-frequency cepstral coefficients `[B, T, C]` as `librosa.feature.mfcc`.

  Power mel spectrogram -> dB (`top_db` clipping per example) -> orthonormal DCT-II over the
  mel axis, first `n_mfcc` coefficients.
  """
  mel = mel_spectrogram(wav, sample_rate, n_fft, hop, n_mels, win_length, fmin, fmax,
                        power=2.0, center=center)  # [B, T, M]
  db = power_to_db(mel, top_db=top_db)
  return jnp.einsum("...tm,mc->...tc", db, dct_matrix(n_mels, n_mfcc),
                    precision=jax.lax.Precision.HIGHEST)  # [B, T, C]


# White noise at this amplitude (about -100 dBFS) sets the absolute part of the log floor.
ABSOLUTE_FLOOR_AMPLITUDE = 1e-5


@functools.lru_cache(maxsize=64)
def absolute_mel_floor(sample_rate: int, n_fft: int, n_mels: int) -> float:
  """Mean magnitude mel value of white noise at `ABSOLUTE_FLOOR_AMPLITUDE` (its expected
  value with a Hann window: sigma * sqrt(pi / 4 * sum w^2) per FFT bin, through the Slaney
  filterbank). Keeps the log of a silent reference finite."""
  window_energy = 3.0 * n_fft / 8.0                               # sum of a Hann window^2
  per_bin = ABSOLUTE_FLOOR_AMPLITUDE * np.sqrt(np.pi / 4.0 * window_energy)
  return float(per_bin * np.mean(mel_filterbank(sample_rate, n_fft, n_mels).sum(0)))


def relative_log_floor(reference_mel: jax.Array, relative: float,
                       absolute: float) -> jax.Array:
  """The floor added before the log of a mel spectrogram: `relative` times the mean of each
  example's reference spectrogram, plus `absolute`.

  reference_mel [B, T, M] -> [B, 1, 1], without gradient: the floor is a property of the
  reference, so it follows the signal's own level, whatever the filterbank normalisation
  or the clip's gain.
  """
  mean = jnp.mean(jax.lax.stop_gradient(reference_mel), axis=(-2, -1), keepdims=True)
  return relative * mean + absolute


def magnitude_mel(x: jax.Array, sample_rate: int, n_fft: int, hop: int,
                  n_mels: int) -> jax.Array:
  """Magnitude mel spectrogram `[B, T, M]`: centred STFT (zero padding), Slaney filters."""
  return mel_spectrogram(x, sample_rate, n_fft, hop, n_mels, power=1.0, center=True)


def log_mel_distance(reference: jax.Array, estimate: jax.Array, sample_rate: int = 16000,
                     n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
                     relative_floor: float = 1e-3) -> jax.Array:
  """Mean |log10(S + f) - log10(S' + f)| of magnitude mel spectrograms, per example [B].

  `f = relative_log_floor(S, relative_floor, absolute_mel_floor(...))`: bins more than 60 dB
  below the reference's mean level count as that floor. 1.0 is a mean error of 20 dB.
  """
  m = magnitude_mel(reference, sample_rate, n_fft, hop, n_mels)                  # [B, T, M]
  m_hat = magnitude_mel(estimate, sample_rate, n_fft, hop, n_mels)
  floor = relative_log_floor(m, relative_floor, absolute_mel_floor(sample_rate, n_fft, n_mels))
  return jnp.mean(jnp.abs(jnp.log10(m + floor) - jnp.log10(m_hat + floor)), axis=(-2, -1))
