"""The AudioLM pipeline: prompt audio -> semantic -> coarse -> fine tokens -> audio.

    lm = AudioLM.from_run_dir("runs/demo")            # codec, tokenizer and three stages
    audio = lm.generate_continuation(prompt, prompt_sample_rate=44100, seconds=10.0)
    audio = lm.generate_unconditional(seconds=5.0, num_samples=4, temperature=0.7)

The two calls above are the short API: any prompt rate (resampled), sampling settings for all
stages or per stage (`temperature={"semantic": 0.6, "coarse": 0.8}`), a seed, an optional
progress display, audio back (or everything with `return_tokens=True`). Underneath:

    out = lm.generate(prompt_wav, seconds=10.0, rng=jax.random.key(0))   # at lm.sample_rate
    out.audio             # float32 [B, S]: the prompt's reconstruction, then the continuation
    out.semantic          # int32 [B, T]: semantic ids on the raw-frame timeline (prompt first)
    out.semantic_tokens   # int32 [B, n]: the generated deduplicated tokens
    out.coarse            # int32 [B, r T, Q']
    out.fine              # int32 [B, r T, Q - Q']
    out.continuation_start  # the sample where generated audio begins (a frame edge)
    audio = lm.acoustic_from_semantic(ids, rng=k).audio   # stages 2 + 3 alone (Table II)

Frames (`audiolm_jax.frames`): a clip of S samples has T = ceil(S / spf) semantic frames (spf:
the tokenizer's samples per frame, 640 = 25 Hz) and r T codec frames, r = spf / (codec hop),
read from the two tokenizers (2 for SoundStream and 25 Hz tokens, 1 for a 50 Hz semantic
model). The codec tokenizes the clip padded to a whole number of semantic frames, so the two
token streams always line up.

Conditioning, as in the paper: the prompt's semantic ids are the semantic stage's prefix; the
coarse stage sees the semantic ids of each window's span (the prompt's, then the generated
tokens laid out in time as training saw them, `lm.generate.semantic_timeline`) and the
prompt's coarse codes as its prefix; the fine stage sees all coarse codes and keeps the
prompt's fine codes. With no prompt the generation is unconditional. `acoustic_only` is the
paper's ablation: no semantic stage, the coarse LM (trained with `stage.acoustic_only`)
continues the prompt's coarse codes.

SoundStorm in place of stages 2 + 3 (`acoustic="soundstorm"`, `lm/soundstorm.py`): one model
makes every acoustic level from the semantic timeline, level by level in parallel, keeping the
prompt's codes; it draws with the `coarse` settings' temperature (top-k / top-p do not apply).
Its `Generation.coarse` then holds every level it made and `fine` is empty.

    lm = AudioLM.from_run_dir("runs/demo", acoustic="soundstorm")   # runs/demo/soundstorm

A run directory holds one subdirectory per trained part (names in `PARTS`). Inference imports
no optimizer, data pipeline or trainer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import jax
import numpy as np

from audiolm_jax import pretrained, tokenize
from audiolm_jax.data.audio import resample
from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.frames import SAMPLES_PER_FRAME, num_frames
from audiolm_jax.lm import generate as gen
from audiolm_jax.lm import soundstorm_sampling
from audiolm_jax.lm.stages import remove_consecutive_duplicates

log = logging.getLogger(__name__)

# Subdirectories of a run directory.
PARTS = {"codec": "codec", "w2v_bert": "w2v_bert", "semantic_tokenizer": "semantic_tokenizer",
         "semantic_lm": "semantic_lm", "coarse_lm": "coarse_lm", "fine_lm": "fine_lm"}
SOUNDSTORM_PART = "soundstorm"  # The SoundStorm's subdirectory (used with acoustic="soundstorm").
ACOUSTIC = ("stages", "soundstorm")  # What makes the acoustic tokens: stages 2 + 3 or SoundStorm.


STAGES = ("semantic", "coarse", "fine")


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How one stage draws its tokens.

  temperature: None = the stage's own (paper: 0.6 semantic, 0.8 coarse, 0.6 fine); 0 = greedy.
  top_k: keep the k most likely ids (0 = off). top_p: nucleus mass (1.0 = off).
  """
  temperature: float | None = None
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    t, k, p = self.temperature, self.top_k, self.top_p
    if t is not None and not (isinstance(t, (int, float)) and np.isfinite(t) and t >= 0):
      raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
      raise ConfigError(f"top_k must be an integer >= 0 (0 = off), got {k!r}")
    if not (isinstance(p, (int, float)) and 0 < p <= 1):
      raise ConfigError(f"top_p must be in (0, 1] (1 = off), got {p!r}")


