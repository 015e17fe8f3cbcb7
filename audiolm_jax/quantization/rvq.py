"""Residual vector quantiser with EMA codebooks (SoundStream, Zeghidour et al. 2021, Alg. 1).

Shape letters: B batch, T frames, D vector dimension, Q quantiser levels, K codes per level,
N = B * T vectors in a flattened batch.

Level q quantises what the levels before it left over:

    r_0 = x;   c_q = argmin_k |r_q - e_q[k]|;   r_{q+1} = r_q - e_q[c_q];   x_hat = sum_q e_q[c_q]

Codebooks are not trained by gradients but by exponential moving averages of the vectors
assigned to each code (VQ-VAE, van den Oord et al. 2017, Appendix A.1), with:

- **k-means initialisation**: on the first training batch each level runs k-means++ seeding
  and a few Lloyd iterations on its residuals (inside jit, gated by the `initialized` flag);
- **dead-code restart**: a code whose EMA cluster size falls below `dead_code_threshold` is
  replaced by a random vector of the current batch at that level. With quantiser dropout,
  level q only sees the examples with `n_q > q`, an expected share `(Q - q) / Q` of the batch
  (`rate * (Q - q) / Q + 1 - rate` with a dropout rate),
  so its threshold is scaled by that share: otherwise the last levels, whose codes all get few
  vectors, would restart a large part of their codebook at every step;
- **straight-through estimator**: the output is `x + stop_gradient(x_hat - x)`, so the
  gradient reaches the encoder unchanged, and a **commitment loss** `|r_q - sg(e_q[c_q])|^2`
  pulls the encoder towards its codes;
- **quantiser dropout**: in training each example (or a share `quantizer_dropout_rate` of
  them; the rest use all Q) draws `n_q ~ U{1..Q}` and only its first `n_q` levels contribute
  to `x_hat`, losses and codebook statistics, so one model serves every
  bitrate from 1 to Q levels. All Q codes are always returned; `decode(codes[..., :n])` works
  for any `n`.

The codebooks and their statistics are not parameters: they live in the linen collection
`"vq_stats"`, read in every call and written in training (`mutable=["vq_stats"]`).

The levels run in a `lax.scan` over the stacked `[Q, ...]` statistics rather than a Python
loop: the level body (with its k-means `fori_loop`) is traced and compiled once instead of Q
times, which keeps compile time flat in Q (12 levels for speech in AudioLM); the levels are
sequential anyway, so nothing is lost at run time.
"""

from __future__ import annotations

import dataclasses
import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.quantization.kmeans import kmeans_plusplus_init, squared_distances

Array = jax.Array

# The linen collection holding codebooks and EMA statistics.
VQ_STATS = "vq_stats"
# The rng stream used in training (quantiser dropout, k-means seeds, dead-code restarts).
RNG_STREAM = "quantizer"


@dataclasses.dataclass(frozen=True)
class RVQConfig:
  """Hyperparameters of a residual vector quantiser.

  Attributes:
    num_quantizers: Q, levels.
    codebook_size: K, codes per level.
    dim: D, dimension of the vectors (the encoder's output channels).
    decay: EMA decay of cluster sizes and sums.
    epsilon: Laplace smoothing of the cluster sizes.
    dead_code_threshold: a code whose EMA cluster size (vectors per batch) falls below this is
      restarted; 0 disables restarts. With quantizer dropout level q uses
      `threshold * (Q - q) / Q`, its expected share of the batch. Keep it well below
      N / K, a code's share of a batch of N vectors under uniform use (EnCodec: 2 with
      about 5 vectors per code).
    kmeans_iters: Lloyd iterations of the k-means initialisation on the first batch.
    quantizer_dropout: draw `n_q ~ U{1..Q}` per example in training.
    quantizer_dropout_rate: the share of examples that draw `n_q`; the others use all Q
      levels (SoundStream: 1; DAC uses 0.5, which trains the last levels on more vectors and
      costs little at low bitrates).
    frame_rate: frames per second of the vectors (for bits per second).
  """
  num_quantizers: int = 12
  codebook_size: int = 1024
  dim: int = 512
  decay: float = 0.99
  epsilon: float = 1e-5
  dead_code_threshold: float = 2.0
  kmeans_iters: int = 10
  quantizer_dropout: bool = True
  quantizer_dropout_rate: float = 1.0
  frame_rate: float = 50.0

  def dead_code_thresholds(self) -> jax.Array:
    """[Q] restart threshold of each level: scaled by its expected share under dropout."""
    q = self.num_quantizers
    rate = self.quantizer_dropout_rate if self.quantizer_dropout else 0.0
    share = rate * (q - jnp.arange(q, dtype=jnp.float32)) / q + (1.0 - rate)
    return self.dead_code_threshold * share

  def bits_per_second(self, n_q: int | None = None) -> float:
    """Bitrate with the first `n_q` levels (all by default): `frame_rate * n_q * log2 K`."""
    n_q = self.num_quantizers if n_q is None else n_q
    return self.frame_rate * n_q * math.log2(self.codebook_size)


