"""`audiolm-jax demo`: the main job on the built-in data, end to end (what `make demo` runs).

The steps and what they write are `audiolm_jax.demo`; this module only parses and prints.
"""

from __future__ import annotations

import os


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "demo", help="run the main job end to end on the built-in data",
      description="Build the built-in speech corpus, train every part (codec, w2v-BERT, "
      "k-means, the three stages) with short budgets, continue held-out prompts and write "
      "RUN_DIR/report.html. Budgets are in experiments/configs/demo.py (override with "
      "--config.codec_steps=... etc.); re-running reuses finished parts.")
  parser.add_argument("--config", default="demo.py:cpu",
                      help="demo config and variant (default: demo.py:cpu)")
  parser.add_argument("--run_dir", default="runs/demo", help="where every part and the report go")
  parser.add_argument("--data_dir", default=None,
                      help="where corpora live (default: $AUDIOLM_DATA_DIR or ./data)")
  parser.add_argument("--workers", type=int, default=None, help="processes for the corpus build")
  parser.set_defaults(func=_demo)


def _demo(args) -> int:
  from audiolm_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from audiolm_jax.demo import Demo  # pylint: disable=g-import-not-at-top
  from audiolm_jax.commands import checks  # pylint: disable=g-import-not-at-top
  checks.output_dir(args.run_dir, "--run_dir", local=True)
  if args.data_dir:
    checks.output_dir(args.data_dir, "--data_dir", local=True)
  cfg = load_config(args.config, args.config_overrides)
  demo = Demo(cfg, args.run_dir, args.data_dir, args.workers or os.cpu_count() or 1,
              say=lambda msg: print(msg, flush=True))
  metrics = demo.run()
  print(f"[demo] done in {metrics['seconds']['total'] / 60:.1f} min: {metrics['report']}")
  return 0
