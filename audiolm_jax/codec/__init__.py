"""SoundStream neural audio codec: model, streaming, discriminators and losses."""

from audiolm_jax.codec.soundstream import (Codec, CodecConfig, CodecOutput, SoundStream,
                                           bitrate, decode, decode_chunk, decoder_stream_state,
                                           encode, encode_chunk, encoder_stream_state, init)

__all__ = [
    "Codec", "CodecConfig", "CodecOutput", "SoundStream", "bitrate", "decode", "decode_chunk",
    "decoder_stream_state", "encode", "encode_chunk", "encoder_stream_state", "init",
]
