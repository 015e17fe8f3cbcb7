"""`audiolm-jax demo`: the main job on the built-in data (what `make demo` runs).

Today it builds the built-in speech and piano corpora and prints their statistics; the
end-to-end AudioLM run (codec, semantic tokenizer, three stages, continuations and the
report) joins it as those parts land.
"""

from __future__ import annotations


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "demo", help="run the main job on the built-in data",
      description="Build the built-in corpora (synthetic_speech, synthetic_piano; nothing is "
      "downloaded) and print their statistics. Re-running reuses finished parts.")
  parser.add_argument("--data_dir", default=None,
                      help="where corpora live (default: $AUDIOLM_DATA_DIR or ./data)")
  parser.add_argument("--size", default="default", choices=("tiny", "default"),
                      help="corpus size: tiny (seconds) or default (the full built-in corpus)")
  parser.add_argument("--workers", type=int, default=None, help="processes for corpus builds")
  parser.set_defaults(func=_demo)


def _demo(args) -> int:
  import os
  from audiolm_jax.commands.data import print_stats
  from audiolm_jax.data import corpora
  workers = args.workers or os.cpu_count() or 1
  for name in ("synthetic_speech", "synthetic_piano"):
    summary = corpora.build(name, size=args.size, data_dir=args.data_dir, workers=workers)
    state = "reused" if summary.get("reused") else f"built in {summary['build_seconds']:.0f} s"
    print(f"[demo] {name}/{args.size}: {state}, {summary['skipped']} bad source(s) skipped")
    print_stats(corpora.stats(name, data_dir=args.data_dir, config=args.size))
  return 0
