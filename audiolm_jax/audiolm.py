"""The AudioLM pipeline: prompt audio -> semantic -> coarse -> fine tokens -> audio.

    lm = AudioLM.from_run_dir("runs/demo")            # codec, tokenizer and three stages
    out = lm.generate(prompt_wav, seconds=10.0, rng=jax.random.key(0))
    out.audio        # float32 [B, S]: the prompt's reconstruction, then the continuation
    out.semantic     # int32 [B, T25]   (prompt ids first, unchanged)
    out.coarse       # int32 [B, T50, Q']
    out.fine         # int32 [B, T50, Q - Q']

Frames: a clip of S samples has T25 = ceil(S / 640) semantic frames and exactly T50 = 2 * T25
acoustic frames: the codec tokenizes the clip padded to a multiple of 640 samples
(`semantic.tokenizer.pad_to_frames`), so the two token streams always line up.

Conditioning, as in the paper: the prompt's semantic ids are the semantic stage's prefix; the
coarse stage sees all semantic ids (prompt + generated) and the prompt's coarse codes as its
prefix; the fine stage sees all coarse codes and keeps the prompt's fine codes. With no prompt
the generation is unconditional. `acoustic_only=True` is the paper's ablation: no semantic
stage, the coarse LM (trained with `stage.acoustic_only`) continues the prompt's coarse codes.

A run directory holds one subdirectory per trained part (names in `PARTS`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from audiolm_jax.errors import CheckpointError, ConfigError

# Subdirectories of a run directory.
PARTS = {"codec": "codec", "w2v_bert": "w2v_bert", "semantic_tokenizer": "semantic_tokenizer",
         "semantic_lm": "semantic_lm", "coarse_lm": "coarse_lm", "fine_lm": "fine_lm"}


@dataclasses.dataclass
class StageModel:
  """A trained stage: its resolved config and parameters (numpy or device arrays)."""
  config: ml_collections.ConfigDict
  params: Any


@dataclasses.dataclass
class Generation:
  audio: np.ndarray           # [B, S] float32
  semantic: np.ndarray | None  # [B, T25]
  coarse: np.ndarray           # [B, T50, Q']
  fine: np.ndarray             # [B, T50, Q - Q']
  prompt_samples: int          # samples of the prompt (0 when unconditional)
  sample_rate: int


def load_stage(workdir: str) -> StageModel:
  """The latest checkpoint's parameters and config from a stage's training workdir."""
  from audiolm_jax.train.checkpoint import find_step_dir, read_config, read_numpy
  step_dir = find_step_dir(workdir)
  config = read_config(step_dir)
  if config is None:
    raise CheckpointError(f"{step_dir}: no config saved with the checkpoint")
  params = read_numpy(step_dir, ("params",)).get("params")
  if params is None:
    raise CheckpointError(f"{step_dir}: the checkpoint holds no params")
  return StageModel(ml_collections.ConfigDict(config), params)


class AudioLM:
  """The three-stage hierarchy with its tokenizers (see the module docstring)."""

  def __init__(self, codec, semantic_tokenizer, semantic_lm: StageModel | None,
               coarse_lm: StageModel, fine_lm: StageModel):
    self.codec = codec
    self.semantic_tokenizer = semantic_tokenizer
    self.semantic_lm = semantic_lm
    self.coarse_lm = coarse_lm
    self.fine_lm = fine_lm
    self.acoustic_only = bool(coarse_lm.config.stage.get("acoustic_only", False))
    if not self.acoustic_only and (semantic_lm is None or semantic_tokenizer is None):
      raise ConfigError("a semantic LM and tokenizer are needed unless the coarse LM was "
                        "trained with stage.acoustic_only")
    q_coarse = int(coarse_lm.config.stage.num_coarse)
    if codec.num_quantizers < q_coarse:
      raise ConfigError(f"the codec has {codec.num_quantizers} levels, the coarse stage "
                        f"models {q_coarse}")

  @classmethod
  def from_run_dir(cls, run_dir: str, parts: dict[str, str] | None = None) -> "AudioLM":
    """Loads every part from `run_dir/<part>` (or the paths given in `parts`)."""
    from audiolm_jax.codec.task import load_codec
    from audiolm_jax.semantic.task import load_semantic_tokenizer
    paths = {k: os.path.join(run_dir, v) for k, v in PARTS.items()}
    paths.update(parts or {})
    coarse = load_stage(paths["coarse_lm"])
    acoustic_only = bool(coarse.config.stage.get("acoustic_only", False))
    semantic_lm = tokenizer = None
    if not acoustic_only:
      semantic_lm = load_stage(paths["semantic_lm"])
      tokenizer = load_semantic_tokenizer(paths["semantic_tokenizer"], paths["w2v_bert"])
    return cls(load_codec(paths["codec"]), tokenizer, semantic_lm, coarse,
               load_stage(paths["fine_lm"]))

  @property
  def sample_rate(self) -> int:
    return int(self.codec.sample_rate)

  def tokenize(self, wav: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """wav [B, S] -> (semantic [B, T25] or None, acoustic codes [B, 2*T25, Q])."""
    from audiolm_jax.codec.task import tokenize_for_lm
    wav = np.asarray(wav, np.float32)
    codes = np.asarray(tokenize_for_lm(self.codec, wav))
    semantic = None
    if self.semantic_tokenizer is not None and not self.acoustic_only:
      semantic = np.asarray(self.semantic_tokenizer.tokenize(wav))
      if codes.shape[1] != 2 * semantic.shape[1]:
        raise ConfigError(f"{codes.shape[1]} acoustic frames for {semantic.shape[1]} semantic "
                          "frames: the codec and the tokenizer disagree on frame rates")
    return semantic, codes

  def generate(self, prompt_wav: np.ndarray | None = None, *, seconds: float = 10.0,
               rng: jax.Array, batch_size: int = 1,
               progress: Callable[[str], None] | None = None) -> Generation:
    """Continues `prompt_wav` ([S] or [B, S], at the codec's rate) to `seconds` in all, or
    generates `batch_size` clips unconditionally when `prompt_wav` is None."""
    from audiolm_jax.lm import generate as gen
    from audiolm_jax.semantic.tokenizer import num_frames
    say = progress or (lambda msg: None)
    total_t25 = num_frames(int(round(seconds * self.sample_rate)))
    total_t50 = 2 * total_t25
    q_coarse = int(self.coarse_lm.config.stage.num_coarse)
    rng_s, rng_c, rng_f = jax.random.split(rng, 3)

    prompt_semantic = prompt_codes = None
    prompt_samples = 0
    if prompt_wav is not None:
      prompt_wav = np.asarray(prompt_wav, np.float32)
      prompt_wav = prompt_wav[None] if prompt_wav.ndim == 1 else prompt_wav
      batch_size = prompt_wav.shape[0]
      prompt_samples = prompt_wav.shape[1]
      say("tokenizing the prompt")
      prompt_semantic, prompt_codes = self.tokenize(prompt_wav)
      if prompt_codes.shape[1] >= total_t50:
        raise ConfigError(f"the prompt ({prompt_samples / self.sample_rate:.1f} s) is not "
                          f"shorter than the requested {seconds} s")

    q_all = self.num_levels
    empty = np.zeros((batch_size, 0), np.int32)
    semantic = None
    if not self.acoustic_only:
      say("stage 1: semantic tokens")
      semantic = gen.generate_semantic(
          self.semantic_lm.params, self.semantic_lm.config,
          empty if prompt_semantic is None else prompt_semantic, total_t25, rng_s)
    say("stage 2: coarse acoustic tokens")
    coarse = gen.generate_coarse(
        self.coarse_lm.params, self.coarse_lm.config, semantic,
        np.zeros((batch_size, 0, q_coarse), np.int32) if prompt_codes is None
        else prompt_codes[..., :q_coarse], total_t50, rng_c)
    say("stage 3: fine acoustic tokens")
    codes = gen.generate_fine(
        self.fine_lm.params, self.fine_lm.config, coarse,
        None if prompt_codes is None else prompt_codes[..., :q_all], rng_f)  # [B, T50, Q]
    say("decoding audio")
    audio = np.asarray(self.codec.decode(codes), np.float32)
    fine = codes[..., q_coarse:]
    return Generation(audio=audio, semantic=semantic, coarse=coarse, fine=fine,
                      prompt_samples=prompt_samples, sample_rate=self.sample_rate)

  @property
  def num_levels(self) -> int:
    """Levels the fine stage models in all (coarse + fine): at most the codec's."""
    return int(self.fine_lm.config.stage.num_quantizers)
