"""The one batched tokenize path: clips of any length to tokens (and codes back to audio).

    run_by_length(fn, clips, batch_size, out_length)   # the bucket / pad / run / trim loop
    acoustic_tokens(codec, wavs)                       # [ratio * T_i, Q] codes per clip
    semantic_tokens(tokenizer, wavs)                   # [T_i] ids per clip, padding masked
    semantic_features(extractor, wavs)                 # [T_i, D] the features behind the ids
    tokenize_for_lm(codec, wav)                        # [B, S] -> [B, ratio * T, Q]
    decode_clips(codec, codes)                         # waveforms of code sequences
    tokenize_corpus(cache_dir, corpus=..., codec=..., semantic_tokenizer=...)  # a token cache

Every path above groups clips by length, pads them (mask False) to one of a few bucket
lengths, runs fixed-size batches (so few shapes are compiled) and cuts each result back to its
own length. Clips longer than a chunk (30 s by default) are cut into overlapping windows
first, so memory stays flat in a clip's length. That is correct because every tokenizer gives a clip's frames independently of the
padding after it: the semantic tokenizer masks it (its conformer would otherwise attend to it,
changing valid frames' features by about 12% at random init), and a causal codec never looks
ahead.

Frames follow `audiolm_jax.frames`: a clip of S samples has `T = num_frames(S, spf)` semantic
frames (spf = the tokenizer's samples per frame, 640 by default) and, padded to `T * spf`
samples, exactly `ratio * T` codec frames, `ratio = frame_ratio(spf, codec hop)`.

Inference imports nothing of the trainer or the data pipeline from here; `tokenize_corpus`
reads corpora and writes the cache, importing `data` when it is called.

Shape letters: B batch, S samples, T semantic frames, Q quantizer levels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.frames import (SAMPLE_RATE, SAMPLES_PER_FRAME, frame_ratio, num_frames,
                                pad_to_frames)


def bucket_length(units: int, minimum: int = 16) -> int:
  """`units` rounded up to a bucket: four lengths per octave (at most 1/4 of padding), at
  least `minimum`. Few buckets means few compilations."""
  units = max(int(units), minimum)
  step = 1 << max(0, units.bit_length() - 3)
  return -(-units // step) * step


def run_by_length(fn: Callable[[np.ndarray, np.ndarray], Any], clips: Sequence[np.ndarray],
                  batch_size: int, out_length: Callable[[int], int], unit: int = 1,
                  minimum_units: int = 16) -> list[np.ndarray]:
  """`fn(batch [B, L, ...], mask [B, L]) -> out [B, L', ...]` on clips `[L_i, ...]` of any
  lengths; returns each clip's `out[:out_length(L_i)]`, in order.

  Clips are sorted by length and padded with zeros (mask False) to `unit` times a bucket
  length (`bucket_length` of their length in units), in batches of `batch_size` rows (a short
  last batch gets empty rows, not a new shape).
  """
  if batch_size <= 0:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  lengths = [int(np.shape(c)[0]) for c in clips]
  out: list[np.ndarray | None] = [None] * len(clips)
  order = sorted(range(len(clips)), key=lambda i: lengths[i])
  rows = min(batch_size, len(clips))
  for start in range(0, len(order), rows):
    group = order[start:start + rows]
    length = unit * bucket_length(-(-lengths[group[-1]] // unit), minimum_units)
    first = np.asarray(clips[group[0]])
    batch = np.zeros((rows, length, *first.shape[1:]), first.dtype)
    mask = np.zeros((rows, length), bool)
    for row, i in enumerate(group):
      batch[row, :lengths[i]] = clips[i]
      mask[row, :lengths[i]] = True
    result = np.asarray(fn(batch, mask))
    for row, i in enumerate(group):
      out[i] = result[row, :out_length(lengths[i])]
  return out


def _check_wavs(wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
  checked = []
  for i, w in enumerate(wavs):
    w = np.asarray(w, np.float32)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)):
      raise DataError(f"clip {i}: need a finite, non-empty mono waveform, got shape {w.shape}")
    checked.append(w)
  return checked


def ratio_of(codec, samples_per_frame: int = SAMPLES_PER_FRAME) -> int:
  """Codec frames per semantic frame of `samples_per_frame` samples (2 for SoundStream)."""
  return frame_ratio(samples_per_frame, codec.config.hop_length, SAMPLE_RATE, codec.sample_rate)


def tokenize_for_lm(codec, wav, n_q: int | None = None,
                    samples_per_frame: int = SAMPLES_PER_FRAME):
  """Acoustic tokens aligned with the semantic tokens: wav [B, S] -> codes [B, ratio T, n_q].

  The clip is zero-padded by the frame rule (to `T = num_frames(S)` semantic frames), so semantic
  frame t covers codec frames `ratio t .. ratio t + ratio - 1` for every S. More zero padding
  after a clip changes none of its codes (the encoder is causal).
  """
  ratio_of(codec, samples_per_frame)  # The codec must fit the frame rule.
  if n_q is not None and not 1 <= n_q <= codec.num_quantizers:
    raise ConfigError(f"n_q={n_q}: this codec has 1 to {codec.num_quantizers} levels")
  wav = jnp.asarray(wav, jnp.float32)
  if wav.ndim != 2 or wav.shape[1] == 0:
    raise DataError(f"expected waveforms [batch, samples], got shape {wav.shape}")
  padded, _ = pad_to_frames(wav, None, samples_per_frame)            # [B, spf * T]
  return codec.encode(padded, n_q=n_q)


# Long clips are tokenized in windows, so memory stays flat in length (a whole 20-minute clip
# through the conformer's full attention took more than 12 GB). Semantic windows keep
# `SEMANTIC_CONTEXT_SECONDS` of audio on each side of their `SEMANTIC_CHUNK_SECONDS` core:
# 60 s windows. The conformer attends over the whole window, so more context agrees better
# with whole-clip ids (cpu w2v-BERT, 2 min of LibriSpeech: 85% equal with 5 s, 91% with 15 s,
# 94% with 30 s; masked padding alone changes 3%; benchmarks/long_inputs.py). The causal
# codec needs left context only, and with at least its receptive field gives the same codes
# as the whole clip.
SEMANTIC_CHUNK_SECONDS = 30.0
SEMANTIC_CONTEXT_SECONDS = 15.0
ACOUSTIC_CHUNK_SECONDS = 30.0
ACOUSTIC_CONTEXT_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class _Window:
  clip: int      # which clip
  lo: int        # first frame of the window
  start: int     # first frame kept (the core)
  stop: int      # one past the last frame kept


def _windows(num: int, chunk: int, left: int, right: int) -> list[tuple[int, int, int, int]]:
  """`(lo, hi, start, stop)` frame ranges: cores [start, stop) of `chunk` frames tiling
  [0, num), each read with `left` / `right` frames of context; one window if it all fits."""
  if chunk <= 0 or num <= chunk + left + right:
    return [(0, num, 0, num)]
  return [(max(0, a - left), min(num, a + chunk + right), a, min(num, a + chunk))
          for a in range(0, num, chunk)]


def _run_windowed(fn, wavs: Sequence[np.ndarray], batch_size: int, spf: int, per_frame: int,
                  chunk_seconds: float, left_seconds: float, right_seconds: float
                  ) -> list[np.ndarray]:
  """`fn` (a `run_by_length` function giving `per_frame` outputs per frame of `spf` samples)
  over windows of each clip, the kept cores concatenated back into one result per clip."""
  frames_per_second = SAMPLE_RATE / spf
  chunk = int(round(chunk_seconds * frames_per_second)) if chunk_seconds else 0
  left = int(round(left_seconds * frames_per_second))
  right = int(round(right_seconds * frames_per_second))
  if chunk_seconds and (chunk <= 0 or left < 0 or right < 0):
    raise ConfigError(f"chunk of {chunk_seconds} s with {left_seconds} s / {right_seconds} s "
                      "of context: need a chunk of at least one frame and context >= 0")
  pieces, windows = [], []
  for i, w in enumerate(wavs):
    for lo, hi, start, stop in _windows(num_frames(len(w), spf), chunk, left, right):
      pieces.append(w[lo * spf:hi * spf])
      windows.append(_Window(i, lo, start, stop))
  outs = run_by_length(fn, pieces, batch_size, lambda s: per_frame * num_frames(s, spf),
                       unit=spf)
  parts: list[list[np.ndarray]] = [[] for _ in wavs]
  for win, out in zip(windows, outs):
    parts[win.clip].append(out[per_frame * (win.start - win.lo):per_frame * (win.stop - win.lo)])
  return [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]


def acoustic_tokens(codec, wavs: Sequence[np.ndarray], batch_size: int = 8,
                    n_q: int | None = None, samples_per_frame: int = SAMPLES_PER_FRAME, *,
                    chunk_seconds: float = ACOUSTIC_CHUNK_SECONDS,
                    context_seconds: float = ACOUSTIC_CONTEXT_SECONDS) -> list[np.ndarray]:
  """Codes `[ratio * num_frames(S_i), n_q]` of each clip, aligned with its semantic tokens.

  Clips longer than `chunk_seconds` (0: never) go through the codec in windows with
  `context_seconds` of audio before each (the codec is causal: none after).
  """
  ratio = ratio_of(codec, samples_per_frame)
  return _run_windowed(
      lambda wav, mask: tokenize_for_lm(codec, wav, n_q, samples_per_frame), _check_wavs(wavs),
      batch_size, samples_per_frame, ratio, chunk_seconds, context_seconds, 0.0)


def semantic_tokens(tokenizer, wavs: Sequence[np.ndarray], batch_size: int = 8, *,
                    chunk_seconds: float = SEMANTIC_CHUNK_SECONDS,
                    context_seconds: float = SEMANTIC_CONTEXT_SECONDS) -> list[np.ndarray]:
  """Ids `[num_frames(S_i)]` of each clip; the padding of a batch is masked.

  Clips longer than `chunk_seconds` + twice `context_seconds` (chunk 0: never) are tokenized
  in windows: each keeps the ids of its `chunk_seconds` core, read with `context_seconds` of
  audio on both sides, so memory does not grow with the clip's length.
  """
  spf = tokenizer.samples_per_frame
  return _run_windowed(tokenizer.tokenize, _check_wavs(wavs), batch_size, spf, 1,
                       chunk_seconds, context_seconds, context_seconds)


def semantic_features(extractor, wavs: Sequence[np.ndarray], batch_size: int = 8, *,
                      chunk_seconds: float = SEMANTIC_CHUNK_SECONDS,
                      context_seconds: float = SEMANTIC_CONTEXT_SECONDS) -> list[np.ndarray]:
  """Features `[num_frames(S_i), D]` of each clip from a `FeatureExtractor`, windowed as
  `semantic_tokens` (what its ids are computed from; for measuring the windows' effect)."""
  return _run_windowed(lambda wav, mask: extractor(wav, mask)[0], _check_wavs(wavs),
                       batch_size, extractor.samples_per_frame, 1, chunk_seconds,
                       context_seconds, context_seconds)


def decode_clips(codec, codes: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
  """Waveforms `[T_i * hop]` of code sequences `[T_i, n]` of any lengths (the same n).

  The causal decoder's output up to frame T_i does not depend on the frames after it.
  """
  if batch_size <= 0:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  if not codes:
    return []
  levels = {np.shape(c)[-1] for c in codes}
  if len(levels) != 1 or any(np.ndim(c) != 2 or len(c) == 0 for c in codes):
    raise DataError("decode: every code sequence must be [frames, levels] with frames > 0 and "
                    f"the same number of levels, got shapes {[np.shape(c) for c in codes]}")
  hop, n, k = codec.config.hop_length, levels.pop(), codec.config.codebook_size
  if n > codec.num_quantizers:
    raise DataError(f"decode: codes of {n} levels; this codec has {codec.num_quantizers}")
  if any(np.min(c) < 0 or np.max(c) >= k for c in codes):
    raise DataError(f"decode: codes outside [0, {k}), this codec's codebook")
  return run_by_length(lambda c, mask: codec.decode(jnp.asarray(c, jnp.int32)),
                       [np.asarray(c, np.int32) for c in codes], batch_size,
                       lambda t: t * hop, minimum_units=1)


def tokenize_corpus(cache_dir: str, *, corpus: str, splits: tuple[str, ...], codec,
                    semantic_tokenizer, data_dir: str | None = None,
                    config_name: str | None = None, batch_size: int = 16,
                    max_examples: int | None = None, chunk_size: int = 256,
                    process_index: int = 0, process_count: int = 1, overwrite: bool = False,
                    settings: dict | None = None, barrier: Callable[[str], None] | None = None,
                    progress: bool = True) -> dict:
  """Tokenizes corpus splits once and writes them as a token cache; returns a summary.

  `codec` (a `soundstream.Codec`) and `semantic_tokenizer` (a `SemanticTokenizer`) run through
  `acoustic_tokens` and `semantic_tokens`: the same path as generation and the command line,
  so the cache's tokens are exactly those a prompt gets. A record that cannot be read or gives
  non-finite or empty audio is skipped and counted. The cache records the frame ratio and
  both vocabularies (`data.tokens.CacheInfo`).

  Streaming and resumable: each split is cut into chunks of `chunk_size` records, read,
  tokenized and written one at a time (`data.tokens.CacheWriter`), so memory holds one chunk,
  and a rerun after a kill skips the chunks already written. With several processes, process
  `p` of `P` does every `P`-th chunk from the `p`-th (all splits' chunks in a row);
  `barrier(name)` must then wait for all of them
  (`jax.experimental.multihost_utils.sync_global_devices`), and process 0 assembles the
  cache. The cache is the same for any `P`. `settings` (e.g. the checkpoints used) are
  recorded, and a half-built cache with other settings is refused unless `overwrite`.
  """
  # pylint: disable=g-import-not-at-top
  from audiolm_jax.data import corpora
  from audiolm_jax.data.audio import from_int16
  from audiolm_jax.data.tokens import CacheInfo, CacheWriter
  from audiolm_jax.progress import StageProgress
  # pylint: enable=g-import-not-at-top
  if process_count > 1 and barrier is None:
    raise ConfigError("tokenize_corpus: several processes need a barrier")
  if chunk_size <= 0:
    raise ConfigError(f"chunk_size must be positive, got {chunk_size}")
  barrier = barrier or (lambda name: None)
  spf = semantic_tokenizer.samples_per_frame
  ratio = ratio_of(codec, spf)
  sources = {split: corpora.data_source(corpus, split, data_dir, config_name)
             for split in splits}
  sizes = {split: len(src) if max_examples is None else min(len(src), max_examples)
           for split, src in sources.items()}
  num_chunks = {split: max(1, -(-n // chunk_size)) for split, n in sizes.items()}
  record = {"corpus": corpus, "config_name": config_name, "splits": list(splits),
            "max_examples": max_examples, "chunk_size": chunk_size, "sizes": sizes,
            "frame_ratio": ratio, **(settings or {})}
  if process_index == 0:
    writer = CacheWriter(cache_dir, record, fresh=overwrite)
  barrier("tokenize corpus: started")
  if process_index != 0:
    writer = CacheWriter(cache_dir, record, create=False)

  everything = [(split, c) for split in splits for c in range(num_chunks[split])]
  mine = everything[process_index::process_count]
  todo = [(split, c) for split, c in mine if not writer.done(split, c)]
  chunks = {"total": sum(num_chunks.values()), "this_process": len(mine),
            "resumed": len(mine) - len(todo)}
  summary: dict[str, Any] = {"corpus": corpus, "splits": {}, "skipped": 0, "chunks": chunks}
  bar = StageProgress(total=len(todo), desc=f"tokenizing {corpus} ({len(todo)} of "
                      f"{len(mine)} chunks to do, {chunk_size} clips each)", enabled=progress)
  for split, c in todo:
    source, start = sources[split], c * chunk_size
    wavs, records, skipped = [], [], 0
    for i in range(start, min(start + chunk_size, sizes[split])):
      try:
        rec = source[i]
        wav = from_int16(np.asarray(rec["audio"]))
      except Exception:  # An unreadable record: counted, never fatal.
        skipped += 1
        continue
      if wav.size == 0 or not np.all(np.isfinite(wav)):
        skipped += 1
        continue
      wavs.append(wav)
      records.append(rec)
    ids = semantic_tokens(semantic_tokenizer, wavs, batch_size) if wavs else []
    codes = acoustic_tokens(codec, wavs, batch_size, samples_per_frame=spf) if wavs else []
    examples = []
    for rec, s, a in zip(records, ids, codes):
      example = {"semantic": s, "acoustic": a}
      for key in ("speaker_id", "sentence_id", "transcript"):
        if key in rec:
          value = rec[key]
          example[key] = value.decode() if isinstance(value, bytes) else value
      examples.append(example)
    writer.write_chunk(split, c, examples, ratio, skipped=skipped)
    bar.advance(f"{split} chunk {c}: {len(examples)} clips")
  bar.close()
  barrier("tokenize corpus: chunks written")
  if process_index == 0:
    counts = [(split, writer.counts(split, c)) for split in splits
              for c in range(num_chunks[split]) if writer.done(split, c)]
    summary["skipped"] = sum(n.get("skipped", 0) for _, n in counts)
    summary["splits"] = {split: sum(n["examples"] for s, n in counts if s == split)
                         for split in splits}
    info = CacheInfo(frame_ratio=ratio, semantic_vocab_size=semantic_tokenizer.num_clusters,
                     acoustic_vocab_size=codec.config.codebook_size,
                     num_quantizers=codec.num_quantizers, samples_per_frame=spf)
    summary["path"] = writer.finish(info, num_chunks)
  barrier("tokenize corpus: finished")
  return summary

