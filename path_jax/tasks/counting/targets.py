"""Density-map targets from point annotations (NumPy, run by the data pipeline on the host).

Conventions: a point (x, y) is in continuous pixel coordinates, pixel (row r, col c) covering
[c, c+1) x [r, r+1), so a point is inside an H x W image iff 0 <= x < W and 0 <= y < H. A density
map at output stride s has h = ceil(H / s) rows and w = ceil(W / s) columns; cell (i, j) covers
input pixels [j s, (j+1) s) x [i s, (i+1) s) and its centre is ((j + 0.5) s, (i + 0.5) s).

Each head contributes a separable Gaussian evaluated at the cell centres, truncated to the
(2r+1)^2 cells around the cell containing it (r = int(truncate * sigma / s + 0.5), the radius
scipy.ndimage.gaussian_filter uses), clipped at the image border and renormalised to unit mass,
so the map sums to the number of heads inside the image, also for heads at the border.
At stride 1 and for a head at a pixel centre away from the border this is exactly
``scipy.ndimage.gaussian_filter`` of the one-hot point image.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.tasks.counting.config import require


def _axis_weights(coord: np.ndarray, sigma: np.ndarray, size: int, truncate: float) -> np.ndarray:
  """[N] coordinates and sigmas in output cells -> [N, size] unit-mass 1-D kernels."""
  cells = np.arange(size, dtype=np.float64)[None, :]
  home = np.floor(coord)[:, None]
  radius = np.floor(truncate * sigma + 0.5)[:, None]
  d2 = (cells + 0.5 - coord[:, None]) ** 2
  # Subtract the smallest exponent so the home cell has weight 1 even for sigmas far below a
  # cell, where exp(-d2 / 2 sigma^2) alone underflows to 0 everywhere.
  z = d2 / (2.0 * sigma[:, None] ** 2)
  w = np.exp(-(z - z.min(axis=1, keepdims=True))) * (np.abs(cells - home) <= radius)
  return w / w.sum(axis=1, keepdims=True)


def density_map(points: np.ndarray, image_hw: tuple[int, int], stride: int,
                sigma: float | np.ndarray, truncate: float = 4.0) -> np.ndarray:
  """Gaussian density map of head points.

  Args:
    points: [N, 2] float (x, y) in input pixels; points outside the image are dropped.
    image_hw: (H, W) of the input image in pixels.
    stride: output stride s (the head's density-map stride).
    sigma: Gaussian std in input pixels, a float or one per point [N].
    truncate: kernel radius in sigmas.

  Returns:
    [ceil(H/s), ceil(W/s)] float32 map whose sum is the number of points inside the image.
  """
  points = np.asarray(points, np.float64).reshape(-1, 2)
  height, width = int(image_hw[0]), int(image_hw[1])
  h, w = -(-height // stride), -(-width // stride)
  sigma = np.broadcast_to(np.asarray(sigma, np.float64), (len(points),))
  if np.any(sigma <= 0):
    raise ValueError(f"density_map needs sigma > 0 (got min {sigma.min()}); set "
                     "counting.sigma to a positive number of pixels.")
  inside = ((points[:, 0] >= 0) & (points[:, 0] < width) &
            (points[:, 1] >= 0) & (points[:, 1] < height))
  points, sigma = points[inside], sigma[inside] / stride
  if not len(points):
    return np.zeros((h, w), np.float32)
  gx = _axis_weights(points[:, 0] / stride, sigma, w, truncate)     # [N, w]
  gy = _axis_weights(points[:, 1] / stride, sigma, h, truncate)     # [N, h]
  return (gy.T @ gx).astype(np.float32)


def adaptive_sigmas(points: np.ndarray, k: int, beta: float, lone_sigma: float) -> np.ndarray:
  """Geometry-adaptive sigmas (MCNN): beta x mean distance to the k nearest other points.

  Args:
    points: [N, 2] (x, y) pixels.
    k: number of neighbours; fewer are used when the image has fewer other points.
    beta: scale factor (MCNN: 0.3).
    lone_sigma: sigma of a point with no neighbour (an image with one head).

  Returns:
    [N] float64 sigmas in pixels, at least 1e-3 so coincident points stay valid.
  """
  points = np.asarray(points, np.float64).reshape(-1, 2)
  n = len(points)
  if n < 2:
    return np.full((n,), float(lone_sigma))
  from scipy.spatial import cKDTree  # scipy only on this host-side path
  kk = min(k, n - 1)
  dist, _ = cKDTree(points).query(points, k=kk + 1)   # column 0 is the point itself
  return np.maximum(beta * dist[:, 1:].mean(axis=1), 1e-3)


def make_targets(points: np.ndarray, image_hw: tuple[int, int],
                 cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The batch fields of one image from its head points, as the dataset ``cfg`` asks.

  Returns:
    'density': [ceil(H/s), ceil(W/s)] float32 (s = cfg.output_stride),
    'count': [] float32, the number of points inside the image (= density.sum()).
  """
  points = np.asarray(points, np.float64).reshape(-1, 2)
  knn = int(require(cfg, "adaptive_knn"))
  sigma = float(require(cfg, "sigma"))
  if knn > 0:
    sigma = adaptive_sigmas(points, knn, float(require(cfg, "adaptive_beta")), sigma)
  density = density_map(points, image_hw, int(require(cfg, "output_stride")), sigma,
                        float(require(cfg, "truncate")))
  inside = ((points[:, 0] >= 0) & (points[:, 0] < image_hw[1]) &
            (points[:, 1] >= 0) & (points[:, 1] < image_hw[0]))
  return {"density": density, "count": np.float32(inside.sum())}
