"""Generation with trained stage models: semantic tokens -> coarse codes -> all acoustic codes.

    tokens = generate_semantic(lm_1, prompt_ids, num_tokens, rng=k1)    # deduplicated tokens
    semantic = semantic_timeline(prompt_ids, tokens, frames_per_token, num_frames)
    coarse = generate_coarse(lm_2, semantic, prompt_codes, num_frames=r * T, rng=k2)
    codes = generate_fine(lm_3, coarse, prompt_codes, rng=k3)          # -> codec decoder

Each function takes a trained stage (`pretrained.TrainedStage`: layout, Transformer and
parameters, built once), is batched over B rows, samples with `lm.sampling.sample` (KV cache,
the stage's logit masks, its temperature unless one is given) and returns numpy int32 codes, the
prompt's part unchanged. The same inputs and `rng` give the same output.

Shape letters: B batch, T semantic frames (25 Hz in the paper), Q acoustic levels, Q' of them
coarse, r acoustic frames per semantic frame (paper: 2), L raw frames per deduplicated token.

Semantic tokens and time. Stage 1 models *deduplicated* tokens: a training sequence is
dedup(a crop of `max_frames` raw frames), which holds about `max_frames / L` tokens, where L
(`frames_per_token`, about 1.2 for the cpu tokenizers) is measured on the training token cache
and recorded in the semantic LM's config (`data.frames_per_token`). So:

* stage-1 windows hold at most `window_tokens = floor(max_frames / L)` tokens (BOS aside), the
  length training sequences actually have, not `max_frames`;
* a generated token stands for a run of raw frames of unknown length; `semantic_timeline`
  lays the k-th generated token over the raw frames `T_p + f` with `k L <= f < (k + 1) L`
  after the prompt's T_p raw frames, so n tokens cover `n L` frames, as they did in training;
* the coarse stage conditions an acoustic window `[a, b)` on dedup(timeline `[a / r, b / r)`),
  exactly its training pairing: the window gets as much content as a training crop of that
  span had (on average), and the error does not grow from window to window. (Placing one
  generated token per raw frame instead gave every window 1 / 0.85 of the content training
  paired with its span, drifting further with each window.)

Lengths beyond one training sequence are generated in windows:

* semantic, coarse: a sliding window. A window conditions on at most `context` of the tokens
  (frames) known so far (the prompt, then what was generated) and fills the rest of a
  training-length sequence; the next window slides forward by what was generated. With the
  default context of half a window, every window after the first generates half a window.
  For the coarse stage a window is an aligned crop, exactly as in training: its semantic prefix
  is the deduplicated semantic frames of the window's span, its coarse part the window's known
  frames, then the generated ones; windows start on a semantic frame.
* fine: non-overlapping chunks of the stage's chunk length (paper: 3 s), independent given
  their coarse codes (the paper's scheme); chunks of the same shape are sampled in one batch.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm.sampling import sample
from audiolm_jax.lm.stages import (CoarseStage, FineStage, SemanticStage, Stage,
                                   remove_consecutive_duplicates)
from audiolm_jax.lm.transformer import CachedLogits

PyTree = Any


class StageModel(Protocol):
  """What generation needs of a trained stage (`pretrained.TrainedStage` is one)."""
  stage: Stage
  params: PyTree
  logits_fn: CachedLogits


def _layout(lm: StageModel, kind: type) -> Stage:
  if not isinstance(lm.stage, kind):
    raise ConfigError(f"a {type(lm.stage).__name__} model was given where a {kind.__name__} "
                      "is needed")
  return lm.stage


def _sample(stage: Stage, logits_fn: CachedLogits, params: PyTree, prompt: np.ndarray,
            max_length: int, rng: jax.Array, logit_mask: np.ndarray, temperature: float | None,
            top_k: int, top_p: float) -> np.ndarray:
  """Continues `prompt [B, P]` to `max_length` tokens (never stopping early); `[B, max_length]`.

  Each position is scored over its window of `stage.vocab_width` ids only (one acoustic level
  in stages 2 and 3; see `lm.stages.vocab_windows`)."""
  starts = stage.vocab_windows(max_length)
  if np.any(starts[prompt.shape[1]:] < 0):
    raise ValueError(f"{type(stage).__name__}: a prompt of {prompt.shape[1]} tokens leaves "
                     "conditioning positions to sample")
  out = sample(logits_fn, params, logits_fn.init_state(prompt.shape[0], max_length),
               jnp.asarray(prompt), rng, max_length=max_length,
               temperature=stage.temperature if temperature is None else temperature,
               top_k=top_k, top_p=top_p, logit_mask=jnp.asarray(logit_mask[:max_length]),
               eos_id=None, pad_id=stage.pad_id, vocab_starts=jnp.asarray(np.maximum(starts, 0)),
               vocab_width=stage.vocab_width)
  return np.asarray(out.tokens)


def _context(context: int | None, window: int, step: int, name: str) -> int:
  """The sliding-window context: default half a window, at most `window - step`."""
  context = window // 2 if context is None else context
  if not 0 <= context <= window - step:
    raise ConfigError(f"{name}={context} must be in [0, {window - step}] (the window holds "
                      f"{window})")
  return context


def _codes(array, name: str, levels: int) -> np.ndarray:
  """`array` as int codes `[B, T, >= levels]`, cut to `levels`."""
  array = np.asarray(array)
  if array.ndim != 3 or array.shape[-1] < levels:
    raise DataError(f"{name} must be [batch, frames, >= {levels} levels], got {array.shape}")
  return array[..., :levels].astype(np.int32)


def window_tokens(stage: SemanticStage, frames_per_token: float) -> int:
  """Tokens (after BOS) in a stage-1 window: those of a training sequence, about
  `max_frames / L`."""
  if not frames_per_token >= 1.0:
    raise ConfigError(f"frames_per_token must be >= 1 (raw frames per deduplicated token), got "
                      f"{frames_per_token}")
  return max(2, min(stage.max_frames, int(stage.max_frames / frames_per_token)))


def tokens_for_frames(frames: int, frames_per_token: float) -> int:
  """Deduplicated tokens that cover `frames` raw frames on the timeline."""
  return max(0, math.ceil(frames / frames_per_token - 1e-9))


def semantic_timeline(prompt_ids, tokens, frames_per_token: float, num_frames: int) -> np.ndarray:
  """Raw-frame layout `[B, num_frames]` of a prompt's raw ids `[B, T_p]` followed by generated
  deduplicated tokens `[B, n]`: token k covers the frames `T_p + f` with `k L <= f < (k+1) L`
  (see the module docstring). Needs `T_p + n L >= num_frames`."""
  prompt, tokens = np.asarray(prompt_ids), np.asarray(tokens)
  if prompt.ndim != 2 or tokens.ndim != 2 or len(prompt) != len(tokens):
    raise DataError(f"prompt ids [B, T_p] and tokens [B, n] expected, got {prompt.shape} and "
                    f"{tokens.shape}")
  known = prompt.shape[1]
  if known + tokens.shape[1] * frames_per_token < num_frames - 1e-9 or known > num_frames:
    raise DataError(f"{tokens.shape[1]} tokens of {frames_per_token:.3g} frames after {known} "
                    f"prompt frames do not cover {num_frames} frames")
  frame = np.arange(num_frames - known)
  which = np.minimum(np.floor(frame / frames_per_token + 1e-9),
                     tokens.shape[1] - 1).astype(np.int64)
  return np.concatenate([prompt, tokens[:, which]], axis=1).astype(np.int32)


def generate_semantic(lm: StageModel, prompt_semantic_ids, num_tokens: int, rng: jax.Array, *,
                      frames_per_token: float = 1.0, temperature: float | None = None,
                      top_k: int = 0, top_p: float = 1.0,
                      context_tokens: int | None = None) -> np.ndarray:
  """Continues semantic prompts by `num_tokens` deduplicated tokens with stage 1.

  Args:
    lm: the trained semantic LM.
    prompt_semantic_ids: raw ids `[B, T_p]` (T_p may be 0: unconditional), deduplicated here as
      in training.
    num_tokens: tokens to generate per row.
    rng: PRNG key.
    frames_per_token: L of the training cache; sets the window (`window_tokens`).
    temperature: default the stage's (paper: 0.6); top_k, top_p: 0 / 1.0 = off.
    context_tokens: sliding-window context in tokens; default half a window.

  Returns:
    int32 `[B, num_tokens]`: the generated tokens only (lay them out in time with
    `semantic_timeline`).
  """
  stage = _layout(lm, SemanticStage)
  prompt = np.asarray(prompt_semantic_ids)
  if prompt.ndim != 2 or num_tokens < 0:
    raise DataError(f"prompt_semantic_ids must be [batch, frames] and num_tokens >= 0, got "
                    f"{prompt.shape} and {num_tokens}")
  window = window_tokens(stage, frames_per_token)
  context = _context(context_tokens, window, 1, "context_tokens")
  logit_mask = stage.logit_mask()
  logit_mask[:, stage.vocab.eos_id] = False  # Every row runs to num_tokens.
  history = [remove_consecutive_duplicates(row.astype(np.int32)) for row in prompt]
  generated = []
  remaining = num_tokens
  while remaining > 0:
    # BOS and the last `context` deduplicated ids, left-padded to one length for every window
    # (padding is invisible to the model): one compiled shape however the rows deduplicate.
    tails = [h[len(h) - min(len(h), context):] for h in history]
    window_prompt = stage.make_prompt(tails)  # [B, <= 1 + context]
    window_prompt = np.pad(window_prompt, ((0, 0), (1 + context - window_prompt.shape[1], 0)),
                           constant_values=stage.pad_id)
    new = min(remaining, window - context)
    tokens = _sample(stage, lm.logits_fn, lm.params, window_prompt, 1 + context + new,
                     jax.random.fold_in(rng, len(generated)), logit_mask, temperature, top_k,
                     top_p)
    ids = stage.vocab.decode(tokens[:, 1 + context:], 0)  # [B, new]
    history = [np.concatenate([h, row]) for h, row in zip(history, ids)]
    generated.append(ids)
    remaining -= new
  if not generated:
    return np.zeros((len(prompt), 0), np.int32)
  return np.concatenate(generated, axis=1).astype(np.int32)


def generate_coarse(lm: StageModel, semantic_ids, prompt_coarse, num_frames: int,
                    rng: jax.Array, *,
                    temperature: float | None = None, top_k: int = 0, top_p: float = 1.0,
                    context_frames: int | None = None) -> np.ndarray:
  """Generates coarse codes for `num_frames` acoustic frames with stage 2.

  Args:
    lm: the trained coarse LM.
    semantic_ids: semantic ids on the raw-frame timeline `[B, T_s]` of the whole span (the
      prompt's, then `semantic_timeline` of the generated ones), `T_s >= ceil(num_frames / r)`;
      deduplicated here, per window, as in training. Ignored (may be None) by an acoustic-only
      stage.
    prompt_coarse: the prompt's codes `[B, T_p, >= Q']` (T_p may be 0); levels past Q' ignored.
    num_frames: acoustic frames per returned row, prompt included (>= T_p).
    rng: PRNG key.
    temperature: default the stage's (paper: 0.8); top_k, top_p: 0 / 1.0 = off.
    context_frames: sliding-window context in acoustic frames; default half a crop.

  Returns:
    int32 codes `[B, num_frames, Q']`, the first T_p frames the prompt's.
  """
  stage = _layout(lm, CoarseStage)
  prompt = _codes(prompt_coarse, "prompt_coarse", stage.num_coarse)
  batch, known = prompt.shape[:2]
  if not known <= num_frames:
    raise DataError(f"prompt_coarse has {known} frames, more than num_frames={num_frames}")
  r = stage.frames_per_semantic_frame
  if not stage.acoustic_only:
    semantic_ids = np.asarray(semantic_ids)
    if (semantic_ids.ndim != 2 or len(semantic_ids) != batch
        or semantic_ids.shape[1] * r < num_frames):
      raise DataError(f"semantic_ids must be [{batch}, >= {-(-num_frames // r)}] to cover "
                      f"{num_frames} acoustic frames, got {semantic_ids.shape}")
  window = stage.max_frames
  context = _context(context_frames, window, r, "context_frames")
  logit_mask = stage.logit_mask()
  codes = np.zeros((batch, num_frames, stage.num_coarse), np.int32)
  codes[:, :known] = prompt
  index = 0
  while known < num_frames:
    start = max(0, known - context) // r * r  # Windows start on a semantic frame.
    stop = min(start + window, num_frames)
    span = slice(start // r, -(-stop // r))  # The semantic frames of the window's span.
    semantic = None if stage.acoustic_only else semantic_ids[:, span]
    window_prompt = stage.make_prompt(semantic, codes[:, start:known])
    max_length = window_prompt.shape[1] + (stop - known) * stage.num_coarse
    tokens = _sample(stage, lm.logits_fn, lm.params, window_prompt, max_length,
                     jax.random.fold_in(rng, index), logit_mask, temperature, top_k, top_p)
    codes[:, known:stop] = stage.coarse_codes(tokens, stop - start)[:, known - start:]
    known, index = stop, index + 1
  return codes


def generate_fine(lm: StageModel, coarse_codes, prompt_fine, rng: jax.Array, *, temperature: float | None = None,
                  top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
  """Generates the fine codes of `coarse_codes` with stage 3, chunk by chunk.

  Args:
    lm: the trained fine LM.
    coarse_codes: `[B, T, >= Q']` (levels past Q' ignored).
    prompt_fine: the prompt's fine codes `[B, T_p, Q - Q']` (or all its codes `[B, T_p, Q]`),
      kept as they are for the first T_p frames; or None.
    rng: PRNG key.
    temperature: default the stage's (paper: 0.6); top_k, top_p: 0 / 1.0 = off.

  Returns:
    int32 codes of all levels `[B, T, Q]`: the coarse codes, then the fine ones.
  """
  stage = _layout(lm, FineStage)
  coarse = _codes(coarse_codes, "coarse_codes", stage.num_coarse)
  batch, num_frames = coarse.shape[:2]
  fine = np.zeros((batch, num_frames, stage.num_fine), np.int32)
  known = 0
  if prompt_fine is not None:
    prompt = np.asarray(prompt_fine)
    if prompt.ndim == 3 and prompt.shape[-1] == stage.num_quantizers:
      prompt = prompt[..., stage.num_coarse:]
    if (prompt.ndim != 3 or prompt.shape[-1] != stage.num_fine or len(prompt) != batch
        or prompt.shape[1] > num_frames):
      raise DataError(f"prompt_fine must be [{batch}, <= {num_frames}, {stage.num_fine} or "
                      f"{stage.num_quantizers} levels], got {prompt.shape}")
    known = prompt.shape[1]
    fine[:, :known] = prompt
  # Chunks by the shape of their sampling call: (frames, fine frames known from the prompt).
  chunk = stage.max_frames
  groups: dict[tuple[int, int], list[int]] = {}
  for start in range(0, num_frames, chunk):
    frames = min(chunk, num_frames - start)
    given = min(max(known - start, 0), frames)
    if given < frames:
      groups.setdefault((frames, given), []).append(start)
  logit_mask = stage.logit_mask()
  for index, ((frames, given), starts) in enumerate(sorted(groups.items())):
    # All chunks of a group in one batch: rows [j * B, (j + 1) * B) are chunk `starts[j]`.
    window_prompt = stage.make_prompt(
        np.concatenate([coarse[:, s:s + frames] for s in starts]),
        np.concatenate([fine[:, s:s + given] for s in starts]))
    tokens = _sample(stage, lm.logits_fn, lm.params, window_prompt,
                     stage.prefix_length + frames * stage.num_fine,
                     jax.random.fold_in(rng, index), logit_mask, temperature, top_k, top_p)
    new = stage.fine_codes(tokens, frames)  # [len(starts) * B, frames, Q - Q']
    for j, s in enumerate(starts):
      fine[:, s + given:s + frames] = new[j * batch:(j + 1) * batch, given:]
  return np.concatenate([coarse, fine], axis=-1)
