"""A detector of generated speech: a small convolutional classifier on log-mel frames.

The AudioLM paper (Borsos et al., 2022) trained a convolutional network on log-mel
spectrograms to tell AudioLM's continuations from *real speech passed through the same codec*
(the hard negative: both carry the codec's artefacts) and reached 98.6% accuracy. This is that
detector:

    wav [B, S] ─► log-mel [B, T, M] ─► minus its clip mean (gain) ─► N x (conv2d 3x3, stride 2,
        LayerNorm, GELU) [B, T/2^N, M/2^N, C] ─► mean over valid frames and bands [B, C]
        ─► Dense ─► logit [B]: P(generated) = sigmoid(logit)

Class 0 is "real" (codec resyntheses of real audio), class 1 "generated". The network is
fully convolutional with a global mean, so it scores clips of any length: it trains on random
crops (`tasks/detector.py`) and scores whole files here. Padding never counts: the sample mask
becomes a frame mask (a frame is valid when its whole window is), padded frames are zeroed
before each convolution and left out of the mean.

    detector = pretrained.load_detector("runs/detector")   # a trained `detector` run
    p = detector.probability(wav, sample_rate=44100)       # float in [0, 1]; any rate

Long clips are scored in windows of `WINDOW_SECONDS`, one after the other (the per-window
sums of the pooled features are added up, then classified once), each padded to whole
seconds so that few shapes are compiled. A clip that fails the checks at the door
(`data.audio.check_audio`: empty, NaN, too short, silent, ...) is a one-line `BadAudioError`.

Shape letters: B batch, S samples, T mel frames, M mel bands, C channels.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.data.audio import check_audio, resample
from audiolm_jax.errors import ConfigError
from audiolm_jax.layers import spectral
from audiolm_jax.layers.conformer import dense, layer_norm, partitioned

TASK = "detector"  # The trainer task that trains it (`tasks/detector.py`).
LABELS = ("real", "generated")  # Class 0: codec resyntheses of real audio; 1: generated.
WINDOW_SECONDS = 30.0  # Longer clips are scored window by window (bounded memory).


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  """Hyperparameters of the detector.

  Attributes:
    sample_rate: input sample rate in Hz.
    n_fft: STFT size and Hann window (400 = 25 ms at 16 kHz).
    hop: mel hop in samples (160 = 10 ms).
    n_mels: mel bands M.
    channels: output channels of each conv layer (one stride-2 layer each).
    kernel_size: square kernel of every conv layer (odd).
    dtype: computation dtype ("float32" or "bfloat16"); features are float32.
  """
  sample_rate: int = 16000
  n_fft: int = 400
  hop: int = 160
  n_mels: int = 64
  channels: tuple[int, ...] = (32, 64, 128)
  kernel_size: int = 3
  dtype: str = "float32"

  def __post_init__(self):
    if self.n_fft < self.hop:
      raise ConfigError(f"detector: n_fft={self.n_fft} must be >= hop={self.hop}")
    if self.kernel_size < 1 or self.kernel_size % 2 == 0:
      raise ConfigError(f"detector: kernel_size must be odd, got {self.kernel_size}")
    if not self.channels or any(int(c) <= 0 for c in self.channels):
      raise ConfigError(f"detector: channels must be positive, got {self.channels}")
    object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

  @property
  def min_samples(self) -> int:
    """The shortest clip with one whole mel frame."""
    return self.n_fft

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any], dtype: str | None = None) -> "DetectorConfig":
    """From a config's `model` sub-dict (and `compute_dtype`); unknown keys: `ConfigError`."""
    cfg = dict(cfg)
    if dtype is not None:
      cfg["dtype"] = dtype
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
      raise ConfigError(f"detector model config: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**cfg)


def log_mel_features(wav: jax.Array, mask: jax.Array, config: DetectorConfig
                     ) -> tuple[jax.Array, jax.Array]:
  """Gain-normalised log-mel frames and their mask.

  Args:
    wav: float `[B, S]`.
    mask: bool `[B, S]`, True on real samples.
    config: the STFT and mel settings.

  Returns:
    `(features [B, T, M], frame_mask [B, T])`: natural-log power mel (`layers.spectral`) minus
    its mean over the clip's valid frames and bands (a gain change moves every log-mel value
    by the same amount: the detector does not see the level), zero on invalid frames.
  """
  wav = jnp.where(mask, wav.astype(jnp.float32), 0.0)
  logmel = spectral.log_mel_spectrogram(wav, config.sample_rate, config.n_fft, config.hop,
                                        config.n_mels)                           # [B, T, M]
  t = logmel.shape[1]
  window_ends = config.hop * np.arange(t) + config.n_fft - 1                     # [T]
  frame_mask = mask[:, window_ends]                                              # [B, T]
  weights = frame_mask.astype(jnp.float32)[..., None]                            # [B, T, 1]
  count = jnp.maximum(jnp.sum(weights, axis=(1, 2)) * logmel.shape[2], 1.0)     # [B]
  mean = jnp.sum(logmel * weights, axis=(1, 2)) / count                          # [B]
  return jnp.where(frame_mask[..., None], logmel - mean[:, None, None], 0.0), frame_mask


class DetectorNet(nn.Module):
  """Log-mel conv classifier: `__call__(wav, mask) -> logits [B]` (see the module docstring).

  `pool` and `classify` are its two halves, so that a long clip's windows can be pooled
  separately and classified once.
  """
  config: DetectorConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    k = cfg.kernel_size
    # Explicit padding k // 2 on each side: output frame t is centred on input frame 2t
    # whatever the length (SAME would shift by one with the parity of T), so padding a clip
    # changes none of its valid outputs.
    self.convs = [nn.Conv(c, (k, k), strides=(2, 2), padding=[(k // 2, k // 2)] * 2,
                          dtype=dtype,
                          kernel_init=partitioned(nn.initializers.lecun_normal(),
                                                  "conv_kernel", None, "conv_in", "conv_out"),
                          bias_init=partitioned(nn.initializers.zeros, "conv_out"))
                  for c in cfg.channels]
    self.norms = [layer_norm(dtype) for _ in cfg.channels]
    self.head = dense(1, ("conv_in", None), dtype)

  def pool(self, wav: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(sums [B, C], counts [B])`: last-layer features summed over valid frames (averaged
    over bands), and how many frames that is."""
    feats, frame_mask = log_mel_features(wav, mask, self.config)           # [B, T, M], [B, T]
    h = feats.astype(jnp.dtype(self.config.dtype))[..., None]              # [B, T, M, 1]
    for conv, norm in zip(self.convs, self.norms):
      h = jnp.where(frame_mask[:, :, None, None], h, 0)  # padding = the conv's zero padding
      h = nn.gelu(norm(conv(h)))                         # [B, T/2, M/2, C]
      frame_mask = frame_mask[:, ::2]  # stride 2: ceil(T / 2) frames, t from input 2t
    w = frame_mask.astype(jnp.float32)                                     # [B, T']
    sums = jnp.einsum("btmc,bt->bc", h.astype(jnp.float32), w) / h.shape[2]  # [B, C]
    return sums, jnp.sum(w, axis=1)

  def classify(self, sums: jax.Array, counts: jax.Array) -> jax.Array:
    """Logits `[B]` of the mean features `sums / counts`."""
    pooled = sums / jnp.maximum(counts, 1.0)[:, None]                      # [B, C]
    return self.head(pooled.astype(jnp.dtype(self.config.dtype)))[:, 0].astype(jnp.float32)

  def __call__(self, wav: jax.Array, mask: jax.Array) -> jax.Array:
    return self.classify(*self.pool(wav, mask))


def init_params(config: DetectorConfig, rng: jax.Array) -> Any:
  """Fresh parameters (boxed with logical axis names); they do not depend on clip length."""
  n = config.sample_rate // 4
  return DetectorNet(config).init({"params": rng}, jnp.zeros((1, n), jnp.float32),
                                  jnp.ones((1, n), bool))["params"]


@dataclasses.dataclass(frozen=True)
class Detector:
  """A trained detector (`pretrained.load_detector`): scores clips, P(generated).

  Attributes:
    config: the model hyperparameters (float32 computation).
    params: its parameters (numpy, or device arrays).
    step: the checkpoint's step (0 when built in memory).
    step_dir: the checkpoint directory read ("" when built in memory).
  """
  config: DetectorConfig
  params: Any
  step: int = 0
  step_dir: str = ""

  @property
  def sample_rate(self) -> int:
    return int(self.config.sample_rate)

  @functools.cached_property
  def _model(self) -> DetectorNet:
    return DetectorNet(self.config)

  @functools.cached_property
  def _pool(self):
    return jax.jit(lambda p, w, m: self._model.apply({"params": p}, w, m,
                                                     method=DetectorNet.pool))

  @functools.cached_property
  def _classify(self):
    return jax.jit(lambda p, s, c: self._model.apply({"params": p}, s, c,
                                                     method=DetectorNet.classify))

  def probability(self, wav: np.ndarray, sample_rate: int, name: str = "<array>") -> float:
    """P(generated) of one mono clip `[S]` at `sample_rate` (resampled to the model's).

    Raises:
      BadAudioError: the clip fails `data.audio.check_audio` (named `name`).
    """
    wav = check_audio(np.asarray(wav, np.float32), int(sample_rate), name)
    wav = resample(wav, int(sample_rate), self.sample_rate)
    window = int(WINDOW_SECONDS * self.sample_rate)
    sums, counts = 0.0, 0.0
    for start in range(0, len(wav), window):
      piece = wav[start:start + window]
      if start and len(piece) < self.config.min_samples:
        break  # A last scrap shorter than one mel frame adds nothing.
      # Padded to whole seconds: at most WINDOW_SECONDS shapes are ever compiled.
      length = self.sample_rate * math.ceil(len(piece) / self.sample_rate)
      batch = np.zeros((1, length), np.float32)                                  # [1, S]
      batch[0, :len(piece)] = piece
      piece_sums, piece_counts = self._pool(self.params, batch,
                                            np.arange(length)[None] < len(piece))  # [1, C], [1]
      sums, counts = sums + piece_sums, counts + piece_counts
    logit = self._classify(self.params, sums, counts)                            # [1]
    return float(jax.nn.sigmoid(logit[0]))


def accuracy(real: Sequence[float], generated: Sequence[float]) -> float:
  """Share of clips on the right side of 0.5: `real` probabilities should be below it,
  `generated` ones at or above. The mean of the two classes' accuracies (balanced)."""
  if not len(real) or not len(generated):
    raise ConfigError("accuracy needs clips of both classes")
  right_real = float(np.mean(np.asarray(real) < 0.5))
  right_generated = float(np.mean(np.asarray(generated) >= 0.5))
  return (right_real + right_generated) / 2
