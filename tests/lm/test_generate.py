"""Tests for lm/generate.py: tiny random-init models end to end, and the window / chunk schemes
pinned with a fake sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm import generate, stages
from audiolm_jax.lm.transformer import Transformer

K = 32  # Codebook sizes of the tiny presets (semantic and acoustic).


def stage_setup(task, random_params, *overrides):
  config = load_config(f"{task}:tiny", list(overrides))
  model = Transformer(stages.transformer_config(config))
  return config, random_params(model, jnp.zeros((1, 4), jnp.int32))


def test_generate_semantic(random_params):
  config, params = stage_setup("semantic_lm", random_params)
  prompt = np.array([[3, 3, 3, 7, 7, 1], [5, 6, 6, 6, 6, 6]])
  # 40 ids from a window of 25 tokens: sliding windows (two compiled shapes).
  ids = generate.generate_semantic(params, config, prompt, 40, jax.random.key(0))
  assert ids.shape == (2, 40) and ids.dtype == np.int32
  np.testing.assert_array_equal(ids[:, :6], prompt)
  assert ids.min() >= 0 and ids.max() < K and len(np.unique(ids[:, 6:])) > 5
  again = generate.generate_semantic(params, config, prompt, 40, jax.random.key(0))
  other = generate.generate_semantic(params, config, prompt, 40, jax.random.key(1))
  np.testing.assert_array_equal(again, ids)
  assert (other[:, 6:] != ids[:, 6:]).mean() > 0.5
  # No prompt: unconditional (the shape of the last window above: nothing to compile).
  empty = generate.generate_semantic(params, config, np.zeros((2, 0), int), 8, jax.random.key(0))
  assert empty.shape == (2, 8) and empty.min() >= 0 and empty.max() < K
  with pytest.raises(DataError):
    generate.generate_semantic(params, config, prompt, 5, jax.random.key(0))
  with pytest.raises(ConfigError, match="context_tokens"):
    generate.generate_semantic(params, config, prompt, 40, jax.random.key(0), context_tokens=25)


def test_generate_coarse(random_params):
  config, params = stage_setup("coarse_lm", random_params)
  rng = np.random.default_rng(0)
  semantic = rng.integers(0, K, (2, 15))
  prompt = rng.integers(0, K, (2, 6, 4))  # All levels of the prompt; 2 are coarse.
  # 30 frames from a window of 20: two windows.
  codes = generate.generate_coarse(params, config, semantic, prompt, 30, jax.random.key(0))
  assert codes.shape == (2, 30, 2) and codes.dtype == np.int32
  np.testing.assert_array_equal(codes[:, :6], prompt[..., :2])
  assert codes.min() >= 0 and codes.max() < K and len(np.unique(codes[:, 6:])) > 5
  np.testing.assert_array_equal(
      generate.generate_coarse(params, config, semantic, prompt, 30, jax.random.key(0)), codes)
  with pytest.raises(DataError, match="semantic_ids"):
    generate.generate_coarse(params, config, semantic[:, :14], prompt, 30, jax.random.key(0))
  with pytest.raises(ConfigError, match="not the CoarseStage"):
    generate.generate_coarse(params, load_config("fine_lm:tiny"), semantic, prompt, 30,
                             jax.random.key(0))


def test_generate_coarse_acoustic_only(random_params):
  config, params = stage_setup("coarse_lm", random_params, ("stage.acoustic_only", "true"))
  codes = generate.generate_coarse(params, config, None, np.zeros((3, 0, 2), int), 12,
                                   jax.random.key(0))
  assert codes.shape == (3, 12, 2) and codes.min() >= 0 and codes.max() < K
  assert (codes[0] != codes[1]).any()  # Rows are sampled independently.


def test_generate_fine(random_params):
  config, params = stage_setup("fine_lm", random_params)
  rng = np.random.default_rng(1)
  coarse = rng.integers(0, K, (2, 20, 2))  # One chunk (test_fine_chunks_... checks several).
  prompt = rng.integers(0, K, (2, 6, 4))  # All levels of the prompt; 2 are fine.
  codes = generate.generate_fine(params, config, coarse, prompt, jax.random.key(0))
  assert codes.shape == (2, 20, 4) and codes.dtype == np.int32
  np.testing.assert_array_equal(codes[..., :2], coarse)
  np.testing.assert_array_equal(codes[:, :6, 2:], prompt[..., 2:])
  assert codes.min() >= 0 and codes.max() < K and len(np.unique(codes[:, 6:, 2:])) > 5
  np.testing.assert_array_equal(
      generate.generate_fine(params, config, coarse, prompt[..., 2:], jax.random.key(0)), codes)
  with pytest.raises(DataError, match="prompt_fine"):
    generate.generate_fine(params, config, coarse, prompt[..., :3], jax.random.key(0))


class FakeSampler:
  """Stands in for `generate._sample`: records each call's prompt and fills the generated
  positions with allowed ids, code `self.code(call, prompt row)` at every position."""

  def __init__(self, code):
    self.code, self.prompts = code, []

  def __call__(self, stage, logits_fn, params, prompt, max_length, rng, logit_mask, *args):
    call = len(self.prompts)
    self.prompts.append(prompt)
    tokens = np.full((len(prompt), max_length), stage.pad_id, np.int32)
    tokens[:, :prompt.shape[1]] = prompt
    for row in range(len(prompt)):
      for i in range(prompt.shape[1], max_length):
        tokens[row, i] = np.flatnonzero(logit_mask[i])[self.code(call, prompt[row])]
    return tokens


def test_coarse_windows_are_aligned_crops(monkeypatch):
  """Each window is what training sees: the semantic frames of its span, then its known coarse
  frames (at most the context, starting on a semantic frame), then the generated ones."""
  config = load_config("coarse_lm:tiny")  # Windows of 20 frames, 10 semantic frames.
  stage = stages.stage_from_config(config)
  fake = FakeSampler(lambda call, row: call)  # Window w generates code w everywhere.
  monkeypatch.setattr(generate, "_sample", fake)
  semantic = np.arange(31)[None]  # No duplicates: the prefix shows the span exactly.
  prompt = np.full((1, 5, 2), 31)
  codes = generate.generate_coarse(None, config, semantic, prompt, 61, jax.random.key(0),
                                   context_frames=9)[0]
  known, spans = 5, []
  for call, window_prompt in enumerate(fake.prompts):
    row = window_prompt[0]
    sep = stage.prefix_length - 1
    ids = row[:sep][row[:sep] < K]  # The semantic ids (before SEP: the rest is PAD and BOS).
    start, stop = 2 * ids[0], min(2 * (ids[-1] + 1), 61)
    np.testing.assert_array_equal(ids, np.arange(ids[0], ids[-1] + 1))
    context = (len(row) - stage.prefix_length) // 2
    np.testing.assert_array_equal(stage.coarse_codes(window_prompt, context)[0],
                                  codes[start:start + context])
    assert start + context == known and (call == 0 or 9 <= context <= 10)
    assert stop - start <= 20 and (codes[known:stop] == call).all()
    spans.append((start, stop))
    known = stop
  assert spans == [(0, 20), (10, 30), (20, 40), (30, 50), (40, 60), (50, 61)]
  np.testing.assert_array_equal(codes[:5], 31)


def test_fine_chunks_keep_their_coarse_codes_and_prompt(monkeypatch):
  config = load_config("fine_lm:tiny")  # Chunks of 20 frames.
  stage = stages.stage_from_config(config)
  # A chunk's fine codes repeat the first coarse code of its prompt row.
  fake = FakeSampler(lambda call, row: row[np.argmax(row == stage.vocab.bos_id) + 1])
  monkeypatch.setattr(generate, "_sample", fake)
  rng = np.random.default_rng(2)
  coarse = rng.integers(0, K, (3, 85, 2))
  prompt = rng.integers(0, K, (3, 25, 2))
  codes = generate.generate_fine(None, config, coarse, prompt, jax.random.key(0))
  # Chunks [0, 20) (all prompt), [20, 40) (5 prompt frames), [40, 60), [60, 80) and [80, 85):
  # 3 calls, the two full chunks without prompt in one batch of 6 rows.
  assert sorted(p.shape for p in fake.prompts) == [(3, stage.prefix_length),
                                                   (3, stage.prefix_length + 5 * 2),
                                                   (6, stage.prefix_length)]
  np.testing.assert_array_equal(codes[..., :2], coarse)
  np.testing.assert_array_equal(codes[:, :25, 2:], prompt)
  for start in (20, 40, 60, 80):
    fine = codes[:, max(start, 25):start + 20, 2:]
    np.testing.assert_array_equal(fine, np.broadcast_to(coarse[:, start, :1, None], fine.shape))
