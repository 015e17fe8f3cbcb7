"""Built-in corpora (tiny sizes) and folder corpora in every layout, bad files included."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax.data import corpora
from audiolm_jax.data.corpora import speech, text, tts
from audiolm_jax.errors import DataError


def _values(source, field):
  out = []
  for i in range(len(source)):
    v = source[i][field]
    out.append(v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
  return out


def test_speech_plan_default_size_without_synthesis():
  """The default plan meets the issue's numbers: >= 24 speakers, >= 3 readers per sentence."""
  jobs = speech.plan(speech.CONFIGS["default"], text.fortune_sentences())
  speakers = {j.speaker_id for js in jobs.values() for j in js}
  assert len(speakers) >= 24
  train_sents = {j.sentence_id for j in jobs["train"]}
  test_sents = {j.sentence_id for j in jobs["test"]}
  assert not train_sents & test_sents
  assert not train_sents & {j.sentence_id for j in jobs["validation"]}
  train_spk = {j.speaker_id for j in jobs["train"]}
  assert {j.speaker_id for j in jobs["test"]} <= train_spk
  unseen = {j.speaker_id for j in jobs["test_unseen_speakers"]}
  assert unseen and not unseen & train_spk
  readers = {}
  for j in jobs["train"] + jobs["test"]:
    readers.setdefault(j.sentence_id, set()).add(j.speaker_id)
  assert min(len(r) for r in readers.values()) >= 3
  # Distinct voices: no two speakers share engine, voice, pitch and rate.
  all_speakers = tts.make_speakers(5, 31)
  assert len(set(all_speakers)) == len(all_speakers)


def test_fortune_sentences_are_clean():
  sents = text.fortune_sentences()
  assert len(sents) > 3000
  for s in sents[:500]:
    assert 6 <= len(s.split()) <= 20 and s[0].isupper() and s[-1] in ".!?"
  assert text.normalize_transcript("Don't PANIC -- now!") == "don't panic now"


def test_tiny_speech_corpus(tiny_data_dir):
  sources = corpora.data_sources("synthetic_speech", tiny_data_dir, "tiny")
  assert set(sources) == set(speech.SPLITS)
  ex = sources["train"][0]
  assert ex["audio"].dtype == np.int16 and ex["audio"].ndim == 1 and len(ex["audio"]) > 8000
  assert isinstance(ex["transcript"], bytes) and ex["transcript"]
  train_sents = set(_values(sources["train"], "sentence_id"))
  assert not train_sents & set(_values(sources["test"], "sentence_id"))
  train_spk = set(_values(sources["train"], "speaker_id"))
  assert set(_values(sources["test"], "speaker_id")) <= train_spk
  assert not set(_values(sources["test_unseen_speakers"], "speaker_id")) & train_spk
  # The same sentence read by different speakers sounds different (not one voice copied).
  by_sentence = {}
  for i in range(len(sources["train"])):
    e = sources["train"][i]
    by_sentence.setdefault(int(e["sentence_id"]), []).append(e)
  group = next(g for g in by_sentence.values() if len(g) >= 3)
  assert len({int(e["speaker_id"]) for e in group}) == len(group)
  assert len({len(e["audio"]) for e in group}) > 1


def test_tiny_piano_corpus(tiny_data_dir):
  sources = corpora.data_sources("synthetic_piano", tiny_data_dir, "tiny")
  assert set(sources) == {"train", "validation", "test"}
  pieces = {s: set(_values(src, "piece_id")) for s, src in sources.items()}
  assert not pieces["train"] & pieces["test"] and not pieces["train"] & pieces["validation"]
  ex = sources["train"][0]
  notes = ex["notes"]
  assert notes.ndim == 2 and notes.shape[1] == 3 and len(notes) > 10
  assert np.all(np.diff(notes[:, 0]) >= 0) and np.all(notes[:, 2] > 0)
  assert np.all((notes[:, 1] >= 21) & (notes[:, 1] <= 108))  # Piano range.
  assert len(ex["audio"]) / 16000 <= 20.0 + 1e-3
  assert int(ex["program"]) in (0, 1, 2)


def test_stats_and_reuse(tiny_data_dir):
  s = corpora.stats("synthetic_speech", tiny_data_dir, "tiny")
  assert s["speakers_or_pieces"] == 8
  assert s["splits"]["train"]["examples"] > 0 and s["total_hours"] > 0
  again = corpora.build("synthetic_speech", size="tiny", data_dir=tiny_data_dir)
  assert again["reused"]


