"""SoundStream: SEANet encoder -> residual vector quantiser -> SEANet (or Vocos) decoder.

Shape letters: B batch, S samples, T frames (S / hop), Q quantiser levels, D embedding dim.

    wav [B, S] -encoder-> [B, T, D] -RVQ-> codes [B, T, Q] -lookup-> [B, T, D] -decoder-> wav

With the paper's strides (2, 4, 5, 8) the hop is 320 samples: 50 frames per second at 16 kHz,
and 12 levels of 1024 codes make 50 * 12 * 10 = 6 kbps. Strides (3, 4, 5, 8) give 50 Hz at
24 kHz (MusicLM).

Entry points (pure, jitted, `config` static):

    variables = init(config, rng)                     # {"params", "vq_stats"}
    codes = encode(config, variables, wav)            # [B, S] -> [B, T, Q] int32
    wav = decode(config, variables, codes[..., :n])   # any 1 <= n <= Q leading levels
    bitrate(config, n_q)                              # bits per second
    wav = reconstruct_unquantized(config, variables, wav)  # no quantiser (a diagnostic)

    state = encoder_stream_state(config, batch_size)  # streaming: explicit carried state
    codes, state = encode_chunk(config, variables, state, chunk)  # chunk [B, m * hop]
    state = decoder_stream_state(config, batch_size)  # SEANet decoder only
    wav, state = decode_chunk(config, variables, state, codes)    # codes [B, m, n]

The decoder is SoundStream's SEANet (`decoder="seanet"`, causal, streams) or a Vocos head
(`decoder="vocos"`, `codec/vocos.py`: ConvNeXt at the frame rate and an inverse STFT; it
looks ahead a few frames, so it does not stream).

`Codec(config, variables)` bundles them for callers that hold one trained model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.codec.config import CodecConfig
from audiolm_jax.codec.seanet import SEANetDecoder, SEANetEncoder
from audiolm_jax.codec.vocos import VocosDecoder
from audiolm_jax.errors import ConfigError
from audiolm_jax.layers.conv import STREAM
from audiolm_jax.quantization.rvq import VQ_STATS, QuantizedResult, ResidualVectorQuantizer

Array = jax.Array
Variables = Mapping[str, Any]


@flax.struct.dataclass
class CodecOutput:
  """A full pass through the codec.

  Attributes:
    audio: [B, S] reconstruction.
    quantizer: the quantiser's result (codes, commitment loss, usage statistics, ...).
  """
  audio: Array
  quantizer: QuantizedResult


def pad_to_frames(wav: Array, hop: int) -> Array:
  """Right-pads wav [B, S] with zeros to a whole number of frames [B, ceil(S / hop) * hop].

  The encoder is causal, so the padding changes only the last, partial frame.
  """
  if wav.ndim != 2:
    raise ValueError(f"expected a batch of mono waveforms [B, S], got shape {wav.shape}")
  extra = -wav.shape[1] % hop
  return jnp.pad(wav, ((0, 0), (0, extra))) if extra else wav


class SoundStream(nn.Module):
  """The codec as one linen module.

  Variables: `params` (encoder, decoder) and `vq_stats` (codebooks, see `quantization/rvq`).
  Training calls `apply(..., wav, train=True, rngs={"quantizer": rng},
  mutable=["vq_stats"])`; streaming calls pass `streaming=True` with `mutable=["stream"]`.

  Attributes:
    config: the codec hyperparameters.
  """
  config: CodecConfig

  def setup(self):
    self.encoder = SEANetEncoder(self.config)
    self.quantizer = ResidualVectorQuantizer(self.config.rvq)
    decoder = VocosDecoder if self.config.decoder == "vocos" else SEANetDecoder
    self.decoder = decoder(self.config)

  def __call__(self, wav: Array, train: bool = False,
               mask: Array | None = None) -> CodecOutput:
    """Encodes, quantises (with dropout and codebook updates when training) and decodes.

    Args:
      wav: [B, S] waveforms; S is padded up to whole frames and the output trimmed back.
      train: training mode of the quantiser.
      mask: optional [B] validity of the rows; invalid rows take no part in the quantiser's
        commitment loss and codebook statistics (see `ResidualVectorQuantizer`).
    """
    num_samples = wav.shape[1]
    result = self.quantizer(self.encoder(pad_to_frames(wav, self.config.hop_length)),
                            train=train, mask=mask)
    audio = self.decoder(result.quantized)[:, :num_samples]                       # [B, S]
    return CodecOutput(audio=audio, quantizer=result)

  def encode(self, wav: Array, streaming: bool = False) -> Array:
    """wav [B, S] -> codes [B, ceil(S / hop), Q] int32 (streaming: S a multiple of hop)."""
    if streaming and wav.shape[1] % self.config.hop_length:
      raise ValueError(f"a streamed chunk must be a multiple of {self.config.hop_length} "
                       f"samples, got {wav.shape[1]}")
    return self.quantizer.encode(self.encoder(pad_to_frames(wav, self.config.hop_length),
                                              streaming))

  def decode(self, codes: Array, streaming: bool = False) -> Array:
    """codes [B, T, n] (the first n <= Q levels) -> wav [B, T * hop]."""
    return self.decoder(self.quantizer.decode(codes), streaming)

  def autoencode(self, wav: Array) -> Array:
    """wav [B, S] -> the decoder on the encoder's unquantised output [B, S]: the codec with
    no bitrate limit, the ceiling its quantiser is measured against (a diagnostic)."""
    num_samples = wav.shape[1]
    return self.decoder(self.encoder(pad_to_frames(wav, self.config.hop_length)))[
        :, :num_samples]


def _model_variables(variables: Variables) -> dict[str, Any]:
  """The collections the codec reads at inference."""
  return {"params": variables["params"], VQ_STATS: variables[VQ_STATS]}


@functools.partial(jax.jit, static_argnums=0)
def init(config: CodecConfig, rng: Array) -> dict[str, Any]:
  """Fresh variables `{"params", "vq_stats"}` (with logical-partitioning metadata)."""
  wav = jnp.zeros((1, config.hop_length), jnp.float32)
  return dict(SoundStream(config).init({"params": rng}, wav))


@functools.partial(jax.jit, static_argnums=0, static_argnames="n_q")
def encode(config: CodecConfig, variables: Variables, wav: Array,
           n_q: int | None = None) -> Array:
  """wav [B, S] -> codes [B, ceil(S / hop), n_q] int32 (all Q levels by default)."""
  codes = SoundStream(config).apply(_model_variables(variables), wav,
                                    method=SoundStream.encode)
  return codes if n_q is None else codes[..., :n_q]


@functools.partial(jax.jit, static_argnums=0)
def decode(config: CodecConfig, variables: Variables, codes: Array) -> Array:
  """codes [B, T, n] with any 1 <= n <= Q leading levels -> wav [B, T * hop]."""
  return SoundStream(config).apply(_model_variables(variables), codes,
                                   method=SoundStream.decode)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct_unquantized(config: CodecConfig, variables: Variables, wav: Array) -> Array:
  """wav [B, S] -> [B, S] decoded from the unquantised embeddings (`SoundStream.autoencode`)."""
  return SoundStream(config).apply(_model_variables(variables), wav,
                                   method=SoundStream.autoencode)


def bitrate(config: CodecConfig, n_q: int | None = None) -> float:
  """Bits per second with the first `n_q` levels (all by default)."""
  return config.rvq.bits_per_second(n_q)


def _zero_stream_state(config: CodecConfig, method, example: Array) -> dict[str, Any]:
  def init_fn():
    return SoundStream(config).init(jax.random.key(0), example, streaming=True, method=method)

  shapes = jax.eval_shape(init_fn)[STREAM]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def encoder_stream_state(config: CodecConfig, batch_size: int) -> dict[str, Any]:
  """The encoder's streaming state at the start of a signal (all buffers zero)."""
  chunk = jnp.zeros((batch_size, config.hop_length), jnp.float32)
  return _zero_stream_state(config, SoundStream.encode, chunk)


