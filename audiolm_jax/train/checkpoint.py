"""Checkpoints with orbax: train state, data iterator state, resolved config.

Layout of `WORKDIR/checkpoints/<step>/` (`checkpoint_files.py`, which also reads it without
a run): `state/` (the `TrainState`, sharded arrays written by every process with orbax
`StandardSave`), `data/` (each process's data iterator state) and `config/` (the resolved
config).

Saves are asynchronous (training continues while arrays are written) and atomic (a step
directory appears only once complete); the last `keep` are kept. Restoring targets the
shardings of the *current* mesh, so a run saved on one mesh resumes on another.

Integrity: every save also writes `integrity/` (JSON), a checksum of each array's bits
(`checkpoint_files.integrity_record`), and a state holding NaN or inf is never saved. A restore
recomputes the checksums on the restored arrays. A checkpoint that cannot be read or fails the
check is reported in one line, moved to `checkpoints.corrupt/` (so orbax can save that step
again) and the next older one is tried; if every checkpoint fails, the run stops with one line
rather than silently starting afresh. Since only verified states are saved and restored, the
`keep` newest checkpoints orbax keeps are never fewer good ones than there were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from audiolm_jax import checkpoint_files, paths
from audiolm_jax.checkpoint_files import CONFIG, DATA, INTEGRITY, STATE, check_tree, one_line
from audiolm_jax.errors import CheckpointError

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"

PyTree = Any


# --------------------------------------------------------------------------- data iterator state


class DataStateHandler(ocp.CheckpointHandler):
  """Saves one JSON file per process with that process's data iterator state."""

  def save(self, directory: epath.Path, args: "DataStateSave"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    try:
      path.write_text(json.dumps(args.state, sort_keys=True))
    except OSError as e:  # A full disk: the OS error names no file.
      raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from e

  def restore(self, directory: epath.Path, args: "DataStateRestore | None" = None):
    del args
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    path = directory / name
    if not path.exists():
      saved = sorted(p.name for p in directory.iterdir())
      log.warning("data iterator state %s not in checkpoint (it has %s): the data order "
                  "restarts", name, saved)
      return None
    return json.loads(path.read_text())

  def metadata(self, directory: epath.Path):
    del directory
    return None

  def finalize(self, directory: epath.Path):
    del directory

  def close(self):
    pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: dict[str, Any]


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# --------------------------------------------------------------------------- the manager


@dataclasses.dataclass
class Restored:
  """A restored checkpoint."""
  step: int
  state: PyTree
  data_state: dict[str, Any] | None
  config: dict[str, Any] | None
  path: str


class Checkpointer:
  """Saves and restores checkpoints of a training run in `directory` (local or a URI)."""

  def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
    self.directory = paths.resolve(directory)
    self.failed = False  # A save failed (reported once; later waits say nothing more).
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: DataStateHandler(),
                       CONFIG: ocp.JsonCheckpointHandler(),
                       INTEGRITY: ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: PyTree, data_state: dict[str, Any] | None,
           config: dict[str, Any]) -> bool:
    """Starts an asynchronous save of `step`; False if that step is already saved, or if the
    state holds NaN or inf (never saved: it would replace a good checkpoint)."""
    if step in self._manager.all_steps():
      return False
    record = checkpoint_files.integrity_record(state)
    if record["nonfinite"]:
      names = record["nonfinite"]
      log.error("step %d: not saved, %d arrays of the state hold NaN or inf (%s); the "
                "checkpoints in %s are kept as they are", step, len(names),
                ", ".join(names[:3]), self.directory)
      return False
    args = ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                 DATA: DataStateSave(data_state or {}),
                                 CONFIG: ocp.args.JsonSave(config),
                                 INTEGRITY: ocp.args.JsonSave(record)})
    with self._saving(step):
      return self._manager.save(step, args=args, force=True)

  @contextlib.contextmanager
  def _saving(self, step: int | None):
    """Turns a failed write (a full or read-only disk, ...) into one clear `CheckpointError`;
    orbax reports an asynchronous save's failure at the next save or wait."""
    try:
      yield
    except CheckpointError:
      raise
    except Exception as e:
      self.failed = True
      done = self.all_steps()
      # tensorstore names the OS error by its code at the end of a long message: lead with it.
      code = re.search(r"os_error_code='?(\d+)", str(e))
      cause = f"{os.strerror(int(code.group(1)))}: " if code else ""
      raise CheckpointError(
          f"{self.directory}: a checkpoint save failed"
          f"{'' if step is None else f' (found when saving step {step})'} ({cause}"
          f"{one_line(e)}); "
          f"the checkpoints before it are kept "
          f"({', '.join(map(str, done[-3:])) or 'none'}); fix the cause and rerun the same "
          "command to continue") from e

  def check_free_space(self, state_bytes: int) -> None:
    """Raises `CheckpointError` before training if the disk cannot hold two checkpoints
    (the one written and the one before it) of `state_bytes`; nothing to check in a bucket."""
    if paths.is_remote(self.directory):
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(self.directory).free
    if free < 2 * state_bytes:
      raise CheckpointError(
          f"{self.directory}: {free / 2**20:.1f} MiB free, but a checkpoint takes about "
          f"{state_bytes / 2**20:.1f} MiB and two must fit; free space or choose another "
          "--workdir")

  def restore(self, step: int, target: PyTree) -> Restored:
    """Restores `step` onto `target` (a tree of `ShapeDtypeStruct`s with shardings)."""
    args = ocp.args.Composite(**{STATE: ocp.args.StandardRestore(target),
                                 DATA: DataStateRestore(), CONFIG: ocp.args.JsonRestore()})
    out = self._manager.restore(step, args=args)
    path = os.fspath(self.directory / str(step))
    checkpoint_files.verify(path, out[STATE])
    return Restored(step=step, state=out[STATE], data_state=out[DATA], config=out[CONFIG],
                    path=path)

  def restore_latest(self, target: PyTree) -> Restored | None:
    """The newest checkpoint that reads and passes its integrity check; None if there is none.

    An unreadable or damaged one (truncated, bit-flipped, partially deleted) is reported in one
    line, moved aside and the next older one is tried; if all fail, `CheckpointError`. A
    checkpoint that reads but does not fit `target` (a changed model or optimizer) is an
    error, not corruption.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      check_compatible(os.fspath(self.directory / str(step)), target)
      try:
        return self.restore(step, target)
      except Exception as e:  # Anything that stops the read means the checkpoint is unusable.
        moved = self._move_aside(step)
        older = [s for s in self._manager.all_steps() if s < step]
        log.warning("checkpoint step %d is unreadable (%s); moved to %s; %s", step,
                    one_line(e), moved,
                    f"trying step {max(older)}" if older else "no older checkpoint")
    if steps:
      raise CheckpointError(
          f"{self.directory}: all {len(steps)} checkpoints failed to read or verify (moved to "
          f"{self._corrupt_dir()}); to start this run afresh, use a new workdir or remove "
          "that folder's checkpoints")
    return None

  def _corrupt_dir(self) -> epath.Path:
    return self.directory.parent / (self.directory.name + CORRUPT_SUFFIX)

  def _move_aside(self, step: int) -> str:
    src = self.directory / str(step)
    dst = self._corrupt_dir() / str(step)
    if jax.process_index() == 0:
      dst.parent.mkdir(parents=True, exist_ok=True)
      if dst.exists():
        dst.rmtree()
      src.rename(dst)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"checkpoint_move_aside_{step}")
    self._manager.reload()
    return os.fspath(dst)

  def wait_until_finished(self) -> None:
    if self.failed:
      return
    with self._saving(None):
      self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      with self._saving(None):
        self._manager.close()
    except CheckpointError:
      if not self.failed:
        raise
      # The failure was reported already; what is left are the same write's errors.


def state_metadata(step_dir: str) -> dict[str, Any]:
  """The saved state's tree of array metadata (shape, dtype per leaf)."""
  try:
    return ocp.StandardCheckpointHandler().metadata(paths.resolve(step_dir) / STATE).tree
  except Exception as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({one_line(e)})") from e