def sampling_per_stage(temperature=None, top_k=0, top_p=1.0) -> dict[str, Sampling]:
  """`{stage: Sampling}` from one value for every stage or a dict per stage (a stage left out
  of a dict keeps the default), e.g. `sampling_per_stage(temperature={"coarse": 0.9}, top_k=50)`."""
  values = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
  defaults = {"temperature": None, "top_k": 0, "top_p": 1.0}
  for name, value in values.items():
    if isinstance(value, dict) and set(value) - set(STAGES):
      raise ConfigError(f"{name}: stages are {', '.join(STAGES)}, got "
                        f"{', '.join(sorted(set(value) - set(STAGES)))}")
  return {stage: Sampling(**{name: (value.get(stage, defaults[name]) if isinstance(value, dict)
                                    else value) for name, value in values.items()})
          for stage in STAGES}


@dataclasses.dataclass
class Generation:
  """What `AudioLM.generate` returns (see the module docstring)."""
  audio: np.ndarray                    # [B, S] float32
  semantic: np.ndarray | None          # [B, T]
  semantic_tokens: np.ndarray | None   # [B, n]
  coarse: np.ndarray                   # [B, r T, Q'] (SoundStorm: [B, r T, Q], every level)
  fine: np.ndarray                     # [B, r T, Q - Q'] (SoundStorm: [B, r T, 0])
  prompt_samples: int                  # samples of the prompt (0 when unconditional)
  prompt_frames: int                   # its semantic frames (the prompt's codes cover them)
  continuation_start: int              # first generated sample: prompt_frames * spf
  sample_rate: int


def frames_per_token(semantic_lm: pretrained.TrainedStage,
                     prompt_ids: np.ndarray | None = None) -> float:
  """L, raw frames per deduplicated token, as recorded from the training cache in the
  semantic LM's config (`data.frames_per_token`). A run trained before it was recorded falls
  back to the prompt's own rate (or 1.0 without a prompt), with a warning."""
  value = float(semantic_lm.config.data.get("frames_per_token", 0.0) or 0.0)
  if value >= 1.0:
    return value
  estimate = 1.0
  if prompt_ids is not None and prompt_ids.size:
    estimate = float(np.mean([len(r) / max(1, len(remove_consecutive_duplicates(r)))
                              for r in prompt_ids]))
  log.warning("the semantic LM records no data.frames_per_token; using %.3f", estimate)
  return max(1.0, estimate)


