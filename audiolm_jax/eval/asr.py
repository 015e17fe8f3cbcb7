"""Word and character error rates with pocketsphinx (its wheel carries English models: nothing
downloads).

    asr = PocketSphinxASR()                   # pocketsphinx's bundled models, as they come
    asr.transcribe(wav)                       # -> "most of the time i go to sleep"
    word_error_rate(["a b c"], ["a x c"])     # -> 1/3
    character_error_rate(["abc"], ["abd"])    # -> 1/3

The bundled models make too many errors on the synthetic corpus (corpus WER about 0.8 on its
original validation and test audio) to tell systems apart: their acoustic model hardly
understands espeak-ng voices, whatever the language model. A recogniser built from a corpus'
training split only is far more sensitive:

    asr = PocketSphinxASR.for_corpus(train_transcripts, workdir, train_clips=train_waveforms)

`adapt_acoustic_model` (`eval/acoustic_adaptation.py`) MAP-adapts the bundled acoustic model to the training clips (codebook
means and mixture weights, from pocketsphinx's own forced alignments and features; numpy only).
`build_domain_lm` (`eval/ngram.py`) writes a domain trigram (interpolated Kneser-Ney or Witten-Bell, in pure
Python, on the deduplicated, normalised training transcripts) mixed with the bundled general
model as an ARPA backoff model; training words that the dictionary cannot pronounce become
`<unk>` (counted, never recognised) and nothing is added to the dictionary. On sentences never
seen in training the bundled general trigram does as well or better, so `for_corpus` keeps it
unless asked for `language_model="domain"`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Callable, Sequence

import numpy as np

from audiolm_jax.data.corpora.text import normalize_transcript
from audiolm_jax.errors import require_extra
from audiolm_jax.eval.acoustic_adaptation import adapt_acoustic_model
from audiolm_jax.eval.ngram import NGramLM, build_domain_lm
from audiolm_jax.eval.sphinx_files import pcm16

# `for_corpus`: the language model ("general" or "domain") and decoder settings (pocketsphinx's
# three language weights at 0.8 times their defaults, a stronger insertion penalty) that gave
# the lowest WER on `validation` with the adapted acoustic model.
CORPUS_LANGUAGE_MODEL = "general"
CORPUS_DECODER_OPTIONS = {"lw": 5.2, "fwdflatlw": 6.8, "bestpathlw": 7.6, "wip": 0.2}


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
  """Levenshtein distance between two word sequences (rapidfuzz)."""
  require_extra("eval", "word edit distances")
  from rapidfuzz.distance import Levenshtein  # pylint: disable=g-import-not-at-top
  return int(Levenshtein.distance(list(ref), list(hyp)))


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Corpus WER (jiwer): total word edits over total reference words, after normalisation.

  A reference that normalises to nothing (jiwer cannot score it) adds its hypothesis's words
  as insertions, so a recogniser that invents words there is still charged.
  """
  require_extra("eval", "the word error rate")
  import jiwer  # pylint: disable=g-import-not-at-top
  if len(references) != len(hypotheses):
    raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
  pairs = [(normalize_transcript(r), normalize_transcript(h))
           for r, h in zip(references, hypotheses)]
  scored = [(r, h) for r, h in pairs if r]
  edits = sum(len(h.split()) for r, h in pairs if not r)
  words = sum(len(r.split()) for r, _ in scored)
  if scored:
    out = jiwer.process_words([r for r, _ in scored], [h for _, h in scored])
    edits += out.substitutions + out.deletions + out.insertions
  return edits / max(1, words)


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Corpus CER (jiwer): character edits over reference characters, after normalisation.

  Spaces count as characters, as in jiwer. References that normalise to nothing are left out
  (with their hypotheses), since jiwer cannot score an empty reference.

  Args:
    references: the true transcripts.
    hypotheses: the recognised ones, one per reference.

  Returns:
    Total character edits over total reference characters; 0.0 when no reference has any.
  """
  require_extra("eval", "the character error rate")
  import jiwer  # pylint: disable=g-import-not-at-top
  if len(references) != len(hypotheses):
    raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
  pairs = [(normalize_transcript(r), normalize_transcript(h))
           for r, h in zip(references, hypotheses)]
  pairs = [(r, h) for r, h in pairs if r]
  if not pairs:
    return 0.0
  return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))


class PocketSphinxASR:
  """English speech recognition at 16 kHz with pocketsphinx.

  `PocketSphinxASR()` is pocketsphinx's bundled general model as it comes. Its acoustic model
  hardly understands espeak-ng voices; `for_corpus` builds a recogniser adapted to a corpus
  from its training split only.

  Args:
    sample_rate: of the audio given to `transcribe`.
    language_model: None for pocketsphinx's bundled general model; else an ARPA/bin path or
      an `NGramLM` (written to a temporary ARPA file).
    acoustic_model: an `hmm` folder (e.g. from `adapt_acoustic_model`); None for the bundled
      US English model.
    dictionary: a pronunciation dictionary; None for the bundled one.
    **decoder_options: more pocketsphinx settings (lw, wip, beam, ...).
  """

  def __init__(self, sample_rate: int = 16000, language_model: str | NGramLM | None = None,
               acoustic_model: str | None = None, dictionary: str | None = None,
               **decoder_options):
    import logging  # pylint: disable=g-import-not-at-top
    require_extra("eval", "speech recognition")
    from pocketsphinx import Decoder  # pylint: disable=g-import-not-at-top
    logging.getLogger("pocketsphinx").setLevel(logging.WARNING)
    self.sample_rate = sample_rate
    options = {"samprate": sample_rate, "loglevel": "FATAL"}
    self._tmp = None
    if language_model is not None:
      if isinstance(language_model, NGramLM):
        self._tmp = tempfile.TemporaryDirectory(prefix="asr_lm_")
        language_model = language_model.write_arpa(os.path.join(self._tmp.name, "lm.arpa"))
      if not os.path.isfile(language_model):
        raise FileNotFoundError(f"language model {language_model} not found")
      options["lm"] = language_model
    if acoustic_model is not None:
      if not os.path.isfile(os.path.join(acoustic_model, "mdef")):
        raise FileNotFoundError(f"{acoustic_model} is not a pocketsphinx acoustic model folder")
      options["hmm"] = acoustic_model
    if dictionary is not None:
      options["dict"] = dictionary
    options.update(decoder_options)
    self.options = options
    self._decoder = Decoder(**options)

  @classmethod
  def for_corpus(cls, train_transcripts: Sequence[str], workdir: str,
                 train_clips: Sequence[np.ndarray] | None = None, sample_rate: int = 16000,
                 language_model: str = CORPUS_LANGUAGE_MODEL, lm_options: dict | None = None,
                 adapt_options: dict | None = None, log: Callable[[str], None] | None = None,
                 **decoder_options) -> "PocketSphinxASR":
    """A recogniser for a corpus, built from its training split only.

    With `train_clips`, the acoustic model is MAP-adapted to them (`adapt_acoustic_model`,
    into `workdir/acoustic_model`; an adaptation already there with the same settings, clip
    count and transcripts is reused, since it takes minutes). `language_model="domain"` also
    writes and uses `workdir/domain_lm.arpa` (`build_domain_lm` on `train_transcripts`);
    "general" keeps pocketsphinx's bundled trigram, which did better on `validation` of
    `synthetic_speech`, whose sentences are never in training (the domain trigram then adds
    little: about 2% lower perplexity even mixed exactly with the general model).
    `CORPUS_DECODER_OPTIONS` are the default decoder settings.

    Args:
      train_transcripts: the training split's transcripts.
      workdir: where the models go.
      train_clips: the training split's waveforms, one per transcript (a lazy sequence is
        fine); None to keep the bundled acoustic model.
      sample_rate: of the audio (training clips and `transcribe`'s).
      language_model: "general" (bundled) or "domain".
      lm_options: options of `domain_ngram`.
      adapt_options: options of `adapt_acoustic_model`.
      log: progress lines of the adaptation go here.
      **decoder_options: pocketsphinx settings overriding `CORPUS_DECODER_OPTIONS`.

    Returns:
      The recogniser.
    """
    if language_model not in ("general", "domain"):
      raise ValueError(f"language_model must be 'general' or 'domain', got {language_model!r}")
    train_transcripts = [t.decode() if isinstance(t, bytes) else t for t in train_transcripts]
    lm = None
    if language_model == "domain":
      lm = build_domain_lm(train_transcripts, os.path.join(workdir, "domain_lm.arpa"),
                           **(lm_options or {}))
    acoustic = None
    if train_clips is not None:
      acoustic = os.path.join(workdir, "acoustic_model")
      options = dict(adapt_options or {})
      fingerprint = hashlib.sha256("\n".join(train_transcripts).encode()).hexdigest()
      settings = {"fingerprint": fingerprint, "clips": len(train_clips),
                  "sample_rate": sample_rate, "options": options}
      stamp = os.path.join(workdir, "acoustic_model.json")
      previous = None
      if os.path.isfile(stamp) and os.path.isfile(os.path.join(acoustic, "adaptation.json")):
        with open(stamp) as f:
          previous = json.load(f)
      if previous != settings:
        adapt_acoustic_model(train_clips, train_transcripts, acoustic, sample_rate=sample_rate,
                             log=log, **options)
        with open(stamp, "w") as f:
          json.dump(settings, f, indent=1)
    return cls(sample_rate, language_model=lm, acoustic_model=acoustic,
               **{**CORPUS_DECODER_OPTIONS, **decoder_options})

  def transcribe(self, wav: np.ndarray) -> str:
    self._decoder.start_utt()
    self._decoder.process_raw(pcm16(wav), full_utt=True)
    self._decoder.end_utt()
    hyp = self._decoder.hyp()
    return hyp.hypstr if hyp is not None else ""
