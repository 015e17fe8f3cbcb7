"""Codec losses against hand and librosa references; discriminator shapes and gradients."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.codec import losses
from audiolm_jax.codec.discriminators import (CodecDiscriminator, DiscriminatorConfig,
                                              DiscriminatorOutput)
from audiolm_jax.config import load_config
from audiolm_jax.eval import quality
from audiolm_jax.layers.spectral import absolute_mel_floor, mel_filterbank

TINY_DISC = DiscriminatorConfig.from_dict(load_config("codec:tiny").discriminator)


def _wav(batch=2, samples=3200, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, samples)) * 0.3


def test_perfect_reconstruction_gives_zero_loss():
  config = losses.CodecLossConfig()
  wav = _wav()
  valid = jnp.ones(2, bool)

  def loss_fn(audio):
    return losses.generator_loss(config, wav, audio, valid, jnp.float32(0.0))

  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss, metrics), grad = step(wav)
  assert float(loss) < 1e-6 and float(metrics["loss/reconstruction"]) < 1e-6
  assert bool(jnp.all(jnp.isfinite(grad)))          # no NaN from the norm at zero
  (loss, _), _ = step(0.5 * wav)
  assert float(loss) > 0.3
  silent = jnp.zeros_like(wav)                       # a silent reference: finite everywhere
  (loss, _), grad = jax.jit(jax.value_and_grad(
      lambda a: losses.generator_loss(config, silent, a, valid, jnp.float32(0.0)),
      has_aux=True))(wav)
  assert np.isfinite(float(loss)) and bool(jnp.all(jnp.isfinite(grad)))


def _numpy_mel(wav, n_fft, n_mels):
  """librosa-style magnitude mel spectrogram [T, M]: centred, zero-padded, periodic Hann."""
  hop = n_fft // 4
  padded = np.pad(wav.astype(np.float64), n_fft // 2)
  starts = range(0, len(padded) - n_fft + 1, hop)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
  frames = np.stack([padded[i:i + n_fft] * window for i in starts])
  return np.abs(np.fft.rfft(frames, axis=-1)) @ mel_filterbank(16000, n_fft, n_mels)


def test_soundstream_mel_loss_matches_numpy_reference():
  config = losses.CodecLossConfig(reconstruction="soundstream", mel_windows=(64, 256),
                                  mel_bins=16)
  x = np.asarray(_wav(1, 2048, seed=1))[0]
  y = np.asarray(_wav(1, 2048, seed=2))[0]
  expected = 0.0
  for s in config.mel_windows:
    mx, my = _numpy_mel(x, s, 16), _numpy_mel(y, s, 16)
    l1 = np.abs(mx - my).sum(-1).mean()
    log_l2 = np.linalg.norm(np.log(mx + 1e-5) - np.log(my + 1e-5), axis=-1).mean()
    expected += l1 + math.sqrt(s / 2) * log_l2
  got = jax.jit(losses.reconstruction_loss, static_argnums=2)(x[None], y[None], config)
  assert float(got[0]) == pytest.approx(expected, rel=1e-3)


def test_relative_mel_loss_matches_numpy_reference_and_ignores_gain():
  config = losses.CodecLossConfig(mel_windows=(64, 256), mel_bins=32)
  x = np.asarray(_wav(1, 2048, seed=1))[0]
  y = np.asarray(_wav(1, 2048, seed=2))[0]
  expected = 0.0
  for s in config.mel_windows:
    bands = min(32, s // 4)
    mx, my = _numpy_mel(x, s, bands), _numpy_mel(y, s, bands)
    floor = 1e-3 * mx.mean() + absolute_mel_floor(16000, s, bands)
    expected += (np.abs(np.log10(mx + floor) - np.log10(my + floor)).mean()
                 + np.abs(mx - my).sum() / (mx.sum() + floor * mx.size))
  got = jax.jit(losses.reconstruction_loss, static_argnums=2)(x[None], y[None], config)
  assert float(got[0]) == pytest.approx(expected / 2, rel=1e-3)
  # The floor follows the reference's level: the loss of a pair does not depend on its gain
  # (down to the absolute floor, 100 dB below full scale).
  scaled = jax.jit(losses.reconstruction_loss, static_argnums=2)(0.01 * x[None], 0.01 * y[None],
                                                                config)
  assert float(scaled[0]) == pytest.approx(float(got[0]), rel=1e-2)


def test_jnp_si_snr_matches_the_numpy_metric():
  x, y = np.asarray(_wav(2, 4000, seed=1)), np.asarray(_wav(2, 4000, seed=2))
  est = x + 0.3 * y
  got = losses.si_snr(jnp.asarray(x), jnp.asarray(est))
  for row in range(2):
    assert float(got[row]) == pytest.approx(quality.si_snr(x[row], est[row]), abs=1e-3)


def _output(*logit_lists, features=None):
  logits = tuple(jnp.asarray(l, jnp.float32)[None, :, None] for l in logit_lists)
  feats = features or tuple((jnp.zeros((1, 2, 1)),) for _ in logit_lists)
  return DiscriminatorOutput(logits=logits, features=feats)


def test_hinge_losses_on_fixed_logits():
  real = _output([2.0, 0.5, -1.0], [1.0, 1.0])
  fake = _output([-2.0, 0.0, 1.0], [-1.0, 3.0])
  # Disc 1: relu(1 - r) = (0, .5, 2) -> 5/6; relu(1 + f) = (0, 1, 2) -> 1.
  # Disc 2: relu(1 - r) = (0, 0) -> 0;       relu(1 + f) = (0, 4) -> 2.
  assert float(losses.hinge_discriminator_loss(real, fake)[0]) == pytest.approx(
      ((5 / 6 + 1) + (0 + 2)) / 2)
  # Generator: relu(1 - f) = (3, 1, 0) -> 4/3 and (2, 0) -> 1.
  assert float(losses.hinge_generator_loss(fake)[0]) == pytest.approx((4 / 3 + 1) / 2)


def test_feature_matching_is_mean_l1_with_no_gradient_to_real():
  real_feats = ((jnp.ones((1, 4, 2)), jnp.zeros((1, 2, 3))),)
  fake_feats = ((jnp.full((1, 4, 2), 3.0), jnp.ones((1, 2, 3))),)
  real = _output([0.0], features=real_feats)
  fake = _output([0.0], features=fake_feats)
  assert float(losses.feature_matching_loss(real, fake)[0]) == pytest.approx((2.0 + 1.0) / 2)
  grad_real = jax.grad(lambda f: losses.feature_matching_loss(
      _output([0.0], features=f), fake)[0])(real_feats)
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grad_real))


@pytest.fixture(scope="module")
def disc_variables(numpy_init):
  return numpy_init(CodecDiscriminator(TINY_DISC).init, jax.random.key(0), jnp.zeros((2, 3200)))


def test_discriminator_outputs_and_axis_names(disc_variables):
  out = jax.jit(CodecDiscriminator(TINY_DISC).apply)(disc_variables, _wav())
  c = TINY_DISC
  assert len(out.logits) == c.wave_scales + 1 and len(out.features) == c.wave_scales + 1
  for i in range(c.wave_scales):                         # 1x, 2x, 4x pooled, then / 4^n
    assert out.logits[i].shape == (2, 3200 // 2**i // 4**c.wave_downsamples, 1)
    assert len(out.features[i]) == c.wave_downsamples + 2
  frames = 1 + 3200 // c.stft_hop                       # centred STFT
  assert out.logits[-1].shape == (2, math.ceil(frames / 8), 1)   # three time-stride-2 blocks
  assert len(out.features[-1]) == len(c.stft_channel_mults) + 1
  params = disc_variables["params"]
  grouped = params["wave"]["scale_0"]["conv_down_1"]["kernel"]
  assert grouped.shape == (41, 4, 64)                    # 16 -> 64 channels in 4 groups
  specs = nn.get_partition_spec(jax.eval_shape(CodecDiscriminator(TINY_DISC).init,
                                               jax.random.key(0), jnp.zeros((1, 3200))))
  assert tuple(specs["params"]["wave"]["scale_0"]["conv_down_1"]["kernel"]) == (
      "conv_kernel", "conv_in", "conv_out")
  assert tuple(specs["params"]["stft"]["block_0"]["conv_down"]["kernel"]) == (
      None, "conv_kernel", "conv_in", "conv_out")


# A minimal discriminator and two mel scales: the plumbing of the losses, compiled quickly.
SMALL_DISC = DiscriminatorConfig(wave_scales=2, wave_channels=4, wave_max_channels=16,
                                 wave_downsamples=1, stft_channels=2, stft_channel_mults=(2,),
                                 stft_time_strides=(2,), stft_n_fft=64, stft_hop=16)


def test_generator_and_discriminator_losses_train_their_sides(numpy_init):
  config = losses.CodecLossConfig(mel_windows=(64, 256))
  disc = CodecDiscriminator(SMALL_DISC)
  wav = _wav(samples=640)
  valid = jnp.ones(2, bool)
  disc_variables = numpy_init(disc.init, jax.random.key(0), wav)
  real = disc.apply(disc_variables, wav)

  def gen_loss(audio, scale):
    return losses.generator_loss(config, wav, audio, valid, jnp.float32(0.25),
                                 discriminate=lambda x: disc.apply(disc_variables, x),
                                 real=real, adversarial_scale=scale)

  def plain_sum(audio):                  # the same objective written directly
    fake = disc.apply(disc_variables, audio)
    return jnp.mean(losses.reconstruction_loss(wav, audio, config)
                    + 0.1 * losses.waveform_loss(wav, audio)
                    + losses.hinge_generator_loss(fake)
                    + 100.0 * losses.feature_matching_loss(real, fake)) + 0.25

  def disc_loss(variables, audio):
    real, fake = disc.apply(variables, wav), disc.apply(variables, audio)
    return losses.discriminator_loss(real, fake, valid)

  audio = wav + 0.1 * _wav(samples=640, seed=3)
  gen_step = jax.jit(jax.value_and_grad(gen_loss, has_aux=True))
  (loss, metrics), grad_audio = gen_step(audio, 1.0)
  value, grad_plain = jax.jit(jax.value_and_grad(plain_sum))(audio)
  # Value and gradient are exactly those of the weighted sum of the terms.
  assert float(loss) == pytest.approx(float(value), rel=1e-5)
  np.testing.assert_allclose(grad_audio, grad_plain, rtol=1e-4, atol=1e-7)
  expected = (metrics["loss/reconstruction"] + 0.1 * metrics["loss/waveform"] + 0.25
              + metrics["loss/adversarial"] + 100.0 * metrics["loss/feature_matching"])
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  # Each term's gradient norm at the output of one example (the first valid row).
  norms = [float(metrics[f"grad_at_output/{t}"]) for t in losses.GENERATOR_TERMS]
  assert all(n > 0 for n in norms)
  row = lambda fn: jax.grad(lambda a: fn(a)[0])(audio[:1])
  fake_row = lambda a: disc.apply(disc_variables, a)
  real_row = jax.tree.map(lambda x: x[:1], real)
  expected = {"waveform": 0.1 * row(lambda a: losses.waveform_loss(wav[:1], a)),
              "feature_matching": 100.0 * row(
                  lambda a: losses.feature_matching_loss(real_row, fake_row(a)))}
  for name, grad in expected.items():
    assert float(metrics[f"grad_at_output/{name}"]) == pytest.approx(
        float(jnp.linalg.norm(grad)), rel=1e-4)
  # An invalid first row: the first valid one is measured.
  (_, shifted), _ = jax.jit(jax.value_and_grad(lambda a: losses.generator_loss(
      config, wav, a, jnp.array([False, True]), jnp.float32(0.0)), has_aux=True))(audio)
  second = jax.grad(lambda a: losses.waveform_loss(wav[1:], a)[0])(audio[1:])
  assert float(shifted["grad_at_output/waveform"]) == pytest.approx(
      0.1 * float(jnp.linalg.norm(second)), rel=1e-4)
  (warmup_loss, warm), warm_grad = gen_step(audio, 0.0)   # warm-up: no adversarial terms
  assert float(warmup_loss) == pytest.approx(
      float(metrics["loss/reconstruction"] + 0.1 * metrics["loss/waveform"]) + 0.25, rel=1e-5)
  assert float(warm["grad_at_output/adversarial"]) > 0      # reported even while it is off
  rec_only = jax.grad(lambda a: jnp.mean(losses.signal_loss(wav, a, config)))(audio)
  np.testing.assert_allclose(warm_grad, rec_only, rtol=1e-4, atol=1e-7)
  (d_loss, d_metrics), d_grads = jax.jit(jax.value_and_grad(disc_loss, has_aux=True))(
      disc_variables, audio)
  assert np.isfinite(float(d_loss)) and "discriminator/real_logit" in d_metrics
  # Every kernel learns (the last biases cancel in the hinge while logits are in the margin).
  kernels = [g for path, g in jax.tree_util.tree_leaves_with_path(d_grads)
             if path[-1].key == "kernel"]
  assert len(kernels) == 13 and all(float(jnp.abs(g).sum()) > 0 for g in kernels)
  with pytest.raises(ValueError, match="both"):
    losses.generator_loss(config, wav, audio, valid, jnp.float32(0.0), real=real)
