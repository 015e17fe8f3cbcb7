"""Level-sliced output layers and length-aware cached attention: equal to the full versions.

* Training (`tasks.stages.level_sliced_loss`): the coarse and fine stages score each learned
  target against its level's K ids; logits, loss, accuracy and gradients equal the masked
  full-vocabulary ones.
* Sampling (`sample(..., vocab_starts=, vocab_width=)`): windows hold every allowed id; greedy
  decoding draws the same tokens as the full-vocabulary sampler, with and without the cache.
* Attention over a cache (`layers.attention.cached_attention`): reading a prefix bucket equals
  reading the whole buffer, at every fill; cached decoding equals the full pass across buckets.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import load_config
from audiolm_jax.layers.attention import cache_buckets, cached_attention, dot_product_attention
from audiolm_jax.lm import stages
from audiolm_jax.lm.sampling import sample
from audiolm_jax.lm.transformer import (CachedLogits, FullPassLogits, Transformer,
                                        TransformerConfig, VocabWindow)
from audiolm_jax.tasks.stages import level_sliced_loss, weighted_cross_entropy

SLICED = [("coarse_lm", ()), ("coarse_lm", (("stage.acoustic_only", "True"),)), ("fine_lm", ())]


def _setup(task, overrides=()):
  config = load_config(f"{task}:tiny", list(overrides))
  return pretrained.stage_from_config(config), pretrained.transformer_config(config)


def _batch(stage, rng):
  """Three training rows: a full crop, a short one (padding inside the span) and a random
  sequence whose weights are cleared (a row that must contribute nothing)."""
  k_s = getattr(stage, "semantic_codebook_size", 4)
  q = getattr(stage, "num_quantizers", getattr(stage, "num_coarse", 1))
  rows = []
  for frames in (stage.max_frames, stage.max_frames // 2 + 1):
    rows.append(stage.make_example(rng.integers(0, k_s, frames // 2),
                                   rng.integers(0, stage.acoustic_codebook_size, (frames, q))))
  inputs = np.stack([r.inputs for r in rows] + [rng.integers(0, stage.vocab_size,
                                                             stage.sequence_length)])
  targets = np.stack([r.targets for r in rows] + [np.roll(inputs[-1], -1)])
  weights = np.stack([r.weights for r in rows] + [np.zeros(stage.sequence_length)])
  return jnp.asarray(inputs), jnp.asarray(targets), jnp.asarray(weights, jnp.float32)


@pytest.mark.parametrize("task, overrides", SLICED)
def test_level_sliced_loss_equals_the_masked_full_vocabulary_loss(task, overrides,
                                                                 random_params):
  stage, config = _setup(task, overrides)
  span = stage.level_span()
  model = Transformer(config)
  inputs, targets, weights = _batch(stage, np.random.default_rng(0))
  params = random_params(model, inputs)
  mask = jnp.asarray(stage.target_logit_mask())
  # Every weighted target lies in the span, and is a code of the span's level there.
  outside = np.ones(stage.sequence_length, bool)
  outside[span.start:span.stop] = False
  assert not np.asarray(weights)[:, outside].any()
  for q in range(span.levels):
    rows = np.asarray(mask)[span.start + q:span.stop:span.levels]
    lo = span.first_id + q * span.width
    assert rows[:, lo:lo + span.width].all() and rows.sum() == rows.shape[0] * span.width

  def full(params):
    logits = model.apply({"params": params}, inputs)
    return weighted_cross_entropy(logits, targets, weights, mask), logits

  def sliced(params):
    logits = model.apply({"params": params}, inputs, output=span)
    return level_sliced_loss(model, params, inputs, targets, weights, span), logits

  grad = lambda f: jax.value_and_grad(lambda p: f(p)[0][0], has_aux=False)
  ((loss, metrics), logits), ((s_loss, s_metrics), s_logits), (g_loss, g), (gs_loss, gs) = (
      jax.jit(lambda p: (full(p), sliced(p), grad(full)(p), grad(sliced)(p)))(params))
  # Logits of each span position over its level's ids.
  b, n = inputs.shape
  window = np.asarray(logits)[:, span.start:span.stop].reshape(
      b, span.frames, span.levels, -1)
  for q in range(span.levels):
    lo = span.first_id + q * span.width
    np.testing.assert_allclose(s_logits[:, :, q], window[:, :, q, lo:lo + span.width],
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s_loss, loss, rtol=1e-5)
  np.testing.assert_allclose(s_metrics["accuracy"], metrics["accuracy"], atol=1e-6)
  assert s_metrics["tokens"] == metrics["tokens"] == np.asarray(weights).sum()
  np.testing.assert_allclose(gs_loss, g_loss, rtol=1e-5)
  for a, e in zip(jax.tree.leaves(gs), jax.tree.leaves(g)):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
  # Not trivially equal: the loss moves with the targets.
  shuffled = targets.at[0].set(jnp.roll(targets[0], span.levels))
  other = level_sliced_loss(model, params, inputs, shuffled, weights, span)[0]
  assert abs(float(other) - float(loss)) > 1e-3


@pytest.mark.parametrize("task, overrides", SLICED + [("semantic_lm", ())])
def test_vocab_windows_hold_every_allowed_id(task, overrides):
  stage, _ = _setup(task, overrides)
  mask = stage.logit_mask()
  starts, width = stage.vocab_windows(), stage.vocab_width
  first = getattr(stage, "prefix_length", 1)
  assert (starts[first:] >= 0).all()
  for i, start in enumerate(starts):
    if start < 0:
      assert i < first  # Only conditioning positions have no window.
      continue
    inside = np.zeros(stage.vocab_size, bool)
    inside[start:start + width] = True
    assert not (mask[i] & ~inside).any() and start + width <= stage.vocab_size
  assert width == (stage.vocab_size if task == "semantic_lm" else stage.acoustic_codebook_size)


@pytest.mark.parametrize("task, overrides", SLICED[::2])
def test_sliced_sampling_draws_what_the_full_sampler_draws(task, overrides, random_params):
  """Greedy decoding (the argmax among allowed ids) is the same token for token; at a
  temperature, every drawn id is in its window."""
  stage, config = _setup(task, overrides)
  model = Transformer(config)
  rng = np.random.default_rng(1)
  if isinstance(stage, stages.FineStage):
    prompt = stage.make_prompt(rng.integers(0, 32, (2, stage.max_frames, stage.num_coarse)))
    length = stage.sequence_length
  else:
    semantic = None if stage.acoustic_only else [rng.integers(0, 32, 5), rng.integers(0, 32, 9)]
    prompt = stage.make_prompt(semantic, rng.integers(0, 32, (2, 2, stage.num_coarse)))
    length = prompt.shape[1] + 6 * stage.num_coarse
  params = random_params(model, jnp.asarray(prompt))
  starts = jnp.asarray(np.maximum(stage.vocab_windows(length), 0))
  mask = jnp.asarray(stage.logit_mask(length))
  outputs = {}
  # Temperature is traced: 3 compilations (full-pass sampling is checked sliced only).
  for callback, sliced in ((CachedLogits(model), False), (CachedLogits(model), True),
                           (FullPassLogits(model), True)):
    for temperature in (0.0, 1.0):
      extra = dict(vocab_starts=starts, vocab_width=stage.vocab_width) if sliced else {}
      out = sample(callback, params, callback.init_state(2, length), jnp.asarray(prompt),
                   jax.random.key(3), max_length=length, temperature=temperature,
                   logit_mask=mask, pad_id=stage.pad_id, **extra)
      outputs[type(callback).__name__, sliced, temperature] = np.asarray(out.tokens)
  greedy = outputs["CachedLogits", False, 0.0]
  for (_, sliced, temperature), tokens in outputs.items():
    np.testing.assert_array_equal(tokens[:, :prompt.shape[1]], prompt)
    if temperature == 0.0:
      np.testing.assert_array_equal(tokens, greedy)
    else:
      assert mask[np.arange(length), tokens].all()  # Every id allowed at its position.
  np.testing.assert_array_equal(outputs["CachedLogits", True, 1.0],
                                outputs["FullPassLogits", True, 1.0])
  assert len(np.unique(outputs["CachedLogits", True, 1.0][:, prompt.shape[1]:])) > 4


def test_vocab_window_head_is_a_slice_of_the_full_logits(random_params):
  config = TransformerConfig(vocab_size=40, d_model=32, num_layers=1, num_heads=2, head_dim=16,
                             mlp_dim=64, dropout_rate=0.0, max_len=16, pad_id=0)
  model = Transformer(config)
  tokens = jnp.asarray(np.random.default_rng(2).integers(1, 40, (2, 9)))
  params = random_params(model, tokens)
  full = model.apply({"params": params}, tokens)
  head = jax.jit(lambda p, position, start: model.apply(
      {"params": p}, tokens, output=VocabWindow(position, start, 10)))
  for position, start in ((8, 0), (3, 17), (0, 30)):
    window = head(params, position, start)
    np.testing.assert_allclose(window, full[:, position, start:start + 10], atol=1e-5)


def test_cached_attention_reads_only_the_filled_prefix():
  assert cache_buckets(4121) == (128, 256, 512, 1024, 2048, 4096, 4121)
  assert cache_buckets(100) == (100,) and cache_buckets(256) == (128, 256)
  rng = np.random.default_rng(3)
  b, h, t, s, e = 2, 3, 2, 50, 8
  q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32)
             for shape in ((b, h, t, e), (b, h, s, e), (b, h, s, e)))
  bias = jnp.asarray(rng.normal(size=(1, h, t, s)), jnp.float32)
  fn = jax.jit(lambda q, k, v, bias, mask, filled: (
      cached_attention(q, k, v, bias, mask, filled, smallest=4),
      dot_product_attention(q, k, v, bias, mask)))
  for filled in (2, 4, 5, 8, 9, 17, 33, 49, 50):
    positions = filled - t + jnp.arange(t)  # The last t written slots are the queries.
    visible = jnp.asarray(rng.random((b, s)) < 0.7) | (jnp.arange(s) == positions[-1])
    mask = (jnp.arange(s)[None, :] <= positions[:, None])[None, None] & visible[:, None, None]
    mask = mask | (jnp.arange(s)[None, :] == positions[:, None])[None, None]
    got, want = fn(q, k, v, bias, mask, jnp.int32(filled))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_cached_decoding_equals_the_full_pass_across_buckets(random_params):
  """300 tokens decoded one by one in buffers of 301 and 700 slots (buckets 128, 256, 301 and
  128 .. 512, 700): the logits equal the full causal pass at every position."""
  config = TransformerConfig(vocab_size=24, d_model=32, num_layers=2, num_heads=2, head_dim=16,
                             mlp_dim=64, dropout_rate=0.0, relpos_num_buckets=8,
                             relpos_max_distance=64, max_len=300, pad_id=0)
  rng = np.random.default_rng(4)
  tokens = rng.integers(1, 24, (2, 300))
  tokens[1, :20] = 0  # Left padding in one row.
  tokens = jnp.asarray(tokens)
  model = Transformer(config)
  params = random_params(model, tokens)
  full = jax.jit(model.apply)({"params": params}, tokens)
  callback = CachedLogits(model)
  for buffer in (301, 700):

    @jax.jit
    def decode(params, buffer=buffer):
      first, cache = callback(params, tokens[:, :10], callback.init_state(2, buffer))

      def step(cache, token):
        logits, cache = callback(params, token[:, None], cache)
        return cache, logits[:, 0]

      _, rest = jax.lax.scan(step, cache, tokens[:, 10:].T)
      return jnp.concatenate([first, rest.transpose(1, 0, 2)], axis=1)

    np.testing.assert_allclose(decode(params), full, atol=2e-5)


def test_decoding_cost_follows_the_filled_length_not_the_buffer():
  """The compiled decoding step holds one attention per bucket (a `conditional`), so a long
  buffer is not read in full while it is mostly empty."""
  config = TransformerConfig(vocab_size=24, d_model=32, num_layers=1, num_heads=2, head_dim=16,
                             mlp_dim=64, dropout_rate=0.0, max_len=16, pad_id=0)
  model = Transformer(dataclasses.replace(config, max_len=1000))
  callback = CachedLogits(model)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
  hlo = jax.jit(callback).lower(params["params"], jnp.zeros((1, 1), jnp.int32),
                                callback.init_state(1, 1000)).as_text()
  assert "case" in hlo or "conditional" in hlo
  for n in cache_buckets(1000):
    assert f"tensor<1x2x1x{n}xf32>" in hlo  # The scores of each bucket's attention.
