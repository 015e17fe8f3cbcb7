"""The three stage language models as trainer tasks: `semantic_lm`, `coarse_lm`, `fine_lm`.

    audiolm-jax train --config experiments/configs/coarse_lm.py:cpu --workdir runs/coarse_lm \
        --config.data.tokens_dir=DIR

Data: a token cache (`data/tokens.py`: per utterance raw semantic ids [T25] and all acoustic
codes [T50, Q]) at `config.data.tokens_dir`. Every example is a random crop of one utterance,
made into the stage's training sequence by its layout (`stage.crop` + `stage.make_example`, with
the stage's crop length: paper 30 s / 10 s / 3 s), so a batch is

    inputs   int32   [B, N]   the sequence (`lm/stages.py`)
    targets  int32   [B, N]   the inputs shifted left by one
    weights  float32 [B, N]   1 on the targets the stage learns, 0 on conditioning and padding
    valid    float32 [B]      0 for a row that is padding or a record that could not be read

The global stream is `grain`: training shuffles anew every epoch and repeats forever; evaluation
makes one pass in order, its last global batch padded with `valid = 0` rows. Crop offsets are
drawn from (seed, position in the stream), in training and evaluation alike, so a resumed run
sees the same crops and every evaluation the same ones. `process_rows` gives each process its
rows of every global batch (the global batch does not depend on the number of processes); the
iterator's state is saved with every checkpoint.

Vocabularies: with `config.data.sizes_from_cache` (the presets' default), the codebook sizes
of `config.stage` (and the fine stage's number of levels) are those the cache recorded in
`token_cache.json` (`sizes_from_cache`), set before the trainer saves the config.

Loss: `weighted_cross_entropy` over the weighted targets of valid rows, with the softmax taken
over the ids allowed at each target (`stage.target_logit_mask()`, the same ids the sampler
allows); `LossOutput.weight` is the number of weighted tokens. Metrics: `accuracy` (of the
argmax among the allowed ids) and `perplexity` (exp of the batch loss; averaged over batches it is
an upper bound of the exp of the averaged loss). Throughput is counted in sequence tokens (N per
example) and model FLOPs follow the 6 * params * tokens + attention rule, for MFU, counting only
the useful part of the output layer (`stage_flops`).

Stages 2 and 3 score each learned target against its own level's K ids only
(`level_sliced_loss`, `lm.stages.LevelSpan`): the same loss and gradients as the masked
full-vocabulary softmax, with 4-12x fewer FLOPs in the output layer at the paper's sizes.

Shape letters: B batch, N tokens of a stage's sequence, V vocabulary.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.data.pipeline import SafeSource, process_rows
from audiolm_jax.data.tokens import has_token_cache, read_cache_info, token_source
from audiolm_jax.errors import AudioLMError, ConfigError
from audiolm_jax.lm.stages import CoarseStage, FineStage, SemanticStage, Stage
from audiolm_jax.lm.transformer import Transformer
from audiolm_jax.pretrained import stage_from_config, transformer_config
from audiolm_jax.train.task import LossOutput, Task, register

log = logging.getLogger(__name__)


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                           logit_mask: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """Mean next-token cross entropy over the weighted targets (the loss of every stage).

  Args:
    logits: `[B, N, V]`.
    targets: int `[B, N]`.
    weights: `[B, N]`, 0 on conditioning and padding.
    logit_mask: optional bool `[N, V]` (e.g. `target_logit_mask()`): softmax over the ids valid
      at each target only.

  Returns:
    `(loss, metrics)` with metrics `loss`, `accuracy` (of the argmax) and `tokens` (weight sum).
  """
  logits = logits.astype(jnp.float32)
  if logit_mask is not None:
    logits = jnp.where(logit_mask, logits, -1e9)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # [B, N]
  total = jnp.maximum(jnp.sum(weights), 1.0)
  loss = jnp.sum(nll * weights) / total
  accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * weights) / total
  return loss, {"loss": loss, "accuracy": accuracy, "tokens": jnp.sum(weights)}


def level_sliced_loss(model: Transformer, params, inputs: jax.Array, targets: jax.Array,
                      weights: jax.Array, span, *, train: bool = False,
                      rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """`weighted_cross_entropy` of a stage whose learned targets all lie in `span`
  (`lm.stages.LevelSpan`), each scored against its level's K ids only.

  Equal to the full-vocabulary loss under `target_logit_mask()` (the masked ids have
  probability 0 there), and so are its gradients; the output layer costs K / V of that one's.
  """
  batch = inputs.shape[0]
  logits = model.apply({"params": params}, inputs, deterministic=not train, output=span,
                       rngs=None if rng is None else {"dropout": rng})  # [B, F, Q, K]
  window = lambda a: a[:, span.start:span.stop].reshape(batch, span.frames, span.levels)
  weights = window(weights)
  codes = window(targets) - (span.first_id + span.width * jnp.arange(span.levels))
  # Unweighted targets (padding after a short crop) are not codes of the level.
  codes = jnp.where((codes >= 0) & (codes < span.width), codes, 0)
  return weighted_cross_entropy(logits, codes, weights)


def stage_flops(config, stage: Stage) -> float:
  """Useful forward + backward FLOPs of one training sequence of N tokens:

      6 * (P * N + D * W * M) + 12 * L * N^2 * H * E

  with P the matmul parameters of the layers (embedding lookups excluded), D * W * M the output
  layer over the M positions it scores, W ids each (stages 2 and 3: the level span's F * Q
  targets over a level's K ids; stage 1: all N positions over the V ids), and the attention
  scores and values over the full N x N square (as in PaLM's MFU; causal masking halves the
  need but not what is computed).
  """
  cfg, n = config, stage.sequence_length
  inner = cfg.num_heads * cfg.head_dim
  layer_params = cfg.num_layers * (4 * cfg.d_model * inner + 3 * cfg.d_model * cfg.mlp_dim)
  span = stage.level_span()
  scored = n * cfg.vocab_size if span is None else span.frames * span.levels * span.width
  return 6.0 * (layer_params * n + cfg.d_model * scored) + 12.0 * cfg.num_layers * n * n * inner


def invalid_example(stage: Stage) -> dict[str, np.ndarray]:
  """A row that is all padding and weighs nothing (`valid = 0`)."""
  pad = np.full(stage.sequence_length, stage.pad_id, np.int32)
  return {"inputs": pad, "targets": pad.copy(),
          "weights": np.zeros(stage.sequence_length, np.float32), "valid": np.float32(0.0)}


class TokenRows(grain.transforms.RandomMap):
  """`(record index, token-cache record) -> training row`: `make_row(record, rng)`.

  A record that could not be read (None), or whose tokens do not fit (`make_row` raises an
  `AudioLMError`), becomes `invalid_row()` and a warning; the run goes on. Every task that
  trains on a token cache (the stages, SoundStorm) maps its records through this.
  """

  def __init__(self, make_row: Callable[[Mapping[str, Any], np.random.Generator], dict],
               invalid_row: Callable[[], dict], name: str):
    self.make_row, self.invalid_row, self.name = make_row, invalid_row, name

  def random_map(self, element, rng: np.random.Generator) -> dict[str, np.ndarray]:
    index, record = element
    if record is not None:
      try:
        return self.make_row(record, rng)
      except AudioLMError as e:
        log.warning("%s: record %d skipped: %s", self.name, index, e)
    return self.invalid_row()


def make_row(stage: Stage, record: Mapping[str, Any],
             rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One valid training row from a token-cache record (raises `DataError` if it does not fit)."""
  crop = stage.crop(rng, record["semantic"], record["acoustic"])
  example = stage.make_example(crop.semantic_ids, crop.acoustic_codes,
                               reaches_end=crop.reaches_end)
  return {"inputs": example.inputs, "targets": example.targets, "weights": example.weights,
          "valid": np.float32(1.0)}


def token_dataset(stage: Stage, tokens_dir: str, split: str, *, seed: int,
                  train: bool) -> grain.MapDataset:
  """The *global* stream of training rows of `split` (the same on every process).

  Training: shuffled anew every epoch, repeated forever. Evaluation: one pass in order. Crops
  are drawn from (seed, position in the stream).
  """
  source = token_source(tokens_dir, split)
  if not len(source):
    raise ConfigError(f"token cache {tokens_dir}: split {split!r} is empty")
  _check_cache_fits(stage, source, f"token cache {tokens_dir} ({split})")
  _check_frame_ratio(stage, read_cache_info(tokens_dir).frame_ratio, tokens_dir)
  ds = grain.MapDataset.source(SafeSource(source, f"{tokens_dir}/{split}"))
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  rows = TokenRows(functools.partial(make_row, stage), functools.partial(invalid_example, stage),
                   f"{tokens_dir}/{split}")
  return ds.random_map(rows, seed=seed)


def _check_cache_fits(stage: Stage, source, where: str) -> None:
  """Turns a cache tokenized with other codebook sizes or fewer levels than `config.stage`
  into one clear error at start-up (rather than every record skipped with a warning)."""
  record = source[0]
  try:
    make_row(stage, record, np.random.default_rng(0))
  except AudioLMError as e:
    raise ConfigError(f"{where} does not fit config.stage ({type(stage).__name__}): {e}. Were "
                      "the tokens made with other codebook sizes or fewer RVQ levels?") from e


def _check_frame_ratio(stage: Stage, cache_ratio: int, tokens_dir: str) -> None:
  """The coarse layout's acoustic:semantic frame ratio must be the cache's, which the tokenizers
  set (`tokenize.ratio_of`): a 2:1 layout on 1:1 tokens would misalign every crop silently."""
  ratio = getattr(stage, "frames_per_semantic_frame", None)
  if ratio is None or getattr(stage, "acoustic_only", False) or ratio == cache_ratio:
    return
  raise ConfigError(
      f"token cache {tokens_dir} has {cache_ratio} codec frames per semantic frame, but "
      f"config.stage gives {ratio} ({stage.acoustic_rate} / {stage.semantic_rate} Hz): set "
      f"--config.stage.semantic_rate={stage.acoustic_rate // cache_ratio}")


# config.stage keys -> the CacheInfo field that holds them (each stage has some of them).
_CACHE_SIZES = {"codebook_size": "semantic_vocab_size",  # semantic_lm: K_s
                "semantic_codebook_size": "semantic_vocab_size",
                "acoustic_codebook_size": "acoustic_vocab_size"}


def sizes_from_cache(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Sets `config.stage`'s codebook sizes (and, for the fine stage, its number of levels: all
  of the codec's) from the token cache's recorded ones when `config.data.sizes_from_cache`;
  returns what changed. A cache that recorded no sizes (0) changes nothing."""
  data = config.data
  if not (data.get("sizes_from_cache") and data.get("tokens_dir")
          and has_token_cache(data.tokens_dir)):
    return {}
  info = read_cache_info(data.tokens_dir)
  wanted = {key: getattr(info, field) for key, field in _CACHE_SIZES.items()}
  if config.task == "fine_lm":
    wanted["num_quantizers"] = info.num_quantizers
  changed = {}
  for key, value in wanted.items():
    if key in config.stage and value and config.stage[key] != value:
      log.info("%s: stage.%s = %d from the token cache %s (was %d; "
               "--config.data.sizes_from_cache=false keeps the config's)", config.task, key,
               value, data.tokens_dir, config.stage[key])
      config.stage[key] = changed[key] = int(value)
  return changed


def distinct_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`mask [N, V]` as its distinct rows `[R, V]` and the row of each position `[N]`.

  A stage's logit mask has a handful of distinct rows (one per level, plus the conditioning
  ones), so the two are small constants for jit where the mask itself (up to 22 M entries at the
  paper's sizes) would not be.
  """
  row_ids: dict[bytes, int] = {}  # Numbered in order of first appearance.
  index = np.array([row_ids.setdefault(row.tobytes(), len(row_ids)) for row in mask], np.int32)
  _, first = np.unique(index, return_index=True)
  return mask[first], index


class StageLMTask(Task):
  """One AudioLM stage trained on a token cache (see the module docstring): `config.stage` is
  its layout, `config.model` its Transformer. The subclasses below are the registered tasks."""

  throughput_unit = "tokens"
  layout: type = SemanticStage  # The token layout this task trains (`lm.stages`).

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.task != self.name:
      raise ConfigError(f"config.task is {config.task!r}, but {type(self).__name__} trains "
                        f"{self.name!r}")
    sizes_from_cache(config)
    self.stage = stage_from_config(config, self.layout)
    self.model_config = transformer_config(config, self.stage)
    self.model = Transformer(self.model_config)
    self._mask_rows, self._mask_index = distinct_rows(self.stage.target_logit_mask())

  def _tokens_dir(self) -> str:
    tokens_dir = self.config.data.get("tokens_dir")
    if not tokens_dir:
      raise ConfigError(
          f"{self.config.task}: config.data.tokens_dir is not set. Pass "
          "--config.data.tokens_dir=DIR, a token cache of the corpus (semantic ids and "
          "acoustic codes), made by `audiolm-jax tokenize corpus ... --out DIR`.")
    return tokens_dir

  def make_iterator(self, split: str, process_index: int, process_count: int):
    data = self.config.data
    rows = self.rows_per_process(process_count)
    train = split == data.split
    ds = token_dataset(self.stage, self._tokens_dir(), split, seed=self.config.seed,
                       train=train)
    ds = process_rows(ds, rows=rows, process_index=process_index, process_count=process_count,
                      pad_example=invalid_example(self.stage))
    ds = ds.batch(rows, drop_remainder=True)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=data.num_threads,
                                                     prefetch_buffer_size=data.prefetch)))

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    n = self.stage.sequence_length
    return {"inputs": jax.ShapeDtypeStruct((batch_size, n), jnp.int32),
            "targets": jax.ShapeDtypeStruct((batch_size, n), jnp.int32),
            "weights": jax.ShapeDtypeStruct((batch_size, n), jnp.float32),
            "valid": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}

  def init(self, rng: jax.Array):
    # Parameter shapes do not depend on the length: one token is enough to create them.
    variables = self.model.init({"params": rng}, jnp.zeros((1, 1), jnp.int32))
    return variables["params"], {}  # Boxed with logical axis names (lm/transformer.py).

  def loss(self, params, extra, batch, rng, *, train: bool) -> LossOutput:
    del extra
    weights = batch["weights"] * batch["valid"][:, None]  # [B, N]
    span = self.stage.level_span()
    if span is None:  # Stage 1: every position over the whole (small) vocabulary.
      logits = self.model.apply({"params": params}, batch["inputs"], deterministic=not train,
                                rngs={"dropout": rng})  # [B, N, V] float32
      logit_mask = jnp.asarray(self._mask_rows)[jnp.asarray(self._mask_index)]  # [N, V]
      loss, metrics = weighted_cross_entropy(logits, batch["targets"], weights, logit_mask)
    else:
      loss, metrics = level_sliced_loss(self.model, params, batch["inputs"], batch["targets"],
                                        weights, span, train=train, rng=rng)
    return LossOutput(loss=loss, weight=metrics["tokens"],
                      metrics={"accuracy": metrics["accuracy"], "perplexity": jnp.exp(loss)})

  def units_per_example(self, batch_spec: Mapping[str, jax.ShapeDtypeStruct]) -> float:
    return float(batch_spec["inputs"].shape[1])

  def flops_per_example(self) -> float:
    """Useful forward + backward model FLOPs of one sequence (`stage_flops`)."""
    return stage_flops(self.model_config, self.stage)


