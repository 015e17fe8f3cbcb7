"""One checked loader for every trained part, and the builders that rebuild a model from the
config saved with its weights.

    codec = load_codec("runs/codec")                    # soundstream.Codec
    w2v = load_w2v_bert("runs/w2v_bert")                # TrainedW2VBert (feature extractor)
    tokenizer = load_semantic_tokenizer("runs/semantic_tokenizer")   # finds its w2v-BERT
    stage = load_stage("runs/coarse_lm")                # TrainedStage: layout, model, params
    storm = load_soundstorm("runs/soundstorm")          # TrainedSoundStorm: model, params
    detector = load_detector("runs/detector")           # eval.detector.Detector: P(generated)

Every loader follows one skeleton (`_open` then `_read`): find the checkpoint (a workdir, its
`checkpoints/` or a step directory), read the config saved with it, check that it is a
checkpoint of the expected task, rebuild the model from that config, take its parameter tree
by `jax.eval_shape` (no computation), and read exactly those arrays (the EMA when the run kept
one) as numpy, checking every path and shape. Whatever is wrong is one `CheckpointError`
line naming the directory. Nothing here imports the trainer, an optimizer or a data loader.

The builders (`stage_from_config`, `transformer_config`) are what training uses too: a stage
run's config is its layout (`config.stage`) and its Transformer (`config.model`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from audiolm_jax import checkpoint_files as files
from audiolm_jax import paths
from audiolm_jax.codec.config import CodecConfig
from audiolm_jax.codec.soundstream import Codec, SoundStream
from audiolm_jax.errors import CheckpointError, ConfigError
from audiolm_jax.eval import detector as detector_lib
from audiolm_jax.lm.soundstorm import SoundStorm, SoundStormLayout
from audiolm_jax.lm.soundstorm import model_config as soundstorm_config
from audiolm_jax.lm.soundstorm_sampling import Schedule, schedule_from_config
from audiolm_jax.lm.stages import CoarseStage, FineStage, SemanticStage, Stage
from audiolm_jax.lm.transformer import CachedLogits, Transformer, TransformerConfig
from audiolm_jax.quantization.rvq import VQ_STATS
from audiolm_jax.semantic.tokenizer import (META_FILE, FeatureExtractor, SemanticTokenizer,
                                            mfcc_extractor)
from audiolm_jax.semantic.w2v_bert import W2VBert, W2VBertConfig, feature_extractor

log = logging.getLogger(__name__)

PyTree = Any
# The layout of each stage task.
STAGE_LAYOUTS = {"semantic_lm": SemanticStage, "coarse_lm": CoarseStage, "fine_lm": FineStage}
FIT_INFO_FILE = "fit_info.json"  # Next to a tokenizer: what it was fit on, and how.


# --------------------------------------------------------------------------- the skeleton


@dataclasses.dataclass(frozen=True)
class _Checkpoint:
  step_dir: str
  step: int
  config: dict[str, Any]


def _open(path: str, tasks: tuple[str, ...], what: str) -> _Checkpoint:
  """The latest checkpoint under `path`, checked to be one of `tasks`."""
  step_dir = files.find_step_dir(path)
  config = files.read_config(step_dir)
  if config is None:
    raise CheckpointError(f"{step_dir}: no config saved with the checkpoint")
  if config.get("task") not in tasks:
    raise CheckpointError(f"{step_dir}: a {config.get('task')!r} checkpoint, not {what}")
  return _Checkpoint(step_dir, int(os.path.basename(step_dir)), config)


def skeleton(init: Callable[..., PyTree], *example_inputs) -> PyTree:
  """The variables `init(key, *example_inputs)` would make, as shapes only (unboxed)."""
  return nn.unbox(jax.eval_shape(init, jax.random.key(0), *example_inputs))


def _read(ckpt: _Checkpoint, expected: Mapping[str, PyTree]) -> tuple[dict[str, PyTree], str]:
  """`({"params": ..., and extra subtrees}, field)` as numpy arrays, checked against `expected`.

  `expected["params"]` is read from `ema_params` when the run kept an EMA (`field` says which);
  every other key `k` of `expected` from `extra/k`. Only those arrays are read, and they are
  checked against the checksums saved with them.
  """
  saved_state = files.saved_tree(ckpt.step_dir)
  field = "ema_params" if jax.tree.leaves(saved_state.get("ema_params")) else "params"
  saved = {"params": saved_state.get(field) or {}}
  for k in expected:
    if k != "params":
      saved[k] = (saved_state.get("extra") or {}).get(k) or {}
  files.check_tree(ckpt.step_dir, saved, dict(expected), f"the saved {field}",
                   "the model config saved with it")
  arrays = files.read_arrays(ckpt.step_dir, saved)
  for k, tree in arrays.items():  # Damaged files fail here, not as noise later.
    files.verify(ckpt.step_dir, tree, prefix=field if k == "params" else f"extra/{k}")
  return arrays, field


def _model_config(ckpt: _Checkpoint, build: Callable[[], Any]):
  try:
    return build()
  except (ConfigError, KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f"{ckpt.step_dir}: its model config is invalid: {e}") from e


# --------------------------------------------------------------------------- codec


def load_codec(path: str, dtype: str = "float32") -> Codec:
  """The codec of a `codec` run: generator (its EMA if kept) and codebooks, numpy on the host.

  Args:
    path: a `codec` training workdir, its `checkpoints/` directory or one step directory.
    dtype: the conv computation dtype of the returned codec ("float32" or "bfloat16").
  """
  ckpt = _open(path, ("codec",), "a codec")
  config = _model_config(ckpt, lambda: dataclasses.replace(
      CodecConfig.from_dict(ckpt.config["model"]), dtype=dtype))
  expected = skeleton(SoundStream(config).init, jnp.zeros((1, config.hop_length), jnp.float32))
  variables, field = _read(ckpt, expected)
  if not bool(variables[VQ_STATS]["quantizer"]["initialized"]):
    raise CheckpointError(f"{ckpt.step_dir}: the codebooks were never trained (no training "
                          "step ran before this checkpoint)")
  log.info("codec: %s + %s of step %d from %s", field, VQ_STATS, ckpt.step, ckpt.step_dir)
  return Codec(config=config, variables=variables)


# --------------------------------------------------------------------------- w2v-BERT


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
    """SHA-256 of `params` (`checkpoint_files.param_fingerprint`): which weights these are."""
    return files.param_fingerprint(self.params)


def load_w2v_bert(path: str) -> TrainedW2VBert:
  """The w2v-BERT of a `w2v_bert` run (its EMA if kept), numpy on the host."""
  ckpt = _open(path, ("w2v_bert",), "w2v_bert")
  config = _model_config(ckpt, lambda: W2VBertConfig.from_config(ckpt.config["model"],
                                                                 dtype="float32"))
  expected = skeleton(W2VBert(config).init, jnp.zeros((1, 4 * config.samples_per_frame)))
  variables, field = _read(ckpt, {"params": expected["params"]})
  log.info("w2v-BERT: %s of step %d from %s", field, ckpt.step, ckpt.step_dir)
  return TrainedW2VBert(config=config, params=variables["params"], step=ckpt.step,
                        step_dir=ckpt.step_dir, run_config=ml_collections.ConfigDict(ckpt.config))


# --------------------------------------------------------------------------- semantic tokenizer


def save_tokenizer(tokenizer: SemanticTokenizer, directory: str, info: Mapping[str, Any]) -> None:
  """The tokenizer's arrays (`SemanticTokenizer.save`) and `fit_info.json` with `info`
  (`features`, `layer`, and for w2v-BERT features its `checkpoint`, `step`, `fingerprint`)."""
  tokenizer.save(directory)
  (paths.resolve(directory) / FIT_INFO_FILE).write_text(json.dumps(dict(info), indent=2))


def _features_of(directory: str) -> tuple[str, int | None, int | None]:
  """`(features, layer, samples_per_frame)` a tokenizer directory was fit on: from
  `fit_info.json`, or from what `semantic_tokenizer.json` records (tokenizers saved by the API)."""
  meta_path = paths.resolve(directory) / META_FILE
  if not meta_path.is_file():
    raise CheckpointError(f"{directory}: no semantic tokenizer here (expected {META_FILE}; "
                          "fit one with `audiolm-jax tokenize fit-kmeans`)")
  try:
    meta = json.loads(meta_path.read_text())
    info_path = meta_path.parent / FIT_INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{directory}: unreadable tokenizer metadata ({e})") from e
  spf = meta.get("samples_per_frame")
  if "features" in info:
    return info["features"], info.get("layer"), spf
  name = meta.get("features", "")
  match = re.fullmatch(r"w2v_bert/mlm_layer_(\d+)", name)
  if match:
    return "w2v_bert", int(match.group(1)), spf
  if name.startswith("mfcc/"):
    return "mfcc", None, spf
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
  """
  features, layer, spf = _features_of(directory)
  if features == "mfcc":
    return SemanticTokenizer.load(directory, mfcc_extractor(**(
        {"samples_per_frame": spf} if spf else {})))
  info_path = paths.resolve(directory) / FIT_INFO_FILE
  recorded = {}
  if info_path.is_file():
    recorded = json.loads(info_path.read_text()).get("w2v_bert") or {}
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


