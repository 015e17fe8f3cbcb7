"""Token caches: written and read back exactly; bad entries rejected with a clear error."""

import numpy as np
import pytest

from audiolm_jax.data import tokens
from audiolm_jax.errors import DataError


def fake(n, t25, q=4, k=16, seed=0):
  rng = np.random.default_rng(seed)
  for i in range(n):
    t = t25 + i
    yield {"semantic": rng.integers(0, k, t), "acoustic": rng.integers(0, k, (2 * t, q)),
           "speaker_id": i % 3, "sentence_id": i, "transcript": f"utterance {i}"}


def test_round_trip(tmp_path):
  written = {"train": list(fake(5, 10)), "validation": list(fake(2, 7, seed=1))}
  tokens.write_token_cache(str(tmp_path / "cache"), {k: iter(v) for k, v in written.items()})
  assert tokens.has_token_cache(str(tmp_path / "cache"))
  sources = tokens.token_sources(str(tmp_path / "cache"))
  assert set(sources) == {"train", "validation"}
  got = sorted((sources["train"][i] for i in range(5)), key=lambda e: int(e["sentence_id"]))
  for want, have in zip(written["train"], got):
    np.testing.assert_array_equal(have["semantic"], want["semantic"])
    np.testing.assert_array_equal(have["acoustic"], want["acoustic"])
    assert have["acoustic"].shape[0] == 2 * have["semantic"].shape[0]
    assert have["transcript"].decode() == want["transcript"]


def test_bad_entries_and_missing_cache(tmp_path):
  with pytest.raises(DataError, match="2:1"):
    tokens.check_token_example({"semantic": np.zeros(5), "acoustic": np.zeros((9, 4))})
  with pytest.raises(DataError, match="negative"):
    tokens.check_token_example({"semantic": -np.ones(5), "acoustic": np.zeros((10, 4))})
  with pytest.raises(DataError, match="no token cache"):
    tokens.token_sources(str(tmp_path / "nothing"))


class _FakeCodec:
  """50 Hz codes whose first level is the frame's mean |sample| bucket (so content shows)."""

  def encode(self, wav):
    frames = wav.shape[1] // 320
    x = np.abs(wav[:, :frames * 320]).reshape(wav.shape[0], frames, 320).mean(-1)
    return np.stack([np.minimum((x * 50).astype(np.int32), 15)] * 3, -1)


class _FakeTokenizer:
  def tokenize(self, wav):
    frames = -(-wav.shape[1] // 640)
    return np.arange(frames)[None].repeat(wav.shape[0], 0) % 7


def test_tokenize_corpus_keeps_2_to_1_frames_and_metadata(tmp_path, tiny_data_dir):
  from audiolm_jax.data import corpora
  from audiolm_jax.semantic.tokenizer import num_frames
  summary = tokens.tokenize_corpus(str(tmp_path / "cache"), corpus="synthetic_speech",
                                   splits=("train", "validation"), codec=_FakeCodec(),
                                   semantic_tokenizer=_FakeTokenizer(), data_dir=tiny_data_dir,
                                   config_name="tiny", batch_size=4, progress=False)
  audio = corpora.data_source("synthetic_speech", "validation", tiny_data_dir, "tiny")
  assert summary["splits"]["validation"] == len(audio) and summary["skipped"] == 0
  cache = tokens.token_source(str(tmp_path / "cache"), "validation")
  lengths = sorted(num_frames(len(audio[i]["audio"])) for i in range(len(audio)))
  got = sorted(len(cache[i]["semantic"]) for i in range(len(cache)))
  assert got == lengths
  for i in range(len(cache)):
    ex = cache[i]
    assert ex["acoustic"].shape == (2 * len(ex["semantic"]), 3)
    assert ex["transcript"] and int(ex["speaker_id"]) >= 0
