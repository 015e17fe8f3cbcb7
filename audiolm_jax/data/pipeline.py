"""Grain input pipelines over built corpora: random crops, per-process shards, fixed shapes.

    it = make_audio_iterator(config.data, batch_size=8, seed=0)
    batch = next(it)          # {"audio": f32 [B, L], "mask": bool [B, L], "valid": bool [B], ...}
    state = it.get_state()    # JSON-serialisable; saved with every checkpoint
    it.set_state(state)       # the next batch is the one that followed `state`

Determinism: the order (shuffled anew each epoch) and every crop offset are functions of
(seed, global index) only, so a restarted run sees exactly the batches it would have seen.
Multi-host: process p of n reads and yields only its rows [p*B, (p+1)*B) of every global
batch of n*B examples (`batch_size` B is per process); the global batch does not depend on n.

Bad records never stop a run: a record that cannot be read or decoded becomes an all-zero
example with `valid=False`, and the trainer counts those and gives them zero weight.

Mixtures: `data.mixture = "synthetic_speech:3,audio_folder/librispeech_excerpts:1"` trains
on several corpora (`corpus[/build]:weight`), each shuffled anew every epoch with its own
seed and interleaved in the proportions of the weights by a fixed pattern, so the order is
again a function of (seed, global index): deterministic and resumable like one corpus.
Evaluation reads the `eval_split` of every component that has one, one after the other.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any, Mapping

import grain
import numpy as np

from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16
from audiolm_jax.errors import DataError

# Integer fields copied into batches when a corpus has them (-1 when it does not).
ID_FIELDS = ("speaker_id", "sentence_id")


@dataclasses.dataclass(frozen=True)
class CorpusRef:
  """One corpus of a mixture: a built corpus, which build of it, and its sampling weight."""
  corpus: str
  config_name: str | None = None
  weight: float = 1.0

  @property
  def label(self) -> str:
    return self.corpus + (f"/{self.config_name}" if self.config_name else "")


def parse_mixture(text: str) -> tuple[CorpusRef, ...]:
  """`"corpus[/build]:weight,..."` -> CorpusRefs (weight 1 when omitted); "" -> ()."""
  refs = []
  for item in (x.strip() for x in text.split(",")):
    if not item:
      continue
    name, sep, weight = item.partition(":")
    try:
      w = float(weight) if sep else 1.0
    except ValueError:
      raise DataError(f"data.mixture: weight of {name!r} must be a number, got {weight!r}") \
          from None
    if not w > 0 or not np.isfinite(w):
      raise DataError(f"data.mixture: weight of {name!r} must be positive, got {weight!r}")
    corpus, _, config_name = name.partition("/")
    if corpus not in corpora.CORPORA:
      raise DataError(f"data.mixture: unknown corpus {corpus!r} in {item!r}; known: "
                      f"{', '.join(corpora.CORPORA)}")
    refs.append(CorpusRef(corpus, config_name or None, w))
  if text.strip() and not refs:
    raise DataError(f"data.mixture {text!r}: no corpus named")
  return tuple(refs)


@dataclasses.dataclass(frozen=True)
class AudioDataConfig:
  """What `config.data` holds for audio tasks (every field has a default but `corpus`)."""
  corpus: str                      # synthetic_speech | synthetic_piano | audio_folder
  split: str = "train"             # Split trained on (eval uses `eval_split`).
  eval_split: str = "validation"   # Split for periodic evaluation.
  data_dir: str | None = None      # Default: $AUDIOLM_DATA_DIR or ./data.
  config_name: str | None = None   # Which build: tiny / default / a folder build's name.
  crop_seconds: float = 1.0        # Length of every example; shorter clips are padded.
  sample_rate: int = 16000
  num_threads: int = 2             # Grain reader threads.
  prefetch: int = 64               # Grain prefetch buffer (examples).
  mixture: str = ""                # Several corpora with weights (replaces corpus/config_name).

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> "AudioDataConfig":
    cfg = dict(cfg.items())
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in cfg.items() if k in known})

  def components(self) -> tuple[CorpusRef, ...]:
    """The corpora read: the mixture's, or `corpus` (with `config_name`) alone."""
    return parse_mixture(self.mixture) or (CorpusRef(self.corpus, self.config_name),)

  @property
  def crop_samples(self) -> int:
    n = int(round(self.crop_seconds * self.sample_rate))
    if n <= 0:
      raise DataError(f"data.crop_seconds must be > 0, got {self.crop_seconds}")
    return n


class SafeSource:
  """Wraps a random-access source (audio or tokens): yields `(record index, record)`, and a
  record that fails to read becomes `(index, None)`, not a crash."""

  def __init__(self, source, name: str):
    self._source, self._name = source, name

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    index = int(index) % len(self._source)
    try:
      return index, self._source[index]
    except Exception as e:  # Corrupt record: counted downstream through `valid=False`.
      logging.getLogger(__name__).warning("%s: record %d unreadable (%s); skipped",
                                          self._name, index, e)
      return index, None


class Crop(grain.transforms.RandomMap):
  """A random window of `length` samples (or the start, when `random=False`), padded."""

  def __init__(self, length: int, random: bool = True):
    self.length, self.random = length, random

  def random_map(self, element, rng: np.random.Generator):
    index, record = element
    return crop_example(record, index, self.length, rng if self.random else None)


