"""How likely a trained semantic LM finds token sequences: negative log-likelihood per token.

    nll = semantic_nll(lm, [ids_1, ids_2, ...])   # [N] mean NLL (nats) per predicted token
    perplexity = np.exp(nll)

A content measure that needs no transcript: audio re-tokenized into semantic ids and scored
by the semantic LM (the paper's stage 1) says how speech-like its content is, whatever the
words. Each sequence is deduplicated as in training and scored with teacher forcing, in
windows of the stage's training length (`max_frames` tokens after BOS; a longer sequence is
split into consecutive windows, each starting with BOS), EOS not counted.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import DataError
from audiolm_jax.lm.stages import SemanticStage, remove_consecutive_duplicates


@functools.lru_cache(maxsize=8)
def _scorer(model):
  """A jitted `(params, inputs, targets, weights, mask) -> (NLL sums [B], token counts [B])`."""

  @jax.jit
  def token_nll(params, inputs, targets, weights, mask):
    logits = model.apply({"params": params}, inputs).astype(jnp.float32)       # [B, N, V]
    logits = jnp.where(mask, logits, -1e9)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    return jnp.sum(nll * weights, axis=1), jnp.sum(weights, axis=1)

  return token_nll


def semantic_nll(lm, sequences: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
  """Mean NLL per token (nats) of each raw id sequence under the semantic LM `lm`
  (a `pretrained.TrainedStage` of `semantic_lm`); NaN for a sequence with no token."""
  stage = lm.stage
  if not isinstance(stage, SemanticStage):
    raise DataError(f"semantic_nll needs a semantic LM, got a {type(stage).__name__}")
  window = stage.max_frames
  rows, owner = [], []
  for i, ids in enumerate(sequences):
    tokens = remove_consecutive_duplicates(np.asarray(ids))
    tokens = tokens[tokens >= 0]
    for start in range(0, len(tokens), window):
      example = stage.make_example(tokens[start:start + window])
      rows.append(example)
      owner.append(i)
  totals, counts = np.zeros(len(sequences)), np.zeros(len(sequences))
  if not rows:
    return np.full(len(sequences), np.nan)
  mask = jnp.asarray(stage.target_logit_mask())
  mask = mask.at[:, stage.vocab.eos_id].set(False)   # EOS is never a target here
  score = _scorer(lm.model)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    pad = batch_size - len(chunk)
    inputs = np.stack([r.inputs for r in chunk] + [chunk[0].inputs] * pad)
    targets = np.stack([r.targets for r in chunk] + [chunk[0].targets] * pad)
    weights = np.stack([r.weights for r in chunk] + [np.zeros_like(chunk[0].weights)] * pad)
    weights = weights * (targets != stage.vocab.eos_id)
    nll, n = jax.device_get(score(lm.params, inputs, targets, weights, mask))
    for j in range(len(chunk)):
      totals[owner[start + j]] += float(nll[j])
      counts[owner[start + j]] += float(n[j])
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
