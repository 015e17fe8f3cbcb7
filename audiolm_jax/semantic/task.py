"""w2v-BERT from training to tokens: the `w2v_bert` task, loading a trained one, and fitting
and loading the semantic tokenizer on its features.

    audiolm-jax train --config experiments/configs/w2v_bert.py:cpu --workdir runs/w2v_bert
    model = load_w2v_bert("runs/w2v_bert")            # latest checkpoint, for inference
    extractor = model.feature_extractor(layer=7)      # features of MLM block 7
    tokenizer, summary = fit_tokenizer(extractor, AudioDataConfig.from_config(config.data),
                                       config.tokenizer)
    save_tokenizer(tokenizer, "runs/semantic_tokenizer", info)   # + fit_info.json
    tokenizer = load_semantic_tokenizer("runs/semantic_tokenizer")  # finds its w2v-BERT
    ids = tokenize_waveforms(tokenizer.tokenize, wavs)  # clips of any length, batched

(`audiolm-jax tokenize fit-kmeans | semantic` are these functions on the command line.)

Data: random crops of `config.data.crop_seconds` from the grain audio pipeline
(`data/pipeline.py`), this process's rows of every global batch. A crop shorter than the crop
length is padded and masked; a record that could not be read arrives as `valid = False`.

Loss: `semantic.losses.pretraining_loss` (contrastive + diversity + masked prediction). The
sample mask of an invalid row is cleared, so it has no valid frame and contributes to no term;
`LossOutput.weight` is the number of valid crops, which is how the trainer weighs micro-batches
and evaluation batches against each other.

Gumbel temperature: `loss` is not given the step, so the task counts parameter updates itself,
in `extra["updates"]` (int32, replicated, checkpointed with the state), incremented by
`update_extra` once per train step. A step the trainer skips as non-finite discards the new
extra state, so the count is that of *applied* updates, the same count the learning-rate
schedule uses. `--init_from` carries it over with the parameters (the schedule continues).

Metrics (besides the trainer's): `contrastive_loss` (= infonce + alpha * diversity),
`infonce_loss`, `diversity_loss`, `mlm_loss`, `contrastive_accuracy`, `mlm_accuracy`,
`codebook_perplexity` (of the average softmax, max G * V), `code_perplexity` (of the hard
choices: entries in use), `mask_fraction`, `gumbel_temperature`; throughput in seconds of audio
(crop length, padding included) per second.

Shape letters: B batch (this process's rows, or global in `batch_spec`), S samples.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import os
import re
from typing import Any, Callable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.data.pipeline import AudioDataConfig, SelectKeys, make_audio_iterator
from audiolm_jax.errors import CheckpointError, ConfigError
from audiolm_jax.semantic import losses
from audiolm_jax.semantic.tokenizer import (META_FILE, SAMPLES_PER_FRAME, FeatureExtractor,
                                             SemanticTokenizer, compute_feature_stats,
                                             fit_semantic_tokenizer, mfcc_extractor, num_frames)
from audiolm_jax.semantic.w2v_bert import W2VBert, W2VBertConfig, feature_extractor
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train.task import LossOutput, Task, register

log = logging.getLogger(__name__)

# The batch entries the step uses (the pipeline also yields ids, which stay on the host).
BATCH_KEYS = ("audio", "mask", "valid")


@register("w2v_bert")
class W2VBertTask(Task):
  """Self-supervised w2v-BERT pre-training on crops of speech."""

  throughput_unit = "audio_seconds"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = W2VBertConfig.from_config(config.model, config.compute_dtype)
    self.loss_cfg = losses.W2VBertLossConfig.from_config(config.loss)
    self.data_cfg = AudioDataConfig.from_config(config.data)
    if self.data_cfg.sample_rate != self.model_cfg.sample_rate:
      raise ConfigError(f"data.sample_rate={self.data_cfg.sample_rate} differs from "
                        f"model.sample_rate={self.model_cfg.sample_rate}")
    self.crop_samples = self.data_cfg.crop_samples

  def make_iterator(self, split, process_index, process_count):
    if self.config.batch_size % process_count:
      raise ConfigError(f"batch_size={self.config.batch_size} is not divisible by "
                        f"{process_count} processes")
    rows = self.config.batch_size // process_count
    iterator = make_audio_iterator(self.data_cfg, batch_size=rows, seed=self.config.seed,
                                   split=split, process_index=process_index,
                                   process_count=process_count,
                                   train=split == self.data_cfg.split)
    return SelectKeys(iterator, BATCH_KEYS)

  def batch_spec(self, batch_size):
    s = self.crop_samples
    return {"audio": jax.ShapeDtypeStruct((batch_size, s), jnp.float32),  # [B, S]
            "mask": jax.ShapeDtypeStruct((batch_size, s), jnp.bool_),  # [B, S]
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.bool_)}  # [B]

  def init(self, rng):
    # Parameters do not depend on the clip length: a short dummy clip keeps init cheap.
    wav = jnp.zeros((1, 4 * self.model_cfg.samples_per_frame), jnp.float32)
    params = W2VBert(self.model_cfg).init({"params": rng}, wav)["params"]
    return params, {"updates": jnp.zeros((), jnp.int32)}

  def loss(self, params, extra, batch, rng, *, train):
    valid = batch["valid"].astype(bool)  # [B]
    wav_mask = batch["mask"] & valid[:, None]  # [B, S] invalid rows: no valid sample
    loss, metrics = losses.pretraining_loss(W2VBert(self.model_cfg), params, batch["audio"],
                                            wav_mask, rng, self.loss_cfg,
                                            step=extra["updates"], deterministic=not train)
    metrics = {k: v for k, v in metrics.items() if k != "loss"}  # The trainer logs the loss.
    return LossOutput(loss=loss.astype(jnp.float32), weight=jnp.sum(valid.astype(jnp.float32)),
                      metrics=metrics)

  def update_extra(self, params, extra, batch, rng):
    del params, batch, rng
    return {"updates": extra["updates"] + 1}, {}

  def units_per_example(self, batch_spec: Mapping[str, Any]) -> float:
    return batch_spec["audio"].shape[1] / self.data_cfg.sample_rate


# --------------------------------------------------------------------------- inference


@dataclasses.dataclass(frozen=True)
class TrainedW2VBert:
  """A trained w2v-BERT read from a checkpoint, for feature extraction.

  Attributes:
    config: the model hyperparameters (float32 computation, whatever the run trained in).
    params: the parameters as numpy arrays (the EMA when the run kept one).
    step: the checkpoint's step.
    step_dir: the checkpoint directory read.
    run_config: the run's resolved config (`model`, `data`, `tokenizer`, ...).
  """
  config: W2VBertConfig
  params: Any
  step: int
  step_dir: str
  run_config: ml_collections.ConfigDict

  def feature_extractor(self, layer: int) -> FeatureExtractor:
    """Features of MLM-module block `layer` (1-based; 0 = the contrastive module's output)."""
    return feature_extractor(self.config, self.params, layer)

  @functools.cached_property
  def fingerprint(self) -> str:
    """SHA-256 of `params` (`checkpoint.param_fingerprint`): which weights these are."""
    return ckpt_lib.param_fingerprint(self.params)


def load_w2v_bert(path: str) -> TrainedW2VBert:
  """The latest w2v-BERT checkpoint of a workdir (or its `checkpoints/`, or a step directory).

  Reads the parameter EMA if the run kept one, else the parameters, as numpy arrays on the
  host; no mesh or optimizer state is needed.

  Raises:
    CheckpointError: no checkpoint, an unreadable one, or one of another task.
  """
  step_dir = ckpt_lib.find_step_dir(path)
  saved = ckpt_lib.read_config(step_dir)
  if saved is None:
    raise CheckpointError(f"{step_dir}: no config saved with the checkpoint")
  if saved.get("task") != "w2v_bert":
    raise CheckpointError(f"{step_dir}: a {saved.get('task')!r} checkpoint, not w2v_bert")
  try:
    config = W2VBertConfig.from_config(saved["model"], dtype="float32")
  except (ConfigError, KeyError) as e:
    raise CheckpointError(f"{step_dir}: its model config is invalid: {e}") from e
  field = "ema_params" if "ema_params" in ckpt_lib.saved_fields(step_dir) else "params"
  params = ckpt_lib.read_numpy(step_dir, (field,))[field]
  # The parameters must fit the model the saved config describes.
  expected = jax.eval_shape(W2VBert(config).init, jax.random.key(0),
                            jnp.zeros((1, 4 * config.samples_per_frame)))["params"]
  _check_shapes(step_dir, params, nn.unbox(expected))
  log.info("w2v-BERT: %s of step %d from %s", field, int(os.path.basename(step_dir)), step_dir)
  return TrainedW2VBert(config=config, params=params, step=int(os.path.basename(step_dir)),
                        step_dir=step_dir, run_config=ml_collections.ConfigDict(saved))


def _check_shapes(step_dir: str, params: Any, expected: Any) -> None:
  got, want = ckpt_lib.tree_paths(params), ckpt_lib.tree_paths(expected)
  bad = sorted(k for k in got.keys() | want.keys()
               if k not in got or k not in want or tuple(got[k].shape) != tuple(want[k].shape))
  if bad:
    raise CheckpointError(f"{step_dir}: parameters do not fit the saved model config "
                          f"({', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''})")


# --------------------------------------------------------------------------- the semantic tokenizer

FIT_INFO_FILE = "fit_info.json"  # Written next to the tokenizer: what it was fit on, and how.
FEATURES = ("w2v_bert", "mfcc")


def audio_batches(data: AudioDataConfig, batch_size: int, seed: int, split: str | None = None,
                  train: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """`(wav [B, S], mask [B, S])` batches of crops of one split, all in this process.

  Training order (`train=True`): random crops, shuffled, endless. Rows the pipeline marks
  invalid (unreadable records, padding) have an all-False mask, so they add no frame.
  """
  iterator = make_audio_iterator(data, batch_size=batch_size, seed=seed, split=split,
                                 process_index=0, process_count=1, train=train)
  for batch in iterator:
    yield batch["audio"], batch["mask"] & batch["valid"][:, None]


def fit_tokenizer(extractor: FeatureExtractor, data: AudioDataConfig,
                  settings: Mapping[str, Any], seed: int = 0,
                  log_every: int = 100) -> tuple[SemanticTokenizer, dict[str, Any]]:
  """Fits a semantic tokenizer on random training crops of `data` (AudioLM section 3.2).

  1. Per-dimension mean and variance of the features over `stats_batches` batches;
  2. k-means++ seeding on `init_frames` normalised frames, then `kmeans_steps` mini-batch
     k-means steps of `batch_size` crops each (`semantic.tokenizer.fit_semantic_tokenizer`).
  Statistics and k-means read different crops (seeds `seed + 1` and `seed`).

  Args:
    extractor: the features (`TrainedW2VBert.feature_extractor(layer)` or `mfcc_extractor()`).
    data: the corpus; its `split` is read, cropped to `crop_seconds`.
    settings: a config's `tokenizer` group (`num_clusters`, `kmeans_steps`, `batch_size`,
      `init_frames`, `stats_batches`, `reassign_ratio`).
    seed: data order, crops, seeding and reassignment.
    log_every: k-means steps between log lines.

  Returns:
    `(tokenizer, summary)`: the summary holds the frames the statistics saw and the last
    step's k-means inertia and cluster perplexity.
  """
  batch_size = int(settings["batch_size"])
  stats_batches = itertools.islice(audio_batches(data, batch_size, seed + 1),
                                   int(settings["stats_batches"]))
  stats = compute_feature_stats(extractor, stats_batches)
  log.info("tokenizer: statistics of %s over %d frames", extractor.name, int(stats.count))
  last: dict[str, float] = {}

  def on_step(state, metrics):
    last.update({k: float(v) for k, v in metrics.items()})
    step = int(state.step)
    if step % log_every == 0 or step == int(settings["kmeans_steps"]):
      log.info("k-means step %d: inertia %.4g, cluster perplexity %.1f", step,
               last["inertia"], last["cluster_perplexity"])

  tokenizer, _ = fit_semantic_tokenizer(
      extractor, lambda: audio_batches(data, batch_size, seed), jax.random.key(seed),
      num_clusters=int(settings["num_clusters"]), num_steps=int(settings["kmeans_steps"]),
      init_frames=int(settings["init_frames"]),
      reassign_ratio=float(settings["reassign_ratio"]), stats=stats, on_step=on_step)
  return tokenizer, {"stats_frames": int(stats.count), "final_inertia": last.get("inertia"),
                     "final_cluster_perplexity": last.get("cluster_perplexity")}


def save_tokenizer(tokenizer: SemanticTokenizer, directory: str, info: Mapping[str, Any]) -> None:
  """The tokenizer's arrays (`SemanticTokenizer.save`) and `fit_info.json` with `info`."""
  tokenizer.save(directory)
  with open(os.path.join(directory, FIT_INFO_FILE), "w") as f:
    json.dump(dict(info), f, indent=2)


def _features_of(directory: str) -> tuple[str, int | None]:
  """`(features, layer)` a tokenizer directory was fit on: from `fit_info.json`, or from the
  extractor name `semantic_tokenizer.json` records (tokenizers saved by the API)."""
  info_path = os.path.join(directory, FIT_INFO_FILE)
  if os.path.isfile(info_path):
    with open(info_path) as f:
      info = json.load(f)
    return info["features"], info.get("layer")
  meta_path = os.path.join(directory, META_FILE)
  if not os.path.isfile(meta_path):
    raise CheckpointError(f"{directory}: no semantic tokenizer here (expected {META_FILE}; "
                          "fit one with `audiolm-jax tokenize fit-kmeans`)")
  with open(meta_path) as f:
    name = json.load(f).get("features", "")
  match = re.fullmatch(r"w2v_bert/mlm_layer_(\d+)", name)
  if match:
    return "w2v_bert", int(match.group(1))
  if name.startswith("mfcc/"):
    return "mfcc", None
  raise CheckpointError(f"{meta_path}: unknown features {name!r}")


def load_semantic_tokenizer(directory: str,
                            w2v_bert: str | TrainedW2VBert | None = None) -> SemanticTokenizer:
  """A tokenizer saved by `save_tokenizer` (or `SemanticTokenizer.save`), ready to use.

  Args:
    directory: the tokenizer directory.
    w2v_bert: for w2v-BERT features, the model (a loaded one, or a workdir / checkpoint
      path); default the checkpoint recorded in `fit_info.json`. Its parameters must be the
      ones the tokenizer was fit on (compared by fingerprint), else tokens would silently
      mean something else.

  Raises:
    CheckpointError: missing or unreadable artifacts, no or the wrong w2v-BERT.
  """
  features, layer = _features_of(directory)
  if features == "mfcc":
    return SemanticTokenizer.load(directory, mfcc_extractor())
  info_path = os.path.join(directory, FIT_INFO_FILE)
  recorded = {}
  if os.path.isfile(info_path):
    with open(info_path) as f:
      recorded = json.load(f).get("w2v_bert") or {}
  if w2v_bert is None:
    w2v_bert = recorded.get("checkpoint")
    if w2v_bert is None:
      raise CheckpointError(f"{directory}: fit on w2v-BERT features; give the w2v-BERT "
                            "workdir it was fit with (--w2v_bert)")
  model = w2v_bert if isinstance(w2v_bert, TrainedW2VBert) else load_w2v_bert(w2v_bert)
  if recorded.get("fingerprint") and recorded["fingerprint"] != model.fingerprint:
    raise CheckpointError(
        f"{directory}: fit on the w2v-BERT of {recorded.get('checkpoint')} (step "
        f"{recorded.get('step')}), but {model.step_dir} holds other parameters; use that "
        "checkpoint or fit a tokenizer on this one")
  return SemanticTokenizer.load(directory, model.feature_extractor(layer))


def _bucket(frames: int) -> int:
  """Frames padded up to a power of two (at least 16): few shapes, so few compilations."""
  return max(16, 1 << (max(frames, 1) - 1).bit_length())


def tokenize_waveforms(tokenize: Callable[[np.ndarray, np.ndarray], Any],
                       wavs: Sequence[np.ndarray], batch_size: int = 8,
                       frames_of: Callable[[int], int] = num_frames) -> list[np.ndarray]:
  """`tokenize(wav [B, S], mask [B, S]) -> ids [B, T, ...]` on clips of any length, batched.

  Clips are grouped by length and zero-padded (mask False) to a power-of-two number of 25 Hz
  frames, in batches of a fixed number of rows, so few shapes are compiled; each clip's ids
  are then cut to `frames_of(S_i)` frames.
  `tokenize` must give a clip's frames independently of the padding after it: the semantic
  tokenizer masks it, a causal codec never looks ahead.

  Args:
    tokenize: e.g. `SemanticTokenizer.tokenize`, or a codec's encoder (which ignores `mask`).
    wavs: 16 kHz waveforms `[S_i]`.
    batch_size: clips per call.
    frames_of: frames of the result for a clip of `S` samples: `num_frames` (25 Hz semantic
      frames) by default; `lambda s: 2 * num_frames(s)` for 50 Hz codec frames of the clip
      padded by the frame rule.

  Returns:
    One array `[frames_of(S_i), ...]` per clip, in order.
  """
  if batch_size <= 0:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  lengths = [int(np.asarray(w).shape[-1]) for w in wavs]
  out: list[np.ndarray | None] = [None] * len(wavs)
  order = sorted(range(len(wavs)), key=lambda i: lengths[i])
  rows = min(batch_size, len(wavs))  # A short last batch gets empty rows: no new shape.
  for start in range(0, len(order), rows):
    group = order[start:start + rows]
    samples = _bucket(num_frames(lengths[group[-1]])) * SAMPLES_PER_FRAME
    wav = np.zeros((rows, samples), np.float32)
    mask = np.zeros((rows, samples), bool)
    for row, i in enumerate(group):
      wav[row, :lengths[i]] = wavs[i]
      mask[row, :lengths[i]] = True
    ids = np.asarray(tokenize(wav, mask))  # [B, T, ...]
    for row, i in enumerate(group):
      out[i] = ids[row, :frames_of(lengths[i])]
  return out
