"""SEANet encoder and decoder of SoundStream (Zeghidour et al. 2021, Fig. 3), all causal.

Shape letters: B batch, S samples, T frames (S / hop), C channels, D embedding dimension.

    encoder  wav [B, S] -> conv7(C) -> EncoderBlock(C m_i, stride s_i) for each i -> conv3(D)
    decoder  [B, T, D] -> conv7(C' m_last) -> DecoderBlock(C' m_{i-1}, s_i), i reversed -> conv7(1)

    EncoderBlock(N, s) = ResidualUnit(N/2, dilation 1, 3, 9) -> conv(N, kernel 2s, stride s)
    DecoderBlock(N, s) = transposed conv(N, kernel 2s, stride s) -> ResidualUnit(N, 1, 3, 9)
    ResidualUnit(N, d) = x + conv1(N)(elu(conv7(N, dilation d)(elu(x))))

(C' is the decoder's base width, `decoder_channels` or C; m_0 = 1.)

Non-linearities sit before each convolution (pre-activation, as in SEANet/EnCodec): ELU as
in SoundStream, or Snake as in DAC (`activation="snake"`, one learnt frequency per channel).
With `weight_norm` every convolution is weight-normalised, as in SoundStream, EnCodec and DAC.
Every convolution is causal, so both networks stream (see `layers/conv.py`): with `streaming=True`
each layer carries its last input frames in the `"stream"` collection.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.codec.config import CodecConfig
from audiolm_jax.layers.conv import CausalConv1d, CausalConvTranspose1d, Snake

Array = jax.Array

_ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")


def _constrain(x: Array) -> Array:
  return nn.with_logical_constraint(x, _ACTIVATION_AXES)


def activate(kind: str, x: Array, name: str) -> Array:
  """The pre-activation non-linearity `kind` (inside a compact module; Snake has params)."""
  if kind == "snake":
    return Snake(name=name)(x)
  return nn.elu(x)


class ResidualUnit(nn.Module):
  """`x + conv1(elu(conv_k(elu(x), dilation)))`, channels unchanged.

  Attributes:
    features: channels of the unit (input and output).
    dilation: dilation of the first convolution.
    kernel_size: taps of the first convolution (7 in SoundStream).
    activation: "elu" or "snake".
    weight_norm: weight-normalised convolutions.
    dtype: computation dtype.
  """
  features: int
  dilation: int
  kernel_size: int = 7
  activation: str = "elu"
  weight_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    y = CausalConv1d(self.features, self.kernel_size, dilation=self.dilation,
                     weight_norm=self.weight_norm, dtype=self.dtype, name="conv_dilated")(
                         activate(self.activation, x, "act_dilated"), streaming)
    y = CausalConv1d(self.features, 1, weight_norm=self.weight_norm, dtype=self.dtype,
                     name="conv_pointwise")(activate(self.activation, y, "act_pointwise"),
                                            streaming)
    return x + y


class EncoderBlock(nn.Module):
  """Residual units at `features / 2` channels, then a stride-`stride` downsampling conv.

  Attributes:
    features: output channels (N).
    stride: downsampling factor.
    dilations: dilations of the residual units.
    kernel_size: taps of the residual units' dilated convolutions.
    activation: "elu" or "snake".
    weight_norm: weight-normalised convolutions.
    dtype: computation dtype.
  """
  features: int
  stride: int
  dilations: tuple[int, ...] = (1, 3, 9)
  kernel_size: int = 7
  activation: str = "elu"
  weight_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    for i, dilation in enumerate(self.dilations):
      x = ResidualUnit(self.features // 2, dilation, self.kernel_size, self.activation,
                       self.weight_norm, self.dtype, name=f"residual_{i}")(x, streaming)
    x = CausalConv1d(self.features, 2 * self.stride, stride=self.stride,
                     weight_norm=self.weight_norm, dtype=self.dtype, name="downsample")(
                         activate(self.activation, x, "act_downsample"), streaming)  # [B, T/s, N]
    return _constrain(x)


class DecoderBlock(nn.Module):
  """A stride-`stride` transposed conv to `features` channels, then residual units.

  Attributes:
    features: output channels (N).
    stride: upsampling factor.
    dilations: dilations of the residual units.
    kernel_size: taps of the residual units' dilated convolutions.
    activation: "elu" or "snake".
    weight_norm: weight-normalised convolutions.
    dtype: computation dtype.
  """
  features: int
  stride: int
  dilations: tuple[int, ...] = (1, 3, 9)
  kernel_size: int = 7
  activation: str = "elu"
  weight_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    x = CausalConvTranspose1d(self.features, 2 * self.stride, self.stride,
                              weight_norm=self.weight_norm, dtype=self.dtype, name="upsample")(
                                  activate(self.activation, x, "act_upsample"), streaming)
    for i, dilation in enumerate(self.dilations):                              # [B, T s, N]
      x = ResidualUnit(self.features, dilation, self.kernel_size, self.activation,
                       self.weight_norm, self.dtype, name=f"residual_{i}")(x, streaming)
    return _constrain(x)


class SEANetEncoder(nn.Module):
  """Waveform to embeddings, `[B, S] -> [B, S / hop, D]` (S a multiple of the hop).

  Attributes:
    config: the codec hyperparameters (`channels`, `channel_mults`, `strides`, `dim`,
      `dilations`, `kernel_size`, `residual_kernel_size`, `last_kernel_size`, `dtype`).
  """
  config: CodecConfig

  @nn.compact
  def __call__(self, wav: Array, streaming: bool = False) -> Array:
    c = self.config
    dtype = jnp.dtype(c.dtype)
    x = wav[..., None]                                                          # [B, S, 1]
    wn = c.weight_norm
    x = CausalConv1d(c.channels, c.kernel_size, weight_norm=wn, dtype=dtype,
                     name="conv_in")(x, streaming)
    for i, (mult, stride) in enumerate(zip(c.channel_mults, c.strides)):
      x = EncoderBlock(c.channels * mult, stride, c.dilations, c.residual_kernel_size,
                       c.activation, wn, dtype, name=f"block_{i}")(x, streaming)
    x = CausalConv1d(c.dim, c.last_kernel_size, weight_norm=wn, dtype=dtype, name="conv_out")(
        activate(c.activation, x, "act_out"), streaming)
    return _constrain(x.astype(jnp.float32))                                    # [B, T, D]


class SEANetDecoder(nn.Module):
  """Embeddings to waveform, `[B, T, D] -> [B, T * hop]`, the mirror of the encoder.

  Attributes:
    config: the codec hyperparameters (as for the encoder, with `decoder_channels`).
  """
  config: CodecConfig

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    c = self.config
    dtype = jnp.dtype(c.dtype)
    base = c.decoder_channels or c.channels
    # Block i (in encoder order) maps channels base*mults[i] back to base*mults[i-1].
    widths = (1,) + tuple(c.channel_mults[:-1])
    wn = c.weight_norm
    x = CausalConv1d(base * c.channel_mults[-1], c.kernel_size, weight_norm=wn, dtype=dtype,
                     name="conv_in")(x, streaming)
    for i in reversed(range(len(c.strides))):
      x = DecoderBlock(base * widths[i], c.strides[i], c.dilations, c.residual_kernel_size,
                       c.activation, wn, dtype, name=f"block_{i}")(x, streaming)
    x = CausalConv1d(1, c.kernel_size, weight_norm=wn, dtype=dtype, name="conv_out")(
        activate(c.activation, x, "act_out"), streaming)
    return x[..., 0].astype(jnp.float32)                                        # [B, S]
