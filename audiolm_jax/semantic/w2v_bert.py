"""w2v-BERT (Chung et al., 2021): the self-supervised speech model behind semantic tokens.

    wav [B, S] ─► log-mel [B, 4T, M] ─► feature encoder (2 conv2d, stride 2) ─► x [B, T, D]

    x (unmasked) ─► Gumbel quantizer ─► target ids [B, T, G], quantized q [B, T, Q]
    x (span-masked) ─► contrastive module (N conformers) ─► c ─► contrastive head (vs q)
                                                             └► MLM module (M conformers)
                                                                  ─► MLM head (vs target ids)

Frames: the waveform is zero-padded to `T = num_frames(S)` frames of 640 samples (40 ms,
25 Hz; `semantic/tokenizer.py` owns the rule), the log-mel front end runs at exactly 4T frames
(10 ms hop, the window centred on its hop), and two stride-2 convolutions give T frames. So a
25 Hz frame covers exactly two 50 Hz SoundStream frames of the padded waveform.

Padding: `wav_mask [B, S]` (True = real sample). Padded samples are zeroed, features of padded
frames are zeroed before each convolution, and every conformer layer masks them, so the
outputs at valid frames do not depend on how much padding a batch adds.

Randomness in training (`deterministic=False`): rng streams `"dropout"` and `"gumbel"`.

Shape letters: B batch, S samples, T 25 Hz frames, M mel bands, C conv channels, D model dim,
G codebook groups, V entries per group, Q quantized (codebook) dim, E contrastive (final) dim.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.errors import ConfigError
from audiolm_jax.frames import frame_mask, pad_to_frames
from audiolm_jax.layers import spectral
from audiolm_jax.layers.conformer import (ACTIVATION_AXES, ConformerConfig, ConformerStack, dense,
                                          layer_norm, partitioned)
from audiolm_jax.semantic.tokenizer import FeatureExtractor

# Two stride-2 convolutions: 4 mel frames per encoder frame.
SUBSAMPLING = 4


@dataclasses.dataclass(frozen=True)
class W2VBertConfig:
  """Hyperparameters of w2v-BERT. Defaults: w2v-BERT XL (about 0.6 B parameters).

  Attributes:
    sample_rate: input sample rate in Hz.
    n_fft: STFT size (also the Hann window: 400 = 25 ms).
    hop: mel hop in samples (160 = 10 ms); encoder frames are `4 * hop` samples.
    n_mels: mel bands M.
    encoder_channels: channels C of both feature-encoder convolutions.
    dim: conformer width D.
    num_heads: attention heads.
    mlp_dim: conformer feed-forward width.
    conv_kernel_size: depthwise convolution width in the conformer.
    num_contrastive_layers: conformer blocks N in the contrastive module.
    num_mlm_layers: conformer blocks M in the masked-prediction module.
    dropout_rate: dropout on residual branches and encoder features.
    attention_dropout_rate: dropout on attention weights.
    relpos_num_buckets: T5 relative-position buckets.
    relpos_max_distance: T5 relative-position maximum distance (frames).
    num_codebooks: G, groups of the Gumbel quantizer (product quantisation).
    codebook_size: V, entries per group; MLM targets are ids in `[0, V)` per group.
    codebook_dim: Q, total dim of a quantized vector (G groups of Q / G).
    final_dim: E, dim of the space where context and quantized vectors are compared.
    dtype: computation dtype ("float32" or "bfloat16").
  """
  sample_rate: int = 16000
  n_fft: int = 400
  hop: int = 160
  n_mels: int = 80
  encoder_channels: int = 128
  dim: int = 1024
  num_heads: int = 8
  mlp_dim: int = 4096
  conv_kernel_size: int = 5
  num_contrastive_layers: int = 12
  num_mlm_layers: int = 12
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  num_codebooks: int = 1
  codebook_size: int = 1024
  codebook_dim: int = 1024
  final_dim: int = 768
  dtype: str = "float32"

  def __post_init__(self):
    if self.n_fft < self.hop:
      raise ConfigError(f"w2v-BERT: n_fft={self.n_fft} must be >= hop={self.hop}")
    if self.codebook_dim % self.num_codebooks:
      raise ConfigError(f"w2v-BERT: codebook_dim={self.codebook_dim} is not divisible by "
                        f"num_codebooks={self.num_codebooks}")
    try:
      self.conformer  # pylint: disable=pointless-statement  (validates the block settings)
    except ValueError as e:
      raise ConfigError(f"w2v-BERT: {e}") from e

  @property
  def samples_per_frame(self) -> int:
    """Samples per 25 Hz encoder frame (640 at 16 kHz)."""
    return self.hop * SUBSAMPLING

  @property
  def conformer(self) -> ConformerConfig:
    return ConformerConfig(dim=self.dim, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                           conv_kernel_size=self.conv_kernel_size,
                           dropout_rate=self.dropout_rate,
                           attention_dropout_rate=self.attention_dropout_rate,
                           relpos_num_buckets=self.relpos_num_buckets,
                           relpos_max_distance=self.relpos_max_distance, dtype=self.dtype)

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any], dtype: str | None = None) -> "W2VBertConfig":
    """From a config's `model` sub-dict (and `compute_dtype`); unknown keys: `ConfigError`."""
    cfg = dict(cfg)
    if dtype is not None:
      cfg["dtype"] = dtype
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
      raise ConfigError(f"w2v-BERT model config: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**cfg)


@flax.struct.dataclass
class QuantizerOutput:
  """What the Gumbel quantizer returns.

  Attributes:
    quantized: `[B, T, Q]` codebook vectors (straight-through one-hot in training).
    ids: `[B, T, G]` int32 argmax entry per group (the MLM targets).
    avg_probs: `[G, V]` softmax probabilities averaged over valid frames (diversity loss).
    prob_perplexity: `[]` sum over groups of `exp(entropy(avg_probs))` (max G * V).
    code_perplexity: `[]` the same for the hard choices (how many entries are in use).
  """
  quantized: jax.Array
  ids: jax.Array
  avg_probs: jax.Array
  prob_perplexity: jax.Array
  code_perplexity: jax.Array


def _perplexity(p: jax.Array) -> jax.Array:
  """`sum_g exp(-sum_v p log p)` of probabilities `[G, V]`."""
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-30)), 0.0), axis=-1)
  return jnp.sum(jnp.exp(entropy))


