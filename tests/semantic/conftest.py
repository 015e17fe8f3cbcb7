"""Shared fixtures: the `tiny` w2v-BERT preset and its parameters (built once per session)."""

import jax
import numpy as np
import pytest

from audiolm_jax.config import load_config
from audiolm_jax.semantic import losses, w2v_bert


@pytest.fixture(scope="session")
def tiny_config():
  return load_config("experiments/configs/w2v_bert.py:tiny")


@pytest.fixture(scope="session")
def tiny_model_config(tiny_config):
  return w2v_bert.W2VBertConfig.from_config(tiny_config.model, tiny_config.compute_dtype)


@pytest.fixture(scope="session")
def tiny_loss_config(tiny_config):
  return losses.W2VBertLossConfig.from_config(tiny_config.loss)


def key(seed):
  """An "rbg" PRNG key: the model and losses take any key, and on CPU XLA compiles the
  threefry hash of each initializer slowly (~4x the compile time of a tiny model's init)."""
  return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="session")
def tiny_params(tiny_model_config):
  return jax.jit(w2v_bert.init_params, static_argnums=0)(tiny_model_config, key(0))


def speech_like(batch, num_samples, seed=0):
  """Harmonic tones with gliding pitch and noise bursts: structure to learn, not speech."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / 16000.0
  out = []
  for _ in range(batch):
    f0 = rng.uniform(100, 250) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * rng.uniform(2, 6) * t) > 0).astype(np.float64)
    noise = rng.standard_normal(num_samples) * (1 - gate)
    out.append(0.3 * voiced * gate + 0.05 * noise)
  return np.stack(out).astype(np.float32)


@pytest.fixture(scope="session")
def make_audio():
  return speech_like


@pytest.fixture(scope="session")
def make_key():
  return key
