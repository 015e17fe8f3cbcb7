"""Multi-head attention with a KV cache, and the T5 relative position bias.

Shape letters used in this file:
  B  batch
  T  query positions (the tokens of this call)
  S  key positions (= T for a full pass; the cache length when decoding)
  D  model dimension
  H  attention heads
  E  dimension of one head (logical axis "kv")
  U  relative position buckets

Two modules:

* `RelativePositionBias`: a learned scalar per (head, distance bucket), T5 style (Raffel et al.,
  2020, section 2.1). Causal decoders use `bidirectional=False`; encoders such as the conformer use
  `bidirectional=True`. Typical use, once per stack and shared by all its layers:

      bias = RelativePositionBias(num_heads=H, bidirectional=True)(jnp.arange(T), jnp.arange(T))
      y = MultiHeadAttention(num_heads=H, head_dim=E)(x, bias=bias)

  For contiguous positions (every caller here) `.contiguous(query_start, T, S)` builds the same
  bias from T + S - 1 table lookups instead of T * S.

* `MultiHeadAttention`: self-attention taking an additive `bias` and a boolean `mask` from its
  caller (so one module serves causal, bidirectional and padded inputs). With `decode=True` it
  keeps keys and values in a fixed-size cache (linen collection `"cache"`), writes this call's
  keys/values at `cache_index` with `lax.dynamic_update_slice` and attends over the filled part
  of the cache only (`cached_attention`: the smallest of a few fixed prefix lengths, powers of
  two, that holds every slot written so far, chosen by `lax.switch` inside the compiled step);
  the caller's mask hides the slots not written yet. One call may carry many tokens (a prefill
  pass over a prompt) or one (a decoding step): the cost of a step follows the tokens decoded so
  far (within a factor of 2), whatever the cache's length. Keys and values are laid out heads
  first, `[B, H, S, E]` (cache axes "cache_batch", "cache_heads", "cache_length", "cache_kv").
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DType = Any


def relative_position_bucket(relative_position: Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """Maps `key_position - query_position` to a bucket in `[0, num_buckets)` (T5's scheme).

  Half of the buckets (of each direction when bidirectional) hold exact distances 0, 1, 2, ...;
  the other half cover distances up to `max_distance` logarithmically; farther distances share
  the last bucket. Causal (unidirectional) attention only ever sees keys at or before the query,
  so positive relative positions all fall into bucket 0 there.
  """
  n = -relative_position  # query - key: >= 0 for keys in the past.
  bucket = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(n.dtype) * num_buckets  # Keys in the future use the upper half.
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # Logarithmic buckets for larger distances; the epsilon keeps log() finite at n = 0 (unused).
  scaled = jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
  scaled = scaled / np.log(max_distance / max_exact) * (num_buckets - max_exact)
  large = jnp.minimum(max_exact + scaled.astype(n.dtype), num_buckets - 1)
  return bucket + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """Learned additive attention bias per head and relative-distance bucket (T5).

  Attributes:
    num_heads: H, one bias per head.
    bidirectional: False for causal decoders (only past distances are told apart), True for
      encoders (past and future distances get separate buckets).
    num_buckets: U, buckets in total (T5 default 32).
    max_distance: distances beyond this share the last bucket (T5 default 128).
    dtype: dtype of the returned bias.
    param_dtype: dtype of the bias table.
  """
  num_heads: int
  bidirectional: bool
  num_buckets: int = 32
  max_distance: int = 128
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  def setup(self):
    self.table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0),
                                     ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), self.param_dtype)  # [H, U]

  def _bucket_bias(self, relative: Array) -> Array:
    """The bias `[H, ...]` of integer relative positions `[...]` (key - query)."""
    buckets = relative_position_bucket(relative.astype(jnp.int32),
                                       bidirectional=self.bidirectional,
                                       num_buckets=self.num_buckets,
                                       max_distance=self.max_distance)
    return jnp.take(jnp.asarray(self.table, self.dtype), buckets, axis=1)

  def __call__(self, query_positions: Array, key_positions: Array) -> Array:
    """Returns the bias `[1, H, T, S]` for integer positions `[T]` and `[S]`.

    Positions may be traced (e.g. `cache_index + jnp.arange(T)` when decoding); only their
    differences matter. This gathers the table at every (query, key) pair, so its gradient is a
    scatter of T * S values; for contiguous positions `contiguous` gives the same bias faster.
    """
    relative = key_positions[None, :] - query_positions[:, None]  # [T, S]
    return self._bucket_bias(relative)[None]  # [1, H, T, S]

  def contiguous(self, query_start: Array | int, num_queries: int, num_keys: int,
                 key_start: Array | int = 0) -> Array:
    """The bias `[1, H, T, S]` of queries `query_start + arange(T)` and keys
    `key_start + arange(S)` (equal to `__call__` on those positions).

    The bias is a Toeplitz matrix: it depends on `s - t` only, which takes T + S - 1 values.
    Only those are looked up in the table; the `[T, S]` matrix is then laid out by tiling and
    reshaping, so neither the forward pass nor its gradient (a sum over the tiles) gathers
    from or scatters into the table T * S times.
    """
    t, s = num_queries, num_keys
    length = t + s - 1  # distinct values of s - t, from -(T - 1) to S - 1
    offset = jnp.asarray(key_start, jnp.int32) - jnp.asarray(query_start, jnp.int32)
    v = self._bucket_bias(offset - (t - 1) + jnp.arange(length, dtype=jnp.int32))  # [H, L]
    return toeplitz(v, t, s)[None]  # [1, H, T, S]


@jax.custom_vjp
def add_broadcast_bias(logits: Array, bias: Array) -> Array:
  """`logits + bias` for a bias broadcast over leading axes (e.g. `[1, H, T, S]`)."""
  return logits + bias


def _add_bias_fwd(logits, bias):
  return logits + bias, bias.shape


def _add_bias_bwd(bias_shape, g):
  """The bias gradient sums g over the broadcast axes, written as a contraction with ones.

  Left to autodiff, XLA:CPU fused the batch sums of every layer's bias gradient with the
  relative-position layout into one serial loop over all the `[B, H, T, S]` gradients, the
  largest single op in a profile of the reference fine stage (batch 8 x 1200 tokens). As a
  dot it is threaded and unfused: that step went from 5.18 s to 4.74 s on two cores.
  """
  full = (1,) * (g.ndim - len(bias_shape)) + tuple(bias_shape)  # bias_shape, rank of g
  axes = tuple(i for i, (n, m) in enumerate(zip(full, g.shape)) if n == 1 and m != 1)
  if not axes:
    return g, g.reshape(bias_shape)
  ones = jnp.ones([g.shape[i] for i in axes], g.dtype)
  dbias = jax.lax.dot_general(ones, g, ((tuple(range(len(axes))), axes), ((), ())))
  return g, dbias.reshape(bias_shape)


add_broadcast_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def toeplitz(v: Array, t: int, s: int) -> Array:
  """`m[h, i, j] = v[h, T - 1 + j - i]` for v `[H, T + S - 1]` -> `[H, T, S]`.

  Laid out by tiling and reshaping, no gather (its gradient is pads, reshapes and one sum, no
  scatter). Row i of the result is v[T-1-i : T-1-i+S]: with
  v padded to L + 1 = T + S and tiled T times, the flat element i * L + (T - 1) + j is
  v'[(T - 1 + j - i) mod (L + 1)] = v[T - 1 + j - i].
  """
  h, length = v.shape
  tiled = jnp.tile(jnp.pad(v, ((0, 0), (0, 1))), (1, t))  # [H, T * (L + 1)]
  return tiled[:, t - 1:t - 1 + t * length].reshape(h, t, length)[:, :, :s]


def dot_product_attention(query: Array, key: Array, value: Array, bias: Array | None,
                          mask: Array | None,
                          probs_fn: Callable[[Array], Array] | None = None) -> Array:
  """`softmax(q k^T + bias, masked) v` for `q [B, H, T, E]`, `k, v [B, H, S, E]` (q already
  scaled); logits and softmax in float32, `probs_fn` (e.g. dropout) applied to the
  probabilities. Returns `[B, H, T, E]`."""
  logits = jnp.einsum("bhte,bhse->bhts", query, key).astype(jnp.float32)  # [B, H, T, S]
  if bias is not None:
    logits = add_broadcast_bias(logits, bias.astype(jnp.float32))
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
  if probs_fn is not None:
    probs = probs_fn(probs)
  return jnp.einsum("bhts,bhse->bhte", probs, value)


def cache_buckets(length: int, smallest: int = 128) -> tuple[int, ...]:
  """Prefix lengths a cached attention may read: `smallest, 2 * smallest, ...` below `length`,
  then `length` itself."""
  sizes = []
  while smallest < length:
    sizes.append(smallest)
    smallest *= 2
  return tuple(sizes) + (length,)


def cached_attention(query: Array, key: Array, value: Array, bias: Array | None,
                     mask: Array | None, filled: Array, smallest: int = 128) -> Array:
  """`dot_product_attention` over the first `filled` of the cache's S slots (traced).

  Reads the smallest prefix of `cache_buckets(S)` that holds `filled` slots: one `lax.switch`
  branch per prefix length, each a fixed-shape attention, so the sampler's single compiled step
  costs what the filled part of the cache needs (within 2x), not what the buffer holds. Equal to
  the attention over all S slots when the mask hides the slots at or after `filled` (causal
  decoding: they are in every query's future); a masked logit contributes an exact 0.
  """
  slots = key.shape[2]
  sizes = cache_buckets(slots, smallest)
  if len(sizes) == 1:
    return dot_product_attention(query, key, value, bias, mask)

  def prefix(n, query, key, value, bias, mask):
    cut = lambda a: a if a is None or a.shape[-1] != slots else a[..., :n]
    return dot_product_attention(query, key[:, :, :n], value[:, :, :n], cut(bias), cut(mask))

  branch = jnp.minimum(jnp.searchsorted(jnp.asarray(sizes), filled), len(sizes) - 1)
  return jax.lax.switch(branch, [functools.partial(prefix, n) for n in sizes],
                        query, key, value, bias, mask)


class MultiHeadAttention(nn.Module):
  """Multi-head self-attention, no biases on projections (T5), optional KV cache.

  Attributes:
    num_heads: H.
    head_dim: E.
    dropout_rate: dropout on the attention probabilities.
    cache_length: S of the KV cache; needed only when the cache is first created with
      `decode=True` (e.g. under `jax.eval_shape(model.init)`); later calls read the cache's shape.
    dtype: computation dtype (softmax always runs in float32).
    param_dtype: parameter dtype.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  cache_length: int | None = None
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  def _projection(self, name: str, shape, names, in_axis, out_axis) -> Array:
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                            in_axis=in_axis, out_axis=out_axis)
    kernel = self.param(name, nn.with_logical_partitioning(init, names), shape, self.param_dtype)
    return jnp.asarray(kernel, self.dtype)

  @nn.compact
  def __call__(self, x: Array, *, bias: Array | None = None, mask: Array | None = None,
               decode: bool = False, cache_index: Array | int | None = None,
               deterministic: bool = True) -> Array:
    """Attends `x [B, T, D]` to itself (or to the cache) and returns `[B, T, D]`.

    Args:
      x: inputs `[B, T, D]`.
      bias: additive logits bias broadcastable to `[B, H, T, S]`, e.g. a relative position bias.
      mask: boolean, broadcastable to `[B, H, T, S]`; False hides a key from a query. Rows with
        no visible key attend uniformly (callers should keep at least one key visible, e.g. the
        query's own position).
      decode: use the KV cache: write this call's keys/values at `cache_index`, attend over the
        whole cache (S = cache length).
      cache_index: where this call's first token goes in the cache (a scalar, may be traced).
      deterministic: disables dropout.
    """
    batch, length, d_model = x.shape
    x = jnp.asarray(x, self.dtype)
    h, e = self.num_heads, self.head_dim
    in_names, in_shape = ("embed", "heads", "kv"), (d_model, h, e)
    # Heads before positions ([B, H, T, E]): the layout of the KV cache, so that a decoding
    # step reads the cache without transposing it.
    # Plain 2-D matmuls on the kernels viewed as [D, H * E] / [H * E, D] (free reshapes),
    # the head transposes on the activations: written as "btd,dhe->bhte", XLA:CPU copied every
    # kernel into another layout at every decoding step (16 copies, 0.7 ms a token at the
    # reference shapes), inside the sampler's loop.
    def project(name):
      kernel = self._projection(name, in_shape, in_names, 0, (1, 2)).reshape(d_model, h * e)
      return (x @ kernel).reshape(batch, length, h, e).transpose(0, 2, 1, 3)  # [B, H, T, E]

    activation_names = ("activation_batch", "activation_heads", "activation_length",
                        "activation_kv")
    query = nn.with_logical_constraint(project("query"), activation_names)  # [B, H, T, E]
    key = nn.with_logical_constraint(project("key"), activation_names)
    value = nn.with_logical_constraint(project("value"), activation_names)

    query = query / jnp.sqrt(e).astype(self.dtype)
    if decode:
      key, value = self._update_cache(key, value, cache_index)  # [B, H, S, E] each
    if decode and (deterministic or not self.dropout_rate):
      filled = jnp.asarray(cache_index, jnp.int32) + length  # slots written so far
      out = cached_attention(query, key, value, bias, mask, filled)
    else:
      dropout = nn.Dropout(self.dropout_rate)
      out = dot_product_attention(query, key, value, bias, mask,
                                  lambda p: dropout(p, deterministic=deterministic))
    out = nn.with_logical_constraint(out, activation_names)
    out_kernel = self._projection("out", (h, e, d_model), ("heads", "kv", "embed"), (0, 1), 2)
    out = out.transpose(0, 2, 1, 3).reshape(batch, length, h * e)  # [B, T, H * E]
    return out @ out_kernel.reshape(h * e, d_model)  # [B, T, D]

  def _update_cache(self, key: Array, value: Array, cache_index) -> tuple[Array, Array]:
    """Writes `key`/`value [B, H, T, E]` at `cache_index`; returns the full cache `[B, H, S, E]`."""
    batch, h, _, e = key.shape
    if cache_index is None:
      raise ValueError("MultiHeadAttention(decode=True) needs cache_index")
    if self.cache_length is None and not self.has_variable("cache", "cached_key"):
      raise ValueError("MultiHeadAttention: set cache_length to create a KV cache")
    names = ("cache_batch", "cache_heads", "cache_length", "cache_kv")
    shape = (batch, h, self.cache_length, e)
    init = nn.with_logical_partitioning(jnp.zeros, names)
    cached_key = self.variable("cache", "cached_key", init, shape, self.dtype)
    cached_value = self.variable("cache", "cached_value", init, shape, self.dtype)
    start = (0, 0, jnp.asarray(cache_index, jnp.int32), 0)
    cached_key.value = nn.with_logical_constraint(
        jax.lax.dynamic_update_slice(cached_key.value, key.astype(self.dtype), start), names)
    cached_value.value = nn.with_logical_constraint(
        jax.lax.dynamic_update_slice(cached_value.value, value.astype(self.dtype), start), names)
    return cached_key.value, cached_value.value