class GumbelQuantizer(nn.Module):
  """Product quantizer with Gumbel-softmax selection (wav2vec 2.0, used by w2v-BERT).

  Logits `[B, T, G, V]` from a linear layer choose one entry per group. The quantized vector
  is, in training, a hard Gumbel-softmax sample at `temperature` with straight-through
  gradients (exploration for the contrastive task), at inference the argmax entry. The token
  ids (the MLM targets) are always the argmax: the noise explores, it does not relabel.
  """
  num_codebooks: int
  codebook_size: int
  codebook_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, temperature: float | jax.Array,
               deterministic: bool) -> QuantizerOutput:
    b, t, _ = x.shape
    g, v = self.num_codebooks, self.codebook_size
    logits = dense(g * v, ("embed", "codebook"), self.dtype, name="logits")(x)
    logits = logits.astype(jnp.float32).reshape(b, t, g, v)  # [B, T, G, V]
    codebook = self.param("codebook",
                          partitioned(nn.initializers.uniform(1.0), None, "codebook",
                                      "codebook_dim"),
                          (g, v, self.codebook_dim // g), jnp.float32)  # [G, V, Q/G]
    ids = jnp.argmax(logits, axis=-1)  # [B, T, G] the frame's token ids (no noise)
    hard = jax.nn.one_hot(ids, v, dtype=jnp.float32)
    if deterministic:
      onehot = hard
    else:
      gumbel = jax.random.gumbel(self.make_rng("gumbel"), logits.shape, jnp.float32)
      soft = jax.nn.softmax((logits + gumbel) / temperature, axis=-1)
      sample = jax.nn.one_hot(jnp.argmax(soft, axis=-1), v, dtype=jnp.float32)
      onehot = sample + soft - jax.lax.stop_gradient(soft)  # straight-through
    quantized = jnp.einsum("btgv,gvq->btgq", onehot, codebook).reshape(b, t, -1)  # [B, T, Q]

    w = mask.astype(jnp.float32)[..., None, None]  # [B, T, 1, 1]
    count = jnp.maximum(jnp.sum(w), 1.0)
    avg_probs = jnp.sum(jax.nn.softmax(logits, axis=-1) * w, axis=(0, 1)) / count  # [G, V]
    avg_hard = jnp.sum(hard * w, axis=(0, 1)) / count
    return QuantizerOutput(quantized=quantized.astype(self.dtype), ids=ids.astype(jnp.int32),
                           avg_probs=avg_probs, prob_perplexity=_perplexity(avg_probs),
                           code_perplexity=_perplexity(avg_hard))


class FeatureEncoder(nn.Module):
  """Log-mel `[B, 4T, M]` -> two 3x3 stride-2 conv2d + ReLU -> linear -> LayerNorm `[B, T, D]`."""
  config: W2VBertConfig

  @nn.compact
  def __call__(self, logmel: jax.Array, mask100: jax.Array, mask50: jax.Array,
               mask25: jax.Array) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    h = logmel.astype(dtype)[..., None]  # [B, 4T, M, 1]
    for i, mask in enumerate((mask100, mask50)):
      h = jnp.where(mask[:, :, None, None], h, 0)  # padded frames = the conv's zero padding
      h = nn.Conv(cfg.encoder_channels, (3, 3), strides=(2, 2), padding="SAME", dtype=dtype,
                  kernel_init=partitioned(nn.initializers.lecun_normal(), "conv_kernel",
                                          None, "conv_in", "conv_out"),  # a name once only
                  bias_init=partitioned(nn.initializers.zeros, "conv_out"),
                  name=f"conv_{i}")(h)
      h = nn.relu(h)  # [B, 2T, M/2, C] then [B, T, M/4, C]
    b, t = h.shape[:2]
    h = h.reshape(b, t, -1)  # [B, T, (M/4) C]
    h = dense(cfg.dim, ("conv_out", "embed"), dtype, name="projection")(h)  # [B, T, D]
    h = layer_norm(dtype, "norm")(h)
    return jnp.where(mask25[..., None], h, 0)


@flax.struct.dataclass
class W2VBertOutput:
  """Outputs of a w2v-BERT pre-training pass.

  Attributes:
    context: `[B, T, E]` contrastive module output projected for the contrastive loss.
    targets: `[B, T, E]` quantized unmasked features projected the same way.
    mlm_logits: `[B, T, G, V]` MLM module predictions of the target ids.
    quantizer: `QuantizerOutput` of the unmasked features (target ids, perplexities).
    frame_mask: `[B, T]` valid frames.
  """
  context: jax.Array
  targets: jax.Array
  mlm_logits: jax.Array
  quantizer: QuantizerOutput
  frame_mask: jax.Array


def log_mel_frames(wav: jax.Array, wav_mask: jax.Array | None,
                   cfg: W2VBertConfig) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """The front end: log-mel `[B, 4T, M]` and frame masks at 100, 50 and 25 Hz.

  The waveform is padded to `T = num_frames(S)` whole frames, padded samples are zeroed, and
  `(n_fft - hop)` more zeros split around it centre each STFT window on its 10 ms hop, so
  there are exactly `4 T` mel frames.
  """
  wav, wav_mask = pad_to_frames(wav, wav_mask, cfg.samples_per_frame)  # [B, 4 T hop]
  wav = jnp.where(wav_mask, wav, 0.0)
  left = (cfg.n_fft - cfg.hop) // 2
  wav = jnp.pad(wav, ((0, 0), (left, cfg.n_fft - cfg.hop - left)))
  logmel = spectral.log_mel_spectrogram(wav, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels)
  masks = tuple(frame_mask(wav_mask, cfg.hop * f) for f in (1, 2, SUBSAMPLING))
  return logmel, masks


class W2VBert(nn.Module):
  """w2v-BERT: feature encoder, quantizer, contrastive module, MLM module and both heads."""
  config: W2VBertConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    self.feature_encoder = FeatureEncoder(cfg)
    self.feature_dropout = nn.Dropout(cfg.dropout_rate)
    self.mask_embedding = self.param("mask_embedding",
                                     partitioned(nn.initializers.uniform(1.0), "embed"),
                                     (cfg.dim,), jnp.float32)
    self.quantizer = GumbelQuantizer(cfg.num_codebooks, cfg.codebook_size, cfg.codebook_dim,
                                     dtype)
    self.contrastive = ConformerStack(cfg.conformer, cfg.num_contrastive_layers)
    self.mlm = ConformerStack(cfg.conformer, cfg.num_mlm_layers)
    self.context_head = dense(cfg.final_dim, ("embed", "codebook_dim"), dtype)
    self.target_head = dense(cfg.final_dim, ("codebook_dim", None), dtype)
    self.mlm_head = dense(cfg.num_codebooks * cfg.codebook_size, ("embed", "vocab"), dtype)

  def encode(self, wav: jax.Array,
             wav_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Feature encoder output `[B, T, D]` and the frame mask `[B, T]`."""
    logmel, (m100, m50, m25) = log_mel_frames(wav, wav_mask, self.config)
    feats = self.feature_encoder(logmel, m100, m50, m25)
    return nn.with_logical_constraint(feats, ACTIVATION_AXES), m25

  def __call__(self, wav: jax.Array, wav_mask: jax.Array | None = None,
               mask_positions: jax.Array | None = None, deterministic: bool = True,
               gumbel_temperature: float | jax.Array = 1.0) -> W2VBertOutput:
    """A pre-training pass.

    Args:
      wav: `[B, S]` waveform.
      wav_mask: `[B, S]` True for real samples (default all).
      mask_positions: `[B, T]` frames to mask (`losses.span_mask`); default none.
      deterministic: no dropout, argmax quantisation.
      gumbel_temperature: Gumbel-softmax temperature (training only).
    """
    cfg = self.config
    feats, fmask = self.encode(wav, wav_mask)  # [B, T, D]
    quant = self.quantizer(feats, fmask, gumbel_temperature, deterministic)
    x = self.feature_dropout(feats, deterministic=deterministic)
    if mask_positions is not None:
      x = jnp.where(mask_positions[..., None], self.mask_embedding.astype(x.dtype), x)
    c = self.contrastive(x, fmask, deterministic)  # [B, T, D]
    m = self.mlm(c, fmask, deterministic)  # [B, T, D]
    b, t = fmask.shape
    logits = self.mlm_head(m).astype(jnp.float32)
    return W2VBertOutput(
        context=self.context_head(c),
        targets=self.target_head(quant.quantized),
        mlm_logits=logits.reshape(b, t, cfg.num_codebooks, cfg.codebook_size),
        quantizer=quant,
        frame_mask=fmask)

  def features(self, wav: jax.Array, wav_mask: jax.Array | None = None,
               mlm_layer: int = 7) -> tuple[jax.Array, jax.Array]:
    """Features for tokenisation: output of MLM-module block `mlm_layer` (1-based).

    `mlm_layer=0` is the contrastive module's output. No masking, no dropout; blocks after
    `mlm_layer` are not computed.

    Returns:
      `(features [B, T, D] float32, frame_mask [B, T])`.
    """
    feats, fmask = self.encode(wav, wav_mask)
    c = self.contrastive(feats, fmask, True)
    m = self.mlm(c, fmask, True, num_layers=mlm_layer)
    return m.astype(jnp.float32), fmask


def init_params(config: W2VBertConfig, key: jax.Array, num_samples: int = 4 * 640) -> Any:
  """Boxed (logically partitioned) parameters of a w2v-BERT for `config`."""
  model = W2VBert(config)
  return model.init(key, jnp.zeros((1, num_samples), jnp.float32))["params"]


@dataclasses.dataclass(frozen=True)
class W2VBertFeatures:
  """`W2VBert.features` as a hashable `FeatureExtractor.apply`."""
  config: W2VBertConfig
  mlm_layer: int

  def __call__(self, params, wav, wav_mask):
    return W2VBert(self.config).apply({"params": params}, wav, wav_mask, self.mlm_layer,
                                      method=W2VBert.features)


def feature_extractor(config: W2VBertConfig, params: Any, mlm_layer: int) -> FeatureExtractor:
  """The tokenizer's view of a trained w2v-BERT: features of MLM block `mlm_layer`."""
  if not 0 <= mlm_layer <= config.num_mlm_layers:
    raise ConfigError(f"tokenizer layer {mlm_layer} outside the MLM module's "
                      f"[0, {config.num_mlm_layers}] layers")
  return FeatureExtractor(name=f"w2v_bert/mlm_layer_{mlm_layer}", dim=config.dim,
                          samples_per_frame=config.samples_per_frame,
                          apply=W2VBertFeatures(config, mlm_layer), params=nn.unbox(params))
