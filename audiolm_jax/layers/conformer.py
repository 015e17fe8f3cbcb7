"""Conformer block (Gulati et al., 2020), the layer of w2v-BERT.

    x = x + 1/2 FFN(x)          macaron half-step feed-forward
    x = x + MHSA(x, rel. bias)  multi-head self-attention with T5 relative position bias
    x = x + Conv(x)             pointwise + GLU, depthwise conv, norm, swish, pointwise
    x = x + 1/2 FFN(x)
    x = LayerNorm(x)

Every sub-module is pre-norm. Two deliberate choices, both common in JAX conformers:

* Relative positions are a learned T5-style bucketed bias added to the attention logits
  (bidirectional buckets, `layers/attention.py`, computed once per stack and shared by its
  blocks), instead of Transformer-XL sinusoidal relative encodings.
* The convolution module normalises with LayerNorm instead of BatchNorm: no running statistics
  to carry, no dependence on padding or on how the batch is split across hosts.

Padding: `mask [B, T]` (True = valid frame). Padded keys get no attention weight; padded frames
are zeroed before the depthwise convolution so they never leak into valid neighbours.

Shape letters: B batch, T frames, D model dim, H heads, F feed-forward (mlp) dim,
W depthwise kernel width.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.layers.attention import MultiHeadAttention, RelativePositionBias

ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")


@dataclasses.dataclass(frozen=True)
class ConformerConfig:
  """Hyperparameters of one conformer block.

  Attributes:
    dim: model width D.
    num_heads: attention heads H (head dim E = D / H).
    mlp_dim: hidden width F of each feed-forward module.
    conv_kernel_size: width W of the depthwise convolution.
    dropout_rate: dropout on every residual branch.
    attention_dropout_rate: dropout on the attention weights.
    relpos_num_buckets: T5 relative-position buckets (split between both directions).
    relpos_max_distance: distance beyond which all offsets share a bucket.
    dtype: computation dtype ("float32" or "bfloat16"); parameters stay float32.
  """
  dim: int = 1024
  num_heads: int = 8
  mlp_dim: int = 4096
  conv_kernel_size: int = 5
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  dtype: str = "float32"

  def __post_init__(self):
    if self.dim % self.num_heads:
      raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
    if self.relpos_num_buckets < 4:
      raise ValueError(f"relpos_num_buckets={self.relpos_num_buckets} must be >= 4")


def partitioned(init, *names):
  """`init` with logical axis names, one per parameter dimension (None = never sharded)."""
  return nn.with_logical_partitioning(init, names)


def layer_norm(dtype, name=None) -> nn.LayerNorm:
  """LayerNorm whose scale and bias carry the `norm` axis name."""
  return nn.LayerNorm(dtype=dtype,
                      scale_init=partitioned(nn.initializers.ones, "norm"),
                      bias_init=partitioned(nn.initializers.zeros, "norm"),
                      name=name)


def dense(features, names, dtype, use_bias=True, name=None) -> nn.Dense:
  """Dense layer with kernel axis names `names = (in, out)`; the bias takes `out`."""
  return nn.Dense(features,
                  use_bias=use_bias,
                  dtype=dtype,
                  kernel_init=partitioned(nn.initializers.xavier_uniform(), *names),
                  bias_init=partitioned(nn.initializers.zeros, names[-1]),
                  name=name)


class FeedForward(nn.Module):
  """Pre-norm feed-forward module: LN, D -> F, swish, dropout, F -> D, dropout."""
  config: ConformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    h = layer_norm(dtype, "norm")(x)
    h = dense(cfg.mlp_dim, ("embed", "mlp"), dtype, name="wi")(h)  # [B, T, F]
    h = nn.with_logical_constraint(
        nn.swish(h), ("activation_batch", "activation_length", "activation_mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    h = dense(cfg.dim, ("mlp", "embed"), dtype, name="wo")(h)  # [B, T, D]
    return nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)


class ConvolutionModule(nn.Module):
  """LN, pointwise GLU, (padding zeroed) depthwise conv, LN, swish, pointwise, dropout."""
  config: ConformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None, deterministic: bool) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    h = layer_norm(dtype, "norm")(x)
    # GLU as two projections (not one split in halves) so each shards cleanly on "mlp".
    value = dense(cfg.dim, ("embed", "mlp"), dtype, name="glu_value")(h)
    gate = dense(cfg.dim, ("embed", "mlp"), dtype, name="glu_gate")(h)
    h = value * nn.sigmoid(gate)  # [B, T, D]
    if mask is not None:
      h = jnp.where(mask[..., None], h, 0)
    h = nn.Conv(cfg.dim, (cfg.conv_kernel_size,), padding="SAME", feature_group_count=cfg.dim,
                dtype=dtype,
                kernel_init=partitioned(nn.initializers.lecun_normal(), "conv_kernel", None, "mlp"),
                bias_init=partitioned(nn.initializers.zeros, "mlp"),
                name="depthwise")(h)  # [B, T, D]
    h = nn.swish(layer_norm(dtype, "conv_norm")(h))
    h = dense(cfg.dim, ("mlp", "embed"), dtype, name="pointwise_out")(h)
    return nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)


class ConformerBlock(nn.Module):
  """One conformer block: `[B, T, D] -> [B, T, D]`, given the stack's relative bias."""
  config: ConformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array | None, mask: jax.Array | None = None,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    x = nn.with_logical_constraint(x.astype(dtype), ACTIVATION_AXES)
    x = x + 0.5 * FeedForward(cfg, name="ffn_start")(x, deterministic)

    h = layer_norm(dtype, "attention_norm")(x)
    h = MultiHeadAttention(cfg.num_heads, cfg.dim // cfg.num_heads, cfg.attention_dropout_rate,
                           dtype=dtype, name="attention")(
                               h, bias=bias,
                               mask=None if mask is None else mask[:, None, None, :],
                               deterministic=deterministic)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)

    x = x + ConvolutionModule(cfg, name="conv")(x, mask, deterministic)
    x = x + 0.5 * FeedForward(cfg, name="ffn_end")(x, deterministic)
    x = layer_norm(dtype, "final_norm")(x)
    return nn.with_logical_constraint(x, ACTIVATION_AXES)


class ConformerStack(nn.Module):
  """`num_layers` conformer blocks sharing one bidirectional T5 relative position bias.

  `__call__(..., num_layers=n)` runs only the first `n` blocks (feature extraction from an
  inner layer); the parameters of all blocks exist either way.
  """
  config: ConformerConfig
  num_layers: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, deterministic: bool = True,
               num_layers: int | None = None) -> jax.Array:
    cfg = self.config
    t = x.shape[1]
    bias = RelativePositionBias(cfg.num_heads, bidirectional=True,
                                num_buckets=cfg.relpos_num_buckets,
                                max_distance=cfg.relpos_max_distance,
                                dtype=jnp.dtype(cfg.dtype), name="relpos").contiguous(0, t, t)
    blocks = [ConformerBlock(cfg, name=f"block_{i}") for i in range(self.num_layers)]
    n = self.num_layers if num_layers is None else num_layers
    if not 0 <= n <= self.num_layers:
      raise ValueError(f"num_layers={n} outside [0, {self.num_layers}]")
    if self.is_initializing():
      n = self.num_layers  # create every block's parameters
    for block in blocks[:n]:
      x = block(x, bias, mask, deterministic)
    return x
