"""ReID input transforms (REFERENCE.md §7.4), NumPy/PIL on the host.

Train: resize to ``image_size`` -> horizontal flip (p 0.5) -> pad ``pad`` px with 0 -> random crop
back to ``image_size`` -> random erasing with probability ``erase_prob`` (0.75: a solid random
RGB rectangle of 2-40 % of the area, height/width ratio 0.3-3.33). Eval: resize only.

Records are those of the ``reid/*`` TFDS builders (data/README.md): 'image', 'person_id',
'camera_id'. Examples: train ``{'image': [H, W, 3] uint8, 'label': [] int32}``; eval adds
``'person_id'`` and ``'camera_id'`` (int32) for retrieval evaluation.

Training batches are identity-balanced (P x K, :mod:`path_jax.input.sampling`):
``TRAIN_SAMPLER`` names the record field that holds the identity.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import hw, option

DEFAULTS = {
    "image_size": (256, 128),        # (H, W) network input, pixels
    "flip_prob": 0.5,
    "pad": 10,                       # pixels of zero padding before the random crop
    "erase_prob": 0.75,              # RandomSizedEarser probability
    "erase_area": (0.02, 0.4),       # erased fraction of the image area
    "erase_aspect": 0.3,             # height/width ratio in [0.3, 1/0.3]
    "images_per_identity": 4,        # K of the P x K sampler (PATH imageNumPerClass)
}
TRAIN_SAMPLER = "person_id"


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "reid.transforms")


class TrainTransform:
  """``(record, rng) -> {'image', 'label'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "reid image_size")
    self.flip_prob = float(_opt(cfg, "flip_prob"))
    self.pad = int(_opt(cfg, "pad"))
    self.erase_prob = float(_opt(cfg, "erase_prob"))
    self.erase_area = tuple(float(a) for a in _opt(cfg, "erase_area"))
    self.erase_aspect = float(_opt(cfg, "erase_aspect"))

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = image_ops.resize(image_ops.as_rgb(record["image"]), self.size)
    if rng.random() < self.flip_prob:
      image = image[:, ::-1]
    # Pad by p then crop at (i, j) in [0, 2p] == window at (i - p, j - p) of the unpadded image.
    top, left = rng.integers(0, 2 * self.pad + 1, size=2) - self.pad
    image = image_ops.pad_crop(image, self.size, int(top), int(left))
    if rng.random() < self.erase_prob:
      image = image_ops.random_erase(image, rng, self.erase_area, self.erase_aspect)
    return {"image": image, "label": np.int32(record["person_id"])}


class EvalTransform:
  """``record -> {'image', 'label', 'person_id', 'camera_id'}`` (resize only)."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "reid image_size")

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image = image_ops.resize(image_ops.as_rgb(record["image"]), self.size)
    pid = np.int32(record["person_id"])
    return {"image": image, "label": pid, "person_id": pid,
            "camera_id": np.int32(record.get("camera_id", -1))}


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
