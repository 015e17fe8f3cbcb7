"""The recogniser's own floor: corpus WER and CER of pocketsphinx on the ORIGINAL audio.

    python experiments/asr_floor.py --data_dir data [--max_utterances 0] [--tune]

Everything a corpus recogniser learns comes from the `train` split of `synthetic_speech`
(sentences never read in `validation` or `test`); its settings were chosen on `validation` only
(`--tune` reruns that search). Systems, each scored on `validation`, `test` and
`test_unseen_speakers` (test sentences read by speakers never heard in training):

- `general`: `PocketSphinxASR()`, pocketsphinx's bundled models as they come;
- `domain_lm`: bundled acoustic model + the domain trigram (`build_domain_lm` on the training
  transcripts, mixed with the bundled general model);
- `adapted_am`: the acoustic model MAP-adapted on the training clips (`adapt_acoustic_model`)
  + the bundled general trigram: `PocketSphinxASR.for_corpus(transcripts, workdir,
  train_clips=clips)`, the recogniser to use;
- `adapted_am+domain_lm`: both.

All but `general` use `CORPUS_DECODER_OPTIONS`. The models go to `--workdir` (default
runs/asr_floor; the adaptation takes minutes and is reused when its inputs and settings are
unchanged). Prints the report as JSON and writes it to `--out` (default
experiments/results/asr_floor.json, or asr_floor_tuning.json with --tune). Pocketsphinx runs in
this one process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from audiolm_jax.data import corpora
from audiolm_jax.data.corpora.text import normalize_transcript
from audiolm_jax.eval import asr, ngram

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SPLITS = ("validation", "test", "test_unseen_speakers")
SYSTEMS = ("general", "domain_lm", "adapted_am", "adapted_am+domain_lm")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--corpus", default="synthetic_speech")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--config_name", default=None, help="which build of the corpus (e.g. tiny)")
  p.add_argument("--workdir", default="runs/asr_floor", help="where the built models go")
  p.add_argument("--splits", default=",".join(SPLITS))
  p.add_argument("--systems", default=",".join(SYSTEMS))
  p.add_argument("--max_utterances", type=int, default=0,
                 help="every k-th utterance so that about N are scored (0 = all)")
  p.add_argument("--tune", action="store_true",
                 help="search language-model and decoder settings on `validation` instead")
  p.add_argument("--out", default=None, help="the JSON report (default in experiments/results)")
  return p.parse_args(argv)


class _Clips:
  """A split's waveforms, read on demand (the adaptation iterates them several times)."""

  def __init__(self, source):
    self._source = source

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i):
    return self._source[i]["audio"]