# --------------------------------------------------------------------------- stages


def stage_from_config(config: Mapping[str, Any], layout: type | None = None) -> Stage:
  """The token layout of a stage run: `config.stage`'s fields for `layout` (default: the
  layout of `config.task`)."""
  layout = layout or STAGE_LAYOUTS.get(config["task"])
  if layout is None:
    raise ConfigError(f"task {config['task']!r} is not an LM stage; known: "
                      f"{sorted(STAGE_LAYOUTS)}")
  fields = dict(config["stage"])
  unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(layout)})
  if unknown:
    raise ConfigError(f"stage fields {unknown} are unknown to {layout.__name__}")
  return layout(**fields)


def transformer_config(config: Mapping[str, Any], stage: Stage | None = None
                       ) -> TransformerConfig:
  """The Transformer of a stage run: `config.model`, the computation dtype
  `config.compute_dtype`, and what the layout (`stage`, default that of the config) decides:
  vocabulary size, pad id, and the training sequence length as default cache length."""
  stage = stage or stage_from_config(config)
  try:
    return TransformerConfig.from_dict(config["model"], vocab_size=stage.vocab_size,
                                       pad_id=stage.pad_id, max_len=stage.sequence_length,
                                       dtype=config.get("compute_dtype", "float32"))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"model: {e}") from e


