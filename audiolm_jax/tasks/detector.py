"""The `detector` task: the classifier of `eval/detector.py` trained on two classes of audio.

    audiolm-jax train --config experiments/configs/detector.py:cpu --workdir runs/detector
    detector = pretrained.load_detector("runs/detector")      # then .probability(wav, rate)

Data: two built corpora (each a `data.mixture`-style string, `corpus[/build]:weight,...`):
`data.real`, class 0 (real audio resynthesised by the codec: the hard negative) and
`data.generated`, class 1 (e.g. AudioLM continuations). `experiments/detector_data.py` writes
both as folders; each becomes a corpus with `audiolm-jax data build audio_folder --source
DIR --layout librispeech --name NAME` (splits from the `train/`, `validation/` folders). Both
go through the audio pipeline (`data/pipeline.py`: random crops of `data.crop_seconds`,
deterministic and resumable, one disjoint set of rows per process) and are interleaved one
by one, so every batch (of an even size) holds as many examples of each class. Evaluation
reads `data.eval_split` of both classes alternately until the smaller one ends (balanced),
crops from the start of each clip.

Batch (B = this process's rows, global in `batch_spec`; S = crop samples):

    audio  float32 [B, S]   the crop, zero-padded
    mask   bool    [B, S]   True on real samples (padding never reaches the classifier)
    valid  bool    [B]      False for a record that could not be read, or eval padding
    label  int32   [B]      0 real, 1 generated

Loss: binary cross-entropy of the logit against the label, averaged over valid rows
(`LossOutput.weight`); an unreadable record weighs nothing (the pipeline logs it). Metrics:
`accuracy`, and the two kinds of error as shares of valid rows, `real_as_generated` and
`generated_as_real` (they add up to 1 - accuracy).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.data.pipeline import (AudioDataConfig, AudioIterator, SelectKeys, audio_dataset,
                                       crop_example, parse_mixture, process_rows)
from audiolm_jax.errors import ConfigError
from audiolm_jax.eval.detector import LABELS, DetectorConfig, DetectorNet, init_params
from audiolm_jax.train.task import LossOutput, Task, register

BATCH_KEYS = ("audio", "mask", "valid", "label")
# Seed offset of the generated class's data order and crops (the real class uses the seed).
_CLASS_SEED_STRIDE = 1000


class AddLabel(grain.transforms.Map):
  """Adds `label` (int32) to every example of one class."""

  def __init__(self, label: int):
    self.label = np.int32(label)

  def map(self, element: dict) -> dict:
    return {**element, "label": self.label}


def class_data(config: ml_collections.ConfigDict) -> tuple[AudioDataConfig, ...]:
  """The data of each class, in label order: `config.data` with the class's corpora."""
  base = AudioDataConfig.from_config(config.data)
  out = []
  for label in LABELS:
    spec = str(config.data.get(label, "") or "")
    if not parse_mixture(spec):
      raise ConfigError(f"data.{label}: name the {label} class's corpus build, e.g. "
                        f"audio_folder/detector_{label} (built with `audiolm-jax data build "
                        "audio_folder --source DIR --layout librispeech --name NAME`)")
    out.append(dataclasses.replace(base, mixture=spec))
  return tuple(out)


@register("detector")
class DetectorTask(Task):
  """A binary classifier of real (codec-resynthesised) vs. generated audio."""

  throughput_unit = "audio_seconds"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = DetectorConfig.from_config(config.model, config.compute_dtype)
    self.classes = class_data(config)
    self.data_cfg = self.classes[0]
    if self.data_cfg.sample_rate != self.model_cfg.sample_rate:
      raise ConfigError(f"data.sample_rate={self.data_cfg.sample_rate} differs from "
                        f"model.sample_rate={self.model_cfg.sample_rate}")
    self.crop_samples = self.data_cfg.crop_samples
    if self.crop_samples < self.model_cfg.min_samples:
      raise ConfigError(f"data.crop_seconds={self.data_cfg.crop_seconds} is shorter than one "
                        f"mel frame ({self.model_cfg.n_fft} samples)")
    self.model = DetectorNet(self.model_cfg)

  def make_iterator(self, split, process_index, process_count):
    rows = self.rows_per_process(process_count)
    train = split == self.data_cfg.split
    parts = [audio_dataset(data, split=split, seed=self.config.seed + _CLASS_SEED_STRIDE * label,
                           train=train).map(AddLabel(label))
             for label, data in enumerate(self.classes)]
    ds = grain.MapDataset.mix(parts, [1.0] * len(parts))  # 0, 1, 0, 1, ...: balanced
    pad = {**crop_example(None, -1, self.crop_samples, None), "label": np.int32(0)}
    ds = process_rows(ds, rows=rows, process_index=process_index,
                      process_count=process_count, pad_example=pad)
    return SelectKeys(AudioIterator(ds, rows, self.data_cfg), BATCH_KEYS)

  def batch_spec(self, batch_size):
    s = self.crop_samples
    return {"audio": jax.ShapeDtypeStruct((batch_size, s), jnp.float32),  # [B, S]
            "mask": jax.ShapeDtypeStruct((batch_size, s), jnp.bool_),  # [B, S]
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.bool_),  # [B]
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}  # [B]

  def init(self, rng):
    return init_params(self.model_cfg, rng), {}

  def loss(self, params, extra, batch, rng, *, train):
    del extra, rng, train  # No dropout, no state.
    valid = batch["valid"].astype(bool)                                          # [B]
    mask = batch["mask"] & valid[:, None]                                        # [B, S]
    logits = self.model.apply({"params": params}, batch["audio"], mask)          # [B]
    label = batch["label"].astype(jnp.float32)                                   # [B]
    nll = -(label * jax.nn.log_sigmoid(logits) + (1 - label) * jax.nn.log_sigmoid(-logits))
    w = valid.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    said_generated = (logits >= 0).astype(jnp.float32)

    def share(x):
      return jnp.sum(x * w) / n

    metrics = {"accuracy": share((said_generated == label).astype(jnp.float32)),
               "real_as_generated": share(said_generated * (1 - label)),
               "generated_as_real": share((1 - said_generated) * label)}
    return LossOutput(loss=share(nll), weight=jnp.sum(w), metrics=metrics)

  def units_per_example(self, batch_spec: Mapping[str, Any]) -> float:
    return batch_spec["audio"].shape[1] / self.data_cfg.sample_rate
