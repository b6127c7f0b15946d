"""Top-down pose input transforms (REFERENCE.md §7.1; mmpose TopDown with UDP), NumPy/PIL.

Geometry is in *index* pixel coordinates (mmpose's, OpenCV's warpAffine). A person is described
by a centre ``c`` and a box size ``(w, h)`` in pixels (mmpose's ``scale * 200``): the box is
enlarged to the input's aspect ratio and by ``bbox_padding`` (1.25). The UDP affine maps ``c`` to
the crop's centre pixel ``((W-1)/2, (H-1)/2)`` and the box onto ``W-1 x H-1`` pixels.

Train, in mmpose's order: centre jitter (p ``center_jitter_prob``, +-``center_jitter``*(w, h)),
optional ``TopDownRandomShiftBboxCenter`` (p ``shift_center_prob``, +-``shift_center_factor``*box),
horizontal flip (p 0.5, joints mirrored and ``flip_pairs`` swapped), half body (p 0.3 when more
than ``half_body_min_joints`` joints are labelled: the box of the upper or lower joints, x1.5),
random scale (``N(1, 0.5)`` clipped to [0.5, 1.5]) and rotation (``N(0, 40)`` deg clipped to
+-80, applied with p 0.6), then one warp of the original image (the flip is folded into the
affine, so the full image is resampled once). Targets: UDP Gaussian heatmaps at stride 4 from
:func:`path_jax.tasks.pose.targets.udp_heatmap_targets`.
Eval: the affine of the un-augmented box only, plus 'center' and 'box_size' for decoding.

Records are those of the ``pose/*`` TFDS builders: COCO-style 'bbox' (x, y, w, h) or MPII-style
'center' / 'scale' (already padded x1.25), and 'keypoints' [K, 3]. Examples:
train ``{'image': [H, W, 3] uint8, 'target': [H/4, W/4, K] float32, 'target_weight': [K] float32}``;
eval adds ``'center' [2]``, ``'box_size' [2]`` float32 (original-image pixels), ``'image_id'``
int32 and ``'score'`` float32 (detector score for ``val_dets``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import BadExampleError, hw, option, pairs, swap_permutation
from path_jax.tasks.pose.targets import udp_heatmap_targets

_COCO_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

DEFAULTS = {
    "image_size": (256, 192),            # (H, W) crop, pixels; heatmaps are (H/4, W/4)
    "num_joints": 17,
    "sigma": 2.0,                        # UDP Gaussian std, heatmap pixels
    "flip_pairs": _COCO_PAIRS,
    "upper_body_ids": tuple(range(11)),  # COCO: nose, eyes, ears, shoulders, elbows, wrists
    "bbox_padding": 1.25,
    "center_jitter_prob": 0.3,           # mmpose _xywh2cs: c += 0.4 (U - 0.5) (w, h)
    "center_jitter": 0.2,
    "shift_center_prob": 0.0,            # 0.3 for all PATH pose sets but COCO/AIC/Penn/MHP
    "shift_center_factor": 0.16,
    "flip_prob": 0.5,
    "half_body_prob": 0.3,
    "half_body_min_joints": 8,
    "half_body_padding": 1.5,
    "scale_factor": 0.5,
    "rot_factor": 40.0,                  # degrees
    "rot_prob": 0.6,
}
HEATMAP_STRIDE = 4


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "pose.transforms")


def fit_aspect(size: np.ndarray, aspect: float) -> np.ndarray:
  """Grows (w, h) to the width/height ratio ``aspect`` of the network input."""
  w, h = float(size[0]), float(size[1])
  if w > aspect * h:
    h = w / aspect
  elif w < aspect * h:
    w = h * aspect
  return np.array([w, h])


def warp_matrix(rotation_deg: float, center: np.ndarray, box_size: np.ndarray,
                out_hw: tuple[int, int]) -> np.ndarray:
  """mmpose ``get_warp_matrix`` (UDP): ``[2, 3]`` index-coordinate map image -> crop.

  Rotates by ``rotation_deg`` (counter-clockwise in the image as displayed) about ``center`` and
  scales ``box_size`` (w, h) pixels onto ``(W - 1, H - 1)``.
  """
  theta = np.deg2rad(rotation_deg)
  sx = (out_hw[1] - 1.0) / box_size[0]
  sy = (out_hw[0] - 1.0) / box_size[1]
  cos, sin = np.cos(theta), np.sin(theta)
  cx, cy = center
  return np.array([
      [cos * sx, -sin * sx, sx * (-cx * cos + cy * sin + 0.5 * box_size[0])],
      [sin * sy, cos * sy, sy * (-cx * sin - cy * cos + 0.5 * box_size[1])],
  ])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``[2, 3]`` affines: the map x -> a(b(x))."""
  return a[:, :2] @ b + np.concatenate([np.zeros((2, 2)), a[:, 2:]], axis=1)


