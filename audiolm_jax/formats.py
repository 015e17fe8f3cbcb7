"""The token files of the command line: acoustic codes and semantic ids, as npz without pickle.

    AcousticCodes(codes, num_samples, paths, codebook_size, sample_rate, frame_rate).save(p)
    AcousticCodes.load("codes.npz")    # `audiolm-jax tokenize acoustic` writes, `generate
                                       # decode` reads
    SemanticIds(ids, paths, num_clusters, samples_per_frame).save(p)
    SemanticIds.load("ids.npz")        # `audiolm-jax tokenize semantic`

Both hold one sequence per clip, padded with -1 to a rectangle, with each clip's length; they
are loaded with `allow_pickle=False` and checked, and a bad file is a one-line `DataError`.
"""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np

from audiolm_jax import paths
from audiolm_jax.errors import DataError
from audiolm_jax.frames import SAMPLES_PER_FRAME

# The code (and id) of frames after a clip's end.
PAD_CODE = -1
# The arrays every codes file holds.
CODES_FILE_KEYS = ("codes", "num_frames", "num_samples", "paths", "codebook_size",
                   "sample_rate", "frame_rate")
IDS_FILE_KEYS = ("ids", "num_frames", "paths", "num_clusters")


def _read_npz(path: str, keys: tuple[str, ...], writer: str) -> dict[str, np.ndarray]:
  """The arrays of an npz written by `writer`, all of `keys` present (no pickle)."""
  file = paths.resolve(path)
  if not file.is_file():
    raise DataError(f"{path}: no such file")
  try:
    with file.open("rb") as f:
      if not zipfile.is_zipfile(f):
        raise DataError(f"{path}: not an npz file (write one with `{writer}`)")
      f.seek(0)
      with np.load(f, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f"{path}: unreadable npz file ({type(e).__name__}: {e})") from e
  missing = sorted(set(keys) - set(arrays))
  if missing:
    raise DataError(f"{path}: missing {', '.join(missing)} (not written by `{writer}`?)")
  return arrays


