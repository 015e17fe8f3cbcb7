"""`audio_folder`: a corpus from audio the user already has on disk. Nothing is downloaded.

Layouts:
- `librispeech`: LibriSpeech / LibriLight as distributed (`SPEAKER/CHAPTER/*.flac`) or any
  flatter copy: speaker and chapter come from the file name when it is LibriSpeech's
  `SPEAKER-CHAPTER-UTTERANCE` (so `train-clean-100/103-1240-0000.flac` and
  `test-other/1688/1688-142285-0000.flac` both work), else from the two folders above the
  file. Transcripts from `SPEAKER-CHAPTER.trans.txt` where present (optional). Splits from
  `train-*` / `dev-*` / `test-*` folder names when the path has them, else by a stable hash
  of the file path.
- `maestro`: MAESTRO (`YEAR/*.wav` with a `.midi` beside each); splits, composer and title
  from `maestro-v*.csv` when present; MIDI note events are kept.
- `generic`: any folder of wav/flac/ogg/mp3; the speaker is the parent folder's name.

Every file is checked at the door (`load_audio`); bad ones are skipped, counted and listed in
`build_summary.json`, and the build goes on. A split left empty by bad files is a warning, not
an error; only a build with no usable file at all fails.

Splits by hash: each file keeps its split when files are added. A folder of at least
`MIN_FILES_FOR_HELD_OUT` hash-split files whose hash gave no validation or test file gets one
(the train files of the lowest hash values), so a small folder still has held-out data; every
split with fewer than `base.SMALL_SPLIT` files (or none) is named in the summary's `warnings`.

Symlinks are followed, files and folders alike, inside or outside the tree; a folder reached
twice (a loop, or two links to one place) is read once. A file whose real path differs from
its place in the tree is recorded in the summary's `symlinks` (relative name -> real path).
"""

from __future__ import annotations

import collections
import csv
import hashlib
import dataclasses
import glob
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.data.audio import AUDIO_EXTENSIONS, AudioChecks, load_audio, to_int16
from audiolm_jax.data.corpora import base
from audiolm_jax.errors import DataError

LAYOUTS = ("librispeech", "maestro", "generic")
# LibriSpeech / LibriLight utterance names: SPEAKER-CHAPTER-UTTERANCE.
LIBRISPEECH_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")
# A build name a user may choose: a path component and a TFDS config name.
BUILD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  source_dir: str = ""
  layout: str = "generic"
  sample_rate: int = 16000
  validation_fraction: float = 0.02
  test_fraction: float = 0.02
  max_seconds: float = 4 * 3600.0


def folder_config(source_dir: str, layout: str, name: str | None = None,
                  **kwargs) -> FolderConfig:
  """A build of `source_dir`, named `name` (`--config_name` elsewhere) or, by default, after
  the layout and the folder, so two folders never share a build."""
  if layout not in LAYOUTS:
    raise DataError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
  source_dir = os.path.abspath(os.path.expanduser(source_dir))
  if not os.path.isdir(source_dir):
    raise DataError(f"{source_dir}: not a folder")
  if name is not None and not BUILD_NAME.match(name):
    raise DataError(f"build name {name!r}: use letters, digits, '_', '-' and '.' (at most 80)")
  if name is None:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(source_dir.rstrip("/")))[:60]
    digest = hashlib.sha256(source_dir.encode("utf-8")).hexdigest()[:8]
    name = f"{layout}-{tag or 'root'}-{digest}"
  return FolderConfig(name=name, description=f"{layout} folder {source_dir}",
                      source_dir=source_dir, layout=layout, **kwargs)


@dataclasses.dataclass(frozen=True)
class FileJob:
  source: str            # The audio file.
  key: str               # Path relative to the folder.
  speaker: str
  chapter: str           # LibriSpeech chapter (or "").
  transcript: str
  midi: str              # A MIDI file with the performance, or "".
  sample_rate: int
  max_seconds: float


def make_file_example(job: FileJob) -> dict:
  from audiolm_jax.data.corpora.piano import midi_notes
  wav = load_audio(job.source, job.sample_rate, checks=AudioChecks(max_seconds=job.max_seconds))
  notes = midi_notes(job.midi) if job.midi else np.zeros((0, 3), np.float32)
  return {"audio": to_int16(wav), "path": job.key, "speaker": job.speaker,
          "chapter": job.chapter, "transcript": job.transcript, "notes": notes}


MIN_FILES_FOR_HELD_OUT = 10  # Hash-split folders this large get a validation and test file.


