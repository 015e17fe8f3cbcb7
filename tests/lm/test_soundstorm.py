"""SoundStorm: the paper's training masks, the loss on level q, and the MaskGIT sampler (driven
by fixed fake logits, checked against a plain Python loop, prompts kept, long clips by windows)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.config import load_config
from audiolm_jax.lm import soundstorm as ss
from audiolm_jax.lm import soundstorm_sampling as sm

K, Q = 32, 4  # The tiny preset's codebook size and levels.


def random_codes(batch, length, seed=0):
  return jax.random.randint(jax.random.key(seed), (batch, length, Q), 0, K)


def test_training_mask_share_and_level_structure():
  batch, length = 512, 20
  codes = random_codes(batch, length)
  lengths = np.random.default_rng(0).integers(1, length + 1, batch)
  frames = np.arange(length)[None] < lengths[:, None]  # [B, T]
  m = ss.training_mask(jax.random.key(1), codes, jnp.asarray(frames), K)
  codes, inputs = np.asarray(codes), np.asarray(m.inputs)
  level, prompt, targets = np.asarray(m.level), np.asarray(m.prompt_frames), np.asarray(m.targets)
  assert set(level.tolist()) == set(range(Q))
  assert (prompt >= 0).all() and (prompt < lengths).all()
  for b in range(batch):
    q, p, n = level[b], prompt[b], lengths[b]
    masked = inputs[b] == K  # [T, Q]
    # The prompt and the padding are never masked; below q nothing is, above q everything.
    assert not masked[:p].any() and not masked[n:].any()
    assert not masked[p:n, :q].any() and masked[p:n, q + 1:].all()
    count = masked[p:n, q].sum()
    assert count == max(math.ceil(float(m.ratio[b]) * (n - p)), 1)
    np.testing.assert_array_equal(targets[b], masked[:, q])
    np.testing.assert_array_equal(inputs[b][~masked], codes[b][~masked])
  # The cosine schedule: the ratio is cos(u), u ~ U[0, pi/2], whose mean is 2/pi.
  ratio = np.asarray(m.ratio)
  assert abs(ratio.mean() - 2 / np.pi) < 0.04 and 0 <= ratio.min() and ratio.max() <= 1


def test_the_loss_is_on_the_masked_tokens_of_level_q_only():
  codes = random_codes(4, 12)
  m = ss.training_mask(jax.random.key(2), codes, jnp.ones((4, 12), bool), K)
  targets = jnp.take_along_axis(codes, m.level[:, None, None], axis=2)[..., 0]  # [B, T]
  perfect = 50.0 * jax.nn.one_hot(targets, K)  # [B, T, K]
  loss, metrics = ss.masked_level_loss(perfect, codes, m)
  assert loss < 1e-6 and metrics["accuracy"] == 1.0
  assert metrics["tokens"] == m.targets.sum()
  # Logits anywhere but the masked tokens of level q change nothing.
  noise = jax.random.normal(jax.random.key(3), perfect.shape)
  scrambled = jnp.where(m.targets[..., None] > 0, perfect, noise)
  np.testing.assert_allclose(ss.masked_level_loss(scrambled, codes, m)[0], loss, atol=1e-6)


def test_schedule_is_the_papers():
  plan = sm.Schedule.make(4, (16, 1), temperature=0.7, greedy_from_level=1)
  assert len(plan) == 16 + 3
  assert plan.level == (0,) * 16 + (1, 2, 3)
  assert plan.step == tuple(range(16)) + (0, 0, 0)
  assert plan.temperature == (0.7,) * 16 + (0.0,) * 3
  counts = [int(sm.keep_masked(jnp.int32(100), jnp.int32(i), jnp.int32(16))) for i in range(16)]
  assert counts[-1] == 0 and all(a >= b for a, b in zip(counts, counts[1:]))
  assert counts[7] == math.floor(100 * math.cos(math.pi / 2 * 8 / 16))


def constant_logits(seed=0, length=16):
  """A fake model: the same logits `[B, T, K]` whatever the tokens and the level."""
  table = jax.random.normal(jax.random.key(seed), (length, K))

  def logits_fn(params, conditioning, tokens, level):
    del params, conditioning, level
    return jnp.broadcast_to(table, tokens.shape[:2] + (K,))

  return logits_fn


def test_fake_model_fills_every_position_on_schedule():
  batch, length, prompt = 3, 16, 5
  codes = np.asarray(random_codes(batch, length))
  tokens = codes.copy()
  tokens[:, prompt:] = K
  tokens[2, prompt:] = codes[2, prompt:]  # Row 2 is all prompt: nothing to do.
  plan = sm.Schedule.make(Q, (6, 2), temperature=1.0, choice_temperature=2.0)
  out = sm.sample(constant_logits(), None, None, jnp.asarray(tokens), jax.random.key(0), plan, K)
  result, masked = np.asarray(out.tokens), np.asarray(out.masked)
  assert masked.shape == (6 + 2 * 3, batch)
  assert (result != K).all() and ((0 <= result) & (result < K)).all()
  np.testing.assert_array_equal(result[:, :prompt], codes[:, :prompt])
  np.testing.assert_array_equal(result[2], codes[2])
  # Each step leaves the cosine schedule's count masked: every level done after its last step.
  total = length - prompt
  expected = [math.floor(total * math.cos(math.pi / 2 * (i + 1) / n)) if i + 1 < n else 0
              for q in range(Q) for n in [6 if q == 0 else 2] for i in range(n)]
  np.testing.assert_array_equal(masked[:, 0], expected)
  np.testing.assert_array_equal(masked[:, 2], 0)


def test_greedy_with_a_fake_model_draws_the_argmax():
  tokens = jnp.full((2, 16, Q), K)
  plan = sm.Schedule.make(Q, (3, 1), temperature=0.0, choice_temperature=0.0)
  out = sm.sample(constant_logits(1), None, None, tokens, jax.random.key(5), plan, K)
  best = np.argmax(np.asarray(jax.random.normal(jax.random.key(1), (16, K))), -1)
  np.testing.assert_array_equal(np.asarray(out.tokens), np.broadcast_to(best[None, :, None],
                                                                        (2, 16, Q)))


@pytest.fixture(scope="module")
def tiny():
  config = load_config("soundstorm:tiny")
  model = ss.SoundStorm(ss.model_config(config))
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32),
                      jnp.zeros((1, 2, Q), jnp.int32))["params"]
  return config, model, nn.unbox(params)


def reference_sample(model, params, semantic, frames, tokens, rng, plan):
  """A plain Python loop over the schedule, numpy bookkeeping, one model call per step."""
  tokens = np.array(tokens)
  total = None
  for s in range(len(plan)):
    q, i, n = plan.level[s], plan.step[s], plan.steps[s]
    masked = tokens[:, :, q] == K  # [B, T]
    if i == 0:
      total = masked.sum(1)
    logits = model.apply({"params": params}, semantic, jnp.asarray(tokens), frames,
                         levels=jnp.full((len(tokens),), q))
    log_probs = jax.nn.log_softmax(logits, -1)
    k_draw, k_choice = jax.random.split(jax.random.fold_in(rng, s))
    t = plan.temperature[s]
    drawn = np.asarray(jax.random.categorical(k_draw, log_probs / max(t, 1e-6), axis=-1)
                       if t > 0 else jnp.argmax(log_probs, -1))
    confidence = np.take_along_axis(np.asarray(log_probs), drawn[..., None], -1)[..., 0]
    confidence = confidence + plan.choice_temperature[s] * (1 - (i + 1) / n) * np.asarray(
        jax.random.gumbel(k_choice, confidence.shape))
    for b in range(len(tokens)):
      keep = 0 if i + 1 >= n else math.floor(total[b] * math.cos(math.pi / 2 * (i + 1) / n))
      candidates = np.flatnonzero(masked[b])
      order = candidates[np.argsort(confidence[b, candidates], kind="stable")]
      fill = order[keep:]
      tokens[b, fill, q] = drawn[b, fill]
  return tokens


def test_jitted_sampler_equals_a_python_reference_loop(tiny):
  config, model, params = tiny
  batch, length = 2, 12
  codes = np.asarray(random_codes(batch, length, seed=4))
  tokens = codes.copy()
  tokens[0, 3:] = K
  tokens[1, 6:10] = K  # Frames 10, 11 of row 1 are padding.
  frames = jnp.asarray(np.arange(length)[None] < np.array([[length], [10]]))
  semantic = jax.random.randint(jax.random.key(6), (batch, length // 2), 0, K)
  plan = sm.Schedule.make(Q, (5, 2), temperature=0.9, choice_temperature=1.5,
                          greedy_from_level=3)
  rng = jax.random.key(7)
  out = sm.sample(sm.SoundStormLogits(model), params, (semantic, frames), jnp.asarray(tokens),
                  rng, plan, K)
  expected = reference_sample(model, params, semantic, frames, tokens, rng, plan)
  np.testing.assert_array_equal(np.asarray(out.tokens), expected)
  np.testing.assert_array_equal(np.asarray(out.tokens)[1, 10:], codes[1, 10:])


def test_generate_keeps_the_prompt_and_windows_long_clips(tiny):
  config, model, params = tiny
  plan = sm.schedule_from_config(config, Q)
  window = model.config.layout.max_frames  # 20 frames; 47 need 4 windows of context 10.
  prompt = np.asarray(random_codes(2, 7, seed=8))
  semantic = np.random.default_rng(0).integers(0, K, (2, 24))
  a = sm.generate(model, params, semantic, prompt, 47, jax.random.key(1), plan)
  b = sm.generate(model, params, semantic, prompt, 47, jax.random.key(1), plan)
  c = sm.generate(model, params, semantic, prompt, 47, jax.random.key(2), plan)
  assert a.shape == (2, 47, Q) and window < 47
  assert ((0 <= a) & (a < K)).all()
  np.testing.assert_array_equal(a[:, :7], prompt)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
