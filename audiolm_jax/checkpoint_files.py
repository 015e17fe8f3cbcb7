"""A checkpoint directory as the trainer writes it, read without a trainer, mesh or optimizer.

Layout of `WORKDIR/checkpoints/<step>/`:

  state/   the `TrainState` (params, optimizer state, extra, EMA, RNG, step, counters)
  data/    each process's data iterator state, `process_<i>-of-<n>.json`
  config/  the resolved config (JSON, in `config/metadata`)

The writer is `train/checkpoint.py` (orbax). Trained parts are read here without orbax:
`state/_METADATA` (JSON) gives the saved tree, and each array is opened with tensorstore
(orbax's own storage layer: zarr arrays in an OCDBT key-value store, or plain files for
checkpoints written without OCDBT), so inference (`pretrained.py`) imports neither the
trainer nor orbax's checkpoint manager.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

from audiolm_jax import paths
from audiolm_jax.errors import CheckpointError

STATE, DATA, CONFIG = "state", "data", "config"

PyTree = Any


def one_line(e: BaseException, limit: int = 200) -> str:
  """The root cause of `e` as one short line."""
  while e.__cause__ is not None:
    e = e.__cause__
  text = " ".join(str(e).split())
  text = text if len(text) <= limit else text[:limit - 3] + "..."
  return f"{type(e).__name__}: {text}"


def find_step_dir(path: str | os.PathLike) -> str:
  """A step directory from a workdir, its `checkpoints/` directory or a step directory (local
  paths made absolute, URIs as written)."""
  path = paths.resolve(path)
  if (path / STATE).is_dir():
    return os.fspath(path)
  for candidate in (path / "checkpoints", path):
    if candidate.is_dir():
      steps = [int(p.name) for p in candidate.iterdir()
               if p.name.isdigit() and (p / STATE).is_dir()]
      if steps:
        return os.fspath(candidate / str(max(steps)))
  raise CheckpointError(f"{path}: no checkpoint found (expected a workdir, its checkpoints/ "
                        "directory or a checkpoint step directory)")


def tree_paths(tree: PyTree) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p, simple=True, separator="/"): v for p, v in leaves}


def check_tree(step_dir: str, saved: PyTree, wanted: PyTree, what: str,
               against: str = "this config's model/optimizer") -> None:
  """Raises `CheckpointError` naming the missing, unexpected and resized leaves of `saved`."""
  saved, wanted = tree_paths(saved), tree_paths(wanted)
  missing, unexpected = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
  shapes = sorted(k for k in set(wanted) & set(saved)
                  if tuple(getattr(saved[k], "shape", ())) != tuple(wanted[k].shape))
  problems = [f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
              for name, keys in (("missing", missing), ("unexpected", unexpected),
                                 ("shape differs", shapes)) if keys]
  if problems:
    raise CheckpointError(f"{step_dir}: {what} does not match {against} "
                          f"({'; '.join(problems)})")




def read_config(step_dir: str | os.PathLike) -> dict[str, Any] | None:
  path = paths.resolve(step_dir) / CONFIG / "metadata"
  if not path.exists():
    return None
  return json.loads(path.read_text())


def param_fingerprint(params: PyTree) -> str:
  """SHA-256 over every parameter's path, dtype, shape and bytes (order-independent of devices)."""
  h = hashlib.sha256()
  for path, value in sorted(tree_paths(params).items()):
    a = np.ascontiguousarray(np.asarray(jax.device_get(value)))
    h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


# --------------------------------------------------------------------------- integrity

INTEGRITY = "integrity"  # the JSON item of a step directory with its leaves' checksums


def _leaf_checksum(x):
  """Two order-independent checksums (uint32, mod 2^32) of an array's bits, and finiteness.

  Each element's bit pattern is weighted by an odd function of its index, so a single flipped
  bit always changes the sums; integer sums are exact, so the result does not depend on how
  the array is sharded or which device reduced it.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  elif x.dtype.itemsize == 4:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  elif x.dtype.itemsize == 2:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
  elif x.dtype.itemsize == 1:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
  else:
    raise CheckpointError(f"no checksum for arrays of dtype {x.dtype}")
  index = jnp.arange(x.size, dtype=jnp.uint32).reshape(x.shape)
  a = jnp.sum(bits * (2 * index + 1), dtype=jnp.uint32)
  b = jnp.sum((bits ^ (index * jnp.uint32(0x9E3779B9))) * jnp.uint32(0x85EBCA6B)
              + (bits >> 16), dtype=jnp.uint32)
  finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else True
  return a, b, jnp.asarray(finite)


def _leaf_checksum_host(x: np.ndarray):
  """`_leaf_checksum` in numpy (uint32 arithmetic wraps the same way), for host arrays."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = np.asarray(x)
  if x.dtype == np.bool_:
    bits = x.astype(np.uint32)
  elif x.dtype.itemsize in (1, 2, 4):
    bits = np.ascontiguousarray(x).view(f"u{x.dtype.itemsize}").astype(np.uint32)
  else:
    raise CheckpointError(f"no checksum for arrays of dtype {x.dtype}")
  index = np.arange(x.size, dtype=np.uint32).reshape(x.shape)
  with np.errstate(over="ignore"):
    a = np.sum(bits * (np.uint32(2) * index + np.uint32(1)), dtype=np.uint32)
    b = np.sum((bits ^ (index * np.uint32(0x9E3779B9))) * np.uint32(0x85EBCA6B)
               + (bits >> np.uint32(16)), dtype=np.uint32)
  inexact = jnp.issubdtype(x.dtype, jnp.inexact)  # bfloat16 included
  finite = bool(np.all(np.isfinite(x.astype(np.float32)))) if inexact else True
  return a, b, finite


