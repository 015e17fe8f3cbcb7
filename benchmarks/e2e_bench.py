"""End to end: the `cpu` presets of every part, a 3 s prompt continued to 10 s at batch 1.

Speed does not depend on what the weights learned, so the parts are built with random weights
(filled on the host; no training needed): the figure is the wall time of `AudioLM.generate`
after one warm-up call (which compiles every shape), i.e. what a user waits per continuation.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.audiolm import AudioLM
from audiolm_jax.codec import soundstream
from audiolm_jax.config import load_config
from audiolm_jax.pretrained import TrainedStage
from audiolm_jax.semantic import tokenizer as tok
from audiolm_jax.semantic import w2v_bert
from benchmarks.codec_bench import fill_like, random_variables


def random_audiolm(preset: str = "cpu") -> AudioLM:
  codec_cfg = soundstream.CodecConfig.from_dict(load_config(f"codec.py:{preset}").model)
  codec = soundstream.Codec(codec_cfg, random_variables(codec_cfg))
  w2v = load_config(f"w2v_bert.py:{preset}")
  w2v_cfg = w2v_bert.W2VBertConfig.from_config(w2v.model)
  params = fill_like(jax.eval_shape(lambda: w2v_bert.init_params(w2v_cfg, jax.random.key(0))), 1)
  extractor = w2v_bert.feature_extractor(w2v_cfg, params, int(w2v.tokenizer.layer))
  k = int(w2v.tokenizer.num_clusters)
  centroids = np.random.default_rng(2).normal(size=(k, extractor.dim)).astype(np.float32)
  tokenizer = tok.SemanticTokenizer(extractor, np.zeros(extractor.dim, np.float32),
                                    np.ones(extractor.dim, np.float32), centroids)
  stages = []
  for i, name in enumerate(("semantic_lm", "coarse_lm", "fine_lm")):
    stage = TrainedStage.from_config(load_config(f"{name}.py:{preset}"), None)
    shapes = jax.eval_shape(lambda stage=stage: stage.model.init(
        jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    stages.append(TrainedStage.from_config(stage.config, fill_like(shapes["params"], 10 + i)))
  return AudioLM(codec, tokenizer, *stages)


def continuation(preset: str = "cpu", prompt_seconds: float = 3.0,
                 total_seconds: float = 10.0) -> dict:
  lm = random_audiolm(preset)
  rate = lm.sample_rate
  t = np.arange(int(prompt_seconds * rate)) / rate
  prompt = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2)
  prompt = prompt.astype(np.float32)[None]
  t0 = time.perf_counter()
  lm.generate(prompt, seconds=total_seconds, rng=jax.random.key(0))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = lm.generate(prompt, seconds=total_seconds, rng=jax.random.key(1))
  wall = time.perf_counter() - t0
  return {"e2e_continuation_10s_wall_s": wall, "e2e_first_call_with_compile_s": first,
          "e2e_audio_seconds": out.audio.shape[1] / rate}
