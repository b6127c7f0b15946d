"""Pictures of pose predictions: skeletons drawn on the input crops.

Predicted joints are cyan discs joined by cyan limbs (:data:`path_jax.visualize.PRED`); the
ground truth, when the batch has it, is drawn first in magenta (:data:`path_jax.visualize.TRUE`)
so the prediction stays on top. Each crop is captioned with its mean predicted joint score.

Ground truth comes from the batch: ``'keypoints' [B, K, 2|3]`` (x, y[, visibility]) in crop
pixels if present, else the peaks of the UDP target heatmaps ``'target' [B, h, w, K]``
(scaled like :func:`path_jax.tasks.pose.decode_heatmaps`) where ``'target_weight' [B, K]`` > 0.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from path_jax import visualize as vis

# Standard COCO limbs (0-based joint ids: nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles; left before right), the skeleton of the COCO keypoint annotations.
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
                 (4, 6))
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# MPII's 16 joints: r/l ankle, knee, hip (0-5), pelvis, thorax, upper neck, head top (6-9),
# r/l wrist, elbow, shoulder (10-15).
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
                 (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15))
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def _pairs(value: Any) -> tuple[tuple[int, int], ...]:
  return tuple(tuple(sorted((int(a), int(b)))) for a, b in (value or ()))


def skeleton(num_joints: int, flip_pairs: Sequence[Sequence[int]] = (),
             limbs: Sequence[Sequence[int]] | None = None) -> tuple[tuple[int, int], ...]:
  """Limbs ``((a, b), ...)`` to draw for a dataset.

  ``limbs`` when given; the COCO or MPII skeleton when the joint count and flip pairs are
  those of COCO (17) or MPII (16); otherwise each left/right flip pair joined by a line (the
  only structure the config describes for other joint sets).
  """
  if limbs is not None:
    out = tuple((int(a), int(b)) for a, b in limbs)
  elif num_joints == 17 and _pairs(flip_pairs) == _pairs(COCO_FLIP_PAIRS):
    out = COCO_SKELETON
  elif num_joints == 16 and _pairs(flip_pairs) == _pairs(MPII_FLIP_PAIRS):
    out = MPII_SKELETON
  else:
    out = tuple((int(a), int(b)) for a, b in flip_pairs)
  bad = [limb for limb in out if not (0 <= limb[0] < num_joints and 0 <= limb[1] < num_joints)]
  if bad:
    raise ValueError(f"pose skeleton limbs {bad} name joints outside [0, {num_joints}); fix the "
                     "dataset config's flip_pairs (or the limbs passed to draw).")
  return out


def true_keypoints(batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
  """Ground-truth ``(xy [B, K, 2] crop pixels, visible [B, K] bool)`` from the batch, or None.

  Reads ``'keypoints'`` if present, else the argmax of ``'target'`` scaled to the crop as the
  UDP decoder scales heatmap positions: ``x * (W - 1) / (w - 1)``.
  """
  if "keypoints" in batch:
    kps = np.asarray(batch["keypoints"], np.float64)
    visible = kps[..., 2] > 0 if kps.shape[-1] > 2 else np.ones(kps.shape[:2], bool)
    return kps[..., :2], visible
  if "target" not in batch or "target_weight" not in batch:
    return None
  target = np.asarray(batch["target"], np.float64)
  b, h, w, k = target.shape
  big_h, big_w = np.asarray(batch["image"]).shape[1:3]
  flat = np.moveaxis(target, -1, 1).reshape(b, k, h * w)
  idx = np.argmax(flat, axis=-1)
  xy = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
  xy *= np.array([(big_w - 1.0) / max(w - 1, 1), (big_h - 1.0) / max(h - 1, 1)])
  visible = np.asarray(batch["target_weight"]).reshape(b, k) > 0
  return xy, visible


def draw_skeleton(image: np.ndarray, xy: np.ndarray, visible: np.ndarray,
                  limbs: Sequence[tuple[int, int]], colour: vis.Colour, radius: int = 3,
                  line_width: int = 2) -> np.ndarray:
  """``image`` with joints ``xy [K, 2]`` (pixels) where ``visible [K]``, and limbs between them.

  Limbs are drawn first so that every visible joint's centre pixel has exactly ``colour``.
  """
  pil, draw = vis.draw_on(image)
  for a, b in limbs:
    if visible[a] and visible[b]:
      draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=line_width)
  for (x, y), v in zip(xy, visible):
    if v:
      draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
  return np.asarray(pil)


def draw(batch: Mapping[str, Any], predictions: Mapping[str, Any], cfg: Mapping[str, Any],
         max_examples: int = 8, *, min_score: float = 0.0, limbs=None,
         max_side: int | None = 512) -> np.ndarray:
  """Grid of crops with predicted (cyan) and true (magenta) skeletons: ``[H, W, 3]`` uint8.

  Args:
    batch: ``'image' [B, H, W, 3]``; optional ground truth (module docstring).
    predictions: :meth:`PoseTask.decode` output: ``'keypoints' [B, K, 2]`` crop pixels,
      optional ``'scores' [B, K]``.
    cfg: the dataset config (``num_joints``, ``flip_pairs``; see :func:`skeleton`).
    max_examples: at most this many crops. min_score: joints scoring below it are not drawn.
    limbs: explicit skeleton, overriding the one derived from ``cfg``.
    max_side: crops larger than this are shrunk first (marks keep their size).
  """
  images, kps = vis.take(batch, ["image"], "pose batch") + vis.take(
      predictions, ["keypoints"], "pose predictions")
  n = vis.num_examples(images.shape[0], max_examples)
  k = kps.shape[1]
  scores = np.asarray(predictions.get("scores", np.ones(kps.shape[:2])), np.float64)
  limb_list = skeleton(k, cfg.get("flip_pairs", ()) or (), limbs)
  truth = true_keypoints(batch)
  tiles = []
  for i in range(n):
    image, scale = vis.fit(vis.as_image(images[i], "pose batch['image']"), max_side)
    if truth is not None:
      image = draw_skeleton(image, truth[0][i] * scale, truth[1][i], limb_list, vis.TRUE)
    shown = scores[i] >= min_score
    image = draw_skeleton(image, np.asarray(kps[i], np.float64) * scale, shown, limb_list,
                          vis.PRED)
    lines = [(f"score {scores[i].mean():.2f}", vis.PRED)]
    if truth is not None:
      lines.append(("truth", vis.TRUE))
    tiles.append(vis.caption(image, lines))
  return vis.grid(tiles)
