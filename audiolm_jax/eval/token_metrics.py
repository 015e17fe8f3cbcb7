"""What a token sequence keeps of content and of voice: edit distances, ABX, a speaker probe.

AudioLM wants semantic tokens that follow *what* is said and ignore *who* says it, and
acoustic tokens that keep both. These metrics measure that on utterances labelled with a
sentence id and a speaker id (e.g. `synthetic_speech`, where every test sentence is read by
several speakers):

* `speaker_invariance`: mean normalised edit distance between two readings of the same
  sentence by different speakers, against two different sentences read by the same speaker.
  Content-driven tokens make the first small and the second large.
* `abx_accuracy`: sentence-level ABX (below); 0.5 is chance, 1.0 content always wins.
* `speaker_classification`: accuracy of a multinomial logistic regression that predicts the
  speaker from an utterance's token histogram (trained on other sentences); high means the
  tokens carry speaker identity.

Sequences are 1-D integer arrays of token ids. Edit distances are computed after removing
consecutive duplicates (`dedup`), as the semantic stage does, so they compare the order of
units rather than their durations; histograms count every frame.

Everything here is numpy (edit distances: rapidfuzz, the `eval` extra) and deterministic.
Shape letters: N utterances, V vocabulary, C classes (speakers), F features.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from audiolm_jax.errors import require_extra
from audiolm_jax.lm.stages import remove_consecutive_duplicates as dedup

# --------------------------------------------------------------------------- edit distances


def edit_distance(a: np.ndarray, b: np.ndarray) -> int:
  """Levenshtein distance (unit-cost insertions, deletions, substitutions) of two sequences
  (rapidfuzz, C++: about 100x the numpy row-by-row programme on 3000 tokens)."""
  require_extra("eval", "token edit distances")
  from rapidfuzz.distance import Levenshtein  # pylint: disable=g-import-not-at-top
  return int(Levenshtein.distance(np.asarray(a).tolist(), np.asarray(b).tolist()))


def normalized_edit_distance(a: np.ndarray, b: np.ndarray, remove_duplicates: bool = True
                            ) -> float:
  """`edit_distance / max(len(a), len(b))` in [0, 1] (0 for two empty sequences).

  With `remove_duplicates`, both sequences are `dedup`ed first and the lengths are theirs.
  """
  if remove_duplicates:
    a, b = dedup(a), dedup(b)
  longest = max(len(a), len(b))
  return edit_distance(a, b) / longest if longest else 0.0


def distance_matrix(seqs: Sequence[np.ndarray], needed: np.ndarray | None = None,
                    remove_duplicates: bool = True) -> np.ndarray:
  """Normalised edit distances `[N, N]` between sequences; NaN where not `needed`.

  Args:
    seqs: N token sequences.
    needed: `[N, N]` bool, the pairs to compute (symmetrised; the diagonal is 0); default all.
    remove_duplicates: `dedup` each sequence first.
  """
  n = len(seqs)
  if remove_duplicates:
    seqs = [dedup(s) for s in seqs]
  needed = np.ones((n, n), bool) if needed is None else np.asarray(needed, bool)
  needed = needed | needed.T
  out = np.full((n, n), np.nan)
  np.fill_diagonal(out, 0.0)
  for i, j in zip(*np.nonzero(np.triu(needed, k=1))):
    out[i, j] = out[j, i] = normalized_edit_distance(seqs[i], seqs[j], remove_duplicates=False)
  return out


def _labels(sentence_ids, speaker_ids) -> tuple[np.ndarray, np.ndarray]:
  sentence_ids, speaker_ids = np.asarray(sentence_ids), np.asarray(speaker_ids)
  if sentence_ids.shape != speaker_ids.shape or sentence_ids.ndim != 1:
    raise ValueError(f"sentence ids {sentence_ids.shape} and speaker ids {speaker_ids.shape} "
                     "must be two [N] arrays")
  return sentence_ids, speaker_ids


def related_pairs(sentence_ids: np.ndarray, speaker_ids: np.ndarray) -> np.ndarray:
  """`[N, N]` bool: pairs sharing the sentence or the speaker (all that the metrics read)."""
  sentence_ids, speaker_ids = _labels(sentence_ids, speaker_ids)
  return ((sentence_ids[:, None] == sentence_ids[None, :]) |
          (speaker_ids[:, None] == speaker_ids[None, :]))


def _anchor_mask(anchors, n: int) -> np.ndarray:
  return np.ones(n, bool) if anchors is None else np.asarray(anchors, bool)


# --------------------------------------------------------------------------- invariance, ABX


def speaker_invariance(distances: np.ndarray, sentence_ids: np.ndarray, speaker_ids: np.ndarray,
                       anchors: np.ndarray | None = None) -> dict[str, float]:
  """Mean normalised edit distance of two kinds of pairs of distinct utterances.

  * `same_sentence_other_speaker`: the same sentence read by two different speakers;
  * `other_sentence_same_speaker`: two different sentences read by the same speaker.

  Args:
    distances: `[N, N]` normalised edit distances (`distance_matrix`).
    sentence_ids, speaker_ids: `[N]` labels.
    anchors: `[N]` bool; only pairs with at least one anchor count (e.g. the utterances of
      unseen speakers); default all.

  Returns:
    Both means, their difference `gap` (other_sentence_same_speaker minus
    same_sentence_other_speaker: positive when content outweighs voice) and the pair counts.
    A mean over no pair is NaN.
  """
  sentence_ids, speaker_ids = _labels(sentence_ids, speaker_ids)
  n = len(sentence_ids)
  anchors = _anchor_mask(anchors, n)
  same_sentence = sentence_ids[:, None] == sentence_ids[None, :]
  same_speaker = speaker_ids[:, None] == speaker_ids[None, :]
  upper = np.triu(np.ones((n, n), bool), k=1) & (anchors[:, None] | anchors[None, :])
  out = {}
  for name, pairs in (("same_sentence_other_speaker", same_sentence & ~same_speaker & upper),
                      ("other_sentence_same_speaker", ~same_sentence & same_speaker & upper)):
    values = distances[pairs]
    if np.isnan(values).any():
      raise ValueError(f"distance matrix lacks {name} pairs (compute them: related_pairs)")
    out[name] = float(values.mean()) if values.size else float("nan")
    out[f"{name}_pairs"] = int(values.size)
  out["gap"] = out["other_sentence_same_speaker"] - out["same_sentence_other_speaker"]
  return out


def abx_accuracy(distances: np.ndarray, sentence_ids: np.ndarray, speaker_ids: np.ndarray,
                 anchors: np.ndarray | None = None) -> dict[str, float]:
  """Sentence-level ABX: does content beat voice when they disagree?

  A triplet `(A, B, X)` of utterances has
    * A: the same sentence as X, read by a different speaker;
    * B: a different sentence, read by the same speaker as X.
  It scores 1 when `d(X, A) < d(X, B)`, 0.5 on a tie and 0 otherwise, with `d` the
  normalised edit distance. The accuracy is the mean score over every such triplet whose X is
  an anchor: 0.5 is chance (or tokens blind to both), 1.0 means the same words always look
  closer than the same voice, below 0.5 means voice dominates.

  Args:
    distances: `[N, N]` normalised edit distances (`distance_matrix`).
    sentence_ids, speaker_ids: `[N]` labels.
    anchors: `[N]` bool, the utterances that may be X; default all.

  Returns:
    `{"accuracy", "triplets"}` (accuracy NaN without triplets).
  """
  sentence_ids, speaker_ids = _labels(sentence_ids, speaker_ids)
  anchors = _anchor_mask(anchors, len(sentence_ids))
  total, count = 0.0, 0
  for x in np.nonzero(anchors)[0]:
    a = (sentence_ids == sentence_ids[x]) & (speaker_ids != speaker_ids[x])
    b = (sentence_ids != sentence_ids[x]) & (speaker_ids == speaker_ids[x])
    if not a.any() or not b.any():
      continue
    da, db = distances[x, a][:, None], distances[x, b][None, :]  # [|A|, 1], [1, |B|]
    if np.isnan(da).any() or np.isnan(db).any():
      raise ValueError("distance matrix lacks ABX pairs (compute them: related_pairs)")
    total += float(np.sum(da < db) + 0.5 * np.sum(da == db))
    count += da.size * db.size
  return {"accuracy": total / count if count else float("nan"), "triplets": count}


# --------------------------------------------------------------------------- speaker probe


def token_histograms(seqs: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
  """`[N, V]` relative frequencies of each id per sequence (rows sum to 1; empty rows 0)."""
  out = np.zeros((len(seqs), vocab_size))
  for i, s in enumerate(seqs):
    s = np.asarray(s)
    if s.size and (s.min() < 0 or s.max() >= vocab_size):
      raise ValueError(f"sequence {i} has ids outside [0, {vocab_size})")
    counts = np.bincount(s, minlength=vocab_size)
    out[i] = counts / max(s.size, 1)
  return out


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = 1e-2,
                            steps: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """Multinomial logistic regression by full-batch gradient descent (convex, deterministic).

  Minimises `mean cross-entropy + l2/2 ||W||^2` (bias not penalised) with the step
  `1 / (l2 + ||X||_2^2 / (2 N))`, the inverse of a bound on the loss curvature (Boehning), so
  every step decreases the loss.

  Args:
    x: `[N, F]` features (standardise them first).
    y: `[N]` int classes in `[0, num_classes)`.
    num_classes: C.
    l2: weight decay.
    steps: gradient steps.

  Returns:
    `(weights [F, C], bias [C])`.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y)
  n, f = x.shape
  onehot = np.eye(num_classes)[y]  # [N, C]
  xb = np.concatenate([x, np.ones((n, 1))], axis=1)  # [N, F + 1], bias as a constant feature
  lr = 1.0 / (l2 + np.linalg.norm(xb, 2)**2 / (2 * n))
  w = np.zeros((f + 1, num_classes))
  decay = np.ones((f + 1, 1))
  decay[-1] = 0.0
  for _ in range(steps):
    logits = xb @ w
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    grad = xb.T @ (p - onehot) / n + l2 * decay * w
    w -= lr * grad
  return w[:-1], w[-1]