class _Base:

  def __init__(self, cfg: Mapping[str, Any]):
    self.size = hw(_opt(cfg, "image_size"), "pose image_size")
    if self.size[0] % HEATMAP_STRIDE or self.size[1] % HEATMAP_STRIDE:
      raise ValueError(f"pose image_size {self.size} must be a multiple of {HEATMAP_STRIDE}.")
    self.hm_wh = (self.size[1] // HEATMAP_STRIDE, self.size[0] // HEATMAP_STRIDE)
    self.aspect = self.size[1] / self.size[0]
    self.num_joints = int(_opt(cfg, "num_joints"))
    self.sigma = float(_opt(cfg, "sigma"))
    self.padding = float(_opt(cfg, "bbox_padding"))

  def _keypoints(self, record) -> np.ndarray:
    kps = np.asarray(record["keypoints"], np.float64).reshape(-1, 3)
    if kps.shape[0] != self.num_joints:
      raise ValueError(f"pose record has {kps.shape[0]} joints but the dataset config's "
                       f"num_joints is {self.num_joints}; set num_joints to {kps.shape[0]}.")
    return kps

  def _box(self, record, rng: np.random.Generator | None, jitter_prob: float = 0.0,
           jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(center [2], box size [2]) in pixels from 'bbox' or MPII's 'center'/'scale'."""
    if "center" in record and "scale" in record:
      center = np.asarray(record["center"], np.float64).reshape(2)
      size = fit_aspect(np.asarray(record["scale"], np.float64).reshape(2) * 200.0, self.aspect)
      return center, size
    x, y, w, h = np.asarray(record["bbox"], np.float64).reshape(4)
    if not (w > 0 and h > 0):
      raise BadExampleError(f"pose bbox {(x, y, w, h)} has no area.")
    center = np.array([x + 0.5 * w, y + 0.5 * h])
    if rng is not None and rng.random() < jitter_prob:
      center += 2 * jitter * (rng.random(2) - 0.5) * np.array([w, h])
    return center, fit_aspect(np.array([w, h]), self.aspect) * self.padding

  def _crop(self, image, matrix, kps):
    crop = image_ops.warp_affine(image, matrix, self.size, "bilinear", 0)
    joints = np.concatenate([image_ops.affine_points(kps[:, :2], matrix), kps[:, 2:]], axis=1)
    heatmaps, weight = udp_heatmap_targets(joints, (self.size[1], self.size[0]), self.hm_wh,
                                           self.sigma)
    return crop, np.ascontiguousarray(np.moveaxis(heatmaps, 0, -1)), weight


class TrainTransform(_Base):
  """``(record, rng) -> {'image', 'target', 'target_weight'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    super().__init__(cfg)
    self.perm = swap_permutation(self.num_joints,
                                 pairs(_opt(cfg, "flip_pairs"), self.num_joints, "pose flip_pairs"))
    self.upper = np.zeros(self.num_joints, bool)
    self.upper[[int(i) for i in _opt(cfg, "upper_body_ids") if int(i) < self.num_joints]] = True
    self.jitter_prob = float(_opt(cfg, "center_jitter_prob"))
    self.jitter = float(_opt(cfg, "center_jitter"))
    self.shift_prob = float(_opt(cfg, "shift_center_prob"))
    self.shift_factor = float(_opt(cfg, "shift_center_factor"))
    self.flip_prob = float(_opt(cfg, "flip_prob"))
    self.half_prob = float(_opt(cfg, "half_body_prob"))
    self.half_min = int(_opt(cfg, "half_body_min_joints"))
    self.half_padding = float(_opt(cfg, "half_body_padding"))
    self.sf = float(_opt(cfg, "scale_factor"))
    self.rf = float(_opt(cfg, "rot_factor"))
    self.rot_prob = float(_opt(cfg, "rot_prob"))

  def _half_body(self, kps, rng):
    """mmpose ``half_body_transform``: (center, size) of the upper or lower labelled joints."""
    vis = kps[:, 2] > 0
    upper, lower = kps[vis & self.upper, :2], kps[vis & ~self.upper, :2]
    if rng.random() < 0.5 and len(upper) > 2:
      chosen = upper
    elif len(lower) > 2:
      chosen = lower
    else:
      chosen = upper
    if len(chosen) < 2:
      return None
    lo, hi = chosen.min(axis=0), chosen.max(axis=0)
    return chosen.mean(axis=0), fit_aspect(hi - lo, self.aspect) * self.half_padding

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    kps = self._keypoints(record)
    kps[:, 2] = np.minimum(kps[:, 2], 1.0)
    center, size = self._box(record, rng, self.jitter_prob, self.jitter)
    if rng.random() < self.shift_prob:
      center = center + rng.uniform(-1.0, 1.0, 2) * self.shift_factor * size
    flip = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if rng.random() < self.flip_prob:
      # x -> (W_img - 1) - x in index coordinates; left/right joints swap names.
      flip = np.array([[-1.0, 0.0, image.shape[1] - 1.0], [0.0, 1.0, 0.0]])
      kps = kps[self.perm]
      kps[:, 0] = image.shape[1] - 1.0 - kps[:, 0]
      center = np.array([image.shape[1] - 1.0 - center[0], center[1]])
    if (kps[:, 2] > 0).sum() > self.half_min and rng.random() < self.half_prob:
      half = self._half_body(kps, rng)
      if half is not None:
        center, size = half
    size = size * np.clip(rng.standard_normal() * self.sf + 1.0, 1.0 - self.sf, 1.0 + self.sf)
    rot = np.clip(rng.standard_normal() * self.rf, -2.0 * self.rf, 2.0 * self.rf)
    rot = rot if rng.random() <= self.rot_prob else 0.0
    matrix = warp_matrix(rot, center, size, self.size)
    crop = image_ops.warp_affine(image, _compose(matrix, flip), self.size, "bilinear", 0)
    joints = np.concatenate([image_ops.affine_points(kps[:, :2], matrix), kps[:, 2:]], axis=1)
    heatmaps, weight = udp_heatmap_targets(joints, (self.size[1], self.size[0]), self.hm_wh,
                                           self.sigma)
    return {"image": crop, "target": np.ascontiguousarray(np.moveaxis(heatmaps, 0, -1)),
            "target_weight": weight}


class EvalTransform(_Base):
  """``record -> {'image', 'target', 'target_weight', 'center', 'box_size', 'image_id', 'score',
  'keypoints_image'[, 'head_box']}``.

  ``keypoints_image [K, 3]``: the record's keypoints in original-image pixels (visibility clipped
  to 0/1), what the EPE and PCKh evaluators compare decoded predictions with; ``head_box [4]``
  (x1, y1, x2, y2 pixels) is passed through when the record has one (MPII's, for PCKh).
  """

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    kps = self._keypoints(record)
    kps[:, 2] = np.minimum(kps[:, 2], 1.0)
    center, size = self._box(record, None)
    crop, target, weight = self._crop(image, warp_matrix(0.0, center, size, self.size), kps)
    return {"image": crop, "target": target, "target_weight": weight,
            "center": center.astype(np.float32), "box_size": size.astype(np.float32),
            "image_id": np.int32(record.get("image_id", -1)),
            "score": np.float32(record.get("score", 1.0)),
            "keypoints_image": kps.astype(np.float32),
            **({"head_box": np.asarray(record["head_box"], np.float32).reshape(4)}
               if "head_box" in record else {})}


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
