"""Token metrics: edit distances, speaker invariance, ABX, the speaker probe."""

import itertools

import numpy as np
import pytest

from audiolm_jax.errors import DataError
from audiolm_jax.eval import token_metrics as tm


def reference_edit_distance(a, b):
  """The textbook O(len(a) len(b)) dynamic programme."""
  d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
  return d[-1][-1]


def test_edit_distance_matches_the_textbook_programme():
  assert tm.edit_distance(list(b"kitten"), list(b"sitting")) == 3
  assert tm.edit_distance([], [1, 2, 3]) == tm.edit_distance([1, 2, 3], []) == 3
  assert tm.edit_distance([], []) == 0
  rng = np.random.default_rng(0)
  for _ in range(200):
    a = rng.integers(0, 4, rng.integers(0, 15))
    b = rng.integers(0, 4, rng.integers(0, 15))
    assert tm.edit_distance(a, b) == reference_edit_distance(list(a), list(b)), (a, b)
    assert tm.edit_distance(a, b) == tm.edit_distance(b, a)


def test_dedup_and_normalisation():
  np.testing.assert_array_equal(tm.dedup(np.array([5, 5, 1, 1, 1, 5, 2, 2])), [5, 1, 5, 2])
  assert tm.dedup(np.array([], np.int32)).size == 0
  # Durations do not count after dedup; they do without it.
  assert tm.normalized_edit_distance([1, 1, 2, 2, 2, 3], [1, 2, 3, 3]) == 0.0
  assert tm.normalized_edit_distance([1, 1, 2, 2, 2, 3], [1, 2, 3, 3],
                                     remove_duplicates=False) == pytest.approx(3 / 6)
  # Normalised by the longer deduplicated sequence: one substitution in four.
  assert tm.normalized_edit_distance([1, 2, 3, 4], [1, 9, 9, 3, 4]) == pytest.approx(1 / 4)
  assert tm.normalized_edit_distance([1, 2], [3, 4, 5]) == 1.0
  assert tm.normalized_edit_distance([], []) == 0.0
  with pytest.raises(DataError):
    tm.dedup(np.zeros((2, 2)))


def corpus(kind, sentences=4, speakers=3):
  """Every speaker reads every sentence. `kind` says what decides the tokens:
  "content": the sentence only; "voice": the speaker only; "both": sentence ids with a
  speaker-specific id inserted after every unit."""
  seqs, sent, spk = [], [], []
  for s, p in itertools.product(range(sentences), range(speakers)):
    words = np.arange(10 * s, 10 * s + 6)  # 6 units, disjoint between sentences
    voice = np.full(6, 100 + p)
    seq = {"content": words, "voice": voice,
           "both": np.stack([words, voice], 1).reshape(-1)}[kind]
    seqs.append(np.repeat(seq, 1 + (p % 2)))  # Speaker 1 speaks twice as slowly.
    sent.append(s)
    spk.append(p)
  return seqs, np.array(sent), np.array(spk)


def test_distance_matrix_computes_only_what_is_needed():
  seqs, sent, spk = corpus("both", sentences=3, speakers=2)
  needed = tm.related_pairs(sent, spk)
  full = tm.distance_matrix(seqs)
  part = tm.distance_matrix(seqs, needed)
  np.testing.assert_array_equal(part[needed], full[needed])
  assert np.isnan(part[~needed]).all() and not np.isnan(full).any()
  np.testing.assert_array_equal(full, full.T)
  assert np.all(np.diag(full) == 0)
  # "both": the same words by two voices differ at every second unit.
  i, j = 0, 1  # sentence 0, speakers 0 and 1
  assert full[i, j] == pytest.approx(0.5)


def test_speaker_invariance_separates_content_from_voice():
  for kind, same_sentence, same_speaker in (("content", 0.0, 1.0), ("voice", 1.0, 0.0),
                                            ("both", 0.5, 0.5)):
    seqs, sent, spk = corpus(kind)
    d = tm.distance_matrix(seqs, tm.related_pairs(sent, spk))
    out = tm.speaker_invariance(d, sent, spk)
    assert out["same_sentence_other_speaker"] == pytest.approx(same_sentence), kind
    assert out["other_sentence_same_speaker"] == pytest.approx(same_speaker), kind
    assert out["gap"] == pytest.approx(same_speaker - same_sentence)
    # 4 sentences x C(3, 2) speaker pairs; 3 speakers x C(4, 2) sentence pairs.
    assert out["same_sentence_other_speaker_pairs"] == 12
    assert out["other_sentence_same_speaker_pairs"] == 18
  # Anchors: only pairs touching speaker 2's utterances.
  out = tm.speaker_invariance(d, sent, spk, anchors=spk == 2)
  assert out["same_sentence_other_speaker_pairs"] == 4 * 2
  assert out["other_sentence_same_speaker_pairs"] == 6
  with pytest.raises(ValueError, match="lacks"):
    tm.speaker_invariance(np.full(d.shape, np.nan), sent, spk)


