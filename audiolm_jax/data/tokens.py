"""Token caches: a corpus tokenized once (semantic ids + acoustic codes), stored as array_record.

Stage training reads tokens, never audio, so the codec and the semantic tokenizer never run per
step. A cache is a TFDS build (no TensorFlow) in its own directory with, per utterance:

    semantic     int32 [T25]      raw k-means ids at 25 Hz (duplicates *not* removed)
    acoustic     int32 [T50, Q]   RVQ codes at 50 Hz, all Q levels; T50 == 2 * T25
    speaker_id   int64            -1 when unknown
    sentence_id  int64            -1 when unknown
    transcript   text             "" when unknown

    write_token_cache(cache_dir, {"train": examples, ...})   # examples: iterables of dicts
    source = token_source(cache_dir, "train")                  # random access, for grain
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.errors import DataError

FEATURES = ("semantic", "acoustic", "speaker_id", "sentence_id", "transcript")


def check_token_example(ex: Mapping[str, Any], where: str = "example") -> dict:
  """Validates one cache entry (shapes, dtypes, the 2:1 frame relation); returns it typed."""
  semantic = np.asarray(ex["semantic"])
  acoustic = np.asarray(ex["acoustic"])
  if semantic.ndim != 1 or acoustic.ndim != 2:
    raise DataError(f"{where}: semantic must be [T25] and acoustic [T50, Q], got "
                    f"{semantic.shape} and {acoustic.shape}")
  if acoustic.shape[0] != 2 * semantic.shape[0]:
    raise DataError(f"{where}: {acoustic.shape[0]} acoustic frames for {semantic.shape[0]} "
                    "semantic frames; need exactly 2:1")
  if semantic.size == 0:
    raise DataError(f"{where}: no frames")
  if semantic.min() < 0 or acoustic.min() < 0:
    raise DataError(f"{where}: negative token ids")
  return {"semantic": semantic.astype(np.int32), "acoustic": acoustic.astype(np.int32),
          "speaker_id": np.int64(ex.get("speaker_id", -1)),
          "sentence_id": np.int64(ex.get("sentence_id", -1)),
          "transcript": str(ex.get("transcript", "") or "")}


@dataclasses.dataclass(eq=False)
class _CacheConfig(tfds.core.BuilderConfig):
  splits: Any = dataclasses.field(default=None, repr=False)  # {split: examples}; not stored.


class TokenCache(tfds.core.GeneratorBasedBuilder):
  """A tokenized corpus (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict({
        "semantic": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        # Two unknown dimensions need a byte encoding in TFDS; zlib also shrinks the codes.
        "acoustic": tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding="zlib"),
        "speaker_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "sentence_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "transcript": tfds.features.Text(),
    })
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(name, exs)
            for name, exs in self.builder_config.splits.items()}

  def _generate_examples(self, split: str, examples: Iterable[Mapping[str, Any]]):
    for i, ex in enumerate(examples):
      yield f"{split}-{i:08d}", check_token_example(ex, f"{split}[{i}]")


def write_token_cache(cache_dir: str, splits: Mapping[str, Iterable[Mapping[str, Any]]]) -> str:
  """Writes a cache to `cache_dir` (replacing any old one); returns the build directory."""
  cache_dir = os.path.abspath(cache_dir)
  builder = TokenCache(data_dir=cache_dir, config=_CacheConfig(name="tokens", splits=dict(splits)),
                       file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD))
  return os.fspath(builder.data_path)


def _build_dir(cache_dir: str) -> str:
  root = os.path.join(os.path.abspath(cache_dir), "token_cache", "tokens")
  versions = sorted(d for d in (os.listdir(root) if os.path.isdir(root) else [])
                    if os.path.exists(os.path.join(root, d, "dataset_info.json")))
  if not versions:
    raise DataError(f"no token cache under {cache_dir}: run `audiolm-jax tokenize corpus ...` "
                    "first")
  return os.path.join(root, versions[-1])


