"""Generation with trained stage models: semantic ids -> coarse codes -> all acoustic codes.

    semantic = generate_semantic(params_1, config_1, prompt_semantic, num_frames=250, rng=k1)
    coarse = generate_coarse(params_2, config_2, semantic, prompt_codes, num_frames=500, rng=k2)
    codes = generate_fine(params_3, config_3, coarse, prompt_codes, rng=k3)  # -> codec decoder

Each function takes a stage's parameters (unboxed, e.g. `TrainState.params`) and its config (the
one it was trained with), is batched over B rows, samples with `lm.sampling.sample` (KV cache,
the stage's logit masks, its temperature unless one is given) and returns numpy int32 codes, the
prompt's part unchanged. The same inputs and `rng` give the same output.

Shape letters: B batch, T frames (semantic: 25 Hz, acoustic: 50 Hz in the paper), Q acoustic
levels, Q' of them coarse, r acoustic frames per semantic frame (paper: 2).

Lengths beyond one training sequence (a stage's crop) are generated in windows:

* semantic, coarse: a sliding window. A window conditions on at most `context` of the frames
  known so far (the prompt, then what was generated) and fills the rest of a training-length
  sequence; the next window slides forward by what was generated. With the default context of
  half a crop, every window after the first generates half a crop. For the coarse stage a window
  is an aligned crop, exactly as in training: its semantic prefix is the semantic frames of the
  window's span (deduplicated), its coarse part the window's known frames, then the generated
  ones; windows start on a semantic frame.
* fine: non-overlapping chunks of the stage's chunk length (paper: 3 s), independent given
  their coarse codes (the paper's scheme); chunks of the same shape are sampled in one batch.

Semantic tokens are modelled deduplicated: the prompt is deduplicated as in training, and every
generated token fills one returned slot (the sampler never draws EOS, so every row has
`num_frames` ids). A generated token stands for a run of equal frames of unknown length, so the
generated ids are laid out one per 25 Hz frame, as if each run were one frame long. The coarse
stage deduplicates its semantic input itself and reads it on that layout: its input is the raw
prompt ids followed by the generated ones, as `generate_semantic` returns them, and a window of
acoustic frames [a, b) is conditioned on ids [a / r, b / r).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm.sampling import sample
from audiolm_jax.lm.stages import (CoarseStage, FineStage, SemanticStage, Stage,
                                   remove_consecutive_duplicates, stage_from_config,
                                   transformer_config)
from audiolm_jax.lm.transformer import CachedLogits, Transformer

PyTree = Any


def _stage_and_model(config: ml_collections.ConfigDict, kind: type) -> tuple[Any, CachedLogits]:
  stage = stage_from_config(config)
  if not isinstance(stage, kind):
    raise ConfigError(f"config.task {config.task!r} is not the {kind.__name__} this needs")
  return stage, CachedLogits(Transformer(transformer_config(config)))


def _sample(stage: Stage, logits_fn: CachedLogits, params: PyTree, prompt: np.ndarray,
            max_length: int, rng: jax.Array, logit_mask: np.ndarray, temperature: float | None,
            top_k: int, top_p: float) -> np.ndarray:
  """Continues `prompt [B, P]` to `max_length` tokens (never stopping early); `[B, max_length]`."""
  out = sample(logits_fn, params, logits_fn.init_state(prompt.shape[0], max_length),
               jnp.asarray(prompt), rng, max_length=max_length,
               temperature=stage.temperature if temperature is None else temperature,
               top_k=top_k, top_p=top_p, logit_mask=jnp.asarray(logit_mask[:max_length]),
               eos_id=None, pad_id=stage.pad_id)
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


def generate_semantic(params: PyTree, config: ml_collections.ConfigDict,
                      prompt_semantic_ids, num_frames: int, rng: jax.Array, *,
                      temperature: float | None = None, top_k: int = 0, top_p: float = 1.0,
                      context_tokens: int | None = None) -> np.ndarray:
  """Continues semantic prompts to `num_frames` ids with stage 1.

  Args:
    params: the semantic LM's parameters.
    config: its config (`semantic_lm`).
    prompt_semantic_ids: raw ids `[B, T_p]` (T_p may be 0: unconditional), deduplicated here as
      in training.
    num_frames: ids per returned row, prompt included (>= T_p).
    rng: PRNG key.
    temperature: default `config.stage.temperature` (paper: 0.6); top_k, top_p: 0 / 1.0 = off.
    context_tokens: sliding-window context in (deduplicated) tokens; default half a crop.

  Returns:
    int32 `[B, num_frames]`: the prompt ids unchanged, then one generated id per slot.
  """
  stage, logits_fn = _stage_and_model(config, SemanticStage)
  prompt = np.asarray(prompt_semantic_ids)
  if prompt.ndim != 2 or not 0 <= prompt.shape[1] <= num_frames:
    raise DataError(f"prompt_semantic_ids must be [batch, frames <= num_frames={num_frames}], "
                    f"got {prompt.shape}")
  window = stage.max_frames  # Tokens after BOS in a training sequence.
  context = _context(context_tokens, window, 1, "context_tokens")
  logit_mask = stage.logit_mask()
  logit_mask[:, stage.vocab.eos_id] = False  # Every row runs to num_frames.
  history = [row.astype(np.int32) for row in prompt]  # Raw prompt, then generated ids.
  generated = []
  remaining = num_frames - prompt.shape[1]
  while remaining > 0:
    # BOS and the last `context` deduplicated ids, left-padded to one length for every window
    # (padding is invisible to the model): one compiled shape however the rows deduplicate.
    tails = [dedup[len(dedup) - min(len(dedup), context):]
             for dedup in map(remove_consecutive_duplicates, history)]
    window_prompt = stage.make_prompt(tails)  # [B, <= 1 + context]
    window_prompt = np.pad(window_prompt, ((0, 0), (1 + context - window_prompt.shape[1], 0)),
                           constant_values=stage.pad_id)
    new = min(remaining, window - context)
    tokens = _sample(stage, logits_fn, params, window_prompt, 1 + context + new,
                     jax.random.fold_in(rng, len(generated)), logit_mask, temperature, top_k,
                     top_p)
    ids = stage.vocab.decode(tokens[:, 1 + context:], 0)  # [B, new]
    history = [np.concatenate([h, row]) for h, row in zip(history, ids)]
    generated.append(ids)
    remaining -= new
  return np.concatenate([prompt.astype(np.int32)] + generated, axis=1)


def generate_coarse(params: PyTree, config: ml_collections.ConfigDict, semantic_ids,
                    prompt_coarse, num_frames: int, rng: jax.Array, *,
                    temperature: float | None = None, top_k: int = 0, top_p: float = 1.0,
                    context_frames: int | None = None) -> np.ndarray:
  """Generates coarse codes for `num_frames` acoustic frames with stage 2.

  Args:
    params: the coarse LM's parameters.
    config: its config (`coarse_lm`).
    semantic_ids: raw semantic ids `[B, T_s]` of the whole span (the prompt's and the generated
      ones), `T_s >= ceil(num_frames / r)`; deduplicated here, per window, as in training. Ignored
      (may be None) by an acoustic-only stage.
    prompt_coarse: the prompt's codes `[B, T_p, >= Q']` (T_p may be 0); levels past Q' ignored.
    num_frames: acoustic frames per returned row, prompt included (>= T_p).
    rng: PRNG key.
    temperature: default `config.stage.temperature` (paper: 0.8); top_k, top_p: 0 / 1.0 = off.
    context_frames: sliding-window context in acoustic frames; default half a crop.

  Returns:
    int32 codes `[B, num_frames, Q']`, the first T_p frames the prompt's.
  """
  stage, logits_fn = _stage_and_model(config, CoarseStage)
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
    tokens = _sample(stage, logits_fn, params, window_prompt, max_length,
                     jax.random.fold_in(rng, index), logit_mask, temperature, top_k, top_p)
    codes[:, known:stop] = stage.coarse_codes(tokens, stop - start)[:, known - start:]
    known, index = stop, index + 1
  return codes


def generate_fine(params: PyTree, config: ml_collections.ConfigDict, coarse_codes,
                  prompt_fine, rng: jax.Array, *, temperature: float | None = None,
                  top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
  """Generates the fine codes of `coarse_codes` with stage 3, chunk by chunk.

  Args:
    params: the fine LM's parameters.
    config: its config (`fine_lm`).
    coarse_codes: `[B, T, >= Q']` (levels past Q' ignored).
    prompt_fine: the prompt's fine codes `[B, T_p, Q - Q']` (or all its codes `[B, T_p, Q]`),
      kept as they are for the first T_p frames; or None.
    rng: PRNG key.
    temperature: default `config.stage.temperature` (paper: 0.6); top_k, top_p: 0 / 1.0 = off.

  Returns:
    int32 codes of all levels `[B, T, Q]`: the coarse codes, then the fine ones.
  """
  stage, logits_fn = _stage_and_model(config, FineStage)
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
    tokens = _sample(stage, logits_fn, params, window_prompt,
                     stage.prefix_length + frames * stage.num_fine,
                     jax.random.fold_in(rng, index), logit_mask, temperature, top_k, top_p)
    new = stage.fine_codes(tokens, frames)  # [len(starts) * B, frames, Q - Q']
    for j, s in enumerate(starts):
      fine[:, s + given:s + frames] = new[j * batch:(j + 1) * batch, given:]
  return np.concatenate([coarse, fine], axis=-1)
