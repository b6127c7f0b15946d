"""Top-down pose heatmap head (``TopDownSimpleHead`` of the authors' code, REFERENCE.md §3.1).

Patch tokens on the ``(Hp, Wp)`` grid -> 2 x [transposed conv 4x4 stride 2 (no bias) ->
LayerNorm over channels (eps 1e-6) -> ReLU] -> 1x1 conv to K joints: heatmaps at 4x the patch
grid (64x48 for 256x192 crops). LayerNorm replaces BatchNorm (paper §4.4).

The transposed conv reproduces PyTorch ``ConvTranspose2d(k=4, s=2, p=1)``: the input is dilated by
the stride and padded by ``k - 1 - p = 2`` on each side, so the output is exactly twice the input,
aligned as in PyTorch. With ``transpose_kernel=True`` the kernel ``[4, 4, out, in]`` is PyTorch's
weight ``[in, out, 4, 4]`` transposed by ``(2, 3, 1, 0)``, without a spatial flip.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from path_jax.tasks.base import HeadInputs

# PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1) as explicit lax padding (k - 1 - p).
_DECONV_KERNEL = 4
_DECONV_PADDING = ((2, 2), (2, 2))


class PoseHead(nn.Module):
  """Returns ``{'heatmaps': [B, 4*Hp, 4*Wp, num_joints] float32}`` (NHWC)."""
  num_joints: int
  deconv_features: Sequence[int] = (256, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: HeadInputs, train: bool = False) -> dict[str, jax.Array]:
    del train  # no dropout or batch statistics in this head
    x = inputs.feature_map().astype(self.dtype)
    init = nn.initializers.normal(stddev=0.001)
    for i, features in enumerate(self.deconv_features):
      # Kernel layout [kh, kw, out, in]; the first layer's input axis is the backbone width.
      in_name = "embed" if i == 0 else None
      x = nn.ConvTranspose(
          features, (_DECONV_KERNEL, _DECONV_KERNEL), strides=(2, 2), padding=_DECONV_PADDING,
          use_bias=False, transpose_kernel=True, dtype=self.dtype,
          kernel_init=nn.with_logical_partitioning(init, (None, None, None, in_name)),
          name=f"deconv_{i}")(x)
      x = nn.LayerNorm(
          epsilon=1e-6, dtype=self.dtype,
          scale_init=nn.with_logical_partitioning(nn.initializers.ones, (None,)),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
          name=f"norm_{i}")(x)
      x = nn.relu(x)
    x = nn.Conv(
        self.num_joints, (1, 1), dtype=self.dtype,
        kernel_init=nn.with_logical_partitioning(init, (None, None, None, None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name="final")(x)
    return {"heatmaps": x.astype(jnp.float32)}
