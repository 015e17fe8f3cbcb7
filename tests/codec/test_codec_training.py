"""Codec training with a plain optax loop: gradients reach the encoder, `tiny` overfits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiolm_jax.codec.losses import CodecLossConfig, generator_loss
from audiolm_jax.codec.soundstream import CodecConfig, SoundStream
from audiolm_jax.config import load_config

PRESET = load_config("codec:tiny")
MODEL = SoundStream(CodecConfig.from_dict(PRESET.model))
# Reconstruction only: every gradient that reaches the encoder has come through the
# straight-through estimator of the quantiser (no commitment term).
LOSS = CodecLossConfig.from_dict(PRESET.loss, commitment_weight=0.0)
OPTIMIZER = optax.adam(3e-3)


@jax.jit
def train_step(params, opt_state, stats, wav, rng):
  def loss_fn(params):
    output, mutated = MODEL.apply({"params": params, "vq_stats": stats}, wav, train=True,
                                  rngs={"quantizer": rng}, mutable=["vq_stats"])
    loss, metrics = generator_loss(LOSS, wav, output)
    return loss, (metrics, mutated["vq_stats"])

  (_, (metrics, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, stats, metrics, grads


def _batch():
  """Two fixed 0.2 s clips: a few partials and a little noise."""
  t = np.arange(3200) / 16000
  noise = 0.05 * np.random.default_rng(0).normal(size=(2, 3200))
  wav = np.stack([0.5 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 440 * t + 1),
                  0.4 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)])
  return (wav + noise).astype(np.float32)


def test_straight_through_gradients_reach_the_encoder(tiny_variables):
  params, stats = tiny_variables["params"], tiny_variables["vq_stats"]
  _, _, new_stats, metrics, grads = train_step(params, OPTIMIZER.init(params), stats, _batch(),
                                               jax.random.key(0))
  for part in ("encoder", "decoder"):
    kernels = [(jax.tree_util.keystr(path), g)
               for path, g in jax.tree_util.tree_leaves_with_path(grads[part])
               if path[-1].key == "kernel"]
    assert len(kernels) > 20
    for name, g in kernels:
      assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {part}{name}"
  assert bool(new_stats["quantizer"]["initialized"])       # k-means ran on this first batch
  assert float(metrics["codebook/perplexity_q0"]) > 1.0


def test_tiny_preset_overfits_one_batch(tiny_variables):
  params, stats = tiny_variables["params"], tiny_variables["vq_stats"]
  opt_state = OPTIMIZER.init(params)
  wav = _batch()
  history = []
  for step in range(40):
    params, opt_state, stats, metrics, _ = train_step(params, opt_state, stats, wav,
                                                      jax.random.key(step))
    history.append(float(metrics["loss/reconstruction"]))
  assert np.all(np.isfinite(history))
  assert np.mean(history[-5:]) <= 0.5 * history[0], history