def _pad(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Sequences [T_i, ...] -> (int32 [N, T_max, ...] padded with PAD_CODE, lengths [N])."""
  lengths = np.array([len(c) for c in sequences], np.int32)
  padded = np.full((len(sequences), int(lengths.max()), *sequences[0].shape[1:]), PAD_CODE,
                   np.int32)
  for row, c in enumerate(sequences):
    padded[row, :len(c)] = c
  return padded, lengths


def _unpad(padded: np.ndarray, lengths: np.ndarray, path: str, size: int,
           what: str) -> list[np.ndarray]:
  n = len(lengths)
  if n == 0 or padded.shape[0] != n or not np.issubdtype(padded.dtype, np.integer):
    raise DataError(f"{path}: expected integer {what} with N > 0 rows and N lengths, got "
                    f"{padded.shape}")
  if lengths.min() < 1 or lengths.max() > padded.shape[1]:
    raise DataError(f"{path}: num_frames must lie in [1, {padded.shape[1]}]")
  out = [padded[i, :int(t)].astype(np.int32) for i, t in enumerate(lengths)]
  if any(c.min() < 0 or c.max() >= size for c in out):
    raise DataError(f"{path}: {what} outside [0, {size}) within num_frames")
  return out


def _write(path: str, **arrays) -> None:
  file = paths.resolve(path)
  file.parent.mkdir(parents=True, exist_ok=True)
  with file.open("wb") as f:
    np.savez(f, **arrays)


@dataclasses.dataclass
class AcousticCodes:
  """Acoustic codes of several clips, as written by `audiolm-jax tokenize acoustic`.

  The file is an npz without pickled objects (load it with `allow_pickle=False`):
  `codes` int32 [N, T_max, n_q] padded with -1, `num_frames` int32 [N], `num_samples` int64
  [N] (each clip's length before padding), `paths` str [N], and the scalars `codebook_size`,
  `sample_rate`, `frame_rate`.

  Attributes:
    codes: one int32 array [T_i, n_q] per clip.
    num_samples: each clip's length in samples (the decoded audio is cut to it).
    paths: where each clip came from.
    codebook_size: K of the codec that made them.
    sample_rate: its sample rate.
    frame_rate: its frames per second.
  """
  codes: list[np.ndarray]
  num_samples: list[int]
  paths: list[str]
  codebook_size: int
  sample_rate: int
  frame_rate: float

  @property
  def num_levels(self) -> int:
    return int(self.codes[0].shape[-1])

  def save(self, path: str) -> None:
    if not self.codes or len({c.shape[-1] for c in self.codes}) != 1:
      raise DataError(f"{path}: need at least one clip, all with the same number of levels")
    padded, frames = _pad(self.codes)
    _write(path, codes=padded, num_frames=frames,
           num_samples=np.array(self.num_samples, np.int64),
           paths=np.array(self.paths, dtype=str), codebook_size=np.int32(self.codebook_size),
           sample_rate=np.int32(self.sample_rate), frame_rate=np.float64(self.frame_rate))

  @classmethod
  def load(cls, path: str) -> AcousticCodes:
    """Reads and checks a codes file; raises `DataError` naming what is wrong."""
    arrays = _read_npz(path, CODES_FILE_KEYS, "audiolm-jax tokenize acoustic")
    padded, frames = arrays["codes"], arrays["num_frames"]
    n = len(frames)
    if padded.ndim != 3 or len(arrays["num_samples"]) != n or len(arrays["paths"]) != n:
      raise DataError(f"{path}: expected codes [N, T, levels] with N entries in num_frames, "
                      f"num_samples and paths, got codes {padded.shape}")
    k = int(arrays["codebook_size"])
    codes = _unpad(padded, frames, path, k, "codes")
    return cls(codes=codes, num_samples=[int(x) for x in arrays["num_samples"]],
               paths=[str(x) for x in arrays["paths"]], codebook_size=k,
               sample_rate=int(arrays["sample_rate"]), frame_rate=float(arrays["frame_rate"]))


@dataclasses.dataclass
class SemanticIds:
  """Semantic token ids of several clips, as written by `audiolm-jax tokenize semantic`.

  The file is an npz without pickled objects: `ids` int32 [N, T_max] padded with -1,
  `num_frames` int32 [N], `paths` str [N], and the scalars `num_clusters` and
  `samples_per_frame` (the tokens' frame; files written before it was stored hold 640).

  Attributes:
    ids: one int32 array [T_i] per clip (raw ids: consecutive duplicates kept).
    paths: where each clip came from.
    num_clusters: K of the tokenizer that made them.
    samples_per_frame: samples per token at 16 kHz.
  """
  ids: list[np.ndarray]
  paths: list[str]
  num_clusters: int
  samples_per_frame: int = SAMPLES_PER_FRAME

  def save(self, path: str) -> None:
    if not self.ids or any(np.ndim(x) != 1 or len(x) == 0 for x in self.ids):
      raise DataError(f"{path}: need at least one clip, each a non-empty [frames] array")
    padded, frames = _pad([np.asarray(x) for x in self.ids])
    _write(path, ids=padded, num_frames=frames, paths=np.array(self.paths, dtype=str),
           num_clusters=np.int32(self.num_clusters),
           samples_per_frame=np.int32(self.samples_per_frame))

  @classmethod
  def load(cls, path: str) -> SemanticIds:
    """Reads and checks an ids file; raises `DataError` naming what is wrong."""
    arrays = _read_npz(path, IDS_FILE_KEYS, "audiolm-jax tokenize semantic")
    padded, frames = arrays["ids"], arrays["num_frames"]
    if padded.ndim != 2 or len(arrays["paths"]) != len(frames):
      raise DataError(f"{path}: expected ids [N, T] with N paths, got ids {padded.shape}")
    k = int(arrays["num_clusters"])
    spf = int(arrays["samples_per_frame"]) if "samples_per_frame" in arrays else SAMPLES_PER_FRAME
    return cls(ids=_unpad(padded, frames, path, k, "ids"),
               paths=[str(x) for x in arrays["paths"]], num_clusters=k, samples_per_frame=spf)
