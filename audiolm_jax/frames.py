"""Frames: sample rate, samples per frame, the frame rule, frame masks, and the ratio of
acoustic to semantic frames. The one place these are defined.

    num_frames(S)                 = ceil(S / 640)   semantic frames of a clip of S samples
    pad_to_frames(wav)            zero-pads to 640 * num_frames(S) samples
    frame_ratio(640, 320)         = 2               acoustic frames per semantic frame

The frame rule. A clip of S samples at 16 kHz is zero-padded to `640 * num_frames(S)` samples
and cut into semantic frames of 640 samples (40 ms, 25 Hz). A codec whose hop divides 640
(SoundStream's 320 samples, 50 Hz) then has exactly `r = 640 / hop` frames per semantic frame
on the padded clip, for every clip length: semantic frame t covers acoustic frames
`r t .. r t + r - 1`. Tokenise both streams from the *padded* waveform; on the unpadded clip a
causal codec gives `ceil(S / 320)` frames, one fewer when `S mod 640` is in `(0, 320]`.

The numbers are defaults, not laws: a tokenizer states its own `samples_per_frame` (a 50 Hz
semantic model has 320, giving r = 1), a codec its hop, and `frame_ratio` checks that they
tile; nothing else in the package writes `640`, `320` or `2 *` for this.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from audiolm_jax.errors import ConfigError

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640  # 40 ms: the paper's 25 Hz semantic frame at 16 kHz.


def num_frames(num_samples: int, samples_per_frame: int = SAMPLES_PER_FRAME) -> int:
  """Frames of a clip of `num_samples` samples: `ceil(S / samples_per_frame)`."""
  return -(-int(num_samples) // samples_per_frame)


def pad_to_frames(wav: jax.Array,
                  wav_mask: jax.Array | None = None,
                  samples_per_frame: int = SAMPLES_PER_FRAME) -> tuple[jax.Array, jax.Array]:
  """Zero-pads `wav [B, S]` (and its mask) to `num_frames(S) * samples_per_frame` samples."""
  s = wav.shape[-1]
  if wav_mask is None:
    wav_mask = jnp.ones(wav.shape, bool)
  pad = num_frames(s, samples_per_frame) * samples_per_frame - s
  wav = jnp.pad(jnp.asarray(wav, jnp.float32), ((0, 0), (0, pad)))
  wav_mask = jnp.pad(jnp.asarray(wav_mask, bool), ((0, 0), (0, pad)))
  return wav, wav_mask


def frame_mask(sample_mask: jax.Array, samples_per_frame: int = SAMPLES_PER_FRAME) -> jax.Array:
  """`[B, S] -> [B, S / samples_per_frame]`: a frame is valid if any of its samples is."""
  b, s = sample_mask.shape
  if s % samples_per_frame:
    raise ValueError(f"{s} samples are not whole frames of {samples_per_frame}; "
                     "pad_to_frames first")
  return jnp.any(sample_mask.reshape(b, s // samples_per_frame, samples_per_frame), axis=-1)


def frame_ratio(semantic_samples_per_frame: int, acoustic_hop: int,
                semantic_rate: int = SAMPLE_RATE, acoustic_rate: int = SAMPLE_RATE) -> int:
  """Acoustic frames per semantic frame, `semantic_samples_per_frame / acoustic_hop`.

  Raises:
    ConfigError: the two streams run at different sample rates, or the codec's frames do not
      tile the semantic frames (the stage LMs need a whole number per semantic frame).
  """
  if semantic_rate != acoustic_rate or acoustic_hop <= 0 or (
      semantic_samples_per_frame % acoustic_hop):
    raise ConfigError(
        f"a codec at {acoustic_rate} Hz with a {acoustic_hop}-sample hop does not align with "
        f"semantic tokens of {semantic_samples_per_frame} samples at {semantic_rate} Hz; the "
        "stage LMs need a whole number of codec frames per semantic frame")
  return semantic_samples_per_frame // acoustic_hop
