"""Conformer: shapes, padding masks, relative positions, partial stacks and axis names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.layers import conformer

CFG = conformer.ConformerConfig(dim=16, num_heads=2, mlp_dim=32, conv_kernel_size=3,
                                dropout_rate=0.1, attention_dropout_rate=0.1,
                                relpos_num_buckets=8, relpos_max_distance=16)


@pytest.fixture(scope="module")
def stack_and_params():
  stack = conformer.ConformerStack(CFG, num_layers=2)
  x = jnp.zeros((2, 12, 16))
  # An "rbg" key: XLA on CPU compiles threefry-based initializers slowly; any key works.
  variables = jax.jit(stack.init)(jax.random.key(0, impl="rbg"), x, jnp.ones((2, 12), bool))
  return jax.jit(stack.apply, static_argnames=("deterministic", "num_layers")), variables


def test_shapes_and_every_parameter_has_axis_names(stack_and_params):
  stack, variables = stack_and_params
  x = jax.random.normal(jax.random.key(1), (2, 12, 16))
  y = stack(variables, x, jnp.ones((2, 12), bool))
  assert y.shape == (2, 12, 16) and y.dtype == jnp.float32
  assert set(variables["params"]) == {"relpos", "block_0", "block_1"}
  boxed = jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, nn.Partitioned))
  assert boxed and all(isinstance(p, nn.LogicallyPartitioned) for p in boxed)
  for p in boxed:
    assert len(p.names) == p.value.ndim, p.names
  names = {n for p in boxed for n in p.names if n is not None}
  assert names <= {"embed", "mlp", "heads", "kv", "relpos_buckets", "conv_kernel", "norm"}


def test_padding_never_changes_valid_frames(stack_and_params):
  stack, variables = stack_and_params
  t_valid = 7
  clip = jax.random.normal(jax.random.key(2), (1, t_valid, 16))
  alone = stack(variables, clip, jnp.ones((1, t_valid), bool))
  # The same clip padded to 12 frames with garbage: valid outputs must not move.
  garbage = 100.0 * jax.random.normal(jax.random.key(3), (1, 12 - t_valid, 16))
  padded = jnp.concatenate([clip, garbage], axis=1)
  mask = jnp.arange(12)[None] < t_valid
  out = stack(variables, padded, mask)
  np.testing.assert_allclose(out[:, :t_valid], alone, atol=1e-5)
  # Without the mask the garbage does leak in (so the test above can fail).
  leaked = stack(variables, padded, jnp.ones((1, 12), bool))
  assert np.abs(leaked[:, :t_valid] - alone).max() > 1e-2


def test_only_relative_positions_matter(stack_and_params):
  # A frame's output depends on offsets, not absolute indices: shifting a clip right by 3
  # masked frames shifts the output by 3.
  stack, variables = stack_and_params
  clip = jax.random.normal(jax.random.key(4), (1, 9, 16))
  out = stack(variables, clip, jnp.ones((1, 9), bool))
  shifted = jnp.concatenate([jnp.zeros((1, 3, 16)), clip], axis=1)
  out_shifted = stack(variables, shifted, jnp.arange(12)[None] >= 3)
  np.testing.assert_allclose(out_shifted[:, 3:], out, atol=1e-5)


def test_partial_stack_equals_first_blocks(stack_and_params):
  stack, variables = stack_and_params
  x = jax.random.normal(jax.random.key(5), (2, 12, 16))
  mask = jnp.ones((2, 12), bool)
  one = stack(variables, x, mask, num_layers=1)
  # Block 0 by hand, with the stack's shared bias.
  block = conformer.ConformerBlock(CFG)
  relpos = conformer.RelativePositionBias(2, bidirectional=True, num_buckets=8, max_distance=16)
  b = jax.jit(relpos.apply)({"params": variables["params"]["relpos"]}, jnp.arange(12),
                           jnp.arange(12))
  ref = jax.jit(block.apply)({"params": variables["params"]["block_0"]}, x, b, mask)
  np.testing.assert_allclose(one, ref, atol=1e-5)
  assert np.abs(one - stack(variables, x, mask)).max() > 1e-3
  np.testing.assert_allclose(stack(variables, x, mask, num_layers=0), x)


def test_bad_configs_are_errors():
  with pytest.raises(ValueError, match="divisible"):
    conformer.ConformerConfig(dim=10, num_heads=3)
  with pytest.raises(ValueError, match="buckets"):
    conformer.ConformerConfig(dim=8, num_heads=2, relpos_num_buckets=2)
