"""Residual vector quantiser: EMA against numpy, k-means init, restarts, dropout, gradients."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.quantization.rvq import VQ_STATS, ResidualVectorQuantizer, RVQConfig


def _quantizer(**kw):
  cfg = dict(num_quantizers=3, codebook_size=8, dim=4, frame_rate=50.0)
  cfg.update(kw)
  return ResidualVectorQuantizer(RVQConfig(**cfg))


def _stats(q, k, d, seed=0, initialized=True):
  rng = np.random.default_rng(seed)
  return {"codebook": rng.normal(size=(q, k, d)).astype(np.float32),
          "cluster_size": rng.uniform(1.0, 5.0, size=(q, k)).astype(np.float32),
          "embed_sum": rng.normal(size=(q, k, d)).astype(np.float32),
          "initialized": np.array(initialized)}


@functools.partial(jax.jit, static_argnums=0)
def _train_step(vq, stats, x, key):
  return vq.apply({VQ_STATS: stats}, x, train=True, rngs={"quantizer": key}, mutable=[VQ_STATS])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run(vq, method, stats, x):
  """`vq.<method>(x)` outside training (jitted once per quantiser, method and shape)."""
  return vq.apply({VQ_STATS: stats}, x, method=method)


def _train(vq, stats, x, seed=0):
  """One training call; returns (result, new stats)."""
  result, mutated = _train_step(vq, stats, x, jax.random.key(seed))
  return result, jax.tree.map(np.asarray, nn.unbox(mutated[VQ_STATS]))


def test_shapes_codes_and_bitrate():
  vq = _quantizer()
  x = jax.random.normal(jax.random.key(0), (2, 5, 4))
  stats = _stats(3, 8, 4)
  result = _run(vq, "__call__", stats, x)
  assert result.quantized.shape == (2, 5, 4)
  assert result.codes.shape == (2, 5, 3) and result.codes.dtype == jnp.int32
  assert int(result.codes.min()) >= 0 and int(result.codes.max()) < 8
  assert result.perplexity.shape == (3,) and result.dead_fraction.shape == (3,)
  np.testing.assert_array_equal(result.n_q, [3, 3])      # no dropout outside training
  assert float(result.bits_per_second) == pytest.approx(50 * 3 * 3)
  assert RVQConfig(num_quantizers=12, codebook_size=1024).bits_per_second() == 6000
  assert RVQConfig(num_quantizers=12, codebook_size=1024).bits_per_second(4) == 2000
  np.testing.assert_array_equal(_run(vq, "encode", stats, x), result.codes)
  variables = jax.eval_shape(vq.init, jax.random.key(1), x)
  assert variables[VQ_STATS]["codebook"].value.shape == (3, 8, 4)
  specs = nn.get_partition_spec(variables)[VQ_STATS]
  assert tuple(specs["codebook"]) == (None, "codebook", "codebook_dim")
  assert tuple(specs["cluster_size"]) == (None, "codebook")


def test_straight_through_gradient_is_the_identity():
  vq = _quantizer()
  x = jax.random.normal(jax.random.key(0), (2, 5, 4))
  stats = _stats(3, 8, 4)
  g = jax.random.normal(jax.random.key(1), x.shape)

  def f(x):
    result, _ = vq.apply({VQ_STATS: stats}, x, train=True,
                         rngs={"quantizer": jax.random.key(2)}, mutable=[VQ_STATS])
    return jnp.sum(result.quantized * g), result.commitment_loss

  grad_out, grad_commit = jax.jit(jax.jacrev(f))(x)
  np.testing.assert_allclose(grad_out, g, rtol=1e-6)     # d(quantized)/dx = I
  assert float(jnp.abs(grad_commit).sum()) > 0          # the commitment loss pulls x too


def _numpy_rvq_step(x, stats, decay, eps):
  """Reference EMA step of every level (no dropout, no restarts)."""
  q_levels, k, d = stats["codebook"].shape
  residual = x.reshape(-1, d).astype(np.float64)
  out = {name: np.array(v, np.float64) for name, v in stats.items() if name != "initialized"}
  codes, quantized = [], np.zeros_like(residual)
  for q in range(q_levels):
    codebook = stats["codebook"][q].astype(np.float64)
    dist = ((residual[:, None, :] - codebook[None]) ** 2).sum(-1)
    c = dist.argmin(-1)
    counts = np.bincount(c, minlength=k)
    sums = np.zeros((k, d))
    np.add.at(sums, c, residual)
    size = decay * stats["cluster_size"][q] + (1 - decay) * counts
    embed = decay * stats["embed_sum"][q] + (1 - decay) * sums
    n = size.sum()
    smoothed = (size + eps) / (n + k * eps) * n
    out["cluster_size"][q], out["embed_sum"][q] = size, embed
    out["codebook"][q] = embed / smoothed[:, None]
    codes.append(c)
    quantized += codebook[c]
    residual = residual - codebook[c]
  return out, np.stack(codes, -1), quantized


def test_ema_update_matches_numpy_reference():
  vq = _quantizer(num_quantizers=2, codebook_size=4, dim=3, decay=0.9, epsilon=1e-3,
                  dead_code_threshold=0.0, quantizer_dropout=False)
  x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype(np.float32)
  stats = _stats(2, 4, 3, seed=2)
  result, new = _train(vq, stats, x)
  ref, ref_codes, ref_quantized = _numpy_rvq_step(x, stats, decay=0.9, eps=1e-3)
  np.testing.assert_array_equal(result.codes.reshape(-1, 2), ref_codes)
  np.testing.assert_allclose(result.quantized.reshape(-1, 3), ref_quantized, atol=1e-5)
  for name in ("cluster_size", "embed_sum", "codebook"):
    np.testing.assert_allclose(new[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)
  assert bool(new["initialized"])


def test_dead_codes_are_restarted_from_the_batch():
  vq = _quantizer(num_quantizers=1, codebook_size=8, dim=2, dead_code_threshold=1.0,
                  quantizer_dropout=False)
  rng = np.random.default_rng(0)
  centres = np.array([[5, 5], [-5, 5], [5, -5], [-5, -5]], np.float32)
  x = (centres[rng.integers(0, 4, size=40)] + 0.1 * rng.normal(size=(40, 2))).astype(np.float32)
  x = x.reshape(2, 20, 2)
  codebook = np.concatenate([centres, np.full((4, 2), 100.0, np.float32)])[None]  # 4 unused
  stats = {"codebook": codebook,
           "cluster_size": np.array([[50.0] * 4 + [0.0] * 4], np.float32),
           "embed_sum": codebook * 50.0,
           "initialized": np.array(True)}
  result, new = _train(vq, stats, x)
  rows = {tuple(r) for r in x.reshape(-1, 2)}
  for code in range(4, 8):                              # restarted: now a batch vector
    assert tuple(new["codebook"][0, code]) in rows
    assert new["cluster_size"][0, code] == pytest.approx(1.0)
  np.testing.assert_allclose(new["codebook"][0, :4], centres, atol=0.2)   # live: kept
  assert float(result.dead_fraction[0]) == pytest.approx(0.5)
  # Outside training the restarted codes still count as dead until they attract vectors.
  assert float(_run(vq, "__call__", new, x).dead_fraction[0]) == pytest.approx(0.5)


def test_dead_code_threshold_scales_with_each_levels_share_under_dropout():
  cfg = RVQConfig(num_quantizers=4, dead_code_threshold=2.0)
  np.testing.assert_allclose(cfg.dead_code_thresholds(), [2.0, 1.5, 1.0, 0.5])
  cfg = RVQConfig(num_quantizers=4, dead_code_threshold=2.0, quantizer_dropout=False)
  np.testing.assert_allclose(cfg.dead_code_thresholds(), [2.0] * 4)
  cfg = RVQConfig(num_quantizers=4, dead_code_threshold=2.0, quantizer_dropout_rate=0.5)
  np.testing.assert_allclose(cfg.dead_code_thresholds(), [2.0, 1.75, 1.5, 1.25])
  # Level 1 of 2 (share 1/2): a code at 0.7 vectors per batch lives under threshold 1.0.
  vq = _quantizer(num_quantizers=2, codebook_size=8, dim=4, dead_code_threshold=1.0,
                  decay=1.0)
  stats = _stats(2, 8, 4)
  stats["cluster_size"][:] = 0.7
  result = _run(vq, "__call__", stats, np.zeros((1, 2, 4), np.float32))
  np.testing.assert_allclose(result.dead_fraction, [1.0, 0.0])


def test_kmeans_initialisation_runs_once_on_the_first_batch():
  vq = _quantizer(num_quantizers=1, codebook_size=4, dim=2, quantizer_dropout=False)
  rng = np.random.default_rng(0)
  centres = np.array([[10, 0], [-10, 0], [0, 10], [0, -10]], np.float32)
  x = (centres[rng.integers(0, 4, size=64)] + 0.1 * rng.normal(size=(64, 2))).astype(np.float32)
  x = x.reshape(4, 16, 2)
  result, stats = _train(vq, _stats(1, 4, 2, initialized=False), x)
  assert bool(stats["initialized"])
  # Every centre found; the first batch is already quantised with the k-means codebook.
  dist = np.linalg.norm(stats["codebook"][0][:, None] - centres[None], axis=-1)
  assert dist.min(axis=0).max() < 0.5
  assert float(result.commitment_loss) < 0.1
  assert float(result.perplexity[0]) > 3.0
  # A second call only moves the codebook by EMA: no fresh k-means on other data.
  _, stats2 = _train(vq, stats, x + 3.0, seed=1)
  counts = np.bincount(np.asarray(_run(vq, "encode", stats, x + 3.0)).ravel(), minlength=4)
  np.testing.assert_allclose(stats2["cluster_size"],
                             0.99 * stats["cluster_size"] + 0.01 * counts, rtol=1e-5)


@functools.partial(jax.jit, static_argnums=0)
def _masked_train_step(vq, stats, x, mask, key):
  return vq.apply({VQ_STATS: stats}, x, train=True, mask=mask, rngs={"quantizer": key},
                  mutable=[VQ_STATS])


def test_masked_rows_take_no_part_in_statistics_or_losses():
  vq = _quantizer(num_quantizers=2, codebook_size=4, dim=3, decay=0.9, epsilon=1e-3,
                  dead_code_threshold=0.0, quantizer_dropout=False)
  x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype(np.float32)
  garbage = np.full((1, 6, 3), 50.0, np.float32)   # an invalid row far from every code
  stats = _stats(2, 4, 3, seed=2)
  ref, ref_stats = _train(vq, stats, x)
  out, mutated = _masked_train_step(vq, stats, np.concatenate([x, garbage]),
                                    np.array([True, True, False]), jax.random.key(0))
  new = jax.tree.map(np.asarray, nn.unbox(mutated[VQ_STATS]))
  for name in ("cluster_size", "embed_sum", "codebook"):
    np.testing.assert_allclose(new[name], ref_stats[name], rtol=1e-5, atol=1e-5, err_msg=name)
  np.testing.assert_allclose(out.commitment_loss, ref.commitment_loss, rtol=1e-5)
  np.testing.assert_allclose(out.perplexity, ref.perplexity, rtol=1e-5)
  np.testing.assert_array_equal(out.codes[:2], ref.codes)   # the valid rows still quantised

  # Dead-code restarts draw only from valid rows: every code is dead here, and the invalid
  # row holds a third of the vectors.
  vq = _quantizer(num_quantizers=1, codebook_size=64, dim=3, dead_code_threshold=1e3,
                  quantizer_dropout=False)
  x = np.concatenate([np.random.default_rng(3).normal(size=(2, 16, 3)), garbage[:, :1]
                      .repeat(16, 1)]).astype(np.float32)
  for seed in range(3):
    _, mutated = _masked_train_step(vq, _stats(1, 64, 3), x, np.array([True, True, False]),
                                    jax.random.key(seed))
    codebook = np.asarray(nn.unbox(mutated[VQ_STATS])["codebook"])
    assert np.abs(codebook).max() < 10.0, codebook


def test_quantizer_dropout_draws_every_level_count():
  q_levels = 4
  vq = _quantizer(num_quantizers=q_levels, codebook_size=8, dim=4)
  x = jax.random.normal(jax.random.key(0), (64, 3, 4))
  stats = _stats(q_levels, 8, 4)
  result, _ = _train(vq, stats, x)
  n_q = np.asarray(result.n_q)
  assert set(n_q.tolist()) == set(range(1, q_levels + 1))
  # Each example's output is exactly the sum of its first n_q levels (all codes returned).
  assert result.codes.shape == (64, 3, q_levels)
  codes = np.asarray(result.codes)
  for i in range(64):
    expected = sum(stats["codebook"][q][codes[i, :, q]] for q in range(n_q[i]))   # [T, D]
    np.testing.assert_allclose(result.quantized[i], expected, atol=1e-5)
  bits = 50 * n_q.mean() * math.log2(8)
  assert float(result.bits_per_second) == pytest.approx(bits, rel=1e-5)


def test_quantizer_dropout_rate_keeps_all_levels_for_the_other_examples():
  vq = _quantizer(num_quantizers=4, codebook_size=8, dim=4, quantizer_dropout_rate=0.5)
  result, _ = _train(vq, _stats(4, 8, 4), jax.random.normal(jax.random.key(0), (400, 2, 4)))
  n_q = np.asarray(result.n_q)
  assert set(n_q.tolist()) == {1, 2, 3, 4}
  # Half keep all 4 levels, the other half draw uniformly (a quarter of them 4 as well).
  assert 0.55 < np.mean(n_q == 4) < 0.70, np.mean(n_q == 4)


def test_decode_accepts_any_number_of_leading_levels():
  vq = _quantizer(num_quantizers=4, codebook_size=16, dim=2, quantizer_dropout=False)
  x = jax.random.normal(jax.random.key(0), (4, 16, 2))
  _, stats = _train(vq, _stats(4, 16, 2, initialized=False), x)     # k-means initialised
  codes = _run(vq, "encode", stats, x)
  errors = []
  for n in range(1, 5):
    x_hat = _run(vq, "decode", stats, codes[..., :n])
    errors.append(float(jnp.mean((x - x_hat) ** 2)))
  assert all(a > b for a, b in zip(errors, errors[1:])), errors   # each level refines
  with pytest.raises(ValueError, match="levels"):
    _run(vq, "decode", stats, jnp.zeros((1, 2, 5), jnp.int32))
