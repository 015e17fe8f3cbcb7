"""The decoder-only Transformer of the three AudioLM stages.

Shape letters used in this file:
  B  batch
  T  tokens of this call (the whole sequence in training; a prompt or one token when decoding)
  S  key positions (= T for a full pass; the cache length when decoding)
  D  model dimension (d_model)
  F  feed-forward (MLP) dimension
  H  attention heads
  V  vocabulary size

The architecture is the paper's (section 4.1: 12 layers, 16 heads, d = 1024, FFN 4096, dropout
0.1, T5 relative position bias), written as a pre-norm T5.1.1-style decoder:

    tokens -> embed -> dropout -> [RMSNorm -> attention -> dropout -> +
                                   RMSNorm -> gated-GELU MLP -> dropout -> +] x L
           -> RMSNorm -> dropout -> linear -> logits (float32)

At the paper's sizes (head dim 64) a stage has 0.20 B (semantic) to 0.23 B (fine, larger
vocabulary) parameters; the paper quotes "about 0.3 B" without giving every layer shape.

One relative position bias table is shared by all layers (as in T5). Tokens equal to `pad_id`
are hidden from every query (so left-padded prompts and conditioning are invisible to the
model; each position still attends to itself, which keeps padded rows finite).

Decoding: `decode=True` writes keys/values into a fixed-size KV cache in the linen `"cache"`
collection (see `init_cache`), at the cache's own `index`; a call may hold a whole prompt (the
prefill pass) or one token. Attention then reads only the filled part of the cache, rounded up to
a bucket (`layers.attention.cache_buckets`), so a step's cost follows the tokens decoded so far,
not the buffer's size. `CachedLogits` and `FullPassLogits` adapt a model to the
`tokens_to_logits` callback of `audiolm_jax.lm.sampling.sample`: the first uses the cache, the
second recomputes the whole prefix each step (for checks and benchmarks).

Output layer (`output=`): by default the logits of every position over the whole vocabulary
`[B, T, V]`. Two cheaper heads give the same numbers where they are needed:
* `lm.stages.LevelSpan` (training the coarse and fine stages): the positions of the span only,
  each against its level's K ids, `[B, F, Q, K]`: K / V of the output layer's FLOPs;
* `VocabWindow(position, start, width)` (sampling): one position against ids
  `start .. start + width - 1`, `[B, width]` (position and start may be traced).

Large models: `scan_layers=True` stacks the layers' parameters on a leading `layers` axis and
compiles one layer (`nn.scan`); `remat_policy` chooses what `nn.remat` keeps for the backward pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.layers.attention import MultiHeadAttention, RelativePositionBias
from audiolm_jax.lm.stages import LevelSpan

Array = jax.Array

# What `nn.remat` may keep from the forward pass, by config name ("none" = no remat at all).
REMAT_POLICIES = {
    "full": None,  # Keep nothing: recompute every layer (least memory).
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyperparameters of one stage's Transformer (hashable, so it can be a module field).

  Attributes:
    vocab_size: V, all ids of the stage including special ids (see `lm/stages.py`).
    d_model: D.
    num_layers: decoder blocks.
    num_heads: H.
    head_dim: dimension of one head (H * head_dim need not equal D).
    mlp_dim: F, hidden size of the gated-GELU MLP.
    dropout_rate: on embeddings, attention probabilities, residual branches and the final output.
    relpos_num_buckets: relative position buckets (T5: 32).
    relpos_max_distance: distances beyond this share the last bucket (T5: 128).
    max_len: default KV cache length (the longest sequence decoded with `init_cache`).
    pad_id: token id hidden from attention, or None to hide nothing.
    dtype: computation dtype, "float32" or "bfloat16" (softmax and logits stay float32).
    param_dtype: parameter dtype.
    scan_layers: `nn.scan` over layers (parameters gain a leading "layers" axis).
    remat_policy: "none" or a key of `REMAT_POLICIES`; applied in training passes only.
  """
  vocab_size: int
  d_model: int = 1024
  num_layers: int = 12
  num_heads: int = 16
  head_dim: int = 64
  mlp_dim: int = 4096
  dropout_rate: float = 0.1
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  max_len: int = 2048
  pad_id: int | None = None
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"

  def __post_init__(self):
    if self.remat_policy != "none" and self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy {self.remat_policy!r}: use 'none' or one of "
                       f"{sorted(REMAT_POLICIES)}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16"):
        raise ValueError(f"{name} {getattr(self, name)!r}: use 'float32' or 'bfloat16'")

  @classmethod
  def from_dict(cls, fields: Any, **overrides) -> TransformerConfig:
    """Builds a config from a mapping (e.g. a config's `model` ConfigDict) plus overrides."""
    values = {**dict(fields), **overrides}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"unknown TransformerConfig fields: {unknown}")
    return cls(**values)


