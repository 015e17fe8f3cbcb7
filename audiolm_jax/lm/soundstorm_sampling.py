"""SoundStorm's sampler: MaskGIT confidence-based parallel decoding, level by level, one
`jax.jit` and one `lax.fori_loop` over a static schedule; and long clips by sliding windows.

Shape letters: B batch, T acoustic frames, S semantic frames, Q RVQ levels, K codes per level,
N iterations of the whole schedule (the sum over levels).

    plan = Schedule.make(num_levels=Q, iterations=(16, 1), greedy_from_level=1)
    out = sample(logits_fn, params, conditioning, tokens, rng, plan, mask_id=K)

The sampler knows no model. It calls

    logits_fn(params, conditioning, tokens [B, T, Q], level) -> logits [B, T, K]

once per iteration (`level` a traced int32 scalar; `conditioning` any pytree, passed through:
for SoundStorm the semantic ids and the valid frames, see `SoundStormLogits`). Positions to
generate are those holding `mask_id` in `tokens`; every other token (the prompt's frames, and
padding, which the caller fills with any code and hides from the model) comes back unchanged.

The schedule. Levels coarse to fine; level q gets `iterations[q]` iterations (the paper: 16 on
the first, 1 on each of the others). Iteration i (0-based) of n on level q, with M the row's
masked tokens of level q when the level starts:
  1. draw a code for every masked token of level q: from softmax(logits / temperature), or
     the argmax when the level is greedy (`greedy_from_level`) or the temperature is 0;
  2. confidence of a draw = its log-probability + c (1 - (i + 1) / n) g, g ~ Gumbel(0, 1),
     c the choice temperature (MaskGIT's annealing: the noise shrinks to 0 on the last one);
  3. the floor(M cos(pi / 2 (i + 1) / n)) least confident draws are masked again (the cosine
     schedule; 0 after the last iteration), the others are kept.
So after a level's n iterations every token of it is filled, and the next level starts.
Randomness: iteration s of the whole schedule uses `fold_in(rng, s)`; the same key and inputs
give the same output.

Long clips (`generate`): a sliding window of the model's training crop, as the coarse stage
does (`lm/generate.py`): a window holds at most `context` known frames (prompt, then generated;
all levels kept) and generates the rest; windows start on a semantic frame. Every window is
padded to the crop length, so one compiled sampler serves them all.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm.soundstorm import SoundStorm

Array = jax.Array
LogitsFn = Callable[[Any, Any, Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The static plan of one sampling run: per iteration s of N, its level and position.

  Attributes:
    level: `[N]` the level iteration s fills.
    step: `[N]` its index i within the level.
    steps: `[N]` n, the level's iteration count.
    temperature: `[N]` the draw's temperature (0 = argmax).
    choice_temperature: `[N]` c of the confidence noise, before annealing.
  """
  level: tuple[int, ...]
  step: tuple[int, ...]
  steps: tuple[int, ...]
  temperature: tuple[float, ...]
  choice_temperature: tuple[float, ...]

  @classmethod
  def make(cls, num_levels: int, iterations: tuple[int, ...] = (16, 1), *,
           temperature: float = 1.0, choice_temperature: float = 1.0,
           greedy_from_level: int | None = None) -> Schedule:
    """`iterations`: per level; shorter than `num_levels`, its last value repeats (the paper's
    `(16, 1)`: 16 on the first level, 1 on every other). Levels from `greedy_from_level` on
    (0-based; None = none) take the argmax."""
    iterations = tuple(int(n) for n in iterations)
    if not iterations or min(iterations) < 1 or num_levels < 1:
      raise ConfigError(f"iterations {iterations} must be >= 1 per level (levels: {num_levels})")
    if temperature < 0 or choice_temperature < 0:
      raise ConfigError("temperature and choice_temperature must be >= 0")
    per_level = [iterations[min(q, len(iterations) - 1)] for q in range(num_levels)]
    greedy = num_levels if greedy_from_level is None else greedy_from_level
    rows = [(q, i, n, 0.0 if q >= greedy else temperature, choice_temperature)
            for q, n in enumerate(per_level) for i in range(n)]
    return cls(*(tuple(column) for column in zip(*rows)))

  def __len__(self) -> int:
    return len(self.level)


