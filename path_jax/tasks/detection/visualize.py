"""Pictures of detection predictions: boxes with scores, truth and ignore regions.

On each (unpadded) image: ignore regions hatched grey (:data:`path_jax.visualize.NEUTRAL`),
true boxes in magenta, predicted boxes scoring at least ``score_threshold`` in cyan with their
score written above them (predictions drawn last, highest score on top; when none reaches the
threshold, the caption gives the best score). Boxes are outlined on
the pixels they cover (continuous coordinates: a box from x1 to x2 covers columns
``floor(x1) .. ceil(x2) - 1``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax import visualize as vis


def _xyxy(boxes: np.ndarray) -> np.ndarray:
  """cxcywh ``[N, 4]`` -> xyxy ``[N, 4]`` float64 (same units)."""
  cx, cy, w, h = np.moveaxis(np.asarray(boxes, np.float64).reshape(-1, 4), -1, 0)
  return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def box_pixels(xyxy: np.ndarray, hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
  """Inclusive pixel rectangle ``(c0, r0, c1, r1)`` covered by a continuous xyxy box, clipped to
  an image of size ``hw``; None if nothing of it is inside."""
  x1, y1, x2, y2 = (float(v) for v in xyxy)
  c0, r0 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
  c1, r1 = min(int(np.ceil(x2)) - 1, hw[1] - 1), min(int(np.ceil(y2)) - 1, hw[0] - 1)
  if c1 < c0 or r1 < r0:
    return None
  return c0, r0, c1, r1


def hatch(image: np.ndarray, rect: tuple[int, int, int, int], colour: vis.Colour,
          period: int = 6) -> np.ndarray:
  """``image`` with diagonal stripes of ``colour`` (one pixel in ``period/3``) inside ``rect``."""
  c0, r0, c1, r1 = rect
  out = image.copy()
  rows, cols = np.mgrid[r0:r1 + 1, c0:c1 + 1]
  stripe = (rows + cols) % period < max(1, period // 3)
  out[r0:r1 + 1, c0:c1 + 1][stripe] = np.asarray(colour, np.uint8)
  return out


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 4, *, score_threshold: float = 0.5, max_boxes: int = 100,
         line_width: int = 2, max_side: int | None = 640) -> np.ndarray:
  """Grid of images with predicted, true and ignored boxes: ``[H', W', 3]`` uint8.

  Args:
    batch: ``'image' [B, H, W, 3]`` (zero-padded canvas), ``'image_hw' [B, 2]`` (unpadded size;
      the whole canvas if absent), optional ``'boxes'``/``'box_mask'`` and
      ``'ignore_boxes'``/``'ignore_mask'`` (normalised cxcywh, see the package docstring) and
      ``'orig_hw'``.
    predictions: :meth:`DetectionTask.decode` output: ``'scores' [B, Q]``, ``'boxes' [B, Q, 4]``
      xyxy pixels of ``orig_hw`` when the batch has it, else of ``image_hw``.
    cfg: the dataset config (unused: boxes carry their own scale; kept for the common
      signature).
    score_threshold: predictions below it are not drawn. max_boxes: at most this many
      predictions per image, highest scores first. max_side: images are shrunk to this first.
  """
  del cfg
  images, = vis.take(batch, ["image"], "detection batch")
  scores, pred = vis.take(predictions, ["scores", "boxes"], "detection predictions")
  n = vis.num_examples(images.shape[0], max_examples)
  canvas_hw = np.broadcast_to(np.array(images.shape[1:3]), (images.shape[0], 2))
  image_hw = np.asarray(batch.get("image_hw", canvas_hw)).astype(np.int64)
  pred_hw = np.asarray(batch.get("orig_hw", image_hw), np.float64)
  tiles = []
  for i in range(n):
    h, w = (int(v) for v in image_hw[i])
    image, scale = vis.fit(vis.as_image(images[i, :h, :w], "detection batch['image']"), max_side)
    hw = image.shape[:2]
    to_tile = np.array([w, h, w, h], np.float64) * scale   # normalised -> tile pixels
    ignore_rects = []
    if "ignore_boxes" in batch:
      keep = np.asarray(batch.get("ignore_mask", np.ones(batch["ignore_boxes"].shape[:2], bool)))
      boxes = _xyxy(np.asarray(batch["ignore_boxes"])[i][keep[i]])
      ignore_rects = [r for r in (box_pixels(b, hw) for b in boxes * to_tile) if r is not None]
    for rect in ignore_rects:
      image = hatch(image, rect, vis.NEUTRAL)
    pil, d = vis.draw_on(image)
    for rect in ignore_rects:
      d.rectangle(rect, outline=vis.NEUTRAL, width=1)
    num_true = 0
    if "boxes" in batch:
      keep = np.asarray(batch.get("box_mask", np.ones(batch["boxes"].shape[:2], bool)))
      true = _xyxy(np.asarray(batch["boxes"])[i][keep[i]]) * to_tile
      num_true = len(true)
      for box in true:
        rect = box_pixels(box, hw)
        if rect is not None:
          d.rectangle(rect, outline=vis.TRUE, width=line_width)
    # Predicted pixels -> tile pixels: the decoder's scale (orig or unpadded) to the unpadded size.
    to_unpadded = np.array([w / pred_hw[i, 1], h / pred_hw[i, 0]] * 2) * scale
    order = np.argsort(-scores[i], kind="stable")
    order = order[scores[i][order] >= score_threshold][:max_boxes]
    for q in order[::-1]:   # lowest first, so the best box ends on top
      rect = box_pixels(np.asarray(pred[i, q], np.float64) * to_unpadded, hw)
      if rect is None:
        continue
      d.rectangle(rect, outline=vis.PRED, width=line_width)
      label = f"{scores[i, q]:.2f}"
      ty = rect[1] - vis.LINE_HEIGHT if rect[1] >= vis.LINE_HEIGHT else rect[1] + line_width
      d.text((rect[0] + line_width, ty), label, fill=vis.PRED, font=vis.font())
    shown = f"{len(order)} predicted >= {score_threshold:g}"
    if not len(order) and scores.shape[1]:   # say how far below the threshold the best one is
      shown += f" (best {float(np.max(scores[i])):.2f})"
    lines = [(shown, vis.PRED)]
    if "boxes" in batch:
      lines.append((f"{num_true} true", vis.TRUE))
    tiles.append(vis.caption(np.asarray(pil), lines))
  return vis.grid(tiles)
