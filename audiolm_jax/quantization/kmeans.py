"""Mini-batch k-means in JAX: k-means++ initialisation, assignment, sklearn-style updates.

The state is a pytree (`KMeansState`) so that a long fit is checkpointed and resumed like any
other training state. Every function is pure jnp over a batch of points `[N, D]` and works
under `jax.jit` with the batch sharded over the data axis of a mesh: the per-centroid sums are
`segment_sum`s that XLA reduces across devices, so a sharded step equals an unsharded one.

Padded points (frames outside a clip) are excluded with `weights [N]` (0 = ignore); every
function takes them.

Shape letters: N points, D feature dim, K clusters, L local trials.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class KMeansState:
  """Mini-batch k-means state.

  Attributes:
    centroids: `[K, D]` float32 cluster centres.
    counts: `[K]` float32 total weight of the points each centroid has absorbed; it sets the
      per-centroid learning rate `1 / counts` (as sklearn's `MiniBatchKMeans`).
    step: `[]` int32 number of mini-batch updates so far.
  """
  centroids: jax.Array
  counts: jax.Array
  step: jax.Array

  @classmethod
  def create(cls, centroids: jax.Array) -> "KMeansState":
    centroids = jnp.asarray(centroids, jnp.float32)
    return cls(centroids=centroids,
               counts=jnp.zeros(centroids.shape[:1], jnp.float32),
               step=jnp.zeros((), jnp.int32))


def _weights(x: jax.Array, weights: jax.Array | None) -> jax.Array:
  if weights is None:
    return jnp.ones(x.shape[:1], jnp.float32)
  return jnp.asarray(weights, jnp.float32)


def squared_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
  """`||x_n - c_k||^2` as `[N, K]`, clipped at 0 against round-off."""
  x = jnp.asarray(x, jnp.float32)
  xx = jnp.sum(x * x, axis=-1, keepdims=True)  # [N, 1]
  cc = jnp.sum(centroids * centroids, axis=-1)  # [K]
  xc = jnp.einsum("nd,kd->nk", x, centroids, precision=_HIGHEST)  # [N, K]
  return jnp.maximum(xx - 2.0 * xc + cc, 0.0)


@jax.jit
def assign(x: jax.Array, centroids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nearest centroid of every point.

  Args:
    x: points `[..., D]` (any leading shape, e.g. `[B, T, D]`).
    centroids: `[K, D]`.

  Returns:
    `(ids [...] int32, squared distance to that centroid [...])`.
  """
  lead = x.shape[:-1]
  d2 = squared_distances(x.reshape(-1, x.shape[-1]), centroids)  # [N, K]
  ids = jnp.argmin(d2, axis=-1)
  best = jnp.take_along_axis(d2, ids[:, None], axis=-1)[:, 0]
  return ids.astype(jnp.int32).reshape(lead), best.reshape(lead)


def kmeans_plusplus_init(key: jax.Array,
                         x: jax.Array,
                         k: int,
                         weights: jax.Array | None = None,
                         num_local_trials: int | None = None) -> jax.Array:
  """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; sklearn's variant).

  The first centre is a point drawn in proportion to its weight; each next centre is the best
  (lowest resulting inertia) of `num_local_trials` candidates drawn in proportion to
  `weight * D(x)^2`, the squared distance to the nearest centre chosen so far.

  Args:
    key: PRNG key.
    x: points `[N, D]`.
    k: number of centres.
    weights: `[N]` point weights (0 excludes a point, e.g. padding); default all 1.
    num_local_trials: candidates per centre; default `2 + floor(log k)` as sklearn.

  Returns:
    centroids `[K, D]` float32.
  """
  x = jnp.asarray(x, jnp.float32)
  w = _weights(x, weights)
  trials = num_local_trials or 2 + int(math.log(k))

  def sample(key, d2, shape):
    # Points in proportion to w * d2; if every weighted point already sits on a centre
    # (fewer distinct points than k), fall back to proportional to w.
    p = w * d2
    p = jnp.where(jnp.sum(p) > 0, p, w)
    return jax.random.categorical(key, jnp.log(p), shape=shape)

  key, first_key = jax.random.split(key)
  first = sample(first_key, jnp.ones_like(w), ())
  centroids = jnp.zeros((k, x.shape[-1]), jnp.float32).at[0].set(x[first])
  d2 = squared_distances(x, x[first][None])[:, 0]  # [N]

  def body(i, carry):
    centroids, d2 = carry
    cand = sample(jax.random.fold_in(key, i), d2, (trials,))  # [L]
    cand_d2 = jnp.minimum(d2[None, :], squared_distances(x, x[cand]).T)  # [L, N]
    best = jnp.argmin(jnp.sum(w[None, :] * cand_d2, axis=-1))
    return centroids.at[i].set(x[cand[best]]), cand_d2[best]

  centroids, _ = jax.lax.fori_loop(1, k, body, (centroids, d2))
  return centroids


def minibatch_kmeans_step(state: KMeansState,
                          x: jax.Array,
                          weights: jax.Array | None = None,
                          key: jax.Array | None = None,
                          reassign_ratio: float = 0.0,
                          reassign_every: int = 10) -> tuple[KMeansState, dict]:
  """One mini-batch k-means update (Sculley 2010, as sklearn's `MiniBatchKMeans`).

  Each centroid moves to the running mean of all points ever assigned to it:
  `c <- (c * n + sum_batch x) / (n + n_batch)` with `n` its accumulated count, so its
  learning rate decays as `1 / n`. Centroids that got no point keep their place.

  Optionally (`reassign_ratio > 0`, needs `key`), every `reassign_every` steps the centroids
  whose count is below `reassign_ratio * max(counts)` are moved to batch points drawn in
  proportion to their squared distance (as k-means++) and given the smallest count among the
  others, so dead clusters come back to life (sklearn's `reassignment_ratio`).

  Args:
    state: current `KMeansState`.
    x: points `[N, D]` (may be sharded over the data axis).
    weights: `[N]` point weights (0 = padding).
    key: PRNG key, needed when `reassign_ratio > 0`.
    reassign_ratio: see above; 0 disables reassignment.
    reassign_every: reassign on steps `reassign_every - 1, 2 * reassign_every - 1, ...`.

  Returns:
    `(new_state, metrics)` with metrics `inertia` (weighted mean squared distance of the
    batch to its centroid before the update), `num_reassigned` and `cluster_perplexity`.
  """
  x = jnp.asarray(x, jnp.float32)
  w = _weights(x, weights)
  k = state.centroids.shape[0]
  ids, d2 = assign(x, state.centroids)
  batch_counts = jax.ops.segment_sum(w, ids, num_segments=k)  # [K]
  batch_sums = jax.ops.segment_sum(w[:, None] * x, ids, num_segments=k)  # [K, D]
  counts = state.counts + batch_counts
  moved = state.centroids * state.counts[:, None] + batch_sums
  moved = moved / jnp.maximum(counts, 1e-12)[:, None]
  centroids = jnp.where(batch_counts[:, None] > 0, moved, state.centroids)

  num_reassigned = jnp.zeros((), jnp.int32)
  if reassign_ratio > 0:
    if key is None:
      raise ValueError("minibatch_kmeans_step: reassign_ratio > 0 needs a PRNG key")
    due = (state.step + 1) % reassign_every == 0
    dead = due & (counts < reassign_ratio * jnp.max(counts))  # [K]
    p = w * d2
    p = jnp.where(jnp.sum(p) > 0, p, w)
    picks = jax.random.categorical(key, jnp.log(p), shape=(k,))  # [K]
    centroids = jnp.where(dead[:, None], x[picks], centroids)
    min_alive = jnp.min(jnp.where(dead, jnp.inf, counts))
    counts = jnp.where(dead, min_alive, counts)
    num_reassigned = jnp.sum(dead).astype(jnp.int32)

  total = jnp.maximum(jnp.sum(w), 1e-12)
  usage = batch_counts / total
  perplexity = jnp.exp(-jnp.sum(jnp.where(usage > 0, usage * jnp.log(usage), 0.0)))
  metrics = {
      "inertia": jnp.sum(w * d2) / total,
      "num_reassigned": num_reassigned,
      "cluster_perplexity": perplexity,
  }
  return KMeansState(centroids=centroids, counts=counts, step=state.step + 1), metrics


def inertia(x: jax.Array, centroids: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Weighted mean squared distance of points `[N, D]` to their nearest centroid."""
  w = _weights(x, weights)
  _, d2 = assign(x, centroids)
  return jnp.sum(w * d2) / jnp.maximum(jnp.sum(w), 1e-12)
