"""Tests for lm/transformer.py: cached decoding = full causal pass, masking, names, sizes."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import load_config
from audiolm_jax.lm import stages
from audiolm_jax.lm.transformer import (CachedLogits, FullPassLogits, Transformer,
                                        TransformerConfig, init_cache)

TINY = TransformerConfig(vocab_size=24, d_model=32, num_layers=2, num_heads=2, head_dim=16,
                         mlp_dim=64, dropout_rate=0.0, relpos_num_buckets=8,
                         relpos_max_distance=16, max_len=32, pad_id=0)


def _stage_setup(task):
  config = load_config(f"{task}:tiny")
  return pretrained.stage_from_config(config), pretrained.transformer_config(config)


def _example_batch(stage, rng):
  """Two real training sequences of a stage (random tokens, different lengths)."""
  k_s = getattr(stage, "codebook_size", getattr(stage, "semantic_codebook_size", 4))
  k_a = getattr(stage, "acoustic_codebook_size", 4)
  q = getattr(stage, "num_quantizers", getattr(stage, "num_coarse", 1))
  rows = []
  for frames in (stage.max_frames, stage.max_frames // 2):
    semantic = rng.integers(0, k_s, frames // 2 if isinstance(stage, stages.CoarseStage) else
                            frames)
    acoustic = rng.integers(0, k_a, (frames, q))
    rows.append(stage.make_example(semantic, acoustic, reaches_end=True).inputs)
  return jnp.asarray(np.stack(rows))


def _logits_by_callbacks(model, params, tokens, prefill, callbacks):
  """The full causal pass, then the logits of each `tokens_to_logits` callback decoding the same
  tokens (a prefill pass, then one token a step), all in one jit (one compilation)."""

  @jax.jit
  def run(params, tokens):
    batch, length = tokens.shape
    full = model.apply({"params": params}, tokens)
    decoded = []
    for callback in callbacks:
      first, state = callback(params, tokens[:, :prefill], callback.init_state(batch, length + 3))

      def step(state, token, callback=callback):
        logits, state = callback(params, token[:, None], state)
        return state, logits[:, 0]

      _, rest = jax.lax.scan(step, state, tokens[:, prefill:].T)  # [T - prefill, B, V]
      decoded.append(jnp.concatenate([first, rest.transpose(1, 0, 2)], axis=1))
    return full, decoded

  return run(params, tokens)


@pytest.mark.parametrize("task", ["semantic_lm", "coarse_lm", "fine_lm"])
def test_cached_decoding_equals_full_causal_pass(task, random_params):
  stage, config = _stage_setup(task)
  # The coarse stage runs with scanned layers, so both layer layouts are checked.
  config = dataclasses.replace(config, scan_layers=task == "coarse_lm")
  tokens = _example_batch(stage, np.random.default_rng(0))
  # A window across the end of the conditioning part, left padding included.
  start = max(0, getattr(stage, "prefix_length", 0) - 24)
  tokens = tokens[:, start:start + 40]
  assert np.any(tokens == stage.pad_id)
  model = Transformer(config)
  # The full-pass callback (sampling without a cache) is checked once, on stage 1.
  callbacks = [CachedLogits(model)] + [FullPassLogits(model)] * (task == "semantic_lm")
  full, decoded = _logits_by_callbacks(model, random_params(model, tokens), tokens,
                                       tokens.shape[1] // 2, callbacks)
  for logits in decoded:
    np.testing.assert_allclose(logits, full, atol=1e-5)


def test_causal_and_padding_invisible(random_params):
  model = Transformer(TINY)  # pad_id = 0
  tokens = np.random.default_rng(1).integers(1, TINY.vocab_size, 10)
  changed = tokens.copy()
  changed[6] = tokens[6] % 20 + 1
  rows = np.zeros((3, 15), np.int32)
  rows[0, :10] = tokens  # Right padding, which causal attention never shows to the tokens.
  rows[1, :10] = changed
  rows[2, 5:] = tokens  # 5 PAD tokens on the left.
  logits = jax.jit(model.apply)({"params": random_params(model, rows)}, rows)
  # Changing a token never changes the logits before it.
  np.testing.assert_allclose(logits[1, :6], logits[0, :6], atol=1e-6)
  assert not np.allclose(logits[1, 6:10], logits[0, 6:10])
  # Left padding is invisible: relative positions only, and PAD keys are hidden.
  np.testing.assert_allclose(logits[2, 5:], logits[0, :10], atol=1e-5)


def test_every_parameter_has_logical_axis_names():
  for scan in (False, True):
    model = Transformer(dataclasses.replace(TINY, scan_layers=scan))
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
    leaves = jax.tree.leaves(boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    known = {"embed", "mlp", "heads", "kv", "vocab", "layers", "relpos_buckets", "norm"}
    for leaf in leaves:
      assert set(leaf.names) <= known and len(leaf.names) == leaf.value.ndim
    if scan:
      kernel = boxed["params"]["layers"]["attention"]["query"]
      assert kernel.names == ("layers", "embed", "heads", "kv") and kernel.value.shape[0] == 2
    cache = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32),
                                              decode=True))["cache"]
    specs = jax.tree.leaves(nn.get_partition_spec(cache))
    assert ("cache_batch", "cache_heads", "cache_length", "cache_kv") in [
        tuple(s)[-4:] for s in specs]


def _loss(config, params, tokens, dropout_key=None):
  logits = Transformer(config).apply({"params": params}, tokens,
                                     deterministic=dropout_key is None,
                                     rngs=None if dropout_key is None else {"dropout": dropout_key})
  return -jnp.mean(jax.nn.log_softmax(logits)[..., 3])


def test_scanned_rematerialised_layers_match_unrolled_layers(random_params):
  """Same loss and gradients with `nn.scan` + `nn.remat` as with a Python loop over layers."""
  tokens = jax.random.randint(jax.random.key(1), (2, 8), 1, TINY.vocab_size)
  params = random_params(Transformer(TINY), tokens)
  stacked = dict(params)
  stacked["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                   *[stacked.pop(f"layer_{i}") for i in range(2)])
  fast = dataclasses.replace(TINY, scan_layers=True, remat_policy="dots_no_batch")
  grads = jax.value_and_grad(_loss, argnums=1)
  (loss, grad), (fast_loss, fast_grad) = jax.jit(
      lambda p, sp: (grads(TINY, p, tokens), grads(fast, sp, tokens)))(params, stacked)
  np.testing.assert_allclose(fast_loss, loss, rtol=1e-6)
  for i in range(2):
    for leaf, fast_leaf in zip(jax.tree.leaves(grad[f"layer_{i}"]),
                               jax.tree.leaves(fast_grad["layers"])):
      np.testing.assert_allclose(fast_leaf[i], leaf, atol=1e-6)


def test_bfloat16_and_dropout(random_params):
  tokens = jax.random.randint(jax.random.key(1), (2, 8), 1, TINY.vocab_size)
  config = dataclasses.replace(TINY, dropout_rate=0.1)
  params = random_params(Transformer(config), tokens)
  bf16 = dataclasses.replace(config, dtype="bfloat16")
  loss, loss_bf16, dropped = jax.jit(lambda p: (
      _loss(config, p, tokens), _loss(bf16, p, tokens),
      _loss(config, p, tokens, jax.random.key(3))))(params)
  np.testing.assert_allclose(loss_bf16, loss, rtol=3e-2)
  assert np.isfinite(dropped) and abs(float(dropped) - float(loss)) > 1e-4


def test_init_cache_is_empty_and_sized():
  cache = init_cache(TINY, batch_size=3, length=20)
  assert cache["index"] == 0 and cache["key_visible"].shape == (3, 20)
  assert cache["layer_0"]["attention"]["cached_key"].shape == (3, 2, 20, 16)  # [B, H, S, E]
  assert not any(jnp.any(x) for x in jax.tree.leaves(cache))


def test_paper_preset_size():
  """The paper's stage (12 layers, 16 heads, d=1024, FFN 4096): about 0.2-0.3 B parameters."""
  for task in ("semantic_lm", "coarse_lm", "fine_lm"):
    config = pretrained.transformer_config(load_config(f"{task}:paper"))
    assert (config.num_layers, config.num_heads, config.d_model, config.mlp_dim) == (
        12, 16, 1024, 4096)
    shapes = jax.eval_shape(lambda: Transformer(config).init(jax.random.key(0),
                                                             jnp.zeros((1, 4), jnp.int32)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes["params"])))
    d, f, v, inner = config.d_model, config.mlp_dim, config.vocab_size, 16 * 64
    per_layer = 4 * d * inner + 3 * d * f + 2 * d
    expected = 12 * per_layer + 2 * v * d + d + 16 * config.relpos_num_buckets
    assert count == expected
    assert 0.2e9 < count < 0.35e9, count