def saved_fields(step_dir: str) -> set[str]:
  """The top-level fields of a saved state that hold arrays (e.g. no "ema_params" if off)."""
  return {k for k, v in state_metadata(step_dir).items() if jax.tree.leaves(v)}


def read_numpy(step_dir: str, subtrees: tuple[str, ...] | None = None) -> dict[str, Any]:
  """The saved state as numpy arrays (optionally only some top-level fields), no mesh needed."""
  meta = state_metadata(step_dir)
  if subtrees is not None:
    meta = {k: meta[k] for k in subtrees if k in meta}
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), meta)
  try:
    return ocp.PyTreeCheckpointer().restore(
        paths.resolve(step_dir) / STATE,
        args=ocp.args.PyTreeRestore(
            item=target, partial_restore=subtrees is not None,
            restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      target)))
  except Exception as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({one_line(e)})") from e


def check_compatible(step_dir: str, target: PyTree) -> None:
  """Raises `CheckpointError` if the saved state's leaves or shapes differ from `target`'s.

  Unreadable metadata is left for the restore to report as corruption.
  """
  try:
    saved = state_metadata(step_dir)
  except CheckpointError:
    return
  check_tree(step_dir, saved, target, "the saved state")


def restore_subtrees(step_dir: str, item: dict[str, PyTree]) -> dict[str, PyTree]:
  """Restores some top-level fields of a saved state (e.g. `params`) onto `item`'s shardings.

  Used by `--init_from`: the model comes from another run, the optimizer starts fresh.
  """
  saved = state_metadata(step_dir)
  for field, wanted in item.items():
    if field not in saved:
      raise CheckpointError(f"{step_dir}: the checkpoint has no {field!r}")
    check_tree(step_dir, saved[field], wanted, field)
  try:
    return ocp.PyTreeCheckpointer().restore(
        paths.resolve(step_dir) / STATE,
        args=ocp.args.PyTreeRestore(
            item=item, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(item)))
  except Exception as e:
    raise CheckpointError(f"{step_dir}: could not restore {sorted(item)} ({one_line(e)})") from e


