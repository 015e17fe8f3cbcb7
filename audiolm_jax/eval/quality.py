"""Signal quality of decoded audio against the original: mel distance, SI-SNR, PESQ, STOI.

All functions take float waveforms [S] at 16 kHz (PESQ wide band needs 16 kHz) and return
Python floats; `quality_metrics` computes them all for one pair.
"""

from __future__ import annotations

import numpy as np

from audiolm_jax.errors import require_extra


def si_snr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
  """Scale-invariant signal-to-noise ratio in dB (higher is better)."""
  n = min(reference.size, estimate.size)
  ref = reference[:n].astype(np.float64) - np.mean(reference[:n])
  est = estimate[:n].astype(np.float64) - np.mean(estimate[:n])
  target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
  noise = est - target
  return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 16000,
                 n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> float:
  """Mean |log10 mel difference| (`layers.spectral.log_mel_distance`; 1.0 = 20 dB).

  The log is floored 60 dB below the reference's mean mel level, as the codec's training loss
  does, so near-silent bins do not rule the figure (an absolute floor of 1e-5 on Slaney mel
  magnitudes, which sit near 1e-3 for speech, ranked an inaudible noise floor with a phase
  scramble). The codec's periodic evaluation logs the same figure.
  """
  from audiolm_jax.layers.spectral import log_mel_distance
  n = min(reference.size, estimate.size)
  pair = [np.asarray(x[:n], np.float32)[None] for x in (reference, estimate)]
  return float(log_mel_distance(*pair, sample_rate=sample_rate, n_fft=n_fft, hop=hop,
                                n_mels=n_mels)[0])


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 16000) -> float:
  """Wide-band PESQ (ITU-T P.862.2), -0.5..4.64; NaN when the clip has no detectable speech."""
  require_extra("eval", "PESQ")
  from pesq import NoUtterancesError, pesq
  n = min(reference.size, estimate.size)
  try:
    return float(pesq(sample_rate, reference[:n].astype(np.float32),
                      estimate[:n].astype(np.float32), "wb"))
  except (NoUtterancesError, ValueError):  # ValueError: silence or NaN inside the library.
    return float("nan")


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 16000) -> float:
  """Short-time objective intelligibility, 0..1."""
  require_extra("eval", "STOI")
  from pystoi import stoi as _stoi
  n = min(reference.size, estimate.size)
  return float(_stoi(reference[:n], estimate[:n], sample_rate, extended=False))


def quality_metrics(reference: np.ndarray, estimate: np.ndarray,
                    sample_rate: int = 16000) -> dict[str, float]:
  return {"mel_distance": mel_distance(reference, estimate, sample_rate),
          "si_snr": si_snr(reference, estimate),
          "pesq": pesq_wb(reference, estimate, sample_rate),
          "stoi": stoi(reference, estimate, sample_rate)}


def stft_swaps(reference: np.ndarray, estimate: np.ndarray, n_fft: int = 512
               ) -> dict[str, np.ndarray]:
  """The estimate with one of its STFT parts replaced by the reference's (Hann, hop n_fft / 4).

  "true_magnitude": the reference's magnitudes with the estimate's phase; "true_phase": the
  estimate's magnitudes with the reference's phase. Scoring both tells which of the two limits a
  codec: if true magnitudes lift PESQ and true phases do not, its spectra are wrong, not its
  phase.
  """
  from scipy import signal
  n = min(reference.size, estimate.size)
  kw = dict(window="hann", nperseg=n_fft, noverlap=n_fft - n_fft // 4)
  _, _, ref = signal.stft(reference[:n].astype(np.float64), **kw)
  _, _, est = signal.stft(estimate[:n].astype(np.float64), **kw)
  out = {}
  for name, spec in (("true_magnitude", np.abs(ref) * np.exp(1j * np.angle(est))),
                     ("true_phase", np.abs(est) * np.exp(1j * np.angle(ref)))):
    _, wav = signal.istft(spec, **kw)
    out[name] = np.pad(wav[:n], (0, max(0, n - wav.size))).astype(np.float32)
  return out


def pesq_diagnosis(reference: np.ndarray, estimate: np.ndarray,
                   sample_rate: int = 16000) -> dict[str, float]:
  """PESQ-WB of the estimate's two `stft_swaps`: `pesq_true_magnitude`, `pesq_true_phase`."""
  swaps = stft_swaps(reference, estimate)
  return {f"pesq_{k}": pesq_wb(reference, v, sample_rate) for k, v in swaps.items()}
