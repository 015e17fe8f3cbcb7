"""Semantic tokens: frames of 40 ms, normalised features, k-means ids.

The frame rule (the one place it is defined):

    num_frames(S) = ceil(S / 640)

A clip of S samples at 16 kHz is zero-padded to `640 * num_frames(S)` samples and cut into
frames of 640 samples (40 ms, 25 Hz). SoundStream frames are 320 samples (50 Hz), so the padded
clip has exactly `2 * num_frames(S)` acoustic frames: semantic frame t covers acoustic frames
2t and 2t + 1, for every clip length. Tokenise both streams from the *padded* waveform
(`pad_to_frames`); on the unpadded clip a causal codec gives `ceil(S / 320)` frames, one fewer
when `S mod 640` is in `(0, 320]`.

A `SemanticTokenizer` = a feature extractor (w2v-BERT layer features, or the MFCC baseline)
+ per-dimension mean/std normalisation (statistics over the training data) + k-means centroids.
Its artifacts are saved without pickle: `semantic_tokenizer.npz` (arrays, loaded with
`allow_pickle=False`) and `semantic_tokenizer.json` (what the features are).

Shape letters: B batch, S samples, T 25 Hz frames, D feature dim, K clusters, N frames
flattened over a batch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
from typing import Any, Callable, Iterable, Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.errors import BadAudioError, CheckpointError, ConfigError
from audiolm_jax.layers import spectral
from audiolm_jax.quantization import kmeans

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640  # 40 ms: one semantic frame = two 320-sample SoundStream frames.
PAD_ID = -1  # The id of frames outside a clip (where the frame mask is False).
ARRAYS_FILE = "semantic_tokenizer.npz"
META_FILE = "semantic_tokenizer.json"


# --- Frames -----------------------------------------------------------------------------------


def num_frames(num_samples: int, samples_per_frame: int = SAMPLES_PER_FRAME) -> int:
  """Semantic frames of a clip of `num_samples` samples: `ceil(S / 640)` (see module doc)."""
  return -(-int(num_samples) // samples_per_frame)


def pad_to_frames(wav: jax.Array,
                  wav_mask: jax.Array | None = None,
                  samples_per_frame: int = SAMPLES_PER_FRAME) -> tuple[jax.Array, jax.Array]:
  """Zero-pads `wav [B, S]` (and its mask) to `num_frames(S) * samples_per_frame` samples."""
  s = wav.shape[-1]
  if wav_mask is None:
    wav_mask = jnp.ones(wav.shape, bool)
  pad = num_frames(s, samples_per_frame) * samples_per_frame - s
  wav = jnp.pad(jnp.asarray(wav, jnp.float32), ((0, 0), (0, pad)))
  wav_mask = jnp.pad(jnp.asarray(wav_mask, bool), ((0, 0), (0, pad)))
  return wav, wav_mask


def frame_mask(sample_mask: jax.Array, samples_per_frame: int = SAMPLES_PER_FRAME) -> jax.Array:
  """`[B, S] -> [B, S / samples_per_frame]`: a frame is valid if any of its samples is."""
  b, s = sample_mask.shape
  if s % samples_per_frame:
    raise ValueError(f"{s} samples are not whole frames of {samples_per_frame}; "
                     "pad_to_frames first")
  return jnp.any(sample_mask.reshape(b, s // samples_per_frame, samples_per_frame), axis=-1)


# --- Feature extractors -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """Features at 25 Hz for a tokenizer.

  Attributes:
    name: what the features are (e.g. "w2v_bert/mlm_layer_7", "mfcc/13"); stored with the
      tokenizer's artifacts and checked when they are loaded.
    dim: feature dim D.
    samples_per_frame: must be `SAMPLES_PER_FRAME`.
    apply: `(params, wav [B, S], wav_mask [B, S]) -> (features [B, T, D], frame_mask [B, T])`
      with `T = num_frames(S)`; jit-able and hashable (a frozen dataclass or a module-level
      function): it is a static argument of the jitted fit and tokenize functions, so equal
      extractors share compiled code.
    params: the pytree passed to `apply` (model weights; empty for MFCC).
  """
  name: str
  dim: int
  samples_per_frame: int
  apply: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
  params: Any = None

  def __post_init__(self):
    if self.samples_per_frame != SAMPLES_PER_FRAME:
      raise ConfigError(f"features {self.name!r} come every {self.samples_per_frame} samples; "
                        f"semantic tokens need {SAMPLES_PER_FRAME} (25 Hz at 16 kHz)")

  def __call__(self, wav, wav_mask=None) -> tuple[jax.Array, jax.Array]:
    """Jitted features `[B, T, D]` and frame mask `[B, T]` of `wav [B, S]`."""
    return _features(self.apply, self.params, *_check_wav(wav, wav_mask))


def _check_wav(wav, wav_mask):
  wav = jnp.asarray(wav, jnp.float32)
  if wav.ndim != 2 or wav.shape[-1] == 0:
    raise BadAudioError("waveform", "bad shape", f"expected [batch, samples], got {wav.shape}")
  if wav_mask is None:
    wav_mask = jnp.ones(wav.shape, bool)
  wav_mask = jnp.asarray(wav_mask, bool)
  if wav_mask.shape != wav.shape:
    raise BadAudioError("waveform", "bad shape",
                        f"mask {wav_mask.shape} does not match waveform {wav.shape}")
  return wav, wav_mask


def deltas(x: jax.Array, lengths: jax.Array, width: int = 2) -> jax.Array:
  """HTK regression deltas of `x [B, T, C]` over time, edges replicated at each clip's end.

  `d_t = sum_n n (x_{t+n} - x_{t-n}) / (2 sum_n n^2)`, n = 1..width, with indices clamped to
  `[0, length - 1]` so padding never enters a valid frame's delta.
  """
  t = jnp.arange(x.shape[1])
  last = jnp.maximum(lengths, 1)[:, None] - 1  # [B, 1]
  out = jnp.zeros_like(x)
  for n in range(1, width + 1):
    ahead = jnp.take_along_axis(x, jnp.clip(t + n, 0, last)[..., None], axis=1)
    behind = jnp.take_along_axis(x, jnp.clip(t - n, 0, last)[..., None], axis=1)
    out = out + n * (ahead - behind)
  return out / (2.0 * sum(n * n for n in range(1, width + 1)))


def mfcc_features(wav: jax.Array,
                  wav_mask: jax.Array | None = None,
                  sample_rate: int = SAMPLE_RATE,
                  n_mfcc: int = 13,
                  n_mels: int = 40,
                  n_fft: int = 400,
                  hop: int = 160,
                  top_db: float = 80.0) -> tuple[jax.Array, jax.Array]:
  """The GSLM-style baseline: MFCC + deltas + delta-deltas, averaged to 25 Hz frames.

  The waveform is padded by the frame rule; 10 ms MFCC frames (window centred on its hop,
  dB floor `top_db` below each clip's loudest valid frame) get HTK deltas and delta-deltas,
  and each 25 Hz frame is the mean of its four 10 ms frames.

  Returns:
    `(features [B, T, 3 * n_mfcc], frame_mask [B, T])` with `T = num_frames(S)`.
  """
  wav, wav_mask = _check_wav(wav, wav_mask)
  if SAMPLES_PER_FRAME % hop:
    raise ConfigError(f"mfcc hop {hop} does not divide {SAMPLES_PER_FRAME}")
  per_frame = SAMPLES_PER_FRAME // hop
  wav, wav_mask = pad_to_frames(wav, wav_mask)
  wav = jnp.where(wav_mask, wav, 0.0)
  left = (n_fft - hop) // 2
  wav = jnp.pad(wav, ((0, 0), (left, n_fft - hop - left)))
  mel = spectral.mel_spectrogram(wav, sample_rate, n_fft, hop, n_mels)  # [B, 4T, M]
  mask_fine = frame_mask(wav_mask, hop)  # [B, 4T]
  db = spectral.power_to_db(mel, top_db=None)
  loudest = jnp.max(jnp.where(mask_fine[..., None], db, -jnp.inf), axis=(1, 2), keepdims=True)
  db = jnp.maximum(db, loudest - top_db)
  c = jnp.einsum("btm,mc->btc", db, spectral.dct_matrix(n_mels, n_mfcc),
                 precision=jax.lax.Precision.HIGHEST)  # [B, 4T, C]
  lengths = jnp.sum(mask_fine, axis=1)
  d1 = deltas(c, lengths)
  feats = jnp.concatenate([c, d1, deltas(d1, lengths)], axis=-1)  # [B, 4T, 3C]
  b, t4, f = feats.shape
  w = mask_fine.astype(jnp.float32).reshape(b, t4 // per_frame, per_frame, 1)
  pooled = jnp.sum(feats.reshape(b, t4 // per_frame, per_frame, f) * w, axis=2)
  pooled = pooled / jnp.maximum(jnp.sum(w, axis=2), 1.0)  # [B, T, 3C]
  return pooled, frame_mask(wav_mask)


@dataclasses.dataclass(frozen=True)
class MfccFeatures:
  """`mfcc_features` as a hashable `FeatureExtractor.apply` (it takes no parameters)."""
  n_mfcc: int = 13
  n_mels: int = 40

  def __call__(self, params, wav, wav_mask):
    del params
    return mfcc_features(wav, wav_mask, n_mfcc=self.n_mfcc, n_mels=self.n_mels)


def mfcc_extractor(n_mfcc: int = 13, n_mels: int = 40) -> FeatureExtractor:
  """The MFCC baseline as a `FeatureExtractor` (no parameters)."""

  return FeatureExtractor(name=f"mfcc/{n_mfcc}x3/mels{n_mels}", dim=3 * n_mfcc,
                          samples_per_frame=SAMPLES_PER_FRAME,
                          apply=MfccFeatures(n_mfcc, n_mels), params={})


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


def normalize(features: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """Per-dimension `(x - mean) / std`."""
  return (features - mean) / std


# --- The tokenizer ----------------------------------------------------------------------------


# Features are one jitted program per extractor and input shape, shared by fitting and
# tokenising; normalisation and k-means are small programs of their own.
@functools.partial(jax.jit, static_argnums=0)
def _features(apply, params, wav, wav_mask):
  return apply(params, wav, wav_mask)  # [B, T, D], [B, T]


@jax.jit
def _ids(feats, fmask, mean, std, centroids):
  ids, _ = kmeans.assign(normalize(feats, mean, std), centroids)  # [B, T]
  return jnp.where(fmask, ids, PAD_ID)


@jax.jit
def _flat_frames(feats, fmask, mean, std):
  """Normalised frames flattened over the batch `x [N, D]`, and `weights [N]` (0 = padding)."""
  x = normalize(feats, mean, std)
  return x.reshape(-1, x.shape[-1]), fmask.reshape(-1).astype(jnp.float32)


class SemanticTokenizer:
  """Waveforms to semantic token ids: features -> normalise -> nearest centroid.

  Attributes:
    extractor: the `FeatureExtractor`.
    mean, std: `[D]` normalisation statistics.
    centroids: `[K, D]` k-means centroids in the normalised space.
  """

  def __init__(self, extractor: FeatureExtractor, mean, std, centroids):
    self.extractor = extractor
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self.centroids = jnp.asarray(centroids, jnp.float32)
    d = extractor.dim
    if self.mean.shape != (d,) or self.std.shape != (d,) or self.centroids.shape[1:] != (d,):
      raise CheckpointError(f"tokenizer arrays mean {self.mean.shape}, std {self.std.shape}, "
                            f"centroids {self.centroids.shape} do not fit {d}-dim features "
                            f"{extractor.name!r}")

  @property
  def num_clusters(self) -> int:
    return int(self.centroids.shape[0])

  def tokenize(self, wav, wav_mask=None) -> jax.Array:
    """Token ids `[B, T]` int32 of `wav [B, S]`, `T = num_frames(S)`; `PAD_ID` off the mask."""
    wav, wav_mask = _check_wav(wav, wav_mask)
    feats, fmask = _features(self.extractor.apply, self.extractor.params, wav, wav_mask)
    return _ids(feats, fmask, self.mean, self.std, self.centroids)

  def save(self, directory: str) -> None:
    """Writes `semantic_tokenizer.npz` and `semantic_tokenizer.json` into `directory`."""
    os.makedirs(directory, exist_ok=True)
    arrays = {"mean": self.mean, "std": self.std, "centroids": self.centroids}
    path = os.path.join(directory, ARRAYS_FILE)
    with open(path + ".tmp", "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(path + ".tmp", path)
    meta = {"features": self.extractor.name, "dim": self.extractor.dim,
            "num_clusters": self.num_clusters, "samples_per_frame": SAMPLES_PER_FRAME,
            "sample_rate": SAMPLE_RATE}
    with open(os.path.join(directory, META_FILE), "w") as f:
      json.dump(meta, f, indent=2)

  @classmethod
  def load(cls, directory: str, extractor: FeatureExtractor) -> "SemanticTokenizer":
    """Reads the artifacts `save` wrote; `extractor` must produce the features they were fit on."""
    meta_path = os.path.join(directory, META_FILE)
    arrays_path = os.path.join(directory, ARRAYS_FILE)
    for p in (meta_path, arrays_path):
      if not os.path.isfile(p):
        raise CheckpointError(f"{p}: missing (fit the semantic tokenizer first)")
    try:
      with open(meta_path) as f:
        meta = json.load(f)
      with np.load(arrays_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ("mean", "std", "centroids")}
    except (OSError, ValueError, KeyError) as e:
      raise CheckpointError(f"{directory}: unreadable semantic tokenizer: {e}") from e
    if meta.get("features") != extractor.name:
      raise CheckpointError(f"{meta_path}: fit on features {meta.get('features')!r}, "
                            f"but the extractor gives {extractor.name!r}")
    return cls(extractor, **arrays)


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
    feats, fmask = _features(extractor.apply, extractor.params, *_check_wav(wav, wav_mask))
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
      feats, fmask = _features(extractor.apply, extractor.params, *_check_wav(wav, wav_mask))
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