def speaker_classification(train_seqs: Sequence[np.ndarray], train_speakers: np.ndarray,
                           test_seqs: Sequence[np.ndarray], test_speakers: np.ndarray,
                           vocab_size: int, l2: float = 1e-2, steps: int = 500
                           ) -> dict[str, float]:
  """How well the token histogram of an utterance tells its speaker.

  Token histograms (`token_histograms`), standardised with the training set's mean and
  standard deviation, feed `fit_logistic_regression`; test utterances of speakers never seen
  in training are left out (and counted).

  Returns:
    `accuracy` on the test utterances, `chance` (the share of the most frequent training
    speaker among them), `speakers`, `test_utterances`, `unknown_speaker_utterances`.
  """
  train_speakers, test_speakers = np.asarray(train_speakers), np.asarray(test_speakers)
  classes = np.unique(train_speakers)
  known = np.isin(test_speakers, classes)
  x_train = token_histograms(train_seqs, vocab_size)
  x_test = token_histograms([s for s, k in zip(test_seqs, known) if k], vocab_size)
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  y_train = np.searchsorted(classes, train_speakers)
  y_test = np.searchsorted(classes, test_speakers[known])
  out = {"speakers": int(classes.size), "test_utterances": int(known.sum()),
         "unknown_speaker_utterances": int((~known).sum())}
  if not known.any():
    return {**out, "accuracy": float("nan"), "chance": float("nan")}
  w, b = fit_logistic_regression((x_train - mean) / std, y_train, classes.size, l2, steps)
  predicted = np.argmax((x_test - mean) / std @ w + b, axis=1)
  majority = np.bincount(y_train, minlength=classes.size).argmax()
  return {**out, "accuracy": float(np.mean(predicted == y_test)),
          "chance": float(np.mean(y_test == majority))}
