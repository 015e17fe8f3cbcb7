"""Held-out accuracy of a trained detector: `experiments/results/detector.json`.

    python experiments/detector_accuracy.py --detector runs/detector \
        --heldout runs/detector_data/heldout [--out experiments/results/detector.json]

`--heldout DIR` holds one folder per held-out set, each with `real/` (codec resyntheses of
real speech, class 0) and `generated/` (AudioLM continuations, class 1), as
`experiments/detector_data.py` writes them. Every audio file is scored whole
(`eval.detector.Detector.probability`); a set's accuracy is the mean of the two classes'
accuracies at the 0.5 threshold (`eval.detector.accuracy`). A file that cannot be scored is
counted and listed, not fatal.

Writes `{"accuracy": {SET: value, ...}, "class_accuracy": {SET: {"real": .., "generated":
..}}, "clips": {SET: {"real": n, "generated": n}}, "unscored": [...], "detector": {...}}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from audiolm_jax import pretrained
from audiolm_jax.data.audio import AUDIO_EXTENSIONS, load_audio
from audiolm_jax.errors import AudioLMError, BadAudioError, DataError
from audiolm_jax.eval import detector as detector_lib

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "detector.json")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--detector", required=True, metavar="RUN", help="a trained detector run")
  p.add_argument("--heldout", required=True, metavar="DIR",
                 help="one folder per held-out set, each with real/ and generated/")
  p.add_argument("--out", default=RESULTS, metavar="FILE.json")
  return p.parse_args(argv)


def audio_files(folder: str) -> list[str]:
  return sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
                if n.lower().endswith(AUDIO_EXTENSIONS))


def evaluate(detector: detector_lib.Detector, heldout: str) -> dict:
  """Accuracy per held-out set (see the module docstring)."""
  sets = sorted(d for d in os.listdir(heldout)
                if all(os.path.isdir(os.path.join(heldout, d, c)) for c in detector_lib.LABELS))
  if not sets:
    raise DataError(f"{heldout}: no folder with {' and '.join(detector_lib.LABELS)}/ in it")
  report = {"accuracy": {}, "class_accuracy": {}, "clips": {}, "unscored": [],
            "detector": {"checkpoint": detector.step_dir, "step": detector.step}}
  for name in sets:
    scores = {}
    for label in detector_lib.LABELS:
      scores[label] = []
      for path in audio_files(os.path.join(heldout, name, label)):
        try:
          wav = load_audio(path, detector.sample_rate)
          scores[label].append(detector.probability(wav, detector.sample_rate, name=path))
        except BadAudioError as e:
          report["unscored"].append(str(e))
    real, generated = np.asarray(scores["real"]), np.asarray(scores["generated"])
    if not real.size or not generated.size:
      report["unscored"].append(f"{name}: a class has no scored clip; set left out")
      continue
    report["accuracy"][name] = detector_lib.accuracy(real, generated)
    report["class_accuracy"][name] = {"real": float(np.mean(real < 0.5)),
                                      "generated": float(np.mean(generated >= 0.5))}
    report["clips"][name] = {"real": int(real.size), "generated": int(generated.size)}
    print(f"{name:28s} accuracy {report['accuracy'][name]:.3f} "
          f"({real.size} real, {generated.size} generated)", flush=True)
  return report


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    report = evaluate(pretrained.load_detector(args.detector), args.heldout)
  except AudioLMError as e:
    print(f"detector_accuracy: error: {e}", file=sys.stderr)
    return 1
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
