"""SoundStream's hyperparameters: one frozen dataclass shared by the model and its users.

(Its own module, so that `seanet` and `soundstream` both import it and not each other.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from audiolm_jax.errors import ConfigError
from audiolm_jax.quantization.rvq import RVQConfig

ACTIVATIONS = ("elu", "snake")
DECODERS = ("seanet", "vocos")


@dataclasses.dataclass(frozen=True)
class CodecConfig:
  """SoundStream hyperparameters (defaults: the paper's 16 kHz, 6 kbps model).

  Attributes:
    sample_rate: audio sample rate in Hz.
    channels: C, base channels of the encoder (block i has C * channel_mults[i]).
    decoder_channels: C of the decoder; 0 means the same as `channels`.
    channel_mults: channel multiplier of each encoder block's output.
    strides: downsampling factor of each encoder block (decoder: reversed); their product is
      the hop, samples per frame.
    dilations: dilations of the three residual units of each block.
    kernel_size: taps of the first and of the decoder's last convolution.
    residual_kernel_size: taps of the dilated convolution in each residual unit.
    last_kernel_size: taps of the encoder's last convolution.
    dim: D, embedding dimension (encoder output, codebook vectors, decoder input).
    num_quantizers: Q, RVQ levels.
    codebook_size: K, codes per level.
    ema_decay: decay of the codebook EMA.
    ema_epsilon: Laplace smoothing of the EMA cluster sizes.
    dead_code_threshold: EMA cluster size below which a code is restarted (0: never).
    kmeans_iters: Lloyd iterations of the k-means initialisation on the first batch.
    quantizer_dropout: train with a random number of levels per example (bitrate scalable).
    quantizer_dropout_rate: share of the examples that drop levels (the rest use all Q).
    activation: the SEANet non-linearity, "elu" (SoundStream) or "snake" (DAC).
    decoder: "seanet" (SoundStream's mirror of the encoder; causal, streams) or "vocos"
      (ConvNeXt at the frame rate and an inverse STFT, `codec/vocos.py`; looks ahead).
    vocos_width: H, channels of the vocos decoder's ConvNeXt blocks.
    vocos_layers: L, ConvNeXt blocks of the vocos decoder.
    vocos_overlap: the vocos decoder's STFT window in hops (n_fft = overlap * hop).
    weight_norm: weight-normalise every convolution (SoundStream, EnCodec, DAC).
    dtype: computation dtype of the convolutions ("float32" or "bfloat16"); the quantiser
      always works in float32.
  """
  sample_rate: int = 16000
  channels: int = 32
  decoder_channels: int = 0
  channel_mults: tuple[int, ...] = (2, 4, 8, 16)
  strides: tuple[int, ...] = (2, 4, 5, 8)
  dilations: tuple[int, ...] = (1, 3, 9)
  kernel_size: int = 7
  residual_kernel_size: int = 7
  last_kernel_size: int = 3
  dim: int = 512
  num_quantizers: int = 12
  codebook_size: int = 1024
  ema_decay: float = 0.99
  ema_epsilon: float = 1e-5
  dead_code_threshold: float = 2.0
  kmeans_iters: int = 10
  quantizer_dropout: bool = True
  quantizer_dropout_rate: float = 1.0
  activation: str = "elu"
  decoder: str = "seanet"
  vocos_width: int = 256
  vocos_layers: int = 8
  vocos_overlap: int = 4
  weight_norm: bool = False
  dtype: str = "float32"

  def __post_init__(self):
    for name in ("channel_mults", "strides", "dilations"):
      object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
    if len(self.channel_mults) != len(self.strides):
      raise ConfigError(f"codec: channel_mults {self.channel_mults} and strides {self.strides} "
                        "must have the same length (one per encoder block)")
    positive = dict(sample_rate=self.sample_rate, channels=self.channels, dim=self.dim,
                    num_quantizers=self.num_quantizers, codebook_size=self.codebook_size,
                    kernel_size=self.kernel_size, last_kernel_size=self.last_kernel_size,
                    residual_kernel_size=self.residual_kernel_size)
    for name, value in positive.items():
      if value < 1:
        raise ConfigError(f"codec: {name} must be positive, got {value}")
    if not self.strides or min(self.strides + self.channel_mults + self.dilations) < 1:
      raise ConfigError("codec: strides, channel_mults and dilations must be positive")
    if self.decoder_channels < 0:
      raise ConfigError(f"codec: decoder_channels must be >= 0, got {self.decoder_channels}")
    if any(self.channels * m % 2 for m in self.channel_mults):
      raise ConfigError("codec: channels * channel_mults must be even (residual units use half)")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ConfigError(f"codec: ema_decay must be in [0, 1), got {self.ema_decay}")
    if not 0.0 <= self.quantizer_dropout_rate <= 1.0:
      raise ConfigError("codec: quantizer_dropout_rate must be in [0, 1], got "
                        f"{self.quantizer_dropout_rate}")
    if self.activation not in ACTIVATIONS:
      raise ConfigError(f"codec: activation must be elu or snake, got {self.activation!r}")
    if self.decoder not in DECODERS:
      raise ConfigError(f"codec: decoder must be one of {DECODERS}, got {self.decoder!r}")
    if min(self.vocos_width, self.vocos_layers, self.vocos_overlap) < 1:
      raise ConfigError("codec: vocos_width, vocos_layers and vocos_overlap must be positive")
    if (self.vocos_overlap - 1) * self.hop_length % 2:
      raise ConfigError("codec: (vocos_overlap - 1) * hop must be even, so that the vocos "
                        "decoder's windows centre on their hops")
    if self.dtype not in ("float32", "bfloat16"):
      raise ConfigError(f"codec: dtype must be float32 or bfloat16, got {self.dtype!r}")

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> CodecConfig:
    """Builds the config from a mapping (e.g. the `model` ConfigDict of a config file)."""
    d = dict(d.items())
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"codec: unknown model keys {unknown}; known: {sorted(known)}")
    return cls(**d)

  @property
  def hop_length(self) -> int:
    """Samples per frame (product of the strides)."""
    return math.prod(self.strides)

  @property
  def decoder_lookahead(self) -> int:
    """Samples before a frame's start that its code changes in the decoded audio: 0 for the
    causal SEANet decoder; for the vocos decoder, its centred convolutions' reach (3 frames
    each, `vocos_layers + 1` of them) plus the half-window its iSTFT spans before a hop."""
    if self.decoder != "vocos":
      return 0
    return 3 * (self.vocos_layers + 1) * self.hop_length + (
        (self.vocos_overlap - 1) * self.hop_length) // 2

  @property
  def frame_rate(self) -> float:
    """Frames (codes per level) per second."""
    return self.sample_rate / self.hop_length

  @property
  def rvq(self) -> RVQConfig:
    """The quantiser's hyperparameters."""
    return RVQConfig(
        num_quantizers=self.num_quantizers, codebook_size=self.codebook_size, dim=self.dim,
        decay=self.ema_decay, epsilon=self.ema_epsilon,
        dead_code_threshold=self.dead_code_threshold, kmeans_iters=self.kmeans_iters,
        quantizer_dropout=self.quantizer_dropout,
        quantizer_dropout_rate=self.quantizer_dropout_rate, frame_rate=self.frame_rate)
