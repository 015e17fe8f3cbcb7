"""Grain pipeline: determinism, disjoint per-process shards, exact resume, fixed shapes."""

import json

import numpy as np
import pytest

from audiolm_jax.data import corpora
from audiolm_jax.data.pipeline import AudioDataConfig, crop_example, make_audio_iterator
from audiolm_jax.errors import DataError


def cfg(data_dir, **kw):
  return dict(dict(corpus="synthetic_speech", data_dir=data_dir, config_name="tiny",
                   crop_seconds=0.5, num_threads=1), **kw)


def take(it, n):
  return [next(it) for _ in range(n)]


def test_batches_have_fixed_shapes(tiny_data_dir):
  it = make_audio_iterator(cfg(tiny_data_dir), batch_size=3, seed=0, process_index=0,
                           process_count=1)
  for b in take(it, 4):
    assert b["audio"].shape == (3, 8000) and b["audio"].dtype == np.float32
    assert b["mask"].shape == (3, 8000) and b["mask"].dtype == bool
    assert b["valid"].all() and b["mask"].all()  # Clips are longer than 0.5 s.
    assert np.abs(b["audio"]).max() <= 1.0


def test_deterministic_given_seed_and_different_across_seeds(tiny_data_dir):
  a = take(make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=3, process_index=0,
                               process_count=1), 5)
  b = take(make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=3, process_index=0,
                               process_count=1), 5)
  c = take(make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=4, process_index=0,
                               process_count=1), 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["audio"], y["audio"])
    np.testing.assert_array_equal(x["index"], y["index"])
  assert any(not np.array_equal(x["audio"], z["audio"]) for x, z in zip(a, c))


def test_epochs_reshuffle_and_crops_change(tiny_data_dir):
  n = len(corpora.data_source("synthetic_speech", "train", tiny_data_dir, "tiny"))
  it = make_audio_iterator(cfg(tiny_data_dir), batch_size=1, seed=0, process_index=0,
                           process_count=1)
  first = [int(b["index"][0]) for b in take(it, n)]
  second = [int(b["index"][0]) for b in take(it, n)]
  assert sorted(first) == sorted(second) == list(range(n))  # Each epoch sees every record.
  assert first != second


def test_process_shards_are_disjoint_and_cover(tiny_data_dir):
  n = len(corpora.data_source("synthetic_speech", "train", tiny_data_dir, "tiny"))
  seen = []
  for p in range(3):
    it = make_audio_iterator(cfg(tiny_data_dir), batch_size=1, seed=0, process_index=p,
                             process_count=3, split="train", train=False)
    seen.append({int(i) for b in it for i, v in zip(b["index"], b["valid"]) if v})
  assert not seen[0] & seen[1] and not seen[0] & seen[2] and not seen[1] & seen[2]
  assert set().union(*seen) == set(range(n))


def test_global_batch_does_not_depend_on_process_count(tiny_data_dir):
  one = take(make_audio_iterator(cfg(tiny_data_dir), batch_size=4, seed=2, process_index=0,
                                 process_count=1), 6)
  two = [take(make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=2, process_index=p,
                                  process_count=2), 6) for p in range(2)]
  for step in range(6):
    for key in ("audio", "index", "mask"):
      np.testing.assert_array_equal(
          one[step][key], np.concatenate([two[0][step][key], two[1][step][key]]))


def test_save_and_restore_gives_the_same_next_batch(tiny_data_dir):
  it = make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=1, process_index=0,
                           process_count=1)
  take(it, 7)
  state = json.loads(json.dumps(it.get_state()))  # Must survive JSON (checkpoint format).
  expected = take(it, 3)
  fresh = make_audio_iterator(cfg(tiny_data_dir), batch_size=2, seed=1, process_index=0,
                              process_count=1)
  fresh.set_state(state)
  for x, y in zip(expected, take(fresh, 3)):
    np.testing.assert_array_equal(x["audio"], y["audio"])
    np.testing.assert_array_equal(x["index"], y["index"])


