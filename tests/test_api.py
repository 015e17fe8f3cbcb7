"""The short Python API on a run directory of untrained tiny parts: a prompt at another rate
is resampled, sampling settings apply to all stages or per stage, greedy decoding ignores the
seed, and bad arguments are one clear error each."""

import numpy as np
import pytest

import parts  # tests/support
from audiolm_jax import AudioLM, Sampling, sampling_per_stage
from audiolm_jax.data.audio import resample
from audiolm_jax.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
  return AudioLM.from_run_dir(parts.make_run_dir(str(tmp_path_factory.mktemp("run"))))


def tone(rate, seconds=1.0):
  t = np.arange(int(rate * seconds)) / rate
  return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_a_prompt_at_another_rate_is_resampled_and_continued(lm):
  prompt = tone(22050)  # 1 s at 22.05 kHz
  out = lm.generate_continuation(prompt, 22050, seconds=2.0, temperature=0.0, seed=0,
                                 return_tokens=True)
  assert out.sample_rate == lm.sample_rate == 16000
  assert out.prompt_samples == 16000 and abs(out.audio.shape[1] - 32000) < 640
  # The prompt's codes are those of the prompt resampled to 16 kHz, not of the raw samples.
  _, codes = lm.tokenize(resample(prompt, 22050, 16000)[None])
  frames = codes.shape[1]
  q_coarse = out.coarse.shape[-1]
  np.testing.assert_array_equal(out.coarse[:, :frames], codes[..., :q_coarse])
  # Greedy: the seed changes nothing; audio only by default, [S] for an [S] prompt.
  audio = lm.generate_continuation(prompt, 22050, seconds=2.0, temperature=0.0, seed=1)
  assert audio.ndim == 1 and audio.dtype == np.float32
  np.testing.assert_array_equal(audio, out.audio[0])


def test_unconditional_with_per_stage_settings(lm):
  a = lm.generate_unconditional(1.0, num_samples=2, temperature={"coarse": 0.0, "fine": 0.0},
                                seed=3, return_tokens=True)
  b = lm.generate_unconditional(1.0, num_samples=2, temperature={"coarse": 0.0, "fine": 0.0},
                                seed=4, return_tokens=True)
  assert a.audio.shape[0] == 2 and abs(a.audio.shape[1] - 16000) < 640
  assert a.prompt_samples == 0
  # The semantic stage samples (seeds differ), coarse and fine follow greedily from it.
  assert not np.array_equal(a.semantic, b.semantic)


def test_sampling_settings_per_stage():
  s = sampling_per_stage(temperature={"coarse": 0.9}, top_k=50)
  assert s["coarse"] == Sampling(temperature=0.9, top_k=50)
  assert s["semantic"] == Sampling(temperature=None, top_k=50)
  with pytest.raises(ConfigError, match="stages are semantic, coarse, fine"):
    sampling_per_stage(top_p={"semantics": 0.9})
  for kwargs, match in (({"temperature": -1.0}, "temperature"), ({"top_k": 2.5}, "top_k"),
                        ({"top_p": 0.0}, "top_p"), ({"temperature": float("nan")}, "temperature")):
    with pytest.raises(ConfigError, match=match):
      sampling_per_stage(**kwargs)


def test_bad_arguments_are_one_clear_error(lm):
  prompt = tone(16000)
  for rate in (0, 44100.5, "16000", True, 100):
    with pytest.raises(ConfigError, match="prompt_sample_rate"):
      lm.generate_continuation(prompt, rate, seconds=2.0)
  with pytest.raises(DataError, match="NaN"):
    lm.generate_continuation(np.full(16000, np.nan, np.float32), 16000, seconds=2.0)
  with pytest.raises(DataError, match="samples, channels"):  # a stereo file as read
    lm.generate_continuation(np.stack([prompt, prompt], axis=1), 16000, seconds=2.0)
  with pytest.raises(DataError, match="waveform"):
    lm.generate_continuation(np.zeros((1, 1, 5), np.float32), 16000, seconds=2.0)
  with pytest.raises(ConfigError, match="not shorter"):
    lm.generate_continuation(prompt, 16000, seconds=0.5)
  with pytest.raises(ConfigError, match="seconds"):
    lm.generate_unconditional(float("inf"))
  with pytest.raises(ConfigError, match="num_samples"):
    lm.generate_unconditional(1.0, num_samples=0)
