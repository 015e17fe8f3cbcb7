"""Fitting a semantic tokenizer: feature statistics and mini-batch k-means, data-agnostic.

    stats = compute_feature_stats(extractor, batches)          # mean / variance per dimension
    tokenizer, state = fit_semantic_tokenizer(extractor, batches_fn, key, num_clusters=...,
                                              num_steps=..., init_frames=...)

`batches` yield `(wav [B, S], wav_mask [B, S] or None)`; where they come from (the grain audio
pipeline, in `tasks/w2v_bert.py`) is the caller's business.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import ConfigError
from audiolm_jax.quantization import kmeans
from audiolm_jax.semantic.tokenizer import (FeatureExtractor, SemanticTokenizer, _features,
                                            check_wav, normalize)


# --- Normalisation statistics -----------------------------------------------------------------


@flax.struct.dataclass
class FeatureStats:
  """Running per-dimension mean and variance over valid frames (Chan et al. merge).

  Attributes:
    count: `[]` frames seen.
    mean: `[D]` running mean.
    m2: `[D]` running sum of squared deviations from the mean.
  """
  count: jax.Array
  mean: jax.Array
  m2: jax.Array

  @classmethod
  def create(cls, dim: int) -> "FeatureStats":
    return cls(count=jnp.zeros((), jnp.float32), mean=jnp.zeros((dim,), jnp.float32),
               m2=jnp.zeros((dim,), jnp.float32))

  def update(self, features: jax.Array, mask: jax.Array | None = None) -> "FeatureStats":
    """Adds the valid frames of `features [..., D]` (`mask [...]`)."""
    x = jnp.asarray(features, jnp.float32).reshape(-1, features.shape[-1])  # [N, D]
    w = (jnp.ones(x.shape[:1]) if mask is None else jnp.asarray(mask, jnp.float32).reshape(-1))
    n_b = jnp.sum(w)
    mean_b = jnp.sum(w[:, None] * x, axis=0) / jnp.maximum(n_b, 1.0)
    m2_b = jnp.sum(w[:, None] * (x - mean_b)**2, axis=0)
    n = self.count + n_b
    delta = mean_b - self.mean
    frac = n_b / jnp.maximum(n, 1.0)
    return FeatureStats(count=n,
                        mean=self.mean + delta * frac,
                        m2=self.m2 + m2_b + delta**2 * self.count * frac)

  @property
  def variance(self) -> jax.Array:
    """Population variance `[D]`."""
    return self.m2 / jnp.maximum(self.count, 1.0)

  def std(self, eps: float = 1e-5) -> jax.Array:
    return jnp.sqrt(self.variance + eps)




@jax.jit
def _flat_frames(feats, fmask, mean, std):
  """Normalised frames flattened over the batch `x [N, D]`, and `weights [N]` (0 = padding)."""
  x = normalize(feats, mean, std)
  return x.reshape(-1, x.shape[-1]), fmask.reshape(-1).astype(jnp.float32)


# --- Fitting ----------------------------------------------------------------------------------

Batches = Callable[[], Iterable[tuple[np.ndarray, np.ndarray | None]]]


_stats_update = jax.jit(FeatureStats.update)
_kmeans_init = jax.jit(kmeans.kmeans_plusplus_init, static_argnames=("k", "num_local_trials"))
_kmeans_step = jax.jit(kmeans.minibatch_kmeans_step,
                       static_argnames=("reassign_ratio", "reassign_every"))


def compute_feature_stats(extractor: FeatureExtractor, batches: Iterable) -> FeatureStats:
  """Mean/variance of the extractor's features over the valid frames of `(wav, mask)` batches."""
  stats = FeatureStats.create(extractor.dim)
  for wav, wav_mask in batches:
    feats, fmask = _features(extractor.apply, extractor.params, *check_wav(wav, wav_mask))
    stats = _stats_update(stats, feats, fmask)
  if float(stats.count) == 0:
    raise ConfigError("no valid frames to compute feature statistics from")
  return stats


def _cycle(batches: Batches) -> Iterator:
  """`batches()` again and again; an empty pass is an error (not an endless loop)."""
  while True:
    empty = True
    for batch in batches():
      empty = False
      yield batch
    if empty:
      raise ConfigError("the tokenizer's data yields no batches")


def fit_semantic_tokenizer(extractor: FeatureExtractor,
                           batches: Batches,
                           key: jax.Array,
                           num_clusters: int,
                           num_steps: int,
                           init_frames: int,
                           reassign_ratio: float = 0.01,
                           stats: FeatureStats | None = None,
                           kmeans_state: kmeans.KMeansState | None = None,
                           on_step: Callable[[kmeans.KMeansState, dict], None] | None = None
                          ) -> tuple[SemanticTokenizer, kmeans.KMeansState]:
  """Fits normalisation statistics and mini-batch k-means on features of `batches()`.

  1. Statistics over one pass of `batches()` (skipped when `stats` is given).
  2. k-means++ seeding on the first `init_frames` valid normalised frames (skipped when
     resuming from `kmeans_state`).
  3. Mini-batch k-means steps, one per batch, cycling over `batches()`, until `num_steps`. A
     resumed fit skips the batches its state has already seen, so it sees the same order.

  Args:
    extractor: the features.
    batches: returns a fresh iterable of `(wav [B, S], wav_mask [B, S] or None)` each call.
    key: PRNG key for seeding and dead-centroid reassignment.
    num_clusters: K.
    num_steps: total mini-batch steps.
    init_frames: frames for k-means++ seeding (at least K).
    reassign_ratio: dead-centroid threshold (see `kmeans.minibatch_kmeans_step`).
    stats: precomputed statistics (e.g. from a resumed run).
    kmeans_state: state to resume from (checkpoint it from `on_step`).
    on_step: called as `on_step(state, metrics)` after every step (logging, checkpoints).

  Returns:
    `(tokenizer, final k-means state)`.
  """
  if init_frames < num_clusters:
    raise ConfigError(f"init_frames={init_frames} must be >= num_clusters={num_clusters}")
  if stats is None:
    stats = compute_feature_stats(extractor, batches())
  mean, std = stats.mean, stats.std()
  init_key, step_key = jax.random.split(key)

  def normalised(batches):
    for wav, wav_mask in batches:
      feats, fmask = _features(extractor.apply, extractor.params, *check_wav(wav, wav_mask))
      yield _flat_frames(feats, fmask, mean, std)

  if kmeans_state is None:
    xs, have = [], 0
    for x, w in normalised(batches()):
      keep = np.asarray(w) > 0
      xs.append(np.asarray(x)[keep])
      have += int(keep.sum())
      if have >= init_frames:
        break
    if have < num_clusters:
      raise ConfigError(f"only {have} valid frames to seed {num_clusters} clusters")
    sample = np.concatenate(xs)[:init_frames]
    centroids = _kmeans_init(init_key, sample, k=num_clusters)
    kmeans_state = kmeans.KMeansState.create(centroids)

  done = int(kmeans_state.step)
  if done < num_steps:
    todo = itertools.islice(_cycle(batches), done, num_steps)
    for x, w in normalised(todo):
      k = jax.random.fold_in(step_key, kmeans_state.step)
      kmeans_state, metrics = _kmeans_step(kmeans_state, x, w, k, reassign_ratio=reassign_ratio)
      if on_step is not None:
        on_step(kmeans_state, metrics)
  return SemanticTokenizer(extractor, mean, std, kmeans_state.centroids), kmeans_state