@flax.struct.dataclass
class QuantizedResult:
  """What a quantiser call returns.

  Attributes:
    quantized: [B, T, D] the sum of each example's first `n_q` levels, with a straight-through
      gradient to the input.
    codes: [B, T, Q] int32 code of every level (all Q, whatever `n_q`).
    commitment_loss: scalar, mean `|r_q - sg(e_q[c_q])|^2` over the active levels.
    perplexity: [Q] exp(entropy) of each level's code usage in this batch (active levels).
    dead_fraction: [Q] fraction of each level's codes that are dead: in training those whose
      EMA cluster size fell below the threshold and were restarted in this step; otherwise
      those whose size is at most the threshold (restarted and not used since).
    n_q: [B] int32 levels used by each example.
    bits_per_second: scalar, the bitrate at the batch's mean `n_q`.
  """
  quantized: Array
  codes: Array
  commitment_loss: Array
  perplexity: Array
  dead_fraction: Array
  n_q: Array
  bits_per_second: Array


def nearest_code(x: Array, codebook: Array) -> Array:
  """Index of the nearest code for each row of x [N, D] -> [N] int32."""
  return jnp.argmin(squared_distances(x, codebook), axis=-1).astype(jnp.int32)


def _cluster_sums(onehot: Array, x: Array) -> Array:
  """Sum of the rows of x [N, D] assigned to each code, onehot [N, K] -> [K, D] (fp32)."""
  return jnp.einsum("nk,nd->kd", onehot, x, precision=jax.lax.Precision.HIGHEST)


def _sample_rows(key: Array, x: Array, n: int, weights: Array | None = None,
                 candidates: int = 16) -> Array:
  """`n` rows of x [N, D]; with `weights` [N] (0 excludes a row), rows of weight 0 are avoided.

  Each of the n draws takes `candidates` uniform row indices and keeps the first with a
  positive weight (the first if none has one). Indices come from the key alone (replicated),
  and rows and weights are fetched together in one gather that depends on x: a sampler over
  a sharded weight vector (e.g. `categorical`) would add a collective that depends only on
  the mask, which XLA:CPU may then schedule in a different order on different devices of a
  simulated mesh (a rendezvous deadlock seen in the tests).
  """
  if weights is None:
    idx = jax.random.choice(key, x.shape[0], (n,), replace=x.shape[0] < n)
    return x[idx]
  idx = jax.random.randint(key, (n, candidates), 0, x.shape[0])
  rows = jnp.concatenate([x, weights[:, None].astype(x.dtype)], axis=-1)[idx]   # [n, C, D+1]
  first = jnp.argmax(rows[..., -1] > 0, axis=-1)                                # [n]
  return jnp.take_along_axis(rows[..., :-1], first[:, None, None], axis=1)[:, 0]


def lloyd_kmeans(x: Array, num_clusters: int, iters: int, key: Array) -> tuple[Array, Array]:
  """Lloyd's k-means of x [N, D], seeded by k-means++.

  Returns (centroids [K, D], cluster sizes [K] of the final assignment). A cluster that
  loses all its points keeps its previous centroid.
  """
  def assign(centroids):
    return jax.nn.one_hot(nearest_code(x, centroids), num_clusters, dtype=x.dtype)  # [N, K]

  def step(_, centroids):
    onehot = assign(centroids)
    counts = onehot.sum(0)
    sums = _cluster_sums(onehot, x)                                                # [K, D]
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)

  centroids = jax.lax.fori_loop(0, iters, step, kmeans_plusplus_init(key, x, num_clusters))
  return centroids, assign(centroids).sum(0)


def perplexity(counts: Array) -> Array:
  """exp(entropy) of the distribution given by `counts [..., K]` (1 for an empty one)."""
  p = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1e-12)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
  return jnp.exp(entropy)


