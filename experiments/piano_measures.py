"""Do the music-structure measures tell a piece's own continuation from another piece's?
(issue 13: validation of `audiolm_jax/eval/music.py` on ground truth, before any model)

On the held-out pieces of `synthetic_piano` (the `test` and `validation` splits: pieces never
in `train`), clips of `--prompt_seconds + --continuation_seconds` (4 s + 6 s) are cut back to
back from the start of each piece (up to `--clips_per_piece`). Each 4 s prompt is scored
against
  - "true":  the 6 s that follow it in the same piece, and
  - "other": the continuation of the clip at the same place in another held-out piece (the
             next piece in split order, so each piece is "other" once).
Per measure: the mean of both, the mean difference true - other with a bootstrap 95% interval
over prompts (and over pieces, since the clips of one piece are not independent), and the
share of prompts where the true continuation wins (ties count half).

The same measures are computed from the MIDI notes the corpus keeps per clip
(`music.note_features`: a binary piano roll, no partials), and the report says how well audio
and notes agree: per measure, the Pearson correlation of the audio and MIDI values over all
pairs; per clip, the correlation of the audio and MIDI pitch-class profiles, of the onset rates,
of the mean pitches, and how often both find the same key.

    audiolm-jax data build synthetic_piano --data_dir data   # once, about 3 min on 2 cores
    python experiments/piano_measures.py --data_dir data

Writes `piano_measures.json` and `piano_measures.md` to `--out_dir` (default
experiments/results). About a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16
from audiolm_jax.errors import AudioLMError, DataError
from audiolm_jax.eval import music
from audiolm_jax.eval.speaker import bootstrap_ci

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
RATE = 16000


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--config_name", default="default", help="which synthetic_piano build")
  p.add_argument("--splits", default="test,validation", help="held-out splits, comma-separated")
  p.add_argument("--prompt_seconds", type=float, default=4.0)
  p.add_argument("--continuation_seconds", type=float, default=6.0)
  p.add_argument("--clips_per_piece", type=int, default=3, help="back to back from the start")
  p.add_argument("--out_dir", default=RESULTS_DIR)
  return p.parse_args(argv)


def load_clips(args) -> list[dict]:
  """Clips of held-out pieces: piece id, clip index, audio and note features of the prompt and
  of its continuation."""
  p_s, c_s = args.prompt_seconds, args.continuation_seconds
  clips = []
  for split in args.splits.split(","):
    source = corpora.data_source("synthetic_piano", split, args.data_dir, args.config_name)
    for i in range(len(source)):
      ex = source[i]
      wav, notes = from_int16(ex["audio"]), np.asarray(ex["notes"])
      piece = ex["piece_id"].decode()
      for k in range(args.clips_per_piece):
        start = k * (p_s + c_s)
        if (start + p_s + c_s) * RATE > wav.size:
          break
        a, b, c = (int(round(x * RATE)) for x in (start, start + p_s, start + p_s + c_s))
        try:
          clip = {"piece": piece, "split": split, "clip": k, "start": start,
                  "prompt": music.audio_features(wav[a:b], RATE, f"{piece}@{start:g}s"),
                  "continuation": music.audio_features(wav[b:c], RATE,
                                                       f"{piece}@{start + p_s:g}s"),
                  "prompt_notes": music.note_features(notes, start, p_s),
                  "continuation_notes": music.note_features(notes, start + p_s, c_s)}
        except AudioLMError as e:  # A silent stretch (a long rest): skipped, said.
          print(f"skipped: {e}")
          continue
        clips.append(clip)
  if len({c["piece"] for c in clips}) < 2:
    raise DataError("need clips of at least two held-out pieces")
  return clips


def other_piece(clips: list[dict]) -> list[int]:
  """For each clip, a clip of the next piece (in load order) at the same index if it has one,
  else that piece's last clip."""
  pieces = list(dict.fromkeys(c["piece"] for c in clips))
  by_piece = {p: [i for i, c in enumerate(clips) if c["piece"] == p] for p in pieces}
  out = []
  for c in clips:
    other = by_piece[pieces[(pieces.index(c["piece"]) + 1) % len(pieces)]]
    out.append(other[min(c["clip"], len(other) - 1)])
  return out


