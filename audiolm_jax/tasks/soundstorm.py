"""SoundStorm as a trainer task: `soundstorm` (`lm/soundstorm.py`), on the stages' token caches.

    audiolm-jax tokenize corpus ... --out DIR          # the token cache (once, shared)
    audiolm-jax train --config experiments/configs/soundstorm.py:cpu --workdir runs/soundstorm \
        --config.data.tokens_dir=DIR
    audiolm-jax train --config experiments/configs/soundstorm.py:paper --workdir runs/soundstorm \
        --config.data.tokens_dir=DIR --config.batch_size=256

Data: every example is an aligned random crop (`config.stage.crop_seconds`, paper 30 s) of one
token-cache utterance, padded to the crop's length:

    semantic  int32   [B, S]      raw semantic ids (not deduplicated), 0 on padding
    acoustic  int32   [B, T, Q]   all Q levels' codes, 0 on padding
    frames    float32 [B, T]      1 on the crop's frames, 0 on padding
    valid     float32 [B]         0 for a padding row or a record that could not be read

The stream is the stages' (`tasks/stages.py`): grain, shuffled per epoch in training, crops
drawn from (seed, position), `process_rows` per process. With `config.data.sizes_from_cache`,
the codebook sizes and Q of `config.stage` are the cache's (`token_cache.json`).

Loss: in the step, `lm.soundstorm.training_mask` draws the prompt, level and mask of each row
(from the step's key) and the loss is the cross entropy of the masked tokens of each row's level
(`masked_level_loss`); `LossOutput.weight` is their number. Throughput counts acoustic frames.

Shape letters: B batch, S semantic frames, T acoustic frames, Q levels.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Mapping

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.data.pipeline import SafeSource, process_rows
from audiolm_jax.data.tokens import has_token_cache, read_cache_info, token_source
from audiolm_jax.errors import AudioLMError, ConfigError, DataError
from audiolm_jax.lm.soundstorm import (SoundStorm, SoundStormLayout, masked_level_loss,
                                       model_config, soundstorm_flops, training_mask)
from audiolm_jax.tasks.stages import TokenRows, sizes_from_cache
from audiolm_jax.train.task import LossOutput, Task, register

log = logging.getLogger(__name__)


def make_row(layout: SoundStormLayout, record: Mapping[str, Any],
             rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One padded training row of a token-cache record (`DataError` if its tokens do not fit)."""
  acoustic = np.asarray(record["acoustic"])
  if acoustic.ndim != 2 or acoustic.shape[1] < layout.num_quantizers:
    raise DataError(f"acoustic codes of shape {acoustic.shape}: {layout.num_quantizers} levels "
                    "needed")
  crop = layout.crop(rng, record["semantic"], acoustic[:, :layout.num_quantizers])
  semantic, codes = np.asarray(crop.semantic_ids), np.asarray(crop.acoustic_codes)
  for name, ids, size in (("semantic ids", semantic, layout.semantic_codebook_size),
                          ("acoustic codes", codes, layout.acoustic_codebook_size)):
    if ids.size and (ids.min() < 0 or ids.max() >= size):
      raise DataError(f"{name} outside [0, {size})")
  if not len(codes):
    raise DataError("no frames")
  row = invalid_row(layout)
  row["semantic"][:len(semantic)] = semantic
  row["acoustic"][:len(codes)] = codes
  row["frames"][:len(codes)] = 1.0
  row["valid"] = np.float32(1.0)
  return row


def invalid_row(layout: SoundStormLayout) -> dict[str, np.ndarray]:
  """A row of padding that weighs nothing (`valid = 0`)."""
  return {"semantic": np.zeros(layout.max_semantic_frames, np.int32),
          "acoustic": np.zeros((layout.max_frames, layout.num_quantizers), np.int32),
          "frames": np.zeros(layout.max_frames, np.float32), "valid": np.float32(0.0)}


