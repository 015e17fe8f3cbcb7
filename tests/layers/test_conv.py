"""Causal (transposed) convolutions: numpy references, causality, streaming, axis names."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.layers.conv import STREAM, CausalConv1d, CausalConvTranspose1d


def _init(layer, x):
  """The layer's variable tree, abstract (nothing compiled)."""
  return jax.eval_shape(layer.init, jax.random.key(0), x)


def _conv_reference(x, kernel, bias, stride, dilation):
  """Direct causal convolution: y[t] = sum_i x[t s - context + i d] W[i] (x < 0 is zero)."""
  b, t, _ = x.shape
  k = kernel.shape[0]
  context = (k - 1) * dilation + 1 - stride
  y = np.zeros((b, t // stride, kernel.shape[2]))
  for out in range(t // stride):
    for i in range(k):
      src = out * stride - context + i * dilation
      if src >= 0:
        y[:, out] += x[:, src] @ kernel[i]
  return y + bias


def _transposed_reference(x, kernel, bias, stride):
  """Full transposed convolution, then the causal trim to T * stride samples."""
  b, t, _ = x.shape
  k = kernel.shape[0]
  full = np.zeros((b, (t - 1) * stride + k, kernel.shape[2]))
  for src in range(t):
    for j in range(k):
      full[:, src * stride + j] += x[:, src] @ kernel[j]
  return full[:, :t * stride] + bias


def _random_params(variables, seed=1):
  """Non-zero biases too, so that a bias handled twice or never would show."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: rng.normal(size=l.shape).astype(np.float32), nn.unbox(variables))


@pytest.mark.parametrize("kernel_size,stride,dilation",
                         [(7, 1, 3), (4, 2, 1), (10, 5, 1), (1, 1, 1)])
def test_causal_conv_matches_reference(kernel_size, stride, dilation):
  x = np.random.default_rng(0).normal(size=(2, 20, 3)).astype(np.float32)
  layer = CausalConv1d(4, kernel_size, stride=stride, dilation=dilation)
  variables = _random_params(_init(layer, x))
  y = jax.jit(layer.apply)(variables, x)
  p = variables["params"]
  expected = _conv_reference(x, np.asarray(p["kernel"]), np.asarray(p["bias"]), stride, dilation)
  assert y.shape == (2, 20 // stride, 4)
  np.testing.assert_allclose(y, expected, atol=1e-4)


@pytest.mark.parametrize("kernel_size,stride", [(4, 2), (16, 8), (3, 3), (9, 3)])
def test_transposed_conv_matches_reference(kernel_size, stride):
  x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
  layer = CausalConvTranspose1d(4, kernel_size, stride)
  variables = _random_params(_init(layer, x))
  y = jax.jit(layer.apply)(variables, x)
  p = variables["params"]
  expected = _transposed_reference(x, np.asarray(p["kernel"]), np.asarray(p["bias"]), stride)
  assert y.shape == (2, 6 * stride, 4)
  np.testing.assert_allclose(y, expected, atol=1e-4)


def test_output_never_depends_on_the_future():
  layer = CausalConv1d(2, 6, stride=2, dilation=1)
  x = np.random.default_rng(0).normal(size=(1, 16, 2)).astype(np.float32)
  variables = _random_params(_init(layer, x))
  x2 = x.copy()
  x2[:, 9:] += 1.0                          # change input samples 9.. (output frames >= 4)
  apply = jax.jit(layer.apply)
  y, y2 = apply(variables, x), apply(variables, x2)
  np.testing.assert_array_equal(y[:, :4], y2[:, :4])
  assert not np.allclose(y[:, 4:], y2[:, 4:])


STREAMED_LAYERS = {
    "dilated": CausalConv1d(4, 7, dilation=3),
    "strided": CausalConv1d(4, 8, stride=4),
    "transposed": CausalConvTranspose1d(4, 8, 4),
}


@pytest.mark.parametrize("layer", STREAMED_LAYERS.values(), ids=STREAMED_LAYERS.keys())
def test_streaming_in_chunks_equals_whole_signal(layer):
  x = np.random.default_rng(0).normal(size=(2, 48, 3)).astype(np.float32)
  params = {"params": _random_params(_init(layer, x))["params"]}
  whole = jax.jit(layer.apply)(params, x)
  stream = jax.jit(functools.partial(layer.apply, streaming=True, mutable=[STREAM]))
  shapes = jax.eval_shape(functools.partial(layer.init, streaming=True), jax.random.key(0),
                          x[:, :4])[STREAM]
  state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)   # the start: zeros
  outs, start = [], 0
  for size in (4, 12, 4, 12, 16):          # chunk lengths: any multiple of the stride
    y, mutated = stream({**params, STREAM: state}, x[:, start:start + size])
    state = mutated[STREAM]
    outs.append(y)
    start += size
  np.testing.assert_allclose(np.concatenate(outs, axis=1), whole, atol=1e-5)


def test_streaming_state_holds_the_context_frames():
  layer = CausalConv1d(4, 7, dilation=2)   # context (7 - 1) * 2 = 12 frames
  x = jnp.ones((2, 4, 3))
  variables = jax.eval_shape(functools.partial(layer.init, streaming=True), jax.random.key(0),
                             x)
  assert variables[STREAM]["buffer"].shape == (2, 12, 3)


def test_parameters_carry_logical_axis_names():
  for layer in (CausalConv1d(4, 3), CausalConvTranspose1d(4, 4, 2)):
    specs = nn.get_partition_spec(_init(layer, jnp.ones((1, 4, 3))))["params"]
    assert tuple(specs["kernel"]) == ("conv_kernel", "conv_in", "conv_out")
    assert tuple(specs["bias"]) == ("conv_out",)


def test_bad_lengths_are_rejected():
  with pytest.raises(ValueError, match="multiple of the stride"):
    _init(CausalConv1d(4, 4, stride=2), jnp.ones((1, 5, 3)))
  with pytest.raises(ValueError, match="multiple of the stride"):
    _init(CausalConvTranspose1d(4, 5, 2), jnp.ones((1, 5, 3)))
  with pytest.raises(ValueError, match="shorter than the stride"):
    _init(CausalConv1d(4, 2, stride=4), jnp.ones((1, 8, 3)))


@pytest.mark.parametrize("channels, out, groups, length", [(16, 64, 4, 97), (64, 64, 16, 40),
                                                           (8, 16, 1, 33)])
def test_grouped_conv_equals_flax_conv_with_its_gradients(channels, out, groups, length):
  """`GroupedConv1d` (MelGAN's strided grouped convs) = `nn.Conv(feature_group_count=...)`:
  the same parameter tree, outputs and gradients for input and weights."""
  from audiolm_jax.layers.conv import GroupedConv1d
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, length, channels)), jnp.float32)
  ours = GroupedConv1d(out, 41, stride=4, padding=(20, 20), groups=groups)
  flax_conv = nn.Conv(out, (41,), strides=(4,), padding=((20, 20),), feature_group_count=groups)
  params = flax_conv.init(jax.random.key(1), x)
  assert (jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x))
          == jax.tree.map(jnp.shape, params))
  target = jnp.asarray(np.random.default_rng(1).normal(size=flax_conv.apply(params, x).shape))

  def loss(module, params, x):
    return jnp.sum(module.apply(params, x) * target)

  grads = jax.jit(lambda p, x: [jax.value_and_grad(loss, argnums=(1, 2))(m, p, x)
                                for m in (ours, flax_conv)])
  (value, (dp, dx)), (want_value, (want_dp, want_dx)) = grads(params, x)
  np.testing.assert_allclose(value, want_value, rtol=1e-5)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(dp), jax.tree.leaves(want_dp)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