def ema_update(codebook_size: int, decay: float, epsilon: float, cluster_size: Array,
               embed_sum: Array, counts: Array, sums: Array) -> tuple[Array, Array, Array]:
  """One EMA step of a level's statistics.

  Args:
    codebook_size: K.
    decay: EMA decay.
    epsilon: Laplace smoothing.
    cluster_size: [K] EMA of the number of vectors per code.
    embed_sum: [K, D] EMA of the sum of the vectors per code.
    counts: [K] vectors assigned to each code in this batch.
    sums: [K, D] sum of the vectors assigned to each code in this batch.

  Returns:
    (cluster_size, embed_sum, codebook) after the step; the codebook is the smoothed mean
    `embed_sum / cluster_size`.
  """
  cluster_size = decay * cluster_size + (1.0 - decay) * counts
  embed_sum = decay * embed_sum + (1.0 - decay) * sums
  total = cluster_size.sum()
  smoothed = (cluster_size + epsilon) / (total + codebook_size * epsilon) * total
  return cluster_size, embed_sum, embed_sum / smoothed[:, None]


class ResidualVectorQuantizer(nn.Module):
  """Residual vector quantiser, `[B, T, D] -> QuantizedResult`.

  Variables (collection `"vq_stats"`): `codebook` [Q, K, D], `cluster_size` [Q, K],
  `embed_sum` [Q, K, D], `initialized` [] bool. Training (`train=True`) needs the rng stream
  `"quantizer"` and `mutable=["vq_stats"]`.

  Attributes:
    config: the quantiser's hyperparameters.
  """
  config: RVQConfig

  def setup(self):
    c = self.config
    q, k, d = c.num_quantizers, c.codebook_size, c.dim

    def init_codebook():
      return jax.random.normal(self.make_rng("params"), (q, k, d), jnp.float32)

    self.codebook = self.variable(
        VQ_STATS, "codebook",
        nn.with_logical_partitioning(init_codebook, (None, "codebook", "codebook_dim")))
    self.cluster_size = self.variable(
        VQ_STATS, "cluster_size",
        nn.with_logical_partitioning(lambda: jnp.zeros((q, k), jnp.float32), (None, "codebook")))
    self.embed_sum = self.variable(
        VQ_STATS, "embed_sum",
        nn.with_logical_partitioning(lambda: jnp.zeros((q, k, d), jnp.float32),
                                     (None, "codebook", "codebook_dim")))
    self.initialized = self.variable(
        VQ_STATS, "initialized", nn.with_logical_partitioning(lambda: jnp.array(False), ()))

  def __call__(self, x: Array, train: bool = False,
               mask: Array | None = None) -> QuantizedResult:
    """Quantises x [B, T, D]; in training also updates the codebooks.

    Args:
      x: [B, T, D] vectors (the encoder output).
      train: draw quantiser dropout, initialise codebooks by k-means on the first call, update
        them by EMA and restart dead codes. Does nothing to the statistics while the model is
        being initialised.
      mask: optional [B] or [B, T] validity of the examples / frames (1 valid, 0 padding or
        an unreadable record). Masked vectors are still quantised, but they take no part in
        the commitment loss, the usage statistics, the EMA update or the dead-code restarts
        (the one-off k-means initialisation on the first batch does not use the mask).
    """
    c = self.config
    b, t, d = x.shape
    q_levels, k = c.num_quantizers, c.codebook_size
    x = x.astype(jnp.float32)
    update = train and not self.is_initializing()

    if train and c.quantizer_dropout:
      rng, dropout_rng, rate_rng = jax.random.split(self.make_rng(RNG_STREAM), 3)
      n_q = jax.random.randint(dropout_rng, (b,), 1, q_levels + 1)
      if c.quantizer_dropout_rate < 1.0:
        drops = jax.random.bernoulli(rate_rng, c.quantizer_dropout_rate, (b,))
        n_q = jnp.where(drops, n_q, q_levels)
    else:
      rng = self.make_rng(RNG_STREAM) if update else jax.random.key(0)
      n_q = jnp.full((b,), q_levels, jnp.int32)
    active = (jnp.arange(q_levels)[None, :] < n_q[:, None]).astype(jnp.float32)   # [B, Q]
    if mask is None:
      valid = jnp.ones((b, t), jnp.float32)
    else:
      valid = jnp.broadcast_to(
          mask.astype(jnp.float32).reshape(b, -1), (b, t))                        # [B, T]
    initialized = self.initialized.value

    def level(residual, inputs):                # residual: [N, D] entering this level
      codebook, cluster_size, embed_sum, active_q, threshold, key = inputs
      # Codebook statistics never carry gradients; only the commitment term below does.
      flat = jax.lax.stop_gradient(residual)                                      # [N, D]
      # Usage statistics count the vectors this level quantises for valid frames; restarts
      # draw from valid frames' residuals (dropout or not).
      weight = (active_q[:, None] * valid).reshape(b * t)                        # [N]
      if update:
        init_key, restart_key = jax.random.split(key)

        def kmeans_init():
          # Unweighted: a mask-only collective inside this conditional could be scheduled
          # out of order across devices (see `_sample_rows`); an invalid row in the first
          # batch at worst seeds one code, which the dead-code restarts then replace.
          centroids, counts = lloyd_kmeans(flat, k, c.kmeans_iters, init_key)
          return centroids, counts, centroids * counts[:, None]

        codebook, cluster_size, embed_sum = jax.lax.cond(
            initialized, lambda: (codebook, cluster_size, embed_sum), kmeans_init)
      codes = nearest_code(flat, codebook)                                        # [N]
      quantized = codebook[codes]                                                 # [N, D]
      onehot = jax.nn.one_hot(codes, k, dtype=jnp.float32) * weight[:, None]      # [N, K]
      counts = onehot.sum(0)                                                      # [K]
      # Outside training a code counts as dead up to the threshold itself, the size a restart
      # gives it: it was restarted at the last step and has not attracted vectors since.
      dead = cluster_size <= threshold
      if update:
        cluster_size, embed_sum, codebook = ema_update(
            k, c.decay, c.epsilon, cluster_size, embed_sum, counts, _cluster_sums(onehot, flat))
        dead = cluster_size < threshold
        fresh = _sample_rows(restart_key, flat, k, valid.reshape(b * t))          # [K, D]
        codebook = jnp.where(dead[:, None], fresh, codebook)
        embed_sum = jnp.where(dead[:, None], fresh * threshold, embed_sum)
        cluster_size = jnp.where(dead, threshold, cluster_size)
      sq_error = jnp.sum(weight * jnp.sum((residual - quantized) ** 2, axis=-1))
      outputs = dict(codes=codes.reshape(b, t), quantized=quantized.reshape(b, t, d),
                     counts=counts, dead=dead.mean(), sq_error=sq_error, codebook=codebook,
                     cluster_size=cluster_size, embed_sum=embed_sum)
      return residual - quantized, outputs

    keys = jax.random.split(rng, q_levels)
    stats = (self.codebook.value, self.cluster_size.value, self.embed_sum.value)
    _, out = jax.lax.scan(level, x.reshape(b * t, d),
                          (*stats, active.T, c.dead_code_thresholds(), keys))
    if update:
      self.codebook.value = out["codebook"]
      self.cluster_size.value = out["cluster_size"]
      self.embed_sum.value = out["embed_sum"]
      self.initialized.value = jnp.array(True)

    x_hat = jnp.einsum("bq,qbtd->btd", active, out["quantized"])                 # [B, T, D]
    mean_n_q = n_q.astype(jnp.float32).mean()
    return QuantizedResult(
        quantized=x + jax.lax.stop_gradient(x_hat - x),
        codes=out["codes"].transpose(1, 2, 0),                                    # [B, T, Q]
        commitment_loss=out["sq_error"].sum() / jnp.maximum(
            jnp.einsum("bq,bt->", active, valid) * d, 1.0),
        perplexity=perplexity(out["counts"]),
        dead_fraction=out["dead"],
        n_q=n_q,
        bits_per_second=c.frame_rate * mean_n_q * math.log2(k))

  def encode(self, x: Array) -> Array:
    """Codes of all Q levels for x [B, T, D] -> [B, T, Q] int32 (statistics untouched)."""
    b, t, d = x.shape

    def level(residual, codebook):
      codes = nearest_code(residual.reshape(b * t, d), codebook)
      return residual - codebook[codes].reshape(b, t, d), codes.reshape(b, t)

    _, codes = jax.lax.scan(level, x.astype(jnp.float32), self.codebook.value)    # [Q, B, T]
    return codes.transpose(1, 2, 0)

  def decode(self, codes: Array) -> Array:
    """Sum of the code vectors of the leading levels: codes [B, T, n], n <= Q -> [B, T, D]."""
    n = codes.shape[-1]
    if not 1 <= n <= self.config.num_quantizers:
      raise ValueError(f"codes have {n} levels; this quantiser has 1 to "
                       f"{self.config.num_quantizers}")
    codebook = self.codebook.value[:n]                                            # [n, K, D]
    return codebook[jnp.arange(n), codes].sum(axis=-2)                            # [B, T, D]
