"""UDP Gaussian heatmap targets, as mmpose ``TopDownGenerateTarget(encoding='UDP')``, in NumPy.

Unbiased data processing (UDP) measures positions in pixel *centres* on both grids, so the
input-to-heatmap scale is ``(input_size - 1) / (heatmap_size - 1)`` rather than the stride. Each
visible joint gets a Gaussian of the given sigma centred at its exact sub-pixel heatmap position,
drawn inside the ``(6*sigma+1)``-wide square around the rounded position; everything else is 0.
"""
from __future__ import annotations

import numpy as np


def udp_heatmap_targets(keypoints: np.ndarray, image_size: tuple[int, int],
                        heatmap_size: tuple[int, int], sigma: float = 2.0
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Heatmaps and target weights of one person crop.

  Args:
    keypoints: ``[K, 3]`` ``(x, y, visibility)`` in input-image pixels (after the crop's affine
      transform); visibility as in COCO (0 unlabelled, 1 occluded, 2 visible), values above 1
      count as 1.
    image_size: network input ``(W, H)`` in pixels.
    heatmap_size: heatmap ``(w, h)`` in pixels.
    sigma: Gaussian standard deviation in heatmap pixels; ``3 * sigma`` must be a whole number
      (the window of mmpose is ``6 * sigma + 1`` pixels wide).
  Returns:
    ``heatmaps [K, h, w]`` float32 (``np.moveaxis(heatmaps, 0, -1)`` is the batch field
    ``'target'``) and ``target_weight [K]`` float32: the visibility, zeroed for joints whose
    window lies outside the heatmap (mmpose's test: ``ul >= size`` or ``br < 0``).
  """
  keypoints = np.asarray(keypoints, np.float64)
  if keypoints.ndim != 2 or keypoints.shape[1] != 3:
    raise ValueError(f"keypoints must be [K, 3] (x, y, visibility), got shape {keypoints.shape}.")
  radius = 3.0 * sigma
  if radius != int(radius):
    raise ValueError(f"sigma={sigma}: 3*sigma must be a whole number of heatmap pixels "
                     f"(mmpose's UDP window); use e.g. sigma=2 or 3.")
  radius = int(radius)
  w_in, h_in = image_size
  w_hm, h_hm = heatmap_size
  stride = np.array([(w_in - 1.0) / (w_hm - 1.0), (h_in - 1.0) / (h_hm - 1.0)])

  weight = np.minimum(keypoints[:, 2], 1.0).astype(np.float32)
  mu_exact = keypoints[:, :2] / stride                                  # [K, 2] heatmap pixels
  # int(v + 0.5) truncates toward zero in mmpose; np.trunc keeps that for negative positions.
  mu = np.trunc(mu_exact + 0.5).astype(np.int64)
  ul = mu - radius
  br = mu + radius + 1
  outside = (ul[:, 0] >= w_hm) | (ul[:, 1] >= h_hm) | (br[:, 0] < 0) | (br[:, 1] < 0)
  weight[outside] = 0.0

  xs = np.arange(w_hm)[None, :]                                         # [1, w]
  ys = np.arange(h_hm)[None, :]                                         # [1, h]
  in_x = np.abs(xs - mu[:, :1]) <= radius                               # [K, w]
  in_y = np.abs(ys - mu[:, 1:]) <= radius                               # [K, h]
  gx = np.exp(-np.square(xs - mu_exact[:, :1]) / (2 * sigma ** 2)) * in_x
  gy = np.exp(-np.square(ys - mu_exact[:, 1:]) / (2 * sigma ** 2)) * in_y
  heatmaps = gy[:, :, None] * gx[:, None, :]                            # [K, h, w]
  heatmaps *= (weight > 0.5)[:, None, None]
  return heatmaps.astype(np.float32), weight
