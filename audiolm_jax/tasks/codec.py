"""The `codec` task: SoundStream and its discriminators in the shared trainer.

    audiolm-jax train --config experiments/configs/codec.py:cpu --workdir runs/codec

A trained codec is read by `pretrained.load_codec` and used through `tokenize` (acoustic
tokens, decoding) and `formats.AcousticCodes` (its files).

Train state (`train/state.py`) of this task:

    params                   the generator: SEANet encoder and decoder (config.optimizer)
    extra["vq_stats"]        codebooks and their EMA statistics (quantization/rvq.py)
    extra["discriminator"]   the wave and STFT discriminators (codec/discriminators.py)
    extra["disc_opt_state"]  their optax state (config.disc_optimizer)
    extra["updates"]         int32, parameter updates applied so far

One train step (the trainer runs 1-2 in `loss`, then its optimizer, then 3 in `update_extra`):

  1. the codec in training mode: quantizer dropout, codebook EMA, k-means initialisation on
     the first batch, dead-code restarts (the new `vq_stats` leave through `LossOutput.extra`);
  2. the generator loss w_rec L_rec + w_wave L_wave + w_commit L_commit (+ w_adv L_adv +
     w_feat L_feat after the warm-up, against the current discriminators), with each term's
     gradient norm at the decoder output as a metric, see `codec/losses.py`;
  3. with the updated generator, a codec pass (quantizer dropout; its codebook updates are
     dropped) gives reconstructions, and the discriminators take one hinge-loss step on
     (real, stop_gradient(reconstruction)).

Warm-up: neither `loss` nor `update_extra` is given the step, so the task counts applied
updates in `extra["updates"]` (`update_extra` adds one; a step the trainer skips as non-finite
discards the whole new extra state, so this is the count the learning-rate schedule uses, and
`--init_from` carries it over). While `updates < config.disc_warmup_steps` the generator
trains on reconstruction and commitment only and the discriminators (and their optimizer
state) are frozen. The task has two phases of its compiled step (`Task.phase_starts`): the
trainer compiles a reconstruction-only step for the warm-up, with no discriminator work at
all (the `cpu` preset's step is three times faster without it), and the adversarial step from
`disc_warmup_steps` on. Within the adversarial step the switch is still the update count (a
`where`, not a `lax.cond`: XLA:CPU ran the same work about ten times slower inside a
conditional), so a run resumed or skipped past non-finite steps stays exact. The paper preset
has no warm-up.

Valid rows: a record the pipeline could not read arrives as an all-zero row with
`valid = False`. Every loss term is computed per row and averaged over valid rows
only, and `LossOutput.weight` is the number of valid rows. The RVQ gets the row mask too, so
the commitment loss and the codebook statistics (EMA, dead-code restarts, perplexity) see
valid rows only; only the one-off k-means initialisation on the first batch ignores it.
Samples after the end of a short clip are silence the codec must reproduce as well, so the
sample mask is not used.

The discriminators compute in float32 whatever `config.compute_dtype` says; the generator's
conv dtype is `model.dtype`.

Evaluation (`evaluate`) adds the reconstruction's quality at all levels and at one level:
`quality/si_snr` (dB) and `quality/mel_distance` (the figure of `eval.quality.mel_distance`),
so a run's curves show whether the codec learns and whether every level adds to it.

Shape letters: B batch (this process's rows; global in `batch_spec`), S samples, T frames,
Q quantizer levels.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from audiolm_jax.codec import losses
from audiolm_jax.codec.config import CodecConfig
from audiolm_jax.codec.discriminators import CodecDiscriminator, DiscriminatorConfig
from audiolm_jax.codec.soundstream import SoundStream
from audiolm_jax.data.pipeline import AudioDataConfig, SelectKeys, make_audio_iterator
from audiolm_jax.errors import ConfigError
from audiolm_jax.layers.spectral import log_mel_distance
from audiolm_jax.quantization.rvq import RNG_STREAM, VQ_STATS
from audiolm_jax.train import optim
from audiolm_jax.train.task import LossOutput, Task, register

Array = jax.Array

# The batch entries the step uses (the pipeline also yields the sample mask and ids).
BATCH_KEYS = ("audio", "valid")


def _check_disc_optimizer(opt: ml_collections.ConfigDict) -> None:
  if opt.grad_accum_steps != 1 or opt.ema_decay != 0.0:
    raise ConfigError("disc_optimizer: the discriminators take one step on the whole batch and "
                      "keep no EMA; leave grad_accum_steps=1 and ema_decay=0")


@register("codec")
class CodecTask(Task):
  """SoundStream trained adversarially; see the module docstring."""

  throughput_unit = "audio_seconds"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = CodecConfig.from_dict(config.model)
    self.disc_cfg = DiscriminatorConfig.from_dict(config.discriminator)
    self.loss_cfg = losses.CodecLossConfig.from_dict(config.loss)
    self.data_cfg = AudioDataConfig.from_config(config.data)
    rates = {"model": self.model_cfg.sample_rate, "loss": self.loss_cfg.sample_rate,
             "data": self.data_cfg.sample_rate}
    if len(set(rates.values())) != 1:
      raise ConfigError("codec: model.sample_rate, loss.sample_rate and data.sample_rate must "
                        f"agree, got {rates}")
    self.crop_samples = self.data_cfg.crop_samples
    if config.disc_warmup_steps < 0:
      raise ConfigError(f"disc_warmup_steps must be >= 0, got {config.disc_warmup_steps}")
    self.disc_warmup_steps = int(config.disc_warmup_steps)
    # Two phases of the compiled step (`Task.phase_starts`): reconstruction only during the
    # warm-up, without any discriminator work, then adversarial.
    self.adversarial_in_run = self.disc_warmup_steps == 0
    _check_disc_optimizer(config.disc_optimizer)
    disc_steps = max(config.total_steps - self.disc_warmup_steps, 1)
    self.disc_tx, _ = optim.make_optimizer(config.disc_optimizer, disc_steps)
    self.model = SoundStream(self.model_cfg)
    self.discriminator = CodecDiscriminator(self.disc_cfg)

  def phase_starts(self) -> tuple[int, ...]:
    if 0 < self.disc_warmup_steps < self.config.total_steps:
      return (0, self.disc_warmup_steps)
    return (0,)

  def set_phase(self, phase: int) -> None:
    self.adversarial_in_run = self.disc_warmup_steps == 0 or phase > 0

  # ------------------------------------------------------------------------------ data

  def make_iterator(self, split, process_index, process_count):
    iterator = make_audio_iterator(
        self.data_cfg, batch_size=self.rows_per_process(process_count),
        seed=self.config.seed, split=split, process_index=process_index,
        process_count=process_count, train=split == self.data_cfg.split)
    return SelectKeys(iterator, BATCH_KEYS)

  def batch_spec(self, batch_size):
    return {"audio": jax.ShapeDtypeStruct((batch_size, self.crop_samples), jnp.float32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.bool_)}

  def units_per_example(self, batch_spec: Mapping[str, Any]) -> float:
    return batch_spec["audio"].shape[1] / self.data_cfg.sample_rate

  # ------------------------------------------------------------------------------ state

  def init(self, rng):
    codec_rng, disc_rng = jax.random.split(rng)
    # Parameters do not depend on the clip length: one frame (and a short clip) keep init cheap.
    variables = self.model.init({"params": codec_rng},
                                jnp.zeros((1, self.model_cfg.hop_length), jnp.float32))
    disc_params = self.discriminator.init(
        disc_rng, jnp.zeros((1, self.crop_samples), jnp.float32))["params"]
    extra = {VQ_STATS: variables[VQ_STATS], "discriminator": disc_params,
             "disc_opt_state": self.disc_tx.init(disc_params),
             "updates": jnp.zeros((), jnp.int32)}
    return variables["params"], extra

  # ------------------------------------------------------------------------------ losses

  def _adversarial(self, extra) -> Array:
    """True once the discriminators are on: after `disc_warmup_steps` updates."""
    return extra["updates"] >= self.disc_warmup_steps

  def _codec_pass(self, params, vq_stats, wav, valid, rng, train: bool):
    """`(CodecOutput, vq_stats)`: training mode updates the codebooks (and drops levels)."""
    variables = {"params": params, VQ_STATS: vq_stats}
    if not train:
      return self.model.apply(variables, wav, mask=valid), vq_stats
    output, mutated = self.model.apply(variables, wav, train=True, mask=valid,
                                       rngs={RNG_STREAM: rng}, mutable=[VQ_STATS])
    return output, mutated[VQ_STATS]

  def _discriminate(self, disc_params, real_wav, fake_wav):
    """`(real, fake)` discriminator outputs of one pass over the stacked batch [2B, S]: one
    compiled discriminator instead of two, the same work when both halves are trained."""
    out = self.discriminator.apply({"params": disc_params},
                                   jnp.concatenate([real_wav, fake_wav], axis=0))
    b = real_wav.shape[0]
    return (jax.tree.map(lambda x: x[:b], out), jax.tree.map(lambda x: x[b:], out))

  def loss(self, params, extra, batch, rng, *, train):
    valid = batch["valid"].astype(bool)                                            # [B]
    wav = jnp.where(valid[:, None], batch["audio"].astype(jnp.float32), 0.0)       # [B, S]
    output, vq_stats = self._codec_pass(params, extra[VQ_STATS], wav, valid, rng, train)
    adversarial = {}
    if self.adversarial_in_run or not train:
      disc = {"params": extra["discriminator"]}
      adversarial = dict(discriminate=lambda x: self.discriminator.apply(disc, x),
                         real=self.discriminator.apply(disc, wav),
                         adversarial_scale=self._adversarial(extra).astype(jnp.float32))
    loss, metrics = losses.generator_loss(
        self.loss_cfg, wav, output.audio, valid, output.quantizer.commitment_loss,
        **adversarial)
    metrics.update(losses.codebook_metrics(output.quantizer))
    new_extra = {**extra, VQ_STATS: vq_stats} if train else None
    return LossOutput(loss=loss.astype(jnp.float32), weight=jnp.sum(valid.astype(jnp.float32)),
                      metrics=metrics, extra=new_extra)

  def evaluate(self, params, extra, batch, rng):
    """The loss, plus the quality of the reconstruction with all levels and with one:
    SI-SNR (dB) and the log-mel distance of `eval.quality.mel_distance`."""
    out = self.loss(params, extra, batch, rng, train=False)
    valid = batch["valid"].astype(bool)
    wav = jnp.where(valid[:, None], batch["audio"].astype(jnp.float32), 0.0)
    metrics = dict(out.metrics)
    for suffix, decoded in self._decodings(params, extra, wav).items():          # [B, S]
      metrics[f"quality/si_snr{suffix}"] = losses.valid_mean(losses.si_snr(wav, decoded), valid)
      metrics[f"quality/mel_distance{suffix}"] = losses.valid_mean(
          log_mel_distance(wav, decoded), valid)
    return out.replace(metrics=metrics)

  def _decodings(self, params, extra, wav):
    """wav [B, S] encoded, then decoded with all levels ("") and with one ("_q1"): [B, S]."""
    variables = {"params": params, VQ_STATS: extra[VQ_STATS]}
    codes = self.model.apply(variables, wav, method=SoundStream.encode)          # [B, T, Q]
    return {suffix: self.model.apply(variables, codes[..., :n], method=SoundStream.decode
                                     )[:, :wav.shape[1]].astype(jnp.float32)
            for suffix, n in (("", self.model_cfg.num_quantizers), ("_q1", 1))}

  def eval_audio(self, params, extra, batch):
    """The first valid clip of the batch: original, decoded with all levels, with one."""
    row = jnp.argmax(batch["valid"].astype(bool))
    wav = batch["audio"][row][None].astype(jnp.float32)
    decoded = self._decodings(params, extra, wav)
    return {"original": wav[0], "decoded": decoded[""][0], "decoded_q1": decoded["_q1"][0]}

  @property
  def audio_sample_rate(self) -> int:
    return int(self.model_cfg.sample_rate)

  def update_extra(self, params, extra, batch, rng):
    if not self.adversarial_in_run:  # The warm-up phase: count the update, nothing else.
      return {**extra, "updates": extra["updates"] + 1}, {"discriminator/active": jnp.float32(0)}
    valid = batch["valid"].astype(bool)
    wav = jnp.where(valid[:, None], batch["audio"].astype(jnp.float32), 0.0)
    output, _ = self._codec_pass(params, extra[VQ_STATS], wav, valid, rng, train=True)
    reconstruction = jax.lax.stop_gradient(output.audio.astype(jnp.float32))

    def loss_fn(disc_params):
      real, fake = self._discriminate(disc_params, wav, reconstruction)
      return losses.discriminator_loss(real, fake, valid)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(extra["discriminator"])
    updates, opt_state = self.disc_tx.update(grads, extra["disc_opt_state"],
                                             extra["discriminator"])
    disc_params = optax.apply_updates(extra["discriminator"], updates)
    active = self._adversarial(extra)

    def keep_unless_active(new, old):  # Frozen (optimizer state too) during the warm-up.
      return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, old)

    metrics = {**metrics, "discriminator/grad_norm": optax.tree.norm(grads),
               "discriminator/active": active.astype(jnp.float32)}
    return {**extra,
            "discriminator": keep_unless_active(disc_params, extra["discriminator"]),
            "disc_opt_state": keep_unless_active(opt_state, extra["disc_opt_state"]),
            "updates": extra["updates"] + 1}, metrics
