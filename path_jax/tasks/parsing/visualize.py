"""Pictures of parsing predictions: class colours blended on the image, next to the truth.

Each example is a row of three panels: the input, the predicted labels blended on it, and (when
the batch has ``'label'``) the true labels blended the same way. Class ``c`` has colour
``label_palette(num_classes)[c]`` (:func:`path_jax.visualize.label_palette`; class 0 black);
background pixels (class 0) and ignored pixels (``ignore_label``) are left as the image.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image

from path_jax import visualize as vis


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.6,
            ignore_label: int = 255) -> np.ndarray:
  """``image [H, W, 3]`` with ``palette[labels]`` blended where ``labels [H, W]`` is a class > 0.

  Labels outside ``[0, len(palette))`` (other than ``ignore_label``) are an error: they mean the
  config's ``num_classes`` does not fit the data.
  """
  labels = np.asarray(labels).astype(np.int64)
  real = labels != ignore_label
  if np.any(real & ((labels < 0) | (labels >= len(palette)))):
    bad = np.unique(labels[real & ((labels < 0) | (labels >= len(palette)))])[:10]
    raise ValueError(f"parsing labels {bad.tolist()} are outside [0, {len(palette)}); set the "
                     "dataset config's num_classes to cover them.")
  colours = palette[np.where(real, labels, 0)]
  return vis.blend(image, colours, real & (labels > 0), alpha)


def _resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  if labels.shape == hw:
    return labels
  # int32 ('I' mode) so that no label id wraps; nearest keeps ids exact.
  pil = Image.fromarray(labels.astype(np.int32)).resize((hw[1], hw[0]), Image.Resampling.NEAREST)
  return np.asarray(pil)


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 4, *, alpha: float = 0.6, max_side: int | None = 320) -> np.ndarray:
  """Rows of [image | prediction overlay | truth overlay] for up to ``max_examples`` examples.

  Args:
    batch: ``'image' [B, H, W, 3]``, optional ``'label' [B, H, W]`` (255 = ignore).
    predictions: :meth:`ParsingTask.decode` output, ``'label' [B, H, W]`` class ids.
    cfg: the dataset config (``num_classes``, ``ignore_label``).
    alpha: opacity of the class colours. max_side: images are shrunk to this size first.
  Returns ``[H', W', 3]`` uint8.
  """
  images, pred = vis.take(batch, ["image"], "parsing batch") + vis.take(
      predictions, ["label"], "parsing predictions")
  n = vis.num_examples(images.shape[0], max_examples)
  num_classes = int(cfg.get("num_classes", int(pred.max()) + 1))
  ignore = int(cfg.get("ignore_label", 255))
  palette = vis.label_palette(num_classes)
  truth = np.asarray(batch["label"]) if "label" in batch else None
  rows = []
  for i in range(n):
    image, _ = vis.fit(vis.as_image(images[i], "parsing batch['image']"), max_side)
    hw = image.shape[:2]
    panels = [vis.caption(image, ["image"]),
              vis.caption(overlay(image, _resize_labels(pred[i], hw), palette, alpha, ignore),
                          [("prediction", vis.PRED)])]
    if truth is not None:
      t = truth[i][..., 0] if truth[i].ndim == 3 else truth[i]
      panels.append(vis.caption(overlay(image, _resize_labels(t, hw), palette, alpha, ignore),
                                [("truth", vis.TRUE)]))
    rows.append(vis.hstack(panels))
  return vis.grid(rows, cols=1)
