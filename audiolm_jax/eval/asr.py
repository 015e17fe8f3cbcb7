"""Word error rate with pocketsphinx (its wheel carries an English model: nothing downloads).

    asr = PocketSphinxASR()
    asr.transcribe(wav)                       # -> "most of the time i go to sleep"
    word_error_rate(["a b c"], ["a x c"])     # -> 1/3
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from audiolm_jax.data.corpora.text import normalize_transcript


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
  """Levenshtein distance between two word sequences."""
  row = list(range(len(hyp) + 1))
  for i, r in enumerate(ref, 1):
    prev, row[0] = row[0], i
    for j, h in enumerate(hyp, 1):
      prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
  return row[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Corpus WER: total word edits over total reference words, after normalisation."""
  if len(references) != len(hypotheses):
    raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
  edits = words = 0
  for ref, hyp in zip(references, hypotheses):
    r, h = normalize_transcript(ref).split(), normalize_transcript(hyp).split()
    edits += edit_distance(r, h)
    words += len(r)
  return edits / max(1, words)


class PocketSphinxASR:
  """English speech recognition at 16 kHz with pocketsphinx's bundled acoustic model."""

  def __init__(self, sample_rate: int = 16000):
    import logging
    from pocketsphinx import Decoder
    logging.getLogger("pocketsphinx").setLevel(logging.WARNING)
    self.sample_rate = sample_rate
    self._decoder = Decoder(samprate=sample_rate, loglevel="FATAL")

  def transcribe(self, wav: np.ndarray) -> str:
    pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16) if wav.dtype != np.int16 else wav
    self._decoder.start_utt()
    self._decoder.process_raw(pcm.tobytes(), full_utt=True)
    self._decoder.end_utt()
    hyp = self._decoder.hyp()
    return hyp.hypstr if hyp is not None else ""
