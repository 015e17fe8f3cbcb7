"""Long inputs tokenize in windows, in bounded memory, agreeing with whole-clip tokens
(issue #15, point 4). The hour-long benchmark is benchmarks/long_inputs.py."""

import os

import jax
import numpy as np
import pytest
import soundfile as sf

import parts  # tests/support
from audiolm_jax import pretrained, tokenize
from audiolm_jax.config import load_config
from audiolm_jax.data.audio import load_audio, resample
from audiolm_jax.semantic import tokenizer as tok
from audiolm_jax.semantic import w2v_bert


def long_clip(seconds, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(16000 * seconds)) / 16000
  f0 = 150 * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
  voiced = sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / 16000) / k for k in range(1, 5))
  gate = (np.sin(2 * np.pi * 3.1 * t) > -0.2).astype(np.float64)
  return (0.3 * voiced * gate + 0.03 * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("parts"))
  parts.make_run_dir(root)
  return root


def test_windowed_acoustic_codes_equal_whole_clip_codes(run_dir):
  codec = pretrained.load_codec(os.path.join(run_dir, "codec"))
  wavs = [long_clip(75), long_clip(31.3, seed=1), long_clip(4, seed=2)]
  whole = tokenize.acoustic_tokens(codec, wavs, chunk_seconds=0)
  windowed = tokenize.acoustic_tokens(codec, wavs, chunk_seconds=10, context_seconds=2)
  for w, c in zip(whole, windowed):
    np.testing.assert_array_equal(w, c)


def test_windows_tile_each_clip_exactly():
  for num in (1, 99, 100, 101, 250, 1001):
    windows = tokenize._windows(num, chunk=100, left=20, right=20)
    cores = [i for _, _, a, b in windows for i in range(a, b)]
    assert cores == list(range(num))
    assert all(0 <= lo <= a < b <= hi <= num and a - lo <= 20 and hi - b <= 20
               for lo, hi, a, b in windows)


def test_windowed_semantic_tokens_agree_with_the_whole_clip(tmp_path):
  """A random-init tiny w2v-BERT, the worst case: its diffuse attention reads the whole clip,
  so the windows change every frame a little (a trained one attends locally:
  benchmarks/long_inputs.py measures it). Misaligned windows would change everything."""
  config = load_config("w2v_bert.py:tiny")
  model_config = w2v_bert.W2VBertConfig.from_config(config.model, config.compute_dtype)
  params = jax.jit(w2v_bert.init_params, static_argnums=0)(model_config,
                                                           jax.random.key(0, impl="rbg"))
  extractor = w2v_bert.feature_extractor(model_config, params, model_config.num_mlm_layers)
  wav = long_clip(60)
  kw = dict(chunk_seconds=10, context_seconds=2)
  whole = tokenize.semantic_features(extractor, [wav], chunk_seconds=0)[0]
  windowed = tokenize.semantic_features(extractor, [wav], **kw)[0]
  assert whole.shape == windowed.shape == (1500, model_config.dim)
  error = np.linalg.norm(windowed - whole, axis=1) / np.linalg.norm(whole, axis=1)
  assert error.max() < 0.05 and error.mean() < 0.025, (error.max(), error.mean())  # 0.028, 0.015
  # Ids of a tokenizer with centroids drawn from the features themselves.
  rng = np.random.default_rng(0)
  centroids = whole[rng.choice(len(whole), 16, replace=False)]
  tokenizer = tok.SemanticTokenizer(extractor, np.zeros(extractor.dim),
                                    np.ones(extractor.dim), centroids)
  same = (tokenize.semantic_tokens(tokenizer, [wav], **kw)[0]
          == tokenize.semantic_tokens(tokenizer, [wav], chunk_seconds=0)[0]).mean()
  assert same > 0.9, same  # measured 0.946


def test_long_files_resample_in_blocks_as_in_one_piece(tmp_path):
  wav48 = np.concatenate([long_clip(40), long_clip(40, seed=3)])  # "48 kHz" content
  path = str(tmp_path / "long48k.flac")
  sf.write(path, np.stack([wav48, 0.5 * wav48], axis=1), 48000)
  got = load_audio(path, 16000)
  mono = sf.read(path, dtype="float32")[0].mean(axis=1)
  reference = resample(mono, 48000, 16000)
  assert got.shape == reference.shape
  np.testing.assert_allclose(got, reference, atol=2e-3)
  assert np.corrcoef(got, reference)[0, 1] > 0.9999
