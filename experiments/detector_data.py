"""Audio for the detector: codec resyntheses of real utterances and AudioLM continuations.

    python experiments/detector_data.py --run runs/demo --data_dir data --out runs/detector_data
    python experiments/detector_data.py --codec runs/codec --data_dir data --out DIR  # real only

For each utterance at least `--prompt_seconds` + `--min_rest_seconds` long, AudioLM (`--run`,
a run directory in the demo's layout) continues its first `--prompt_seconds` to
`--total_seconds`; the generated part (from the end of the prompt's last frame) is class 1,
"generated". Class 0, "real", is the same utterance passed through the same codec, cut at the
same sample: the hard negative of the AudioLM paper (both carry the codec's artefacts, and say
the same kind of thing in the same voice). With `--codec` and no `--run` only the real class
is written.

Sets, each `NAME=CORPUS[/BUILD]:SPLIT`: `--train` and `--validation` become the detector's
training data, `--heldout` its held-out sets (defaults: the built-in corpus's train and
validation splits; its `test_unseen_speakers` split, voices and sentences the detector never
hears, and the real LibriSpeech test-other excerpts, 8 other speakers). A training or
validation utterance whose speaker (in the same corpus) or transcript occurs in a held-out set
is left out and counted, so held-out accuracy is on speakers and sentences never trained on.

Writes (`SET` = the set's name, `SPK` its speaker):

    OUT/real/{train,validation}/SET/SPK/INDEX.wav        class 0, for the detector's training
    OUT/generated/{train,validation}/SET/SPK/INDEX.wav   class 1
    OUT/heldout/SET/{real,generated}/SPK/INDEX.wav       scored by detector_accuracy.py
    OUT/detector_data.json                               counts, what was left out, settings

`audiolm-jax data build audio_folder --source OUT/real --layout librispeech --name
detector_real` (and the same for `generated`) makes the corpora the `detector` task reads
(`experiments/configs/detector.py`: its docstring has the whole sequence).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import NamedTuple

import jax
import numpy as np

from audiolm_jax import pretrained, tokenize
from audiolm_jax.audiolm import AudioLM
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, write_wav
from audiolm_jax.data.prompts import speaker_of
from audiolm_jax.errors import AudioLMError, ConfigError, DataError
from audiolm_jax.frames import SAMPLES_PER_FRAME, num_frames

DEFAULT_TRAIN = ("synthetic_train=synthetic_speech:train",)
DEFAULT_VALIDATION = ("synthetic_validation=synthetic_speech:validation",)
DEFAULT_HELDOUT = ("synthetic_unseen=synthetic_speech:test_unseen_speakers",
                   "librispeech_test_other=audio_folder/librispeech_excerpts:test")
ROLES = ("train", "validation", "heldout")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--run", default=None, metavar="RUN_DIR",
                 help="a trained AudioLM (demo layout); its codec makes the real class")
  p.add_argument("--codec", default=None, metavar="RUN",
                 help="without --run: a codec run, and only the real class is written")
  p.add_argument("--out", required=True, metavar="DIR", help="where the folders are written")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  for role, default in (("train", DEFAULT_TRAIN), ("validation", DEFAULT_VALIDATION),
                        ("heldout", DEFAULT_HELDOUT)):
    p.add_argument(f"--{role}", action="append", default=None,
                   metavar="NAME=CORPUS[/BUILD]:SPLIT",
                   help=f"a {role} set (repeatable); default: {', '.join(default)}")
  p.add_argument("--max_utterances", type=int, default=200,
                 help="at most N utterances of each set (0 = all)")
  p.add_argument("--prompt_seconds", type=float, default=3.0, help="prompt length (paper: 3)")
  p.add_argument("--total_seconds", type=float, default=10.0,
                 help="prompt + continuation (paper: 10)")
  p.add_argument("--min_rest_seconds", type=float, default=1.0,
                 help="utterances need this much audio after the prompt")
  p.add_argument("--batch_size", type=int, default=8, help="prompts continued together")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  args.train = args.train or list(DEFAULT_TRAIN)
  args.validation = args.validation or list(DEFAULT_VALIDATION)
  args.heldout = args.heldout or list(DEFAULT_HELDOUT)
  return args


class DataSet(NamedTuple):
  """One `NAME=CORPUS[/BUILD]:SPLIT` set of a role."""
  role: str
  name: str
  corpus: str
  build: str | None
  split: str

  @property
  def corpus_label(self) -> str:
    return self.corpus + (f"/{self.build}" if self.build else "")


def parse_set(role: str, spec: str) -> DataSet:
  name, sep, rest = spec.partition("=")
  source, colon, split = rest.partition(":")
  corpus, _, build = source.partition("/")
  if not (sep and colon and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and corpus and split):
    raise ConfigError(f"--{role} {spec!r}: expected NAME=CORPUS[/BUILD]:SPLIT (NAME: letters, "
                      "digits, '_', '-', '.')")
  return DataSet(role, name, corpus, build or None, split)


class Utterance(NamedTuple):
  """One record of a set: its index in the split, speaker, transcript and audio [S]."""
  index: int
  speaker: str
  transcript: str
  wav: np.ndarray


def read_set(data: DataSet, data_dir: str | None, min_samples: int,
             limit: int) -> tuple[list[Utterance], int]:
  """The set's first `limit` utterances of at least `min_samples`, and how many were short."""
  source = corpora.data_source(data.corpus, data.split, data_dir, data.build)
  out, short = [], 0
  for i in range(len(source)):
    if limit and len(out) == limit:
      break
    record = source[i]
    pcm = np.asarray(record["audio"])
    if pcm.size < min_samples:
      short += 1
      continue
    text = record.get("transcript", b"")
    out.append(Utterance(i, speaker_of(record),
                         text.decode() if isinstance(text, bytes) else str(text),
                         from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32)))
  return out, short


