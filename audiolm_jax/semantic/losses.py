"""w2v-BERT pre-training: span masking, contrastive and masked-prediction losses.

    L = beta * (L_w + alpha * L_d) + gamma * L_m

* `L_w` contrastive (wav2vec 2.0 InfoNCE): at each masked frame, the contrastive module's
  output must pick the quantized unmasked feature of that frame among `num_negatives`
  distractors, quantized features of other masked frames of the same utterance; similarity is
  cosine / temperature.
* `L_d` codebook diversity: `(G V - perplexity(avg softmax)) / (G V)`, 0 when every entry is
  used equally.
* `L_m` masked prediction: cross-entropy of the quantizer's target ids from the MLM module's
  logits, at masked frames only.

Shape letters: B batch, S samples, T frames, N negatives, E compared dim, G codebook groups,
V entries per group.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from audiolm_jax.errors import ConfigError
from audiolm_jax.frames import frame_mask, pad_to_frames
from audiolm_jax.semantic.w2v_bert import W2VBert


@dataclasses.dataclass(frozen=True)
class W2VBertLossConfig:
  """Pre-training loss hyperparameters (defaults: wav2vec 2.0 / w2v-BERT).

  Attributes:
    mask_prob: probability that a valid frame starts a masked span.
    mask_length: frames per masked span (spans may overlap and are cut at the clip's end).
    num_negatives: distractors per masked frame for the contrastive loss.
    contrastive_temperature: kappa, the cosine-similarity temperature.
    diversity_weight: alpha, weight of the codebook diversity loss inside L_c.
    contrastive_weight: beta, weight of L_c in the total.
    mlm_weight: gamma, weight of L_m in the total.
    gumbel_start: Gumbel-softmax temperature at step 0.
    gumbel_end: floor of the Gumbel-softmax temperature.
    gumbel_decay: per-step multiplicative decay of the temperature.
  """
  mask_prob: float = 0.065
  mask_length: int = 10
  num_negatives: int = 100
  contrastive_temperature: float = 0.1
  diversity_weight: float = 0.1
  contrastive_weight: float = 1.0
  mlm_weight: float = 1.0
  gumbel_start: float = 2.0
  gumbel_end: float = 0.5
  gumbel_decay: float = 0.999995

  def __post_init__(self):
    if not 0.0 < self.mask_prob <= 1.0:
      raise ConfigError(f"loss.mask_prob={self.mask_prob} must be in (0, 1]")
    if self.mask_length < 1 or self.num_negatives < 1:
      raise ConfigError("loss.mask_length and loss.num_negatives must be >= 1")

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> "W2VBertLossConfig":
    cfg = dict(cfg)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
      raise ConfigError(f"w2v-BERT loss config: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**cfg)


def gumbel_temperature(step: jax.Array | int, cfg: W2VBertLossConfig) -> jax.Array:
  """`max(start * decay^step, end)`, the wav2vec 2.0 schedule."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.maximum(cfg.gumbel_start * cfg.gumbel_decay**step, cfg.gumbel_end)


def span_mask(key: jax.Array, valid: jax.Array, mask_prob: float, mask_length: int) -> jax.Array:
  """wav2vec 2.0 span masking of frames.

  Every valid frame starts a span with probability `mask_prob`; a span covers `mask_length`
  frames from its start (cut at the end of the valid frames). An utterance that drew no start
  gets one at a uniformly chosen valid frame, so every non-empty utterance has masked frames.

  Args:
    key: PRNG key.
    valid: `[B, T]` valid frames.
    mask_prob: start probability.
    mask_length: span length in frames.

  Returns:
    `[B, T]` bool, True = masked (always within `valid`).
  """
  start_key, fallback_key = jax.random.split(key)
  starts = jax.random.bernoulli(start_key, mask_prob, valid.shape) & valid
  fallback = jax.random.categorical(fallback_key, jnp.where(valid, 0.0, -jnp.inf))  # [B]
  forced = jax.nn.one_hot(fallback, valid.shape[1], dtype=bool) & valid
  starts = starts | (forced & ~jnp.any(starts, axis=1, keepdims=True))
  count = jnp.cumsum(starts.astype(jnp.int32), axis=1)  # starts in [0, t]
  before = jnp.pad(count, ((0, 0), (mask_length, 0)))[:, :valid.shape[1]]  # in [0, t - M]
  return (count - before > 0) & valid


def sample_negatives(key: jax.Array, mask_positions: jax.Array,
                     num_negatives: int) -> tuple[jax.Array, jax.Array]:
  """Distractor frames for each frame: other masked frames of the same utterance.

  Drawn uniformly with replacement among the utterance's masked frames other than the frame
  itself.

  Args:
    key: PRNG key.
    mask_positions: `[B, T]` masked frames.
    num_negatives: N.

  Returns:
    `(ids [B, T, N] int32 frame indices, valid [B, T, N])`; `valid` is False at unmasked
    frames and in utterances with fewer than two masked frames.
  """
  b, t = mask_positions.shape
  count = jnp.sum(mask_positions, axis=1)  # [B]
  order = jnp.argsort(~mask_positions, axis=1, stable=True)  # masked frames first, in order
  rank = jnp.cumsum(mask_positions, axis=1) - 1  # [B, T] index of a masked frame in `order`
  high = jnp.maximum(count - 1, 1)[:, None, None]
  r = jax.random.randint(key, (b, t, num_negatives), 0, high)  # among the other count - 1
  r = r + (r >= rank[..., None])  # skip the frame itself
  r = jnp.minimum(r, t - 1)
  ids = jnp.take_along_axis(order, r.reshape(b, -1), axis=1).reshape(b, t, num_negatives)
  valid = (count >= 2)[:, None, None] & mask_positions[..., None]
  return ids.astype(jnp.int32), jnp.broadcast_to(valid, ids.shape)


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-8)
  b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-8)
  return jnp.sum(a * b, axis=-1)


