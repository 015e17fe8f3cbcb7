"""Pocketsphinx's model files, read and written in numpy: where its bundled US English models
live, the words its dictionary can pronounce, and the Sphinx-3 binary formats of an acoustic
model (Gaussian `means`/`variances`, 8-bit `sendump` mixture weights, binary `mdef`) and of the
cepstra it logs. Used by `eval/ngram.py` and `eval/acoustic_adaptation.py`.
"""

from __future__ import annotations

import math
import os

import numpy as np


_S3_MAGIC = 0x11223344
# Mixture weights in a sendump file are -log(w) in units of 2^10 steps of log base 1.0001,
# rounded up (an arithmetic shift of the negative log) into a byte: the decoder adds them to its
# Gaussian scores in those units.
_SENDUMP_UNIT = 1024 * math.log(1.0001)


def bundled_model_paths() -> dict[str, str]:
  """Paths of pocketsphinx's bundled US English acoustic model, dictionary and trigram model."""
  import pocketsphinx  # pylint: disable=g-import-not-at-top
  root = os.path.join(pocketsphinx.get_model_path(), "en-us")
  return {"hmm": os.path.join(root, "en-us"), "dict": os.path.join(root, "cmudict-en-us.dict"),
          "lm": os.path.join(root, "en-us.lm.bin")}


def read_dictionary(path: str | None = None) -> set[str]:
  """The words a pocketsphinx dictionary can pronounce (variants such as `read(2)` folded).

  Args:
    path: a pocketsphinx (CMUdict-format) dictionary; None for the bundled one.

  Returns:
    The set of its words.
  """
  words = set()
  with open(path or bundled_model_paths()["dict"], encoding="utf-8", errors="replace") as f:
    for line in f:
      if line.strip():
        words.add(line.split(None, 1)[0].split("(", 1)[0])
  return words


def pcm16(wav: np.ndarray) -> bytes:
  wav = np.asarray(wav)
  if wav.dtype != np.int16:
    wav = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
  return wav.tobytes()


def read_gaussians(path: str) -> np.ndarray:
  """A Sphinx-3 `means` or `variances` file as float64 [codebook, stream, density, dim]."""
  with open(path, "rb") as f:
    data = f.read()
  start = data.index(b"endhdr\n") + len(b"endhdr\n")
  order = "<" if np.frombuffer(data, "<u4", 1, start)[0] == _S3_MAGIC else ">"
  n_cb, n_feat, n_den = np.frombuffer(data, order + "i4", 3, start + 4)
  veclen = np.frombuffer(data, order + "i4", n_feat, start + 16)
  at = start + 16 + 4 * n_feat
  count = int(np.frombuffer(data, order + "i4", 1, at)[0])
  if len(set(veclen.tolist())) != 1 or count != n_cb * n_den * int(veclen.sum()):
    raise ValueError(f"{path}: streams of unequal sizes are not supported")
  values = np.frombuffer(data, order + "f4", count, at + 4)
  return values.reshape(n_cb, n_feat, n_den, veclen[0]).astype(np.float64)


def write_gaussians(path: str, values: np.ndarray) -> None:
  n_cb, n_feat, n_den, dim = values.shape
  with open(path, "wb") as f:
    f.write(b"s3\nversion 1.0\nendhdr\n")  # No `chksum0`: the reader then skips the check.
    f.write(np.array([_S3_MAGIC], "<u4").tobytes())
    f.write(np.array([n_cb, n_feat, n_den] + [dim] * n_feat + [values.size], "<i4").tobytes())
    f.write(values.astype("<f4").tobytes())


def read_sendump(path: str, n_feat: int, n_den: int) -> tuple[bytes, np.ndarray]:
  """A PTM model's 8-bit `sendump`: its header bytes and log mixture weights [stream, density,
  senone], each quantised -log(w) read as the middle of its bin (so they sum to about 1)."""
  with open(path, "rb") as f:
    data = f.read()
  # The header (strings, then #rows and #columns) ends where n_feat x n_den x n_sen bytes start.
  n_sen = None
  for at in range(8, min(len(data), 1 << 16)):
    rows, cols = np.frombuffer(data, "<i4", 2, at - 8)
    if rows == n_den and len(data) - at == n_feat * n_den * cols:
      n_sen = int(cols)
      break
  if n_sen is None:
    raise ValueError(f"{path}: not an uncompressed 8-bit sendump with {n_den} densities")
  codes = np.frombuffer(data, np.uint8, offset=at).reshape(n_feat, n_den, n_sen)
  return data[:at], -(codes.astype(np.float64) - 0.5) * _SENDUMP_UNIT


def write_sendump(path: str, header: bytes, log_weights: np.ndarray) -> None:
  codes = np.ceil(-log_weights / _SENDUMP_UNIT)
  with open(path, "wb") as f:
    f.write(header)
    f.write(np.clip(codes, 0, 255).astype(np.uint8).tobytes())


def ci_phones(mdef_path: str) -> list[str]:
  """The context-independent phones of a binary model definition, in codebook order."""
  with open(mdef_path, "rb") as f:
    data = f.read()
  if data[:4] != b"BMDF":
    raise ValueError(f"{mdef_path}: not a little-endian binary model definition")
  skip = int(np.frombuffer(data, "<i4", 1, 8)[0])
  at = 12 + skip
  n_ci = int(np.frombuffer(data, "<i4", 1, at)[0])
  at += 40  # Ten int32 counts, then the CI phone names.
  names = []
  for _ in range(n_ci):
    end = data.index(b"\0", at)
    names.append(data[at:end].decode())
    at = end + 1
  return names


def read_mfc(path: str) -> np.ndarray:
  """A cepstrum file as pocketsphinx's `mfclogdir` writes it (big-endian): [frames, 13]."""
  with open(path, "rb") as f:
    data = f.read()
  count = int(np.frombuffer(data, ">i4", 1)[0])
  return np.frombuffer(data, ">f4", count, 4).reshape(-1, 13).astype(np.float64)
