"""Shared fixtures of the codec tests: the `tiny` preset and variables filled without XLA.

Compiling a jitted `init` costs seconds on CPU (one threefry expansion per parameter), so the
tests fill the initialiser's abstract tree (`jax.eval_shape`, no compilation) from numpy.
"""

import math

import flax.linen as nn
import jax
import numpy as np
import pytest

from audiolm_jax.codec import soundstream
from audiolm_jax.config import load_config


def _numpy_init(init_fn, *args, seed=0):
  """Variables shaped like `init_fn(*args)`: LeCun-normal kernels, zero biases and EMA stats,
  standard-normal codebooks, `initialized` False; as the modules' own initialisers, Snake
  frequencies start at 1 and weight-norm scales at the norm of their kernel."""
  abstract = nn.unbox(jax.eval_shape(init_fn, *args))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return (rng.normal(size=leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))).astype(
          leaf.dtype)
    if name == "codebook":
      return rng.normal(size=leaf.shape).astype(leaf.dtype)
    if name == "alpha":
      return np.ones(leaf.shape, leaf.dtype)
    return np.zeros(leaf.shape, leaf.dtype)      # biases, EMA statistics, `initialized`

  filled = jax.tree_util.tree_map_with_path(fill, abstract)

  def weight_norm_scales(tree):
    if isinstance(tree, dict):
      if "scale" in tree and "kernel" in tree:
        norm = np.sqrt(np.sum(np.square(tree["kernel"]), axis=(0, 1)))
        tree = {**tree, "scale": norm.astype(tree["scale"].dtype)}
      return {k: weight_norm_scales(v) for k, v in tree.items()}
    return tree

  return weight_norm_scales(filled)


@pytest.fixture(scope="session")
def numpy_init():
  """`numpy_init(init_fn, *args, seed=0)`: variables shaped like `init_fn(*args)`."""
  return _numpy_init


@pytest.fixture(scope="session")
def tiny_config():
  return soundstream.CodecConfig.from_dict(load_config("codec:tiny").model)


@pytest.fixture(scope="session")
def tiny_variables(tiny_config):
  return _numpy_init(soundstream.init, tiny_config, jax.random.key(0))
