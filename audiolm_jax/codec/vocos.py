"""A Vocos decoder (Siuzdak 2023): ConvNeXt at the frame rate, then an inverse STFT.

Shape letters: B batch, T frames, D embedding dimension, H the backbone width, N = n_fft
(= overlap * hop), F = N / 2 + 1 frequency bins, S = T * hop samples.

    [B, T, D] -conv7-> LayerNorm -> ConvNeXt x L -> LayerNorm -> Dense(2F) [B, T, 2F]
      -> log-magnitude m and phase p -> X = exp(m) e^{ip} -> irfft, Hann window, overlap-add
      -> [B, S]

    ConvNeXt(x) = x + gamma * W2 gelu(W1 LayerNorm(depthwise_conv7(x)))     (W1: H -> 3H)

Why it is here (issue 11). SEANet's decoder makes every sample through transposed
convolutions, and on the cpu preset its magnitudes above 1 kHz come out 6-10 dB off frame by
frame (`experiments/README.md`, `codec_bitrate.py --diagnose`). This head predicts each
frame's log-magnitude spectrum directly, and all its layers run at the frame rate (50 Hz)
rather than at up to 16 kHz, which is what makes it cheap on CPUs. The WavTokenizer and
Vocos codecs decode EnCodec-like tokens this way.

Alignment and edges. Frame t's window is centred on the middle of its hop (it covers
samples `(t + 1/2) hop - N/2 .. (t + 1/2) hop + N/2`), and the overlap-add is normalised by
the actual sum of squared windows (the first and last `N/2 - hop/2` samples have fewer
frames; with the default overlap 4 the envelope there is still at least half of the steady
one). The backbone's convolutions are centred too: unlike SEANet this decoder looks
`3 L` frames ahead and does not stream (`soundstream.decoder_stream_state` refuses it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.codec.config import CodecConfig

Array = jax.Array

_ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")
# The log-magnitude is clipped here before exp (Vocos: magnitude <= 1e2), so that an early
# step cannot overflow the spectrum.
_MAX_LOG_MAGNITUDE = float(np.log(1e2))


def _dense(features: int, axes: tuple[str, str], dtype, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, name=name, kernel_init=nn.with_logical_partitioning(
      nn.initializers.truncated_normal(0.02), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))


def _layer_norm(name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-6, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))


class DepthwiseConv1d(nn.Module):
  """A centred ("same") depthwise convolution over time, `[B, T, H] -> [B, T, H]`.

  Written as `kernel_size` shifted multiply-adds: a depthwise convolution is a grouped one
  with one channel per group, whose XLA:CPU lowering is slow (see `layers/conv.py`).
  """
  kernel_size: int = 7
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, width = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.with_logical_partitioning(
        nn.initializers.truncated_normal(0.02), ("conv_kernel", "conv_out")), (k, width))
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                           ("conv_out",)), (width,))
    length = x.shape[1]
    padded = jnp.pad(x, ((0, 0), (k // 2, (k - 1) // 2), (0, 0)))
    kernel = kernel.astype(self.dtype)
    y = sum(padded[:, i:i + length] * kernel[i] for i in range(k))
    return y + bias.astype(self.dtype)


class ConvNeXtBlock(nn.Module):
  """`x + gamma * W2 gelu(W1 LayerNorm(dwconv(x)))`, the Vocos / ConvNeXt block.

  Attributes:
    width: H, channels in and out.
    expansion: hidden width of the pointwise MLP in units of H.
    layer_scale: initial value of gamma (Vocos: 1 / L).
    dtype: computation dtype.
  """
  width: int
  expansion: int = 3
  layer_scale: float = 0.125
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = DepthwiseConv1d(7, self.dtype, name="dwconv")(x)
    y = _layer_norm("norm")(y)
    y = _dense(self.width * self.expansion, ("embed", "mlp"), self.dtype, "pwconv1")(y)
    y = _dense(self.width, ("mlp", "embed"), self.dtype, "pwconv2")(nn.gelu(y))
    gamma = self.param("gamma", nn.with_logical_partitioning(
        nn.initializers.constant(self.layer_scale), ("norm",)), (self.width,))
    return x + gamma.astype(y.dtype) * y


def synthesis_window(n_fft: int) -> np.ndarray:
  """The periodic Hann window of the inverse STFT, `[N]`."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def overlap_add(frames: Array, hop: int) -> Array:
  """Overlap-adds `[B, T, N]` frames with hop `hop` (N a multiple of it) into
  `[B, (T + N / hop - 1) * hop]` samples, frame t starting at sample `t * hop`."""
  batch, num_frames, n_fft = frames.shape
  overlap = n_fft // hop
  pieces = frames.reshape(batch, num_frames, overlap, hop)
  out = jnp.zeros((batch, num_frames + overlap - 1, hop), frames.dtype)
  for j in range(overlap):  # the j-th hop of frame t lands in output hop t + j
    out = out.at[:, j:j + num_frames].add(pieces[:, :, j])
  return out.reshape(batch, -1)


def istft(spectrum: Array, hop: int, n_fft: int) -> Array:
  """Complex frames `[B, T, N/2 + 1]` -> `[B, T * hop]` with centred windows (see above)."""
  num_frames = spectrum.shape[1]
  window = jnp.asarray(synthesis_window(n_fft))
  frames = jnp.fft.irfft(spectrum, n=n_fft, axis=-1) * window                 # [B, T, N]
  envelope = overlap_add(jnp.broadcast_to(jnp.square(window), (1, num_frames, n_fft)), hop)
  signal = overlap_add(frames, hop)
  # Frame t starts at (t + 1/2) hop - N/2 = t hop - offset: drop the first `offset` samples.
  offset = (n_fft - hop) // 2
  length = num_frames * hop
  signal = signal[:, offset:offset + length]
  envelope = envelope[:, offset:offset + length]
  return signal / jnp.maximum(envelope, 1e-3)


class VocosDecoder(nn.Module):
  """Embeddings to waveform, `[B, T, D] -> [B, T * hop]` (see the module docstring).

  Attributes:
    config: the codec hyperparameters (`vocos_width`, `vocos_layers`, `vocos_overlap`,
      `hop_length`, `dtype`).
  """
  config: CodecConfig

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    c = self.config
    if streaming:
      raise ValueError("the vocos decoder looks ahead and does not stream; use "
                       "decoder='seanet' for streaming")
    dtype = jnp.dtype(c.dtype)
    hop = c.hop_length
    n_fft = c.vocos_overlap * hop
    x = nn.Conv(c.vocos_width, (7,), padding="SAME", dtype=dtype, name="conv_in",
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), ("conv_kernel", "conv_in", "conv_out")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                       ("conv_out",)))(x.astype(dtype))
    x = _layer_norm("norm_in")(x)
    for i in range(c.vocos_layers):
      x = ConvNeXtBlock(c.vocos_width, layer_scale=1.0 / c.vocos_layers, dtype=dtype,
                        name=f"block_{i}")(x)
      x = nn.with_logical_constraint(x, _ACTIVATION_AXES)
    x = _layer_norm("norm_out")(x)
    bins = n_fft // 2 + 1
    out = _dense(2 * bins, ("embed", "mlp"), dtype, "head")(x).astype(jnp.float32)
    log_magnitude, phase = jnp.split(out, 2, axis=-1)                          # [B, T, F] each
    magnitude = jnp.exp(jnp.minimum(log_magnitude, _MAX_LOG_MAGNITUDE))
    spectrum = jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase))
    return istft(spectrum, hop, n_fft)                                          # [B, S]