def decoder_stream_state(config: CodecConfig, batch_size: int) -> dict[str, Any]:
  """The decoder's streaming state at the start of a signal (all buffers zero)."""
  if config.decoder != "seanet":
    raise ConfigError(f"codec: the {config.decoder} decoder looks ahead and does not "
                      "stream; streaming decoding needs decoder='seanet'")
  codes = jnp.zeros((batch_size, 1, config.num_quantizers), jnp.int32)
  return _zero_stream_state(config, SoundStream.decode, codes)


@functools.partial(jax.jit, static_argnums=0)
def encode_chunk(config: CodecConfig, variables: Variables, state: Any,
                 chunk: Array) -> tuple[Array, Any]:
  """Streams chunk [B, m * hop] -> (codes [B, m, Q], next state)."""
  codes, mutated = SoundStream(config).apply(
      {**_model_variables(variables), STREAM: state}, chunk, streaming=True,
      method=SoundStream.encode, mutable=[STREAM])
  return codes, mutated[STREAM]


@functools.partial(jax.jit, static_argnums=0)
def decode_chunk(config: CodecConfig, variables: Variables, state: Any,
                 codes: Array) -> tuple[Array, Any]:
  """Streams codes [B, m, n] -> (wav [B, m * hop], next state)."""
  wav, mutated = SoundStream(config).apply(
      {**_model_variables(variables), STREAM: state}, codes, streaming=True,
      method=SoundStream.decode, mutable=[STREAM])
  return wav, mutated[STREAM]


@dataclasses.dataclass(frozen=True)
class Codec:
  """A trained codec: its config and variables, with jitted `encode` / `decode`.

  Attributes:
    config: the codec hyperparameters.
    variables: at least `{"params", "vq_stats"}`.
  """
  config: CodecConfig
  variables: Variables

  @property
  def sample_rate(self) -> int:
    return self.config.sample_rate

  @property
  def frame_rate(self) -> float:
    return self.config.frame_rate

  @property
  def num_quantizers(self) -> int:
    return self.config.num_quantizers

  def encode(self, wav: Array, n_q: int | None = None) -> Array:
    """wav [B, S] -> codes [B, T, n_q]."""
    return encode(self.config, self.variables, wav, n_q=n_q)

  def decode(self, codes: Array) -> Array:
    """codes [B, T, n] -> wav [B, T * hop]."""
    return decode(self.config, self.variables, codes)

  def reconstruct_unquantized(self, wav: Array) -> Array:
    """wav [B, S] -> [B, S] through the encoder and decoder with no quantiser (a diagnostic:
    what the codec could do at an unlimited bitrate)."""
    return reconstruct_unquantized(self.config, self.variables, wav)

  def bitrate(self, n_q: int | None = None) -> float:
    """Bits per second with the first `n_q` levels."""
    return bitrate(self.config, n_q)
