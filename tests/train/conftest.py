"""Trainer tests: a persistent compilation cache shared by the session's runs."""

from train_helpers import compilation_cache  # noqa: F401  (an autouse fixture)
