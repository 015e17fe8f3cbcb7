"""Prompts for continuation experiments: held-out utterances long enough to cut a prompt from.

    items = held_out_prompts(source, count=2, prompt_seconds=3.0)   # one per speaker
    item.prompt, item.original, item.speaker, item.transcript
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from audiolm_jax.data.audio import from_int16


@dataclasses.dataclass
class Prompt:
  """A prompt cut from the start of a held-out utterance.

  Attributes:
    index: the record's index in its source.
    prompt: float32 [prompt samples].
    original: float32 [S], the whole utterance.
    speaker: its speaker ("" when unknown).
    transcript: its transcript ("" when unknown).
  """
  index: int
  prompt: np.ndarray
  original: np.ndarray
  speaker: str
  transcript: str


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def speaker_of(record: dict) -> str:
  """The speaker of a corpus record: `speaker_id` (built-in corpora) or `speaker` (folders)."""
  if "speaker_id" in record and int(record["speaker_id"]) >= 0:
    return str(int(record["speaker_id"]))
  return _text(record.get("speaker", ""))


def held_out_prompts(source: Sequence[dict], count: int, prompt_seconds: float,
                     sample_rate: int = 16000, min_extra_seconds: float = 0.25,
                     one_per_speaker: bool = True, skip: Sequence[int] = ()) -> list[Prompt]:
  """The first `count` utterances of `source` (in order) at least `prompt_seconds +
  min_extra_seconds` long, one per speaker when `one_per_speaker`; records in `skip` are
  left out (e.g. a speaker's enrolment utterances)."""
  prompt_len = int(round(prompt_seconds * sample_rate))
  chosen: list[Prompt] = []
  speakers: set[str] = set()
  skip = set(skip)
  for i in range(len(source)):
    if len(chosen) == count:
      break
    if i in skip:
      continue
    record = source[i]
    pcm = np.asarray(record["audio"])
    if pcm.size < prompt_len + int(min_extra_seconds * sample_rate):
      continue
    speaker = speaker_of(record)
    if one_per_speaker and speaker in speakers:
      continue
    speakers.add(speaker)
    wav = from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32)
    chosen.append(Prompt(index=i, prompt=wav[:prompt_len], original=wav, speaker=speaker,
                         transcript=_text(record.get("transcript", ""))))
  return chosen
