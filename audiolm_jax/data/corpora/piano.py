"""`synthetic_piano`: scores shipped inside music21, rendered on a General MIDI piano.

Each piece (Bach chorales first, then Palestrina, Monteverdi and the string quartets and piano
pieces in music21's corpus) is written to MIDI at a tempo drawn per piece, every part set to a
piano program (GM 0..2), rendered with fluidsynth at 16 kHz and mixed to mono. The MIDI note
events (onset s, pitch, duration s) are read back from the very MIDI file that was rendered,
so music metrics can compare generated audio against ground truth. Splits are by piece.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.data.audio import AudioChecks, check_audio, read_audio, resample, to_int16
from audiolm_jax.data.corpora import base
from audiolm_jax.errors import BadAudioError, MissingToolError, require_extra

SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
                   "/usr/share/soundfonts/default.sf2")
PIANO_PROGRAMS = (0, 1, 2)  # GM: acoustic grand, bright acoustic, electric grand.
# Composers, in the order pieces are taken from the music21 corpus.
COMPOSERS = ("bach", "palestrina", "monteverdi", "beethoven", "mozart", "haydn",
             "schumann_robert", "schumann_clara", "joplin", "chopin", "handel", "schubert")


@dataclasses.dataclass(eq=False)
class PianoConfig(tfds.core.BuilderConfig):
  pieces_per_composer: tuple = ()  # ((composer, count), ...) taken in corpus order.
  max_seconds: float = 240.0       # Longer renderings are cut (notes too).
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  sample_rate: int = 16000
  seed: int = 0


CONFIGS = {
    "tiny": PianoConfig(name="tiny", description="6 Bach chorales, at most 20 s each.",
                        pieces_per_composer=(("bach", 6),), max_seconds=20.0,
                        validation_fraction=0.2, test_fraction=0.2),
    "default": PianoConfig(name="default", description="About 130 pieces: over 1 hour.",
                           pieces_per_composer=(("bach", 100), ("palestrina", 20),
                                                ("monteverdi", 6), ("joplin", 1),
                                                ("chopin", 1), ("schumann_clara", 2))),
}


def find_soundfont() -> str:
  for path in SOUNDFONT_PATHS:
    if os.path.isfile(path):
      return path
  raise MissingToolError("no General MIDI soundfont found (looked in "
                         f"{', '.join(SOUNDFONT_PATHS)}): apt-get install fluid-soundfont-gm")


def midi_notes(path: str) -> np.ndarray:
  """Note events of a MIDI file: float32 [N, 3] = (onset s, MIDI pitch, duration s), by onset."""
  import mido
  try:
    midi = mido.MidiFile(path)
  except Exception as e:
    raise BadAudioError(path, "unreadable", f"MIDI: {type(e).__name__}: {e}") from e
  now, active, notes = 0.0, {}, []
  for msg in midi:  # Iterating a MidiFile gives delta times in seconds, tempo map applied.
    now += msg.time
    if msg.type == "note_on" and msg.velocity > 0:
      active.setdefault((msg.channel, msg.note), []).append(now)
    elif msg.type in ("note_off", "note_on"):
      starts = active.get((msg.channel, msg.note))
      if starts:
        onset = starts.pop(0)
        notes.append((onset, msg.note, now - onset))
  notes.sort()
  return np.asarray(notes, np.float32).reshape(-1, 3)


def set_programs(path: str, program: int) -> None:
  """Rewrites every program change in a MIDI file to `program`, off the drum channel."""
  import mido
  midi = mido.MidiFile(path)
  for track in midi.tracks:
    for i, msg in enumerate(track):
      if msg.type == "program_change":
        track[i] = msg.copy(program=program)
      if hasattr(msg, "channel") and msg.channel == 9:
        track[i] = track[i].copy(channel=8)
  midi.save(path)


@dataclasses.dataclass(frozen=True)
class Piece:
  source: str      # music21 corpus path, relative to the corpus root.
  composer: str
  bpm: float
  program: int
  max_seconds: float
  sample_rate: int


def render_piece(job: Piece) -> dict:
  from music21 import converter, tempo
  try:
    score = converter.parse(os.path.join(music21_corpus_dir(), job.source))
  except Exception as e:
    raise BadAudioError(job.source, "unreadable", f"music21: {type(e).__name__}: {e}") from e
  for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
    mark.activeSite.remove(mark)
  score.insert(0, tempo.MetronomeMark(number=job.bpm))
  with tempfile.TemporaryDirectory(prefix="audiolm_piano_") as tmp:
    mid, wav_path = os.path.join(tmp, "piece.mid"), os.path.join(tmp, "piece.wav")
    try:
      score.write("midi", fp=mid)
    except Exception as e:
      raise BadAudioError(job.source, "unreadable", f"MIDI export: {e}") from e
    set_programs(mid, job.program)
    proc = subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(job.sample_rate),
                           "-F", wav_path, find_soundfont(), mid],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not os.path.exists(wav_path):
      raise BadAudioError(job.source, "unreadable", f"fluidsynth: {proc.stderr.strip()[:200]}")
    notes = midi_notes(mid)
    data, rate = read_audio(wav_path)
  wav = resample(data.mean(axis=1), rate, job.sample_rate)
  keep = int(job.max_seconds * job.sample_rate)
  wav = wav[:keep]
  notes = notes[notes[:, 0] < job.max_seconds]
  notes[:, 2] = np.minimum(notes[:, 2], job.max_seconds - notes[:, 0])
  peak = float(np.max(np.abs(wav))) if wav.size else 0.0
  if peak > 0.99:  # Normalise hot renderings instead of clipping them.
    wav = wav * (0.99 / peak)
  check_audio(wav, job.sample_rate, job.source, AudioChecks(min_seconds=1.0))
  if notes.shape[0] == 0:
    raise BadAudioError(job.source, "empty", "the score has no notes")
  return {"audio": to_int16(wav), "piece_id": job.source, "composer": job.composer,
          "notes": notes, "program": job.program, "bpm": np.float32(job.bpm)}


def music21_corpus_dir() -> str:
  from music21 import corpus
  return os.path.dirname(os.path.abspath(corpus.__file__))


def list_pieces(config: PianoConfig) -> list[Piece]:
  from music21 import corpus
  root = music21_corpus_dir()
  pieces = []
  for composer, count in config.pieces_per_composer:
    paths = sorted(str(p) for p in corpus.getComposer(composer))
    paths = [p for p in paths if not p.endswith((".py", ".txt"))][:count]
    for path in paths:
      rel = os.path.relpath(path, root)
      h = base.stable_hash(f"{config.seed}:{rel}")
      pieces.append(Piece(source=rel, composer=composer, bpm=float(round(70 + 40 * h)),
                          program=PIANO_PROGRAMS[int(h * 1000) % len(PIANO_PROGRAMS)],
                          max_seconds=config.max_seconds, sample_rate=config.sample_rate))
  return pieces


def split_pieces(pieces: list[Piece], config: PianoConfig) -> dict[str, list[Piece]]:
  """By piece: ordered by a stable hash, the first go to test, the next to validation."""
  order = sorted(pieces, key=lambda p: base.stable_hash(f"split:{config.seed}:{p.source}"))
  n_test = max(1, round(config.test_fraction * len(order)))
  n_val = max(1, round(config.validation_fraction * len(order)))
  return {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
          "train": order[n_test + n_val:]}


class SyntheticPiano(base.CorpusBuilder):
  """music21 scores rendered on a GM piano with fluidsynth, with their MIDI notes."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = list(CONFIGS.values())
  DESCRIPTION = __doc__

  def _features(self):
    return tfds.features.FeaturesDict({
        "audio": base.int16_audio_feature(),  # 16 kHz mono, int16 PCM.
        "piece_id": tfds.features.Text(),      # Path inside music21's corpus.
        "composer": tfds.features.Text(),
        "notes": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),  # onset, pitch, dur
        "program": tfds.features.Tensor(shape=(), dtype=np.int64),  # GM program rendered.
        "bpm": tfds.features.Tensor(shape=(), dtype=np.float32),
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    import shutil
    if shutil.which("fluidsynth") is None:
      raise MissingToolError("fluidsynth not installed: run `make install` or "
                             "apt-get install fluidsynth fluid-soundfont-gm")
    find_soundfont()
    require_extra("piano", "the synthetic_piano corpus")
    splits = split_pieces(list_pieces(self.builder_config), self.builder_config)
    return {name: self._generate_examples(pieces) for name, pieces in splits.items()}

  def _generate_examples(self, pieces: list[Piece]):
    yield from self._parallel_examples(render_piece, [(p.source, p) for p in pieces])
