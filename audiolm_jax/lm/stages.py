"""Token layouts of the three AudioLM stages: the one place where ids are defined.

Shape letters used in this file:
  N  tokens in a stage's sequence
  V  vocabulary size of a stage
  T  frames (acoustic frames are 50 Hz, semantic frames 25 Hz in the paper: 2 acoustic per semantic)
  Q  acoustic quantizer levels in all (paper: 12); the first Q' are "coarse" (paper: 4)
  K  codebook size
  B  batch

Ids. A stage's vocabulary is a run of id ranges, one per token *level*, followed by four special
ids (`Vocabulary`):

    stage 1, semantic: [semantic 0..K_s-1]                                   [PAD BOS SEP EOS]
    stage 2, coarse:   [semantic][acoustic level 1][level 2]...[level Q']    [PAD BOS SEP EOS]
      acoustic only:             [acoustic level 1][level 2]...[level Q']    [PAD BOS SEP EOS]
    stage 3, fine:     [acoustic level 1][level 2] ... [level Q]             [PAD BOS SEP EOS]

so acoustic level q (0-based) has ids `offset + q * K + code`, with `offset` = K_s in stage 2 and
0 in stage 3 and in the acoustic-only stage 2, and no special id falls in any level's range.

Sequences (N fixed per stage, so batches have static shapes):

    stage 1: BOS s_1 .. s_n [EOS] PAD ..           s deduplicated; EOS when the crop ends the audio
    stage 2: PAD .. BOS s_1 .. s_n SEP c(1,1) c(1,2) .. c(1,Q') c(2,1) .. c(T,Q') PAD ..
      acoustic only:                BOS c(1,1) c(1,2) .. c(1,Q') c(2,1) .. c(T,Q') PAD ..
    stage 3: PAD .. BOS c(1,1) .. c(T,Q') SEP f(1,Q'+1) .. f(1,Q) f(2,Q'+1) .. f(T,Q) PAD ..

Acoustic tokens are flattened frame by frame (row-major over [T, Q]). The conditioning part
(before and at SEP) is right-aligned against SEP and left-padded, so the generated part starts at
the same position in every row; the Transformer hides PAD tokens from attention (`pad_id`), which
makes the padding invisible (the relative position bias only sees distances).

The acoustic-only stage 2 (`CoarseStage(acoustic_only=True)`) is the paper's ablation without
semantic tokens: coarse tokens conditioned on nothing but their own past.

Training examples: `inputs = sequence`, `targets = sequence shifted left by one` (PAD at the end),
`weights` 1 where the target is a token the stage learns (stage 1: semantic tokens and EOS;
stage 2: coarse tokens; stage 3: fine tokens), 0 on conditioning and padding.

Logit masks: `logit_mask()[i]` lists the ids allowed at sequence position i (for the sampler,
whose step i fills position i); `target_logit_mask()[i]` the ids allowed as target i (training).

Level-sliced outputs: every id allowed at a generated position of stages 2 and 3 is in one
level's K ids. `level_span()` (training: target `start + f * Q + q` is a code of level q, scored
against that level only, the masked full-vocabulary loss exactly at K / V of its output cost)
and `vocab_windows(length)` (sampling: per position, the first of `vocab_width` ids holding every
allowed id, -1 if none do) let the model skip the rest.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from audiolm_jax.errors import ConfigError, DataError

SPECIAL_TOKENS = ("pad", "bos", "sep", "eos")


class Example(NamedTuple):
  """One training sequence, all `[N]`: int32 inputs and targets, float32 loss weights."""
  inputs: np.ndarray
  targets: np.ndarray
  weights: np.ndarray


class Crop(NamedTuple):
  """Aligned crops of one utterance's tokens, and whether the crop reaches the audio's end."""
  semantic_ids: np.ndarray | None  # [T_s]
  acoustic_codes: np.ndarray | None  # [T_a, Q]
  reaches_end: bool


def remove_consecutive_duplicates(ids: np.ndarray) -> np.ndarray:
  """`[3, 3, 7, 7, 7, 3] -> [3, 7, 3]` (the paper's semantic-token deduplication)."""
  ids = np.asarray(ids)
  if ids.ndim != 1:
    raise DataError(f"semantic ids must be 1-D, got shape {ids.shape}")
  if ids.size == 0:
    return ids
  return ids[np.concatenate([[True], ids[1:] != ids[:-1]])]


def aligned_crop(rng: np.random.Generator, seconds: float, *, semantic_ids=None,
                 acoustic_codes=None, semantic_rate: int = 25, acoustic_rate: int = 50) -> Crop:
  """A random window of `seconds` over semantic ids `[T_s]` and/or acoustic codes `[T_a, Q]`.

  With both, the window starts on a semantic frame, so semantic frame t covers acoustic frames
  `r*t .. r*t + r - 1` (r = acoustic_rate / semantic_rate) in the crop as in the source; streams
  of slightly different lengths (encoder padding) are cut to their common aligned duration.
  Utterances shorter than the window come back whole.
  """
  if semantic_ids is None and acoustic_codes is None:
    raise ValueError("aligned_crop needs semantic_ids, acoustic_codes or both")
  if acoustic_rate % semantic_rate:
    raise ConfigError(f"acoustic rate {acoustic_rate} Hz is not a multiple of the semantic "
                      f"rate {semantic_rate} Hz")
  ratio = acoustic_rate // semantic_rate
  if semantic_ids is not None:  # Crop on the semantic grid.
    available = len(semantic_ids)
    if acoustic_codes is not None:
      available = min(available, len(acoustic_codes) // ratio)
    frames, step = _frames(seconds, semantic_rate), ratio
  else:  # Acoustic codes only: crop on the acoustic grid.
    available, frames, step = len(acoustic_codes), _frames(seconds, acoustic_rate), 1
  start = int(rng.integers(0, max(available - frames, 0) + 1))
  stop = min(start + frames, available)
  semantic = None if semantic_ids is None else np.asarray(semantic_ids)[start:stop]
  acoustic = (None if acoustic_codes is None
              else np.asarray(acoustic_codes)[start * step:stop * step])
  return Crop(semantic, acoustic, reaches_end=stop == available)


def _frames(seconds: float, rate: int) -> int:
  frames = seconds * rate
  if frames != int(frames) or frames <= 0:
    raise ConfigError(f"{seconds} s at {rate} Hz is not a positive whole number of frames")
  return int(frames)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Consecutive id ranges, one per level (sizes `level_sizes`), then PAD, BOS, SEP, EOS."""
  level_sizes: tuple[int, ...]

  @property
  def num_codes(self) -> int:
    return sum(self.level_sizes)

  @property
  def size(self) -> int:
    return self.num_codes + len(SPECIAL_TOKENS)

  @property
  def pad_id(self) -> int:
    return self.num_codes

  @property
  def bos_id(self) -> int:
    return self.num_codes + 1

  @property
  def sep_id(self) -> int:
    return self.num_codes + 2

  @property
  def eos_id(self) -> int:
    return self.num_codes + 3

  def offset(self, level: int) -> int:
    """The first id of `level`."""
    return sum(self.level_sizes[:level])

  def level_range(self, level: int) -> tuple[int, int]:
    """Ids `[start, stop)` of `level`."""
    return self.offset(level), self.offset(level) + self.level_sizes[level]

  def encode(self, codes: np.ndarray, levels) -> np.ndarray:
    """Ids of `codes` at `levels` (broadcast against `codes`); out-of-range codes raise."""
    codes, levels = np.asarray(codes, np.int64), np.asarray(levels, np.int64)
    sizes = np.asarray(self.level_sizes)[levels]
    if codes.size and (codes.min() < 0 or np.any(codes >= sizes)):
      bad = codes[(codes < 0) | (codes >= sizes)]
      raise DataError(f"token codes {bad[:5].tolist()} are outside codebooks of sizes "
                      f"{sorted(set(np.ravel(sizes).tolist()))}")
    offsets = np.cumsum((0,) + self.level_sizes[:-1])[levels]
    return (offsets + codes).astype(np.int32)

  def decode(self, ids: np.ndarray, levels) -> np.ndarray:
    """Codes of `ids` known to be at `levels` (inverse of `encode`)."""
    offsets = np.cumsum((0,) + self.level_sizes[:-1])[np.asarray(levels)]
    return (np.asarray(ids) - offsets).astype(np.int32)

  def mask(self, levels: Sequence[int] = (), specials: Sequence[str] = ()) -> np.ndarray:
    """Boolean `[V]`, True on the ids of `levels` and of the named `specials`."""
    allowed = np.zeros(self.size, bool)
    for level in levels:
      start, stop = self.level_range(level)
      allowed[start:stop] = True
    for name in specials:
      allowed[self.num_codes + SPECIAL_TOKENS.index(name)] = True
    return allowed


class LevelSpan(NamedTuple):
  """Targets `start + f * levels + q` (f < frames, q < levels) are ids of level q, which are
  `first_id + q * width .. first_id + (q + 1) * width - 1`; no other target is learned."""
  start: int
  frames: int
  levels: int
  first_id: int
  width: int

  stop = property(lambda self: self.start + self.frames * self.levels)


def _shift_left(sequence: np.ndarray, pad_id: int) -> np.ndarray:
  return np.concatenate([sequence[1:], [pad_id]]).astype(np.int32)


def _flatten_frames(codes: np.ndarray) -> np.ndarray:
  """`[T, Q] -> [T * Q]` frame by frame: c(1,1) .. c(1,Q) c(2,1) .. (row-major)."""
  return np.asarray(codes).reshape(-1)


def _unflatten_frames(flat, num_levels: int):
  """`[..., T * Q] -> [..., T, Q]`, inverse of `_flatten_frames` (numpy or jax arrays)."""
  return flat.reshape(flat.shape[:-1] + (flat.shape[-1] // num_levels, num_levels))


def _check_codes(codes, name: str, min_levels: int, max_frames: int) -> np.ndarray:
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[1] < min_levels:
    raise DataError(f"{name} must be [frames, >= {min_levels} levels], got shape {codes.shape}")
  if len(codes) > max_frames:
    raise DataError(f"{name} has {len(codes)} frames, more than the {max_frames} this stage's "
                    "layout holds (crop first)")
  return codes[:, :min_levels]


def _left_pad(sequences: Sequence[np.ndarray], length: int, pad_id: int) -> np.ndarray:
  out = np.full((len(sequences), length), pad_id, np.int32)
  for row, seq in enumerate(sequences):
    if len(seq) > length:
      raise DataError(f"{len(seq)} tokens do not fit in the {length} slots of this layout")
    out[row, length - len(seq):] = seq
  return out


class _Stage:
  """What the three layouts share.

  Subclasses define `vocab`, `sequence_length` and `_position_masks(length)`.
  """

  @property
  def vocab_size(self) -> int:
    return self.vocab.size

  @property
  def pad_id(self) -> int:
    return self.vocab.pad_id

  def logit_mask(self, length: int | None = None) -> np.ndarray:
    """Boolean `[length, V]`: row i holds the ids allowed at sequence position i."""
    return self._position_masks(length or self.sequence_length)

  def target_logit_mask(self) -> np.ndarray:
    """Boolean `[N, V]`: row i holds the ids allowed as target i (= at position i + 1)."""
    mask = self._position_masks(self.sequence_length + 1)[1:]
    mask[-1] = True  # The target after the last position is padding with weight 0.
    return mask

  def level_span(self) -> LevelSpan | None:
    """The level-sliced span of the learned targets (stages 2 and 3), or None (stage 1)."""
    return None

  @property
  def vocab_width(self) -> int:
    """Ids scored per sampled position (`vocab_windows`): a level's codes, or every id."""
    return self.vocab.size

  def vocab_windows(self, length: int | None = None) -> np.ndarray:
    """int32 `[length]`: position i may sample only ids `starts[i] .. starts[i] + width - 1`
    (`width = vocab_width`), a window holding every id `logit_mask()[i]` allows; -1 where no
    window does (conditioning positions, never sampled by `lm.generate`)."""
    mask, width = self.logit_mask(length), self.vocab_width
    starts = np.full(len(mask), -1, np.int32)
    for i, row in enumerate(mask):
      ids = np.flatnonzero(row)
      if ids.size and ids[-1] - ids[0] < width:
        starts[i] = min(ids[0], self.vocab_size - width)
    return starts


@dataclasses.dataclass(frozen=True)
class SemanticStage(_Stage):
  """Stage 1: `p(s_t | s_<t)` over deduplicated semantic tokens.

  Attributes:
    codebook_size: K_s, semantic clusters (paper: 1024).
    crop_seconds: training crop (paper: 30 s).
    semantic_rate: semantic frames per second (paper: 25).
    temperature: default sampling temperature (paper: 0.6).
  """
  codebook_size: int = 1024
  crop_seconds: float = 30.0
  semantic_rate: int = 25
  temperature: float = 0.6

  @property
  def vocab(self) -> Vocabulary:
    return Vocabulary((self.codebook_size,))

  @property
  def eos_id(self) -> int:
    """Stage 1 may stop early: a crop that reaches the end of its audio ends with EOS."""
    return self.vocab.eos_id

  @property
  def max_frames(self) -> int:
    return _frames(self.crop_seconds, self.semantic_rate)

  @property
  def sequence_length(self) -> int:
    return self.max_frames + 2  # BOS, frames, EOS.

  def crop(self, rng: np.random.Generator, semantic_ids, acoustic_codes=None) -> Crop:
    return aligned_crop(rng, self.crop_seconds, semantic_ids=semantic_ids,
                        semantic_rate=self.semantic_rate)

  def make_example(self, semantic_ids, acoustic_codes=None, *, reaches_end: bool = False
                   ) -> Example:
    """The training sequence of a crop of semantic ids `[T_s]` (acoustic codes are unused)."""
    ids = remove_consecutive_duplicates(semantic_ids)
    if len(ids) > self.max_frames:
      raise DataError(f"{len(ids)} semantic frames exceed the {self.max_frames} of a "
                      f"{self.crop_seconds} s crop")
    tail = [self.vocab.eos_id] if reaches_end else []
    content = np.concatenate([[self.vocab.bos_id], self.vocab.encode(ids, 0), tail])
    sequence = np.full(self.sequence_length, self.pad_id, np.int32)
    sequence[:len(content)] = content
    weights = np.zeros(self.sequence_length, np.float32)
    weights[:len(content) - 1] = 1.0  # Every token after BOS is learned, EOS included.
    return Example(sequence, _shift_left(sequence, self.pad_id), weights)

  def make_prompt(self, semantic_ids: Sequence[np.ndarray]) -> np.ndarray:
    """`[B, P]` prompts `PAD .. BOS s_1 .. s_n` from B (raw) semantic id sequences."""
    rows = [np.concatenate([[self.vocab.bos_id],
                            self.vocab.encode(remove_consecutive_duplicates(s), 0)])
            for s in semantic_ids]
    return _left_pad(rows, max(len(r) for r in rows), self.pad_id)

  def semantic_ids(self, tokens: np.ndarray) -> np.ndarray:
    """The semantic ids of one sampled row `[N]`: up to EOS, without PAD and BOS."""
    tokens = np.asarray(tokens)
    eos = np.flatnonzero(tokens == self.vocab.eos_id)
    body = tokens[:eos[0]] if eos.size else tokens
    return self.vocab.decode(body[body < self.codebook_size], 0)

  def _position_masks(self, length: int) -> np.ndarray:
    masks = np.tile(self.vocab.mask(levels=[0], specials=["eos"]), (length, 1))
    masks[0] = self.vocab.mask(specials=["bos"])
    return masks


@dataclasses.dataclass(frozen=True)
class CoarseStage(_Stage):
  """Stage 2: `p(c | all s, c_<t)`, coarse acoustic tokens conditioned on semantic tokens.

  Attributes:
    semantic_codebook_size: K_s (paper: 1024).
    acoustic_codebook_size: K, codes per acoustic level (paper: 1024).
    num_coarse: Q', acoustic levels modelled here (paper: 4).
    crop_seconds: training crop (paper: 10 s).
    semantic_rate: semantic frames per second (paper: 25).
    acoustic_rate: acoustic frames per second (paper: 50).
    temperature: default sampling temperature (paper: 0.8).
    acoustic_only: the paper's acoustic-only ablation: no semantic tokens, the sequence is
      `BOS c(1,1) .. c(T,Q')` and the vocabulary has no semantic range (`semantic_codebook_size`
      and `semantic_rate` are then unused).
  """
  semantic_codebook_size: int = 1024
  acoustic_codebook_size: int = 1024
  num_coarse: int = 4
  crop_seconds: float = 10.0
  semantic_rate: int = 25
  acoustic_rate: int = 50
  temperature: float = 0.8
  acoustic_only: bool = False
  eos_id = None  # The length is set by the semantic tokens: never stop early.

  @property
  def vocab(self) -> Vocabulary:
    semantic = () if self.acoustic_only else (self.semantic_codebook_size,)
    return Vocabulary(semantic + (self.acoustic_codebook_size,) * self.num_coarse)

  def _level(self, q: int) -> int:
    """The vocabulary level of coarse level q (0-based): after the semantic level, if any."""
    return q if self.acoustic_only else 1 + q

  @property
  def max_semantic_frames(self) -> int:
    return _frames(self.crop_seconds, self.semantic_rate)

  @property
  def max_frames(self) -> int:
    """Acoustic frames in a crop."""
    return _frames(self.crop_seconds, self.acoustic_rate)

  @property
  def frames_per_semantic_frame(self) -> int:
    """Acoustic frames to generate per (non-deduplicated) semantic frame (paper: 2)."""
    return self.acoustic_rate // self.semantic_rate

  @property
  def prefix_length(self) -> int:
    """Positions of the conditioning part `PAD .. BOS s .. SEP` (or `BOS` when acoustic only);
    coarse tokens start here."""
    return 1 if self.acoustic_only else self.max_semantic_frames + 2

  @property
  def sequence_length(self) -> int:
    return self.prefix_length + self.max_frames * self.num_coarse

  def crop(self, rng: np.random.Generator, semantic_ids, acoustic_codes) -> Crop:
    if self.acoustic_only:
      return aligned_crop(rng, self.crop_seconds, acoustic_codes=acoustic_codes,
                          acoustic_rate=self.acoustic_rate)
    return aligned_crop(rng, self.crop_seconds, semantic_ids=semantic_ids,
                        acoustic_codes=acoustic_codes, semantic_rate=self.semantic_rate,
                        acoustic_rate=self.acoustic_rate)

  def _prefix(self, semantic_ids) -> np.ndarray:
    """`[prefix_length]`: `PAD .. BOS s_1 .. s_n SEP` with s deduplicated (`BOS` when acoustic
    only: the semantic ids are ignored)."""
    if self.acoustic_only:
      return np.array([self.vocab.bos_id], np.int32)
    ids = self.vocab.encode(remove_consecutive_duplicates(semantic_ids), 0)
    if len(ids) > self.max_semantic_frames:
      raise DataError(f"{len(ids)} semantic frames exceed the {self.max_semantic_frames} of a "
                      f"{self.crop_seconds} s crop")
    row = np.concatenate([[self.vocab.bos_id], ids, [self.vocab.sep_id]])
    return _left_pad([row], self.prefix_length, self.pad_id)[0]

  def _coarse_ids(self, codes: np.ndarray) -> np.ndarray:
    """`[T, Q'] -> [T * Q']` ids, frame by frame, level q offset into its own range."""
    levels = [self._level(q) for q in range(self.num_coarse)]
    return _flatten_frames(self.vocab.encode(codes, levels))

  def make_example(self, semantic_ids, acoustic_codes, *, reaches_end: bool = False) -> Example:
    """The training sequence of an aligned crop: semantic ids `[T_s]` (ignored, may be None, when
    acoustic only), codes `[T, >= Q']`."""
    codes = _check_codes(acoustic_codes, "acoustic codes", self.num_coarse, self.max_frames)
    coarse = self._coarse_ids(codes)
    sequence = np.full(self.sequence_length, self.pad_id, np.int32)
    sequence[:self.prefix_length] = self._prefix(semantic_ids)
    sequence[self.prefix_length:self.prefix_length + len(coarse)] = coarse
    weights = np.zeros(self.sequence_length, np.float32)
    # Target i is token i + 1: SEP predicts the first coarse token.
    weights[self.prefix_length - 1:self.prefix_length - 1 + len(coarse)] = 1.0
    return Example(sequence, _shift_left(sequence, self.pad_id), weights)

  def make_prompt(self, semantic_ids: Sequence[np.ndarray] | None,
                  acoustic_codes=None) -> np.ndarray:
    """`[B, prefix_length + T_p * Q']` prompts from B (raw) semantic id sequences and optional
    coarse prompt codes `[B, T_p, >= Q']` (the acoustic continuation of a prompt).

    When acoustic only, the semantic ids are ignored and may be None (B is then the length of
    `acoustic_codes`).
    """
    if semantic_ids is None and (acoustic_codes is None or not self.acoustic_only):
      raise ValueError("make_prompt needs semantic ids (or, when acoustic only, acoustic codes)")
    batch = len(acoustic_codes) if semantic_ids is None else len(semantic_ids)
    rows = np.stack([self._prefix(None if self.acoustic_only else semantic_ids[b])
                     for b in range(batch)])
    if acoustic_codes is None:
      return rows
    coarse = np.stack([self._coarse_ids(_check_codes(c, "prompt codes", self.num_coarse,
                                                     self.max_frames))
                       for c in acoustic_codes])
    return np.concatenate([rows, coarse], axis=1).astype(np.int32)

  @property
  def vocab_width(self) -> int:
    return self.acoustic_codebook_size

  def level_span(self) -> LevelSpan:  # SEP (position prefix_length - 1) predicts c(1,1), ...
    return LevelSpan(self.prefix_length - 1, self.max_frames, self.num_coarse,
                     self.vocab.offset(self._level(0)), self.acoustic_codebook_size)

  def coarse_codes(self, tokens, num_frames: int):
    """Codes `[B, T, Q']` of the first `num_frames` coarse frames of sampled `tokens [B, N]`."""
    flat = tokens[:, self.prefix_length:self.prefix_length + num_frames * self.num_coarse]
    offsets = np.array([self.vocab.offset(self._level(q)) for q in range(self.num_coarse)],
                       np.int32)
    return _unflatten_frames(flat, self.num_coarse) - offsets

  def _position_masks(self, length: int) -> np.ndarray:
    if self.acoustic_only:
      masks = np.zeros((length, self.vocab_size), bool)
      masks[0] = self.vocab.mask(specials=["bos"])
    else:
      masks = np.tile(self.vocab.mask(levels=[0], specials=["pad", "bos"]), (length, 1))
      masks[self.prefix_length - 1] = self.vocab.mask(specials=["sep"])
    for q in range(self.num_coarse):
      masks[self.prefix_length + q::self.num_coarse] = self.vocab.mask(levels=[self._level(q)])
    return masks


@dataclasses.dataclass(frozen=True)
class FineStage(_Stage):
  """Stage 3: `p(f | c of the chunk, f_<t)`, fine levels Q'+1..Q of one chunk given its coarse.

  Attributes:
    acoustic_codebook_size: K (paper: 1024).
    num_quantizers: Q, all acoustic levels (paper: 12).
    num_coarse: Q', the conditioning levels (paper: 4).
    chunk_seconds: chunk length, for training crops and generation (paper: 3 s).
    acoustic_rate: acoustic frames per second (paper: 50).
    temperature: default sampling temperature (paper: 0.6).
  """
  acoustic_codebook_size: int = 1024
  num_quantizers: int = 12
  num_coarse: int = 4
  chunk_seconds: float = 3.0
  acoustic_rate: int = 50
  temperature: float = 0.6
  eos_id = None  # As many fine frames as coarse frames: never stop early.

  def __post_init__(self):
    if not 0 < self.num_coarse < self.num_quantizers:
      raise ConfigError(f"num_coarse={self.num_coarse} must be in (0, num_quantizers="
                        f"{self.num_quantizers})")

  @property
  def vocab(self) -> Vocabulary:
    return Vocabulary((self.acoustic_codebook_size,) * self.num_quantizers)

  @property
  def num_fine(self) -> int:
    return self.num_quantizers - self.num_coarse

  @property
  def max_frames(self) -> int:
    """Acoustic frames in a chunk."""
    return _frames(self.chunk_seconds, self.acoustic_rate)

  @property
  def prefix_length(self) -> int:
    """Positions of `PAD .. BOS coarse .. SEP`; fine tokens start here."""
    return self.max_frames * self.num_coarse + 2

  @property
  def sequence_length(self) -> int:
    return self.prefix_length + self.max_frames * self.num_fine

  def crop(self, rng: np.random.Generator, semantic_ids, acoustic_codes) -> Crop:
    return aligned_crop(rng, self.chunk_seconds, acoustic_codes=acoustic_codes,
                        acoustic_rate=self.acoustic_rate)

  def _prefix(self, coarse_codes: np.ndarray) -> np.ndarray:
    coarse = _flatten_frames(self.vocab.encode(coarse_codes, np.arange(self.num_coarse)))
    row = np.concatenate([[self.vocab.bos_id], coarse, [self.vocab.sep_id]])
    return _left_pad([row], self.prefix_length, self.pad_id)[0]

  def _fine_ids(self, fine_codes: np.ndarray) -> np.ndarray:
    levels = self.num_coarse + np.arange(self.num_fine)
    return _flatten_frames(self.vocab.encode(fine_codes, levels))

  def make_example(self, semantic_ids, acoustic_codes, *, reaches_end: bool = False) -> Example:
    """The training sequence of a chunk of acoustic codes `[T, >= Q]` (semantic ids unused)."""
    codes = _check_codes(acoustic_codes, "acoustic codes", self.num_quantizers, self.max_frames)
    fine = self._fine_ids(codes[:, self.num_coarse:])
    sequence = np.full(self.sequence_length, self.pad_id, np.int32)
    sequence[:self.prefix_length] = self._prefix(codes[:, :self.num_coarse])
    sequence[self.prefix_length:self.prefix_length + len(fine)] = fine
    weights = np.zeros(self.sequence_length, np.float32)
    weights[self.prefix_length - 1:self.prefix_length - 1 + len(fine)] = 1.0
    return Example(sequence, _shift_left(sequence, self.pad_id), weights)

  def make_prompt(self, coarse_codes: np.ndarray, fine_codes=None) -> np.ndarray:
    """`[B, prefix_length + T_p * (Q - Q')]` prompts from the chunk's coarse codes
    `[B, T, >= Q']` and optional fine prompt codes `[B, T_p, Q - Q']`."""
    rows = np.stack([self._prefix(_check_codes(c, "coarse codes", self.num_coarse,
                                               self.max_frames)) for c in coarse_codes])
    if fine_codes is None:
      return rows
    fine = np.stack([self._fine_ids(_check_codes(f, "fine prompt codes", self.num_fine,
                                                 self.max_frames)) for f in fine_codes])
    return np.concatenate([rows, fine], axis=1).astype(np.int32)

  @property
  def vocab_width(self) -> int:
    return self.acoustic_codebook_size

  def level_span(self) -> LevelSpan:  # SEP predicts f(1,Q'+1), ...
    return LevelSpan(self.prefix_length - 1, self.max_frames, self.num_fine,
                     self.vocab.offset(self.num_coarse), self.acoustic_codebook_size)

  def fine_codes(self, tokens, num_frames: int):
    """Codes `[B, T, Q - Q']` of the first `num_frames` fine frames of sampled `tokens [B, N]`."""
    flat = tokens[:, self.prefix_length:self.prefix_length + num_frames * self.num_fine]
    offsets = np.array([self.vocab.offset(self.num_coarse + q) for q in range(self.num_fine)],
                       np.int32)
    return _unflatten_frames(flat, self.num_fine) - offsets

  def _position_masks(self, length: int) -> np.ndarray:
    masks = np.tile(self.vocab.mask(levels=range(self.num_coarse), specials=["pad", "bos"]),
                    (length, 1))
    masks[self.prefix_length - 1] = self.vocab.mask(specials=["sep"])
    for q in range(self.num_fine):
      masks[self.prefix_length + q::self.num_fine] = self.vocab.mask(levels=[self.num_coarse + q])
    return masks


Stage = SemanticStage | CoarseStage | FineStage