def _audio_files(root: str) -> list[str]:
  """Audio files under `root`, following symlinked folders once each (no loops)."""
  files, seen = [], set()
  for dirpath, dirnames, names in os.walk(root, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:
      dirnames[:] = []
      continue
    seen.add(real)
    dirnames.sort()
    files += [os.path.join(dirpath, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS)]
  return sorted(files)


def _ensure_held_out(splits: dict[str, list], hashed: list) -> list[str]:
  """Moves the lowest-hash train files of `hashed` into empty validation/test splits."""
  notes = []
  if len(hashed) < MIN_FILES_FOR_HELD_OUT:
    return notes
  for split in ("test", "validation"):
    if splits[split]:
      continue
    candidates = sorted((j for j in splits["train"] if j in hashed),
                        key=lambda j: base.stable_hash(j.key))
    if candidates:
      moved = candidates[0]
      splits["train"].remove(moved)
      splits[split].append(moved)
      notes.append(f"{split}: the hash split gave no file of {len(hashed)}; {moved.key} moved "
                   "there from train")
  return notes


def _split_from_path(rel: str) -> str | None:
  for part in rel.split(os.sep):
    low = part.lower()
    if low.startswith("train"):
      return "train"
    if low.startswith(("dev", "valid")):
      return "validation"
    if low.startswith("test"):
      return "test"
  return None


def _librispeech_transcripts(root: str) -> dict[str, str]:
  out = {}
  for path in glob.glob(os.path.join(root, "**", "*.trans.txt"), recursive=True):
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        utt, _, text = line.strip().partition(" ")
        if utt:
          out[utt] = text
  return out


def librispeech_speaker_chapter(rel: str) -> tuple[str, str]:
  """(speaker, chapter) of a LibriSpeech-layout file: from its `SPEAKER-CHAPTER-UTTERANCE`
  name when it has one, else from the two folders above it ("" where there are none)."""
  stem = os.path.splitext(os.path.basename(rel))[0]
  match = LIBRISPEECH_NAME.match(stem)
  if match:
    return match.group(1), match.group(2)
  parts = rel.split(os.sep)[:-1]
  return (parts[-2] if len(parts) >= 2 else ""), (parts[-1] if parts else "")


def _maestro_rows(root: str) -> dict[str, dict]:
  rows = {}
  for path in sorted(glob.glob(os.path.join(root, "maestro-v*.csv"))):
    with open(path, newline="", encoding="utf-8") as f:
      for row in csv.DictReader(f):
        if row.get("audio_filename"):
          rows[os.path.normpath(row["audio_filename"])] = row
  return rows


@dataclasses.dataclass
class Plan:
  """The files of each split, and what the summary should say about them."""
  splits: dict[str, list[FileJob]]
  symlinks: dict[str, str]
  notes: list[str]


def plan(config: FolderConfig) -> Plan:
  root = config.source_dir
  files = _audio_files(root)
  if not files:
    raise DataError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
  transcripts = _librispeech_transcripts(root) if config.layout == "librispeech" else {}
  maestro = _maestro_rows(root) if config.layout == "maestro" else {}
  splits = {"train": [], "validation": [], "test": []}
  hashed, symlinks, real_root = [], {}, os.path.realpath(root)
  for path in files:
    rel = os.path.relpath(path, root)
    stem = os.path.splitext(os.path.basename(path))[0]
    speaker, chapter, transcript, midi, split = "", "", "", "", None
    if config.layout == "librispeech":
      speaker, chapter = librispeech_speaker_chapter(rel)
      transcript = transcripts.get(stem, "")
      split = _split_from_path(rel)
    elif config.layout == "maestro":
      row = maestro.get(os.path.normpath(rel), {})
      speaker = row.get("canonical_composer", "")
      transcript = row.get("canonical_title", "")
      split = {"train": "train", "validation": "validation", "test": "test"}.get(
          row.get("split", ""))
      for ext in (".midi", ".mid"):
        candidate = os.path.splitext(path)[0] + ext
        if os.path.exists(candidate):
          midi = candidate
          break
    else:
      speaker = os.path.basename(os.path.dirname(path)) if os.path.dirname(rel) else ""
    by_hash = split is None
    if by_hash:
      split = base.split_by_hash([rel], config.validation_fraction, config.test_fraction)[rel]
    real = os.path.realpath(path)
    if real != os.path.join(real_root, rel):
      symlinks[rel] = real
    job = FileJob(path, rel, speaker, chapter, transcript, midi, config.sample_rate,
                  config.max_seconds)
    splits[split].append(job)
    if by_hash:
      hashed.append(job)
  notes = _ensure_held_out(splits, hashed)
  return Plan(splits, symlinks, notes)


class AudioFolder(base.CorpusBuilder):
  """Audio files from a folder on disk (LibriSpeech/LibriLight, MAESTRO, or any layout)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "`chapter` feature; LibriSpeech speakers from file names."}
  DESCRIPTION = __doc__

  def _features(self):
    return tfds.features.FeaturesDict({
        "audio": base.int16_audio_feature(),  # Resampled to the config's rate, mono, int16.
        "path": tfds.features.Text(),          # Relative to the source folder.
        "speaker": tfds.features.Text(),       # Speaker (or composer for MAESTRO); "" unknown.
        "chapter": tfds.features.Text(),       # LibriSpeech chapter; "" unknown.
        "transcript": tfds.features.Text(),    # Transcript (or title for MAESTRO); "" unknown.
        "notes": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),  # MIDI, if any.
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    made = plan(self.builder_config)
    self.symlinks, self.notes = made.symlinks, list(made.notes)
    generators = {}
    for name, jobs in made.splits.items():
      # TFDS cannot write an empty split: find the split's first good file before the build,
      # so that a split of bad files is left out with a warning instead of failing the build.
      for k, job in enumerate(jobs):
        example, error = base.run_job(make_file_example, job)
        if error is None:
          generators[name] = self._generate_examples(jobs[k + 1:], (job.key, example))
          break
        self.skipped.append(base.Skipped(job.source, *error))
      else:
        if jobs:
          self.notes.append(f"{name}: all {len(jobs)} of its sources were bad (e.g. "
                            f"{self.skipped[-1].source}: {self.skipped[-1].reason})")
    if not generators:
      raise DataError(f"{self.builder_config.source_dir}: no usable examples: all "
                      f"{len(self.skipped)} sources were bad ("
                      f"{dict(collections.Counter(s.reason for s in self.skipped))})")
    return generators

  def _generate_examples(self, jobs: list[FileJob], first: tuple[str, dict]):
    yield first
    yield from self._parallel_examples(make_file_example, [(j.key, j) for j in jobs],
                                       made_before=1)
