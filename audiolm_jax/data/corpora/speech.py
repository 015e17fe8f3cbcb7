"""`synthetic_speech`: English sentences read by many synthetic speakers (flite, espeak-ng).

Design, so that evaluations can tell content from voice:
- sentences are split train / validation / test: a test sentence is never read in train;
- every sentence is read by `readers` different *seen* speakers, assigned round-robin so each
  seen speaker reads in every split (hence every test speaker is also a train speaker);
- `unseen` speakers read only in `test_unseen_speakers`, one test sentence each.

Sizes: `tiny` (tests; seconds), `default` (over 2 h of audio; minutes on two cores).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.data.audio import AudioChecks, check_audio, to_int16
from audiolm_jax.data.corpora import base, text, tts

SPLITS = ("train", "validation", "test", "test_unseen_speakers")


@dataclasses.dataclass(eq=False)
class SpeechConfig(tfds.core.BuilderConfig):
  num_sentences: int = 0       # Sentences drawn from the offline text source.
  num_flite: int = 0           # Speakers made from flite voices (listed first).
  num_espeak: int = 0          # Speakers made from espeak-ng accents/variants.
  num_unseen: int = 0          # The last speakers, heard only in test_unseen_speakers.
  readers: int = 3             # Seen speakers reading each sentence.
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  sample_rate: int = 16000
  seed: int = 0


CONFIGS = {
    "tiny": SpeechConfig(name="tiny", description="8 speakers, 16 sentences: for tests.",
                         num_sentences=16, num_flite=2, num_espeak=6, num_unseen=2,
                         validation_fraction=0.2, test_fraction=0.2),
    "default": SpeechConfig(name="default",
                            description="36 speakers, 800 sentences: over 2 hours.",
                            num_sentences=800, num_flite=5, num_espeak=31, num_unseen=4),
}


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One job: a speaker reading a sentence."""
  source: str
  sentence_id: int
  sentence: str
  speaker_id: int
  speaker: tts.Speaker
  sample_rate: int


def make_utterance(job: Utterance) -> dict:
  wav = tts.synthesize(job.speaker, job.sentence, job.sample_rate)
  check_audio(wav, job.sample_rate, job.source, AudioChecks(min_seconds=0.3, max_seconds=60))
  return {
      "audio": to_int16(wav),
      "transcript": job.sentence,
      "sentence_id": job.sentence_id,
      "speaker_id": job.speaker_id,
      "voice": job.speaker.describe(),
  }


def plan(config: SpeechConfig, sentences: list[str]) -> dict[str, list[Utterance]]:
  """Who reads what, per split: deterministic given the config and the sentence list."""
  rng = random.Random(config.seed)
  if config.num_sentences > len(sentences):
    raise ValueError(f"asked for {config.num_sentences} sentences, the text source has "
                     f"{len(sentences)}")
  chosen = rng.sample(sentences, config.num_sentences)
  speakers = tts.make_speakers(config.num_flite, config.num_espeak)
  num_seen = len(speakers) - config.num_unseen
  if num_seen < config.readers:
    raise ValueError(f"{num_seen} seen speakers cannot give {config.readers} readers each")
  n_test = max(1, round(config.test_fraction * len(chosen)))
  n_val = max(1, round(config.validation_fraction * len(chosen)))
  split_of = (["test"] * n_test + ["validation"] * n_val +
              ["train"] * (len(chosen) - n_test - n_val))
  order = list(range(num_seen))
  rng.shuffle(order)
  jobs = {s: [] for s in SPLITS}
  counters = {s: 0 for s in SPLITS}

  def job(sid, spk):
    return Utterance(f"sentence {sid} / speaker {spk}", sid, chosen[sid], spk, speakers[spk],
                     config.sample_rate)

  for sid, split in enumerate(split_of):
    # Round-robin within each split, so every seen speaker reads in every split.
    for r in range(config.readers):
      spk = order[(counters[split] * config.readers + r) % num_seen]
      jobs[split].append(job(sid, spk))
    counters[split] += 1
    if split == "test" and config.num_unseen:
      unseen = num_seen + counters[split] % config.num_unseen
      jobs["test_unseen_speakers"].append(job(sid, unseen))
  return jobs


class SyntheticSpeech(base.CorpusBuilder):
  """English sentences (from the fortune databases) read by flite and espeak-ng speakers."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = list(CONFIGS.values())
  DESCRIPTION = __doc__

  def _features(self):
    return tfds.features.FeaturesDict({
        "audio": base.int16_audio_feature(),  # 16 kHz mono, int16 PCM.
        "transcript": tfds.features.Text(),
        "sentence_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "speaker_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "voice": tfds.features.Text(),  # The speaker's engine, voice, pitch and rate.
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    tts.check_tools()
    jobs = plan(self.builder_config, text.fortune_sentences())
    return {split: self._generate_examples(jobs[split]) for split in SPLITS if jobs[split]}

  def _generate_examples(self, jobs: list[Utterance]):
    keyed = [(f"{j.sentence_id:05d}-{j.speaker_id:03d}", j) for j in jobs]
    yield from self._parallel_examples(make_utterance, keyed)
