"""The vocos decoder: its inverse STFT against a numpy one, its place in SoundStream, and a
tiny codec with it that learns one fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from audiolm_jax.codec import losses, soundstream, vocos
from audiolm_jax.codec.soundstream import CodecConfig, SoundStream
from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError

PRESET = load_config("codec:tiny")
CONFIG = CodecConfig.from_dict({**PRESET.model, "decoder": "vocos", "vocos_width": 32,
                                "vocos_layers": 2, "codebook_size": 4,
                                "quantizer_dropout": False})


def _centred_stft(x: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
  """numpy: frame t is the Hann-windowed x[(t + 1/2) hop - N/2 : (t + 1/2) hop + N/2]."""
  offset = (n_fft - hop) // 2
  padded = np.pad(x, ((0, 0), (offset, n_fft)))
  frames = np.stack([padded[:, t * hop:t * hop + n_fft]
                     for t in range(x.shape[1] // hop)], axis=1)
  return np.fft.rfft(frames * vocos.synthesis_window(n_fft), axis=-1)


@pytest.mark.parametrize("hop,overlap", [(320, 4), (40, 4), (40, 3), (64, 2)])
def test_istft_inverts_the_centred_stft_everywhere(hop, overlap):
  n_fft = hop * overlap
  x = np.random.default_rng(0).standard_normal((2, hop * 12)).astype(np.float32)
  y = np.asarray(vocos.istft(jnp.asarray(_centred_stft(x, hop, n_fft)), hop, n_fft))
  assert y.shape == x.shape
  # The edges too: the overlap-add is normalised by its actual window envelope.
  np.testing.assert_allclose(y, x, atol=2e-5)


def test_overlap_add_matches_a_loop():
  frames = np.random.default_rng(1).standard_normal((2, 5, 12)).astype(np.float32)
  expected = np.zeros((2, 4 * 7))
  for t in range(5):
    expected[:, t * 4:t * 4 + 12] += frames[:, t]
  np.testing.assert_allclose(np.asarray(vocos.overlap_add(jnp.asarray(frames), 4)), expected,
                             atol=1e-6)


@pytest.fixture(scope="module")
def variables():
  # The modules' own initialisers (the `numpy_init` fixture zeroes LayerNorm scales).
  return soundstream.init(CONFIG, jax.random.key(0))


def test_vocos_decoder_shapes_and_refuses_to_stream(variables):
  assert "block_1" in variables["params"]["decoder"]
  wav = jnp.asarray(np.random.default_rng(2).standard_normal((2, 7 * CONFIG.hop_length + 5)),
                    jnp.float32) * 0.1
  codes = soundstream.encode(CONFIG, variables, wav)
  assert codes.shape == (2, 8, CONFIG.num_quantizers)
  audio = soundstream.decode(CONFIG, variables, codes[..., :2])
  assert audio.shape == (2, 8 * CONFIG.hop_length) and bool(jnp.all(jnp.isfinite(audio)))
  with pytest.raises(ConfigError, match="does not stream"):
    soundstream.decoder_stream_state(CONFIG, 1)


def test_bad_vocos_configs_are_config_errors():
  with pytest.raises(ConfigError, match="decoder must be one of"):
    CodecConfig.from_dict({**PRESET.model, "decoder": "hifigan"})
  with pytest.raises(ConfigError, match="positive"):
    CodecConfig.from_dict({**PRESET.model, "decoder": "vocos", "vocos_layers": 0})
  with pytest.raises(ConfigError, match="even"):
    CodecConfig.from_dict({**PRESET.model, "strides": (3, 5), "channel_mults": (2, 4),
                           "decoder": "vocos", "vocos_overlap": 2})


def _batch() -> np.ndarray:
  """Two fixed 0.2 s harmonic clips with moving pitch and a little noise."""
  t = np.arange(3200) / 16000
  rng = np.random.default_rng(0)
  wavs = []
  for f0 in (120.0, 210.0):
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) + 0.01 * rng.normal(size=t.size)
    wavs.append(0.3 * x / np.abs(x).max())
  return np.stack(wavs).astype(np.float32)


def test_a_tiny_codec_with_the_vocos_decoder_learns_one_batch(variables):
  model = SoundStream(CONFIG)
  loss_config = losses.CodecLossConfig.from_dict(PRESET.loss)
  optimizer = optax.adam(3e-3)
  params, stats = variables["params"], variables["vq_stats"]
  opt_state = optimizer.init(params)
  wav = jnp.asarray(_batch())

  @jax.jit
  def step(params, opt_state, stats, rng):
    def loss_fn(params):
      output, mutated = model.apply({"params": params, "vq_stats": stats}, wav, train=True,
                                    rngs={"quantizer": rng}, mutable=["vq_stats"])
      loss, _ = losses.generator_loss(loss_config, wav, output.audio,
                                      jnp.ones(wav.shape[0], bool),
                                      output.quantizer.commitment_loss)
      return loss, mutated["vq_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, stats, loss

  def snr(params, stats):
    decoded = model.apply({"params": params, "vq_stats": stats}, wav).audio
    return float(losses.si_snr(wav, decoded).mean())

  # After the first step, which k-means-initialises the codebooks (before it every code is 0).
  params, opt_state, stats, _ = step(params, opt_state, stats, jax.random.key(0))
  before = snr(params, stats)
  for i in range(1, 200):
    params, opt_state, stats, loss = step(params, opt_state, stats, jax.random.key(i))
    assert np.isfinite(float(loss)), i
  after = snr(params, stats)
  # Measured: about -35 dB after the first step, +14 dB at step 200.
  assert after >= before + 6.0 and after > 0.0, (before, after)


def test_decoder_lookahead_is_exactly_where_later_codes_reach(variables):
  """Codes from frame 16 on changed: the audio before 16 hops - lookahead stays the same, and
  the next hop changes (the bound is tight to a hop)."""
  hop, lookahead = CONFIG.hop_length, CONFIG.decoder_lookahead
  assert lookahead == 3 * 3 * hop + 3 * hop // 2  # 2 blocks + conv_in, overlap 4
  assert CodecConfig.from_dict(PRESET.model).decoder_lookahead == 0  # SEANet is causal
  codes = jax.random.randint(jax.random.key(3), (1, 24, CONFIG.num_quantizers), 0,
                             CONFIG.codebook_size)
  changed = codes.at[:, 16:].set((codes[:, 16:] + 1) % CONFIG.codebook_size)
  a, b = (np.asarray(soundstream.decode(CONFIG, variables, c))[0] for c in (codes, changed))
  bound = 16 * hop - lookahead
  # Bit for bit before the bound; after it, the change is small at first (it comes through
  # every block's outermost tap, measured 5e-9 at init) but not zero.
  np.testing.assert_array_equal(a[:bound], b[:bound])
  assert np.abs(a[bound:bound + hop] - b[bound:bound + hop]).max() > 0
  assert np.abs(a[16 * hop:] - b[16 * hop:]).max() > 1e-3
