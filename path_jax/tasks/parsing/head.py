"""Human-parsing decoder (``ViT_SimpleUpSampling`` of the authors' code, REFERENCE.md §3.2).

Patch tokens ``[B, Hp*Wp, C]`` -> conv3x3 C->F, LayerNorm, ReLU -> conv3x3 F->F, LayerNorm, ReLU
-> bilinear x2 (align_corners=True) -> conv3x3 F->num_classes -> bilinear to the input size
(align_corners=True). LayerNorm over channels replaces BatchNorm (paper §4.4): heads of
different datasets see features from one shared projector, so batch statistics would mix domains.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from path_jax.tasks.base import HeadInputs
from path_jax.tasks.parsing.resize import resize_bilinear_align_corners


def torch_conv_kernel_init():
  """PyTorch's default Conv2d weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_conv_bias_init(fan_in: int):
  """PyTorch's default Conv2d bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class ConvNormReLU(nn.Module):
  """conv3x3 (stride 1, padding 1, with bias) -> LayerNorm over channels (eps 1e-6) -> ReLU."""
  features: int
  in_axis_name: str | None = None   # logical name of the input-channel axis of the kernel
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = 9 * x.shape[-1]
    x = nn.Conv(
        self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
        kernel_init=nn.with_logical_partitioning(
            torch_conv_kernel_init(), (None, None, self.in_axis_name, None)),
        bias_init=nn.with_logical_partitioning(torch_conv_bias_init(fan_in), (None,)),
        name="conv")(x)
    x = nn.LayerNorm(
        epsilon=1e-6, dtype=self.dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (None,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name="norm")(x)
    return nn.relu(x)


class ParsingHead(nn.Module):
  """Returns ``{'logits': [B, H, W, num_classes] float32}`` at the input size ``image_hw``."""
  num_classes: int
  features: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: HeadInputs, train: bool = False) -> dict[str, jax.Array]:
    del train  # no dropout or batch statistics in this head
    x = inputs.feature_map().astype(self.dtype)
    hp, wp = inputs.grid
    x = ConvNormReLU(self.features, in_axis_name="embed", dtype=self.dtype, name="block_0")(x)
    x = ConvNormReLU(self.features, dtype=self.dtype, name="block_1")(x)
    x = resize_bilinear_align_corners(x, (2 * hp, 2 * wp))
    fan_in = 9 * self.features
    x = nn.Conv(
        self.num_classes, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
        kernel_init=nn.with_logical_partitioning(
            torch_conv_kernel_init(), (None, None, None, None)),
        bias_init=nn.with_logical_partitioning(torch_conv_bias_init(fan_in), (None,)),
        name="classifier")(x)
    # Resizing the few class channels (not the 256 features) to full size keeps this cheap.
    x = resize_bilinear_align_corners(x.astype(jnp.float32), tuple(inputs.image_hw))
    return {"logits": x}
