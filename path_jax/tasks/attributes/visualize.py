"""Pictures of attribute predictions: each image next to the list of its attributes.

The list holds every attribute that is predicted or true, with its probability, coloured and
marked by outcome (ASCII marks, the default font has no check marks):

* ``"  name"`` green (:data:`path_jax.visualize.CORRECT`): predicted and true;
* ``"+ name"`` red (:data:`~path_jax.visualize.WRONG`): predicted but false (false positive);
* ``"- name"`` orange (:data:`~path_jax.visualize.MISSED`): true but not predicted;
* ``"? name"`` grey (:data:`~path_jax.visualize.NEUTRAL`): predicted, label missing (-1).

Without labels in the batch every predicted attribute is listed in cyan. A header line counts
right / wrong / missed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from path_jax import visualize as vis


def attribute_lines(pred: np.ndarray, probs: np.ndarray, truth: np.ndarray | None,
                    names: Sequence[str], max_lines: int = 24) -> list[tuple[str, vis.Colour]]:
  """Text lines for one example: ``pred [A]`` bool, ``probs [A]``, ``truth [A]`` in {-1, 0, 1}."""
  lines = []
  counts = {"right": 0, "wrong": 0, "missed": 0}
  for a in range(len(pred)):
    t = None if truth is None else int(truth[a])
    text = f"{names[a]} {probs[a]:.2f}"
    if t is None:
      if pred[a]:
        lines.append(("  " + text, vis.PRED))
    elif pred[a] and t == 1:
      counts["right"] += 1
      lines.append(("  " + text, vis.CORRECT))
    elif pred[a] and t == 0:
      counts["wrong"] += 1
      lines.append(("+ " + text, vis.WRONG))
    elif not pred[a] and t == 1:
      counts["missed"] += 1
      lines.append(("- " + text, vis.MISSED))
    elif pred[a] and t < 0:
      lines.append(("? " + text, vis.NEUTRAL))
  if len(lines) > max_lines:
    lines = lines[:max_lines - 1] + [(f"... {len(lines) - max_lines + 1} more", vis.WHITE)]
  if truth is None:
    header = f"{int(np.sum(pred))} predicted"
  else:
    header = f"{counts['right']} right {counts['wrong']} wrong {counts['missed']} missed"
  return [(header, vis.WHITE)] + lines


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 8, *, names: Sequence[str] | None = None, max_lines: int = 24,
         max_side: int | None = 256) -> np.ndarray:
  """Grid of [image | attribute list] tiles: ``[H', W', 3]`` uint8.

  Args:
    batch: ``'image' [B, H, W, 3]``, optional ``'labels' [B, A]`` in {-1, 0, 1}.
    predictions: :meth:`AttributeTask.decode` output: ``'pred' [B, A]`` bool and ``'probs'``.
    cfg: the dataset config; ``names`` defaults to its ``attr_names`` if it has one (the TFDS
      metadata of ``data/attributes`` carries them), else ``attr_0 .. attr_{A-1}``.
    max_lines: longer lists are cut, with a count of the rest. max_side: images shrink to this.
  """
  images, = vis.take(batch, ["image"], "attributes batch")
  pred, = vis.take(predictions, ["pred"], "attributes predictions")
  pred = pred.astype(bool)
  probs = np.asarray(predictions.get("probs", pred), np.float64)
  n = vis.num_examples(images.shape[0], max_examples)
  num = pred.shape[1]
  names = list(names if names is not None else cfg.get("attr_names", None) or
               [f"attr_{a}" for a in range(num)])
  if len(names) != num:
    raise ValueError(f"{len(names)} attribute names for {num} predicted attributes; pass one name "
                     "per attribute (draw(..., names=...) or the dataset config's attr_names).")
  truth = np.asarray(batch["labels"]) if "labels" in batch else None
  tiles = []
  for i in range(n):
    image, _ = vis.fit(vis.as_image(images[i], "attributes batch['image']"), max_side)
    lines = attribute_lines(pred[i], probs[i], None if truth is None else truth[i], names,
                            max_lines)
    panel = vis.caption(np.zeros((0, 1, 3), np.uint8), lines)
    tiles.append(vis.hstack([image, panel]))
  return vis.grid(tiles)
