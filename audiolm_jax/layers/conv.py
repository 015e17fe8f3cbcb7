"""Causal 1-D convolutions with a streaming state (SoundStream / SEANet).

Activations are NWC: `[B, T, C]` (B batch, T time steps, C channels). A causal convolution
looks only at the present and the past: the input is padded on the left with the
`context` frames the kernel reaches back, and nothing on the right, so a stride-`s`
convolution of `T` frames (a multiple of `s`) gives exactly `T / s` frames, and output frame
`t` never depends on input after `t * s + s - 1`.

Streaming. Called with `streaming=True`, a layer prepends the last `context` input frames it
has seen (zeros at the start, exactly the causal padding) instead of zero padding, and stores
the new last `context` frames. These buffers live in the linen collection `"stream"` (the
same idiom as the `"cache"` collection of autoregressive decoding), so the state is explicit:
it comes in with `apply({"params": p, "stream": s}, ...)` and goes out through
`mutable=["stream"]`. Feeding a signal chunk by chunk therefore gives the same output as
feeding it whole, for any chunk length that is a multiple of the stride.

Weight normalisation (Salimans & Kingma 2016; SoundStream, EnCodec and DAC use it on every
convolution). With `weight_norm=True` a layer stores a direction `kernel` and a per-output
`scale` and convolves with `scale * kernel / |kernel|` (the norm over taps and input
channels); `scale` starts at the norm of the initial kernel, so the layer starts as the plain
one would. `fold_weight_norm` turns such parameters into a plain kernel (for export, or for
weights imported from a checkpoint that used it).

Transposed convolution. `CausalConvTranspose1d` computes the causal (right-trimmed)
transposed convolution of SEANet/EnCodec, `y[n] = sum_t x[t] W[n - t s]` for
`0 <= n < T s`, in its polyphase form: a causal convolution with `k / s` taps and `s * C_out`
output channels followed by a depth-to-space reshape. That computes the minimum number of
multiply-adds (no zero-stuffed input), and its streaming state is, as for every other layer
here, a buffer of past input frames.

Grouped convolution. `GroupedConv1d` is `nn.Conv` with `feature_group_count` (same parameters,
same outputs and gradients) whose weight gradient is a batched contraction of input patches
rather than XLA:CPU's grouped lowering, 2-10x slower at MelGAN's shapes (`grouped_conv1d`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

# The linen collection that holds the streaming buffers.
STREAM = "stream"

_KERNEL_AXES = ("conv_kernel", "conv_in", "conv_out")
_BIAS_AXES = ("conv_out",)
_DIMENSION_NUMBERS = ("NWC", "WIO", "NWC")


def _kernel(module: nn.Module, shape: tuple[int, ...], weight_norm: bool,
            param_dtype: Dtype) -> Array:
  """The layer's kernel `[k, C_in, C_out]`, weight-normalised when asked (see above)."""
  kernel = module.param(
      "kernel", nn.with_logical_partitioning(nn.initializers.lecun_normal(), _KERNEL_AXES),
      shape, param_dtype)
  if not weight_norm:
    return kernel
  norm = lambda v: jnp.sqrt(jnp.sum(jnp.square(v.astype(jnp.float32)), axis=(0, 1)))   # [C_out]
  scale = module.param(
      "scale", nn.with_logical_partitioning(lambda _, __: norm(kernel).astype(param_dtype),
                                            _BIAS_AXES), shape[-1:])
  return (kernel * (scale / jnp.maximum(norm(kernel), 1e-12)).astype(kernel.dtype))


def fold_weight_norm(kernel: Array, scale: Array) -> Array:
  """The plain kernel of a weight-normalised one: `scale * kernel / |kernel|`."""
  norm = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=(0, 1)))
  return kernel * (scale / jnp.maximum(norm, 1e-12))


