"""SoundStorm (Borsos et al., 2023, arXiv 2305.09636): all RVQ levels of a clip from its semantic
tokens by a bidirectional conformer that predicts masked tokens in parallel; it replaces the
coarse and fine stages (`lm/stages.py`).

Shape letters used in this file:
  B  batch
  T  acoustic frames (50 Hz in the paper)
  S  semantic frames (25 Hz in the paper): T = r S, r = `frame_ratio` (acoustic per semantic)
  Q  RVQ levels (paper: 12)
  K  codes per level (paper: 1024); id K of every level is MASK
  D  model width

The model. Each acoustic frame t is one position of the conformer; its input is

    x_t = sum_q E_q[a(t, q)] + E_s[s(t // r)]        a(t, q) in 0..K (K = MASK)

(one table of K + 1 rows per level, one of K_s rows for the semantic tokens, which are repeated
r times to the acoustic frame rate), then `num_layers` conformer blocks (`layers/conformer.py`,
the w2v-BERT block with its T5 relative bias) and one output head per level: `[B, T, Q, K]`, or,
given a level per row, only that level's head: `[B, T, K]` (training and sampling need one).
Semantic ids are the *raw* (not deduplicated) ids at their own frame rate, as the tokenizers
write them into a token cache.

Training masks (the paper's scheme, `training_mask`): per row draw the prompt length
`p ~ U{0 .. n - 1}` (n the row's valid frames: the prompt is a prefix of the same utterance),
the level `q ~ U{0 .. Q - 1}` and a masking ratio `cos(u)`, `u ~ U[0, pi / 2]`; then

    frames < p (the prompt)   every level kept
    frames >= p               levels < q kept; level q: a random ceil(cos(u) (n - p)) of the
                              frames masked (at least one); levels > q all masked

and the loss (`masked_level_loss`) is the cross entropy of level q's masked tokens only. The
paper draws each frame's mask as an iid Bernoulli(cos(u)); an exact count draws the same share
on average, matches the sampler's schedule and never leaves a row without a target.

Generation is `lm/soundstorm_sampling.py` (the sampler knows no model).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import ConfigError
from audiolm_jax.frames import SAMPLE_RATE, frame_ratio
from audiolm_jax.layers.conformer import ConformerConfig, ConformerStack, partitioned
from audiolm_jax.lm.stages import Crop, aligned_crop

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SoundStormLayout:
  """What the tokens are: sizes, rates and the training crop.

  Attributes:
    semantic_codebook_size: K_s, semantic clusters (paper: 1024).
    acoustic_codebook_size: K, codes per RVQ level (paper: 1024).
    num_quantizers: Q, RVQ levels modelled (paper: 12, all of the codec's).
    crop_seconds: training crop (paper: 30 s).
    semantic_rate: semantic frames per second (paper: 25).
    acoustic_rate: acoustic frames per second (paper: 50).
  """
  semantic_codebook_size: int = 1024
  acoustic_codebook_size: int = 1024
  num_quantizers: int = 12
  crop_seconds: float = 30.0
  semantic_rate: int = 25
  acoustic_rate: int = 50

  def __post_init__(self):
    if self.num_quantizers < 1 or self.acoustic_codebook_size < 2:
      raise ConfigError(f"num_quantizers={self.num_quantizers} and acoustic_codebook_size="
                        f"{self.acoustic_codebook_size} must be >= 1 and >= 2")
    self.frame_ratio  # pylint: disable=pointless-statement  (checks the rates tile)

  @property
  def frame_ratio(self) -> int:
    """r, acoustic frames per semantic frame (`frames.frame_ratio`, paper: 2)."""
    if SAMPLE_RATE % self.semantic_rate or SAMPLE_RATE % self.acoustic_rate:
      raise ConfigError(f"rates {self.semantic_rate} / {self.acoustic_rate} Hz do not divide "
                        f"{SAMPLE_RATE} Hz")
    return frame_ratio(SAMPLE_RATE // self.semantic_rate, SAMPLE_RATE // self.acoustic_rate)

  @property
  def mask_id(self) -> int:
    """The MASK id of every level: K (codes are 0 .. K - 1)."""
    return self.acoustic_codebook_size

  @property
  def max_frames(self) -> int:
    """T, acoustic frames of a training crop."""
    frames = self.crop_seconds * self.acoustic_rate
    if frames != int(frames) or frames < self.frame_ratio or int(frames) % self.frame_ratio:
      raise ConfigError(f"crop_seconds={self.crop_seconds} is not a whole number of semantic "
                        "frames")
    return int(frames)

  @property
  def max_semantic_frames(self) -> int:
    """S, semantic frames of a training crop."""
    return self.max_frames // self.frame_ratio

  def crop(self, rng: np.random.Generator, semantic_ids, acoustic_codes) -> Crop:
    """An aligned random crop of `crop_seconds` (`lm.stages.aligned_crop`)."""
    return aligned_crop(rng, self.crop_seconds, semantic_ids=semantic_ids,
                        acoustic_codes=acoustic_codes, semantic_rate=self.semantic_rate,
                        acoustic_rate=self.acoustic_rate)


@dataclasses.dataclass(frozen=True)
class SoundStormConfig:
  """The model: its layout, conformer blocks and their number (hashable: a module field).

  Attributes:
    layout: sizes and rates (`SoundStormLayout`).
    num_layers: conformer blocks (paper: 12).
    conformer: one block's hyperparameters (paper: d = 1024, 16 heads, FFN 4096).
  """
  layout: SoundStormLayout = SoundStormLayout()
  num_layers: int = 12
  conformer: ConformerConfig = ConformerConfig(dim=1024, num_heads=16, mlp_dim=4096)


class SoundStorm(nn.Module):
  """`(semantic [B, S], acoustic [B, T, Q], frames [B, T]) -> logits` (see the module docstring).

  `acoustic` holds codes 0 .. K - 1 or MASK (= K); `frames` is True on valid frames (padding is
  hidden from attention). With `levels [B]` the logits are those of each row's level,
  `[B, T, K]`; without, every level's, `[B, T, Q, K]`. Float32 either way.
  """
  config: SoundStormConfig

  @nn.compact
  def __call__(self, semantic: Array, acoustic: Array, frames: Array | None = None,
               levels: Array | None = None, deterministic: bool = True) -> Array:
    cfg, layout = self.config, self.config.layout
    dim, dtype = cfg.conformer.dim, jnp.dtype(cfg.conformer.dtype)
    q, k = layout.num_quantizers, layout.acoustic_codebook_size
    batch, length = acoustic.shape[:2]
    embed_init = nn.initializers.normal(stddev=1.0 / math.sqrt(q + 1))
    tables = self.param("acoustic_embed", partitioned(embed_init, "codebook", "vocab", "embed"),
                        (q, k + 1, dim))  # [Q, K + 1, D]
    x = jnp.asarray(tables, dtype)[jnp.arange(q), acoustic].sum(axis=2)  # [B, T, D]
    semantic_table = self.param("semantic_embed", partitioned(embed_init, "vocab", "embed"),
                                (layout.semantic_codebook_size, dim))  # [K_s, D]
    semantic = upsample_semantic(semantic, layout.frame_ratio, length)  # [B, T]
    x = x + jnp.asarray(semantic_table, dtype)[semantic]
    x = nn.Dropout(cfg.conformer.dropout_rate)(x, deterministic=deterministic)
    x = ConformerStack(cfg.conformer, cfg.num_layers, name="conformer")(
        x, None if frames is None else frames.astype(bool), deterministic)  # [B, T, D]
    heads = self.param("heads", partitioned(nn.initializers.lecun_normal(batch_axis=(0,)),
                                            "codebook", "embed", "vocab"), (q, dim, k))
    heads = jnp.asarray(heads, dtype)  # [Q, D, K]
    if levels is None:
      logits = jnp.einsum("btd,qdk->btqk", x, heads)  # [B, T, Q, K]
    else:
      levels = jnp.broadcast_to(jnp.asarray(levels, jnp.int32), (batch,))
      logits = jnp.einsum("btd,bdk->btk", x, heads[levels])  # [B, T, K]
    return logits.astype(jnp.float32)


def upsample_semantic(semantic: Array, ratio: int, length: int) -> Array:
  """`[B, S] -> [B, length]`: semantic frame s covers acoustic frames `r s .. r s + r - 1`."""
  if semantic.shape[1] * ratio < length:
    raise ValueError(f"{semantic.shape[1]} semantic frames cover {semantic.shape[1] * ratio} "
                     f"acoustic frames, fewer than {length}")
  return jnp.repeat(semantic, ratio, axis=1)[:, :length]


class TrainingMask(NamedTuple):
  """What `training_mask` draws for a batch.

  Attributes:
    inputs: int32 `[B, T, Q]`, the codes with MASK where the model must predict.
    level: int32 `[B]`, the level q whose masked tokens carry the loss.
    targets: float32 `[B, T]`, 1 on the masked frames of level q, else 0.
    prompt_frames: int32 `[B]`, the prompt's length p (never masked).
    ratio: float32 `[B]`, the drawn masking ratio cos(u).
  """
  inputs: Array
  level: Array
  targets: Array
  prompt_frames: Array
  ratio: Array


def training_mask(rng: Array, codes: Array, frames: Array, mask_id: int) -> TrainingMask:
  """The paper's masking of `codes [B, T, Q]` with valid `frames [B, T]` (a prefix of each row).

  See the module docstring. Pure; every draw comes from `rng`.
  """
  batch, length, q = codes.shape
  k_prompt, k_level, k_ratio, k_order = jax.random.split(rng, 4)
  frames = frames.astype(bool)
  valid = jnp.sum(frames, axis=1).astype(jnp.int32)  # [B]
  prompt = jnp.floor(jax.random.uniform(k_prompt, (batch,)) * valid).astype(jnp.int32)
  prompt = jnp.clip(prompt, 0, jnp.maximum(valid - 1, 0))  # [B], leaves >= 1 frame to learn
  level = jax.random.randint(k_level, (batch,), 0, q)  # [B]
  ratio = jnp.cos(jax.random.uniform(k_ratio, (batch,)) * (jnp.pi / 2))  # [B]
  t = jnp.arange(length)
  free = frames & (t[None] >= prompt[:, None])  # [B, T], frames that may be masked
  count = jnp.maximum(jnp.ceil(ratio * jnp.sum(free, axis=1)), 1).astype(jnp.int32)  # [B]
  # A random `count` of the free frames: those of the smallest random scores.
  scores = jnp.where(free, jax.random.uniform(k_order, (batch, length)), 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)  # [B, T]
  chosen = free & (rank < count[:, None])  # [B, T]
  levels = jnp.arange(q)
  masked = (free[..., None] & (levels[None, None] > level[:, None, None])) | (
      chosen[..., None] & (levels[None, None] == level[:, None, None]))  # [B, T, Q]
  inputs = jnp.where(masked, mask_id, codes).astype(jnp.int32)
  return TrainingMask(inputs, level.astype(jnp.int32), chosen.astype(jnp.float32), prompt,
                      ratio.astype(jnp.float32))


def masked_level_loss(logits: Array, codes: Array, mask: TrainingMask
                      ) -> tuple[Array, dict[str, Array]]:
  """Mean cross entropy of level q's masked tokens.

  Args:
    logits: float32 `[B, T, K]`, the model's logits of each row's level `mask.level`.
    codes: the unmasked codes `[B, T, Q]`.
    mask: from `training_mask`.

  Returns:
    `(loss, metrics)`: `loss`, `accuracy` (of the argmax) and `tokens` (the masked count).
  """
  targets = jnp.take_along_axis(codes, mask.level[:, None, None], axis=2)[..., 0]  # [B, T]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # [B, T]
  weights = mask.targets
  total = jnp.maximum(jnp.sum(weights), 1.0)
  loss = jnp.sum(nll * weights) / total
  accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * weights) / total
  return loss, {"loss": loss, "accuracy": accuracy, "tokens": jnp.sum(weights)}


def model_config(config: Any) -> SoundStormConfig:
  """The model of a `soundstorm` run config: `config.stage` (the layout), `config.model`
  (conformer fields and `num_layers`) and the computation dtype `config.compute_dtype`."""
  try:
    layout = SoundStormLayout(**dict(config["stage"]))
    fields = dict(config["model"])
    num_layers = int(fields.pop("num_layers"))
    conformer = ConformerConfig(**fields, dtype=config.get("compute_dtype", "float32"))
  except (KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"soundstorm: invalid stage or model config: {e}") from e
  return SoundStormConfig(layout=layout, num_layers=num_layers, conformer=conformer)


def soundstorm_flops(config: SoundStormConfig) -> float:
  """Forward + backward matmul FLOPs of one training crop of T frames: 6 (P T) + 12 L T^2 D
  (P the blocks' matmul parameters plus one level's head, as only one level is scored)."""
  c, t = config.conformer, config.layout.max_frames
  block = 2 * 2 * c.dim * c.mlp_dim + 4 * c.dim * c.dim + 3 * c.dim * c.dim
  params = config.num_layers * block + c.dim * config.layout.acoustic_codebook_size
  return 6.0 * params * t + 12.0 * config.num_layers * t * t * c.dim
