"""Semantic tokens: frame features, normalised, k-means ids.

Frames follow the frame rule of `audiolm_jax.frames` (40 ms, 25 Hz at 16 kHz by default: a
tokenizer states its `samples_per_frame`).

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
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import paths
from audiolm_jax.errors import BadAudioError, CheckpointError, ConfigError
from audiolm_jax.frames import SAMPLE_RATE, SAMPLES_PER_FRAME, frame_mask, pad_to_frames
from audiolm_jax.layers import spectral
from audiolm_jax.quantization import kmeans

PAD_ID = -1  # The id of frames outside a clip (where the frame mask is False).
ARRAYS_FILE = "semantic_tokenizer.npz"
META_FILE = "semantic_tokenizer.json"


# --- Feature extractors -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """Features at 25 Hz for a tokenizer.

  Attributes:
    name: what the features are (e.g. "w2v_bert/mlm_layer_7", "mfcc/13"); stored with the
      tokenizer's artifacts and checked when they are loaded.
    dim: feature dim D.
    samples_per_frame: samples per feature frame (640 = 25 Hz at 16 kHz, the paper's; 320 for
      50 Hz models): the tokens' frame, which `frames.frame_ratio` aligns with the codec's.
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
    if self.samples_per_frame <= 0:
      raise ConfigError(f"features {self.name!r}: samples_per_frame must be positive, got "
                        f"{self.samples_per_frame}")

  def __call__(self, wav, wav_mask=None) -> tuple[jax.Array, jax.Array]:
    """Jitted features `[B, T, D]` and frame mask `[B, T]` of `wav [B, S]`."""
    return _features(self.apply, self.params, *check_wav(wav, wav_mask))


def check_wav(wav, wav_mask):
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
                  top_db: float = 80.0,
                  samples_per_frame: int = SAMPLES_PER_FRAME) -> tuple[jax.Array, jax.Array]:
  """The GSLM-style baseline: MFCC + deltas + delta-deltas, averaged to token frames.

  The waveform is padded by the frame rule; 10 ms MFCC frames (window centred on its hop,
  dB floor `top_db` below each clip's loudest valid frame) get HTK deltas and delta-deltas,
  and each token frame of `samples_per_frame` samples (25 Hz: four 10 ms frames) is their mean.

  Returns:
    `(features [B, T, 3 * n_mfcc], frame_mask [B, T])` with
    `T = num_frames(S, samples_per_frame)`.
  """
  wav, wav_mask = check_wav(wav, wav_mask)
  if samples_per_frame % hop:
    raise ConfigError(f"mfcc hop {hop} does not divide {samples_per_frame}")
  per_frame = samples_per_frame // hop
  wav, wav_mask = pad_to_frames(wav, wav_mask, samples_per_frame)
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
  return pooled, frame_mask(wav_mask, samples_per_frame)


@dataclasses.dataclass(frozen=True)
class MfccFeatures:
  """`mfcc_features` as a hashable `FeatureExtractor.apply` (it takes no parameters)."""
  n_mfcc: int = 13
  n_mels: int = 40
  samples_per_frame: int = SAMPLES_PER_FRAME

  def __call__(self, params, wav, wav_mask):
    del params
    return mfcc_features(wav, wav_mask, n_mfcc=self.n_mfcc, n_mels=self.n_mels,
                         samples_per_frame=self.samples_per_frame)


def mfcc_extractor(n_mfcc: int = 13, n_mels: int = 40,
                   samples_per_frame: int = SAMPLES_PER_FRAME) -> FeatureExtractor:
  """The MFCC baseline as a `FeatureExtractor` (no parameters); 25 Hz frames by default."""
  rate = "" if samples_per_frame == SAMPLES_PER_FRAME else f"/hop{samples_per_frame}"
  return FeatureExtractor(name=f"mfcc/{n_mfcc}x3/mels{n_mels}{rate}", dim=3 * n_mfcc,
                          samples_per_frame=samples_per_frame,
                          apply=MfccFeatures(n_mfcc, n_mels, samples_per_frame), params={})


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

  @property
  def samples_per_frame(self) -> int:
    """Samples per token (640: 25 Hz at 16 kHz)."""
    return self.extractor.samples_per_frame

  def tokenize(self, wav, wav_mask=None) -> jax.Array:
    """Token ids `[B, T]` int32 of `wav [B, S]`, `T = num_frames(S, samples_per_frame)`;
    `PAD_ID` off the mask."""
    wav, wav_mask = check_wav(wav, wav_mask)
    feats, fmask = _features(self.extractor.apply, self.extractor.params, wav, wav_mask)
    return _ids(feats, fmask, self.mean, self.std, self.centroids)

  def save(self, directory: str | os.PathLike) -> None:
    """Writes `semantic_tokenizer.npz` and `semantic_tokenizer.json` into `directory`."""
    directory = paths.resolve(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"mean": self.mean, "std": self.std, "centroids": self.centroids}
    tmp = directory / (ARRAYS_FILE + ".tmp")
    with tmp.open("wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    tmp.replace(directory / ARRAYS_FILE)
    meta = {"features": self.extractor.name, "dim": self.extractor.dim,
            "num_clusters": self.num_clusters, "samples_per_frame": self.samples_per_frame,
            "sample_rate": SAMPLE_RATE}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))

  @classmethod
  def load(cls, directory: str | os.PathLike,
           extractor: FeatureExtractor) -> "SemanticTokenizer":
    """Reads the artifacts `save` wrote; `extractor` must produce the features they were fit on."""
    root = paths.resolve(directory)
    meta_path, arrays_path = root / META_FILE, root / ARRAYS_FILE
    for p in (meta_path, arrays_path):
      if not p.is_file():
        raise CheckpointError(f"{p}: missing (fit the semantic tokenizer first)")
    try:
      meta = json.loads(meta_path.read_text())
      with arrays_path.open("rb") as f, np.load(f, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ("mean", "std", "centroids")}
    except (OSError, ValueError, KeyError) as e:
      raise CheckpointError(f"{directory}: unreadable semantic tokenizer: {e}") from e
    if meta.get("features") != extractor.name:
      raise CheckpointError(f"{meta_path}: fit on features {meta.get('features')!r}, "
                            f"but the extractor gives {extractor.name!r}")
    return cls(extractor, **arrays)
