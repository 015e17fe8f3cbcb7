"""SoundStream's discriminators: multi-scale waveform (MelGAN) and complex-STFT.

Shape letters: B batch, S samples, T time steps, F frequency bins, C channels.

- `WaveDiscriminator` (Kumar et al. 2019, MelGAN): conv(15) -> grouped strided convs
  (kernel 41, stride 4, groups C_in / 4) -> conv(5) -> conv(3) to one logit per step.
  `MultiScaleWaveDiscriminator` runs three of them on the waveform at its original rate and
  average-pooled 2x and 4x.
- `STFTDiscriminator` (Zeghidour et al. 2021, Sec. III-D): the real and imaginary parts of a
  complex STFT (window 1024, hop 256) as two channels, a 7x7 conv, six 2-D residual blocks
  that halve the frequency axis (and every other one the time axis), and a last conv whose
  kernel spans all remaining frequency bins, giving one logit per time step.

Every sub-discriminator returns its logits and its hidden activations (for feature
matching). `CodecDiscriminator` bundles the four of them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.errors import ConfigError
from audiolm_jax.layers.conv import GroupedConv1d
from audiolm_jax.layers.spectral import stft

Array = jax.Array

_CONV1D_AXES = ("conv_kernel", "conv_in", "conv_out")
_CONV2D_AXES = (None, "conv_kernel", "conv_in", "conv_out")


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
  """Hyperparameters of the codec's discriminators (defaults: SoundStream / MelGAN).

  Attributes:
    wave_scales: number of waveform discriminators (each on a 2x average-pooled input).
    wave_channels: channels of the waveform discriminators' first conv.
    wave_max_channels: channel cap of the waveform discriminators.
    wave_downsamples: strided grouped convs (stride 4, channels x4) per waveform discriminator.
    stft_channels: C of the STFT discriminator.
    stft_channel_mults: output channels of its residual blocks, in units of C.
    stft_time_strides: time stride of each residual block (frequency stride is always 2).
    stft_n_fft: STFT window (and FFT) length in samples.
    stft_hop: STFT hop in samples.
  """
  wave_scales: int = 3
  wave_channels: int = 16
  wave_max_channels: int = 1024
  wave_downsamples: int = 4
  stft_channels: int = 32
  stft_channel_mults: tuple[int, ...] = (2, 4, 4, 8, 8, 16)
  stft_time_strides: tuple[int, ...] = (1, 2, 1, 2, 1, 2)
  stft_n_fft: int = 1024
  stft_hop: int = 256

  def __post_init__(self):
    for name in ("stft_channel_mults", "stft_time_strides"):
      object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
    if len(self.stft_channel_mults) != len(self.stft_time_strides):
      raise ConfigError("discriminator: stft_channel_mults and stft_time_strides must have the "
                        "same length (one per residual block)")
    if min(self.wave_scales, self.wave_channels, self.stft_channels, self.stft_n_fft,
           self.stft_hop) < 1:
      raise ConfigError("discriminator: scales, channels, n_fft and hop must be positive")

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> DiscriminatorConfig:
    """Builds the config from a mapping (e.g. `config.discriminator`)."""
    d = dict(d.items())
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"discriminator: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**d)


@flax.struct.dataclass
class DiscriminatorOutput:
  """Logits and hidden activations of each sub-discriminator (real or fake input).

  Attributes:
    logits: one array per sub-discriminator, [B, T_k, 1].
    features: per sub-discriminator, the tuple of its hidden activations.
  """
  logits: tuple[Array, ...]
  features: tuple[tuple[Array, ...], ...]


def _conv(features, kernel_size, strides=None, padding="SAME", groups=1, name=None):
  axes = _CONV1D_AXES if len(kernel_size) == 1 else _CONV2D_AXES
  return nn.Conv(features, kernel_size, strides=strides, padding=padding,
                 feature_group_count=groups, name=name,
                 kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)))


class WaveDiscriminator(nn.Module):
  """MelGAN discriminator on a waveform, `[B, S] -> (logits [B, ~S / 4^n, 1], features)`.

  Attributes:
    config: the discriminator hyperparameters.
  """
  config: DiscriminatorConfig

  @nn.compact
  def __call__(self, wav: Array) -> tuple[Array, tuple[Array, ...]]:
    c = self.config
    features = []
    x = _conv(c.wave_channels, (15,), padding=((7, 7),), name="conv_in")(wav[..., None])
    x = nn.leaky_relu(x, 0.2)
    features.append(x)
    channels = c.wave_channels
    for i in range(c.wave_downsamples):
      out = min(channels * 4, c.wave_max_channels)
      # MelGAN's C_in / 4 groups, reduced to a common divisor of C_in and C_out if need be.
      groups = math.gcd(math.gcd(max(channels // 4, 1), channels), out)
      x = GroupedConv1d(
          out, 41, stride=4, padding=(20, 20), groups=groups, name=f"conv_down_{i}",
          kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                   _CONV1D_AXES),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)))(x)
      # [B, ~T / 4, C]
      x = nn.leaky_relu(x, 0.2)
      features.append(x)
      channels = out
    x = _conv(min(channels * 2, c.wave_max_channels), (5,), padding=((2, 2),),
              name="conv_mid")(x)
    x = nn.leaky_relu(x, 0.2)
    features.append(x)
    logits = _conv(1, (3,), padding=((1, 1),), name="conv_out")(x)                # [B, T, 1]
    return logits.astype(jnp.float32), tuple(features)


class MultiScaleWaveDiscriminator(nn.Module):
  """`wave_scales` waveform discriminators on the input average-pooled 1x, 2x, 4x, ...

  Attributes:
    config: the discriminator hyperparameters.
  """
  config: DiscriminatorConfig

  @nn.compact
  def __call__(self, wav: Array) -> DiscriminatorOutput:
    logits, features = [], []
    x = wav
    for i in range(self.config.wave_scales):
      if i:
        x = nn.avg_pool(x[..., None], (4,), (2,), padding=((1, 1),),
                        count_include_pad=False)[..., 0]                     # [B, S / 2]
      y, f = WaveDiscriminator(self.config, name=f"scale_{i}")(x)
      logits.append(y)
      features.append(f)
    return DiscriminatorOutput(logits=tuple(logits), features=tuple(features))


class STFTResidualBlock(nn.Module):
  """2-D residual block: conv3x3(C_in) -> ELU -> conv(s_t + 2, s_f + 2; stride s) to C_out.

  The shortcut is a strided 1x1 conv; the sum goes through an ELU.

  Attributes:
    features: output channels.
    strides: (time, frequency) strides.
  """
  features: int
  strides: tuple[int, int]

  @nn.compact
  def __call__(self, x: Array) -> Array:
    st, sf = self.strides
    y = nn.elu(_conv(x.shape[-1], (3, 3), name="conv_3x3")(x))
    y = _conv(self.features, (st + 2, sf + 2), strides=(st, sf), name="conv_down")(y)
    skip = _conv(self.features, (1, 1), strides=(st, sf), name="conv_skip")(x)
    return nn.elu(y + skip)                                             # [B, T / st, F / sf, C]


class STFTDiscriminator(nn.Module):
  """Complex-STFT discriminator, `[B, S] -> (logits [B, T', 1], features)`.

  Attributes:
    config: the discriminator hyperparameters.
  """
  config: DiscriminatorConfig

  @nn.compact
  def __call__(self, wav: Array) -> DiscriminatorOutput:
    c = self.config
    spec = stft(wav, c.stft_n_fft, c.stft_hop, center=True)                  # [B, T, F]
    x = jnp.stack([spec.real, spec.imag], axis=-1)                           # [B, T, F, 2]
    x = nn.elu(_conv(c.stft_channels, (7, 7), name="conv_in")(x))
    features = [x]
    for i, (mult, st) in enumerate(zip(c.stft_channel_mults, c.stft_time_strides)):
      x = STFTResidualBlock(c.stft_channels * mult, (st, 2), name=f"block_{i}")(x)
      features.append(x)
    # One kernel over all remaining frequency bins: [B, T', F', C] -> [B, T', 1, 1].
    logits = _conv(1, (1, x.shape[2]), padding="VALID", name="conv_out")(x)[:, :, 0, :]
    return DiscriminatorOutput(logits=(logits.astype(jnp.float32),), features=(tuple(features),))


class CodecDiscriminator(nn.Module):
  """All of SoundStream's discriminators: the waveform scales, then the STFT one.

  Attributes:
    config: the discriminator hyperparameters.
  """
  config: DiscriminatorConfig

  @nn.compact
  def __call__(self, wav: Array) -> DiscriminatorOutput:
    wave = MultiScaleWaveDiscriminator(self.config, name="wave")(wav)
    spec = STFTDiscriminator(self.config, name="stft")(wav)
    return DiscriminatorOutput(logits=wave.logits + spec.logits,
                               features=wave.features + spec.features)