def _normalised(text: str) -> str:
  return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _folder_name(text: str) -> str:
  """A speaker as one safe path component."""
  return re.sub(r"[^A-Za-z0-9_-]+", "_", text) or "unknown"


def continuations(lm: AudioLM, prompts: list[np.ndarray], seconds: float, seed: int,
                  batch_size: int) -> tuple[list[np.ndarray], int]:
  """The generated part of each prompt's continuation, and the sample where it starts."""
  out, start = [], 0
  for b in range(0, len(prompts), batch_size):
    batch = np.stack(prompts[b:b + batch_size])                                  # [B, S]
    gen = lm.generate(batch, seconds=seconds, rng=jax.random.key(seed + b))
    start = gen.continuation_start
    out += [row[start:] for row in gen.audio]
  return out, start


def make_set(data: DataSet, utterances: list[Utterance], codec, lm: AudioLM | None,
             samples_per_frame: int, args, seed: int) -> dict:
  """Writes one set's real (and generated) clips under `args.out`; returns their counts."""
  rate = codec.sample_rate
  prompt_len = int(round(args.prompt_seconds * rate))
  start = num_frames(prompt_len, samples_per_frame) * samples_per_frame  # generated from here
  wavs = [u.wav for u in utterances]
  codes = tokenize.acoustic_tokens(codec, wavs, args.batch_size,
                                   samples_per_frame=samples_per_frame)
  real = [d[start:len(w)] for d, w in zip(tokenize.decode_clips(codec, codes, args.batch_size),
                                          wavs)]
  classes = {"real": real}
  if lm is not None:
    generated, gen_start = continuations(lm, [w[:prompt_len] for w in wavs],
                                         args.total_seconds, seed, args.batch_size)
    assert gen_start == start, (gen_start, start)  # Both classes start at the same sample.
    classes["generated"] = generated
  for label, clips in classes.items():
    for u, clip in zip(utterances, clips):
      if data.role == "heldout":
        folder = os.path.join(args.out, "heldout", data.name, label)
      else:
        folder = os.path.join(args.out, label, data.role, data.name)
      write_wav(os.path.join(folder, _folder_name(u.speaker), f"{u.index:06d}.wav"), clip, rate)
  return {label: len(clips) for label, clips in classes.items()}


def write_sets(args) -> dict:
  """Every set's clips; returns the summary (counts, what was left out, skipped sets)."""
  if (args.run is None) == (args.codec is None):
    raise ConfigError("give --run (AudioLM: both classes) or --codec (the real class only); "
                      "with --run the real class uses the run's own codec")
  if not 0 < args.prompt_seconds < args.total_seconds:
    raise ConfigError(f"need 0 < --prompt_seconds < --total_seconds, got "
                      f"{args.prompt_seconds} and {args.total_seconds}")
  sets = [parse_set(role, spec) for role in ROLES for spec in getattr(args, role)]
  names = [s.name for s in sets]
  if len(set(names)) != len(names):
    raise ConfigError(f"set names must differ: {names}")
  lm = AudioLM.from_run_dir(args.run) if args.run else None
  codec = lm.codec if lm is not None else pretrained.load_codec(args.codec)
  spf = lm.samples_per_frame if lm is not None else SAMPLES_PER_FRAME
  min_samples = int(round((args.prompt_seconds + args.min_rest_seconds) * codec.sample_rate))
  summary = {"settings": dict(vars(args)), "sets": {}, "skipped": {}}
  read = {}
  for s in sets:
    try:
      read[s.name] = read_set(s, args.data_dir, min_samples, args.max_utterances)
    except DataError as e:  # e.g. the LibriSpeech excerpts not built here
      summary["skipped"][s.name] = str(e)
      print(f"{s.name}: skipped ({e})", flush=True)
  sets = [s for s in sets if s.name in read]
  if not any(s.role == "train" for s in sets):
    raise ConfigError("no --train set could be read")
  heldout = [s for s in sets if s.role == "heldout"]
  heldout_speakers = {(s.corpus_label, u.speaker) for s in heldout for u in read[s.name][0]
                      if u.speaker}
  heldout_texts = {_normalised(u.transcript) for s in heldout for u in read[s.name][0]
                   if _normalised(u.transcript)}
  for k, s in enumerate(sets):
    utterances, short = read[s.name]
    kept = utterances if s.role == "heldout" else [
        u for u in utterances if (s.corpus_label, u.speaker) not in heldout_speakers
        and _normalised(u.transcript) not in heldout_texts]
    if not kept:
      raise ConfigError(f"{s.name}: no utterance of {s.corpus_label}:{s.split} is long enough "
                        "and unheard in the held-out sets")
    counts = make_set(s, kept, codec, lm, spf, args, seed=args.seed + 100_000 * k)
    summary["sets"][s.name] = {
        "role": s.role, "source": f"{s.corpus_label}:{s.split}", "clips": counts,
        "speakers": len({u.speaker for u in kept}), "too_short": short,
        "left_out_heard_in_heldout": len(utterances) - len(kept)}
    print(f"{s.role:10s} {s.name:24s} {counts} from {len(kept)} utterances "
          f"({len(utterances) - len(kept)} left out: speaker or sentence held out; "
          f"{short} too short)", flush=True)
  return summary


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    summary = write_sets(args)
  except AudioLMError as e:
    print(f"detector_data: error: {e}", file=sys.stderr)
    return 1
  with open(os.path.join(args.out, "detector_data.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