def token_sources(cache_dir: str) -> dict:
  """{split: random-access source} of a finished cache."""
  return dict(tfds.builder_from_directory(_build_dir(cache_dir)).as_data_source())


def token_source(cache_dir: str, split: str):
  sources = token_sources(cache_dir)
  if split not in sources:
    raise DataError(f"token cache {cache_dir}: no split {split!r}; has {', '.join(sorted(sources))}")
  return sources[split]


def has_token_cache(cache_dir: str) -> bool:
  try:
    _build_dir(cache_dir)
    return True
  except DataError:
    return False


def tokenize_corpus(cache_dir: str, *, corpus: str, splits: tuple[str, ...], codec,
                    semantic_tokenizer, data_dir: str | None = None,
                    config_name: str | None = None, bucket_seconds: float = 1.0,
                    batch_size: int = 16, max_examples: int | None = None,
                    progress: bool = True) -> dict:
  """Tokenizes corpus splits once and writes them as a token cache; returns a summary.

  `codec.encode(wav [B, S]) -> codes [B, T50, Q]` and `semantic_tokenizer.tokenize(wav [B, S])
  -> ids [B, T25]` (any objects with these methods). Clips are grouped by length into buckets
  of `bucket_seconds` (padded with zeros to the bucket's end, so each bucket compiles once) and
  trimmed back to their own frame counts: T25 = ceil(S / 640), T50 = 2 * T25, with the codec
  fed the clip padded to a multiple of 640 samples. A record that cannot be read or gives
  non-finite audio is skipped and counted.
  """
  import math
  from tqdm import tqdm
  from audiolm_jax.data import corpora
  from audiolm_jax.data.audio import from_int16
  from audiolm_jax.semantic.tokenizer import SAMPLES_PER_FRAME, num_frames

  bucket = int(round(bucket_seconds * 16000 / SAMPLES_PER_FRAME)) * SAMPLES_PER_FRAME
  if bucket <= 0:
    raise DataError(f"bucket_seconds must give at least {SAMPLES_PER_FRAME} samples")
  summary = {"corpus": corpus, "splits": {}, "skipped": 0}

  def tokenize_split(split: str):
    source = corpora.data_source(corpus, split, data_dir, config_name)
    n = len(source) if max_examples is None else min(len(source), max_examples)
    by_length: dict[int, list[tuple[int, np.ndarray, Mapping]]] = {}
    skipped = 0
    for i in range(n):
      try:
        record = source[i]
        wav = from_int16(np.asarray(record["audio"]))
      except Exception:  # An unreadable record: counted, never fatal.
        skipped += 1
        continue
      if wav.size == 0 or not np.all(np.isfinite(wav)):
        skipped += 1
        continue
      padded_len = math.ceil(wav.size / bucket) * bucket
      by_length.setdefault(padded_len, []).append((i, wav, record))
    out = {}
    bar = tqdm(total=n - skipped, desc=f"tokenizing {corpus}/{split}", disable=not progress)
    for padded_len, items in sorted(by_length.items()):
      for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        wavs = np.zeros((batch_size, padded_len), np.float32)  # Fixed batch: one compile.
        for row, (_, wav, _) in enumerate(chunk):
          wavs[row, :wav.size] = wav
        codes = np.asarray(codec.encode(wavs))
        ids = np.asarray(semantic_tokenizer.tokenize(wavs))
        for row, (i, wav, record) in enumerate(chunk):
          t25 = num_frames(wav.size)
          example = {"semantic": ids[row, :t25], "acoustic": codes[row, :2 * t25]}
          for key in ("speaker_id", "sentence_id", "transcript"):
            if key in record:
              value = record[key]
              example[key] = value.decode() if isinstance(value, bytes) else value
          out[i] = example
        bar.update(len(chunk))
    bar.close()
    summary["splits"][split] = len(out)
    summary["skipped"] += skipped
    return [out[i] for i in sorted(out)]

  tokenized = {split: tokenize_split(split) for split in splits}
  summary["path"] = write_token_cache(cache_dir, tokenized)
  return summary
