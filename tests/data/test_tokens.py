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


def test_cache_info_records_ratio_and_frames_per_token(tmp_path):
  cache = str(tmp_path / "cache")
  runs = [{"semantic": np.array([1, 1, 2, 3, 3, 3]), "acoustic": np.zeros((6, 2), int)},
          {"semantic": np.array([4, 5]), "acoustic": np.zeros((2, 2), int)}]
  info = tokens.CacheInfo(frame_ratio=1, semantic_vocab_size=8, acoustic_vocab_size=4,
                          num_quantizers=2, samples_per_frame=320)
  tokens.write_token_cache(cache, {"train": runs}, info)
  read = tokens.read_cache_info(cache)
  assert read.frame_ratio == 1 and read.samples_per_frame == 320 and read.num_quantizers == 2
  assert read.frames_per_token == {"train": pytest.approx(8 / 5)}  # 8 frames, 5 runs
  with pytest.raises(DataError, match="1:1"):  # The cache's own ratio is checked.
    tokens.write_token_cache(cache, {"train": [{"semantic": np.zeros(3, int),
                                                "acoustic": np.zeros((6, 2), int)}]}, info)

