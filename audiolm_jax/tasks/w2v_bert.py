"""w2v-BERT pre-training as a trainer task, and fitting the semantic tokenizer on its features.

    audiolm-jax train --config experiments/configs/w2v_bert.py:cpu --workdir runs/w2v_bert
    model = pretrained.load_w2v_bert("runs/w2v_bert")   # latest checkpoint, for inference
    extractor = model.feature_extractor(layer=7)        # features of MLM block 7
    tokenizer, summary = fit_tokenizer(extractor, AudioDataConfig.from_config(config.data),
                                       config.tokenizer)
    pretrained.save_tokenizer(tokenizer, "runs/semantic_tokenizer", info)  # + fit_info.json

(`audiolm-jax tokenize fit-kmeans` is `fit_tokenizer` on the command line.)

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

import itertools
import logging
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.data.pipeline import AudioDataConfig, SelectKeys, make_audio_iterator
from audiolm_jax.errors import ConfigError
from audiolm_jax.pretrained import TrainedW2VBert, save_tokenizer
from audiolm_jax.semantic import losses
from audiolm_jax.semantic.fitting import compute_feature_stats, fit_semantic_tokenizer
from audiolm_jax.semantic.tokenizer import FeatureExtractor, SemanticTokenizer, mfcc_extractor
from audiolm_jax.semantic.w2v_bert import W2VBert, W2VBertConfig
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
    rows = self.rows_per_process(process_count)
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


# --------------------------------------------------------------------------- the semantic tokenizer

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


FEATURES = ("w2v_bert", "mfcc")


def fit_and_save_tokenizer(cfg: ml_collections.ConfigDict, model: TrainedW2VBert | None,
                           out_dir: str, seed: int = 0,
                           announce=lambda msg: None) -> tuple[SemanticTokenizer, dict]:
  """Fits the tokenizer `cfg.tokenizer` describes on `cfg.data` and saves it to `out_dir`
  with its `fit_info.json` (features, layer, the w2v-BERT's checkpoint and fingerprint, data,
  settings); returns `(tokenizer, info)`.

  Args:
    cfg: a config with `tokenizer` (features, layer, num_clusters, kmeans_steps, batch_size,
      init_frames, stats_batches, reassign_ratio) and `data` groups.
    model: the trained w2v-BERT for `features="w2v_bert"` (ignored for MFCC features).
    out_dir: where the tokenizer is written.
    seed: data order, crops and k-means seeding.
    announce: called with one line saying what is fit.
  """
  tok = cfg.tokenizer
  if tok.features not in FEATURES:
    raise ConfigError(f"tokenizer.features={tok.features!r}; known: {', '.join(FEATURES)}")
  if tok.features == "w2v_bert":
    if model is None:
      raise ConfigError("fit-kmeans: w2v_bert features need --w2v_bert RUN (a trained "
                        "w2v-BERT workdir); or use --features mfcc")
    extractor = model.feature_extractor(tok.layer)
  else:  # A given w2v-BERT then only lends its run's settings.
    extractor = mfcc_extractor()
  data = AudioDataConfig.from_config(cfg.data)
  announce(f"fitting {tok.num_clusters} clusters on {extractor.name} features of "
           f"{data.corpus}/{data.split} ({tok.kmeans_steps} steps of {tok.batch_size} crops "
           f"of {data.crop_seconds} s)")
  tokenizer, summary = fit_tokenizer(extractor, data, tok, seed=seed)
  info = {
      "features": tok.features,
      "layer": tok.layer if tok.features == "w2v_bert" else None,
      "extractor": extractor.name,
      "w2v_bert": None if tok.features != "w2v_bert" else {
          "checkpoint": model.step_dir, "step": model.step, "fingerprint": model.fingerprint},
      "data": {k: cfg.data[k] for k in ("corpus", "split", "data_dir", "config_name",
                                        "crop_seconds", "mixture") if k in cfg.data},
      "tokenizer": tok.to_dict(),
      "seed": seed,
      **summary,
  }
  save_tokenizer(tokenizer, out_dir, info)
  return tokenizer, info
