"""What every corpus builder shares: TFDS set-up without TensorFlow, parallel example making
that skips and counts bad sources, and the build summary.

Corpora are TFDS `GeneratorBasedBuilder`s writing `array_record` files with `Tensor` and
`Text` features only, so TensorFlow is never needed: they are read back with
`tfds.builder_from_directory(...).as_data_source()` (random access, for grain).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from audiolm_jax.errors import AudioLMError, DataError

log = logging.getLogger(__name__)

SUMMARY_FILE = "build_summary.json"
SMALL_SPLIT = 5  # Splits with fewer examples are named in the summary's warnings.


def default_data_dir() -> str:
  """`$AUDIOLM_DATA_DIR`, else `./data`."""
  return os.environ.get("AUDIOLM_DATA_DIR", os.path.abspath("data"))


@dataclasses.dataclass
class Skipped:
  """A source that could not become an example: where it came from and why."""
  source: str
  reason: str
  detail: str = ""


class CorpusBuilder(tfds.core.GeneratorBasedBuilder):
  """Base class: array_record output, `DatasetInfo` built in code, skip-and-count generation."""

  DESCRIPTION = ""

  def __init__(self, *, data_dir: str, config: str | tfds.core.BuilderConfig,
               workers: int = 2, **kwargs):
    self.workers = max(1, int(workers))
    self.skipped: list[Skipped] = []
    self.notes: list[str] = []            # Warnings for the summary (empty/small splits, ...).
    self.symlinks: dict[str, str] = {}    # Source name -> real path, where they differ.
    super().__init__(data_dir=data_dir, config=config, file_format="array_record", **kwargs)

  # Subclasses return their FeaturesDict.
  def _features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=self._features())

  def _parallel_examples(self, make: Callable[[Any], dict], jobs: list[tuple[str, Any]],
                         made_before: int = 0) -> Iterator[tuple[str, dict]]:
    """Runs `make(job)` for each `(key, job)` over `self.workers` processes, in order.

    A job that raises `AudioLMError` (a bad source file, a failed synthesis) is recorded in
    `self.skipped` with its reason; the build goes on. `made_before`: examples of the same
    split already yielded (a split is empty only if it has none at all).
    """
    if self.workers == 1 or len(jobs) < 4:
      results = (run_job(make, job) for _, job in jobs)
      yield from self._collect(jobs, results, made_before)
      return
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:
      results = pool.map(run_job, [make] * len(jobs), [j for _, j in jobs], chunksize=2)
      yield from self._collect(jobs, results, made_before)

  def _collect(self, jobs, results, made_before: int = 0) -> Iterator[tuple[str, dict]]:
    made = made_before
    for (key, job), (example, error) in zip(jobs, results):
      if error is not None:
        self.skipped.append(Skipped(str(job_source(job)), *error))
        continue
      made += 1
      yield key, example
    if jobs and not made:  # TFDS cannot write an empty split (folder corpora probe first).
      reasons = collections.Counter(s.reason for s in self.skipped)
      first = self.skipped[-1]
      raise DataError(f"no usable examples for a split: all {len(jobs)} sources were bad "
                      f"({dict(reasons)}; e.g. {first.source}: {first.reason} {first.detail})")


def job_source(job: Any) -> str:
  """A printable name for a job (its `source` attribute or key, else its repr)."""
  if isinstance(job, dict) and "source" in job:
    return job["source"]
  return getattr(job, "source", repr(job))


def run_job(make: Callable[[Any], dict], job: Any) -> tuple[dict | None, tuple | None]:
  try:
    return make(job), None
  except AudioLMError as e:
    return None, (getattr(e, "reason", type(e).__name__), getattr(e, "detail", str(e)))


def write_summary(builder: CorpusBuilder, seconds_taken: float) -> dict:
  """Writes `build_summary.json` next to the data and returns it."""
  info = builder.info
  splits = {name: int(split.num_examples) for name, split in info.splits.items()}
  reasons = collections.Counter(s.reason for s in builder.skipped)
  for name in sorted(set(splits) | {"train", "validation", "test"}):
    n = splits.get(name, 0)
    if not n:
      builder.notes.append(f"{name}: no examples")
    elif n < SMALL_SPLIT:
      builder.notes.append(f"{name}: only {n} example(s); metrics on it will be noisy")
  summary = {
      "name": builder.name,
      "config": builder.builder_config.name if builder.builder_config else None,
      "data_path": os.fspath(builder.data_path),
      "examples_per_split": splits,
      "build_seconds": round(seconds_taken, 1),
      "skipped": len(builder.skipped),
      "skipped_by_reason": dict(reasons),
      "skipped_sources": [dataclasses.asdict(s) for s in builder.skipped],
      "warnings": list(builder.notes),
  }
  if builder.symlinks:
    summary["symlinks"] = dict(sorted(builder.symlinks.items()))
  source_dir = getattr(builder.builder_config, "source_dir", None)
  if source_dir:
    summary["source_dir"] = source_dir
  path = epath.Path(builder.data_path) / SUMMARY_FILE
  if path.parent.is_dir():
    path.write_text(json.dumps(summary, indent=2))
  return summary


def quiet_progress_off_terminal() -> None:
  """TFDS's tqdm bars, written to a log file, pile up into lines of thousands of characters:
  off a terminal, turn them off (the build's summary says what was written)."""
  if not sys.stderr.isatty():
    tfds.disable_progress_bar()


def prepare(builder: CorpusBuilder, force: bool = False) -> dict:
  """Builds the corpus (or reuses a finished build) and returns its summary."""
  t0 = time.time()
  mode = (tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS if not force else
          tfds.download.GenerateMode.FORCE_REDOWNLOAD)
  existing = epath.Path(builder.data_path) / SUMMARY_FILE
  if not force and existing.exists():
    summary = json.loads(existing.read_text())
    source_dir = getattr(builder.builder_config, "source_dir", None)
    if source_dir and summary.get("source_dir", source_dir) != source_dir:
      raise DataError(f"a build named {summary.get('config')!r} of {summary['source_dir']} "
                      f"already exists in {builder.data_path}; choose another --name or "
                      "rebuild with --force")
    summary["reused"] = True
  else:
    quiet_progress_off_terminal()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(download_mode=mode))
    summary = write_summary(builder, time.time() - t0)
    for note in summary["warnings"]:
      log.warning("%s: %s", summary["config"] or summary["name"], note)
  if not any(summary["examples_per_split"].values()):
    reasons = summary["skipped_by_reason"]
    raise DataError(f"no usable examples: all {summary['skipped']} sources were bad "
                    f"({reasons}); see {os.path.join(summary['data_path'], SUMMARY_FILE)}")
  return summary


def stable_hash(text: str) -> float:
  """A number in [0, 1) from `text`, the same on every machine (for hash-based splits)."""
  import hashlib
  digest = hashlib.sha256(text.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "little") / 2.0**64


def split_by_hash(keys: Iterable[str], validation: float, test: float) -> dict[str, str]:
  """Assigns each key to train/validation/test by a stable hash (add a key: others stay put)."""
  out = {}
  for k in keys:
    h = stable_hash(k)
    out[k] = "test" if h < test else "validation" if h < test + validation else "train"
  return out


def int16_audio_feature() -> tfds.features.Tensor:
  """Audio stored as 16-bit PCM (half the bytes of float32); `from_int16` decodes it."""
  return tfds.features.Tensor(shape=(None,), dtype=np.int16)