def test_missing_corpus_is_a_clear_error(tmp_path):
  with pytest.raises(DataError, match="data build synthetic_piano"):
    corpora.data_sources("synthetic_piano", str(tmp_path))
  with pytest.raises(DataError, match="unknown corpus"):
    corpora.make_builder("nope", data_dir=str(tmp_path))


# ---- audio_folder ------------------------------------------------------------------------

def _tone(seconds=1.0, freq=220.0, rate=16000):
  return 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def _make_librispeech(root):
  for spk, chap in (("19", "198"), ("26", "495")):
    d = root / "train-clean-100" / spk / chap
    d.mkdir(parents=True)
    lines = []
    for u in range(2):
      utt = f"{spk}-{chap}-{u:04d}"
      sf.write(str(d / f"{utt}.flac"), _tone(1.0 + u), 16000)
      lines.append(f"{utt} HELLO WORLD NUMBER {u}")
    (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
  d = root / "test-clean" / "61" / "70968"
  d.mkdir(parents=True)
  sf.write(str(d / "61-70968-0000.flac"), _tone(1.5), 16000)
  (d / "61-70968.trans.txt").write_text("61-70968-0000 A TEST SENTENCE\n")


def test_folder_librispeech_layout(tmp_path):
  _make_librispeech(tmp_path / "ls")
  summary = corpora.build("audio_folder", source_dir=str(tmp_path / "ls"), layout="librispeech",
                          data_dir=str(tmp_path / "data"), workers=1)
  assert summary["examples_per_split"] == {"train": 4, "test": 1}
  sources = corpora.data_sources("audio_folder", str(tmp_path / "data"))
  rows = {sources["train"][i]["path"].decode(): sources["train"][i] for i in range(4)}
  row = rows[os.path.join("train-clean-100", "26", "495", "26-495-0001.flac")]
  assert row["speaker"] == b"26" and row["transcript"] == b"HELLO WORLD NUMBER 1"
  assert len(row["audio"]) == 32000


def test_folder_librispeech_flat_names_give_speaker_and_chapter(tmp_path):
  """The layout of the LibriSpeech excerpts: flat `SPK-CHAPTER-UTT.flac` names in a split
  folder, and `SPK/SPK-CHAPTER-UTT.flac` one level down; no transcripts."""
  root = tmp_path / "excerpts"
  (root / "train-clean-100").mkdir(parents=True)
  for spk, chap in (("103", "1240"), ("1034", "121119")):
    sf.write(str(root / "train-clean-100" / f"{spk}-{chap}-0000.flac"), _tone(1.0), 16000)
  (root / "test-other" / "1688").mkdir(parents=True)
  sf.write(str(root / "test-other" / "1688" / "1688-142285-0003.flac"), _tone(1.2), 16000)
  sf.write(str(root / "test-other" / "1688" / "notes.flac"), _tone(1.1), 16000)
  data_dir = str(tmp_path / "data")
  summary = corpora.build("audio_folder", source_dir=str(root), layout="librispeech",
                          data_dir=data_dir, workers=1, build_name="excerpts")
  assert summary["config"] == "excerpts" and summary["examples_per_split"] == {
      "train": 2, "test": 2}
  sources = corpora.data_sources("audio_folder", data_dir, "excerpts")
  train = {sources["train"][i]["speaker"]: sources["train"][i] for i in range(2)}
  assert set(train) == {b"103", b"1034"}
  assert train[b"1034"]["chapter"] == b"121119" and train[b"1034"]["transcript"] == b""
  test = {sources["test"][i]["path"].decode(): sources["test"][i] for i in range(2)}
  row = test[os.path.join("test-other", "1688", "1688-142285-0003.flac")]
  assert row["speaker"] == b"1688" and row["chapter"] == b"142285"
  # A name that is not LibriSpeech's: the folders above the file, as in the full layout.
  other = test[os.path.join("test-other", "1688", "notes.flac")]
  assert other["speaker"] == b"test-other" and other["chapter"] == b"1688"
  # The same build name for another folder is refused, not silently reused.
  (tmp_path / "other").mkdir()
  sf.write(str(tmp_path / "other" / "1-2-0003.flac"), _tone(1.0), 16000)
  with pytest.raises(DataError, match="already exists"):
    corpora.build("audio_folder", source_dir=str(tmp_path / "other"), layout="librispeech",
                  data_dir=data_dir, workers=1, build_name="excerpts")
  with pytest.raises(DataError, match="build name"):
    corpora.build("audio_folder", source_dir=str(root), layout="librispeech",
                  data_dir=data_dir, build_name="../x")


def test_folder_maestro_layout(tmp_path):
  import mido
  root = tmp_path / "maestro" / "2018"
  root.mkdir(parents=True)
  for name, split in (("a", "train"), ("b", "test")):
    sf.write(str(root / f"{name}.wav"), np.stack([_tone(2.0, rate=44100)] * 2, 1), 44100)
    midi = mido.MidiFile()
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track += [mido.Message("note_on", note=60, velocity=64, time=0),
              mido.Message("note_off", note=60, velocity=0, time=480)]
    midi.save(str(root / f"{name}.midi"))
  (tmp_path / "maestro" / "maestro-v3.0.0.csv").write_text(
      "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n"
      "Bach,Prelude,train,2018,2018/a.midi,2018/a.wav,2.0\n"
      "Chopin,Etude,test,2018,2018/b.midi,2018/b.wav,2.0\n")
  summary = corpora.build("audio_folder", source_dir=str(tmp_path / "maestro"),
                          layout="maestro", data_dir=str(tmp_path / "data"), workers=1)
  assert summary["examples_per_split"] == {"train": 1, "test": 1}
  ex = corpora.data_source("audio_folder", "test", str(tmp_path / "data"))[0]
  assert ex["speaker"] == b"Chopin" and ex["transcript"] == b"Etude"
  assert len(ex["audio"]) == 32000  # 44.1 kHz stereo -> 16 kHz mono.
  np.testing.assert_allclose(ex["notes"], [[0.0, 60.0, 0.5]], atol=1e-3)  # 480 ticks @120bpm


def make_mixed_folder(root):
  """Good files and one broken file of each kind; returns {name: expected reason}."""
  root.mkdir(parents=True, exist_ok=True)
  (root / "spk1").mkdir()
  for i in range(3):
    sf.write(str(root / "spk1" / f"good{i}.wav"), _tone(1.0 + i), 16000)
  bad = {}
  (root / "empty.wav").write_bytes(b"")
  bad["empty.wav"] = "empty"
  (root / "junk.flac").write_bytes(b"not audio" * 50)
  bad["junk.flac"] = "unreadable"
  sf.write(str(root / "silent.wav"), np.zeros(16000), 16000)
  bad["silent.wav"] = "silent"
  sf.write(str(root / "short.wav"), _tone(0.05), 16000)
  bad["short.wav"] = "too short"
  x = _tone(1.0).astype(np.float32)
  x[5] = np.nan
  sf.write(str(root / "nan.wav"), x, 16000, subtype="FLOAT")
  bad["nan.wav"] = "non-finite"
  data = open(root / "spk1" / "good2.wav", "rb").read()
  (root / "cut.wav").write_bytes(data[: len(data) // 3])
  bad["cut.wav"] = "truncated"
  return bad


def test_folder_generic_skips_and_counts_bad_files(tmp_path):
  bad = make_mixed_folder(tmp_path / "mixed")
  summary = corpora.build("audio_folder", source_dir=str(tmp_path / "mixed"),
                          data_dir=str(tmp_path / "data"), workers=1)
  assert sum(summary["examples_per_split"].values()) == 3
  assert summary["skipped"] == len(bad)
  got = {os.path.basename(s["source"]): s["reason"] for s in summary["skipped_sources"]}
  assert got == bad
  on_disk = json.load(open(os.path.join(summary["data_path"], "build_summary.json")))
  assert on_disk["skipped"] == len(bad)


def test_data_check_cli_lists_every_bad_file(tmp_path):
  bad = make_mixed_folder(tmp_path / "mixed")
  proc = subprocess.run([sys.executable, "-m", "audiolm_jax", "data", "check",
                         str(tmp_path / "mixed")], capture_output=True, text=True)
  assert proc.returncode == 1, proc.stderr
  lines = [l for l in proc.stdout.splitlines() if l.startswith("BAD")]
  assert len(lines) == len(bad)
  for name, reason in bad.items():
    assert any(name in l and f": {reason}" in l for l in lines), (name, proc.stdout)
  assert "6 file(s) checked" not in proc.stderr and "9 file(s) checked, 6 bad" in proc.stderr
  good = subprocess.run([sys.executable, "-m", "audiolm_jax", "data", "check",
                         str(tmp_path / "mixed" / "spk1")], capture_output=True, text=True)
  assert good.returncode == 0, good.stdout
