"""Fixtures of the LM tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture
def random_params():
  """`random_params(model, tokens, seed=0)`: parameters of `model` drawn on the host.

  Shapes come from `jax.eval_shape(model.init)`; values are N(0, 0.2^2) (norm scales around 1).
  This skips compiling the initialisers (seconds of XLA time per model on CPU), which the tests
  do not examine.
  """

  def make(model, tokens, seed=0):
    shapes = jax.eval_shape(lambda t: model.init(jax.random.key(0), t), tokens)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, s):
      value = rng.normal(0.0, 0.2, s.shape)
      if "scale" in jax.tree_util.keystr(path):
        value += 1.0
      return jnp.asarray(value, s.dtype)

    return jax.tree_util.tree_map_with_path(draw, nn.unbox(shapes))

  return make