class SampleOutput(NamedTuple):
  """What `sample` returns: `tokens [B, T, Q]` with no MASK left, and `masked [N, B]`, the
  tokens still masked at the level of iteration s after it (0 after each level's last)."""
  tokens: Array
  masked: Array


def keep_masked(total: Array, step: Array, steps: Array) -> Array:
  """Tokens left masked after iteration `step` of `steps` out of `total`: the cosine schedule
  floor(total cos(pi / 2 (step + 1) / steps)), exactly 0 after the last."""
  share = jnp.cos(jnp.pi / 2 * (step + 1) / steps)
  return jnp.where(step + 1 >= steps, 0, jnp.floor(total * share)).astype(jnp.int32)


def sampling_step(logits: Array, tokens: Array, total: Array, key: Array, level: Array,
                  step: Array, steps: Array, temperature: Array, choice_temperature: Array,
                  mask_id: int) -> tuple[Array, Array]:
  """One iteration on `level`: `(tokens [B, T, Q], masked [B])` after it (module docstring).

  `logits [B, T, K]` are the model's for `level`; `total [B]` its masked count at the start."""
  k_draw, k_choice = jax.random.split(key)
  current = jnp.take(tokens, level, axis=2)  # [B, T]
  is_masked = current == mask_id
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, T, K]
  drawn = jax.random.categorical(k_draw, log_probs / jnp.maximum(temperature, 1e-6), axis=-1)
  drawn = jnp.where(temperature > 0, drawn, jnp.argmax(log_probs, axis=-1))  # [B, T]
  confidence = jnp.take_along_axis(log_probs, drawn[..., None], axis=-1)[..., 0]
  anneal = choice_temperature * (1.0 - (step + 1) / steps)
  confidence = confidence + anneal * jax.random.gumbel(k_choice, confidence.shape)
  confidence = jnp.where(is_masked, confidence, jnp.inf)  # Known tokens are never re-masked.
  keep = keep_masked(total, step, steps)  # [B]
  rank = jnp.argsort(jnp.argsort(confidence, axis=1), axis=1)  # [B, T], 0 = least confident
  still = is_masked & (rank < keep[:, None])
  new = jnp.where(is_masked & ~still, drawn, current).astype(tokens.dtype)
  tokens = jax.lax.dynamic_update_index_in_dim(tokens, new, level, axis=2)
  return tokens, jnp.sum(still, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("logits_fn", "schedule", "mask_id"))
def sample(logits_fn: LogitsFn, params, conditioning, tokens: Array, rng: Array,
           schedule: Schedule, mask_id: int) -> SampleOutput:
  """Fills every `mask_id` of `tokens [B, T, Q]` (see the module docstring)."""
  plan = {name: jnp.asarray(getattr(schedule, name)) for name in
          ("level", "step", "steps", "temperature", "choice_temperature")}
  batch = tokens.shape[0]

  def body(s, carry):
    tokens, total, masked = carry
    level, step = plan["level"][s], plan["step"][s]
    # A level's masked count, taken as it starts, sets its schedule.
    total = jnp.where(step == 0, jnp.sum(jnp.take(tokens, level, axis=2) == mask_id, axis=1),
                      total)
    logits = logits_fn(params, conditioning, tokens, level)  # [B, T, K]
    tokens, left = sampling_step(logits, tokens, total, jax.random.fold_in(rng, s), level, step,
                                 plan["steps"][s], plan["temperature"][s],
                                 plan["choice_temperature"][s], mask_id)
    return tokens, total, masked.at[s].set(left)

  carry = (tokens.astype(jnp.int32), jnp.zeros((batch,), jnp.int32),
           jnp.zeros((len(schedule), batch), jnp.int32))
  tokens, _, masked = jax.lax.fori_loop(0, len(schedule), body, carry)
  return SampleOutput(tokens, masked)


@dataclasses.dataclass(frozen=True)
class SoundStormLogits:
  """`logits_fn` of a SoundStorm model; conditioning = `(semantic [B, S], frames [B, T])`.
  Hashable, so it is a static argument of the jitted sampler."""
  model: SoundStorm

  def __call__(self, params, conditioning, tokens: Array, level: Array) -> Array:
    semantic, frames = conditioning
    return self.model.apply({"params": params}, semantic, tokens, frames, levels=level)