def load(args, split: str):
  source = corpora.data_source(args.corpus, split, args.data_dir, args.config_name)
  n = len(source)
  step = 1 if args.max_utterances <= 0 else max(1, n // args.max_utterances)
  index = list(range(0, n, step))
  transcripts = [source[i]["transcript"].decode() for i in index]
  return source, index, transcripts


def score(recognizer: asr.PocketSphinxASR, source, index, transcripts) -> dict:
  start = time.time()
  hyps = [recognizer.transcribe(source[i]["audio"]) for i in index]
  return {"wer": round(asr.word_error_rate(transcripts, hyps), 4),
          "cer": round(asr.character_error_rate(transcripts, hyps), 4),
          "utterances": len(index), "seconds": round(time.time() - start, 1),
          "examples": [{"ref": r, "hyp": h} for r, h in list(zip(transcripts, hyps))[:3]]}


def train_split(args):
  source, _, _ = load(argparse.Namespace(**{**vars(args), "max_utterances": 0}), "train")
  return source, [source[i]["transcript"].decode() for i in range(len(source))]


def build(args, log=print) -> dict:
  """Paths of the domain language model and the adapted acoustic model (training data only)."""
  train, transcripts = train_split(args)
  start = time.time()
  asr.PocketSphinxASR.for_corpus(transcripts, args.workdir, train_clips=_Clips(train),
                                 language_model="domain", log=lambda l: log(f"adapt: {l}"))
  return {"language_model": os.path.join(args.workdir, "domain_lm.arpa"),
          "acoustic_model": os.path.join(args.workdir, "acoustic_model"),
          "train_clips": len(train), "train_sentences": len(set(transcripts)),
          "build_seconds": round(time.time() - start, 1)}


def make(system: str, models: dict, **options) -> asr.PocketSphinxASR:
  if system == "general":
    return asr.PocketSphinxASR(**options)
  lm = models["language_model"] if system.endswith("domain_lm") else None
  am = models["acoustic_model"] if system.startswith("adapted_am") else None
  return asr.PocketSphinxASR(language_model=lm, acoustic_model=am,
                             **{**asr.CORPUS_DECODER_OPTIONS, **options})


def perplexity(logprob, sentences, vocabulary=None) -> float:
  """Per-word perplexity (</s> included) over the words a model knows (those in `vocabulary`,
  if given: an `NGramLM` would score the others as <unk>)."""
  total, count = 0.0, 0
  for s in sentences:
    words = [ngram.BOS] + s.split() + [ngram.EOS]
    for i in range(1, len(words)):
      if vocabulary is not None and words[i] not in vocabulary:
        continue
      lp = logprob(words[i], tuple(words[max(0, i - 2):i]))
      if lp > -math.inf:
        total, count = total + lp, count + 1
  return round(10 ** (-total / max(1, count)), 2)


def decoder_options(scale: float, wip: float) -> dict:
  """Pocketsphinx's three language weights (6.5, 8.5, 9.5 by default) scaled together."""
  return {"lw": round(6.5 * scale, 3), "fwdflatlw": round(8.5 * scale, 3),
          "bestpathlw": round(9.5 * scale, 3), "wip": wip}


def tune(args, models: dict) -> dict:
  """The searches behind the defaults, on `validation` only.

  1. Language model, by perplexity of the validation transcripts: the general trigram; exact
     mixtures lambda P_domain + (1 - lambda) P_general (what the domain trigram could add at
     best); the ARPA mixtures `build_domain_lm` writes, over its mixture settings.
  2. Decoding with the adapted acoustic model: pocketsphinx's language weights (scaled) and
     word insertion penalty with the general trigram, then the best ARPA mixture.
  """
  source, index, refs = load(args, "validation")
  sentences = list(dict.fromkeys(normalize_transcript(t) for t in refs))
  _, train_text = train_split(args)
  general = ngram.BundledLM()
  domain = ngram.domain_ngram(train_text, general_weight=0.0)
  report = {"split": "validation", "utterances": len(index), "sentences": len(sentences)}

  def exact(lam):
    def logprob(w, h):
      p = (1 - lam) * 10 ** general.logprob(w, h)
      if (w,) in domain.entries[0]:
        p += lam * 10 ** domain.logprob(w, h)
      return math.log10(p) if p > 0 else -math.inf
    return logprob

  report["perplexity_exact_mixture"] = {lam: perplexity(exact(lam), sentences)
                                        for lam in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)}
  print(json.dumps(report["perplexity_exact_mixture"]), flush=True)
  arpa = []
  for g, v, b in ((0.7, 60000, 3000), (0.9, 60000, 3000), (0.95, 60000, 3000),
                  (0.9, 60000, 6000), (0.9, 60000, 0)):
    options = {"general_weight": g, "general_vocabulary": v, "general_bigram_vocabulary": b}
    model = ngram.domain_ngram(train_text, general_lm=general, **options)
    known = set(model.vocabulary) - {ngram.UNK}
    arpa.append({**options, "perplexity": perplexity(model.logprob, sentences, known),
                 "words_scored": sum(w in known for s in sentences for w in s.split())})
    print(json.dumps(arpa[-1]), flush=True)
  report["perplexity_arpa_mixture"] = arpa
  best_lm = min(arpa, key=lambda r: r["perplexity"])
  best_lm = {k: v for k, v in best_lm.items() if k.startswith("general")}
  lm_path = ngram.build_domain_lm(train_text, os.path.join(args.workdir, "tune_lm.arpa"),
                                general_lm=general, **best_lm)
  rows = []
  for lm, scale, wip in [(None, s, w) for s in (0.65, 0.8, 1.0, 1.25) for w in (0.2, 0.65)] + [
      (lm_path, 0.8, 0.2), (lm_path, 1.0, 0.65)]:
    recognizer = asr.PocketSphinxASR(language_model=lm, acoustic_model=models["acoustic_model"],
                                     **decoder_options(scale, wip))
    row = {"lm": "general" if lm is None else best_lm, "decoder": decoder_options(scale, wip),
           **score(recognizer, source, index, refs)}
    row.pop("examples")
    rows.append(row)
    print(json.dumps(row), flush=True)
  report["decoding"] = rows
  report["best"] = min(rows, key=lambda r: r["wer"])
  return report


def main(argv=None) -> dict:
  args = parse_args(argv if argv is not None else sys.argv[1:])
  models = build(args)
  if args.tune:
    report = {"models": models, "tuning": tune(args, models)}
    out = args.out or os.path.join(RESULTS_DIR, "asr_floor_tuning.json")
  else:
    results = {}
    for split in args.splits.split(","):
      source, index, refs = load(args, split)
      for system in args.systems.split(","):
        row = score(make(system, models), source, index, refs)
        results.setdefault(system, {})[split] = row
        print(f"{system:>20s} {split:<22s} WER {row['wer']:.3f}  CER {row['cer']:.3f}  "
              f"[{row['utterances']} utterances, {row['seconds']:.0f} s]", file=sys.stderr,
              flush=True)
    report = {"corpus": args.corpus, "models": models,
              "settings": {"general_weight": ngram.GENERAL_WEIGHT,
                           "general_vocabulary": ngram.GENERAL_VOCABULARY,
                           "general_bigram_vocabulary": ngram.GENERAL_BIGRAM_VOCABULARY,
                           "corpus_decoder_options": asr.CORPUS_DECODER_OPTIONS},
              "results": results}
    out = args.out or os.path.join(RESULTS_DIR, "asr_floor.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  print(json.dumps(report, indent=1))
  return report


if __name__ == "__main__":
  main()