@register("semantic_lm")
class SemanticLMTask(StageLMTask):
  """Stage 1: `p(s_t | s_<t)` over deduplicated semantic tokens (`lm.stages.SemanticStage`).

  Records `config.data.frames_per_token` (L, raw frames per deduplicated token of the cache's
  training split) when it is 0, before the trainer saves the config: generation needs it to
  size its windows and lay the generated tokens out in time (`lm/generate.py`).
  """
  layout = SemanticStage

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    data = config.data
    if ("frames_per_token" in data and not data.frames_per_token and data.get("tokens_dir")
        and has_token_cache(data.tokens_dir)):
      per_token = read_cache_info(data.tokens_dir).frames_per_token.get(data.split)
      if per_token:
        data.frames_per_token = float(per_token)
        log.info("semantic_lm: %.3f raw frames per deduplicated token in %s/%s",
                 per_token, data.tokens_dir, data.split)


@register("coarse_lm")
class CoarseLMTask(StageLMTask):
  """Stage 2: coarse acoustic tokens given the semantic tokens (`lm.stages.CoarseStage`), or given
  nothing with `config.stage.acoustic_only` (the paper's acoustic-only ablation)."""
  layout = CoarseStage


@register("fine_lm")
class FineLMTask(StageLMTask):
  """Stage 3: fine acoustic tokens given the coarse ones, 3 s chunks (`lm.stages.FineStage`)."""
  layout = FineStage
