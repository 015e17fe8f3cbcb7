"""A small decoder-only Transformer LM on synthetic token sequences: the trainer's proving task.

It is a real model (pre-norm blocks, causal multi-head attention, gated-GELU MLP, learned
positions, layers scanned with `nn.scan`, every parameter and key activation named for
sharding) on data that is cheap, deterministic and learnable: each sequence is an arithmetic
progression modulo the vocabulary with a random start and stride, so after two tokens the rest
is predictable and the loss falls quickly. The data pipeline is grain, sharded per process,
with a checkpointable iterator state, exactly like the audio pipelines.

Shapes: B batch, T length, D model dim, H heads, K head dim (D / H), F MLP dim, V vocabulary,
L layers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.errors import ConfigError
from audiolm_jax.train.task import LossOutput, Task, register

# The two splits of the synthetic corpus and the seed offset that keeps them apart.
SPLITS = {"train": 0, "validation": 1}


@dataclasses.dataclass(frozen=True)
class ToyLMConfig:
  """Hyperparameters of `ToyTransformer`."""
  vocab_size: int
  max_len: int
  num_layers: int
  num_heads: int
  d_model: int
  d_ff: int
  dropout: float = 0.0

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "ToyLMConfig":
    m = config.model
    if m.d_model % m.num_heads:
      raise ConfigError(f"model.d_model={m.d_model} is not divisible by "
                        f"model.num_heads={m.num_heads}")
    return cls(vocab_size=m.vocab_size, max_len=config.data.seq_len - 1,
               num_layers=m.num_layers, num_heads=m.num_heads, d_model=m.d_model,
               d_ff=m.d_ff, dropout=m.dropout)

  def param_count(self) -> int:
    """The exact number of parameters (tested against the model)."""
    d, f, v = self.d_model, self.d_ff, self.vocab_size
    block = 2 * d + 4 * d * d + 3 * d * f  # two norms, q/k/v/o, gated MLP
    return v * d + self.max_len * d + self.num_layers * block + d + d * v

  def flops_per_example(self) -> float:
    """Model FLOPs of forward + backward (3x forward) for one sequence of `max_len` inputs."""
    d, f, v, t = self.d_model, self.d_ff, self.vocab_size, self.max_len
    matmul_params = self.num_layers * (4 * d * d + 3 * d * f) + d * v
    attention = self.num_layers * 4 * t * d  # q.k and attention.v, per token
    return 3.0 * t * (2.0 * matmul_params + attention)


class RMSNorm(nn.Module):
  """Root-mean-square norm, computed in float32."""

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                       (x.shape[-1],))
    y = x.astype(jnp.float32)
    y = y * jax.lax.rsqrt(jnp.mean(y * y, axis=-1, keepdims=True) + 1e-6)
    return (y * scale.astype(jnp.float32)).astype(x.dtype)


class Block(nn.Module):
  """Pre-norm Transformer block: causal self-attention, then a gated-GELU MLP (T5.1.1)."""
  cfg: ToyLMConfig
  deterministic: bool

  def _param(self, name, shape, names, fan_in, dtype):
    init = nn.with_logical_partitioning(nn.initializers.normal(stddev=fan_in**-0.5), names)
    return self.param(name, init, shape).astype(dtype)

  @nn.compact
  def __call__(self, x, _):
    cfg = self.cfg
    d, h = cfg.d_model, cfg.num_heads
    k = d // h
    dtype = x.dtype
    act = ("activation_batch", "activation_length", "activation_embed")
    drop = nn.Dropout(cfg.dropout, deterministic=self.deterministic)

    y = RMSNorm(name="attn_norm")(x)
    wq = self._param("query", (d, h, k), ("embed", "heads", "kv"), d, dtype)
    wk = self._param("key", (d, h, k), ("embed", "heads", "kv"), d, dtype)
    wv = self._param("value", (d, h, k), ("embed", "heads", "kv"), d, dtype)
    wo = self._param("out", (h, k, d), ("heads", "kv", "embed"), d, dtype)
    q = jnp.einsum("btd,dhk->bthk", y, wq) * k**-0.5  # [B, T, H, K]
    kk = jnp.einsum("btd,dhk->bthk", y, wk)
    v = jnp.einsum("btd,dhk->bthk", y, wv)
    q = nn.with_logical_constraint(
        q, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
    logits = jnp.einsum("bthk,bshk->bhts", q, kk).astype(jnp.float32)  # [B, H, T, T]
    t = x.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(causal, logits, jnp.finfo(jnp.float32).min)
    probs = drop(jax.nn.softmax(logits, axis=-1).astype(dtype))
    attn = jnp.einsum("bhts,bshk->bthk", probs, v)  # [B, T, H, K]
    x = x + drop(jnp.einsum("bthk,hkd->btd", attn, wo))
    x = nn.with_logical_constraint(x, act)

    y = RMSNorm(name="mlp_norm")(x)
    wi_gate = self._param("wi_gate", (d, cfg.d_ff), ("embed", "mlp"), d, dtype)
    wi_up = self._param("wi_up", (d, cfg.d_ff), ("embed", "mlp"), d, dtype)
    wo_mlp = self._param("wo", (cfg.d_ff, d), ("mlp", "embed"), cfg.d_ff, dtype)
    gate = nn.gelu(jnp.einsum("btd,df->btf", y, wi_gate))  # [B, T, F]
    hidden = gate * jnp.einsum("btd,df->btf", y, wi_up)
    hidden = nn.with_logical_constraint(
        hidden, ("activation_batch", "activation_length", "activation_mlp"))
    x = x + drop(jnp.einsum("btf,fd->btd", hidden, wo_mlp))
    return nn.with_logical_constraint(x, act), None


class ToyTransformer(nn.Module):
  """Decoder-only Transformer: tokens [B, T] -> logits [B, T, V] (float32)."""
  cfg: ToyLMConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, tokens):
    cfg = self.cfg
    embed = self.param("embed", nn.with_logical_partitioning(
        nn.initializers.normal(stddev=1.0), ("vocab", "embed")), (cfg.vocab_size, cfg.d_model))
    pos = self.param("pos_embed", nn.with_logical_partitioning(
        nn.initializers.normal(stddev=0.02), (None, "embed")), (cfg.max_len, cfg.d_model))
    x = embed[tokens] + pos[:tokens.shape[1]].astype(embed.dtype)  # [B, T, D]
    x = nn.Dropout(cfg.dropout, deterministic=self.deterministic)(x)
    x = nn.with_logical_constraint(
        x, ("activation_batch", "activation_length", "activation_embed"))
    blocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True,
                                                                    "dropout": True},
                     length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = blocks(cfg, self.deterministic, name="layers")(x, None)
    x = RMSNorm(name="final_norm")(x)
    head = self.param("head", nn.with_logical_partitioning(
        nn.initializers.normal(stddev=cfg.d_model**-0.5), ("embed", "vocab")),
                      (cfg.d_model, cfg.vocab_size))
    logits = jnp.einsum("btd,dv->btv", x, head.astype(x.dtype)).astype(jnp.float32)
    return nn.with_logical_constraint(
        logits, ("activation_batch", "activation_length", "activation_vocab"))


def make_example(index: int, *, seed: int, seq_len: int, vocab_size: int,
                 max_stride: int) -> dict[str, np.ndarray]:
  """Sequence `index` of a corpus: (start + stride * t) mod V, start and stride seeded by index."""
  rng = np.random.default_rng([seed, index])
  start = rng.integers(0, vocab_size)
  stride = rng.integers(1, max_stride + 1)
  tokens = (start + stride * np.arange(seq_len)) % vocab_size
  return {"tokens": tokens.astype(np.int32), "valid": np.float32(1.0)}


def make_dataset(data: ml_collections.ConfigDict, vocab_size: int, split: str, seed: int,
                 local_batch: int, process_index: int, process_count: int) -> grain.IterDataset:
  """This process's rows of every global batch: local batches `c` with `c % P == p`.

  Global batch `b` is the `P` consecutive local batches `b*P .. b*P + P-1`, so it holds the
  same examples in the same order whatever the number of processes.
  """
  if split not in SPLITS:
    raise ConfigError(f"toy_lm: unknown split {split!r}; known: {', '.join(SPLITS)}")
  split_seed = seed * len(SPLITS) + SPLITS[split]
  train = split == "train"
  ds = grain.MapDataset.range(data.num_examples if train else data.num_eval_examples)
  if train:  # An endless stream, reshuffled every epoch.
    ds = ds.shuffle(seed=split_seed).repeat(None)
  ds = ds.map(lambda i: make_example(int(i), seed=split_seed, seq_len=data.seq_len,
                                     vocab_size=vocab_size, max_stride=data.max_stride))
  ds = ds.batch(local_batch, drop_remainder=True)[process_index::process_count]
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=data.num_threads,
                                              prefetch_buffer_size=data.prefetch))


@register("toy_lm")
class ToyLMTask(Task):
  """Next-token prediction with `ToyTransformer` on synthetic progressions."""

  throughput_unit = "tokens"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = ToyLMConfig.from_config(config)

  def make_iterator(self, split, process_index, process_count):
    if self.config.batch_size % process_count:
      raise ConfigError(f"batch_size={self.config.batch_size} is not divisible by "
                        f"{process_count} processes")
    ds = make_dataset(self.config.data, self.model_cfg.vocab_size, split, self.config.seed,
                      self.config.batch_size // process_count, process_index, process_count)
    return iter(ds)

  def batch_spec(self, batch_size):
    return {"tokens": jax.ShapeDtypeStruct((batch_size, self.config.data.seq_len), jnp.int32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

  def init(self, rng):
    tokens = jnp.zeros((1, self.model_cfg.max_len), jnp.int32)
    return ToyTransformer(self.model_cfg).init({"params": rng}, tokens)["params"], {}

  def loss(self, params, extra, batch, rng, *, train):
    del extra
    tokens = batch["tokens"]  # [B, T+1]
    model = ToyTransformer(self.model_cfg, deterministic=not train)
    logits = model.apply({"params": params}, tokens[:, :-1], rngs={"dropout": rng})
    targets = tokens[:, 1:]  # [B, T]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    mask = jnp.broadcast_to(batch["valid"][:, None], targets.shape).astype(jnp.float32)
    weight = mask.sum()
    denom = jnp.maximum(weight, 1e-6)
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    return LossOutput(loss=(nll * mask).sum() / denom, weight=weight,
                      metrics={"accuracy": (correct * mask).sum() / denom})

  def units_per_example(self, batch_spec: Mapping[str, Any]) -> float:
    return float(batch_spec["tokens"].shape[1] - 1)

  def flops_per_example(self) -> float:
    return self.model_cfg.flops_per_example()
