"""SoundStream's training losses (Zeghidour et al. 2021, Sec. III-D) and codebook metrics.

Shape letters: B batch, S samples, T frames, M mel bands, Q quantiser levels.

Generator:  w_rec L_rec + w_commit L_commit + a (w_adv L_adv + w_feat L_feat)
  - L_rec   multi-scale mel distance over windows s = 2^6 .. 2^11 (hop s / 4, M mel bands):
            sum_s  mean_{b,t} |S_s - S_s'|_1  +  alpha_s mean_{b,t} |log S_s - log S_s'|_2,
            alpha_s = sqrt(s / 2) (Gritsenko et al. 2020); S_s a magnitude mel spectrogram.
  - L_adv   hinge: mean over discriminators k of mean_t max(0, 1 - D_k(G(x))).
  - L_feat  feature matching: mean over discriminators and layers of mean |D(x) - D(G(x))|.
  - L_commit the quantiser's commitment loss.
  - a       scales the adversarial terms: 0 during the discriminator warm-up, then 1.
Discriminator: mean over k of mean_t max(0, 1 - D_k(x)) + mean_t max(0, 1 + D_k(G(x))).

The paper sums over time; here time is averaged so that the weights (paper: w_rec = 1,
w_adv = 1, w_feat = 100) do not depend on the crop length.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from audiolm_jax.codec.discriminators import DiscriminatorOutput
from audiolm_jax.codec.soundstream import CodecOutput
from audiolm_jax.errors import ConfigError
from audiolm_jax.layers.spectral import mel_spectrogram
from audiolm_jax.quantization.rvq import QuantizedResult

Array = jax.Array
Metrics = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class CodecLossConfig:
  """Loss hyperparameters of codec training.

  Attributes:
    sample_rate: audio sample rate (for the mel filterbanks).
    mel_windows: window lengths s of the multi-scale mel loss (hop s / 4).
    mel_bins: mel bands of every scale.
    mel_log_eps: added to mel magnitudes before the log.
    reconstruction_weight: w_rec.
    adversarial_weight: w_adv.
    feature_weight: w_feat.
    commitment_weight: w_commit.
  """
  sample_rate: int = 16000
  mel_windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
  mel_bins: int = 64
  mel_log_eps: float = 1e-5
  reconstruction_weight: float = 1.0
  adversarial_weight: float = 1.0
  feature_weight: float = 100.0
  commitment_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "mel_windows", tuple(int(s) for s in self.mel_windows))
    if not self.mel_windows or min(self.mel_windows) < 4:
      raise ConfigError(f"loss: mel_windows must be at least 4 samples, got {self.mel_windows}")

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], **overrides) -> CodecLossConfig:
    """Builds the config from a mapping (e.g. `config.loss`) plus keyword overrides."""
    d = {**dict(d.items()), **overrides}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"loss: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**d)


def _safe_norm(x: Array, axis: int = -1) -> Array:
  """Euclidean norm with a finite (zero) gradient at zero."""
  sq = jnp.sum(x * x, axis=axis)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def multiscale_mel_loss(wav: Array, wav_hat: Array, config: CodecLossConfig) -> Array:
  """L_rec between wav [B, S] and its reconstruction wav_hat [B, S] (scalar)."""
  wav, wav_hat = wav.astype(jnp.float32), wav_hat.astype(jnp.float32)
  total = 0.0
  for s in config.mel_windows:
    def mel(x, s=s):
      return mel_spectrogram(x, config.sample_rate, n_fft=s, hop=s // 4,
                             n_mels=config.mel_bins, power=1.0, center=True)     # [B, T, M]

    m, m_hat = mel(wav), mel(wav_hat)
    l1 = jnp.abs(m - m_hat).sum(-1).mean()
    log_diff = jnp.log(m + config.mel_log_eps) - jnp.log(m_hat + config.mel_log_eps)
    total = total + l1 + math.sqrt(s / 2) * _safe_norm(log_diff).mean()
  return total


def hinge_generator_loss(fake: DiscriminatorOutput) -> Array:
  """L_adv: mean over discriminators of mean max(0, 1 - D(G(x)))."""
  return jnp.mean(jnp.stack([jax.nn.relu(1.0 - y).mean() for y in fake.logits]))


def hinge_discriminator_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Array:
  """Mean over discriminators of mean max(0, 1 - D(x)) + mean max(0, 1 + D(G(x)))."""
  return jnp.mean(jnp.stack([jax.nn.relu(1.0 - r).mean() + jax.nn.relu(1.0 + f).mean()
                             for r, f in zip(real.logits, fake.logits)]))


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Array:
  """L_feat: mean over discriminators and layers of mean |D(x) - D(G(x))| (real: no grad)."""
  per_disc = []
  for real_layers, fake_layers in zip(real.features, fake.features):
    per_disc.append(jnp.mean(jnp.stack([
        jnp.abs(jax.lax.stop_gradient(r) - f).mean() for r, f in zip(real_layers, fake_layers)
    ])))
  return jnp.mean(jnp.stack(per_disc))


def codebook_metrics(result: QuantizedResult) -> Metrics:
  """Codebook usage: perplexity and dead-code fraction per level, mean levels and bitrate."""
  metrics = {
      "codebook/perplexity_mean": result.perplexity.mean(),
      "codebook/dead_fraction_mean": result.dead_fraction.mean(),
      "codebook/n_q_mean": result.n_q.astype(jnp.float32).mean(),
      "codebook/bits_per_second": result.bits_per_second,
  }
  for q in range(result.perplexity.shape[0]):
    metrics[f"codebook/perplexity_q{q}"] = result.perplexity[q]
    metrics[f"codebook/dead_fraction_q{q}"] = result.dead_fraction[q]
  return metrics


def generator_loss(config: CodecLossConfig, wav: Array, output: CodecOutput,
                   real: DiscriminatorOutput | None = None,
                   fake: DiscriminatorOutput | None = None,
                   adversarial_scale: Array | float = 1.0) -> tuple[Array, Metrics]:
  """The codec's (generator's) loss.

  Args:
    config: loss hyperparameters.
    wav: [B, S] input waveforms.
    output: the codec's pass on `wav` (reconstruction and quantiser result).
    real: discriminator output on `wav`; None (with `fake`) for reconstruction only.
    fake: discriminator output on `output.audio` (with gradient to the codec).
    adversarial_scale: multiplies the adversarial and feature terms; pass
      `step >= disc_warmup_steps` to switch them on after the warm-up.

  Returns:
    (scalar loss, metrics: the terms and the codebook usage).
  """
  reconstruction = multiscale_mel_loss(wav, output.audio, config)
  commitment = output.quantizer.commitment_loss
  loss = (config.reconstruction_weight * reconstruction
          + config.commitment_weight * commitment)
  metrics = {"loss/reconstruction": reconstruction, "loss/commitment": commitment}
  if (real is None) != (fake is None):
    raise ValueError("pass both the real and the fake discriminator outputs, or neither")
  if fake is not None:
    adversarial = hinge_generator_loss(fake)
    feature = feature_matching_loss(real, fake)
    loss = loss + adversarial_scale * (config.adversarial_weight * adversarial
                                       + config.feature_weight * feature)
    metrics.update({"loss/adversarial": adversarial, "loss/feature_matching": feature})
  metrics["loss/generator"] = loss
  metrics.update(codebook_metrics(output.quantizer))
  return loss, metrics


def discriminator_loss(real: DiscriminatorOutput,
                       fake: DiscriminatorOutput) -> tuple[Array, Metrics]:
  """The discriminators' hinge loss on real audio and (stopped-gradient) reconstructions.

  Returns:
    (scalar loss, metrics: the loss and the mean real / fake logits).
  """
  loss = hinge_discriminator_loss(real, fake)
  mean_logit = lambda out: jnp.mean(jnp.stack([y.mean() for y in out.logits]))
  return loss, {"loss/discriminator": loss, "discriminator/real_logit": mean_logit(real),
                "discriminator/fake_logit": mean_logit(fake)}
