"""`python -m audiolm_jax` is the same as the `audiolm-jax` command."""

import sys

from audiolm_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
