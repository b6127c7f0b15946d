"""Crowd-counting input transforms, NumPy/PIL (our design: the reference has no counting, §3.6).

Points are (x, y) in *continuous* pixel coordinates (see :mod:`path_jax.tasks.counting.targets`).
Train: horizontal flip (p ``flip_prob``) and a random ``image_size`` crop; an image smaller
than the crop is zero-padded on the right/bottom (no heads there). Eval: the whole image, shrunk
to fit ``eval_image_size`` when larger, zero-padded to it; points are scaled with the image.
Targets: :func:`path_jax.tasks.counting.targets.make_targets` on the final image (density map at
the configured output stride, summing to the number of heads inside).

Records are those of the ``counting/*`` TFDS builders: 'image', 'points' [N, 2]. Examples:
``{'image': [H, W, 3] uint8, 'density': [ceil(H/s), ceil(W/s)] float32, 'count': [] float32}``;
eval adds ``'image_hw'`` [2] int32, the unpadded (resized) image size.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import hw, option
from path_jax.tasks.counting import config as counting_config
from path_jax.tasks.counting.targets import make_targets

DEFAULTS = {
    "image_size": (512, 512),           # train crop (H, W), pixels
    "eval_image_size": (1024, 1024),    # eval canvas (H, W); larger images are shrunk to fit
    "flip_prob": 0.5,
}


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "counting.transforms")


def _target_cfg(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
  """The density-target fields, from the dataset config over the counting package defaults."""
  base = dict(counting_config.default_config())
  for key in ("sigma", "adaptive_knn", "adaptive_beta", "truncate", "output_stride"):
    if cfg is not None and cfg.get(key, None) is not None:
      base[key] = cfg[key]
  return base


def _points(record) -> np.ndarray:
  return np.asarray(record["points"], np.float64).reshape(-1, 2)


class TrainTransform:
  """``(record, rng) -> {'image', 'density', 'count'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "counting image_size")
    self.flip_prob = float(_opt(cfg, "flip_prob"))
    self.targets = _target_cfg(cfg)

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    points = _points(record)
    h, w = image.shape[:2]
    if rng.random() < self.flip_prob:
      image = image[:, ::-1]
      points = np.stack([w - points[:, 0], points[:, 1]], axis=1)
    top = int(rng.integers(0, h - self.size[0] + 1)) if h > self.size[0] else 0
    left = int(rng.integers(0, w - self.size[1] + 1)) if w > self.size[1] else 0
    image = image_ops.pad_crop(image, self.size, top, left, 0)
    points = points - np.array([left, top])
    # Points in the zero padding (past the source image) cannot exist; points outside the crop
    # are dropped by make_targets.
    out = make_targets(points, self.size, self.targets)
    return {"image": image, "density": out["density"], "count": out["count"]}


class EvalTransform:
  """``record -> {'image', 'density', 'count', 'image_hw'}`` on the padded eval canvas."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.canvas = hw(_opt(cfg, "eval_image_size"), "counting eval_image_size")
    self.targets = _target_cfg(cfg)

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    points = _points(record)
    h, w = image.shape[:2]
    fit = min(1.0, self.canvas[0] / h, self.canvas[1] / w)
    if fit < 1.0:
      oh, ow = max(1, int(h * fit)), max(1, int(w * fit))
      image = image_ops.resize(image, (oh, ow), "bilinear")
      points = points * np.array([ow / w, oh / h])
      h, w = oh, ow
    canvas = image_ops.pad_crop(image, self.canvas, 0, 0, 0)
    out = make_targets(points, self.canvas, self.targets)
    return {"image": canvas, "density": out["density"], "count": out["count"],
            "image_hw": np.array([h, w], np.int32)}


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
