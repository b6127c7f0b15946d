"""Human-parsing input transforms (REFERENCE.md §7.2), NumPy/PIL on the host.

Train: horizontal flip (p ``flip_prob``) with the left/right classes of ``flip_pairs`` swapped ->
multi-scale resize to ``s * image_size`` with ``s`` drawn from ``scales`` (0.5, 0.6, ..., 1.6;
image bilinear, label nearest) -> pad to at least ``image_size`` (image 0, label 255) -> random
``image_size`` crop. The reference resizes to ``image_size`` and then by ``s``; one resize to
``s * image_size`` is the same geometry with one resampling instead of two. Eval: resize to
``image_size`` (label nearest).

Records are those of the ``parsing/*`` TFDS builders: 'image' [H, W, 3], 'label' [H, W, 1] uint8
(255 = ignore). Examples: ``{'image': [H, W, 3] uint8, 'label': [H, W] uint8}``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import BadExampleError, hw, option, pairs

DEFAULTS = {
    "image_size": (480, 480),                                   # (H, W) network input
    "flip_prob": 0.5,
    "flip_pairs": ((14, 15), (16, 17), (18, 19)),               # LIP/CIHP/VIP/PaperDoll
    "num_classes": 20,
    "ignore_label": 255,
    "scales": tuple(0.5 + i / 10 for i in range(12)),           # 0.5 + randint(0..11) / 10
}


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "parsing.transforms")


def class_swap_table(num_classes: int, flip_pairs) -> np.ndarray:
  """``[256]`` uint8 lookup that swaps each left/right class pair (255 and others unchanged)."""
  table = np.arange(256, dtype=np.uint8)
  for a, b in pairs(flip_pairs, num_classes, "parsing flip_pairs"):
    table[a], table[b] = b, a
  return table


def _split(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  image = image_ops.as_rgb(record["image"])
  label = np.asarray(record["label"], np.uint8)
  if label.ndim == 3:
    label = label[:, :, 0]
  if label.shape != image.shape[:2]:
    raise BadExampleError(f"parsing label {label.shape} and image {image.shape[:2]} differ in "
                          f"size.")
  return image, label


class TrainTransform:
  """``(record, rng) -> {'image', 'label'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "parsing image_size")
    self.flip_prob = float(_opt(cfg, "flip_prob"))
    self.swap = class_swap_table(int(_opt(cfg, "num_classes")), _opt(cfg, "flip_pairs"))
    self.ignore = int(_opt(cfg, "ignore_label"))
    self.scales = tuple(float(s) for s in _opt(cfg, "scales"))

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image, label = _split(record)
    if rng.random() < self.flip_prob:
      image, label = image[:, ::-1], self.swap[label[:, ::-1]]
    s = self.scales[int(rng.integers(len(self.scales)))]
    h, w = self.size
    sh, sw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    image = image_ops.resize(image, (sh, sw), "bilinear")
    label = image_ops.resize(label, (sh, sw), "nearest")
    # The window starts inside the scaled image when it is larger, at 0 (padding right/bottom,
    # as the reference pads) when it is smaller.
    top = int(rng.integers(0, sh - h + 1)) if sh > h else 0
    left = int(rng.integers(0, sw - w + 1)) if sw > w else 0
    return {"image": image_ops.pad_crop(image, self.size, top, left, 0),
            "label": image_ops.pad_crop(label, self.size, top, left, self.ignore)}


class EvalTransform:
  """``record -> {'image', 'label'}`` resized to ``image_size``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "parsing image_size")

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image, label = _split(record)
    return {"image": image_ops.resize(image, self.size, "bilinear"),
            "label": image_ops.resize(label, self.size, "nearest")}


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
