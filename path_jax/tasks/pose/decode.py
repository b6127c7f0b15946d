"""Pose inference: flip-test averaging, argmax + DARK/UDP sub-pixel refinement, image coordinates.

Follows mmpose ``keypoints_from_heatmaps(use_udp=True, target_type='GaussianHeatmap')`` with
``post_dark_udp``: blur every heatmap with an 11x11 Gaussian (OpenCV's sigma for that size, 2.0,
and its reflect-101 border), take the log, and move the integer argmax by one Newton step
``-H^{-1} g`` with central-difference gradient and Hessian (edge-padded). All jnp, jit-able. The
blur is two banded matrix products, which suits TPU matrix units.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from path_jax.tasks.pose.loss import heatmap_argmax

_HIGHEST = jax.lax.Precision.HIGHEST


def opencv_gaussian_sigma(kernel: int) -> float:
  """The sigma OpenCV's ``GaussianBlur`` derives when given sigma 0 (2.0 for kernel 11)."""
  return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def _reflect101(idx: np.ndarray, n: int) -> np.ndarray:
  """OpenCV BORDER_REFLECT_101 index map (``dcb|abcd|cba``) for any integer index."""
  if n == 1:
    return np.zeros_like(idx)
  period = 2 * (n - 1)
  m = np.mod(idx, period)
  return np.where(m < n, m, period - m)


def blur_matrix(n: int, kernel: int = 11) -> np.ndarray:
  """``[n, n]`` float32 matrix of a 1-D Gaussian blur (OpenCV sigma, reflect-101 border)."""
  if kernel % 2 != 1:
    raise ValueError(f"DARK blur kernel must be odd, got {kernel}.")
  r = kernel // 2
  t = np.arange(-r, r + 1)
  g = np.exp(-t.astype(np.float64) ** 2 / (2 * opencv_gaussian_sigma(kernel) ** 2))
  g /= g.sum()
  m = np.zeros((n, n), np.float64)
  rows = np.repeat(np.arange(n), kernel)
  cols = _reflect101(np.arange(n)[:, None] + t[None, :], n).reshape(-1)
  np.add.at(m, (rows, cols), np.tile(g, n))
  return m.astype(np.float32)


def gaussian_blur(heatmaps: jax.Array, kernel: int = 11) -> jax.Array:
  """Separable OpenCV-style Gaussian blur of ``[B, H, W, K]`` heatmaps (each map on its own)."""
  _, h, w, _ = heatmaps.shape
  mh = jnp.asarray(blur_matrix(h, kernel))
  mw = jnp.asarray(blur_matrix(w, kernel))
  x = jnp.einsum("oh,bhwk->bowk", mh, heatmaps, precision=_HIGHEST)
  return jnp.einsum("pw,bowk->bopk", mw, x, precision=_HIGHEST)


def post_dark_udp(coords: jax.Array, heatmaps: jax.Array, kernel: int = 11) -> jax.Array:
  """Refines integer peaks ``coords [B, K, 2]`` (x, y) to sub-pixel ones on ``[B, H, W, K]`` maps.

  Returns refined ``[B, K, 2]`` float32 heatmap coordinates. Joints whose Hessian is singular keep
  their integer position.
  """
  b, h, w, k = heatmaps.shape
  logh = jnp.log(jnp.clip(gaussian_blur(heatmaps.astype(jnp.float32), kernel), 0.001, 50.0))
  pad = jnp.pad(jnp.moveaxis(logh, -1, 1), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
  flat = pad.reshape(b, k, (h + 2) * (w + 2))
  x = jnp.clip(coords[..., 0].astype(jnp.int32), 0, w - 1) + 1
  y = jnp.clip(coords[..., 1].astype(jnp.int32), 0, h - 1) + 1

  def at(dx, dy):
    idx = (y + dy) * (w + 2) + (x + dx)
    return jnp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]

  i0 = at(0, 0)
  ix1, ix1_ = at(1, 0), at(-1, 0)
  iy1, iy1_ = at(0, 1), at(0, -1)
  ix1y1, ix1_y1_ = at(1, 1), at(-1, -1)
  gx = 0.5 * (ix1 - ix1_)
  gy = 0.5 * (iy1 - iy1_)
  eps = np.finfo(np.float32).eps                 # mmpose regularises the Hessian by eps * I
  dxx = ix1 - 2 * i0 + ix1_ + eps
  dyy = iy1 - 2 * i0 + iy1_ + eps
  dxy = 0.5 * (ix1y1 - ix1 - iy1 + 2 * i0 - ix1_ - iy1_ + ix1_y1_)
  det = dxx * dyy - dxy * dxy
  ok = det != 0
  inv_det = jnp.where(ok, 1.0 / jnp.where(ok, det, 1.0), 0.0)
  step_x = inv_det * (dyy * gx - dxy * gy)
  step_y = inv_det * (dxx * gy - dxy * gx)
  return coords.astype(jnp.float32) - jnp.stack([step_x, step_y], axis=-1)


def flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
  """Joint permutation ``[K]`` that swaps each left/right pair (identity elsewhere)."""
  perm = np.arange(num_joints)
  for a, b in flip_pairs:
    if not (0 <= a < num_joints and 0 <= b < num_joints):
      raise ValueError(f"flip pair ({a}, {b}) is out of range for {num_joints} joints; "
                       f"fix the dataset's `flip_pairs` or `num_joints`.")
    perm[a], perm[b] = b, a
  return perm


def flip_back(heatmaps_flipped: jax.Array, flip_pairs: Sequence[Sequence[int]]) -> jax.Array:
  """Heatmaps ``[B, H, W, K]`` of the horizontally flipped image, mapped back to the original.

  Swaps each left/right joint pair and flips along width. Under UDP a pixel flip ``x -> W-1-x``
  maps to ``x -> w-1-x`` on the heatmap exactly, so no one-pixel shift is needed (the authors run
  with ``shift_heatmap False``).
  """
  perm = flip_permutation(heatmaps_flipped.shape[-1], flip_pairs)
  return heatmaps_flipped[:, :, ::-1, :][..., perm]


def decode_heatmaps(heatmaps: jax.Array, image_hw: tuple[int, int],
                    heatmaps_flipped: jax.Array | None = None,
                    flip_pairs: Sequence[Sequence[int]] = (), kernel: int = 11
                    ) -> dict[str, jax.Array]:
  """Keypoints from heatmaps.

  Args:
    heatmaps: ``[B, h, w, K]`` head output. image_hw: network input ``(H, W)`` in pixels.
    heatmaps_flipped: optional head output on the flipped image; averaged in after
      :func:`flip_back`.
  Returns:
    ``'keypoints' [B, K, 2]``: (x, y) in input-image pixels, ``heatmap * (input - 1) / (h - 1)``
    (UDP); ``'scores' [B, K]``: the peak heatmap value (of the averaged maps, before blurring);
    ``'heatmap_xy' [B, K, 2]``: the refined heatmap position.
  """
  heatmaps = heatmaps.astype(jnp.float32)
  if heatmaps_flipped is not None:
    heatmaps = 0.5 * (heatmaps + flip_back(heatmaps_flipped.astype(jnp.float32), flip_pairs))
  _, h, w, _ = heatmaps.shape
  xy, scores = heatmap_argmax(heatmaps)
  xy = post_dark_udp(xy, heatmaps, kernel)
  scale = jnp.asarray([(image_hw[1] - 1.0) / (w - 1.0), (image_hw[0] - 1.0) / (h - 1.0)])
  return {"keypoints": xy * scale, "scores": scores, "heatmap_xy": xy}


def crop_to_image(keypoints: jax.Array, image_hw: tuple[int, int], center: jax.Array,
                  box_size: jax.Array) -> jax.Array:
  """Maps input-crop keypoints ``[B, K, 2]`` to original-image pixels (mmpose UDP transform_preds).

  ``center [B, 2]`` and ``box_size [B, 2]`` (w, h) describe the crop in the original image, in
  pixels (mmpose's ``scale * 200``): ``x = x_in * box / (input - 1) + center - box / 2``.
  """
  in_wh = jnp.asarray([image_hw[1] - 1.0, image_hw[0] - 1.0])
  box = box_size[:, None, :].astype(jnp.float32)
  return keypoints * box / in_wh + center[:, None, :] - 0.5 * box
