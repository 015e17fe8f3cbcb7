"""Do semantic tokens follow what is said rather than who says it? (AudioLM section 3.2)

On held-out speech of `synthetic_speech` (test sentences are never read in training; each is
read by 3 speakers, and once more by an unseen speaker in `test_unseen_speakers`), every
tokenizer given is measured by (`audiolm_jax/eval/token_metrics.py` defines each exactly):

  invariance  mean normalised edit distance (consecutive duplicates removed) between
              - the same sentence read by two different speakers ("same text"), and
              - two different sentences read by the same speaker ("same voice");
              content tokens: same text << same voice.
  ABX         triplets (A, B, X): A = X's sentence by another speaker, B = another sentence
              by X's speaker; the share of triplets where X is closer to A (ties count 1/2).
              0.5 = chance, 1 = content always wins, < 0.5 = the voice wins.
  speaker     accuracy of a logistic-regression speaker classifier on token histograms,
              trained on `train` utterances, tested on `test` (chance = majority speaker).

Both invariance and ABX are reported for the seen speakers of `test` and for the unseen
speakers (pairs and X drawn from `test_unseen_speakers`, A from `test`).

    python experiments/semantic_tokens.py --data_dir data \
        --tokenizer w2v-BERT=runs/semantic_tokenizer --tokenizer MFCC=runs/mfcc_tokenizer \
        [--codec runs/codec --codec_levels 4] [--max_utterances 300]

`--tokenizer [NAME=]DIR` (repeatable) is any `audiolm-jax tokenize fit-kmeans` output (its
w2v-BERT is the one it recorded; `--w2v_bert RUN` overrides). `--codec` adds SoundStream's
first `--codec_levels` RVQ levels, flattened frame by frame with per-level offsets as the
coarse stage reads them. Writes `semantic_tokens.json` and `semantic_tokens.md` to
`--out_dir` (default experiments/results).
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
from audiolm_jax.errors import AudioLMError, ConfigError
from audiolm_jax.eval import token_metrics as tm
from audiolm_jax.pretrained import load_codec, load_semantic_tokenizer
from audiolm_jax.tokenize import acoustic_tokens, semantic_tokens

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TRAIN, TEST, UNSEEN = "train", "test", "test_unseen_speakers"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tokenizer", action="append", default=[], metavar="[NAME=]DIR",
                 help="a semantic tokenizer directory (repeatable)")
  p.add_argument("--w2v_bert", default=None, metavar="RUN",
                 help="the w2v-BERT of the w2v-BERT tokenizers (default: the recorded one)")
  p.add_argument("--codec", default=None, metavar="RUN", help="a trained SoundStream workdir")
  p.add_argument("--codec_levels", type=int, default=4, help="RVQ levels of the codec tokens")
  p.add_argument("--corpus", default="synthetic_speech")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--config_name", default=None, help="which build (e.g. tiny)")
  p.add_argument("--max_utterances", type=int, default=0,
                 help="at most this many utterances per split (0 = all): whole test "
                 "sentences first, a seeded sample of train")
  p.add_argument("--batch_size", type=int, default=8, help="utterances tokenized together")
  p.add_argument("--seed", type=int, default=0, help="the train sample")
  p.add_argument("--out_dir", default=RESULTS_DIR)
  return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def load_split(args, split: str, keep_sentences=None) -> dict:
  """Waveforms and labels of a split: `{"wavs", "speaker_ids", "sentence_ids"}`.

  `train` keeps a seeded sample of `max_utterances`; other splits are ordered by sentence and
  keep whole sentences up to `max_utterances`; `keep_sentences` keeps only those sentences.
  """
  source = corpora.data_source(args.corpus, split, args.data_dir, args.config_name)
  cap = args.max_utterances
  indices = range(len(source))
  if split == TRAIN and cap and len(source) > cap:
    indices = sorted(np.random.default_rng(args.seed).choice(len(source), cap, replace=False))
  records = [source[int(i)] for i in indices]
  for r in records:
    if "speaker_id" not in r or "sentence_id" not in r:
      raise ConfigError(f"{args.corpus}/{split}: records need speaker_id and sentence_id")
  if keep_sentences is not None:
    records = [r for r in records if int(r["sentence_id"]) in keep_sentences]
  if split != TRAIN:
    records.sort(key=lambda r: (int(r["sentence_id"]), int(r["speaker_id"])))
    if cap and len(records) > cap:
      last = records[cap - 1]["sentence_id"]
      cut_through = records[cap]["sentence_id"] == last  # The cap splits this sentence:
      whole = [r for r in records[:cap] if not (cut_through and r["sentence_id"] == last)]
      records = whole or records[:cap]  # leave it out, unless it is the only one.
  return {"wavs": [from_int16(np.asarray(r["audio"])) for r in records],
          "speaker_ids": np.array([int(r["speaker_id"]) for r in records], np.int64),
          "sentence_ids": np.array([int(r["sentence_id"]) for r in records], np.int64)}


# --------------------------------------------------------------------------- tokenizers


def semantic_tokenizers(args) -> dict:
  """`{name: (tokenize(wavs) -> seqs, vocab_size, description)}` of every --tokenizer."""
  out = {}
  for spec in args.tokenizer:
    name, _, directory = spec.rpartition("=")
    tokenizer = load_semantic_tokenizer(directory, args.w2v_bert)
    name = name or tokenizer.extractor.name
    if name in out:
      raise ConfigError(f"--tokenizer: two tokenizers named {name!r}; name them NAME=DIR")

    def tokenize(wavs, tokenizer=tokenizer):
      return semantic_tokens(tokenizer, wavs, args.batch_size)

    out[name] = (tokenize, tokenizer.num_clusters,
                 f"{tokenizer.extractor.name}, K={tokenizer.num_clusters}, 25 Hz ({directory})")
  return out


def codec_tokenizer(args):
  """`(name, (tokenize, vocab_size, description))` of --codec."""
  codec = load_codec(args.codec)
  levels = args.codec_levels
  if not 1 <= levels <= codec.num_quantizers:
    raise ConfigError(f"--codec_levels {levels} not in [1, {codec.num_quantizers}]")
  k = codec.config.codebook_size
  offsets = np.arange(levels) * k

  def tokenize(wavs):
    # Clips padded by the frame rule: exactly 2 codec frames per 25 Hz frame.
    codes = acoustic_tokens(codec, wavs, args.batch_size, n_q=levels)
    return [(c + offsets).reshape(-1) for c in codes]  # [T50 * levels] row-major

  name = f"SoundStream q1..q{levels}"
  return name, (tokenize, levels * k, f"RVQ levels 1-{levels} of {k} codes, "
                f"{codec.frame_rate:g} Hz, flattened ({args.codec})")


# --------------------------------------------------------------------------- metrics


def measure(seqs: dict, splits: dict, vocab_size: int) -> dict:
  """The metrics of one tokenizer given its sequences per split."""
  test, unseen = splits[TEST], splits[UNSEEN]
  out = {}
  d = tm.distance_matrix(seqs[TEST], tm.related_pairs(test["sentence_ids"],
                                                       test["speaker_ids"]))
  out["test"] = {"invariance": tm.speaker_invariance(d, test["sentence_ids"],
                                                     test["speaker_ids"]),
                 "abx": tm.abx_accuracy(d, test["sentence_ids"], test["speaker_ids"])}
  if unseen["wavs"]:
    both = seqs[TEST] + seqs[UNSEEN]
    sent = np.concatenate([test["sentence_ids"], unseen["sentence_ids"]])
    spk = np.concatenate([test["speaker_ids"], unseen["speaker_ids"]])
    anchors = np.arange(len(both)) >= len(seqs[TEST])
    d = tm.distance_matrix(both, tm.related_pairs(sent, spk) & (anchors[:, None] |
                                                                 anchors[None, :]))
    out["test_unseen_speakers"] = {"invariance": tm.speaker_invariance(d, sent, spk, anchors),
                                   "abx": tm.abx_accuracy(d, sent, spk, anchors)}
  out["speaker_probe"] = tm.speaker_classification(
      seqs[TRAIN], splits[TRAIN]["speaker_ids"], seqs[TEST], test["speaker_ids"], vocab_size)
  return out


def _json_safe(x):
  """NaN (a metric over nothing) as null, so the file is standard JSON."""
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, float) and np.isnan(x):
    return None
  return x


def _fmt(x, digits=3):
  return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def markdown(results: dict) -> str:
  lines = [
      "# Semantic tokens: content versus voice",
      "",
      f"Corpus `{results['corpus']}` ({results['build']} build); "
      + ", ".join(f"{k}: {v} utterances" for k, v in results["utterances"].items()) + ".",
      "NED = normalised edit distance after removing consecutive duplicates (lower = more "
      "alike). ABX: 0.5 chance, 1 = same text always closer than same voice. Speaker probe: "
      "logistic regression on token histograms (train -> test).",
      "",
      "| tokens | NED same text, other voice | NED other text, same voice | ABX | "
      "ABX unseen speakers | speaker probe acc. (chance) |",
      "|---|---|---|---|---|---|",
  ]
  for name, r in results["tokenizers"].items():
    inv, abx = r["test"]["invariance"], r["test"]["abx"]
    unseen = r.get("test_unseen_speakers", {}).get("abx", {}).get("accuracy")
    probe = r["speaker_probe"]
    lines.append(f"| {name} | {_fmt(inv['same_sentence_other_speaker'])} | "
                 f"{_fmt(inv['other_sentence_same_speaker'])} | {_fmt(abx['accuracy'])} | "
                 f"{_fmt(unseen)} | {_fmt(probe['accuracy'], 2)} "
                 f"({_fmt(probe['chance'], 2)}) |")
  lines += ["", "Tokens:"] + [f"- {n}: {r['description']}"
                              for n, r in results["tokenizers"].items()]
  for name, why in results["skipped"].items():
    lines.append(f"- {name}: skipped ({why})")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    tokenizers = semantic_tokenizers(args)
    skipped = {}
    if args.codec:
      codec = codec_tokenizer(args)
      tokenizers[codec[0]] = codec[1]
    if not tokenizers:
      raise ConfigError("nothing to measure: give --tokenizer DIR and/or --codec RUN")
    test = load_split(args, TEST)
    kept = set(test["sentence_ids"].tolist())
    splits = {TRAIN: load_split(args, TRAIN), TEST: test,
              UNSEEN: load_split(args, UNSEEN, keep_sentences=kept)}
    build = corpora.corpus_dir(args.corpus, args.data_dir, args.config_name)
    results = {"corpus": args.corpus, "build": os.path.basename(os.path.dirname(build)),
               "utterances": {k: len(v["wavs"]) for k, v in splits.items()},
               "tokenizers": {}, "skipped": skipped}
    for name, (tokenize, vocab_size, description) in tokenizers.items():
      t = time.perf_counter()
      seqs = {split: tokenize(s["wavs"]) if s["wavs"] else [] for split, s in splits.items()}
      results["tokenizers"][name] = {"description": description, "vocab_size": vocab_size,
                                     **measure(seqs, splits, vocab_size)}
      print(f"{name}: measured in {time.perf_counter() - t:.1f} s")
  except AudioLMError as e:
    print(f"semantic_tokens: error: {e}", file=sys.stderr)
    return 1
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "semantic_tokens.json"), "w") as f:
    json.dump(_json_safe(results), f, indent=2)
  table = markdown(results)
  with open(os.path.join(args.out_dir, "semantic_tokens.md"), "w") as f:
    f.write(table)
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