def generate(model: SoundStorm, params, semantic_ids, prompt_codes, num_frames: int,
             rng: Array, schedule: Schedule, *, context_frames: int | None = None,
             window_frames: int | None = None) -> np.ndarray:
  """All Q levels of `num_frames` acoustic frames from semantic ids and an acoustic prompt.

  Args:
    model: the SoundStorm model (its layout gives Q, K, r and the training crop).
    params: its parameters.
    semantic_ids: raw ids `[B, S]` on the semantic frame timeline, `r S >= num_frames`.
    prompt_codes: the prompt's codes `[B, T_p, >= Q]` (T_p may be 0), kept exactly.
    num_frames: frames per returned row, prompt included.
    rng: PRNG key (window w samples with `fold_in(rng, w)`).
    schedule: the sampling plan (`Schedule.make`).
    context_frames: known frames a window conditions on; default half a window.
    window_frames: frames per window; default the training crop.

  Returns:
    int32 codes `[B, num_frames, Q]`, the first T_p frames the prompt's.
  """
  layout = model.config.layout
  q, r, mask_id = layout.num_quantizers, layout.frame_ratio, layout.mask_id
  if max(schedule.level) >= q:
    raise ConfigError(f"the schedule fills {max(schedule.level) + 1} levels; the model has {q}")
  semantic = np.asarray(semantic_ids, np.int32)
  prompt = np.asarray(prompt_codes)
  if prompt.ndim != 3 or prompt.shape[-1] < q or semantic.ndim != 2 or len(semantic) != len(
      prompt):
    raise DataError(f"semantic ids [B, S] and prompt codes [B, T_p, >= {q}] expected, got "
                    f"{semantic.shape} and {prompt.shape}")
  batch, known = prompt.shape[:2]
  if known > num_frames or semantic.shape[1] * r < num_frames:
    raise DataError(f"{known} prompt frames and {semantic.shape[1]} semantic frames (x{r}) do "
                    f"not fit {num_frames} frames")
  window = window_frames or layout.max_frames
  if window % r or window <= r:
    raise ConfigError(f"window_frames={window} must be a multiple of {r} above {r}")
  context = window // 2 if context_frames is None else context_frames
  if not 0 <= context <= window - r:
    raise ConfigError(f"context_frames={context} must be in [0, {window - r}]")
  logits_fn = SoundStormLogits(model)
  codes = np.zeros((batch, num_frames, q), np.int32)
  codes[:, :known] = prompt[..., :q]
  index = 0
  while known < num_frames:
    start = max(0, known - context) // r * r  # Windows start on a semantic frame.
    stop = min(start + window, num_frames)
    tokens = np.zeros((batch, window, q), np.int32)  # Padding: code 0, hidden by `frames`.
    tokens[:, :known - start] = codes[:, start:known]
    tokens[:, known - start:stop - start] = mask_id
    frames = np.zeros((batch, window), bool)
    frames[:, :stop - start] = True
    sem = np.zeros((batch, window // r), np.int32)
    span = semantic[:, start // r:-(-stop // r)]
    sem[:, :span.shape[1]] = span
    out = sample(logits_fn, params, (jnp.asarray(sem), jnp.asarray(frames)), jnp.asarray(tokens),
                 jax.random.fold_in(rng, index), schedule, mask_id)
    codes[:, known:stop] = np.asarray(out.tokens)[:, known - start:stop - start]
    known, index = stop, index + 1
  return codes


def schedule_from_config(config: Any, num_levels: int, temperature: float | None = None
                         ) -> Schedule:
  """The `Schedule` of a `soundstorm` run config's `sampling` keys (`temperature` overrides)."""
  s = config["sampling"]
  greedy = int(s["greedy_from_level"])
  return Schedule.make(num_levels, (s["first_level_iterations"], s["other_level_iterations"]),
                       temperature=float(s["temperature"] if temperature is None else temperature),
                       choice_temperature=float(s["choice_temperature"]),
                       greedy_from_level=greedy if 0 <= greedy < num_levels else None)
