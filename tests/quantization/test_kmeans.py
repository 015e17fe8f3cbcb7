"""Mini-batch k-means: seeding, assignment, updates, resumption and sharding."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from audiolm_jax.quantization import kmeans

# Jitted once for the whole file; the tests share shapes (512 points, batches of 128) so that
# each program compiles once.
INIT = jax.jit(kmeans.kmeans_plusplus_init, static_argnames=("k", "num_local_trials"))
STEP = jax.jit(kmeans.minibatch_kmeans_step, static_argnames=("reassign_ratio", "reassign_every"))


def _blobs(n_per=64, k=8, d=4, seed=0):
  """`k` well separated Gaussian clusters; returns points [N, D], labels [N], means [K, D]."""
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((k, d)) * 20.0
  labels = np.repeat(np.arange(k), n_per)
  x = means[labels] + rng.standard_normal((k * n_per, d))
  perm = rng.permutation(len(x))
  return x[perm].astype(np.float32), labels[perm], means.astype(np.float32)


def test_assign_matches_numpy():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 5, 3)).astype(np.float32)
  c = rng.standard_normal((6, 3)).astype(np.float32)
  ids, d2 = kmeans.assign(x, c)
  ref = ((x[..., None, :] - c) ** 2).sum(-1)  # [2, 5, 6]
  assert ids.shape == (2, 5) and ids.dtype == jnp.int32
  np.testing.assert_array_equal(ids, ref.argmin(-1))
  np.testing.assert_allclose(d2, ref.min(-1), rtol=1e-5, atol=1e-5)


def test_kmeans_recovers_separable_clusters():
  x, labels, means = _blobs()
  state = kmeans.KMeansState.create(INIT(jax.random.key(0), x, k=8))
  for i in range(6):
    batch = x[(i * 128) % len(x):][:128]
    state, metrics = STEP(state, batch)
  ids, _ = kmeans.assign(x, state.centroids)
  ids = np.asarray(ids)
  # Every true cluster maps to exactly one centroid and no two clusters share one.
  mapping = {l: set(ids[labels == l]) for l in range(8)}
  assert all(len(v) == 1 for v in mapping.values()), mapping
  assert len(set.union(*mapping.values())) == 8
  for l, (c,) in mapping.items():
    np.testing.assert_allclose(state.centroids[c], means[l], atol=0.5)
  assert float(metrics["inertia"]) < 6.0  # ~ D = 4 for unit-variance clusters
  assert int(state.step) == 6
  np.testing.assert_allclose(float(state.counts.sum()), 6 * 128)


def test_plusplus_init_ignores_zero_weight_points():
  x, _, _ = _blobs()
  xs = x.copy()
  xs[:5] = 1e4  # padding frames that must never become centres
  w = np.ones(len(x), np.float32)
  w[:5] = 0
  c = np.asarray(INIT(jax.random.key(3), xs, weights=w, k=8))
  assert np.abs(c).max() < 1e3
  # Seeding alone already puts one centre in each well-separated cluster.
  assert len(np.unique(np.asarray(kmeans.assign(x[5:], c)[0]))) == 8


def test_update_is_the_running_mean_and_ignores_padding():
  c0 = np.array([[0.0, 0.0], [10.0, 10.0]], np.float32)
  state = kmeans.KMeansState.create(c0)
  b1 = np.array([[1.0, 0.0], [3.0, 0.0], [11.0, 10.0], [500.0, 500.0]], np.float32)
  w1 = np.array([1, 1, 1, 0], np.float32)
  state, _ = STEP(state, b1, w1)
  # First batch: counts start at 0, so each centroid becomes the mean of its points.
  np.testing.assert_allclose(state.centroids, [[2.0, 0.0], [11.0, 10.0]])
  np.testing.assert_allclose(state.counts, [2.0, 1.0])
  b2 = np.array([[5.0, 0.0]], np.float32)
  state, _ = STEP(state, b2)
  np.testing.assert_allclose(state.centroids[0], [(1 + 3 + 5) / 3, 0.0], rtol=1e-6)
  np.testing.assert_allclose(state.centroids[1], [11.0, 10.0])  # no points: unchanged


def test_dead_centroid_is_reassigned():
  x, _, _ = _blobs()
  c0 = np.array(INIT(jax.random.key(0), x, k=8))
  c0[3] = 1e4  # never the nearest of anything
  state = kmeans.KMeansState.create(c0)
  state, m = STEP(state, x[:128], key=jax.random.key(1), reassign_ratio=0.01, reassign_every=1)
  assert int(m["num_reassigned"]) == 1
  assert np.abs(np.asarray(state.centroids)).max() < 1e3
  assert float(state.counts[3]) > 0


def test_restart_from_saved_state_continues_identically():
  x, _, _ = _blobs()
  state = kmeans.KMeansState.create(INIT(jax.random.key(0), x, k=8))
  batches = [x[i * 128:(i + 1) * 128] for i in range(4)]
  straight = state
  for b in batches:
    straight, _ = STEP(straight, b)
  resumed = state
  for b in batches[:2]:
    resumed, _ = STEP(resumed, b)
  saved = jax.tree.map(np.asarray, resumed)  # what a checkpoint holds: plain arrays
  resumed = jax.tree.map(jnp.asarray, saved)
  for b in batches[2:]:
    resumed, _ = STEP(resumed, b)
  jax.tree.map(np.testing.assert_array_equal, straight, resumed)


def test_sharded_step_equals_unsharded():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  x, _, _ = _blobs()
  w = (np.arange(len(x)) % 7 != 0).astype(np.float32)
  state = kmeans.KMeansState.create(INIT(jax.random.key(0), x, k=8))
  step = STEP
  ref, ref_m = step(state, x, w)
  xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))
  ws = jax.device_put(w, NamedSharding(mesh, P("data")))
  out, out_m = step(state, xs, ws)
  assert xs.sharding.spec == P("data", None)
  np.testing.assert_allclose(out.centroids, ref.centroids, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.counts, ref.counts)
  np.testing.assert_allclose(out_m["inertia"], ref_m["inertia"], rtol=1e-5)
  ids, _ = kmeans.assign(xs, state.centroids)
  np.testing.assert_array_equal(ids, kmeans.assign(x, state.centroids)[0])
