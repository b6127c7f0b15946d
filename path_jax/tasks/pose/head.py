"""Top-down pose heatmap head (``TopDownSimpleHead`` of the authors' code, REFERENCE.md §3.1).

Patch tokens on the ``(Hp, Wp)`` grid -> 2 x [transposed conv 4x4 stride 2 (no bias) ->
LayerNorm over channels (eps 1e-6) -> ReLU] -> 1x1 conv to K joints: heatmaps at 4x the patch
grid (64x48 for 256x192 crops). LayerNorm replaces BatchNorm (paper §4.4).

The transposed conv reproduces PyTorch ``ConvTranspose2d(k=4, s=2, p=1)``: the input is dilated by
the stride and padded by ``k - 1 - p = 2`` on each side, so the output is exactly twice the input,
aligned as in PyTorch. The kernel ``[4, 4, out, in]`` is PyTorch's weight ``[in, out, 4, 4]``
transposed by ``(2, 3, 1, 0)``, without a spatial flip (flax's ``ConvTranspose`` with
``transpose_kernel=True`` has the same parameter).

It is computed by phases (sub-pixel convolution) rather than as a convolution of the
stride-dilated input: output row ``2m + a`` only ever meets kernel rows ``(3, 1)`` (``a = 0``, input
rows ``m - 1, m``) or ``(2, 0)`` (``a = 1``, rows ``m, m + 1``), and likewise for columns, so the
layer is four 2x2 convolutions whose outputs interleave. The dilated form multiplies 16 taps per
output of which 12 meet inserted zeros; XLA:CPU does all 16, so the phase form is 4x cheaper there
(the pose heads were most of the multi-dataset step on CPU), and it is the same arithmetic
everywhere else. On TPU and GPU (``impl='dilated'``, chosen for the platform the model is built
for) it is one transposed convolution, which their compilers handle natively: the phase form's
four convolutions, stacks and interleaves are 11 heads' worth of extra program to compile in the
PATH step, for no saving there.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from path_jax.tasks.base import HeadInputs

_DECONV_KERNEL = 4   # PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1)


# Kernel taps met by output phase a (rows) or b (columns), in the order of the 2-tap window.
_PHASE_TAPS = ((3, 1), (2, 0))


class TorchDeconv(nn.Module):
  """PyTorch ``ConvTranspose2d(in, features, kernel_size=4, stride=2, padding=1, bias=False)``,
  NHWC, as four phase convolutions (module docstring). Parameter ``kernel [4, 4, features, in]``."""
  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  impl: str = "phase"   # 'phase' (four 2x2 convolutions) or 'dilated' (one transposed conv)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, cin = x.shape
    kernel = self.param("kernel", self.kernel_init,
                        (_DECONV_KERNEL, _DECONV_KERNEL, self.features, cin), jnp.float32)
    if self.impl == "dilated":
      return lax.conv_transpose(x.astype(self.dtype), kernel.astype(self.dtype), (2, 2),
                                ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                transpose_kernel=True)
    if self.impl != "phase":
      raise ValueError(f"pose deconv_impl must be 'phase' or 'dilated', got {self.impl!r}")
    kernel = jnp.transpose(kernel.astype(self.dtype), (0, 1, 3, 2))     # -> [kh, kw, in, out]
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = []
    for a in (0, 1):
      cols = []
      for c in (0, 1):
        # Static slices (taps 3, 1 or 2, 0): no gathers in the program.
        ra, rc = _PHASE_TAPS[a], _PHASE_TAPS[c]
        sub = kernel[ra[0]::ra[1] - ra[0]][:, rc[0]::rc[1] - rc[0]]                # [2, 2, in, out]
        window = xp[:, a:a + h + 1, c:c + w + 1]
        cols.append(lax.conv_general_dilated(window, sub, (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")))
      rows.append(jnp.stack(cols, axis=3))            # [B, H, W, 2 (column phase), F]
    y = jnp.stack(rows, axis=2)                        # [B, H, 2 (row phase), W, 2, F]
    return y.reshape(b, 2 * h, 2 * w, self.features)


class PoseHead(nn.Module):
  """Returns ``{'heatmaps': [B, 4*Hp, 4*Wp, num_joints] float32}`` (NHWC)."""
  num_joints: int
  deconv_features: Sequence[int] = (256, 256)
  dtype: Any = jnp.float32
  deconv_impl: str = "phase"   # TorchDeconv.impl: 'phase' on CPU, 'dilated' on TPU/GPU

  @nn.compact
  def __call__(self, inputs: HeadInputs, train: bool = False) -> dict[str, jax.Array]:
    del train  # no dropout or batch statistics in this head
    x = inputs.feature_map().astype(self.dtype)
    init = nn.initializers.normal(stddev=0.001)
    for i, features in enumerate(self.deconv_features):
      # Kernel layout [kh, kw, out, in]; the first layer's input axis is the backbone width.
      in_name = "embed" if i == 0 else None
      x = TorchDeconv(
          features, dtype=self.dtype, impl=self.deconv_impl,
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
