"""AudioLM's speech tables in kind (Tables II and III): words, voice and content of every system.

    python experiments/speech_continuation.py --config experiments/configs/speech_continuation.py:cpu \
        --config.run_dir=runs/speech --config.data_dir=data

Systems (rows), on held-out sentences of the built-in corpus (`test`: speakers seen in
training; `test_unseen_speakers`) and on the real LibriSpeech `test-other` excerpts (8 speakers
never trained on):

- `original`: the recordings: the ceiling of every metric;
- `codec`: their codec resynthesis (all levels);
- `semantic_to_acoustic`: stages 2 + 3 from the recordings' true semantic tokens, no acoustic
  prompt (Table II: should keep the words, not the voice);
- `continuation`: a 3 s prompt continued to 10 s by all three stages (Table III), scored on the
  generated part only;
- `acoustic_only`: the same prompts continued by the acoustic-only ablation.

Metrics, each with a 95% bootstrap interval over utterances or prompts:
- `wer`, `cer`: pocketsphinx adapted to the corpus's *training* split (`eval/asr.py`,
  `PocketSphinxASR.for_corpus`), for systems that say a known text (a continuation has no
  reference transcript: its WER is undefined and not reported);
- `speaker_accuracy`: nearest-centroid speaker identification with Resemblyzer's pretrained
  encoder (`eval/speaker.py`) among the speakers of the data set, centroids from each
  speaker's first utterances (never prompted); for continuations the target is the prompt's
  speaker;
- `speaker_similarity`, `speaker_similarity_others`: cosine to the target speaker's centroid
  and mean cosine to the other centroids;
- `content_perplexity`: the audio re-tokenized into semantic ids and scored by the semantic LM
  (perplexity per token): a content measure that needs no transcript; for the original it is
  also the semantic LM's held-out perplexity.

Writes `speech_continuation.json` (`{"speaker_metric": {...}, "rows": [...]}`; a row holds
`system`, `data` (synthetic or librispeech), `split`, `set` (data/split), `n` and its metrics
with `<name>_ci` intervals), `speech_continuation.md`, `speech_continuation.png` (bars with
intervals) and example wavs in `speech_examples/` to the output folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import time

import jax
import numpy as np

from audiolm_jax import config as config_lib
from audiolm_jax import pretrained, tokenize
from audiolm_jax.audiolm import AudioLM
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, write_wav
from audiolm_jax.data.prompts import speaker_of
from audiolm_jax.errors import AudioLMError, DataError, require_extra
from audiolm_jax.eval import speaker as speaker_lib
from audiolm_jax.eval.asr import character_error_rate, word_error_rate
from audiolm_jax.lm.scoring import semantic_nll

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SYSTEMS = ("original", "codec", "semantic_to_acoustic", "continuation", "acoustic_only")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="speech_continuation.py:cpu", metavar="FILE.py:VARIANT")
  overrides, rest = config_lib.split_override_args(argv)
  args = p.parse_args(rest)
  return config_lib.load_config(args.config, overrides)


# --------------------------------------------------------------------------- data


class DataSet:
  """One evaluation set: its utterances, their speakers, enrolment and prompt indices."""

  def __init__(self, name, corpus, build, split, data_dir, enrol_per_speaker, cfg):
    source = corpora.data_source(corpus, split, data_dir or None, build or None)
    self.name, self.rate = name, 16000
    self.wavs, self.speakers, self.texts = [], [], []
    for i in range(len(source)):
      record = source[i]
      pcm = np.asarray(record["audio"])
      self.wavs.append(from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32))
      self.speakers.append(speaker_of(record))
      text = record.get("transcript", b"")
      self.texts.append(text.decode() if isinstance(text, bytes) else str(text))
    by_speaker = collections.defaultdict(list)
    for i, s in enumerate(self.speakers):
      by_speaker[s].append(i)
    self.enrol = [i for s in sorted(by_speaker) for i in by_speaker[s][:enrol_per_speaker]]
    candidates = {s: [i for i in by_speaker[s][enrol_per_speaker:]
                      if len(self.wavs[i]) >= cfg.min_prompt_audio * self.rate]
                  for s in sorted(by_speaker)}
    self.prompts = []  # Round-robin over speakers, so every voice is prompted.
    while len(self.prompts) < cfg.num_prompts and any(candidates.values()):
      for s in sorted(candidates):
        if candidates[s] and len(self.prompts) < cfg.num_prompts:
          self.prompts.append(candidates[s].pop(0))
    if len({self.speakers[i] for i in self.enrol}) < 2 or not self.prompts:
      raise DataError(f"{name}: needs at least two speakers with enrolment and prompt "
                      "utterances")
    self.has_text = any(self.texts[i] for i in self.prompts)


def bootstrap_rate(numerators, denominators, samples=2000, seed=0):
  """95% interval of sum(numerators) / sum(denominators) by resampling items."""
  num, den = np.asarray(numerators, float), np.asarray(denominators, float)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(num), (samples, len(num)))
  ratios = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1)
  return [float(x) for x in np.percentile(ratios, [2.5, 97.5])]


def word_counts(refs, hyps, metric):
  """Per-utterance (errors, reference length) of a corpus error rate (WER or CER)."""
  out = []
  for r, h in zip(refs, hyps):
    rate = metric([r], [h])
    length = len(r.split()) if metric is word_error_rate else len(r.replace(" ", ""))
    out.append((rate * max(length, 1), max(length, 1)))
  return out


# --------------------------------------------------------------------------- scoring


class Scorer:
  """The metrics of one data set: speaker centroids, recogniser and semantic LM."""

  def __init__(self, data: DataSet, encoder, asr, lm: AudioLM):
    self.data, self.encoder, self.asr, self.lm = data, encoder, asr, lm
    enrol = encoder.embed_many([data.wavs[i] for i in data.enrol])
    self.enrol_labels = [data.speakers[i] for i in data.enrol]
    self.enrol_embeddings = enrol

  def row(self, system, audios, speakers, texts=None) -> dict:
    data, _, split = self.data.name.partition("/")
    row = {"system": system, "data": data, "split": split, "set": self.data.name,
           "n": len(audios)}
    emb = self.encoder.embed_many(audios)
    _, correct = speaker_lib.nearest_centroid_accuracy(self.enrol_embeddings, self.enrol_labels,
                                                       emb, speakers)
    sim = speaker_lib.speaker_similarity(self.enrol_embeddings, self.enrol_labels, emb, speakers)
    row["speaker_accuracy"] = float(np.mean(correct))
    row["speaker_accuracy_ci"] = list(speaker_lib.bootstrap_ci(correct.astype(float)))
    row["speaker_similarity"] = float(np.mean(sim.own))
    row["speaker_similarity_ci"] = list(speaker_lib.bootstrap_ci(sim.own))
    row["speaker_similarity_others"] = float(np.mean(sim.others))
    row["speaker_similarity_others_ci"] = list(speaker_lib.bootstrap_ci(sim.others))
    if texts is not None and self.asr is not None:
      hyps = [self.asr.transcribe(a) for a in audios]
      for key, metric in (("wer", word_error_rate), ("cer", character_error_rate)):
        row[key] = float(metric(texts, hyps))
        counts = word_counts(texts, hyps, metric)
        row[f"{key}_ci"] = bootstrap_rate([c[0] for c in counts], [c[1] for c in counts])
      row["transcripts_example"] = {"reference": texts[0], "hypothesis": hyps[0]}
    if self.lm.semantic_tokenizer is not None:
      ids = tokenize.semantic_tokens(self.lm.semantic_tokenizer, audios)
      nll = semantic_nll(self.lm.semantic_lm, ids)
      finite = nll[np.isfinite(nll)]
      row["content_perplexity"] = float(np.exp(finite.mean()))
      lo, hi = speaker_lib.bootstrap_ci(finite)
      row["content_perplexity_ci"] = [float(np.exp(lo)), float(np.exp(hi))]
    return row


def continue_prompts(lm: AudioLM, data: DataSet, cfg, seed_offset: int) -> list[np.ndarray]:
  """The generated part (after the prompt's last whole frame) of each prompt's continuation."""
  out = []
  n_prompt = int(round(cfg.prompt_seconds * data.rate))
  for k, i in enumerate(data.prompts):
    gen = lm.generate(data.wavs[i][:n_prompt], seconds=cfg.total_seconds,
                      rng=jax.random.key(cfg.seed + seed_offset + k))
    out.append(gen.audio[0, gen.continuation_start:])
  return out


def evaluate(cfg) -> dict:
  run_dir = os.path.abspath(cfg.run_dir)
  lm = AudioLM.from_run_dir(run_dir)
  ao_dir = cfg.acoustic_only_coarse or os.path.join(run_dir, "coarse_lm_acoustic_only")
  acoustic_only = None
  if os.path.isdir(ao_dir):
    acoustic_only = AudioLM(lm.codec, None, None, pretrained.load_stage(ao_dir, "coarse_lm"),
                            lm.fine_lm)
  else:
    print(f"acoustic_only: skipped ({ao_dir} not found)")
  encoder = speaker_lib.SpeakerEncoder()
  out_dir = cfg.out_dir or RESULTS_DIR
  asr = make_recognizer(cfg, os.path.join(out_dir, "asr") if not cfg.asr_workdir
                        else cfg.asr_workdir)
  sets = [(f"synthetic/{split}", cfg.corpus, cfg.corpus_build, split, cfg.enrol_per_speaker)
          for split in cfg.prompt_splits]
  if cfg.librispeech_build:
    sets.append(("librispeech/test-other", "audio_folder", cfg.librispeech_build, "test",
                 cfg.librispeech_enrol))
  rows, ceilings, example_dir = [], {}, os.path.join(out_dir, "speech_examples")
  os.makedirs(example_dir, exist_ok=True)
  for s, (name, corpus, build, split, enrol) in enumerate(sets):
    try:
      data = DataSet(name, corpus, build, split, cfg.data_dir, enrol, cfg)
    except DataError as e:
      print(f"{name}: skipped ({e})")
      continue
    t0 = time.time()
    scorer = Scorer(data, encoder, asr, lm)
    prompted = [data.wavs[i] for i in data.prompts]
    truth = [data.speakers[i] for i in data.prompts]
    texts = [data.texts[i] for i in data.prompts] if data.has_text else None
    audios = {"original": prompted}
    codes = tokenize.acoustic_tokens(lm.codec, prompted, samples_per_frame=lm.samples_per_frame)
    audios["codec"] = [d[:len(w)] for d, w in zip(tokenize.decode_clips(lm.codec, codes),
                                                   prompted)]
    n_s2a = min(cfg.semantic_to_acoustic, len(prompted))
    ids = tokenize.semantic_tokens(lm.semantic_tokenizer, prompted[:n_s2a])
    audios["semantic_to_acoustic"] = [
        lm.acoustic_from_semantic(x[None], rng=jax.random.key(cfg.seed + 1000 * s + j)).audio[0]
        for j, x in enumerate(ids)]
    audios["continuation"] = continue_prompts(lm, data, cfg, 100_000 * (s + 1))
    if acoustic_only is not None:
      audios["acoustic_only"] = continue_prompts(acoustic_only, data, cfg, 100_000 * (s + 1))
    for system in SYSTEMS:
      if system not in audios:
        continue
      batch = audios[system]
      known_text = texts[:len(batch)] if texts is not None and system in (
          "original", "codec", "semantic_to_acoustic") else None
      row = scorer.row(system, batch, truth[:len(batch)], known_text)
      rows.append(row)
      print(f"{name:28s} {system:22s} " + ", ".join(
          f"{k}={row[k]:.3f}" for k in ("wer", "cer", "speaker_accuracy", "speaker_similarity",
                                        "speaker_similarity_others", "content_perplexity")
          if k in row), flush=True)
      for j in range(min(cfg.examples, len(batch))):
        write_wav(os.path.join(example_dir, f"{name.replace('/', '_')}_{j}_{system}.wav"),
                  batch[j], data.rate)
    ceilings[name] = {"speakers": len(set(scorer.enrol_labels)),
                      "enrolment_utterances": len(data.enrol), "prompts": len(data.prompts),
                      "chance_accuracy": 1.0 / len(set(scorer.enrol_labels)),
                      "seconds": round(time.time() - t0, 1)}
  return {"speaker_metric": {
      "encoder": "Resemblyzer GE2E (pretrained, 256-d), cosine to speaker centroids",
      "sets": ceilings,
      "ceiling": {r["set"]: r["speaker_accuracy"] for r in rows if r["system"] == "original"}},
          "config": cfg.to_dict(), "rows": rows}


def make_recognizer(cfg, workdir):
  """`PocketSphinxASR.for_corpus` on the corpus's `train` split only (no test sentence): the
  acoustic model MAP-adapted to its clips, the bundled general trigram (the choice of
  experiments/asr_floor.py on `validation`). Give `asr_workdir` asr_floor's workdir to reuse its
  adaptation (same transcripts, clips and settings)."""
  from audiolm_jax.eval import asr as asr_lib  # pylint: disable=g-import-not-at-top
  source = corpora.data_source(cfg.corpus, "train", cfg.data_dir or None,
                               cfg.corpus_build or None)
  texts = [source[i]["transcript"].decode() for i in range(len(source))]

  class Clips:  # Read on demand: the adaptation iterates them several times.
    def __len__(self):
      return len(source)

    def __getitem__(self, i):
      return source[i]["audio"]

  return asr_lib.PocketSphinxASR.for_corpus(texts, workdir, train_clips=Clips(),
                                            log=lambda line: print(f"asr adapt: {line}"))


# --------------------------------------------------------------------------- outputs


def _fmt(row, key):
  if key not in row or row[key] is None or (isinstance(row[key], float) and
                                              not math.isfinite(row[key])):
    return "-"
  lo, hi = row.get(f"{key}_ci", (None, None))
  return f"{row[key]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{row[key]:.3f}"


def write_markdown(report, path):
  keys = ("wer", "cer", "speaker_accuracy", "speaker_similarity", "speaker_similarity_others",
          "content_perplexity")
  lines = ["| set | system | n | " + " | ".join(keys) + " |",
           "|---|---|---|" + "---|" * len(keys)]
  for row in report["rows"]:
    lines.append(f"| {row['set']} | {row['system']} | {row['n']} | "
                 + " | ".join(_fmt(row, k) for k in keys) + " |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def write_plot(report, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  keys = ("speaker_accuracy", "speaker_similarity", "wer", "content_perplexity")
  sets = sorted({r["set"] for r in report["rows"]})
  fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8))
  width = 0.8 / max(1, len(sets))
  for ax, key in zip(axes, keys):
    for k, name in enumerate(sets):
      xs, ys, err = [], [], [[], []]
      for x, system in enumerate(SYSTEMS):
        row = next((r for r in report["rows"] if r["set"] == name and r["system"] == system),
                   None)
        if row is None or row.get(key) is None:
          continue
        lo, hi = row[f"{key}_ci"]
        xs.append(x + k * width)
        ys.append(row[key])
        err[0].append(row[key] - lo)
        err[1].append(hi - row[key])
      ax.bar(xs, ys, width, yerr=err, capsize=2, label=name)
    ax.set_xticks([x + width * (len(sets) - 1) / 2 for x in range(len(SYSTEMS))])
    ax.set_xticklabels(SYSTEMS, rotation=30, ha="right", fontsize=7)
    ax.set_title(key, fontsize=9)
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv=None) -> int:
  try:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    require_extra("eval", "speech_continuation.py (ASR, speaker identity)")
    require_extra("report", "speech_continuation.py (its chart)")
    report = evaluate(cfg)
  except AudioLMError as e:
    print(f"speech_continuation: error: {e}", file=sys.stderr)
    return 1
  out_dir = cfg.out_dir or RESULTS_DIR
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "speech_continuation.json"), "w") as f:
    json.dump(report, f, indent=2, default=float)
  write_markdown(report, os.path.join(out_dir, "speech_continuation.md"))
  write_plot(report, os.path.join(out_dir, "speech_continuation.png"))
  print(f"wrote {out_dir}/speech_continuation.{{json,md,png}}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
