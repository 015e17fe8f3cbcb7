"""`audiolm-jax data`: build, check and summarise corpora."""

from __future__ import annotations

import argparse
import json
import os
import sys

CORPORA_HELP = ("synthetic_speech (flite + espeak-ng reading English sentences), "
                "synthetic_piano (music21 scores rendered with fluidsynth), "
                "audio_folder (your own folder: --source DIR --layout librispeech|maestro|generic)")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "data", help="build, check and summarise corpora",
      description="Build the built-in corpora (made locally, nothing is downloaded), corpora "
      "from your own folders, check audio files, and print corpus statistics.")
  sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
  sub.required = True

  build = sub.add_parser(
      "build", help="build a corpus as TFDS array_record files",
      description=f"Build a corpus. Corpora: {CORPORA_HELP}. Bad source files are skipped, "
      "counted and listed in the summary (and in build_summary.json next to the data).")
  build.add_argument("name", help="synthetic_speech | synthetic_piano | audio_folder")
  build.add_argument("--size", default="default", choices=("tiny", "default"),
                     help="tiny: seconds, for tests; default: the full built-in corpus")
  _data_dir_arg(build)
  build.add_argument("--source", help="audio_folder: the folder holding your audio")
  build.add_argument("--layout", default="generic", choices=("librispeech", "maestro", "generic"),
                     help="audio_folder: how the folder is organised")
  build.add_argument("--name", dest="build_name", default=None,
                     help="audio_folder: the build's name, for --config_name and data mixtures "
                     "(default: LAYOUT-FOLDER-HASH)")
  build.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="processes making examples in parallel")
  build.add_argument("--force", action="store_true", help="rebuild even if a build exists")
  build.add_argument("--json", action="store_true", help="print the summary as JSON")
  build.set_defaults(func=_build)

  check = sub.add_parser(
      "check", help="check audio files and report each bad one with its reason",
      description="Read every audio file given (folders are searched recursively) the way "
      "training does, and report each bad file with its reason. Exit code 1 if any is bad.")
  check.add_argument("paths", nargs="+", help="audio files or folders")
  check.add_argument("--sample_rate", type=int, default=16000, help="target sample rate")
  check.add_argument("--min_seconds", type=float, default=0.25, help="shorter is 'too short'")
  check.add_argument("--max_seconds", type=float, default=4 * 3600.0,
                     help="longer is 'too long'")
  check.add_argument("--silence_db", type=float, default=-60.0,
                     help="RMS below this (dBFS) is 'silent'")
  check.add_argument("--quiet", action="store_true", help="print only the bad files")
  check.set_defaults(func=_check)

  stats = sub.add_parser(
      "stats", help="hours, speakers/pieces and clip lengths per split",
      description="Print the statistics of a built corpus, per split.")
  stats.add_argument("name", help="synthetic_speech | synthetic_piano | audio_folder")
  _data_dir_arg(stats)
  stats.add_argument("--config_name", default=None,
                     help="which build (tiny, default, or an audio_folder build's name)")
  stats.add_argument("--json", action="store_true", help="print as JSON")
  stats.set_defaults(func=_stats)


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--data_dir", default=None,
                      help="where corpora live (default: $AUDIOLM_DATA_DIR or ./data)")


def _build(args) -> int:
  from audiolm_jax.commands import checks  # pylint: disable=g-import-not-at-top
  from audiolm_jax.data import corpora  # pylint: disable=g-import-not-at-top
  if args.data_dir:
    checks.output_dir(args.data_dir, "--data_dir", local=True)
  summary = corpora.build(args.name, size=args.size, data_dir=args.data_dir,
                          source_dir=args.source, layout=args.layout, workers=args.workers,
                          force=args.force, build_name=args.build_name)
  if args.json:
    print(json.dumps(summary, indent=2))
    return 0
  reused = " (already built; --force rebuilds)" if summary.get("reused") else ""
  print(f"{summary['name']}/{summary['config']}: {summary['data_path']}{reused}")
  for split, n in summary["examples_per_split"].items():
    print(f"  {split:<22} {n:>7} examples")
  if not summary.get("reused"):
    print(f"  built in {summary['build_seconds']:.1f} s")
  for warning in summary.get("warnings", []):
    print(f"  warning: {warning}")
  print(f"  skipped {summary['skipped']} bad source(s)"
        + (f": {summary['skipped_by_reason']}" if summary["skipped"] else ""))
  for s in summary.get("skipped_sources", [])[:50]:
    print(f"    {s['source']}: {s['reason']}" + (f" ({s['detail']})" if s["detail"] else ""))
  if summary["skipped"] > 50:
    print(f"    ... {summary['skipped'] - 50} more in build_summary.json")
  return 0


def _check(args) -> int:
  from audiolm_jax.data.audio import AUDIO_EXTENSIONS, AudioChecks, load_audio
  from audiolm_jax.errors import BadAudioError
  checks = AudioChecks(min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                       silence_db=args.silence_db)
  files = []
  for path in args.paths:
    if os.path.isdir(path):
      for dirpath, _, names in os.walk(path):
        files += sorted(os.path.join(dirpath, n) for n in names
                        if n.lower().endswith(AUDIO_EXTENSIONS))
    else:
      files.append(path)
  bad = 0
  for path in files:
    try:
      wav = load_audio(path, args.sample_rate, checks=checks)
    except BadAudioError as e:
      bad += 1
      print(f"BAD  {e.path}: {e.reason}" + (f" ({e.detail})" if e.detail else ""))
      continue
    if not args.quiet:
      print(f"ok   {path}: {wav.size / args.sample_rate:.2f} s")
  print(f"{len(files)} file(s) checked, {bad} bad", file=sys.stderr)
  if not files:
    print("audiolm-jax: error: no audio files found in the given paths", file=sys.stderr)
    return 1
  return 1 if bad else 0


def _stats(args) -> int:
  from audiolm_jax.data import corpora
  s = corpora.stats(args.name, data_dir=args.data_dir, config=args.config_name)
  if args.json:
    print(json.dumps(s, indent=2))
    return 0
  print_stats(s)
  return 0


def print_stats(s: dict) -> None:
  """Prints `corpora.stats(...)` as a table."""
  print(f"{s['corpus']}: {s['path']}")
  print(f"  total {s['total_hours']:.2f} h, {s['speakers_or_pieces']} speakers/pieces")
  print(f"  {'split':<22}{'examples':>9}{'hours':>8}{'spk/pcs':>9}   "
        "clip seconds min / p10 / median / p90 / max")
  for split, d in s["splits"].items():
    q = " / ".join(f"{v:.1f}" for v in d["seconds_min_p10_median_p90_max"])
    print(f"  {split:<22}{d['examples']:>9}{d['hours']:>8.2f}{d['speakers_or_pieces']:>9}   {q}")
