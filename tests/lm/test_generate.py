"""Tests for lm/generate.py: tiny random-init models end to end, the window / chunk schemes
pinned with a fake sampler, and the stage-1 -> stage-2 hand-off in time (deduplicated tokens
laid out as training saw them)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm import generate
from audiolm_jax.lm.stages import remove_consecutive_duplicates

K = 32  # Codebook sizes of the tiny presets (semantic and acoustic).


def stage_setup(task, random_params, *overrides):
  config = load_config(f"{task}:tiny", list(overrides))
  skeleton = pretrained.TrainedStage.from_config(config, None)
  params = random_params(skeleton.model, jnp.zeros((1, 4), jnp.int32))
  return pretrained.TrainedStage.from_config(config, params)


def test_generate_semantic(random_params):
  lm = stage_setup("semantic_lm", random_params)
  prompt = np.array([[3, 3, 3, 7, 7, 1], [5, 6, 6, 6, 6, 6]])
  # 30 tokens from windows of 25 tokens: sliding windows (two compiled shapes).
  tokens = generate.generate_semantic(lm, prompt, 30, jax.random.key(0))
  assert tokens.shape == (2, 30) and tokens.dtype == np.int32
  assert tokens.min() >= 0 and tokens.max() < K and len(np.unique(tokens)) > 5
  again = generate.generate_semantic(lm, prompt, 30, jax.random.key(0))
  other = generate.generate_semantic(lm, prompt, 30, jax.random.key(1))
  np.testing.assert_array_equal(again, tokens)
  assert (other != tokens).mean() > 0.5
  # No prompt: unconditional.
  empty = generate.generate_semantic(lm, np.zeros((2, 0), int), 8, jax.random.key(0))
  assert empty.shape == (2, 8) and empty.min() >= 0 and empty.max() < K
  with pytest.raises(ConfigError, match="context_tokens"):
    generate.generate_semantic(lm, prompt, 40, jax.random.key(0), context_tokens=25)
  with pytest.raises(ConfigError, match="frames_per_token"):
    generate.generate_semantic(lm, prompt, 40, jax.random.key(0), frames_per_token=0.5)
  with pytest.raises(ConfigError, match="SemanticStage"):
    generate.generate_semantic(stage_setup("fine_lm", random_params), prompt, 4,
                               jax.random.key(0))


def test_semantic_timeline_lays_tokens_out_at_their_rate():
  prompt = np.array([[9, 9, 4]])
  tokens = np.array([[1, 2, 3, 4, 5]])
  line = generate.semantic_timeline(prompt, tokens, 1.5, 10)
  np.testing.assert_array_equal(line, [[9, 9, 4, 1, 1, 2, 3, 3, 4, 5]])
  # n tokens cover n L frames; a timeline of whole runs deduplicates back to the tokens.
  assert generate.tokens_for_frames(7, 1.5) == 5
  np.testing.assert_array_equal(remove_consecutive_duplicates(line[0, 3:]), tokens[0])
  with pytest.raises(DataError, match="do not cover"):
    generate.semantic_timeline(prompt, tokens, 1.5, 12)


def test_generate_coarse(random_params):
  lm = stage_setup("coarse_lm", random_params)
  rng = np.random.default_rng(0)
  semantic = rng.integers(0, K, (2, 15))
  prompt = rng.integers(0, K, (2, 6, 4))  # All levels of the prompt; 2 are coarse.
  # 30 frames from a window of 20: two windows.
  codes = generate.generate_coarse(lm, semantic, prompt, 30, jax.random.key(0))
  assert codes.shape == (2, 30, 2) and codes.dtype == np.int32
  np.testing.assert_array_equal(codes[:, :6], prompt[..., :2])
  assert codes.min() >= 0 and codes.max() < K and len(np.unique(codes[:, 6:])) > 5
  np.testing.assert_array_equal(
      generate.generate_coarse(lm, semantic, prompt, 30, jax.random.key(0)), codes)
  with pytest.raises(DataError, match="semantic_ids"):
    generate.generate_coarse(lm, semantic[:, :14], prompt, 30, jax.random.key(0))
  with pytest.raises(ConfigError, match="CoarseStage"):
    generate.generate_coarse(stage_setup("fine_lm", random_params), semantic, prompt, 30,
                             jax.random.key(0))


def test_generate_coarse_acoustic_only(random_params):
  lm = stage_setup("coarse_lm", random_params, ("stage.acoustic_only", "true"))
  codes = generate.generate_coarse(lm, None, np.zeros((3, 0, 2), int), 12, jax.random.key(0))
  assert codes.shape == (3, 12, 2) and codes.min() >= 0 and codes.max() < K
  assert (codes[0] != codes[1]).any()  # Rows are sampled independently.


def test_generate_fine(random_params):
  lm = stage_setup("fine_lm", random_params)
  rng = np.random.default_rng(1)
  coarse = rng.integers(0, K, (2, 20, 2))  # One chunk (test_fine_chunks_... checks several).
  prompt = rng.integers(0, K, (2, 6, 4))  # All levels of the prompt; 2 are fine.
  codes = generate.generate_fine(lm, coarse, prompt, jax.random.key(0))
  assert codes.shape == (2, 20, 4) and codes.dtype == np.int32
  np.testing.assert_array_equal(codes[..., :2], coarse)
  np.testing.assert_array_equal(codes[:, :6, 2:], prompt[..., 2:])
  assert codes.min() >= 0 and codes.max() < K and len(np.unique(codes[:, 6:, 2:])) > 5
  np.testing.assert_array_equal(
      generate.generate_fine(lm, coarse, prompt[..., 2:], jax.random.key(0)), codes)
  with pytest.raises(DataError, match="prompt_fine"):
    generate.generate_fine(lm, coarse, prompt[..., :3], jax.random.key(0))


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
  lm = pretrained.TrainedStage.from_config(load_config("coarse_lm:tiny"), None)
  stage = lm.stage  # Windows of 20 frames, 10 semantic frames.
  fake = FakeSampler(lambda call, row: call)  # Window w generates code w everywhere.
  monkeypatch.setattr(generate, "_sample", fake)
  semantic = np.arange(31)[None]  # No duplicates: the prefix shows the span exactly.
  prompt = np.full((1, 5, 2), 31)
  codes = generate.generate_coarse(lm, semantic, prompt, 61, jax.random.key(0),
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
  lm = pretrained.TrainedStage.from_config(load_config("fine_lm:tiny"), None)
  stage = lm.stage  # Chunks of 20 frames.
  # A chunk's fine codes repeat the first coarse code of its prompt row.
  fake = FakeSampler(lambda call, row: row[np.argmax(row == stage.vocab.bos_id) + 1])
  monkeypatch.setattr(generate, "_sample", fake)
  rng = np.random.default_rng(2)
  coarse = rng.integers(0, K, (3, 85, 2))
  prompt = rng.integers(0, K, (3, 25, 2))
  codes = generate.generate_fine(lm, coarse, prompt, jax.random.key(0))
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


def test_semantic_windows_are_no_longer_than_training_sequences(monkeypatch):
  """A training sequence holds dedup(max_frames raw frames), about max_frames / L tokens; a
  stage-1 window must not hold more (it held max_frames before)."""
  lm = pretrained.TrainedStage.from_config(load_config("semantic_lm:tiny"), None)
  fake = FakeSampler(lambda call, row: call % 5)
  monkeypatch.setattr(generate, "_sample", fake)
  prompt = np.array([[1, 1, 2, 2, 2, 3, 4, 4]])
  tokens = generate.generate_semantic(lm, prompt, 40, jax.random.key(0), frames_per_token=1.25)
  assert tokens.shape == (1, 40)
  window = generate.window_tokens(lm.stage, 1.25)
  assert window == int(lm.stage.max_frames / 1.25) < lm.stage.max_frames
  assert all(p.shape[1] <= 1 + window for p in fake.prompts)
  generated = [len(p[0]) for p in fake.prompts]
  assert len(generated) > 1  # Several windows, each within a training sequence's length.


def test_coarse_windows_get_the_content_training_paired_with_their_span(monkeypatch):
  """Stage 1 emits deduplicated tokens; laid out at L frames each, a coarse window of acoustic
  frames [a, b) is conditioned on about (b - a) / (r L) tokens, as a training crop of that span
  was. One token per frame (the old layout) gave it (b - a) / r: more content than training
  ever paired with the span, an error that grows window after window."""
  lm = pretrained.TrainedStage.from_config(load_config("coarse_lm:tiny"), None)
  stage = lm.stage
  fake = FakeSampler(lambda call, row: 0)
  monkeypatch.setattr(generate, "_sample", fake)
  per_token, frames = 1.6, 61
  r = stage.frames_per_semantic_frame
  prompt_ids = np.array([[3, 3, 5, 5]])  # 2 tokens in 4 frames
  tokens = (np.arange(100)[None] % 31).astype(np.int32)  # no two equal neighbours
  semantic = generate.semantic_timeline(prompt_ids, tokens[:, :generate.tokens_for_frames(
      -(-frames // r) - 4, per_token)], per_token, -(-frames // r))
  generate.generate_coarse(lm, semantic, np.zeros((1, 8, 2), np.int32), frames,
                           jax.random.key(0))
  assert len(fake.prompts) > 2
  known, window, context = 8, stage.max_frames, stage.max_frames // 2
  for call, window_prompt in enumerate(fake.prompts):
    start = max(0, known - context) // r * r   # the window scheme of generate_coarse
    stop = min(start + window, frames)
    known = stop
    if start < 4 * r:  # Windows that hold the prompt's exact (not laid-out) frames.
      continue
    row = window_prompt[0, :stage.prefix_length - 1]
    ids = row[row < stage.semantic_codebook_size]
    span = -(-stop // r) - start // r          # semantic frames of the window's span
    assert abs(len(ids) - span / per_token) <= 1.0, (call, len(ids), span / per_token)
    assert len(ids) < span                     # one token per frame would give `span`


def test_semantic_nll_prefers_the_sequences_the_model_was_given(random_params):
  """Teacher-forced NLL per token, deduplicated as in training, in windows of max_frames."""
  from audiolm_jax.lm.scoring import semantic_nll
  lm = stage_setup("semantic_lm", random_params)
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, K, 60), np.repeat(rng.integers(0, K, 10), 3), np.zeros(0, int)]
  nll = semantic_nll(lm, seqs, batch_size=2)
  assert nll.shape == (3,) and np.isfinite(nll[:2]).all() and np.isnan(nll[2])
  assert 0 < nll[0] < 10
  # Duplicates do not count: a run-length-repeated sequence scores as its deduplicated self.
  again = semantic_nll(lm, [remove_consecutive_duplicates(seqs[1])])
  np.testing.assert_allclose(again[0], nll[1], rtol=1e-5)