def _with_left_context(module: nn.Module, x: Array, context: int, streaming: bool):
  """Gives `x` its `context` frames of history.

  Returns `(x, padding)` for `lax.conv_general_dilated`. Not streaming: `x` unchanged and a
  left zero padding of `context` frames (done inside the convolution, no copy). Streaming:
  the buffered frames from the `"stream"` collection are prepended (zeros on the first call),
  the buffer is replaced by the last `context` frames, and no padding is needed.
  """
  if not streaming or context == 0:
    return x, ((context, 0),)
  buffer = module.variable(STREAM, "buffer", jnp.zeros, (x.shape[0], context, x.shape[2]),
                           x.dtype)
  x = jnp.concatenate([buffer.value, x], axis=1)  # [B, context + T, C]
  buffer.value = x[:, x.shape[1] - context:]
  return x, ((0, 0),)


class CausalConv1d(nn.Module):
  """Causal 1-D convolution, `[B, T, C_in] -> [B, T / stride, features]`.

  Attributes:
    features: output channels.
    kernel_size: taps of the kernel.
    stride: temporal stride; `T` must be a multiple of it.
    dilation: kernel dilation.
    use_bias: whether to add a bias.
    weight_norm: weight-normalised kernel (`kernel` direction and `scale` per output).
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """
  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  use_bias: bool = True
  weight_norm: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @property
  def context(self) -> int:
    """Past input frames each output needs beyond the current stride: `(k - 1) d + 1 - s`."""
    return (self.kernel_size - 1) * self.dilation + 1 - self.stride

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    if self.context < 0:
      raise ValueError(f"{self.name}: the receptive field ({self.context + self.stride}) is "
                       f"shorter than the stride ({self.stride}); some input would be skipped")
    if x.shape[1] % self.stride:
      raise ValueError(f"{self.name}: {x.shape[1]} frames is not a multiple of the stride "
                       f"{self.stride}")
    kernel = _kernel(self, (self.kernel_size, x.shape[-1], self.features), self.weight_norm,
                     self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, _BIAS_AXES),
                        (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    x, padding = _with_left_context(self, x, self.context, streaming)
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(self.stride,), padding=padding,
        rhs_dilation=(self.dilation,), dimension_numbers=_DIMENSION_NUMBERS)
    if bias is not None:
      y = y + bias
    return y


