"""The frame rule, frame masks and the acoustic:semantic frame ratio (`audiolm_jax.frames`)."""

import jax
import jax.numpy as jnp
import pytest

from audiolm_jax import frames
from audiolm_jax.errors import ConfigError

ACOUSTIC_HOP = 320  # SoundStream samples per frame (strides 2 * 4 * 5 * 8).

LENGTHS = sorted({1, 2, 319, 320, 321, 639, 640, 641, 959, 960, 961, 1279, 1280, 1281, 16000,
                  16001, 48000 + 7} | set(range(3, 6000, 97)))


def test_frame_rule_gives_two_acoustic_frames_per_semantic_frame():
  for s in LENGTHS:
    t = frames.num_frames(s)
    wav, mask = jax.eval_shape(frames.pad_to_frames, jax.ShapeDtypeStruct((1, s), jnp.float32))
    padded = wav.shape[1]
    assert padded == mask.shape[1] == 640 * t and 0 <= padded - s < 640
    # A causal codec on the padded clip: ceil(S' / 320) frames = exactly two per semantic frame.
    assert -(-padded // ACOUSTIC_HOP) == 2 * t, s
    # On the unpadded clip it would be one short whenever S mod 640 is in (0, 320].
    assert 2 * t - -(-s // ACOUSTIC_HOP) == (1 if 0 < s % 640 <= 320 else 0), s
  wav, mask = frames.pad_to_frames(jnp.ones((1, 700)))
  assert wav.shape == (1, 1280) and int(mask.sum()) == 700 and float(wav[0, 700:].sum()) == 0


def test_frame_ratio_is_read_from_the_two_frame_lengths():
  assert frames.frame_ratio(640, 320) == 2          # 25 Hz tokens, SoundStream at 50 Hz
  assert frames.frame_ratio(320, 320) == 1          # a 50 Hz semantic model
  assert frames.frame_ratio(960, 320) == 3
  with pytest.raises(ConfigError, match="whole number"):
    frames.frame_ratio(640, 240 + 1)
  with pytest.raises(ConfigError, match="24000 Hz"):
    frames.frame_ratio(640, 320, acoustic_rate=24000)


def test_frame_mask_and_other_frame_lengths():
  wav, mask = frames.pad_to_frames(jnp.ones((2, 500)), None, 320)
  assert wav.shape == (2, 640) and frames.num_frames(500, 320) == 2
  fmask = frames.frame_mask(mask, 320)
  assert fmask.shape == (2, 2) and bool(fmask.all())
  with pytest.raises(ValueError, match="pad_to_frames"):
    frames.frame_mask(jnp.ones((1, 500), bool), 320)