def test_abx_scores_content_one_voice_zero_and_ties_half():
  for kind, expected in (("content", 1.0), ("voice", 0.0), ("both", 0.5)):
    seqs, sent, spk = corpus(kind)
    d = tm.distance_matrix(seqs, tm.related_pairs(sent, spk))
    out = tm.abx_accuracy(d, sent, spk)
    assert out["accuracy"] == pytest.approx(expected), kind
    # Brute force: X any of 12, A one of 2 other speakers, B one of 3 other sentences.
    assert out["triplets"] == 12 * 2 * 3
  # A hand-made mixed case: X is nearer A in one triplet, nearer B in the other, tied in none.
  d = np.array([[0.0, 0.2, 0.3, 0.1],
                [0.2, 0.0, 0.9, 0.9],
                [0.3, 0.9, 0.0, 0.9],
                [0.1, 0.9, 0.9, 0.0]])
  sent = np.array([0, 0, 1, 2])  # X=0; A=1 (sentence 0, other speaker)
  spk = np.array([0, 1, 0, 0])  # B=2 (0.3 > 0.2: A wins), B=3 (0.1 < 0.2: B wins)
  out = tm.abx_accuracy(d, sent, spk, anchors=np.array([True, False, False, False]))
  assert out == {"accuracy": 0.5, "triplets": 2}
  assert np.isnan(tm.abx_accuracy(d, np.arange(4), spk)["accuracy"])  # No A anywhere.


def test_token_histograms():
  h = tm.token_histograms([np.array([0, 0, 2, 3]), np.array([], np.int64)], vocab_size=4)
  np.testing.assert_allclose(h, [[0.5, 0, 0.25, 0.25], [0, 0, 0, 0]])
  with pytest.raises(ValueError, match="outside"):
    tm.token_histograms([np.array([4])], vocab_size=4)


def test_speaker_probe_finds_voice_and_not_its_absence():
  rng = np.random.default_rng(0)
  vocab, speakers = 32, 4

  def utterances(n, voiced):
    seqs, labels = [], []
    for i in range(n):
      p = i % speakers
      seq = rng.integers(0, vocab, 50)
      if voiced:  # Each speaker uses its own 4 ids a third of the time.
        own = rng.random(50) < 1 / 3
        seq[own] = 4 * p + rng.integers(0, 4, own.sum())
      seqs.append(seq)
      labels.append(p)
    return seqs, np.array(labels)

  train, test = utterances(40, True), utterances(20, True)
  out = tm.speaker_classification(*train, *test, vocab_size=vocab)
  assert out["accuracy"] == 1.0 and out["chance"] == 0.25
  assert out["speakers"] == 4 and out["test_utterances"] == 20
  train, test = utterances(40, False), utterances(200, False)
  assert tm.speaker_classification(*train, *test, vocab_size=vocab)["accuracy"] < 0.4
  # Test speakers unknown to training are left out and counted.
  seqs, labels = utterances(8, True)
  out = tm.speaker_classification(*train, seqs, labels + 2, vocab_size=vocab)
  assert out["test_utterances"] == 4 and out["unknown_speaker_utterances"] == 4


def test_logistic_regression_descends_to_a_separating_solution():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((60, 3))
  y = np.argmax(x @ rng.standard_normal((3, 3)), axis=1)  # Linearly separable labels.

  def loss(w, b):
    logits = x @ w + b
    logits = logits - logits.max(1, keepdims=True)
    return -np.mean(logits[np.arange(60), y] - np.log(np.exp(logits).sum(1)))

  losses = [loss(*tm.fit_logistic_regression(x, y, 3, l2=1e-4, steps=s)) for s in (0, 10, 100,
                                                                                   1000)]
  assert losses[0] == pytest.approx(np.log(3)) and np.all(np.diff(losses) < 0)
  w, b = tm.fit_logistic_regression(x, y, 3, l2=1e-4, steps=2000)
  assert np.mean(np.argmax(x @ w + b, axis=1) == y) > 0.95