class VocabWindow(NamedTuple):
  """The logits of token `position` of a call (an index into its T tokens) over the ids
  `start .. start + width - 1`; `position` and `start` may be traced, `width` is static."""
  position: Any
  start: Any
  width: int


def _dense(name: str, module: nn.Module, shape, names, dtype) -> Array:
  """A bias-free kernel with logical axis names, cast to the computation dtype."""
  init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  kernel = module.param(name, nn.with_logical_partitioning(init, names), shape,
                        jnp.dtype(module.config.param_dtype))
  return jnp.asarray(kernel, dtype)


def _rms_norm(config: TransformerConfig, name: str) -> nn.RMSNorm:
  return nn.RMSNorm(epsilon=1e-6, dtype=jnp.dtype(config.dtype),
                    param_dtype=jnp.dtype(config.param_dtype),
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                    name=name)


class Mlp(nn.Module):
  """Gated-GELU feed-forward block (T5.1.1): `(gelu(x W0) * (x W1)) Wo`."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg, dtype = self.config, jnp.dtype(self.config.dtype)
    w_gate = _dense("wi_0", self, (cfg.d_model, cfg.mlp_dim), ("embed", "mlp"), dtype)
    w_up = _dense("wi_1", self, (cfg.d_model, cfg.mlp_dim), ("embed", "mlp"), dtype)
    w_out = _dense("wo", self, (cfg.mlp_dim, cfg.d_model), ("mlp", "embed"), dtype)
    h = nn.gelu(x @ w_gate) * (x @ w_up)  # [B, T, F]
    h = nn.with_logical_constraint(h, ("activation_batch", "activation_length", "activation_mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return h @ w_out  # [B, T, D]


class DecoderBlock(nn.Module):
  """Pre-norm block: `x + attention(norm(x))`, then `x + mlp(norm(x))`.

  Returns `(x, None)` so that the same module runs under `nn.scan` (carry, per-layer output).
  """
  config: TransformerConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, bias: Array, mask: Array, cache_index: Array) -> tuple[Array, None]:
    cfg = self.config
    h = _rms_norm(cfg, "pre_attention_norm")(x)
    h = MultiHeadAttention(num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                           dropout_rate=cfg.dropout_rate, cache_length=cfg.max_len,
                           dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                           name="attention")(h, bias=bias, mask=mask, decode=self.decode,
                                             cache_index=cache_index,
                                             deterministic=self.deterministic)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=self.deterministic)
    h = _rms_norm(cfg, "pre_mlp_norm")(x)
    h = Mlp(cfg, name="mlp")(h, self.deterministic)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=self.deterministic)
    x = nn.with_logical_constraint(
        x, ("activation_batch", "activation_length", "activation_embed"))
    return x, None


class Transformer(nn.Module):
  """Decoder-only Transformer: `tokens [B, T] -> logits [B, T, V]` (float32)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, tokens: Array, *, decode: bool = False, deterministic: bool = True,
               output: LevelSpan | VocabWindow | None = None) -> Array:
    """Runs the model.

    Args:
      tokens: int ids `[B, T]`.
      decode: continue the sequence held in the `"cache"` collection (which must be mutable):
        `tokens` are positions `index .. index + T - 1` of it. Without decode, a causal full pass.
      deterministic: disables dropout (else a `"dropout"` rng is needed).
      output: None for the logits `[B, T, V]`; a `LevelSpan` for `[B, F, Q, K]` (the span's
        positions, each over its level's ids); a `VocabWindow` for `[B, width]`.
    """
    cfg, dtype = self.config, jnp.dtype(self.config.dtype)
    batch, length = tokens.shape
    positions, key_positions, key_visible, cache_index = self._positions(tokens, decode)
    # A key is visible to a query at or after it, unless it is padding (its own position always).
    causal = key_positions[None, :] <= positions[:, None]  # [T, S]
    own = key_positions[None, :] == positions[:, None]  # [T, S]
    mask = causal[None, None] & (key_visible[:, None, None, :] | own[None, None])  # [B, 1, T, S]
    bias = RelativePositionBias(num_heads=cfg.num_heads, bidirectional=False,
                                num_buckets=cfg.relpos_num_buckets,
                                max_distance=cfg.relpos_max_distance,
                                dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype),
                                name="relpos_bias").contiguous(
                                    cache_index, length, key_positions.shape[0])  # [1, H, T, S]

    embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype,
                     param_dtype=jnp.dtype(cfg.param_dtype),
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
                     name="token_embed")
    x = embed(tokens)  # [B, T, D]
    x = nn.with_logical_constraint(
        x, ("activation_batch", "activation_length", "activation_embed"))
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)

    block = DecoderBlock
    if cfg.remat_policy != "none" and not decode:
      block = nn.remat(block, policy=REMAT_POLICIES[cfg.remat_policy],
                       prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      layers = nn.scan(block, variable_axes={"params": 0, "cache": 0},
                       split_rngs={"params": True, "dropout": True},
                       in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                       length=cfg.num_layers,
                       metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = layers(cfg, decode=decode, deterministic=deterministic,
                    name="layers")(x, bias, mask, cache_index)
    else:
      for i in range(cfg.num_layers):
        x, _ = block(cfg, decode=decode, deterministic=deterministic,
                     name=f"layer_{i}")(x, bias, mask, cache_index)

    x = _rms_norm(cfg, "final_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    w_logits = _dense("logits", self, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), dtype)
    return _output_layer(x, w_logits, output)

  def _positions(self, tokens: Array, decode: bool):
    """Query positions `[T]`, key positions `[S]`, visible keys `[B, S]` and the cache index.

    In a full pass keys are the tokens themselves. When decoding, keys are the cache slots; the
    cache remembers which slots hold real (non-pad) tokens and where the next token goes.
    """
    cfg = self.config
    batch, length = tokens.shape
    not_pad = (jnp.ones_like(tokens, dtype=bool) if cfg.pad_id is None
               else tokens != cfg.pad_id)  # [B, T]
    if not decode:
      positions = jnp.arange(length)
      return positions, positions, not_pad, jnp.zeros((), jnp.int32)
    index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
    visible = self.variable(
        "cache", "key_visible",
        nn.with_logical_partitioning(jnp.zeros, ("cache_batch", "cache_length")),
        (batch, cfg.max_len), bool)
    cache_index = index.value
    visible.value = jax.lax.dynamic_update_slice(visible.value, not_pad, (0, cache_index))
    index.value = cache_index + length
    positions = cache_index + jnp.arange(length)
    return positions, jnp.arange(visible.value.shape[1]), visible.value, cache_index


def _output_layer(x: Array, w: Array, output: LevelSpan | VocabWindow | None) -> Array:
  """Float32 logits of the final hidden states `x [B, T, D]` with the kernel `w [D, V]`."""
  batch, length, d_model = x.shape
  if output is None:
    logits = (x @ w).astype(jnp.float32)  # [B, T, V]
    return nn.with_logical_constraint(
        logits, ("activation_batch", "activation_length", "activation_vocab"))
  if isinstance(output, LevelSpan):
    if output.stop > length or output.first_id + output.levels * output.width > w.shape[1]:
      raise ValueError(f"{output} does not fit {length} positions and {w.shape[1]} ids")
    h = x[:, output.start:output.stop].reshape(batch, output.frames, output.levels, d_model)
    # Level q's ids are consecutive, so the levels' kernels are one slice of w, no gather.
    w_levels = w[:, output.first_id:output.first_id + output.levels * output.width]
    w_levels = w_levels.reshape(d_model, output.levels, output.width)  # [D, Q, K]
    logits = jnp.einsum("bfqd,dqk->bfqk", h, w_levels).astype(jnp.float32)  # [B, F, Q, K]
    return nn.with_logical_constraint(
        logits, ("activation_batch", "activation_length", None, "activation_vocab"))
  if isinstance(output, VocabWindow):
    h = jax.lax.dynamic_index_in_dim(x, output.position, axis=1, keepdims=False)  # [B, D]
    w_window = w
    if output.width != w.shape[1]:
      w_window = jax.lax.dynamic_slice_in_dim(w, output.start, output.width, axis=1)  # [D, W]
      # Materialised: XLA:CPU fused the slice into the dot as a naive loop (0.5 ms a token).
      w_window = jax.lax.optimization_barrier(w_window)
    logits = (h @ w_window).astype(jnp.float32)  # [B, W]
    return nn.with_logical_constraint(logits, ("activation_batch", "activation_vocab"))
  raise TypeError(f"output must be None, a LevelSpan or a VocabWindow, got {output!r}")


def init_cache(config: TransformerConfig, batch_size: int, length: int | None = None):
  """An empty KV cache (the `"cache"` collection) for `batch_size` sequences of `length` tokens.

  Nothing is computed and no parameter is allocated (shapes come from `jax.eval_shape`).
  `length` defaults to `config.max_len`; the cache may be longer than the training sequences.
  """
  model = Transformer(dataclasses.replace(config, max_len=length or config.max_len))
  tokens = jax.ShapeDtypeStruct((batch_size, 1), jnp.int32)
  shapes = jax.eval_shape(
      lambda t: model.init(jax.random.key(0), t, decode=True), tokens)["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.unbox(shapes))


@dataclasses.dataclass(frozen=True)
class CachedLogits:
  """`tokens_to_logits` for the sampler, decoding with the KV cache.

  `CachedLogits(model)(params, tokens [B, T], cache) -> (logits [B, T, V], cache)`. Hashable, so
  it can be a static argument of `jax.jit`; the cache is made by `init_state`.
  """
  model: Transformer

  def init_state(self, batch_size: int, length: int):
    return init_cache(self.model.config, batch_size, length)

  def __call__(self, params, tokens: Array, cache, vocab_start=None,
               vocab_width: int | None = None) -> tuple[Array, Any]:
    """Logits `[B, T, V]`; with `vocab_width`, those of the last token over ids
    `vocab_start .. vocab_start + vocab_width - 1`, `[B, vocab_width]` (the sampler's sliced
    call, which computes no other logits)."""
    output = None
    if vocab_width is not None:
      output = VocabWindow(tokens.shape[1] - 1, vocab_start, vocab_width)
    logits, variables = self.model.apply({"params": params, "cache": cache}, tokens,
                                         decode=True, output=output, mutable=["cache"])
    return logits, variables["cache"]


@dataclasses.dataclass(frozen=True)
class FullPassLogits:
  """`tokens_to_logits` without a KV cache: every call reruns the whole prefix.

  The state is a fixed-size token buffer `[B, S]` (pad-filled) and the next write position; a
  call writes its tokens there, runs a causal full pass over the buffer and returns the logits of
  the tokens just written. Same interface as `CachedLogits`, costlier per token (by design: it is
  the baseline that the cache is measured and checked against).
  """
  model: Transformer

  def init_state(self, batch_size: int, length: int):
    # Slots not written yet are never seen (causal mask); fill them with padding all the same.
    pad = self.model.config.pad_id or 0
    return {"tokens": jnp.full((batch_size, length), pad, jnp.int32),
            "index": jnp.zeros((), jnp.int32)}

  def __call__(self, params, tokens: Array, state, vocab_start=None,
               vocab_width: int | None = None) -> tuple[Array, Any]:
    """As `CachedLogits.__call__`."""
    index = state["index"]
    buffer = jax.lax.dynamic_update_slice(state["tokens"], tokens.astype(jnp.int32), (0, index))
    new_state = {"tokens": buffer, "index": index + tokens.shape[1]}
    if vocab_width is not None:
      last = VocabWindow(index + tokens.shape[1] - 1, vocab_start, vocab_width)
      return self.model.apply({"params": params}, buffer, output=last), new_state
    logits = self.model.apply({"params": params}, buffer)  # [B, S, V]
    logits = jax.lax.dynamic_slice_in_dim(logits, index, tokens.shape[1], axis=1)  # [B, T, V]
    return logits, new_state