def test_short_clips_are_padded_with_a_mask(tiny_data_dir):
  it = make_audio_iterator(cfg(tiny_data_dir, crop_seconds=12.0), batch_size=2, seed=0,
                           process_index=0, process_count=1)
  b = next(it)
  src = corpora.data_source("synthetic_speech", "train", tiny_data_dir, "tiny")
  for row in range(2):
    length = len(src[int(b["index"][row])]["audio"])
    assert b["mask"][row].sum() == length < 12 * 16000
    assert np.all(b["audio"][row, length:] == 0)


def test_eval_iterator_is_one_padded_pass(tiny_data_dir):
  n = len(corpora.data_source("synthetic_speech", "validation", tiny_data_dir, "tiny"))
  batches = list(make_audio_iterator(cfg(tiny_data_dir), batch_size=4, seed=0, process_index=0,
                                     process_count=1, train=False))
  assert len(batches) == -(-n // 4)
  assert sum(int(b["valid"].sum()) for b in batches) == n
  assert all(b["audio"].shape == (4, 8000) for b in batches)


def test_bad_records_become_invalid_examples():
  ex = crop_example(None, 5, 100, None)
  assert not ex["valid"] and not ex["mask"].any() and ex["audio"].shape == (100,)
  ex = crop_example({"audio": np.array([np.nan] * 200, np.float32)}, 0, 100, None)
  assert not ex["valid"]


def test_bad_config_values(tiny_data_dir):
  with pytest.raises(DataError, match="crop_seconds"):
    make_audio_iterator(cfg(tiny_data_dir, crop_seconds=0.0), batch_size=2, seed=0,
                        process_index=0, process_count=1)
  with pytest.raises(DataError, match="no split"):
    make_audio_iterator(cfg(tiny_data_dir, split="nope"), batch_size=2, seed=0,
                        process_index=0, process_count=1)
  with pytest.raises(DataError, match="batch_size"):
    make_audio_iterator(cfg(tiny_data_dir), batch_size=0, seed=0, process_index=0,
                        process_count=1)
  assert AudioDataConfig.from_config(cfg(tiny_data_dir)).crop_samples == 8000


def test_mixture_is_weighted_deterministic_and_resumable(tiny_data_dir):
  mix = cfg(tiny_data_dir, config_name=None,
            mixture="synthetic_speech/tiny:3, synthetic_piano/tiny:1")

  def iterator():
    return make_audio_iterator(mix, batch_size=4, seed=0, process_index=0, process_count=1)

  batches = take(iterator(), 10)
  speech = np.concatenate([b["speaker_id"] >= 0 for b in batches])  # Piano has no speakers.
  assert speech.sum() == 30 and (~speech).sum() == 10                 # 3 : 1, by a fixed pattern
  again = take(iterator(), 10)
  for x, y in zip(batches, again):
    np.testing.assert_array_equal(x["audio"], y["audio"])
  it = iterator()
  take(it, 4)
  state = json.loads(json.dumps(it.get_state()))
  resumed = iterator()
  resumed.set_state(state)
  for x, y in zip(batches[4:], take(resumed, 6)):
    np.testing.assert_array_equal(x["audio"], y["audio"])
  # Evaluation: every component's split, one after the other.
  n = sum(len(corpora.data_source(c, "validation", tiny_data_dir, "tiny"))
          for c in ("synthetic_speech", "synthetic_piano"))
  rows = [b["valid"] for b in take(make_audio_iterator(
      mix, batch_size=1, seed=0, process_index=0, process_count=1, train=False), n)]
  assert np.concatenate(rows).all()


@pytest.mark.parametrize("mixture, match", [
    ("synthetic_speech:0", "positive"), ("synthetic_speech:x", "number"),
    ("nope:1", "unknown corpus"), (",", "no corpus")])
def test_bad_mixtures_are_one_line_errors(tiny_data_dir, mixture, match):
  with pytest.raises(DataError, match=match):
    make_audio_iterator(cfg(tiny_data_dir, mixture=mixture), batch_size=1, seed=0,
                        process_index=0, process_count=1)