@register("soundstorm")
class SoundStormTask(Task):
  """SoundStorm on a token cache (see the module docstring)."""

  throughput_unit = "frames"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.task != self.name:
      raise ConfigError(f"config.task is {config.task!r}, not {self.name!r}")
    sizes_from_cache(config)  # Codebook sizes.
    data = config.data
    if data.get("sizes_from_cache") and data.get("tokens_dir") and has_token_cache(
        data.tokens_dir):
      levels = read_cache_info(data.tokens_dir).num_quantizers
      if levels and levels != config.stage.num_quantizers:
        log.info("soundstorm: stage.num_quantizers = %d from the token cache", levels)
        config.stage.num_quantizers = int(levels)
    self.model_config = model_config(config)
    self.layout = self.model_config.layout
    self.model = SoundStorm(self.model_config)

  def _tokens_dir(self) -> str:
    tokens_dir = self.config.data.get("tokens_dir")
    if not tokens_dir:
      raise ConfigError("soundstorm: config.data.tokens_dir is not set: pass "
                        "--config.data.tokens_dir=DIR, a cache made by `audiolm-jax tokenize "
                        "corpus ... --out DIR`")
    return tokens_dir

  def make_iterator(self, split: str, process_index: int, process_count: int):
    data, tokens_dir = self.config.data, self._tokens_dir()
    ratio = read_cache_info(tokens_dir).frame_ratio
    if ratio != self.layout.frame_ratio:
      raise ConfigError(f"token cache {tokens_dir} has {ratio} codec frames per semantic frame; "
                        f"config.stage gives {self.layout.frame_ratio}")
    source = token_source(tokens_dir, split)
    if not len(source):
      raise ConfigError(f"token cache {tokens_dir}: split {split!r} is empty")
    try:
      make_row(self.layout, source[0], np.random.default_rng(0))
    except AudioLMError as e:
      raise ConfigError(f"token cache {tokens_dir} does not fit config.stage: {e}") from e
    ds = grain.MapDataset.source(SafeSource(source, f"{tokens_dir}/{split}"))
    if split == data.split:
      ds = ds.shuffle(seed=self.config.seed).repeat(None)
    ds = ds.random_map(TokenRows(functools.partial(make_row, self.layout),
                                 functools.partial(invalid_row, self.layout),
                                 f"{tokens_dir}/{split}"),
                       seed=self.config.seed)
    rows = self.rows_per_process(process_count)
    ds = process_rows(ds, rows=rows, process_index=process_index, process_count=process_count,
                      pad_example=invalid_row(self.layout))
    ds = ds.batch(rows, drop_remainder=True)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=data.num_threads,
                                                     prefetch_buffer_size=data.prefetch)))

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    t, layout = self.layout.max_frames, self.layout
    return {"semantic": jax.ShapeDtypeStruct((batch_size, layout.max_semantic_frames), jnp.int32),
            "acoustic": jax.ShapeDtypeStruct((batch_size, t, layout.num_quantizers), jnp.int32),
            "frames": jax.ShapeDtypeStruct((batch_size, t), jnp.float32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

  def init(self, rng: jax.Array):
    r, q = self.layout.frame_ratio, self.layout.num_quantizers
    variables = self.model.init({"params": rng}, jnp.zeros((1, 1), jnp.int32),
                                jnp.zeros((1, r, q), jnp.int32))
    return variables["params"], {}

  def loss(self, params, extra, batch, rng, *, train: bool) -> LossOutput:
    del extra
    mask_key, dropout_key = jax.random.split(rng)
    frames = batch["frames"] * batch["valid"][:, None]  # [B, T]
    mask = training_mask(mask_key, batch["acoustic"], frames, self.layout.mask_id)
    logits = self.model.apply({"params": params}, batch["semantic"], mask.inputs, frames,
                              levels=mask.level, deterministic=not train,
                              rngs={"dropout": dropout_key})  # [B, T, K]
    loss, metrics = masked_level_loss(logits, batch["acoustic"], mask)
    return LossOutput(loss=loss, weight=metrics["tokens"],
                      metrics={"accuracy": metrics["accuracy"], "perplexity": jnp.exp(loss)})

  def units_per_example(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> float:
    return float(batch_spec["frames"].shape[1])

  def flops_per_example(self) -> float:
    return soundstorm_flops(self.model_config)
