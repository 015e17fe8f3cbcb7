"""Token caches: a corpus tokenized once (semantic ids + acoustic codes), stored as array_record.

Stage training reads tokens, never audio, so the codec and the semantic tokenizer never run per
step. A cache is a TFDS build (no TensorFlow) in its own directory with, per utterance:

    semantic     int32 [T]        raw k-means ids (25 Hz in the paper; duplicates *not* removed)
    acoustic     int32 [r T, Q]   RVQ codes, all Q levels; r = frame ratio (2 in the paper)
    speaker_id   int64            -1 when unknown
    sentence_id  int64            -1 when unknown
    transcript   text             "" when unknown

and `token_cache.json` (`CacheInfo`): the frame ratio r, both vocabularies, the tokens' frame,
and per split the mean number of raw frames per deduplicated semantic token, which generation
uses to lay deduplicated tokens out in time as training saw them (`lm/generate.py`).

    write_token_cache(cache_dir, {"train": examples, ...}, info)   # examples: iterables of dicts
    source = token_source(cache_dir, "train")                        # random access, for grain
    info = read_cache_info(cache_dir)

`tokenize.tokenize_corpus` makes a cache from a corpus, a codec and a semantic tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.checkpoint_files import one_line
from audiolm_jax.data.corpora.base import quiet_progress_off_terminal
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


@dataclasses.dataclass(eq=False)
class _CacheConfig(tfds.core.BuilderConfig):
  splits: Any = dataclasses.field(default=None, repr=False)  # {split: examples}; not stored.
  ratio: int = 2
  counts: Any = dataclasses.field(default=None, repr=False)  # {split: [raw, dedup]} filled.


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
    counts = self.builder_config.counts.setdefault(split, [0, 0])
    for i, ex in enumerate(examples):
      ex = check_token_example(ex, f"{split}[{i}]", self.builder_config.ratio)
      counts[0] += len(ex["semantic"])
      counts[1] += len(remove_consecutive_duplicates(ex["semantic"]))
      yield f"{split}-{i:08d}", ex


def write_token_cache(cache_dir: str, splits: Mapping[str, Iterable[Mapping[str, Any]]],
                      info: CacheInfo | None = None) -> str:
  """Writes a cache to `cache_dir` (replacing any old one) and its `token_cache.json`;
  returns the build directory."""
  cache_dir = os.path.abspath(cache_dir)
  info = info or CacheInfo()
  config = _CacheConfig(name="tokens", splits=dict(splits), ratio=info.frame_ratio, counts={})
  builder = TokenCache(data_dir=cache_dir, config=config, file_format="array_record")
  quiet_progress_off_terminal()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD))
  info.frames_per_token = {split: raw / max(dedup, 1)
                           for split, (raw, dedup) in sorted(config.counts.items())}
  with open(os.path.join(cache_dir, INFO_FILE), "w") as f:
    json.dump(dataclasses.asdict(info), f, indent=2)
  return os.fspath(builder.data_path)


def read_cache_info(cache_dir: str) -> CacheInfo:
  """The `CacheInfo` of a cache (a cache written before it existed: 2:1, sizes unknown)."""
  path = os.path.join(os.path.abspath(cache_dir), INFO_FILE)
  if not os.path.isfile(path):
    _build_dir(cache_dir)  # Not a cache at all: say so.
    return CacheInfo()
  try:
    with open(path) as f:
      return CacheInfo.from_dict(json.load(f))
  except (OSError, ValueError, TypeError) as e:
    raise DataError(f"{path}: unreadable token cache info ({type(e).__name__}: {e})") from e


def _build_dir(cache_dir: str) -> str:
  root = os.path.join(os.path.abspath(cache_dir), "token_cache", "tokens")
  versions = sorted(d for d in (os.listdir(root) if os.path.isdir(root) else [])
                    if os.path.exists(os.path.join(root, d, "dataset_info.json")))
  if not versions:
    raise DataError(f"no token cache under {cache_dir}: run `audiolm-jax tokenize corpus ...` "
                    "first")
  return os.path.join(root, versions[-1])


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
