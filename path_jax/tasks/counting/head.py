"""Density-map regression head on the final backbone feature map.

A light CSRNet-style back end (Li et al., CVPR 2018: 3x3 convs + ReLU, a linear 1x1 output, convs
initialised N(0, 0.01)), with x2 bilinear upsamplings between the convs as in the upsampling
regression heads of DM-Count / C^3-Framework, because a ViT feature map has stride 16 where
CSRNet's VGG front end has 8. The authors' code has no counting head (REFERENCE.md §3.6).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from path_jax.tasks.base import HeadInputs

_ACTIVATIONS = ("linear", "relu")


class CountingHead(nn.Module):
  """Feature map [B, Hp, Wp, C] -> scaled density [B, ceil(H/s), ceil(W/s)].

  Outputs (dict): 'density' [B, h, w], the density map times ``density_scale`` (see config.py).
  Parameters: 'conv_0'..'conv_{n-1}' 3x3 {kernel, bias}, 'out' 1x1 {kernel [1,1,c,1], bias [1]}.
  """
  decoder_channels: Sequence[int]
  output_stride: int
  output_activation: str = "linear"

  @nn.compact
  def __call__(self, inputs: HeadInputs, *, train: bool) -> dict[str, jax.Array]:
    del train  # no dropout or batch statistics
    if self.output_activation not in _ACTIVATIONS:
      raise ValueError(f"counting output_activation {self.output_activation!r} is unknown; use "
                       f"one of {_ACTIVATIONS}.")
    (height, width), (hp, wp) = inputs.image_hw, inputs.grid
    stride = self.output_stride
    patch = stride * 2 ** (len(self.decoder_channels) - 1)
    if (hp, wp) != (-(-height // patch), -(-width // patch)):
      raise ValueError(
          f"counting decoder_channels {tuple(self.decoder_channels)} with output_stride {stride} "
          f"upsample a patch grid of stride {patch}, but the {height}x{width} input has a "
          f"{hp}x{wp} patch grid; make len(decoder_channels) - 1 = log2(patch size / "
          f"output_stride).")
    init = nn.initializers.normal(0.01)
    x = inputs.feature_map()
    for i, features in enumerate(self.decoder_channels):
      if i:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")   # align_corners=False
      x = nn.Conv(features, (3, 3), padding="SAME",
                  kernel_init=nn.with_logical_partitioning(
                      init, (None, None, "embed" if i == 0 else None, None)),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                  name=f"conv_{i}")(x)
      x = nn.relu(x)
    x = nn.Conv(1, (1, 1),
                kernel_init=nn.with_logical_partitioning(init, (None, None, None, None)),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                name="out")(x)[..., 0]
    if self.output_activation == "relu":
      x = nn.relu(x)
    # The patch padding of the input adds cells with no people: cut to the target's size.
    return {"density": x[:, :-(-height // stride), :-(-width // stride)]}
