"""SoundStream model: shapes and bitrates, presets, streaming equals the whole clip."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.codec import soundstream as ss
from audiolm_jax.codec.discriminators import DiscriminatorConfig
from audiolm_jax.codec.losses import CodecLossConfig
from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError
from audiolm_jax.train.defaults import check_config


def _wav(batch, samples, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, samples)) * 0.3


@pytest.mark.parametrize("variant", ["tiny", "cpu", "paper"])
def test_every_preset_loads_and_builds_its_configs(variant):
  cfg = load_config(f"codec:{variant}")
  check_config(cfg)
  assert cfg.task == "codec"
  model = ss.CodecConfig.from_dict(cfg.model)
  DiscriminatorConfig.from_dict(cfg.discriminator)
  CodecLossConfig.from_dict(cfg.loss)
  assert set(cfg.disc_optimizer) == set(cfg.optimizer)
  assert cfg.disc_warmup_steps >= 0
  assert model.hop_length == 320 and model.frame_rate == 50.0
  assert cfg.loss.sample_rate == cfg.data.sample_rate == model.sample_rate


def test_paper_preset_numbers():
  cfg = ss.CodecConfig.from_dict(load_config("codec:paper").model)
  assert (cfg.channels, cfg.strides, cfg.num_quantizers, cfg.codebook_size) == (
      32, (2, 4, 5, 8), 12, 1024)
  assert ss.bitrate(cfg) == 6000.0              # 50 Hz x 12 levels x 10 bits
  assert ss.bitrate(cfg, 4) == 2000.0           # the coarse levels of AudioLM
  shapes = nn.unbox(jax.eval_shape(ss.init, cfg, jax.random.key(0)))
  enc = shapes["params"]["encoder"]
  assert enc["conv_in"]["kernel"].shape == (7, 1, 32)
  assert enc["block_0"]["residual_0"]["conv_dilated"]["kernel"].shape == (7, 32, 32)
  assert enc["block_3"]["downsample"]["kernel"].shape == (16, 256, 512)
  assert shapes["params"]["decoder"]["block_0"]["upsample"]["kernel"].shape == (4, 64, 32)
  assert shapes["vq_stats"]["quantizer"]["codebook"].shape == (12, 1024, 512)
  codes = jax.eval_shape(ss.encode, cfg, shapes, jax.ShapeDtypeStruct((8, 16000), jnp.float32))
  assert codes.shape == (8, 50, 12) and codes.dtype == jnp.int32


def test_24khz_configuration_keeps_50_hz():
  cfg = ss.CodecConfig(sample_rate=24000, strides=(3, 4, 5, 8), channels=2, dim=8,
                       num_quantizers=2, codebook_size=16)
  assert cfg.hop_length == 480 and cfg.frame_rate == 50.0
  shapes = jax.eval_shape(ss.init, cfg, jax.random.key(0))
  codes = jax.eval_shape(ss.encode, cfg, shapes, jax.ShapeDtypeStruct((1, 4800), jnp.float32))
  assert codes.shape == (1, 10, 2)
  wav = jax.eval_shape(ss.decode, cfg, shapes, codes)
  assert wav.shape == (1, 4800)


def test_encode_decode_shapes_and_bitrate(tiny_config, tiny_variables):
  cfg = tiny_config
  wav = _wav(2, 3200)
  codes = ss.encode(cfg, tiny_variables, wav)
  assert codes.shape == (2, 10, cfg.num_quantizers) and codes.dtype == jnp.int32
  assert 0 <= int(codes.min()) and int(codes.max()) < cfg.codebook_size
  # A partial last frame is padded: 3000 samples still give 10 frames, the same codes.
  np.testing.assert_array_equal(ss.encode(cfg, tiny_variables, wav[:, :3040])[:, :9],
                                codes[:, :9])
  np.testing.assert_array_equal(ss.encode(cfg, tiny_variables, wav, n_q=2), codes[..., :2])
  audio = ss.decode(cfg, tiny_variables, codes)
  assert audio.shape == (2, 3200) and bool(jnp.all(jnp.isfinite(audio)))
  assert ss.decode(cfg, tiny_variables, codes[..., :1]).shape == (2, 3200)
  codec = ss.Codec(cfg, tiny_variables)
  np.testing.assert_array_equal(codec.encode(wav), codes)
  assert codec.bitrate() == 50 * 4 * 5 and codec.bitrate(1) == 250.0


def test_unquantized_reconstruction_is_the_decoder_on_the_latents(tiny_config, tiny_variables):
  """Codebooks holding a clip's own latents (level 1) and zeros (the rest) quantise it without
  error, so decoding its codes must give exactly the unquantised reconstruction."""
  cfg = tiny_config
  wav = _wav(1, 3000)                              # not whole frames: padded, then trimmed
  latents = ss.SoundStream(cfg).apply(
      ss._model_variables(tiny_variables), ss.pad_to_frames(wav, cfg.hop_length),
      method=lambda m, x: m.encoder(x))[0]                                      # [T, D]
  assert latents.shape[0] <= cfg.codebook_size
  codebook = np.zeros((cfg.num_quantizers, cfg.codebook_size, cfg.dim), np.float32)
  codebook[0, :latents.shape[0]] = np.asarray(latents)
  stats = dict(tiny_variables["vq_stats"])
  stats["quantizer"] = {**stats["quantizer"], "codebook": jnp.asarray(codebook)}
  variables = {**tiny_variables, "vq_stats": stats}
  codec = ss.Codec(cfg, variables)
  unquantized = codec.reconstruct_unquantized(wav)
  assert unquantized.shape == wav.shape
  codes = codec.encode(wav)
  np.testing.assert_array_equal(codes[0, :, 0], np.arange(latents.shape[0]))
  decoded = codec.decode(codes)[:, :wav.shape[1]]
  np.testing.assert_allclose(np.asarray(decoded), np.asarray(unquantized), atol=1e-5)
  # With the codebooks it was initialised with, quantisation changes the output.
  assert not np.allclose(np.asarray(ss.Codec(cfg, tiny_variables).reconstruct_unquantized(wav)),
                         np.asarray(ss.decode(cfg, tiny_variables,
                                              ss.encode(cfg, tiny_variables, wav))[:, :3000]),
                         atol=1e-3)


def test_streaming_equals_whole_clip(tiny_config, tiny_variables):
  cfg = tiny_config
  wav = _wav(2, 3200, seed=1)
  whole_codes = ss.encode(cfg, tiny_variables, wav)
  whole_audio = ss.decode(cfg, tiny_variables, whole_codes)

  state = ss.encoder_stream_state(cfg, batch_size=2)
  codes, start = [], 0
  for size in (320, 960, 320, 960, 320, 320):   # chunks of any multiple of the hop
    c, state = ss.encode_chunk(cfg, tiny_variables, state, wav[:, start:start + size])
    codes.append(c)
    start += size
  np.testing.assert_array_equal(np.concatenate(codes, axis=1), whole_codes)

  state = ss.decoder_stream_state(cfg, batch_size=2)
  audio, start = [], 0
  for frames in (1, 3, 1, 3, 1, 1):
    a, state = ss.decode_chunk(cfg, tiny_variables, state, whole_codes[:, start:start + frames])
    audio.append(a)
    start += frames
  np.testing.assert_allclose(np.concatenate(audio, axis=1), whole_audio, atol=1e-5)
  assert float(jnp.abs(whole_audio).max()) > 1e-3          # not trivially zero


def test_streamed_chunks_must_be_whole_frames(tiny_config, tiny_variables):
  state = ss.encoder_stream_state(tiny_config, batch_size=1)
  with pytest.raises(ValueError, match="multiple of 320"):
    ss.encode_chunk(tiny_config, tiny_variables, state, jnp.zeros((1, 100)))


def test_bad_configs_are_config_errors():
  with pytest.raises(ConfigError, match="same length"):
    ss.CodecConfig(channel_mults=(2, 4), strides=(2, 4, 5))
  with pytest.raises(ConfigError, match="unknown model keys"):
    ss.CodecConfig.from_dict({"chanels": 8})
  with pytest.raises(ConfigError, match="dtype"):
    ss.CodecConfig(dtype="float16")