def contrastive_loss(context: jax.Array, targets: jax.Array, mask_positions: jax.Array,
                     negative_ids: jax.Array, negative_valid: jax.Array,
                     temperature: float) -> tuple[jax.Array, jax.Array]:
  """InfoNCE over masked frames: the true target against distractor targets.

  `loss_t = -log softmax([cos(c_t, q_t), cos(c_t, q_n1), ...] / temperature)[0]`, averaged
  over masked frames. Distractors that are invalid or identical to the true target (a repeated
  codebook entry) are left out of the softmax.

  Args:
    context: `[B, T, E]` contrastive module outputs.
    targets: `[B, T, E]` quantized targets.
    mask_positions: `[B, T]` masked frames (where the loss is taken).
    negative_ids: `[B, T, N]` frame indices of distractors (`sample_negatives`).
    negative_valid: `[B, T, N]`.
    temperature: kappa.

  Returns:
    `(loss [], accuracy [])`, accuracy = fraction of masked frames whose true target scores
    highest.
  """
  context = context.astype(jnp.float32)
  targets = targets.astype(jnp.float32)
  b, t, n = negative_ids.shape
  negatives = jnp.take_along_axis(targets, negative_ids.reshape(b, t * n, 1), axis=1)
  negatives = negatives.reshape(b, t, n, -1)  # [B, T, N, E]
  pos = _cosine(context, targets)[..., None]  # [B, T, 1]
  neg = _cosine(context[:, :, None], negatives)  # [B, T, N]
  same = jnp.all(negatives == targets[:, :, None], axis=-1)
  neg = jnp.where(negative_valid & ~same, neg, -jnp.inf)
  logits = jnp.concatenate([pos, neg], axis=-1) / temperature  # [B, T, 1 + N]
  nll = -jax.nn.log_softmax(logits, axis=-1)[..., 0]  # [B, T]
  w = mask_positions.astype(jnp.float32)
  total = jnp.maximum(jnp.sum(w), 1.0)
  correct = (jnp.argmax(logits, axis=-1) == 0).astype(jnp.float32)
  return jnp.sum(nll * w) / total, jnp.sum(correct * w) / total


