"""Test-session set-up: 8 fake CPU devices so mesh tests run anywhere, fast compiles;
tests/support on the path.

Must run before jax is imported, which conftest.py guarantees.
"""

import os
import sys

# Test-only code (the toy LM task and its config) lives in tests/support.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

# The suite compiles far more than it runs (tiny presets, a few steps each): LLVM's backend
# optimisation at level 0 compiles about a third faster, and changes what the code computes no
# more than any other code generation choice does. Users' runs keep XLA's default.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
# A persistent XLA cache for the whole session, subprocesses included: many tests compile the
# same programs again (a run, then its resumed or killed twin; the codec's two phases).
from train_helpers import compilation_cache  # noqa: E402,F401  (an autouse fixture)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The tiny built-in corpora, built once per test session (seconds)."""
  from audiolm_jax.data import corpora
  data_dir = str(tmp_path_factory.mktemp("corpora"))
  corpora.build("synthetic_speech", size="tiny", data_dir=data_dir, workers=2)
  corpora.build("synthetic_piano", size="tiny", data_dir=data_dir, workers=2)
  return data_dir


def pytest_sessionfinish(session, exitstatus):
  """Orbax/tensorstore futures of the corrupt-checkpoint tests fail by design; asyncio would
  log them during pytest's final garbage collection, after the summary line. Quiet that."""
  import logging
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)
