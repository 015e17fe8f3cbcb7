"""Error types that the CLI turns into one clear line (exit code 1).

Every error raised for bad *input* (audio, configs, checkpoints, data) derives from
`AudioLMError`, so that a long run can catch exactly these, count them and go on, while
programming errors still surface as tracebacks.
"""


class AudioLMError(Exception):
  """Bad input that the user can fix: the message says what and how."""


class ConfigError(AudioLMError):
  """A config file, variant, key or value is wrong."""


class BadAudioError(AudioLMError):
  """An audio file or array failed a check at the door.

  Attributes:
    path: the file (or a description of the array) that failed.
    reason: a short machine-comparable reason, e.g. "unreadable", "empty",
      "non-finite", "too short", "silent", "too long", "bad sample rate".
    detail: a human-readable explanation with numbers.
  """

  def __init__(self, path, reason, detail=""):
    self.path = str(path)
    self.reason = reason
    self.detail = detail
    msg = f"{self.path}: {reason}"
    if detail:
      msg += f" ({detail})"
    super().__init__(msg)


class DataError(AudioLMError):
  """A corpus, split or data directory is missing or inconsistent."""


class CheckpointError(AudioLMError):
  """A checkpoint is missing, partial or corrupt."""


class MissingToolError(AudioLMError):
  """A system tool (flite, espeak-ng, fluidsynth, ...) is not installed."""


class MissingExtraError(AudioLMError):
  """An optional part of the install (a pip extra) is needed and missing."""


# The pip extras (pyproject.toml) and the modules each one provides.
EXTRAS = {
    "eval": ("pesq", "pystoi", "pocketsphinx", "jiwer", "rapidfuzz", "torch", "resemblyzer"),
    "piano": ("music21", "mido"),
    "report": ("matplotlib",),
    "gcs": ("gcsfs",),
}


def require_extra(extra: str, what: str) -> None:
  """Raises `MissingExtraError` naming the pip line unless `extra`'s modules are installed
  (looked up, not imported: free to call before a long job)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
  if missing:
    raise MissingExtraError(f"{what} needs the [{extra}] extra ({', '.join(missing)} not "
                            f"installed): pip install 'audiolm-jax[{extra}]'")
