"""Box geometry in normalised coordinates: format conversion, IoU, GIoU, IoA.

Boxes are ``[..., 4]`` arrays, either ``cxcywh`` (centre x, centre y, width, height) or ``xyxy``
(x0, y0, x1, y1), in the same unit on both axes (fractions of the unpadded image, or pixels).
Pairwise functions take ``a [..., N, 4]`` and ``b [..., M, 4]`` and return ``[..., N, M]``;
element-wise ones broadcast ``a`` against ``b``. Divisions are guarded by ``EPS`` so degenerate
(zero-area) boxes, e.g. padding, give finite values and finite gradients.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Small enough not to change the value for any real box (areas of 1e-4 and up), large enough that
# a zero-area padded box does not produce 0/0 in the forward or backward pass.
EPS = 1e-7


def cxcywh_to_xyxy(b: jax.Array) -> jax.Array:
  cx, cy, w, h = jnp.moveaxis(b, -1, 0)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(b: jax.Array) -> jax.Array:
  x0, y0, x1, y1 = jnp.moveaxis(b, -1, 0)
  return jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def area(b_xyxy: jax.Array) -> jax.Array:
  """``[...]`` area of ``[..., 4]`` xyxy boxes (negative extents count as zero)."""
  return (jnp.maximum(b_xyxy[..., 2] - b_xyxy[..., 0], 0.0)
          * jnp.maximum(b_xyxy[..., 3] - b_xyxy[..., 1], 0.0))


def _inter_union_hull(a: jax.Array, b: jax.Array):
  """Element-wise (broadcast) intersection, union and enclosing-box areas of xyxy boxes."""
  lt = jnp.maximum(a[..., :2], b[..., :2])
  rb = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a) + area(b) - inter
  hull_wh = jnp.maximum(jnp.maximum(a[..., 2:], b[..., 2:]) - jnp.minimum(a[..., :2], b[..., :2]),
                        0.0)
  hull = hull_wh[..., 0] * hull_wh[..., 1]
  return inter, union, hull


def iou(a_xyxy: jax.Array, b_xyxy: jax.Array) -> jax.Array:
  """Element-wise IoU of broadcastable ``[..., 4]`` xyxy boxes."""
  inter, union, _ = _inter_union_hull(a_xyxy, b_xyxy)
  return inter / jnp.maximum(union, EPS)


def giou(a_xyxy: jax.Array, b_xyxy: jax.Array) -> jax.Array:
  """Element-wise generalised IoU (in [-1, 1]) of broadcastable ``[..., 4]`` xyxy boxes."""
  inter, union, hull = _inter_union_hull(a_xyxy, b_xyxy)
  union = jnp.maximum(union, EPS)
  return inter / union - (hull - union) / jnp.maximum(hull, EPS)


def ioa(a_xyxy: jax.Array, b_xyxy: jax.Array) -> jax.Array:
  """Element-wise intersection over the area of ``a`` (the prediction), broadcast."""
  inter, _, _ = _inter_union_hull(a_xyxy, b_xyxy)
  return inter / jnp.maximum(area(a_xyxy), EPS)


def _pairwise(fn):
  def pairwise(a: jax.Array, b: jax.Array) -> jax.Array:
    return fn(a[..., :, None, :], b[..., None, :, :])
  pairwise.__name__ = f"pairwise_{fn.__name__}"
  pairwise.__doc__ = (f"``[..., N, M]`` {fn.__name__} of ``a [..., N, 4]`` and "
                      "``b [..., M, 4]`` (xyxy).")
  return pairwise


pairwise_iou = _pairwise(iou)
pairwise_giou = _pairwise(giou)
pairwise_ioa = _pairwise(ioa)
