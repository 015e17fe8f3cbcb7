"""Tests for layers/attention.py: T5 relative position buckets and bias, attention and its cache."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.layers.attention import (MultiHeadAttention, RelativePositionBias,
                                          add_broadcast_bias, relative_position_bucket)


def _params(module, *args, **kwargs):
  """Parameters drawn on the host (skips compiling the initialisers; their values don't matter)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype),
                      nn.unbox(shapes))


def t5_bucket(relative_position, bidirectional, num_buckets, max_distance):
  """T5's `_relative_position_bucket` for one integer, written out in plain Python."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += num_buckets if n < 0 else 0
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return ret + n
  val = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact)
                        * (num_buckets - max_exact))
  return ret + min(val, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_relative_position_bucket_matches_t5(bidirectional):
  rel = np.arange(-300, 301)
  got = relative_position_bucket(jnp.asarray(rel), bidirectional=bidirectional, num_buckets=32,
                                 max_distance=128)
  want = [t5_bucket(int(r), bidirectional, 32, 128) for r in rel]
  np.testing.assert_array_equal(np.asarray(got), want)


def test_relative_position_bucket_known_values():
  bucket = lambda r, bi: int(relative_position_bucket(jnp.asarray(r), bidirectional=bi,
                                                      num_buckets=32, max_distance=128))
  # Causal: the future is bucket 0, exact distances below 16, far past in the last bucket.
  assert [bucket(r, False) for r in (5, 0, -1, -15, -1000)] == [0, 0, 1, 15, 31]
  # Bidirectional: past in 0..15, future in 16..31.
  assert [bucket(r, True) for r in (0, -1, 1, -1000, 1000)] == [0, 1, 17, 15, 31]


def test_relative_position_bias_depends_only_on_distance():
  module = RelativePositionBias(num_heads=3, bidirectional=True, num_buckets=8, max_distance=16)
  q, k = jnp.arange(5), jnp.arange(7)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), q, k))
  assert nn.get_partition_spec(shapes)["params"]["rel_embedding"] == (
      jax.sharding.PartitionSpec("heads", "relpos_buckets"))
  variables = {"params": _params(module, q, k)}
  bias = module.apply(variables, q, k)
  assert bias.shape == (1, 3, 5, 7)
  np.testing.assert_array_equal(bias, module.apply(variables, q + 11, k + 11))
  # Bidirectional: a key 1 ahead and a key 1 behind get different biases.
  assert not np.allclose(bias[0, :, 2, 3], bias[0, :, 2, 1])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_contiguous_bias_equals_the_gathered_one_with_its_gradient(bidirectional):
  module = RelativePositionBias(num_heads=2, bidirectional=bidirectional, num_buckets=8,
                                max_distance=16)
  params = {"rel_embedding": jax.random.normal(jax.random.key(3), (2, 8))}
  cotangent = jax.random.normal(jax.random.key(4), (1, 2, 40, 40))
  # (query start, T, S, key start): full passes, a prefill, decoding steps, offsets.
  for q0, t, s, k0 in ((0, 7, 7, 0), (0, 1, 1, 0), (5, 1, 12, 0), (3, 4, 12, 0),
                       (11, 6, 9, 2), (0, 40, 40, 0), (30, 2, 5, 0)):
    gathered = lambda p: module.apply({"params": p}, q0 + jnp.arange(t), k0 + jnp.arange(s))
    fast = lambda p: module.apply({"params": p}, q0, t, s, k0, method="contiguous")

    # One compiled program per case (op by op, every primitive compiles for every shape).
    @jax.jit
    def both(p):
      grad = lambda f: jax.grad(lambda p: jnp.sum(f(p) * cotangent[:, :, :t, :s]))(p)
      return fast(p), gathered(p), grad(fast), grad(gathered)

    bias_fast, bias_gathered, grad_fast, grad_gathered = both(params)
    np.testing.assert_array_equal(bias_fast, bias_gathered, err_msg=str((q0, t, s, k0)))
    np.testing.assert_allclose(grad_fast["rel_embedding"], grad_gathered["rel_embedding"],
                               rtol=1e-5, atol=1e-5)
  # Traced starts (a decoding step's cache index) give the same bias.
  traced = jax.jit(lambda p, q0: module.apply({"params": p}, q0, 1, 12, method="contiguous"))
  np.testing.assert_array_equal(traced(params, 5),
                                module.apply({"params": params}, 5 + jnp.arange(1), jnp.arange(12)))


@pytest.mark.parametrize("bias_shape", [(1, 3, 5, 7), (3, 5, 7), (2, 1, 5, 7), (2, 3, 5, 7),
                                        (1, 1, 1, 7)])
def test_add_broadcast_bias_gradient_sums_the_broadcast_axes(bias_shape):
  logits = jax.random.normal(jax.random.key(0), (2, 3, 5, 7))
  bias = jax.random.normal(jax.random.key(1), bias_shape)
  cotangent = jax.random.normal(jax.random.key(2), logits.shape)
  loss = lambda f: lambda l, b: jnp.sum(f(l, b) * cotangent)
  want = jax.grad(loss(jnp.add), argnums=(0, 1))(logits, bias)
  got = jax.grad(loss(add_broadcast_bias), argnums=(0, 1))(logits, bias)
  np.testing.assert_allclose(add_broadcast_bias(logits, bias), logits + bias)
  for g, w in zip(got, want):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def _causal(t):
  return jnp.tril(jnp.ones((t, t), bool))[None, None]


def test_attention_kv_cache_matches_full_pass():
  batch, length, cache_length, prefill = 2, 9, 12, 4
  attention = MultiHeadAttention(num_heads=2, head_dim=8, cache_length=cache_length)
  x = jax.random.normal(jax.random.key(1), (batch, length, 16))
  slots = jnp.arange(cache_length)

  @jax.jit
  def run(params, x):
    full = attention.apply({"params": params}, x, mask=_causal(length))
    cache = nn.unbox(attention.init(jax.random.key(0), x[:, :1], decode=True,
                                    cache_index=0)["cache"])
    cache = jax.tree.map(jnp.zeros_like, cache)

    def decode(cache, x_part, start):
      positions = start + jnp.arange(x_part.shape[1])
      mask = (slots[None, :] <= positions[:, None])[None, None]  # Written slots, causally.
      out, state = attention.apply({"params": params, "cache": cache}, x_part, mask=mask,
                                   decode=True, cache_index=start, mutable=["cache"])
      return state["cache"], out

    cache, first = decode(cache, x[:, :prefill], 0)
    _, rest = jax.lax.scan(lambda c, i: decode(c, jax.lax.dynamic_slice_in_dim(x, i, 1, 1), i),
                           cache, jnp.arange(prefill, length))  # [T - prefill, B, 1, D]
    return full, jnp.concatenate([first, rest[:, :, 0].transpose(1, 0, 2)], axis=1)

  full, decoded = run(_params(attention, x), x)
  np.testing.assert_allclose(decoded, full, atol=1e-5)


def test_attention_masked_keys_and_bias_matter_as_documented():
  attention = MultiHeadAttention(num_heads=2, head_dim=8)
  x = jax.random.normal(jax.random.key(1), (1, 6, 16))
  hide_key4 = jnp.ones((1, 1, 6, 6), bool).at[..., 4].set(False)
  only_key0 = jnp.zeros((1, 1, 6, 6), bool).at[..., 0].set(True)
  bias = jnp.zeros((1, 2, 6, 6)).at[:, :, :, 0].set(50.0)  # Everyone looks at key 0.

  @jax.jit
  def run(params):
    apply = lambda x, **kw: attention.apply({"params": params}, x, **kw)
    return (apply(x, mask=hide_key4), apply(x.at[:, 4].set(100.0), mask=hide_key4),
            apply(x, bias=bias), apply(x, mask=only_key0))

  out, out_changed, biased, key0 = run(_params(attention, x))
  # A hidden key changes nothing, except at its own query position.
  np.testing.assert_allclose(out[:, :4], out_changed[:, :4], atol=1e-6)
  np.testing.assert_allclose(out[:, 5:], out_changed[:, 5:], atol=1e-6)
  np.testing.assert_allclose(biased, key0, atol=1e-5)


def test_attention_parameters_carry_logical_axis_names():
  attention = MultiHeadAttention(num_heads=2, head_dim=8)
  shapes = jax.eval_shape(lambda: attention.init(jax.random.key(0), jnp.zeros((1, 3, 16))))
  specs = nn.get_partition_spec(shapes)["params"]
  P = jax.sharding.PartitionSpec
  assert specs == {"query": P("embed", "heads", "kv"), "key": P("embed", "heads", "kv"),
                   "value": P("embed", "heads", "kv"), "out": P("heads", "kv", "embed")}
