"""Trainer tests: a persistent compilation cache shared by the session's runs."""

import pytest

import train_helpers


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache shared by this session's trainer runs, subprocesses included.

  The same programs are compiled many times (straight run, killed run, resumed run); the
  cache only skips recompilation, the programs and their results are unchanged.
  """
  import jax
  path = str(tmp_path_factory.mktemp("jax_cache"))
  train_helpers.CACHE["dir"] = path
  jax.config.update("jax_compilation_cache_dir", path)
  yield path
