"""Tests for lm/sampling.py, driven by fixed fake logits and by a tiny Transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import load_config

from audiolm_jax.lm.sampling import filter_logits, sample
from audiolm_jax.lm.transformer import CachedLogits, FullPassLogits, Transformer


def table_logits(table, tokens, position):
  """A fake model: the logits predicting sequence position p are `table[..., p, :]`.

  `table` is `[N, V]` (shared by all rows) or `[B, N, V]`; the "cache" is the next position.
  """
  batch, length = tokens.shape
  rows = jnp.minimum(position + 1 + jnp.arange(length), table.shape[-2] - 1)
  logits = jnp.take(table, rows, axis=-2)
  return jnp.broadcast_to(logits, (batch, length, table.shape[-1])), position + length


def run(table, prompt, key=0, **kwargs):
  kwargs.setdefault("max_length", table.shape[-2])
  out = sample(table_logits, jnp.asarray(table, jnp.float32), jnp.int32(0),
               jnp.asarray(prompt), jax.random.key(key), **kwargs)
  return np.asarray(out.tokens), np.asarray(out.lengths)


def test_greedy_picks_the_argmax_and_keeps_the_prompt():
  table = np.random.default_rng(0).normal(size=(12, 9))
  prompt = np.array([[1, 2, 3], [4, 5, 6]])
  tokens, lengths = run(table, prompt, temperature=0.0)
  np.testing.assert_array_equal(tokens[:, :3], prompt)
  np.testing.assert_array_equal(tokens[:, 3:], np.broadcast_to(table[3:].argmax(-1), (2, 9)))
  np.testing.assert_array_equal(lengths, [12, 12])


def _draws(logits, batch=2000, **kwargs):
  """The ids drawn for position 1 by `batch` rows, all with the logits `logits [V]`."""
  table = np.stack([np.zeros_like(logits), logits])
  tokens, _ = run(table, np.zeros((batch, 1), int), key=1, **kwargs)
  return tokens[:, 1]


def test_top_k_keeps_the_k_most_likely_ids():
  logits = np.array([0.0, 1.0, 2.0, 3.0, 4.0, -1.0, 0.5])
  drawn = _draws(logits, top_k=3)
  assert set(drawn) == {2, 3, 4}
  # Frequencies follow the renormalised distribution of the kept ids.
  want = np.exp([2.0, 3.0, 4.0]) / np.exp([2.0, 3.0, 4.0]).sum()
  np.testing.assert_allclose([np.mean(drawn == i) for i in (2, 3, 4)], want, atol=0.04)


@pytest.mark.parametrize("top_p, kept", [(0.5, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2})])
def test_top_p_keeps_the_nucleus(top_p, kept):
  logits = np.log([0.5, 0.3, 0.15, 0.05])
  assert set(_draws(logits, top_p=top_p)) == kept


def test_filter_logits_combines_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.1, 0.4, 0.2, 0.3]]))
  kept = np.isfinite(filter_logits(logits, top_k=3, top_p=0.6))
  np.testing.assert_array_equal(kept, [[False, True, False, True]])
  np.testing.assert_array_equal(np.isfinite(filter_logits(logits)), [[True] * 4])


def test_logit_masks_forbid_invalid_ids():
  rng = np.random.default_rng(3)
  table = rng.normal(size=(8, 6))
  mask = rng.random((8, 6)) < 0.5
  mask[np.arange(8), table.argmax(-1)] = False  # The best id is always forbidden.
  mask[:, 0] = True  # Something is always allowed.
  greedy, _ = run(table, np.zeros((1, 1), int), temperature=0.0, logit_mask=mask)
  np.testing.assert_array_equal(greedy[0, 1:], np.where(mask, table, -np.inf)[1:].argmax(-1))
  drawn, _ = run(table, np.zeros((500, 1), int), temperature=2.0, logit_mask=mask)
  assert mask[np.arange(1, 8), drawn[:, 1:]].all()
  # Per-row masks [B, N, V]: row 1 may only ever produce id 5.
  per_row = np.stack([mask, np.zeros_like(mask)])
  per_row[1, :, 5] = True
  drawn, _ = run(table, np.zeros((2, 1), int), logit_mask=per_row)
  assert (drawn[1, 1:] == 5).all() and mask[np.arange(1, 8), drawn[0, 1:]].all()


def test_same_key_same_output_other_key_other_output():
  table = np.zeros((40, 50))  # Uniform: every draw depends on the key only.
  prompt = np.zeros((3, 2), int)
  first, _ = run(table, prompt, key=7, top_p=0.9)
  again, _ = run(table, prompt, key=7, top_p=0.9)
  other, _ = run(table, prompt, key=8, top_p=0.9)
  np.testing.assert_array_equal(first, again)
  assert (first != other).mean() > 0.5
  assert (first[0] != first[1]).any()  # Rows draw independently.


def test_eos_finishes_a_row_and_pads_the_rest():
  eos, pad = 9, 8
  table = np.zeros((2, 12, 10))
  table[:, :, 3] = 5.0  # Greedy picks 3 ...
  table[0, 5, eos] = 10.0  # ... except row 0 at position 5, which ends.
  tokens, lengths = run(table, np.full((2, 2), 1), temperature=0.0, eos_id=eos, pad_id=pad)
  np.testing.assert_array_equal(tokens[0], [1, 1, 3, 3, 3, eos] + [pad] * 6)
  np.testing.assert_array_equal(tokens[1], [1, 1] + [3] * 10)
  np.testing.assert_array_equal(lengths, [6, 12])
  all_eos = np.zeros((6, 10))
  all_eos[:, eos] = 1.0
  tokens, lengths = run(all_eos, np.full((1, 2), 1), temperature=0.0, eos_id=eos, pad_id=pad)
  np.testing.assert_array_equal(tokens, [[1, 1, eos, pad, pad, pad]])
  np.testing.assert_array_equal(lengths, [3])


def test_rejects_bad_lengths():
  with pytest.raises(ValueError, match="prompt length"):
    run(np.zeros((4, 3)), np.zeros((1, 5), int))
  with pytest.raises(ValueError, match="logit_mask"):
    run(np.zeros((4, 3)), np.zeros((1, 1), int), logit_mask=np.ones((3, 3), bool))


def test_transformer_sampling_with_and_without_cache(random_params):
  """A tiny coarse-stage model: cached and full-pass sampling agree token for token, the
  (left-padded) prompt comes back unchanged, and every sampled id is in its level's range."""
  config = load_config("coarse_lm:tiny")
  stage, model_config = pretrained.stage_from_config(config), pretrained.transformer_config(config)
  model = Transformer(model_config)
  rng = np.random.default_rng(0)
  prompt = stage.make_prompt([rng.integers(0, 32, 10), rng.integers(0, 32, 3)],
                             rng.integers(0, 32, (2, 2, 2)))  # 2 coarse frames of prompt
  params = random_params(model, jnp.asarray(prompt))
  length = stage.prefix_length + 8 * stage.num_coarse  # 6 frames to generate
  outputs = []
  for callback in (CachedLogits(model), FullPassLogits(model)):
    out = sample(callback, params, callback.init_state(2, length), jnp.asarray(prompt),
                 jax.random.key(4), max_length=length, temperature=stage.temperature,
                 logit_mask=jnp.asarray(stage.logit_mask()), eos_id=stage.eos_id,
                 pad_id=stage.pad_id)
    outputs.append(np.asarray(out.tokens))
  np.testing.assert_array_equal(outputs[0], outputs[1])
  tokens = outputs[0]
  np.testing.assert_array_equal(tokens[:, :prompt.shape[1]], prompt)
  codes = stage.coarse_codes(tokens, 8)
  assert codes.shape == (2, 8, 2) and codes.min() >= 0 and codes.max() < 32
  assert len(np.unique(codes)) > 4  # Sampled at temperature 0.8, not a constant.
