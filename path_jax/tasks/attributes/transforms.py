"""Pedestrian-attribute input transforms (REFERENCE.md §7.3), NumPy/PIL on the host.

Train: resize to ``image_size`` -> pad ``pad`` px with 0 -> random crop back to ``image_size``
-> horizontal flip (p 0.5; labels unchanged, as the reference). Eval: resize only.

Records are those of the ``attributes/*`` TFDS builders: 'image', 'labels' [A] int8 in
{-1, 0, 1}. Examples: ``{'image': [H, W, 3] uint8, 'labels': [A] int8}``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import BadExampleError, hw, option

DEFAULTS = {
    "image_size": (256, 192),        # (H, W) network input, pixels
    "pad": 10,
    "flip_prob": 0.5,
}


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "attributes.transforms")


def _labels(record: Mapping[str, Any], num: int | None) -> np.ndarray:
  labels = np.asarray(record["labels"], np.int8).reshape(-1)
  if num is not None and labels.shape[0] != num:
    raise BadExampleError(f"attribute record has {labels.shape[0]} labels, the dataset config's "
                          f"num_attributes is {num}.")
  return labels


class TrainTransform:
  """``(record, rng) -> {'image', 'labels'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "attributes image_size")
    self.pad = int(_opt(cfg, "pad"))
    self.flip_prob = float(_opt(cfg, "flip_prob"))
    num = cfg.get("num_attributes", None) if cfg is not None else None
    self.num = None if num is None else int(num)

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = image_ops.resize(image_ops.as_rgb(record["image"]), self.size)
    top, left = rng.integers(0, 2 * self.pad + 1, size=2) - self.pad
    image = image_ops.pad_crop(image, self.size, int(top), int(left))
    if rng.random() < self.flip_prob:
      image = image[:, ::-1]
    return {"image": np.ascontiguousarray(image), "labels": _labels(record, self.num)}


class EvalTransform:
  """``record -> {'image', 'labels'}`` (resize only)."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "attributes image_size")
    num = cfg.get("num_attributes", None) if cfg is not None else None
    self.num = None if num is None else int(num)

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"image": image_ops.resize(image_ops.as_rgb(record["image"]), self.size),
            "labels": _labels(record, self.num)}


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
