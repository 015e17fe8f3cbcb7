"""The trainer's proving task (a test fixture): the stages' Transformer on synthetic tokens.

The model is `lm.transformer.Transformer` itself (scanned layers, every parameter and key
activation named for sharding); the data is cheap, deterministic and learnable: each sequence
is an arithmetic progression modulo the vocabulary with a random start and stride, so after two
tokens the rest is predictable and the loss falls quickly. The data pipeline is grain, sharded
per process, with a checkpointable iterator state, exactly like the audio pipelines.

Importing this module registers the task `toy_lm` (`toy_lm_config.py` does, so a config file
is all the command line needs).

Shapes: B batch, T length, V vocabulary.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.errors import ConfigError
from audiolm_jax.lm.transformer import Transformer, TransformerConfig
from audiolm_jax.train.task import LossOutput, Task, register

# The two splits of the synthetic corpus and the seed offset that keeps them apart.
SPLITS = {"train": 0, "validation": 1}


def model_config(config: ml_collections.ConfigDict) -> TransformerConfig:
  """The Transformer of a toy config (`model`: vocab_size, num_layers, num_heads, d_model,
  d_ff, dropout)."""
  m = config.model
  if m.d_model % m.num_heads:
    raise ConfigError(f"model.d_model={m.d_model} is not divisible by "
                      f"model.num_heads={m.num_heads}")
  return TransformerConfig(vocab_size=m.vocab_size, d_model=m.d_model, num_layers=m.num_layers,
                           num_heads=m.num_heads, head_dim=m.d_model // m.num_heads,
                           mlp_dim=m.d_ff, dropout_rate=m.dropout,
                           max_len=config.data.seq_len - 1, scan_layers=True,
                           dtype=config.get("compute_dtype", "float32"))


def param_count(config: ml_collections.ConfigDict) -> int:
  """Parameters of the toy model of `config` (from shapes alone)."""
  model = Transformer(model_config(config))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes["params"])))


def flops_per_example(cfg: TransformerConfig, length: int) -> float:
  """Forward + backward model FLOPs of one sequence (the stage tasks' rule)."""
  inner = cfg.num_heads * cfg.head_dim
  matmul_params = (cfg.num_layers * (4 * cfg.d_model * inner + 3 * cfg.d_model * cfg.mlp_dim)
                   + cfg.d_model * cfg.vocab_size)
  return 6.0 * matmul_params * length + 12.0 * cfg.num_layers * length * length * inner


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
  """Next-token prediction with the stages' Transformer on synthetic progressions."""

  throughput_unit = "tokens"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = model_config(config)
    self.model = Transformer(self.model_cfg)

  def make_iterator(self, split, process_index, process_count):
    ds = make_dataset(self.config.data, self.model_cfg.vocab_size, split, self.config.seed,
                      self.rows_per_process(process_count), process_index, process_count)
    return iter(ds)

  def batch_spec(self, batch_size):
    return {"tokens": jax.ShapeDtypeStruct((batch_size, self.config.data.seq_len), jnp.int32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

  def init(self, rng):
    return self.model.init({"params": rng}, jnp.zeros((1, 1), jnp.int32))["params"], {}

  def loss(self, params, extra, batch, rng, *, train):
    del extra
    tokens = batch["tokens"]  # [B, T+1]
    logits = self.model.apply({"params": params}, tokens[:, :-1], deterministic=not train,
                              rngs={"dropout": rng})
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
    return flops_per_example(self.model_cfg, self.model_cfg.max_len)
