"""`audiolm-jax detect`: the probability that each audio file is generated speech.

    audiolm-jax detect --detector runs/detector clip.wav [more.flac ...]

Prints one line per scored file, `PATH<TAB>P(generated)` with 4 decimals, in the order given
(a trained `detector` run: `experiments/configs/detector.py`). Each file is read at any rate or
channels (resampled, mixed to mono) and checked at the door; a file that cannot be scored
(missing, unreadable, empty, silent, too short, ...) is one `audiolm-jax: error: PATH: reason`
line on stderr and the others are still scored. Exit 0 when at least one file was scored,
1 when none could be (or the detector run cannot be loaded), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "detect", help="probability that audio files are generated speech (a trained detector)",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files to score")
  p.add_argument("--detector", required=True, metavar="RUN",
                 help="a trained detector: its workdir, checkpoints/ or a step directory")
  p.set_defaults(func=_detect)


def _detect(args) -> int:
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import pretrained
  from audiolm_jax.data.audio import load_audio
  from audiolm_jax.errors import BadAudioError
  # pylint: enable=g-import-not-at-top
  detector = pretrained.load_detector(args.detector)
  scored = 0
  for path in args.paths:
    try:
      wav = load_audio(path, detector.sample_rate)
      probability = detector.probability(wav, detector.sample_rate, name=path)
    except BadAudioError as e:
      print(f"audiolm-jax: error: {e}", file=sys.stderr)
      continue
    print(f"{path}\t{probability:.4f}", flush=True)
    scored += 1
  if not scored:
    print(f"audiolm-jax: error: none of the {len(args.paths)} file(s) could be scored",
          file=sys.stderr)
    return 1
  return 0