def integrity_record(tree: PyTree) -> dict[str, Any]:
  """`{"checksums": {path: "a:b"}, "nonfinite": [paths]}` of every array in `tree`.

  Computed on the devices where `tree` lives (one jitted reduction; nothing large moves).
  """
  leaves = {k: v for k, v in tree_paths(tree).items() if hasattr(v, "dtype")}
  if all(isinstance(v, np.ndarray) for v in leaves.values()):  # Host arrays: no compile.
    sums = {k: _leaf_checksum_host(v) for k, v in leaves.items()}
  else:
    sums = jax.device_get(jax.jit(lambda t: {k: _leaf_checksum(v) for k, v in t.items()})(leaves))
  return {"checksums": {k: f"{int(a):08x}:{int(b):08x}" for k, (a, b, _) in sums.items()},
          "nonfinite": sorted(k for k, (_, _, f) in sums.items() if not bool(f))}


def read_integrity(step_dir: str) -> dict[str, Any] | None:
  """The integrity record saved with a checkpoint, or None (written before there was one)."""
  path = paths.resolve(step_dir) / INTEGRITY / "metadata"
  if not path.exists():
    return None
  try:
    record = json.loads(path.read_text())
    if not isinstance(record.get("checksums"), dict):
      raise ValueError("no checksums")
  except (OSError, ValueError, AttributeError) as e:
    raise CheckpointError(f"{step_dir}: unreadable integrity record ({one_line(e)})") from e
  return record


def verify(step_dir: str, tree: PyTree, prefix: str = "") -> None:
  """Raises `CheckpointError` if arrays read from `step_dir` differ from what was saved.

  `tree` is the restored state (or a subtree of it under `prefix`, e.g. "params"). Every
  array must match its saved checksum; a checkpoint saved before checksums existed is only
  checked for non-finite values.
  """
  record = read_integrity(step_dir)
  got = integrity_record(tree)
  if got["nonfinite"]:
    names = got["nonfinite"]
    raise CheckpointError(f"{step_dir}: {len(names)} restored arrays hold NaN or inf "
                          f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})")
  if record is None:
    return
  saved = record["checksums"]
  full = {(f"{prefix}/{k}" if prefix else k): v for k, v in got["checksums"].items()}
  bad = sorted(k for k, v in full.items() if k in saved and saved[k] != v)
  missing = sorted(k for k in full if k not in saved)
  if bad or missing:
    names = bad + missing
    raise CheckpointError(
        f"{step_dir}: {len(bad)} arrays differ from their checksums at save time"
        f"{f' and {len(missing)} have none' if missing else ''} "
        f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}): the files are damaged")


# --------------------------------------------------------------------------- arrays, no orbax


class _Leaf:
  """A saved array, known by shape and dtype until read."""

  def __init__(self, store):
    self._store = store
    self.shape = tuple(store.shape)
    self.dtype = np.dtype(store.dtype.numpy_dtype)

  def read(self) -> np.ndarray:
    return np.asarray(self._store.read().result())


def _state_json(step_dir: str) -> dict[str, Any]:
  path = paths.resolve(step_dir) / STATE / "_METADATA"
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({one_line(e)})") from e


def saved_tree(step_dir: str) -> dict[str, Any]:
  """The saved state as a nested dict of `_Leaf`s (shape and dtype; `read()` loads one).

  Leaves whose value is not an array (e.g. None placeholders) are left out.
  """
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  meta = _state_json(step_dir)
  base = paths.resolve(step_dir) / STATE
  # tensorstore opens a URI (`gs://...`) by its scheme, a local folder by the file driver.
  url = f"{base}/" if paths.is_remote(base) else f"file://{base}/"
  driver = "zarr3" if meta.get("use_zarr3") else "zarr"
  tree: dict[str, Any] = {}
  for key, value in meta.get("tree_metadata", {}).items():
    if (value.get("value_metadata") or {}).get("value_type") not in ("jax.Array", "np.ndarray"):
      continue
    try:
      path = [str(k["key"]) for k in value["key_metadata"]]
    except (KeyError, TypeError):
      path = [str(k) for k in ast.literal_eval(key)]
    name = ".".join(path)
    kvstore = {"driver": "ocdbt", "base": url} if meta.get("use_ocdbt", True) else url
    try:
      store = ts.open({"driver": driver, "kvstore": kvstore, "path": name}, open=True,
                      read=True).result()
    except Exception as e:  # Missing or damaged array files.
      raise CheckpointError(f"{step_dir}: unreadable array {name} ({one_line(e)})") from e
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = _Leaf(store)
  return tree


def read_arrays(step_dir: str, tree: PyTree) -> PyTree:
  """The `_Leaf`s of `tree` (a subtree of `saved_tree`) read as numpy arrays."""
  try:
    return jax.tree.map(lambda leaf: leaf.read(), tree,
                        is_leaf=lambda x: isinstance(x, _Leaf))
  except Exception as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({one_line(e)})") from e