@dataclasses.dataclass(frozen=True)
class TrainedStage:
  """A trained stage LM: its run config, layout, Transformer and parameters.

  Attributes:
    config: the run's resolved config (`task`, `stage`, `model`, ...).
    stage: the token layout (`lm.stages`).
    model: the Transformer, in float32 computation unless the caller asked otherwise.
    params: the parameters (numpy, or device arrays).
    step_dir: where they were read ("" when built in memory).
  """
  config: ml_collections.ConfigDict
  stage: Stage
  model: Transformer
  params: Any
  step_dir: str = ""

  @functools.cached_property
  def logits_fn(self) -> CachedLogits:
    """The sampler's `tokens_to_logits` (one per stage: compiled sampling code is shared)."""
    return CachedLogits(self.model)

  @classmethod
  def from_config(cls, config: Mapping[str, Any], params: Any, step_dir: str = "",
                  dtype: str | None = None) -> TrainedStage:
    """A stage from a run config and its parameters (e.g. a `TrainState.params`)."""
    config = ml_collections.ConfigDict(dict(config))
    if dtype is not None:
      config.compute_dtype = dtype
    stage = stage_from_config(config)
    return cls(config, stage, Transformer(transformer_config(config, stage)), params, step_dir)


def load_stage(path: str, task: str | None = None, dtype: str = "float32") -> TrainedStage:
  """A trained stage LM (its EMA if kept), numpy on the host.

  Args:
    path: a stage run's workdir, its `checkpoints/` directory or one step directory.
    task: "semantic_lm", "coarse_lm" or "fine_lm" to insist on one (default: any).
    dtype: the Transformer's computation dtype.
  """
  tasks = (task,) if task else tuple(STAGE_LAYOUTS)
  ckpt = _open(path, tasks, " or ".join(tasks))
  trained = _model_config(ckpt, lambda: TrainedStage.from_config(ckpt.config, None,
                                                                 ckpt.step_dir, dtype))
  expected = skeleton(trained.model.init, jnp.zeros((1, 1), jnp.int32))
  variables, field = _read(ckpt, {"params": expected["params"]})
  log.info("%s: %s of step %d from %s", ckpt.config["task"], field, ckpt.step, ckpt.step_dir)
  return dataclasses.replace(trained, params=variables["params"])


