"""Checks of command-line values made before any expensive work, each failing in one line that
names the flag.

A URI (`gs://bucket/run`) is checked only for a scheme epath can write to and its extra
(`paths.resolve`): a bucket says whether it takes the write only when written to.
"""

from __future__ import annotations

import math
import os

from audiolm_jax import paths
from audiolm_jax.errors import ConfigError


def output_file(path: str, flag: str) -> str:
  """`path` if a file can be written there: not a directory, in a writable (or creatable)
  directory. Checked before the work whose result it will hold."""
  if not path:
    raise ConfigError(f"{flag}: empty path")
  if paths.is_remote(path):
    paths.resolve(path)
    return path
  if os.path.isdir(path):
    raise ConfigError(f"{flag} {path}: is a directory; give a file name")
  return _writable_parent(os.path.dirname(os.path.abspath(path)), flag, path)


def output_dir(path: str, flag: str, local: bool = False) -> str:
  """`path` if it is (or can be made) a writable directory; `local`: only a local one (its
  writer knows no URIs)."""
  if not path:
    raise ConfigError(f"{flag}: empty path")
  if local:
    paths.require_local(path, flag)
  elif paths.is_remote(path):
    paths.resolve(path)
    return path
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"{flag} {path}: exists and is not a directory")
  if os.path.isdir(path):
    if not os.access(path, os.W_OK | os.X_OK):
      raise ConfigError(f"{flag} {path}: not writable")
    return path
  return _writable_parent(os.path.dirname(os.path.abspath(path)), flag, path)


def _writable_parent(parent: str, flag: str, path: str) -> str:
  """Makes the folder that will hold `path` now (so that a place where nothing can be
  written fails here, not after the work)."""
  ancestor = parent
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    raise ConfigError(f"{flag} {path}: {ancestor} is a file, not a directory")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise ConfigError(f"{flag} {path}: {ancestor} is not writable")
  try:
    os.makedirs(parent, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"{flag} {path}: cannot make {parent} ({e.strerror or e})") from None
  return path


def seconds(value: float, flag: str, *, maximum: float) -> float:
  """A finite length in (0, maximum] seconds."""
  if not (math.isfinite(value) and 0 < value <= maximum):
    raise ConfigError(f"{flag} {value:g}: must be a length in seconds in (0, {maximum:g}]")
  return value


def count(value: int, flag: str, *, maximum: int) -> int:
  if not 1 <= value <= maximum:
    raise ConfigError(f"{flag} {value}: must be in [1, {maximum}]")
  return value