class AudioLM:
  """The three-stage hierarchy with its tokenizers (see the module docstring); with a
  `soundstorm`, stage 1 + SoundStorm (`coarse_lm` and `fine_lm` may then be None)."""

  def __init__(self, codec, semantic_tokenizer, semantic_lm: pretrained.TrainedStage | None,
               coarse_lm: pretrained.TrainedStage | None,
               fine_lm: pretrained.TrainedStage | None,
               soundstorm: pretrained.TrainedSoundStorm | None = None):
    self.codec = codec
    self.semantic_tokenizer = semantic_tokenizer
    self.semantic_lm = semantic_lm
    self.coarse_lm = coarse_lm
    self.fine_lm = fine_lm
    self.soundstorm = soundstorm
    self.acoustic = "stages" if soundstorm is None else "soundstorm"
    if soundstorm is None and (coarse_lm is None or fine_lm is None):
      raise ConfigError("a coarse and a fine LM are needed unless a SoundStorm makes the "
                        "acoustic tokens")
    self.acoustic_only = soundstorm is None and bool(coarse_lm.stage.acoustic_only)
    if not self.acoustic_only and (semantic_lm is None or semantic_tokenizer is None):
      raise ConfigError("a semantic LM and tokenizer are needed unless the coarse LM was "
                        "trained with stage.acoustic_only")
    levels = self.num_levels if soundstorm is not None else coarse_lm.stage.num_coarse
    if codec.num_quantizers < levels:
      raise ConfigError(f"the codec has {codec.num_quantizers} levels, the "
                        f"{'SoundStorm' if soundstorm else 'coarse stage'} models {levels}")
    self.samples_per_frame = (semantic_tokenizer.samples_per_frame
                              if semantic_tokenizer is not None else SAMPLES_PER_FRAME)
    self.frame_ratio = tokenize.ratio_of(codec, self.samples_per_frame)
    trained_ratio = (soundstorm.layout.frame_ratio if soundstorm is not None
                     else coarse_lm.stage.frames_per_semantic_frame)
    if not self.acoustic_only and trained_ratio != self.frame_ratio:
      raise ConfigError(
          f"the {self.acoustic} model was trained with {trained_ratio} codec frames per "
          f"semantic frame; this codec and tokenizer give {self.frame_ratio}")
    if soundstorm is not None and (soundstorm.layout.acoustic_codebook_size
                                   != codec.config.codebook_size):
      raise ConfigError(f"the SoundStorm models {soundstorm.layout.acoustic_codebook_size} "
                        f"codes per level, the codec has {codec.config.codebook_size}")

  @classmethod
  def from_parts(cls, *, codec: str, coarse_lm: str, fine_lm: str, semantic_lm: str | None = None,
                 semantic_tokenizer: str | None = None, w2v_bert: str | None = None) -> AudioLM:
    """Loads each part from its own workdir (or checkpoint step directory). `semantic_lm`,
    `semantic_tokenizer` and `w2v_bert` (unless the tokenizer uses MFCC features) are needed
    unless the coarse LM is acoustic-only."""
    coarse = pretrained.load_stage(coarse_lm, "coarse_lm")
    lm = tokenizer = None
    if not coarse.stage.acoustic_only:
      if not semantic_lm or not semantic_tokenizer:
        raise ConfigError("from_parts: semantic_lm and semantic_tokenizer are needed unless "
                          "the coarse LM was trained with stage.acoustic_only")
      lm = pretrained.load_stage(semantic_lm, "semantic_lm")
      tokenizer = pretrained.load_semantic_tokenizer(semantic_tokenizer, w2v_bert)
    return cls(pretrained.load_codec(codec), tokenizer, lm, coarse,
               pretrained.load_stage(fine_lm, "fine_lm"))

  @classmethod
  def from_run_dir(cls, run_dir: str, parts: dict[str, str] | None = None,
                   acoustic: str = "stages") -> AudioLM:
    """Loads every part from `run_dir/<part>` (or the paths given in `parts`). `acoustic`:
    "stages" (coarse + fine LMs) or "soundstorm" (`run_dir/soundstorm`, or
    `parts["soundstorm"]`, in their place)."""
    if acoustic not in ACOUSTIC:
      raise ConfigError(f"acoustic must be one of {', '.join(ACOUSTIC)}, got {acoustic!r}")
    paths = {k: os.path.join(run_dir, v) for k, v in PARTS.items()}
    paths[SOUNDSTORM_PART] = os.path.join(run_dir, SOUNDSTORM_PART)
    paths.update(parts or {})
    if acoustic == "soundstorm":
      return cls(pretrained.load_codec(paths["codec"]),
                 pretrained.load_semantic_tokenizer(paths["semantic_tokenizer"],
                                                    paths["w2v_bert"]),
                 pretrained.load_stage(paths["semantic_lm"], "semantic_lm"), None, None,
                 soundstorm=pretrained.load_soundstorm(paths[SOUNDSTORM_PART]))
    coarse = pretrained.load_stage(paths["coarse_lm"], "coarse_lm")
    semantic_lm = tokenizer = None
    if not coarse.stage.acoustic_only:
      semantic_lm = pretrained.load_stage(paths["semantic_lm"], "semantic_lm")
      tokenizer = pretrained.load_semantic_tokenizer(paths["semantic_tokenizer"],
                                                     paths["w2v_bert"])
    return cls(pretrained.load_codec(paths["codec"]), tokenizer, semantic_lm, coarse,
               pretrained.load_stage(paths["fine_lm"], "fine_lm"))

  @property
  def sample_rate(self) -> int:
    return int(self.codec.sample_rate)

  @property
  def num_levels(self) -> int:
    """Levels the fine stage (or the SoundStorm) models in all: at most the codec's."""
    if self.soundstorm is not None:
      return int(self.soundstorm.layout.num_quantizers)
    return int(self.fine_lm.stage.num_quantizers)

  def tokenize(self, wav: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """wav [B, S] -> (semantic ids [B, T] or None, acoustic codes [B, r T, Q])."""
    wav = np.asarray(wav, np.float32)
    # The batched, windowed paths: a long prompt tokenizes in bounded memory.
    codes = np.stack(tokenize.acoustic_tokens(self.codec, list(wav), batch_size=len(wav),
                                              samples_per_frame=self.samples_per_frame))
    semantic = None
    if self.semantic_tokenizer is not None and not self.acoustic_only:
      semantic = np.stack(tokenize.semantic_tokens(self.semantic_tokenizer, list(wav),
                                                   batch_size=len(wav)))
    return semantic, codes

  def generate(self, prompt_wav: np.ndarray | None = None, *, seconds: float = 10.0,
               rng: jax.Array, batch_size: int = 1,
               progress: Callable[[str], None] | None = None,
               sampling: dict[str, Sampling] | None = None) -> Generation:
    """Continues `prompt_wav` ([S] or [B, S], at the codec's rate) to `seconds` in all, or
    generates `batch_size` clips unconditionally when `prompt_wav` is None. `sampling`:
    `{stage: Sampling}` (`sampling_per_stage`); stages left out draw with their defaults."""
    say = progress or (lambda msg: None)
    draw = _stage_kwargs(sampling)
    spf, r = self.samples_per_frame, self.frame_ratio
    total_t = num_frames(int(round(seconds * self.sample_rate)), spf)
    rng_s, rng_c, rng_f = jax.random.split(rng, 3)

    prompt_semantic = prompt_codes = None
    prompt_samples = prompt_t = 0
    if prompt_wav is not None:
      prompt_wav = np.asarray(prompt_wav, np.float32)
      prompt_wav = prompt_wav[None] if prompt_wav.ndim == 1 else prompt_wav
      if prompt_wav.ndim != 2 or prompt_wav.shape[1] == 0:
        raise DataError(f"the prompt must be a waveform [S] or [B, S], got {prompt_wav.shape}")
      batch_size, prompt_samples = prompt_wav.shape
      prompt_t = num_frames(prompt_samples, spf)
      if prompt_t >= total_t:
        raise ConfigError(f"the prompt ({prompt_samples / self.sample_rate:.1f} s) is not "
                          f"shorter than the requested {seconds} s")
      say("tokenizing the prompt")
      prompt_semantic, prompt_codes = self.tokenize(prompt_wav)

    semantic = tokens = None
    if not self.acoustic_only:
      say("stage 1: semantic tokens")
      known = (np.zeros((batch_size, 0), np.int32) if prompt_semantic is None
               else prompt_semantic)
      per_token = frames_per_token(self.semantic_lm, prompt_semantic)
      tokens = gen.generate_semantic(
          self.semantic_lm, known, gen.tokens_for_frames(total_t - prompt_t, per_token), rng_s,
          frames_per_token=per_token, **draw["semantic"])
      semantic = gen.semantic_timeline(known, tokens, per_token, total_t)
    if self.soundstorm is not None:
      say("SoundStorm: every acoustic level")
      return self._soundstorm(semantic, tokens, prompt_codes, r * total_t, rng_c, sampling,
                              prompt_samples, prompt_t, say)
    say("stage 2: coarse acoustic tokens")
    q_coarse = self.coarse_lm.stage.num_coarse
    coarse = gen.generate_coarse(
        self.coarse_lm, semantic,
        np.zeros((batch_size, 0, q_coarse), np.int32) if prompt_codes is None
        else prompt_codes[..., :q_coarse], r * total_t, rng_c, **draw["coarse"])
    say("stage 3: fine acoustic tokens")
    codes = gen.generate_fine(
        self.fine_lm, coarse,
        None if prompt_codes is None else prompt_codes[..., :self.num_levels], rng_f,
        **draw["fine"])
    say("decoding audio")
    audio = np.asarray(self.codec.decode(codes), np.float32)                    # [B, S]
    return Generation(audio=audio, semantic=semantic, semantic_tokens=tokens, coarse=coarse,
                      fine=codes[..., q_coarse:], prompt_samples=prompt_samples,
                      prompt_frames=prompt_t, continuation_start=prompt_t * spf,
                      sample_rate=self.sample_rate)

  def acoustic_from_semantic(self, semantic_ids: np.ndarray, *, rng: jax.Array,
                             progress: Callable[[str], None] | None = None,
                             sampling: dict[str, Sampling] | None = None) -> Generation:
    """Stages 2 and 3 alone from given semantic ids `[B, T]` (raw, at the tokenizer's frame
    rate, e.g. the ground-truth tokens of real speech) with no acoustic prompt: the paper's
    acoustic generation from semantic tokens (Table II), which should keep the words but not
    know the voice."""
    if self.acoustic_only:
      raise ConfigError("an acoustic-only model has no semantic conditioning")
    say = progress or (lambda msg: None)
    draw = _stage_kwargs(sampling)
    semantic = np.asarray(semantic_ids, np.int32)
    if semantic.ndim != 2 or semantic.shape[1] == 0:
      raise DataError(f"semantic ids must be [batch, frames], got {semantic.shape}")
    batch, frames = semantic.shape
    rng_c, rng_f = jax.random.split(rng)
    if self.soundstorm is not None:
      say("SoundStorm: every acoustic level")
      return self._soundstorm(semantic, None, None, self.frame_ratio * frames, rng_c, sampling,
                              0, 0, say)
    q_coarse = self.coarse_lm.stage.num_coarse
    say("stage 2: coarse acoustic tokens")
    coarse = gen.generate_coarse(self.coarse_lm, semantic,
                                 np.zeros((batch, 0, q_coarse), np.int32),
                                 self.frame_ratio * frames, rng_c, **draw["coarse"])
    say("stage 3: fine acoustic tokens")
    codes = gen.generate_fine(self.fine_lm, coarse, None, rng_f, **draw["fine"])
    say("decoding audio")
    audio = np.asarray(self.codec.decode(codes), np.float32)
    return Generation(audio=audio, semantic=semantic, semantic_tokens=None, coarse=coarse,
                      fine=codes[..., q_coarse:], prompt_samples=0, prompt_frames=0,
                      continuation_start=0, sample_rate=self.sample_rate)

  def _soundstorm(self, semantic, semantic_tokens, prompt_codes, num_frames: int, rng,
                  sampling: dict[str, Sampling] | None, prompt_samples: int, prompt_t: int,
                  say: Callable[[str], None]) -> Generation:
    """Every acoustic level of `num_frames` frames with the SoundStorm, then the audio."""
    draw = _stage_kwargs(sampling)
    for stage in ("coarse", "fine"):
      if draw[stage]["top_k"] or draw[stage]["top_p"] < 1.0:
        raise ConfigError(f"{stage}: top_k / top_p do not apply to SoundStorm (MaskGIT "
                          "decoding); give a temperature only")
    storm, q = self.soundstorm, self.num_levels
    prompt = (np.zeros((len(semantic), 0, q), np.int32) if prompt_codes is None
              else prompt_codes[..., :q])
    codes = soundstorm_sampling.generate(storm.model, storm.params, semantic, prompt, num_frames,
                                         rng, storm.schedule(draw["coarse"]["temperature"]))
    say("decoding audio")
    audio = np.asarray(self.codec.decode(codes), np.float32)                    # [B, S]
    return Generation(audio=audio, semantic=semantic, semantic_tokens=semantic_tokens,
                      coarse=codes, fine=codes[..., q:], prompt_samples=prompt_samples,
                      prompt_frames=prompt_t, continuation_start=prompt_t * self.samples_per_frame,
                      sample_rate=self.sample_rate)

  # ------------------------------------------------------------------------ the short API

  def generate_continuation(self, prompt: np.ndarray, prompt_sample_rate: int,
                            seconds: float = 10.0, *, temperature=None, top_k=0, top_p=1.0,
                            seed: int = 0, progress: bool = False,
                            return_tokens: bool = False) -> np.ndarray | Generation:
    """Continues `prompt` (`[S]` or `[B, S]` float audio at `prompt_sample_rate`, resampled
    to the codec's rate) to `seconds` in all, prompt included.

    temperature, top_k, top_p: one value for all stages or `{stage: value}` (`Sampling`).
    Returns the audio at `self.sample_rate` (`[S]` for an `[S]` prompt, else `[B, S]`; the
    prompt's part is its codec reconstruction), or the whole `Generation` with
    `return_tokens=True`.
    """
    wav = np.asarray(prompt, np.float32)
    if wav.ndim not in (1, 2) or wav.shape[-1] == 0:
      raise DataError(f"the prompt must be a waveform [S] or [B, S], got shape {wav.shape}")
    if wav.ndim == 2 and wav.shape[1] <= 8 < wav.shape[0]:
      raise DataError(f"the prompt's shape {wav.shape} looks like [samples, channels]: give "
                      "mono audio [S] (e.g. wav.mean(axis=1)) or a batch [B, S]")
    if not np.all(np.isfinite(wav)):
      raise DataError("the prompt holds NaN or inf samples")
    rate = _check_rate(prompt_sample_rate)
    if rate != self.sample_rate:
      wav = np.stack([resample(row, rate, self.sample_rate) for row in np.atleast_2d(wav)])
      wav = wav[0] if np.ndim(prompt) == 1 else wav
    out = self._generate(wav, seconds, temperature, top_k, top_p, seed, progress, 1)
    if return_tokens:
      return out
    return out.audio[0] if wav.ndim == 1 else out.audio

  def generate_unconditional(self, seconds: float = 10.0, *, num_samples: int = 1,
                             temperature=None, top_k=0, top_p=1.0, seed: int = 0,
                             progress: bool = False,
                             return_tokens: bool = False) -> np.ndarray | Generation:
    """`num_samples` clips of `seconds` from no prompt: audio `[num_samples, S]` at
    `self.sample_rate`, or the `Generation` with `return_tokens=True`."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
        or num_samples < 1:
      raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
    out = self._generate(None, seconds, temperature, top_k, top_p, seed, progress,
                         int(num_samples))
    return out if return_tokens else out.audio

  def _generate(self, wav, seconds, temperature, top_k, top_p, seed, progress, batch_size):
    if not (isinstance(seconds, (int, float)) and np.isfinite(seconds) and seconds > 0):
      raise ConfigError(f"seconds must be a positive number, got {seconds!r}")
    sampling = sampling_per_stage(temperature, top_k, top_p)
    from audiolm_jax.progress import StageProgress  # pylint: disable=g-import-not-at-top
    acoustic = 1 if self.soundstorm is not None else 2  # SoundStorm, or stages 2 + 3
    stages = StageProgress(total=(wav is not None) + (not self.acoustic_only) + acoustic + 1,
                           desc="generate", enabled=bool(progress))
    try:
      return self.generate(wav, seconds=float(seconds), rng=jax.random.key(int(seed)),
                           batch_size=batch_size, progress=stages.advance, sampling=sampling)
    finally:
      stages.close()


def _check_rate(rate) -> int:
  if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
      or not np.isfinite(rate) or rate <= 0 or float(rate) != int(rate):
    raise ConfigError(f"prompt_sample_rate must be a positive whole number of Hz, got {rate!r}")
  rate = int(rate)
  if not 1000 <= rate <= 384000:
    raise ConfigError(f"prompt_sample_rate {rate} Hz is outside [1000, 384000]")
  return rate


def _stage_kwargs(sampling: dict[str, Sampling] | None) -> dict[str, dict]:
  """`{stage: Sampling}` -> keyword arguments of `lm.generate.generate_<stage>`."""
  sampling = sampling or {}
  unknown = set(sampling) - set(STAGES)
  if unknown:
    raise ConfigError(f"sampling: stages are {', '.join(STAGES)}, got {sorted(unknown)}")
  return {stage: dataclasses.asdict(sampling.get(stage, Sampling())) for stage in STAGES}
