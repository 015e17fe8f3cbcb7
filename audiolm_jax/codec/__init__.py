"""SoundStream neural audio codec: model, streaming, discriminators and losses.

  config.py          `CodecConfig`, the hyperparameters
  seanet.py          the causal SEANet encoder and decoder
  soundstream.py     encoder -> RVQ -> decoder, jitted entry points, streaming, `Codec`
  discriminators.py  the waveform and STFT discriminators
  losses.py          the training objective

Training lives in `audiolm_jax.tasks.codec`, loading in `audiolm_jax.pretrained`.
"""

from audiolm_jax.codec.config import CodecConfig
from audiolm_jax.codec.soundstream import (Codec, CodecOutput, SoundStream, bitrate, decode,
                                           decode_chunk, decoder_stream_state, encode,
                                           encode_chunk, encoder_stream_state, init)

__all__ = [
    "Codec", "CodecConfig", "CodecOutput", "SoundStream", "bitrate", "decode", "decode_chunk",
    "decoder_stream_state", "encode", "encode_chunk", "encoder_stream_state", "init",
]