class CausalConvTranspose1d(nn.Module):
  """Causal transposed 1-D convolution (upsampling), `[B, T, C_in] -> [B, T * stride, features]`.

  The kernel is stored in the usual transposed-convolution layout `[k, C_in, C_out]`:
  input frame `t` adds `x[t] @ kernel[j]` to output sample `t * stride + j` (a PyTorch
  `ConvTranspose1d` weight `w[C_in, C_out, k]` is `w.permute(2, 0, 1)` here). The output is
  the first `T * stride` samples of the full transposed convolution, i.e. the causal trim of
  SEANet/EnCodec. It is computed as a causal convolution with `k / stride` taps over
  `stride * features` channels, then a depth-to-space reshape (see the module docstring).

  Attributes:
    features: output channels.
    kernel_size: taps of the transposed kernel; a multiple of `stride` (SEANet uses `2 s`).
    stride: upsampling factor.
    use_bias: whether to add a bias.
    weight_norm: weight-normalised kernel (`kernel` direction and `scale` per output).
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """
  features: int
  kernel_size: int
  stride: int
  use_bias: bool = True
  weight_norm: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @property
  def context(self) -> int:
    """Past input frames each output frame needs: `k / stride - 1`."""
    return self.kernel_size // self.stride - 1

  @nn.compact
  def __call__(self, x: Array, streaming: bool = False) -> Array:
    if self.kernel_size % self.stride:
      raise ValueError(f"{self.name}: kernel_size {self.kernel_size} must be a multiple of the "
                       f"stride {self.stride}")
    b, t, c_in = x.shape
    s, taps = self.stride, self.kernel_size // self.stride
    kernel = _kernel(self, (self.kernel_size, c_in, self.features), self.weight_norm,
                     self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, _BIAS_AXES),
                        (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # Tap m of the polyphase kernel holds W[m s : m s + s]; a causal convolution reads its
    # oldest input with its first tap, hence the flip.
    poly = kernel.reshape(taps, s, c_in, self.features)[::-1]      # [taps, s, C_in, C_out]
    poly = poly.transpose(0, 2, 1, 3).reshape(taps, c_in, s * self.features)
    x, padding = _with_left_context(self, x, self.context, streaming)
    y = jax.lax.conv_general_dilated(x, poly, window_strides=(1,), padding=padding,
                                     dimension_numbers=_DIMENSION_NUMBERS)  # [B, T, s C_out]
    y = y.reshape(b, t * s, self.features)
    if bias is not None:
      y = y + bias
    return y


class Snake(nn.Module):
  """Snake activation (Ziyin et al. 2020; DAC): `x + sin^2(alpha x) / alpha`, one learnt
  `alpha` per channel (initialised to 1), for `[..., C]` activations. Its periodic part suits
  waveforms; DAC reports clearly better reconstructions than with leaky ReLU."""
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    alpha = self.param("alpha", nn.with_logical_partitioning(nn.initializers.ones, _BIAS_AXES),
                       (x.shape[-1],), self.param_dtype).astype(x.dtype)
    return x + jnp.square(jnp.sin(alpha * x)) / (alpha + 1e-9)


def _grouped_conv(x: Array, w: Array, stride: int, padding: tuple[int, int],
                  groups: int) -> Array:
  return jax.lax.conv_general_dilated(x, w, (stride,), (padding,),
                                      dimension_numbers=("NWC", "WIO", "NWC"),
                                      feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _grouped_conv1d(x, w, stride, padding, groups):
  return _grouped_conv(x, w, stride, padding, groups)


def _grouped_fwd(x, w, stride, padding, groups):
  return _grouped_conv(x, w, stride, padding, groups), (x, w)


def _grouped_bwd(stride, padding, groups, res, g):
  """dx through XLA's own transposed convolution; dw as one batched contraction of the input's
  patches with g (XLA:CPU lowers the grouped weight gradient to a loop that took 3.2 s for
  one MelGAN layer, against 0.29 s for this)."""
  x, w = res
  _, dx_fn = jax.vjp(lambda x: _grouped_conv(x, w, stride, padding, groups), x)
  (dx,) = dx_fn(g)
  taps, group_in, out = w.shape
  batch, frames = g.shape[:2]
  xp = jnp.pad(x, ((0, 0), padding, (0, 0)))
  span = stride * (frames - 1) + 1
  patches = jnp.stack([xp[:, k:k + span:stride] for k in range(taps)], axis=2)  # [B, T', K, C]
  patches = patches.reshape(batch, frames, taps, groups, group_in)
  g = g.reshape(batch, frames, groups, out // groups)
  dw = jnp.einsum("btkgc,btgo->kcgo", patches, g).reshape(taps, group_in, out)
  return dx, dw.astype(w.dtype)


_grouped_conv1d.defvjp(_grouped_fwd, _grouped_bwd)


def grouped_conv1d(x: Array, w: Array, *, stride: int, padding: tuple[int, int],
                   groups: int) -> Array:
  """`lax.conv_general_dilated` with `feature_group_count=groups` on NWC `x [B, T, C_in]` and
  a WIO kernel `w [K, C_in / groups, C_out]` (nn.Conv's layout), with the same gradients but a
  weight gradient that XLA:CPU runs 2-10x faster (see `_grouped_bwd`)."""
  return _grouped_conv1d(x, w, stride, tuple(padding), groups)


class GroupedConv1d(nn.Module):
  """`nn.Conv(features, (K,), strides, padding, feature_group_count=groups)` for 1-D inputs,
  with the same parameters ("kernel" `[K, C_in / groups, C_out]`, "bias" `[C_out]`) and outputs,
  through `grouped_conv1d`."""
  features: int
  kernel_size: int
  stride: int
  padding: tuple[int, int]
  groups: int
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init,
                        (self.kernel_size, x.shape[-1] // self.groups, self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    kernel = jnp.asarray(kernel, x.dtype)
    if self.groups == 1:  # XLA's own gradients are fast without groups.
      y = _grouped_conv(x, kernel, self.stride, tuple(self.padding), 1)
    else:
      y = grouped_conv1d(x, kernel, stride=self.stride, padding=self.padding,
                         groups=self.groups)
    return y + jnp.asarray(bias, y.dtype)