def diversity_loss(avg_probs: jax.Array) -> jax.Array:
  """`(G V - sum_g exp(entropy(avg_probs_g))) / (G V)` of `avg_probs [G, V]`."""
  g, v = avg_probs.shape
  p = avg_probs.astype(jnp.float32)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-30)), 0.0), axis=-1)
  return (g * v - jnp.sum(jnp.exp(entropy))) / (g * v)


def masked_prediction_loss(logits: jax.Array, target_ids: jax.Array,
                           mask_positions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cross-entropy of `target_ids [B, T, G]` under `logits [B, T, G, V]` at masked frames.

  Returns:
    `(loss [], accuracy [])`, both averaged over masked frames and groups.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, target_ids[..., None], axis=-1)[..., 0]  # [B, T, G]
  correct = (jnp.argmax(logits, axis=-1) == target_ids).astype(jnp.float32)
  w = mask_positions.astype(jnp.float32)[..., None]
  total = jnp.maximum(jnp.sum(w) * target_ids.shape[-1], 1.0)
  return jnp.sum(nll * w) / total, jnp.sum(correct * w) / total


def pretraining_loss(model: W2VBert,
                     params: Any,
                     wav: jax.Array,
                     wav_mask: jax.Array | None,
                     key: jax.Array,
                     cfg: W2VBertLossConfig,
                     step: jax.Array | int = 0,
                     deterministic: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The w2v-BERT objective on one batch; differentiable in `params`.

  Args:
    model: the `W2VBert` module.
    params: its parameters.
    wav: `[B, S]` waveforms.
    wav_mask: `[B, S]` real samples (None = all).
    key: PRNG key for masks, distractors, dropout and Gumbel noise.
    cfg: loss hyperparameters.
    step: training step (sets the Gumbel temperature).
    deterministic: no dropout and argmax quantisation (evaluation).

  Returns:
    `(loss, metrics)`; metrics hold every term, both accuracies, the codebook perplexities
    and the fraction of masked frames.
  """
  mask_key, negative_key, dropout_key, gumbel_key = jax.random.split(key, 4)
  _, padded_mask = pad_to_frames(wav, wav_mask, model.config.samples_per_frame)
  valid = frame_mask(padded_mask, model.config.samples_per_frame)  # [B, T]
  mask_positions = span_mask(mask_key, valid, cfg.mask_prob, cfg.mask_length)
  temperature = gumbel_temperature(step, cfg)
  out = model.apply({"params": params}, wav, wav_mask, mask_positions,
                    deterministic=deterministic, gumbel_temperature=temperature,
                    rngs={"dropout": dropout_key, "gumbel": gumbel_key})
  negative_ids, negative_valid = sample_negatives(negative_key, mask_positions,
                                                  cfg.num_negatives)
  l_w, contrastive_accuracy = contrastive_loss(out.context, out.targets, mask_positions,
                                               negative_ids, negative_valid,
                                               cfg.contrastive_temperature)
  l_d = diversity_loss(out.quantizer.avg_probs)
  l_c = l_w + cfg.diversity_weight * l_d
  l_m, mlm_accuracy = masked_prediction_loss(out.mlm_logits, out.quantizer.ids, mask_positions)
  loss = cfg.contrastive_weight * l_c + cfg.mlm_weight * l_m
  metrics = {
      "loss": loss,
      "contrastive_loss": l_c,
      "infonce_loss": l_w,
      "diversity_loss": l_d,
      "mlm_loss": l_m,
      "mlm_accuracy": mlm_accuracy,
      "contrastive_accuracy": contrastive_accuracy,
      "codebook_perplexity": out.quantizer.prob_perplexity,
      "code_perplexity": out.quantizer.code_perplexity,
      "mask_fraction": jnp.sum(mask_positions) / jnp.maximum(jnp.sum(valid), 1),
      "gumbel_temperature": temperature,
  }
  return loss, metrics
