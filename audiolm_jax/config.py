"""Configs: Python files returning an `ml_collections.ConfigDict`, variants by name.

A config file lives under `experiments/configs/` and defines

    VARIANTS = ("tiny", "cpu", "paper")
    def get_config(arg: str | None = None) -> ml_collections.ConfigDict: ...

It is named on the command line as `--config path/to/file.py:variant` and its values are
overridden with `--config.key=value` (dotted keys reach into sub-dicts). Loaded configs are
*locked*: an override naming a key that does not exist, or giving a value of the wrong type, is
a `ConfigError` that names the key.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
from typing import Any, Iterable, Sequence

import ml_collections

from audiolm_jax.errors import ConfigError

ConfigDict = ml_collections.ConfigDict

# Where the shipped configs live: the repository's experiments/configs, which an installed
# package carries as `audiolm_jax.configs` (setup.py maps the folder), so that
# `--config experiments/configs/codec.py:cpu` or `--config codec:cpu` work from any directory.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_dirs() -> list[str]:
  """Folders searched for a config given by name: the repository's, then the installed ones."""
  dirs = [os.path.join(REPO_ROOT, "experiments", "configs")]
  spec = importlib.util.find_spec("audiolm_jax.configs")
  if spec is not None and spec.submodule_search_locations:
    dirs += [d for d in spec.submodule_search_locations if d not in dirs]
  return [d for d in dirs if os.path.isdir(d)]


def resolve_config_path(path: str) -> str:
  """The config file that `path` names.

  A bare name (`codec`, `codec.py`: no folder in it) names a *shipped* config only, so that a
  stray `codec.py` in the working directory never runs in its place. A path with a folder
  (`./my_codec.py`, `experiments/configs/codec.py`, `/abs/x.py`) is that file; if it does not
  exist, the shipped config of that file name (so the repository's paths work from anywhere).
  A config file is Python code and is executed: load only configs you trust.
  """
  name = path if path.endswith(".py") else path + ".py"
  shipped = [os.path.join(d, os.path.basename(name)) for d in config_dirs()]
  bare = os.path.dirname(path) == ""
  candidates = shipped if bare else [path, name, *shipped]
  for c in candidates:
    if os.path.isfile(c):
      return c
  hint = (f"; a config file of your own is named with its folder, e.g. ./{name}"
          if bare and os.path.isfile(name) else "")
  raise ConfigError(f"config file {path!r} not found (looked for "
                    f"{', '.join(dict.fromkeys(candidates))}){hint}")


def _load_module(path: str):
  name = "audiolm_jax_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # a broken config file is the user's input
    raise ConfigError(f"{path}: could not be executed: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path}: defines no get_config(arg) function")
  return module


def config_variants(path: str) -> tuple[str, ...]:
  """The variant names a config file declares in `VARIANTS` (empty if it takes none)."""
  return tuple(getattr(_load_module(resolve_config_path(path)), "VARIANTS", ()))


def load_config(spec: str, overrides: Iterable[tuple[str, str]] = ()) -> ConfigDict:
  """Loads `path.py[:variant]`, applies `(dotted_key, value_string)` overrides, locks it."""
  path, _, variant = spec.partition(":")
  path = resolve_config_path(path)
  module = _load_module(path)
  variants = tuple(getattr(module, "VARIANTS", ()))
  if variants and not variant:
    raise ConfigError(f"{path}: choose a variant, one of {', '.join(variants)} "
                      f"(e.g. --config {path}:{variants[0]})")
  if variants and variant not in variants:
    raise ConfigError(f"{path}: unknown variant {variant!r}; known: {', '.join(variants)}")
  try:
    cfg = module.get_config(variant or None)
  except Exception as e:  # A config that cannot be built is the user's input.
    raise ConfigError(f"{path}:{variant}: get_config failed: {type(e).__name__}: {e}") from e
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config returned {type(cfg).__name__}, not a ConfigDict")
  cfg = ml_collections.ConfigDict(cfg)  # A copy, so module-level state is never mutated.
  apply_overrides(cfg, overrides)
  cfg.lock()
  return cfg


def _parse_value(key: str, text: str, current: Any) -> Any:
  """Parses the override string `text` for a field whose current value is `current`."""
  if isinstance(current, bool):
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"--config.{key}: expected a boolean, got {text!r}")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise ConfigError(f"--config.{key}: expected an integer, got {text!r}") from None
  if isinstance(current, float):
    try:
      value = float(text)
    except ValueError:
      raise ConfigError(f"--config.{key}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
      raise ConfigError(f"--config.{key}: expected a finite number, got {text!r}")
    return value
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = tuple(v.strip() for v in text.split(",") if v.strip())
    if not isinstance(value, (tuple, list)):
      value = (value,)
    return type(current)(value)
  # None or other: a Python literal if it parses, else the string itself.
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(cfg: ConfigDict, overrides: Iterable[tuple[str, str]]) -> ConfigDict:
  """Sets each dotted key; unknown keys and wrongly typed values raise `ConfigError`."""
  for key, text in overrides:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ConfigError(f"--config.{key}: unknown key {'.'.join(parts[:i + 1])!r}")
      node = node[part]
    leaf = parts[-1]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else ""
      raise ConfigError(f"--config.{key}: unknown key (known here: {known})")
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{key}: is a group of settings; set one of its keys")
    value = _parse_value(key, text, current)
    try:
      with node.unlocked():
        node[leaf] = value
    except TypeError as e:
      raise ConfigError(f"--config.{key}: {e}") from e
  return cfg


def split_override_args(argv: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
  """Pulls `--config.key=value` / `--config.key value` out of `argv`; returns (overrides, rest)."""
  overrides, rest = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      body = arg[len("--config."):]
      if "=" in body:
        key, value = body.split("=", 1)
      elif i + 1 < len(argv):
        key, value = body, argv[i + 1]
        i += 1
      else:
        raise ConfigError(f"{arg}: missing a value (use {arg}=VALUE)")
      if not key:
        raise ConfigError(f"{arg}: empty key")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return overrides, rest


def to_json(cfg: ConfigDict) -> str:
  """The resolved config as JSON (stored with every checkpoint)."""
  return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=_json_default)


def _json_default(o):
  if isinstance(o, (set, frozenset)):
    return sorted(o)
  return str(o)


def from_json(text: str) -> ConfigDict:
  """Inverse of `to_json` (tuples come back as lists, which ConfigDict accepts)."""
  return ml_collections.ConfigDict(json.loads(text))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  """A nested dict as one level of dotted keys: `{"a": {"b": 1}} -> {"a.b": 1}`."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
