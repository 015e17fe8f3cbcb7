"""Speaker identity of audio: a pretrained speaker encoder, nearest-centroid accuracy and
similarity to a target speaker against the others.

    enc = SpeakerEncoder()                         # Resemblyzer's GE2E encoder, CPU, offline
    e = enc.embed_many(wavs)                       # [N, 256], L2-normalised
    acc = nearest_centroid_accuracy(enrol_e, enrol_labels, e, labels)
    sim = speaker_similarity(enrol_e, enrol_labels, e, labels)

The encoder is Resemblyzer's (Apache-2.0): a 3-layer LSTM trained with the generalised
end-to-end loss (Wan et al. 2018) on VoxCeleb and LibriSpeech, whose weights ship inside the
wheel, so nothing is downloaded. An utterance's embedding is the normalised mean of the
embeddings of 1.6 s partial windows; audio is level-normalised and its silences trimmed by
WebRTC's VAD first (Resemblyzer's `preprocess_wav`). Its weights are read by
`torch.load(weights_only=True)` (no pickled code).

Metrics, over test utterances with known speakers and an enrolment set of other utterances of
the same speakers:
- `nearest_centroid_accuracy`: the share of test utterances whose embedding is nearest (by
  cosine) to the centroid of their own speaker's enrolment embeddings (the paper's speaker
  classification, Table III, with a pretrained encoder in place of a trained classifier);
- `speaker_similarity`: per test utterance, the cosine to its own speaker's centroid and the
  mean cosine to the other speakers' centroids.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Sequence

import numpy as np

from audiolm_jax.errors import DataError, require_extra

SAMPLE_RATE = 16000


def _import_resemblyzer():
  """Imports resemblyzer without the deprecation warning its VAD (webrtcvad) triggers by
  importing pkg_resources: one long line in every log, about a package we pin."""
  require_extra("eval", "the speaker encoder")
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import resemblyzer  # pylint: disable=g-import-not-at-top
  return resemblyzer


@functools.lru_cache(maxsize=1)
def _voice_encoder():
  import torch
  _import_resemblyzer()
  from resemblyzer import VoiceEncoder
  from resemblyzer.voice_encoder import Path

  torch.set_num_threads(max(1, torch.get_num_threads()))
  encoder = VoiceEncoder.__new__(VoiceEncoder)
  torch.nn.Module.__init__(encoder)
  from resemblyzer import hparams
  encoder.lstm = torch.nn.LSTM(hparams.mel_n_channels, hparams.model_hidden_size,
                               hparams.model_num_layers, batch_first=True)
  encoder.linear = torch.nn.Linear(hparams.model_hidden_size, hparams.model_embedding_size)
  encoder.relu = torch.nn.ReLU()
  encoder.device = torch.device("cpu")
  weights = Path(__import__("resemblyzer").__file__).resolve().parent / "pretrained.pt"
  checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
  encoder.load_state_dict(checkpoint["model_state"], strict=False)
  return encoder.eval()


class SpeakerEncoder:
  """Resemblyzer's pretrained speaker encoder on 16 kHz float waveforms."""

  dim = 256

  def embed(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The L2-normalised embedding [256] of one utterance."""
    _import_resemblyzer()
    from resemblyzer import preprocess_wav
    wav = np.asarray(wav, np.float32)
    if wav.ndim != 1 or wav.size == 0 or not np.all(np.isfinite(wav)):
      raise DataError(f"speaker embedding: need a finite mono waveform, got shape {wav.shape}")
    if sample_rate != SAMPLE_RATE:
      raise DataError(f"speaker embedding: audio at {sample_rate} Hz, the encoder needs 16 kHz")
    if np.max(np.abs(wav)) == 0:
      raise DataError("speaker embedding: the clip is silent")
    trimmed = preprocess_wav(wav, source_sr=SAMPLE_RATE)
    if trimmed.size < SAMPLE_RATE // 4:  # The VAD found almost no speech: use it all.
      trimmed = wav / max(1e-8, float(np.sqrt(np.mean(wav**2)))) * 10 ** (-30 / 20)
    embedding = _voice_encoder().embed_utterance(trimmed.astype(np.float32))
    return (embedding / max(np.linalg.norm(embedding), 1e-12)).astype(np.float32)

  def embed_many(self, wavs: Sequence[np.ndarray],
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[N, 256] embeddings of N utterances."""
    return np.stack([self.embed(w, sample_rate) for w in wavs]) if len(wavs) else np.zeros(
        (0, self.dim), np.float32)


def centroids(embeddings: np.ndarray, labels: Sequence) -> tuple[list, np.ndarray]:
  """(speakers, [S, D] normalised mean embedding of each), speakers sorted."""
  labels = np.asarray(labels)
  speakers = sorted(set(labels.tolist()))
  if not speakers:
    raise DataError("no enrolment utterances")
  c = np.stack([embeddings[labels == s].mean(0) for s in speakers])
  return speakers, c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def nearest_centroid_accuracy(enrol: np.ndarray, enrol_labels: Sequence, test: np.ndarray,
                              test_labels: Sequence) -> tuple[float, np.ndarray]:
  """(accuracy, [N] bool correct): test utterances nearest their own speaker's centroid."""
  speakers, c = centroids(enrol, enrol_labels)
  missing = sorted(set(np.asarray(test_labels).tolist()) - set(speakers))
  if missing:
    raise DataError(f"test speakers without enrolment utterances: {missing[:5]}")
  predicted = np.asarray(speakers, dtype=object)[np.argmax(test @ c.T, axis=1)]
  correct = np.array([p == t for p, t in zip(predicted, np.asarray(test_labels).tolist())])
  return float(correct.mean()) if correct.size else float("nan"), correct


@dataclasses.dataclass
class Similarity:
  """Per test utterance: cosine to its own speaker's centroid, mean cosine to the others'."""
  own: np.ndarray
  others: np.ndarray

  @property
  def margin(self) -> np.ndarray:
    return self.own - self.others


def speaker_similarity(enrol: np.ndarray, enrol_labels: Sequence, test: np.ndarray,
                       test_labels: Sequence) -> Similarity:
  """Cosine of each test embedding to its speaker's centroid and to the other centroids."""
  speakers, c = centroids(enrol, enrol_labels)
  index = {s: i for i, s in enumerate(speakers)}
  cos = test @ c.T                                                          # [N, S]
  own_idx = np.array([index[t] for t in np.asarray(test_labels).tolist()], np.int64)
  own = cos[np.arange(len(own_idx)), own_idx]
  if len(speakers) < 2:
    raise DataError("speaker similarity needs at least two enrolled speakers")
  others = (cos.sum(1) - own) / (len(speakers) - 1)
  return Similarity(own=own, others=others)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, samples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of `values` (NaNs dropped)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, v.size, (samples, v.size))].mean(1)
  lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
  return float(lo), float(hi)
