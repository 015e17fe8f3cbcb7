"""Codec benchmarks: encode / decode / round trip, streaming latency, one full training step.

Reference: the `paper` SoundStream preset (C=32, strides 2,4,5,8, 12 x 1024) at batch 8 of 1 s.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from audiolm_jax.codec import soundstream
from audiolm_jax.config import load_config
from benchmarks.timing import peak_rss_mib, time_fn


def codec_config(preset: str = "paper") -> soundstream.CodecConfig:
  cfg = load_config(f"codec.py:{preset}")
  return soundstream.CodecConfig.from_dict(cfg.model)


def fill_like(shapes, seed: int, integer_fill: int = 0):
  """Arrays of the (abstract, possibly boxed) `shapes`, filled on the host: floats with
  fan-in-scaled normal noise, integers with `integer_fill` (no slow random-init compile)."""
  rng = np.random.default_rng(seed)

  def fill(s):
    if np.issubdtype(s.dtype, np.floating):
      scale = 1.0 / np.sqrt(max(1, np.prod(s.shape[:-1])))
      return jnp.asarray(rng.normal(0, scale, s.shape).astype(s.dtype))
    return jnp.full(s.shape, integer_fill, s.dtype)

  return jax.tree.map(fill, nn.unbox(shapes))


def random_variables(config: soundstream.CodecConfig, seed: int = 0):
  """Codec variables with the model's shapes and random weights (codebooks marked ready)."""
  shapes = jax.eval_shape(lambda: soundstream.init(config, jax.random.key(seed)))
  return fill_like(shapes, seed, integer_fill=1)


def throughput(preset: str = "paper", batch: int = 8, seconds: float = 1.0,
               runs: int = 5) -> dict:
  config = codec_config(preset)
  variables = random_variables(config)
  samples = int(seconds * config.sample_rate)
  wav = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (batch, samples)), jnp.float32)
  codes = soundstream.encode(config, variables, wav)
  audio_seconds = batch * seconds
  enc = time_fn(lambda: soundstream.encode(config, variables, wav), runs=runs)
  dec = time_fn(lambda: soundstream.decode(config, variables, codes), runs=runs)
  rt = time_fn(lambda: soundstream.decode(config, variables,
                                          soundstream.encode(config, variables, wav)), runs=runs)
  return {"codec_encode_audio_s_per_s": audio_seconds / enc.median,
          "codec_decode_audio_s_per_s": audio_seconds / dec.median,
          "codec_roundtrip_audio_s_per_s": audio_seconds / rt.median,
          "codec_timing": {"encode": enc.as_dict(), "decode": dec.as_dict(),
                           "roundtrip": rt.as_dict()},
          "codec_rss_mib": peak_rss_mib()}


def stream_latency(preset: str = "paper", frames: int = 50) -> dict:
  """Milliseconds to decode one 20 ms frame (one code vector) at batch 1, streaming state kept."""
  config = codec_config(preset)
  variables = random_variables(config)
  state = soundstream.decoder_stream_state(config, 1)
  codes = jnp.zeros((1, 1, config.num_quantizers), jnp.int32)
  box = {"state": state}

  def one():
    wav, box["state"] = soundstream.decode_chunk(config, variables, box["state"], codes)
    return wav

  t = time_fn(one, runs=frames)
  return {"codec_stream_frame_latency_ms": 1000 * t.median,
          "codec_stream_timing": t.as_dict()}


def scaling(preset: str = "paper", batch: int = 8, log: Callable[[str], None] = print) -> list:
  """Encode + decode throughput vs. clip length."""
  rows = []
  for seconds in (0.5, 1.0, 2.0, 4.0, 8.0):
    r = throughput(preset, batch=batch, seconds=seconds, runs=3)
    rows.append({"seconds": seconds, "roundtrip_audio_s_per_s": r["codec_roundtrip_audio_s_per_s"],
                 "encode_audio_s_per_s": r["codec_encode_audio_s_per_s"],
                 "decode_audio_s_per_s": r["codec_decode_audio_s_per_s"],
                 "rss_mib": r["codec_rss_mib"]})
    log(f"codec {seconds} s: {rows[-1]}")
  return rows


def train_step(preset: str = "paper", batch: int = 8, seconds: float = 1.0,
               runs: int = 3) -> dict:
  """One full codec training step through the shared trainer: generator (reconstruction,
  adversarial, feature matching, commitment) + discriminator update, discriminators active."""
  import tempfile
  from audiolm_jax.train import state as state_lib
  from audiolm_jax.train.trainer import Trainer
  config = load_config(f"codec.py:{preset}", [
      ("batch_size", str(batch)), ("data.crop_seconds", str(seconds)),
      ("disc_warmup_steps", "0"), ("total_steps", "1000")])
  with tempfile.TemporaryDirectory() as workdir:
    trainer = Trainer(config, workdir)
    state, _, _ = state_lib.sharded_init(trainer.init_fn, config.seed, trainer.mesh)
    step, _ = trainer.compile_steps()
    spec = trainer.task.batch_spec(batch)
    rng = np.random.default_rng(0)
    batch_data = {}
    for k, s in spec.items():
      if np.issubdtype(s.dtype, np.floating) and len(s.shape) == 2:
        batch_data[k] = jnp.asarray(rng.uniform(-0.5, 0.5, s.shape).astype(s.dtype))
      else:
        batch_data[k] = jnp.ones(s.shape, s.dtype)
    box = {"state": state}

    def run():
      box["state"], metrics = step(box["state"], batch_data)
      return metrics

    t = time_fn(run, runs=runs)
  return {"codec_train_step_s": t.median, "codec_train_timing": t.as_dict(),
          "codec_train_rss_mib": peak_rss_mib()}
