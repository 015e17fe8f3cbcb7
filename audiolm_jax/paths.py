"""Paths that may be URIs: a local folder, or `gs://bucket/run` (any `scheme://`), through
`etils.epath`.

Workdirs, checkpoints, token caches, data directories, written configs and outputs all go
through `resolve`: a local path is made absolute (as `os.path.abspath` did), a URI is kept
exactly as written, so that epath, orbax, tensorstore, array_record and TFDS receive
`gs://bucket/run` and not a local folder `./gs:/bucket/run`.

    workdir = paths.resolve("gs://bucket/run")          # epath.Path("gs://bucket/run")
    (workdir / "config.json").write_text(text)

`gs://` needs the `gcs` extra (gcsfs), unless TensorFlow is installed (epath then uses its
gfile). Audio files and a few other inputs are read by libraries that only know local files;
those call `require_local`, which says so in one line.
"""

from __future__ import annotations

import importlib.util
import os
import re

from etils import epath

from audiolm_jax.errors import ConfigError, require_extra

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is a URI (`gs://...`, `s3://...`), not a local path."""
  return _SCHEME.match(os.fspath(path)) is not None


def resolve(path: str | os.PathLike) -> epath.Path:
  """`path` as an `epath.Path`: a URI as written, a local path made absolute.

  Raises:
    ConfigError: a scheme epath has no filesystem for.
    MissingExtraError: a `gs://` path without the `gcs` extra (nor TensorFlow).
  """
  text = os.fspath(path)
  match = _SCHEME.match(text)
  if match is None:
    return epath.Path(os.path.abspath(text))
  scheme = match.group(1)
  if scheme == "gs" and importlib.util.find_spec("tensorflow") is None:
    require_extra("gcs", f"the path {text}")
  try:
    return epath.Path(text)
  except KeyError:  # epath's registry of URI prefixes has no such scheme.
    raise ConfigError(f"{text}: no filesystem for {scheme}:// paths; give a local path or "
                      "gs://, s3://, az://") from None


def require_local(path: str | os.PathLike, what: str) -> str:
  """`path` made absolute, for `what` that only a library of local files reads or writes;
  a URI is `ConfigError`."""
  if is_remote(path):
    raise ConfigError(f"{what} {os.fspath(path)}: must be a local path here (read or written "
                      "by a library of local files only)")
  return os.path.abspath(os.fspath(path))
