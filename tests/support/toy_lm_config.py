"""The toy LM task's config (a test fixture): proves the trainer end to end.

  audiolm-jax train --config tests/support/toy_lm_config.py:cpu --workdir /tmp/toy_lm
  audiolm-jax inspect /tmp/toy_lm
  audiolm-jax inspect --plan --config tests/support/toy_lm_config.py:paper --mesh 4x4x8

Variants: `tiny` (tests, seconds), `cpu` (a few minutes on two cores, loss falls well below
log V), `paper` (the AudioLM stage size: 12 layers, 16 heads, d=1024, FFN 4096, the coarse
stage's vocabulary; for memory plans and accelerators).
"""

import os
import sys

from audiolm_jax.train.defaults import base_config

# The task lives next to this file; importing it registers `toy_lm` (once per process).
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy_lm  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  variant = arg or "tiny"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}")
  c = base_config()
  c.task = "toy_lm"

  c.model = dict(
      vocab_size=64,   # V, token ids 0..V-1
      num_layers=2,    # L Transformer blocks (scanned)
      num_heads=4,     # H attention heads
      d_model=32,      # D model width
      d_ff=64,         # F MLP hidden width
      dropout=0.1,     # dropout on attention probabilities and residual branches
  )
  c.data.corpus = "toy_progressions"  # (start + stride * t) mod V sequences, seeded by index
  c.data.num_examples = 4096  # training sequences (reshuffled every epoch)
  c.data.num_eval_examples = 256  # validation sequences
  c.data.seq_len = 17         # tokens per sequence (the model sees seq_len - 1 inputs)
  c.data.max_stride = 7       # strides are drawn from 1..max_stride
  c.data.num_threads = 1      # grain reader threads
  c.data.prefetch = 4         # grain prefetch buffer, in batches

  c.total_steps = 20
  c.batch_size = 8
  c.checkpoint_every = 10
  c.keep_checkpoints = 3
  c.eval_every = 10
  c.eval_steps = 2
  c.log_every = 1
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 2

  if variant == "cpu":
    c.model.update(vocab_size=128, num_layers=4, num_heads=4, d_model=128, d_ff=512)
    c.data.seq_len = 65
    c.total_steps = 2000
    c.batch_size = 32
    c.checkpoint_every = 500
    c.eval_every = 250
    c.eval_steps = 4
    c.log_every = 20
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 100
  elif variant == "paper":
    # One AudioLM stage: 12 layers, 16 heads, d=1024, FFN 4096; coarse vocabulary 4 x 1024 + 3.
    c.model.update(vocab_size=4 * 1024 + 3, num_layers=12, num_heads=16, d_model=1024,
                   d_ff=4096)
    c.data.seq_len = 1025
    c.data.num_examples = 1 << 20
    c.total_steps = 100_000
    c.batch_size = 256
    c.checkpoint_every = 1000
    c.eval_every = 1000
    c.log_every = 50
    c.compute_dtype = "bfloat16"
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 1000
  return c
