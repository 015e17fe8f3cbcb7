"""The `audiolm-jax` command.

Each command group lives in its own module under `audiolm_jax/commands/` and exposes
`register(subparsers)`; heavy imports (jax, tfds) happen inside the handlers so that `--help`
is instant. Exit codes: 0 success, 1 bad input (one clear line on stderr), 2 bad usage.
`--debug` anywhere on the line shows full tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from audiolm_jax import __version__
from audiolm_jax.config import split_override_args
from audiolm_jax.errors import AudioLMError

# Command groups, in the order `--help` lists them. A group is listed only once it does real work.
COMMAND_MODULES = (
    "audiolm_jax.commands.data",
    "audiolm_jax.commands.demo",
    "audiolm_jax.commands.train",
    "audiolm_jax.commands.inspect",
    "audiolm_jax.commands.tokenize",
    "audiolm_jax.commands.generate",
    "audiolm_jax.commands.detect",
)


class _Parser(argparse.ArgumentParser):
  """argparse that exits with 2 and one line for usage errors (its default too, made explicit)."""

  def error(self, message):
    self.print_usage(sys.stderr)
    self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="audiolm-jax",
      description="AudioLM in JAX: build corpora, train the codec, the semantic tokenizer and "
      "the three stage Transformers, generate audio, and detect generated speech.",
      epilog="Add --debug anywhere for full tracebacks. Config values are overridden with "
      "--config.key=value after --config FILE.py:VARIANT.")
  parser.add_argument("--version", action="version", version=f"audiolm-jax {__version__}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
  sub.required = True
  for name in COMMAND_MODULES:
    importlib.import_module(name).register(sub)
  return parser


def _quiet_background_errors() -> None:
  """One line per distinct error of a library's background thread (orbax writes checkpoints
  in threads and asyncio tasks), instead of a traceback each: the main thread reports what
  failed. --debug keeps them all."""
  import threading  # pylint: disable=g-import-not-at-top
  seen = set()

  def hook(args) -> None:
    exc = args.exc_value
    if exc is None or isinstance(exc, SystemExit):
      return
    line = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    if line not in seen:
      seen.add(line)
      print(f"audiolm-jax: warning: in a background thread: {line}", file=sys.stderr)

  threading.excepthook = hook

  class OneLine(logging.Filter):
    """A library's error log keeps its message, not its traceback."""

    def filter(self, record):
      record.exc_info, record.exc_text, record.stack_info = None, None, None
      return True

  for name in ("absl", "orbax"):
    logging.getLogger(name).addFilter(OneLine())
  sys.unraisablehook = lambda unraisable: None
  # asyncio's "Task exception was never retrieved" of the same failed writes.
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def os_error_line(e: OSError) -> str:
  """"PATH: what went wrong" (the OS's words), or the error's own text."""
  what = e.strerror or str(e)
  if e.filename is not None:
    target = f" -> {e.filename2}" if e.filename2 is not None else ""
    return f"{e.filename}{target}: {what}"
  return what


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  debug = "--debug" in argv
  argv = [a for a in argv if a != "--debug"]
  logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                      format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                      force=True)
  for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets", "grain"):
    logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
  if not debug:
    _quiet_background_errors()
  parser = build_parser()
  try:
    overrides, rest = split_override_args(argv)
  except AudioLMError as e:
    parser.error(str(e))
  args = parser.parse_args(rest)
  args.config_overrides = overrides
  args.debug = debug
  if overrides and "config" not in vars(args):
    parser.error(f"--config.{overrides[0][0]}: this command takes no --config")
  try:
    return int(args.func(args) or 0)
  except AudioLMError as e:
    if debug:
      traceback.print_exc()
    print(f"audiolm-jax: error: {e}", file=sys.stderr)
    return 1
  except OSError as e:  # A full or read-only disk, a missing or unreadable path, ...
    if debug:
      traceback.print_exc()
    print(f"audiolm-jax: error: {os_error_line(e)}", file=sys.stderr)
    return 1
  except MemoryError:
    if debug:
      traceback.print_exc()
    print("audiolm-jax: error: out of memory (a shorter input, a smaller batch_size or "
          "fewer files at once will fit)", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("audiolm-jax: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