# --------------------------------------------------------------------------- SoundStorm


@dataclasses.dataclass(frozen=True)
class TrainedSoundStorm:
  """A trained SoundStorm (`lm/soundstorm.py`): its run config, model and parameters.

  Attributes:
    config: the run's resolved config (`task`, `stage`, `model`, `sampling`, ...).
    model: the SoundStorm module, in float32 computation unless the caller asked otherwise.
    params: the parameters (numpy, or device arrays).
    step_dir: where they were read ("" when built in memory).
  """
  config: ml_collections.ConfigDict
  model: SoundStorm
  params: Any
  step_dir: str = ""

  @property
  def layout(self) -> SoundStormLayout:
    return self.model.config.layout

  def schedule(self, temperature: float | None = None) -> Schedule:
    """The sampling plan of the run's `sampling` keys (`temperature` overrides its own)."""
    return schedule_from_config(self.config, self.layout.num_quantizers, temperature)

  @classmethod
  def from_config(cls, config: Mapping[str, Any], params: Any, step_dir: str = "",
                  dtype: str | None = None) -> TrainedSoundStorm:
    """A SoundStorm from a run config and its parameters (e.g. a `TrainState.params`)."""
    config = ml_collections.ConfigDict(dict(config))
    if dtype is not None:
      config.compute_dtype = dtype
    return cls(config, SoundStorm(soundstorm_config(config)), params, step_dir)


def load_soundstorm(path: str, dtype: str = "float32") -> TrainedSoundStorm:
  """A trained SoundStorm (its EMA if kept), numpy on the host.

  Args:
    path: a `soundstorm` run's workdir, its `checkpoints/` directory or one step directory.
    dtype: the conformer's computation dtype.
  """
  ckpt = _open(path, ("soundstorm",), "a soundstorm")
  trained = _model_config(ckpt, lambda: TrainedSoundStorm.from_config(ckpt.config, None,
                                                                      ckpt.step_dir, dtype))
  layout = trained.layout
  expected = skeleton(trained.model.init, jnp.zeros((1, 1), jnp.int32),
                      jnp.zeros((1, layout.frame_ratio, layout.num_quantizers), jnp.int32))
  variables, field = _read(ckpt, {"params": expected["params"]})
  log.info("soundstorm: %s of step %d from %s", field, ckpt.step, ckpt.step_dir)
  return dataclasses.replace(trained, params=variables["params"])


# --------------------------------------------------------------------------- detector


def load_detector(path: str) -> detector_lib.Detector:
  """The classifier of a `detector` run (its EMA if kept), numpy on the host, computing in
  float32: `.probability(wav, sample_rate)` is P(generated).

  Args:
    path: a `detector` run's workdir, its `checkpoints/` directory or one step directory.
  """
  ckpt = _open(path, (detector_lib.TASK,), "a detector")
  config = _model_config(ckpt, lambda: detector_lib.DetectorConfig.from_config(
      ckpt.config["model"], dtype="float32"))
  expected = {"params": skeleton(lambda key: detector_lib.init_params(config, key))}
  variables, field = _read(ckpt, expected)
  log.info("detector: %s of step %d from %s", field, ckpt.step, ckpt.step_dir)
  return detector_lib.Detector(config=config, params=variables["params"], step=ckpt.step,
                               step_dir=ckpt.step_dir)
