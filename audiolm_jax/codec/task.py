"""The `codec` task: SoundStream and its discriminators in the shared trainer; trained codecs.

    audiolm-jax train --config experiments/configs/codec.py:cpu --workdir runs/codec
    codec = load_codec("runs/codec")            # latest checkpoint -> soundstream.Codec
    codes = tokenize_for_lm(codec, wav)         # [B, 2 * num_frames(S), Q], 2:1 with semantic
    wavs = decode_clips(codec, [c[:, :n] ...])  # code sequences of any lengths, batched
    AcousticCodes.load("codes.npz")             # the file of `audiolm-jax tokenize acoustic`

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
state) are frozen. The discriminator passes still run then, and their losses are logged: a
`lax.cond` would skip them, but XLA:CPU runs the same work about ten times slower inside a
conditional (the `cpu` preset's discriminator update: 6 s instead of 0.6 s), which costs far
more after the warm-up than it saves during it; the paper preset has no warm-up.

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

import dataclasses
import logging
import os
import zipfile
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from etils import epath

from audiolm_jax.codec import losses
from audiolm_jax.codec.discriminators import (CodecDiscriminator, DiscriminatorConfig,
                                              DiscriminatorOutput)
from audiolm_jax.codec.soundstream import Codec, CodecConfig, SoundStream
from audiolm_jax.data.pipeline import AudioDataConfig, SelectKeys, make_audio_iterator
from audiolm_jax.errors import CheckpointError, ConfigError, DataError
from audiolm_jax.layers.spectral import log_mel_distance
from audiolm_jax.quantization.rvq import RNG_STREAM, VQ_STATS
from audiolm_jax.semantic import tokenizer as semantic_tokenizer
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train import optim
from audiolm_jax.train.task import LossOutput, Task, register

log = logging.getLogger(__name__)

Array = jax.Array

# The batch entries the step uses (the pipeline also yields the sample mask and ids).
BATCH_KEYS = ("audio", "valid")
# Codes files: the arrays every one holds, and the code of frames after a clip's end.
CODES_FILE_KEYS = ("codes", "num_frames", "num_samples", "paths", "codebook_size",
                   "sample_rate", "frame_rate")
PAD_CODE = -1


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
    _check_disc_optimizer(config.disc_optimizer)
    disc_steps = max(config.total_steps - self.disc_warmup_steps, 1)
    self.disc_tx, _ = optim.make_optimizer(config.disc_optimizer, disc_steps)
    self.model = SoundStream(self.model_cfg)
    self.discriminator = CodecDiscriminator(self.disc_cfg)

  # ------------------------------------------------------------------------------ data

  def make_iterator(self, split, process_index, process_count):
    if self.config.batch_size % process_count:
      raise ConfigError(f"batch_size={self.config.batch_size} is not divisible by "
                        f"{process_count} processes")
    iterator = make_audio_iterator(
        self.data_cfg, batch_size=self.config.batch_size // process_count,
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
    disc = {"params": extra["discriminator"]}
    real = self.discriminator.apply(disc, wav)
    loss, metrics = losses.generator_loss(
        self.loss_cfg, wav, output.audio, valid, output.quantizer.commitment_loss,
        discriminate=lambda x: self.discriminator.apply(disc, x), real=real,
        adversarial_scale=self._adversarial(extra).astype(jnp.float32))
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
    variables = {"params": params, VQ_STATS: extra[VQ_STATS]}
    codes = self.model.apply(variables, wav, method=SoundStream.encode)          # [B, T, Q]
    metrics = dict(out.metrics)
    for suffix, n in (("", self.model_cfg.num_quantizers), ("_q1", 1)):
      decoded = self.model.apply(variables, codes[..., :n], method=SoundStream.decode)
      decoded = decoded[:, :wav.shape[1]].astype(jnp.float32)                    # [B, S]
      metrics[f"quality/si_snr{suffix}"] = losses.valid_mean(losses.si_snr(wav, decoded), valid)
      metrics[f"quality/mel_distance{suffix}"] = losses.valid_mean(
          log_mel_distance(wav, decoded), valid)
    return out.replace(metrics=metrics)

  def update_extra(self, params, extra, batch, rng):
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


# --------------------------------------------------------------------------- trained codecs


def load_codec(path: str, dtype: str = "float32") -> Codec:
  """The codec of the latest checkpoint of a workdir (or its `checkpoints/`, or a step dir).

  Reads the generator (its EMA if the run kept one) and the codebooks as numpy arrays on the
  host; the discriminators and optimizer states are not read, and no mesh is needed.

  Args:
    path: a `codec` training workdir, its `checkpoints/` directory or one step directory.
    dtype: the conv computation dtype of the returned codec ("float32" or "bfloat16").

  Raises:
    CheckpointError: no checkpoint, an unreadable one, one of another task, or one that does
      not fit the model config saved with it.
  """
  step_dir = ckpt_lib.find_step_dir(path)
  saved = ckpt_lib.read_config(step_dir)
  if saved is None:
    raise CheckpointError(f"{step_dir}: no config saved with the checkpoint")
  if saved.get("task") != "codec":
    raise CheckpointError(f"{step_dir}: a {saved.get('task')!r} checkpoint, not a codec")
  try:
    config = dataclasses.replace(CodecConfig.from_dict(saved["model"]), dtype=dtype)
  except (ConfigError, KeyError) as e:
    raise CheckpointError(f"{step_dir}: its model config is invalid: {e}") from e
  expected = nn.unbox(jax.eval_shape(SoundStream(config).init, jax.random.key(0),
                                     jnp.zeros((1, config.hop_length), jnp.float32)))
  variables, field = _read_codec_variables(step_dir, expected)
  if not bool(variables[VQ_STATS]["quantizer"]["initialized"]):
    raise CheckpointError(f"{step_dir}: the codebooks were never trained (no training step "
                          "ran before this checkpoint)")
  log.info("codec: %s + %s of step %s from %s", field, VQ_STATS, os.path.basename(step_dir),
           step_dir)
  return Codec(config=config, variables=variables)


def _read_codec_variables(step_dir: str, expected: Mapping[str, Any]) -> tuple[dict, str]:
  """`({"params", "vq_stats"}, field read)` as numpy arrays, checked against `expected`.

  Reads only the generator (`ema_params` when saved, else `params`) and `extra/vq_stats`.
  """
  try:
    saved = ocp.StandardCheckpointHandler().metadata(
        epath.Path(step_dir) / ckpt_lib.STATE).tree
  except Exception as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({type(e).__name__}: {e})") from e
  field = "ema_params" if jax.tree.leaves(saved.get("ema_params")) else "params"
  found = {"params": saved.get(field), VQ_STATS: (saved.get("extra") or {}).get(VQ_STATS)}
  got, want = ckpt_lib.tree_paths(found), ckpt_lib.tree_paths(expected)
  bad = sorted(k for k in got.keys() | want.keys()
               if k not in got or k not in want or tuple(got[k].shape) != tuple(want[k].shape))
  if bad:
    raise CheckpointError(f"{step_dir}: the saved {field} and extra/{VQ_STATS} do not fit the "
                          f"model config saved with them ({', '.join(bad[:4])}"
                          f"{' ...' if len(bad) > 4 else ''})")
  target = {field: expected["params"], "extra": {VQ_STATS: expected[VQ_STATS]}}
  try:
    arrays = ocp.PyTreeCheckpointer().restore(
        os.path.join(step_dir, ckpt_lib.STATE),
        args=ocp.args.PyTreeRestore(
            item=target, partial_restore=True,
            restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      target)))
  except Exception as e:
    raise CheckpointError(f"{step_dir}: unreadable checkpoint ({type(e).__name__}: {e})") from e
  return {"params": arrays[field], VQ_STATS: arrays["extra"][VQ_STATS]}, field


def acoustic_frames_per_semantic_frame(config: CodecConfig) -> int:
  """Codec frames per 25 Hz semantic frame (2 for the 50 Hz codec at 16 kHz).

  Raises:
    ConfigError: the codec's frames do not tile the semantic frames of `semantic/tokenizer`.
  """
  spf = semantic_tokenizer.SAMPLES_PER_FRAME
  if config.sample_rate != semantic_tokenizer.SAMPLE_RATE or spf % config.hop_length:
    raise ConfigError(
        f"a codec at {config.sample_rate} Hz with a {config.hop_length}-sample hop does not "
        f"align with the semantic tokens ({spf} samples at {semantic_tokenizer.SAMPLE_RATE} "
        "Hz); the stage LMs need a whole number of codec frames per semantic frame")
  return spf // config.hop_length


def tokenize_for_lm(codec: Codec, wav: Array | np.ndarray, n_q: int | None = None) -> Array:
  """Acoustic tokens aligned with the semantic tokens: wav [B, S] -> codes [B, T, n_q].

  The one acoustic tokenize path of the LM pipeline. The clip is zero-padded by the frame rule
  of `semantic.tokenizer` (`pad_to_frames`: to `num_frames(S)` frames of 640 samples), so
  `T = 2 * num_frames(S)` for every S with the 50 Hz codec: semantic frame t covers acoustic
  frames 2t and 2t + 1. More zero padding after a clip changes none of its codes (the encoder
  is causal), which is what lets `semantic.task.tokenize_waveforms` batch clips of any length.

  Args:
    codec: a trained codec (see `load_codec`).
    wav: [B, S] float waveforms at the codec's sample rate.
    n_q: leading levels to keep (all by default).

  Returns:
    int32 codes [B, T, n_q].
  """
  acoustic_frames_per_semantic_frame(codec.config)  # The codec must fit the frame rule.
  if n_q is not None and not 1 <= n_q <= codec.num_quantizers:
    raise ConfigError(f"n_q={n_q}: this codec has 1 to {codec.num_quantizers} levels")
  wav = jnp.asarray(wav, jnp.float32)
  if wav.ndim != 2 or wav.shape[1] == 0:
    raise DataError(f"expected waveforms [batch, samples], got shape {wav.shape}")
  padded, _ = semantic_tokenizer.pad_to_frames(wav)                  # [B, 640 * num_frames(S)]
  return codec.encode(padded, n_q=n_q)


def decode_clips(codec: Codec, codes: Sequence[np.ndarray],
                 batch_size: int = 8) -> list[np.ndarray]:
  """Waveforms [T_i * hop] of code sequences [T_i, n] of any lengths (the same n), batched.

  Sequences are grouped by length and padded (code 0) to a power-of-two number of frames, so
  few shapes are compiled; the causal decoder's output up to frame T_i does not depend on what
  follows, and each waveform is cut back to `T_i * hop` samples.
  """
  if batch_size <= 0:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  if not codes:
    return []
  levels = {np.shape(c)[-1] for c in codes}
  if len(levels) != 1 or any(np.ndim(c) != 2 or len(c) == 0 for c in codes):
    raise DataError("decode: every code sequence must be [frames, levels] with frames > 0 and "
                    f"the same number of levels, got shapes {[np.shape(c) for c in codes]}")
  hop, n, k = codec.config.hop_length, levels.pop(), codec.config.codebook_size
  if n > codec.num_quantizers:
    raise DataError(f"decode: codes of {n} levels; this codec has {codec.num_quantizers}")
  if any(np.min(c) < 0 or np.max(c) >= k for c in codes):
    raise DataError(f"decode: codes outside [0, {k}), this codec's codebook")
  order = sorted(range(len(codes)), key=lambda i: len(codes[i]))
  rows = min(batch_size, len(codes))  # A short last batch gets empty rows: no new shape.
  out: list[np.ndarray | None] = [None] * len(codes)
  for start in range(0, len(order), rows):
    group = order[start:start + rows]
    frames = 1 << (len(codes[group[-1]]) - 1).bit_length()         # next power of two
    batch = np.zeros((rows, frames, n), np.int32)
    for row, i in enumerate(group):
      batch[row, :len(codes[i])] = codes[i]
    wav = np.asarray(codec.decode(jnp.asarray(batch)))                 # [rows, frames * hop]
    for row, i in enumerate(group):
      out[i] = wav[row, :len(codes[i]) * hop]
  return out


# --------------------------------------------------------------------------- codes files


@dataclasses.dataclass
class AcousticCodes:
  """Acoustic codes of several clips, as written by `audiolm-jax tokenize acoustic`.

  The file is an npz without pickled objects (load it with `allow_pickle=False`):
  `codes` int32 [N, T_max, n_q] padded with -1, `num_frames` int32 [N], `num_samples` int64
  [N] (each clip's length before padding), `paths` str [N], and the scalars `codebook_size`,
  `sample_rate`, `frame_rate`.

  Attributes:
    codes: one int32 array [T_i, n_q] per clip.
    num_samples: each clip's length in samples (the decoded audio is cut to it).
    paths: where each clip came from.
    codebook_size: K of the codec that made them.
    sample_rate: its sample rate.
    frame_rate: its frames per second.
  """
  codes: list[np.ndarray]
  num_samples: list[int]
  paths: list[str]
  codebook_size: int
  sample_rate: int
  frame_rate: float

  @property
  def num_levels(self) -> int:
    return int(self.codes[0].shape[-1])

  def save(self, path: str) -> None:
    if not self.codes or len({c.shape[-1] for c in self.codes}) != 1:
      raise DataError(f"{path}: need at least one clip, all with the same number of levels")
    frames = np.array([len(c) for c in self.codes], np.int32)
    padded = np.full((len(self.codes), int(frames.max()), self.num_levels), PAD_CODE, np.int32)
    for row, c in enumerate(self.codes):
      padded[row, :len(c)] = c
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
      np.savez(f, codes=padded, num_frames=frames,
               num_samples=np.array(self.num_samples, np.int64),
               paths=np.array(self.paths, dtype=str), codebook_size=np.int32(self.codebook_size),
               sample_rate=np.int32(self.sample_rate), frame_rate=np.float64(self.frame_rate))

  @classmethod
  def load(cls, path: str) -> AcousticCodes:
    """Reads and checks a codes file; raises `DataError` naming what is wrong."""
    if not os.path.isfile(path):
      raise DataError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
      raise DataError(f"{path}: not an npz file (write one with `audiolm-jax tokenize "
                      "acoustic`)")
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      raise DataError(f"{path}: unreadable npz file ({type(e).__name__}: {e})") from e
    missing = sorted(set(CODES_FILE_KEYS) - set(arrays))
    if missing:
      raise DataError(f"{path}: missing {', '.join(missing)} (not written by `audiolm-jax "
                      "tokenize acoustic`?)")
    padded, frames = arrays["codes"], arrays["num_frames"]
    n = len(frames)
    if (padded.ndim != 3 or not np.issubdtype(padded.dtype, np.integer) or padded.shape[0] != n
        or n == 0 or len(arrays["num_samples"]) != n or len(arrays["paths"]) != n):
      raise DataError(f"{path}: expected integer codes [N, T, levels] with N > 0 and N entries "
                      f"in num_frames, num_samples and paths, got codes {padded.shape}")
    if frames.min() < 1 or frames.max() > padded.shape[1]:
      raise DataError(f"{path}: num_frames must lie in [1, {padded.shape[1]}]")
    k = int(arrays["codebook_size"])
    codes = [padded[i, :int(t)].astype(np.int32) for i, t in enumerate(frames)]
    if any(c.min() < 0 or c.max() >= k for c in codes):
      raise DataError(f"{path}: codes outside [0, {k}) within num_frames")
    return cls(codes=codes, num_samples=[int(x) for x in arrays["num_samples"]],
               paths=[str(x) for x in arrays["paths"]], codebook_size=k,
               sample_rate=int(arrays["sample_rate"]), frame_rate=float(arrays["frame_rate"]))