def _pearson(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.std() == 0 or b.std() == 0:
    return float("nan")
  return float(np.corrcoef(a, b)[0, 1])


def _summary(true: np.ndarray, other: np.ndarray, pieces: list[str]) -> dict:
  diff = true - other
  per_piece = [diff[[i for i, p in enumerate(pieces) if p == q]].mean()
               for q in dict.fromkeys(pieces)]
  return {"true_mean": float(true.mean()), "other_mean": float(other.mean()),
          "difference": float(diff.mean()), "ci": list(bootstrap_ci(diff)),
          "ci_over_pieces": list(bootstrap_ci(per_piece)),
          "true_wins": float(np.mean((diff > 0) + 0.5 * (diff == 0))), "n": int(diff.size)}


def measure(clips: list[dict]) -> dict:
  others = other_piece(clips)
  pieces = [c["piece"] for c in clips]
  values = {}  # (source, pairing) -> {measure: [n]}
  for source, p_key, c_key in (("audio", "prompt", "continuation"),
                               ("midi", "prompt_notes", "continuation_notes")):
    for pairing in ("true", "other"):
      rows = [music.structure_measures(c[p_key], clips[i if pairing == "true" else j][c_key])
              for i, (c, j) in enumerate(zip(clips, others))]
      values[source, pairing] = {m: np.array([r[m] for r in rows]) for m in music.MEASURES}
  out = {}
  for m in music.MEASURES:
    out[m] = {"audio": _summary(values["audio", "true"][m], values["audio", "other"][m], pieces),
              "midi": _summary(values["midi", "true"][m], values["midi", "other"][m], pieces),
              "audio_vs_midi_r": _pearson(
                  np.concatenate([values["audio", k][m] for k in ("true", "other")]),
                  np.concatenate([values["midi", k][m] for k in ("true", "other")]))}
  return out


def descriptor_agreement(clips: list[dict]) -> dict:
  """Audio against notes, per clip segment (prompts and continuations)."""
  pairs = [(c[k], c[k + "_notes"]) for c in clips for k in ("prompt", "continuation")]
  return {
      "pcp_r_mean": float(np.mean([_pearson(a.pitch_class_profile, n.pitch_class_profile)
                                   for a, n in pairs])),
      "onset_rate_r": _pearson([a.onset_rate for a, _ in pairs], [n.onset_rate for _, n in pairs]),
      "onset_rate_ratio_median": float(np.median([a.onset_rate / max(n.onset_rate, 1e-9)
                                                  for a, n in pairs])),
      "mean_pitch_r": _pearson([a.mean_pitch for a, _ in pairs], [n.mean_pitch for _, n in pairs]),
      "mean_pitch_offset": float(np.mean([a.mean_pitch - n.mean_pitch for a, n in pairs])),
      "same_key_share": float(np.mean([music.estimate_key(a) == music.estimate_key(n)
                                       for a, n in pairs])),
      "segments": len(pairs)}


def _ci(ci) -> str:
  return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def markdown(results: dict) -> str:
  r = results
  lines = [f"Held-out `synthetic_piano` ({r['build']}, splits {r['splits']}): {r['prompts']} "
           f"prompts of {r['prompt_seconds']:g} s from {r['pieces']} pieces, continuations of "
           f"{r['continuation_seconds']:g} s. true = the piece's own continuation, other = "
           "another piece's. Higher = more alike for every measure.", "",
           "| measure | true | other | true - other [95% CI, prompts] | CI over pieces | "
           "true wins | MIDI: true - other | MIDI: true wins | audio vs MIDI r |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name, m in r["measures"].items():
    a, n = m["audio"], m["midi"]
    lines.append(f"| {name} | {a['true_mean']:.3f} | {a['other_mean']:.3f} | "
                 f"{a['difference']:+.3f} {_ci(a['ci'])} | {_ci(a['ci_over_pieces'])} | "
                 f"{a['true_wins']:.0%} | {n['difference']:+.3f} {_ci(n['ci'])} | "
                 f"{n['true_wins']:.0%} | {m['audio_vs_midi_r']:.2f} |")
  d = r["descriptors"]
  lines += ["", f"Audio against MIDI notes, per segment ({d['segments']} prompts and "
            "continuations):", "",
            f"- pitch-class profile: mean correlation {d['pcp_r_mean']:.2f};",
            f"- same estimated key (Krumhansl-Kessler): {d['same_key_share']:.0%};",
            f"- onset rate: r = {d['onset_rate_r']:.2f}, audio / MIDI median "
            f"{d['onset_rate_ratio_median']:.2f};",
            f"- mean pitch: r = {d['mean_pitch_r']:.2f}, audio - MIDI "
            f"{d['mean_pitch_offset']:+.1f} semitones on average."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  t = time.perf_counter()
  try:
    clips = load_clips(args)
    results = {"corpus": "synthetic_piano",
               "build": os.path.basename(os.path.dirname(corpora.corpus_dir(
                   "synthetic_piano", args.data_dir, args.config_name))),
               "splits": args.splits, "prompt_seconds": args.prompt_seconds,
               "continuation_seconds": args.continuation_seconds, "prompts": len(clips),
               "pieces": len({c["piece"] for c in clips}),
               "measures": measure(clips), "descriptors": descriptor_agreement(clips)}
  except AudioLMError as e:
    print(f"piano_measures: error: {e}", file=sys.stderr)
    return 1
  results["seconds"] = round(time.perf_counter() - t, 1)
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "piano_measures.json"), "w") as f:
    json.dump(results, f, indent=2)
  table = markdown(results)
  with open(os.path.join(args.out_dir, "piano_measures.md"), "w") as f:
    f.write(table)
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
