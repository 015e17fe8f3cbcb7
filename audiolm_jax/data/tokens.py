"""Token caches: a corpus tokenized once (semantic ids + acoustic codes), stored as array_record.

Stage training reads tokens, never audio, so the codec and the semantic tokenizer never run per
step. A cache is a directory in TFDS's layout (readable with `tfds.builder_from_directory`, no
TensorFlow) with, per utterance:

    semantic     int32 [T]        raw k-means ids (25 Hz in the paper; duplicates *not* removed)
    acoustic     int32 [r T, Q]   RVQ codes, all Q levels; r = frame ratio (2 in the paper)
    speaker_id   int64            -1 when unknown
    sentence_id  int64            -1 when unknown
    transcript   text             "" when unknown

and `token_cache.json` (`CacheInfo`): the frame ratio r, both vocabularies, the tokens' frame,
and per split the mean number of raw frames per deduplicated semantic token, which generation
uses to lay deduplicated tokens out in time as training saw them (`lm/generate.py`).

    write_token_cache(cache_dir, {"train": examples, ...}, info)   # examples: iterables of dicts
    writer = CacheWriter(cache_dir, settings)                       # chunk by chunk, resumable
    source = token_source(cache_dir, "train")                        # random access, for grain
    info = read_cache_info(cache_dir)

Each split is a list of shards, one per chunk of examples, written by `CacheWriter` (any
process may write any chunk; the shards do not depend on which). `tokenize.tokenize_corpus`
makes a cache from a corpus, a codec and a semantic tokenizer that way.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from audiolm_jax import paths
from audiolm_jax.checkpoint_files import one_line
from audiolm_jax.errors import DataError
from audiolm_jax.frames import SAMPLES_PER_FRAME
from audiolm_jax.lm.stages import remove_consecutive_duplicates

FEATURES = ("semantic", "acoustic", "speaker_id", "sentence_id", "transcript")
INFO_FILE = "token_cache.json"


@dataclasses.dataclass
class CacheInfo:
  """What a token cache holds, besides the tokens (`token_cache.json`).

  Attributes:
    frame_ratio: acoustic frames per semantic frame (r).
    semantic_vocab_size: K of the semantic tokenizer (0: unknown).
    acoustic_vocab_size: K of the codec (0: unknown).
    num_quantizers: Q, levels of the acoustic codes (0: unknown).
    samples_per_frame: samples per semantic frame at 16 kHz.
    frames_per_token: per split, raw semantic frames / deduplicated tokens (filled on write).
  """
  frame_ratio: int = 2
  semantic_vocab_size: int = 0
  acoustic_vocab_size: int = 0
  num_quantizers: int = 0
  samples_per_frame: int = SAMPLES_PER_FRAME
  frames_per_token: dict[str, float] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> CacheInfo:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


def check_token_example(ex: Mapping[str, Any], where: str = "example",
                        ratio: int = 2) -> dict:
  """Validates one cache entry (shapes, dtypes, the r:1 frame relation); returns it typed."""
  semantic = np.asarray(ex["semantic"])
  acoustic = np.asarray(ex["acoustic"])
  if semantic.ndim != 1 or acoustic.ndim != 2:
    raise DataError(f"{where}: semantic must be [T25] and acoustic [T50, Q], got "
                    f"{semantic.shape} and {acoustic.shape}")
  if acoustic.shape[0] != ratio * semantic.shape[0]:
    raise DataError(f"{where}: {acoustic.shape[0]} acoustic frames for {semantic.shape[0]} "
                    f"semantic frames; need exactly {ratio}:1")
  if semantic.size == 0:
    raise DataError(f"{where}: no frames")
  if semantic.min() < 0 or acoustic.min() < 0:
    raise DataError(f"{where}: negative token ids")
  return {"semantic": semantic.astype(np.int32), "acoustic": acoustic.astype(np.int32),
          "speaker_id": np.int64(ex.get("speaker_id", -1)),
          "sentence_id": np.int64(ex.get("sentence_id", -1)),
          "transcript": str(ex.get("transcript", "") or "")}


DATASET = "token_cache"  # The TFDS layout readers expect: DIR/token_cache/tokens/1.0.0/.
_BUILD = (DATASET, "tokens", "1.0.0")
_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
PARTIAL = ".partial"  # Work in progress under the cache directory: chunks and their counts.
_SETTINGS = "settings.json"


def _features():
  return tfds.features.FeaturesDict({
      "semantic": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      # Two unknown dimensions need a byte encoding in TFDS; zlib also shrinks the codes.
      "acoustic": tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding="zlib"),
      "speaker_id": tfds.features.Tensor(shape=(), dtype=np.int64),
      "sentence_id": tfds.features.Tensor(shape=(), dtype=np.int64),
      "transcript": tfds.features.Text(),
  })


class CacheWriter:
  """Writes a token cache chunk by chunk: bounded memory, resumable, shared among processes.

      writer = CacheWriter(cache_dir, settings)       # settings: what the cache is made of
      if not writer.done(split, c):
        writer.write_chunk(split, c, examples)         # one array_record shard, atomically
      writer.finish(info, {split: num_chunks})         # the cache appears (one process)

  Chunk `c` of a split becomes shard `c` of that split, so the cache does not depend on how
  many processes wrote it or in which order. Chunks are written under `DIR/.partial/`, each as
  its records then a small JSON of its counts (written last, so a chunk with counts is
  complete): a run killed at any point resumes where it stopped, provided `settings` are the
  same (other settings are refused rather than mixed in; `fresh=True` starts over). Until
  `finish`, an older cache in `cache_dir` stays as it was and readable.
  """

  def __init__(self, cache_dir: str | os.PathLike, settings: Mapping[str, Any], *,
               fresh: bool = False, create: bool = True):
    self.cache_dir = paths.resolve(cache_dir)  # A local folder or a URI (`gs://...`).
    self.work = self.cache_dir / PARTIAL
    self.settings = json.loads(json.dumps(dict(settings)))  # Normalised as stored.
    self._features = _features()
    path = self.work / _SETTINGS
    if fresh and create and self.work.is_dir():
      self.work.rmtree()
    if path.is_file():
      try:
        started = json.loads(path.read_text())
      except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({one_line(e)}); delete {self.work} to start over")
      if started != self.settings:
        changed = sorted(k for k in set(started) | set(self.settings)
                         if started.get(k) != self.settings.get(k))
        raise DataError(f"{self.cache_dir}: a token cache build with other settings "
                        f"({', '.join(changed)}) is in progress there; resume it with the same "
                        "settings, or start over (--overwrite)")
    elif create:
      self.work.mkdir(parents=True, exist_ok=True)
      _write_json_atomically(path, self.settings)

  def _chunk_path(self, split: str, chunk: int, suffix: str) -> epath.Path:
    return self.work / f"{split}-{chunk:05d}{suffix}"

  def done(self, split: str, chunk: int) -> bool:
    return self._chunk_path(split, chunk, ".json").is_file()

  def write_chunk(self, split: str, chunk: int, examples: Iterable[Mapping[str, Any]],
                  ratio: int = 2, skipped: int = 0) -> dict:
    """Checks and writes the examples of one chunk; returns its counts."""
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    tmp = self._chunk_path(split, chunk, ".tmp")
    counts = {"examples": 0, "raw_frames": 0, "dedup_frames": 0, "skipped": int(skipped)}
    writer = array_record_module.ArrayRecordWriter(os.fspath(tmp), "group_size:1")
    try:
      for i, ex in enumerate(examples):
        ex = check_token_example(ex, f"{split}[chunk {chunk}, {i}]", ratio)
        writer.write(self._features.serialize_example(ex))
        counts["examples"] += 1
        counts["raw_frames"] += len(ex["semantic"])
        counts["dedup_frames"] += len(remove_consecutive_duplicates(ex["semantic"]))
    finally:
      writer.close()
    records = self._chunk_path(split, chunk, ".array_record")
    tmp.replace(records)
    with records.open("rb") as f:  # Not stat(): epath's also looks up the owner's name.
      f.seek(0, os.SEEK_END)
      counts["bytes"] = f.tell()
    _write_json_atomically(self._chunk_path(split, chunk, ".json"), counts)
    return counts

  def counts(self, split: str, chunk: int) -> dict:
    """What a finished chunk holds: examples, skipped, raw/dedup frames, bytes."""
    path = self._chunk_path(split, chunk, ".json")
    try:
      return json.loads(path.read_text())
    except (OSError, ValueError) as e:
      raise DataError(f"{path}: unreadable ({one_line(e)}); delete it to redo that chunk")

  def chunks(self, split: str) -> list[int]:
    """The finished chunks of a split, in order."""
    prefix = f"{split}-"
    names = [p.name for p in self.work.iterdir()]
    return sorted(int(n[len(prefix):-5]) for n in names
                  if n.startswith(prefix) and n.endswith(".json") and n[len(prefix):-5].isdigit())

  def finish(self, info: CacheInfo, num_chunks: Mapping[str, int | None]) -> str:
    """Moves the chunks into place as the cache (replacing an older one) and writes its
    metadata and `token_cache.json`; returns the build directory. `num_chunks[split]` is how
    many chunks the split must have (None: whatever was written)."""
    from tensorflow_datasets.core import naming  # pylint: disable=g-import-not-at-top
    counts = {}
    for split, expected in num_chunks.items():
      have = self.chunks(split)
      want = list(range(expected if expected is not None else len(have)))
      if have != want:
        missing = sorted(set(want) - set(have))
        raise DataError(f"{self.cache_dir}: split {split!r} has {len(have)} of {len(want)} "
                        f"chunks (missing {missing[:5]}{' ...' if len(missing) > 5 else ''}); "
                        "rerun the same command to finish it")
      counts[split] = [self.counts(split, c) for c in want]
    build = self.work / "build"
    if build.is_dir():
      build.rmtree()
    build.mkdir(parents=True)
    split_infos = []
    for split, chunk_counts in counts.items():
      n = len(chunk_counts)
      for c in range(n):
        self._chunk_path(split, c, ".array_record").replace(
            build / f"{DATASET}-{split}.array_record-{c:05d}-of-{n:05d}")
      template = naming.ShardedFileTemplate(data_dir=build, template=_TEMPLATE,
                                            dataset_name=DATASET, split=split,
                                            filetype_suffix="array_record")
      split_infos.append(tfds.core.SplitInfo(
          name=split, shard_lengths=[c["examples"] for c in chunk_counts],
          num_bytes=sum(c["bytes"] for c in chunk_counts), filename_template=template))
    tfds.folder_dataset.write_metadata(data_dir=build, features=self._features,
                                       split_infos=split_infos, filename_template=_TEMPLATE,
                                       check_data=False, description=__doc__)
    for split, chunk_counts in counts.items():
      raw = sum(c["raw_frames"] for c in chunk_counts)
      dedup = sum(c["dedup_frames"] for c in chunk_counts)
      info.frames_per_token[split] = raw / max(dedup, 1)
    # The swap: the old cache (if any) goes only now that the new one is complete.
    final = self.cache_dir.joinpath(*_BUILD)
    old = self.cache_dir / DATASET
    if old.is_dir():
      old.rmtree()
    final.parent.mkdir(parents=True, exist_ok=True)
    build.rename(final)
    _write_json_atomically(self.cache_dir / INFO_FILE, dataclasses.asdict(info))
    self.work.rmtree()
    return os.fspath(final)


def _write_json_atomically(path: epath.Path, value) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=2))
  tmp.replace(path)


def write_token_cache(cache_dir: str | os.PathLike,
                      splits: Mapping[str, Iterable[Mapping[str, Any]]],
                      info: CacheInfo | None = None, chunk_size: int = 1024) -> str:
  """Writes a cache to `cache_dir` (replacing any old one) and its `token_cache.json`, from
  in-memory or streamed examples, `chunk_size` per shard; returns the build directory."""
  info = info or CacheInfo()
  writer = CacheWriter(cache_dir, {"writer": "write_token_cache"}, fresh=True)
  for split, examples in splits.items():
    examples = iter(examples)
    chunk = 0
    while True:
      block = list(itertools.islice(examples, chunk_size))
      if not block and chunk:
        break
      writer.write_chunk(split, chunk, block, info.frame_ratio)
      chunk += 1
      if len(block) < chunk_size:
        break
  return writer.finish(info, {split: None for split in splits})


def read_cache_info(cache_dir: str | os.PathLike) -> CacheInfo:
  """The `CacheInfo` of a cache (a cache written before it existed: 2:1, sizes unknown)."""
  path = paths.resolve(cache_dir) / INFO_FILE
  if not path.is_file():
    _build_dir(cache_dir)  # Not a cache at all: say so.
    return CacheInfo()
  try:
    return CacheInfo.from_dict(json.loads(path.read_text()))
  except (OSError, ValueError, TypeError) as e:
    raise DataError(f"{path}: unreadable token cache info ({type(e).__name__}: {e})") from e


def _build_dir(cache_dir: str | os.PathLike) -> str:
  root = paths.resolve(cache_dir) / DATASET / "tokens"
  versions = sorted(p.name for p in (root.iterdir() if root.is_dir() else [])
                    if (p / "dataset_info.json").exists())
  if not versions:
    raise DataError(f"no token cache under {cache_dir}: run `audiolm-jax tokenize corpus ...` "
                    "first")
  return os.fspath(root / versions[-1])


def _damaged(cache_dir: str, e: Exception) -> DataError:
  return DataError(f"token cache {cache_dir} is damaged ({one_line(e)}); rebuild it")


def token_sources(cache_dir: str) -> dict:
  """{split: random-access source} of a finished cache (a damaged one: `DataError`)."""
  build = _build_dir(cache_dir)
  try:
    return dict(tfds.builder_from_directory(build).as_data_source())
  except Exception as e:  # Missing or unreadable metadata or record files.
    raise _damaged(cache_dir, e) from e


def token_source(cache_dir: str, split: str):
  """The random-access source of one split; its first and last records are read here, so that
  a damaged record file fails at start-up in one line."""
  sources = token_sources(cache_dir)
  if split not in sources:
    raise DataError(f"token cache {cache_dir}: no split {split!r}; has {', '.join(sorted(sources))}")
  source = sources[split]
  try:
    n = len(source)
    for i in {0, n - 1} if n else ():
      source[i]
  except Exception as e:
    raise _damaged(cache_dir, e) from e
  return source


def has_token_cache(cache_dir: str) -> bool:
  try:
    _build_dir(cache_dir)
    return True
  except DataError:
    return False
