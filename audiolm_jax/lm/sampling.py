"""Autoregressive sampling: one `jax.jit`, one `lax.while_loop`, a fixed-size decoding state.

Shape letters used in this file:
  B  batch
  P  prompt length
  N  length of the returned sequences (`max_length`)
  V  vocabulary size

The sampler knows no model. It calls

    tokens_to_logits(params, tokens [B, T], cache) -> (logits [B, T, V], cache)

once on the whole prompt (the prefill pass, T = P) and then once per generated token (T = 1).
`cache` is whatever state the callback threads through: a Transformer KV cache
(`lm.transformer.CachedLogits`) or a token buffer that is re-run in full each step
(`lm.transformer.FullPassLogits`). Its size is fixed, so no step ever recompiles or reallocates.

Per step: the logits of the last token are restricted to the ids allowed at the next position
(`logit_mask`), divided by the temperature (0 = greedy), filtered by top-k and top-p, and one id
per row is drawn with a key folded from `rng` and the position (same key -> same output). Rows
that produced `eos_id` are finished: later positions hold `pad_id`, and the loop stops when every
row is finished or `max_length` is reached. The prompt comes back unchanged as the prefix.

Prompts of different lengths in one batch: left-pad them with the pad id of a model that hides
padding (see `TransformerConfig.pad_id`), so every row has the same P.

Sliced vocabularies: with `vocab_width=W` and `vocab_starts [N]`, position i is drawn among the
ids `vocab_starts[i] .. vocab_starts[i] + W - 1` only (`lm.stages.vocab_windows`: one acoustic
level's codes in stages 2 and 3), and the callback is asked for just those logits of just the
last token:

    tokens_to_logits(params, tokens [B, T], cache, vocab_start, vocab_width) -> ([B, W], cache)

The draws are those of the full-vocabulary sampler under a `logit_mask` that allows no id
outside the window (same distribution; the random stream differs, since the draw runs over W
ids). The prefill pass then computes one row of logits, not P.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array
TokensToLogits = Callable[[Any, Array, Any], tuple[Array, Any]]


@flax.struct.dataclass
class SampleOutput:
  """What `sample` returns.

  Attributes:
    tokens: `[B, N]` the prompt followed by the sampled ids (`pad_id` after a row's EOS).
    lengths: `[B]` tokens per row up to and including its EOS (N for rows without EOS).
  """
  tokens: Array
  lengths: Array


def filter_logits(logits: Array, *, top_k: int = 0, top_p: float = 1.0) -> Array:
  """Sets to -inf the logits outside the top-k ids and outside the top-p nucleus.

  Args:
    logits: `[..., V]`.
    top_k: keep the k largest logits (ties with the k-th are kept too); 0 keeps all.
    top_p: keep the smallest set of most likely ids whose probability reaches `top_p`
      (the most likely id is always kept); 1.0 keeps all.
  """
  neg_inf = jnp.array(-jnp.inf, logits.dtype)
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)  # descending
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of all more likely ids
    kept = jnp.where(mass_before < top_p, sorted_logits, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)  # the least likely kept logit
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits


def sample_token(logits: Array, rng: Array, *, temperature: float | Array = 1.0,
                 top_k: int = 0, top_p: float = 1.0, mask: Array | None = None) -> Array:
  """Draws one id per row from `logits [B, V]` (greedy when `temperature == 0`). Returns `[B]`.

  `mask` (broadcastable to `[B, V]`, True = allowed) removes ids before anything else.
  """
  logits = logits.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, -jnp.inf)
  greedy = jnp.argmax(logits, axis=-1)
  temperature = jnp.asarray(temperature, jnp.float32)
  scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
  scaled = filter_logits(scaled, top_k=top_k, top_p=top_p)
  drawn = jax.random.categorical(rng, scaled, axis=-1)
  return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("tokens_to_logits", "max_length", "top_k", "top_p",
                                             "eos_id", "pad_id", "vocab_width"))
def sample(tokens_to_logits: TokensToLogits, params: Any, cache: Any, prompt: Array,
           rng: Array, *, max_length: int, temperature: float | Array = 1.0, top_k: int = 0,
           top_p: float = 1.0, logit_mask: Array | None = None, eos_id: int | None = None,
           pad_id: int = 0, vocab_starts: Array | None = None,
           vocab_width: int | None = None) -> SampleOutput:
  """Continues `prompt [B, P]` to `max_length` tokens.

  Args:
    tokens_to_logits: `(params, tokens [B, T], cache) -> (logits [B, T, V], cache)`, hashable
      (it is a static argument: a module-level function or a frozen dataclass).
    params: passed to `tokens_to_logits` unchanged (any pytree, typically model parameters).
    cache: the callback's initial, empty decoding state, with room for `max_length` tokens.
    prompt: int ids `[B, P]`, 1 <= P <= max_length.
    rng: PRNG key; the draw at position i uses `fold_in(rng, i)`.
    max_length: N, length of the returned sequences (prompt included).
    temperature: scalar (traced: changing it does not recompile); 0 means greedy.
    top_k: 0 (off) or the number of most likely ids to keep.
    top_p: 1.0 (off) or the nucleus mass.
    logit_mask: bool `[N', V]` or `[B, N', V]` with N' >= N; row i lists the ids allowed at
      sequence position i (rows of prompt positions are not used).
    eos_id: id that finishes a row, or None to always generate `max_length` tokens.
    pad_id: written after a row's EOS.
    vocab_starts: int `[N']`, N' >= N, with `vocab_width`: position i draws among ids
      `vocab_starts[i] .. vocab_starts[i] + vocab_width - 1` (see the module docstring);
      `logit_mask` rows are then read in that window.
    vocab_width: W, or None to score the whole vocabulary.
  """
  batch, prompt_length = prompt.shape
  if not 1 <= prompt_length <= max_length:
    raise ValueError(f"prompt length {prompt_length} must be in [1, max_length={max_length}]")
  if logit_mask is not None and logit_mask.shape[-2] < max_length:
    raise ValueError(f"logit_mask covers {logit_mask.shape[-2]} positions, fewer than "
                     f"max_length={max_length}")
  if (vocab_width is None) != (vocab_starts is None):
    raise ValueError("vocab_starts and vocab_width go together")
  if vocab_starts is not None and vocab_starts.shape[-1] < max_length:
    raise ValueError(f"vocab_starts covers {vocab_starts.shape[-1]} positions, fewer than "
                     f"max_length={max_length}")
  prompt = prompt.astype(jnp.int32)
  tokens = jnp.full((batch, max_length), pad_id, jnp.int32)
  tokens = jax.lax.dynamic_update_slice(tokens, prompt, (0, 0))  # [B, N]

  def start_of(i):
    """The first id scored at position i (0 without windows); i is clamped into the buffer."""
    if vocab_starts is None:
      return jnp.int32(0)
    return jnp.asarray(vocab_starts, jnp.int32)[jnp.minimum(i, max_length - 1)]

  def next_logits(new_tokens, cache, i):
    """`[B, V or W]` logits for position i, after feeding `new_tokens` (which end at i - 1)."""
    if vocab_width is None:
      logits, cache = tokens_to_logits(params, new_tokens, cache)  # [B, T, V]
      return logits[:, -1], cache
    return tokens_to_logits(params, new_tokens, cache, start_of(i), vocab_width)  # [B, W]

  logits, cache = next_logits(prompt, cache, jnp.int32(prompt_length))  # the prefill pass
  state = (jnp.int32(prompt_length), tokens, logits, cache, jnp.zeros((batch,), bool))

  def keep_going(state):
    i, _, _, _, finished = state
    return (i < max_length) & ~jnp.all(finished)

  def step(state):
    i, tokens, logits, cache, finished = state
    start = start_of(i)
    mask = None
    if logit_mask is not None:
      mask = jax.lax.dynamic_index_in_dim(logit_mask, i, axis=-2, keepdims=False)  # [(B,) V]
      if vocab_width is not None:
        mask = jax.lax.dynamic_slice_in_dim(mask, start, vocab_width, axis=-1)  # [(B,) W]
    new = start + sample_token(logits, jax.random.fold_in(rng, i), temperature=temperature,
                               top_k=top_k, top_p=top_p, mask=mask)  # [B]
    new = jnp.where(finished, pad_id, new)
    tokens = jax.lax.dynamic_update_slice(tokens, new[:, None], (0, i))
    if eos_id is not None:
      finished = finished | (new == eos_id)
    logits, cache = next_logits(new[:, None], cache, i + 1)
    return i + 1, tokens, logits, cache, finished

  _, tokens, _, _, _ = jax.lax.while_loop(keep_going, step, state)

  lengths = jnp.full((batch,), max_length, jnp.int32)
  if eos_id is not None:
    generated_eos = (tokens == eos_id) & (jnp.arange(max_length) >= prompt_length)  # [B, N]
    first_eos = jnp.argmax(generated_eos, axis=-1).astype(jnp.int32)
    lengths = jnp.where(jnp.any(generated_eos, axis=-1), first_eos + 1, lengths)
  return SampleOutput(tokens=tokens, lengths=lengths)