def crop_example(record, index: int, length: int, rng: np.random.Generator | None) -> dict:
  """One fixed-shape example from a corpus record (or an invalid all-zero one)."""
  audio = np.zeros(length, np.float32)
  mask = np.zeros(length, bool)
  out = {"audio": audio, "mask": mask, "valid": np.bool_(False), "index": np.int64(index)}
  for field in ID_FIELDS:
    out[field] = np.int64(-1)
  if record is None:
    return out
  pcm = np.asarray(record["audio"])
  wav = from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32)
  if wav.ndim != 1 or wav.size == 0 or not np.all(np.isfinite(wav)):
    return out
  start = int(rng.integers(0, wav.size - length + 1)) if rng is not None and wav.size > length else 0
  piece = wav[start:start + length]
  audio[:piece.size] = piece
  mask[:piece.size] = True
  out["valid"] = np.bool_(True)
  for field in ID_FIELDS:
    if field in record:
      out[field] = np.int64(record[field])
  return out


def audio_dataset(data: AudioDataConfig, *, split: str, seed: int,
                  train: bool = True) -> grain.MapDataset:
  """The *global* stream of cropped examples (the same on every process).

  Training: every corpus shuffled anew every epoch (corpus i with seed + i), repeated
  forever, mixed by weight; random crops. Evaluation (`train=False`): one pass over the split
  of every corpus that has it, in order, crops from the start of each clip. Crop offsets
  depend on (seed, position in the stream) only.
  """
  parts, weights = [], []
  for i, ref in enumerate(data.components()):
    sources = corpora.data_sources(ref.corpus, data.data_dir, ref.config_name)
    if split not in sources:
      if train or len(data.components()) == 1:
        raise DataError(f"{ref.label}: no split {split!r}; splits: {', '.join(sorted(sources))}")
      continue  # Evaluation of a mixture: the components that have the split.
    ds = grain.MapDataset.source(SafeSource(sources[split], f"{ref.label}/{split}"))
    parts.append(ds.shuffle(seed=seed + i).repeat(None) if train else ds)
    weights.append(ref.weight)
  if not parts:
    raise DataError(f"data.mixture {data.mixture!r}: no corpus has a {split!r} split")
  if len(parts) == 1:
    ds = parts[0]
  elif train:
    ds = grain.MapDataset.mix(parts, weights)
  else:
    ds = grain.MapDataset.concatenate(parts)
  return ds.random_map(Crop(data.crop_samples, random=train), seed=seed)


def process_rows(ds: grain.MapDataset, *, rows: int, process_index: int, process_count: int,
                 pad_example: dict | None = None) -> grain.MapDataset:
  """This process's rows of every global batch: element j of the result is element
  `(j // rows) * rows * process_count + process_index * rows + j % rows` of `ds`.

  So the global batch (all processes' rows, in process order) does not depend on the number
  of processes, and processes read disjoint records. A finite `ds` is first padded with
  `pad_example` to whole global batches.
  """
  if not 0 <= process_index < process_count:
    raise DataError(f"process_index {process_index} not in [0, {process_count})")
  global_batch = rows * process_count
  n = len(ds)
  finite = n < sys.maxsize // 2
  num_batches = -(-n // global_batch) if finite else sys.maxsize // (2 * global_batch)

  def row(j: int):
    i = (j // rows) * global_batch + process_index * rows + j % rows
    return ds[i] if i < n else pad_example

  return grain.MapDataset.range(num_batches * rows).map(row)


class SelectKeys:
  """A data iterator yielding only `keys` of each batch, with the wrapped one's state
  (tasks use it to keep host-only entries, such as ids, off the device)."""

  def __init__(self, iterator, keys: tuple[str, ...]):
    self._iterator, self._keys = iterator, keys

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, Any]:
    batch = next(self._iterator)
    return {k: batch[k] for k in self._keys}

  def get_state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._iterator.set_state(state)


class AudioIterator:
  """Batches of fixed shape with `get_state` / `set_state` (the contract the trainer uses)."""

  def __init__(self, ds: grain.MapDataset, batch_size: int, data: AudioDataConfig):
    self._ds = ds.batch(batch_size, drop_remainder=True)
    options = grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=data.prefetch)
    self._iter = iter(self._ds.to_iter_dataset(options))

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return next(self._iter)

  def get_state(self) -> dict:
    return self._iter.get_state()

  def set_state(self, state: dict) -> None:
    self._iter.set_state(state)


def make_audio_iterator(data_cfg: Mapping[str, Any] | AudioDataConfig, *, batch_size: int,
                        seed: int, split: str | None = None, process_index: int | None = None,
                        process_count: int | None = None, train: bool = True) -> AudioIterator:
  """This process's rows (`batch_size` of them) of every global batch of crops.

  The global batch has `batch_size * process_count` examples and does not depend on how many
  processes share it. `process_index` / `process_count` default to JAX's (so multi-host needs
  no extra flags). Evaluation iterators (`train=False`) make one pass; the last global batch is
  padded with invalid examples so every batch has the same shape.
  """
  data = data_cfg if isinstance(data_cfg, AudioDataConfig) else AudioDataConfig.from_config(
      data_cfg)
  if batch_size <= 0:
    raise DataError(f"batch_size must be > 0, got {batch_size}")
  if process_index is None or process_count is None:
    import jax
    process_index, process_count = jax.process_index(), jax.process_count()
  split = split or (data.split if train else data.eval_split)
  ds = audio_dataset(data, split=split, seed=seed, train=train)
  ds = process_rows(ds, rows=batch_size, process_index=process_index,
                    process_count=process_count,
                    pad_example=crop_example(None, -1, data.crop_samples, None))
  return AudioIterator(ds, batch_size, data)
