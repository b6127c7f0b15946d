"""Pictures of attribute predictions: each image next to the list of its attributes.

The list holds every attribute that is predicted or true, with its probability, coloured and
marked by outcome (ASCII marks, the default font has no check marks):

* ``"  name"`` green (:data:`path_jax.visualize.CORRECT`): predicted and true;
* ``"+ name"`` red (:data:`~path_jax.visualize.WRONG`): predicted but false (false positive);
* ``"- name"`` orange (:data:`~path_jax.visualize.MISSED`): true but not predicted;
* ``"? name"`` grey (:data:`~path_jax.visualize.NEUTRAL`): predicted, label missing (-1).

Without labels in the batch every predicted attribute is listed in cyan. A header line counts
right / wrong / missed. Attribute names come from the prepared dataset's ``metadata.json``
(``attr_names``, written by ``data/attributes``) unless given; ``attr_<i>`` where there are none.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from path_jax import visualize as vis


def dataset_attribute_names(cfg: Mapping[str, Any], num: int) -> list[str]:
  """One name per attribute for the dataset config ``cfg``.

  In order: the config's ``attribute_names`` or ``attr_names`` (if set), else ``attr_names`` of
  the builder's ``metadata.json`` beside the prepared ``tfds_name`` in ``data_dir`` (what
  :func:`path_jax.train.read_metadata` reads), else ``attr_0 .. attr_{num-1}``. Names from the
  metadata are used only when there is one per predicted attribute.
  """
  def get(key):
    return None if cfg is None else cfg.get(key, None)

  for key in ("attribute_names", "attr_names"):
    if get(key):
      return [str(n) for n in get(key)]
  names, tfds_name, data_dir = None, get("tfds_name"), get("data_dir")
  if tfds_name and data_dir:
    from path_jax.input import sources   # NumPy only, no TensorFlow
    try:
      path = os.path.join(sources.dataset_dir(str(tfds_name), str(data_dir)), "metadata.json")
      with open(path) as f:
        names = json.load(f).get("attr_names")
    except (OSError, ValueError) as e:   # not prepared, no metadata, bad JSON: numbered names
      logging.info("attribute names of %s: none (%s); numbering them", tfds_name, e)
    if names is not None and len(names) != num:
      logging.warning("%s has %d attribute names in %s but the head predicts %d attributes; "
                      "numbering them", tfds_name, len(names), path, num)
      names = None
  return [str(n) for n in names] if names else [f"attr_{a}" for a in range(num)]


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
    header = f"{counts['right']} right, {counts['wrong']} wrong, {counts['missed']} missed"
  return [(header, vis.WHITE)] + lines


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 8, *, names: Sequence[str] | None = None, max_lines: int = 24,
         max_side: int | None = 256) -> np.ndarray:
  """Grid of [image | attribute list] tiles: ``[H', W', 3]`` uint8.

  Args:
    batch: ``'image' [B, H, W, 3]``, optional ``'labels' [B, A]`` in {-1, 0, 1}.
    predictions: :meth:`AttributeTask.decode` output: ``'pred' [B, A]`` bool and ``'probs'``.
    cfg: the dataset config; ``names`` default to :func:`dataset_attribute_names` (the
      config's ``attribute_names``/``attr_names``, else the prepared data's metadata via
      ``tfds_name`` and ``data_dir``, else ``attr_0 .. attr_{A-1}``).
    max_lines: longer lists are cut, with a count of the rest. max_side: images shrink to this.
  """
  images, = vis.take(batch, ["image"], "attributes batch")
  pred, = vis.take(predictions, ["pred"], "attributes predictions")
  pred = pred.astype(bool)
  probs = np.asarray(predictions.get("probs", pred), np.float64)
  n = vis.num_examples(images.shape[0], max_examples)
  num = pred.shape[1]
  names = list(names if names is not None else dataset_attribute_names(cfg, num))
  if len(names) != num:
    raise ValueError(f"{len(names)} attribute names for {num} predicted attributes; pass one name "
                     "per attribute (draw(..., names=...) or the dataset config's "
                     "attribute_names).")
  truth = np.asarray(batch["labels"]) if "labels" in batch else None
  tiles = []
  for i in range(n):
    image, _ = vis.fit(vis.as_image(images[i], "attributes batch['image']"), max_side)
    lines = attribute_lines(pred[i], probs[i], None if truth is None else truth[i], names,
                            max_lines)
    panel = vis.caption(np.zeros((0, 1, 3), np.uint8), lines)
    tiles.append(vis.hstack([image, panel]))
  return vis.grid(tiles)
