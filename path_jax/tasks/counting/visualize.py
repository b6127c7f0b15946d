"""Pictures of counting predictions: density maps in heat colours with the counts written below.

Each example is a row of [image | predicted density | true density]. Both maps of a row share
one colour scale (0 -> black, the larger of the two maps' maxima -> white; see
:func:`path_jax.visualize.heat_colours`), so brighter means more heads per pixel in either
panel; each map is upsampled (nearest) from its stride-``s`` cells to the image size. The
predicted and true counts are written under their panels.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax import visualize as vis


def density_panel(density: np.ndarray, hw: tuple[int, int], vmax: float) -> np.ndarray:
  """``[h, w]`` density cells -> ``[H, W, 3]`` heat colours, cell (i, j) filling its block.

  Cell (i, j) covers the pixels ``[i*H/h, (i+1)*H/h) x [j*W/w, (j+1)*W/w)`` of the panel, the
  map's stride-s geometry when ``H = s*h``.
  """
  density = np.asarray(density, np.float64)
  if density.ndim == 3 and density.shape[-1] == 1:
    density = density[..., 0]
  rows = np.minimum((np.arange(hw[0]) * density.shape[0]) // hw[0], density.shape[0] - 1)
  cols = np.minimum((np.arange(hw[1]) * density.shape[1]) // hw[1], density.shape[1] - 1)
  return vis.heat_colours(density[rows][:, cols], vmax)


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 4, *, max_side: int | None = 320) -> np.ndarray:
  """Rows of [image | predicted density | true density] with counts: ``[H', W', 3]`` uint8.

  Args:
    batch: ``'image' [B, H, W, 3]``; optional ``'density' [B, h, w]``, ``'count' [B]`` (truth)
      and ``'image_hw' [B, 2]`` (the unpadded size; only that part is shown).
    predictions: :meth:`CountingTask.decode` output: ``'density' [B, h, w]`` (heads per cell),
      ``'count' [B]``.
    cfg: the dataset config (``output_stride``: the stride of the maps, default 4).
    max_side: images are shrunk to this first.
  """
  images, = vis.take(batch, ["image"], "counting batch")
  pred, pred_count = vis.take(predictions, ["density", "count"], "counting predictions")
  n = vis.num_examples(images.shape[0], max_examples)
  stride = int(cfg.get("output_stride", 4))
  truth = np.asarray(batch["density"]) if "density" in batch else None
  true_count = np.asarray(batch["count"]).reshape(-1) if "count" in batch else None
  if true_count is None and truth is not None:
    true_count = truth.reshape(truth.shape[0], -1).sum(-1)
  rows = []
  for i in range(n):
    h, w = (int(v) for v in batch["image_hw"][i]) if "image_hw" in batch else images.shape[1:3]
    image, _ = vis.fit(vis.as_image(images[i, :h, :w], "counting batch['image']"), max_side)
    # Cells that cover the unpadded image: ceil(h / s) x ceil(w / s).
    ch, cw = -(-h // stride), -(-w // stride)
    maps = [np.asarray(pred[i], np.float64)[:ch, :cw]]
    if truth is not None:
      maps.append(np.asarray(truth[i], np.float64)[:ch, :cw])
    vmax = max(float(m.max()) for m in maps)
    pred_lines = [(f"pred {float(pred_count[i]):.1f}", vis.PRED)]
    if truth is None and true_count is not None:   # a count without a map: write it here
      pred_lines.append((f"true {float(true_count[i]):.1f}", vis.TRUE))
    panels = [vis.caption(image, ["image"]),
              vis.caption(density_panel(maps[0], image.shape[:2], vmax), pred_lines)]
    if truth is not None:
      panels.append(vis.caption(density_panel(maps[1], image.shape[:2], vmax),
                                [(f"true {float(true_count[i]):.1f}", vis.TRUE)]))
    rows.append(vis.hstack(panels))
  return vis.grid(rows, cols=1)
