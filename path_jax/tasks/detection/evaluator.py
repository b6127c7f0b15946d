"""Pedestrian-detection evaluation: the CrowdHuman toolkit protocol (REFERENCE.md §6.4).

Per image (``compare_caltech`` of the CrowdHuman ``Database``): detections with score below
``score_thr`` (0.05) are dropped and the rest clipped to the image; in descending score order each
detection takes the unmatched ground truth of highest IoU if that IoU is > 0.5 (true positive);
otherwise, if its intersection-over-detection-area (IoA) with an ignore region is > 0.5 it is
dropped (neither TP nor FP), else it is a false positive. All kept detections of the test set are
then sorted by score and, with N = number of non-ignore ground truths and I = number of images:

* ``'AP'``: area under the precision-recall curve by the trapezoidal rule over the detection
  points, without interpolation and, as the toolkit, starting at the first detection's recall
  (not at recall 0): perfect detections of N boxes give ``1 - 1/N``.
* ``'MR'`` (MR^-2): log-average miss rate at the nine FPPI references 10^-2 .. 10^0 evenly
  spaced in log space (the toolkit's 4-digit values); at each reference the miss rate of the
  first detection whose FPPI reaches it (the last detection's if none does). A zero miss rate
  makes MR 0; no kept detection at all makes it 1.
* ``'recall'``: the recall after all kept detections.

``protocol='caltech_heavy'`` evaluates the Caltech heavy-occlusion subset ('Heavy occl.' of the
Caltech toolkit's ``dbEval``): ground truths with a visible fraction outside ``visible_range``
[0.2, 0.65] or a height outside ``height_range`` (pixels, Caltech's [50, inf)) become ignore
regions, exactly as the toolkit turns boxes outside a subset into ignore boxes (``bbGt``
``hRng`` / ``vRng``); detections are unchanged, so a detection on such a person is dropped by
the IoA rule above instead of counting as a false positive, and N counts only the subset. The
height is that of the ground-truth box in original-image pixels as the batch gives it (clipped
to the image by the builder). This needs the per-box visible fraction (visible area / full-box
area, in [0, 1]; the detection builder's ``visible_ratio``, passed on by the eval transform) as
``batch['visible_ratio']``; NaN (a box without visibility annotation) is an error.

Ties in score are broken by image id, then by the detection's position within its image, so the
result does not depend on update or merge order when ``batch['image_id']`` is given.

Batch fields read by :meth:`Evaluator.update` (the detection task's format, ``G = max_boxes``,
``I = max_ignore``): ``'boxes' [B, G, 4]`` normalised cxcywh, ``'box_mask' [B, G]``,
``'ignore_boxes' [B, I, 4]`` and ``'ignore_mask' [B, I]`` (optional), ``'image_hw' [B, 2]`` and
optionally ``'orig_hw' [B, 2]`` (boxes are scaled to ``orig_hw`` when present, exactly as the task's
``decode`` scales predictions), ``'image_id' [B]`` (optional), ``'visible_ratio' [B, G]``
(``caltech_heavy`` only), ``'mask' [B]`` (optional). Predictions: ``'scores' [B, Q]`` and
``'boxes' [B, Q, 4]`` xyxy pixels (the task's ``decode``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from path_jax.tasks.common import real_mask

# CrowdHuman toolkit CALTECH_-2 anchors: 10^-2 .. 10^0, 9 points evenly spaced in log space.
FPPI_REFERENCE = (0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)


_real = real_mask


def overlaps(det: np.ndarray, gt: np.ndarray, ioa: bool = False) -> np.ndarray:
  """``[N, M]`` IoU (or intersection / detection area) of xyxy pixel boxes ``det``, ``gt``."""
  det = np.asarray(det, np.float64).reshape(-1, 4)[:, None, :]
  gt = np.asarray(gt, np.float64).reshape(-1, 4)[None, :, :]
  iw = np.minimum(det[..., 2], gt[..., 2]) - np.maximum(det[..., 0], gt[..., 0])
  ih = np.minimum(det[..., 3], gt[..., 3]) - np.maximum(det[..., 1], gt[..., 1])
  inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
  det_area = (det[..., 2] - det[..., 0]) * (det[..., 3] - det[..., 1])
  if ioa:
    denom = det_area
  else:
    denom = det_area + (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1]) - inter
  out = np.zeros(inter.shape)
  np.divide(inter, denom, out=out, where=denom > 0)
  return out


def clip_boxes(boxes: np.ndarray, image_hw: Sequence[float]) -> np.ndarray:
  """The toolkit's ``clip_all_boader``: x0 in [0, W-1], x1 in [0, W] (same for y)."""
  h, w = float(image_hw[0]), float(image_hw[1])
  b = np.array(boxes, np.float64).reshape(-1, 4)
  b[:, 0] = np.clip(b[:, 0], 0.0, w - 1)
  b[:, 1] = np.clip(b[:, 1], 0.0, h - 1)
  b[:, 2] = np.clip(b[:, 2], 0.0, w)
  b[:, 3] = np.clip(b[:, 3], 0.0, h)
  return b


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                ignore_boxes: np.ndarray, thr: float = 0.5) -> np.ndarray:
  """Greedy score-ordered matching of one image; ``[N]`` int8 per detection (input order).

  1 = true positive, 0 = false positive, -1 = dropped on an ignore region. Equal scores are
  processed in input order; among unmatched ground truths with IoU > thr the highest IoU wins
  (the first one on ties).
  """
  det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
  n = det_boxes.shape[0]
  labels = np.zeros(n, np.int8)
  if n == 0:
    return labels
  iou = overlaps(det_boxes, gt_boxes)
  ioa = overlaps(det_boxes, ignore_boxes, ioa=True)
  free = np.ones(iou.shape[1], bool)
  for i in np.argsort(-np.asarray(det_scores, np.float64), kind="stable"):
    cand = np.where(free & (iou[i] > thr), iou[i], -np.inf)
    if cand.size and np.isfinite(cand.max()):
      j = int(np.argmax(cand))
      free[j] = False
      labels[i] = 1
    elif ioa.shape[1] and (ioa[i] > thr).any():
      labels[i] = -1
  return labels


def crowdhuman_metrics(labels: np.ndarray, num_gt: int, num_images: int,
                       fppi_reference: Sequence[float] = FPPI_REFERENCE) -> dict[str, float]:
  """AP, MR^-2 and recall from kept detections' labels (1 TP / 0 FP) in descending score order.

  ``num_gt``: non-ignore ground truths of the test set; ``num_images``: images evaluated. With
  no ground truth every metric is NaN.
  """
  labels = np.asarray(labels).reshape(-1)
  if num_gt <= 0:
    return {"AP": float("nan"), "MR": float("nan"), "recall": float("nan")}
  if labels.size == 0:
    return {"AP": 0.0, "MR": 1.0, "recall": 0.0}
  tp = np.cumsum(labels == 1).astype(np.float64)
  fp = np.cumsum(labels == 0).astype(np.float64)
  recall = tp / num_gt
  precision = tp / (tp + fp)
  ap = float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))
  fppi = fp / num_images
  reached = fppi[None, :] >= np.asarray(fppi_reference, np.float64)[:, None]   # [R, D]
  idx = np.where(reached.any(1), reached.argmax(1), labels.size - 1)
  with np.errstate(divide="ignore"):
    mr = float(np.exp(np.mean(np.log(1.0 - recall[idx]))))
  return {"AP": ap, "MR": mr, "recall": float(recall[-1])}


class Evaluator:
  """Matches each image as it arrives and keeps (score, TP/FP) pairs; merging is concatenation.

  Args:
    protocol: ``'crowdhuman'`` (all ground truths) or ``'caltech_heavy'``.
    score_thr: detections below this score are discarded (0.05).
    iou_thr: IoU (and ignore IoA) threshold (0.5).
    visible_range, height_range: the ``caltech_heavy`` subset (inclusive bounds).
    clip: clip detections to the image, as the toolkit does.
  """

  def __init__(self, cfg: Mapping[str, Any] | None = None, *, protocol: str = "crowdhuman",
               score_thr: float = 0.05, iou_thr: float = 0.5,
               visible_range: tuple[float, float] = (0.2, 0.65),
               height_range: tuple[float, float] = (50.0, float("inf")), clip: bool = True):
    del cfg  # the protocol has no settings in the dataset config
    if protocol not in ("crowdhuman", "caltech_heavy"):
      raise ValueError(f"unknown detection protocol {protocol!r}; use 'crowdhuman' or "
                       f"'caltech_heavy'.")
    self.protocol = protocol
    self.score_thr, self.iou_thr = float(score_thr), float(iou_thr)
    self.visible_range = tuple(float(v) for v in visible_range)
    self.height_range = tuple(float(v) for v in height_range)
    self.clip = clip
    # One entry per image: (image key, kept scores [n], labels [n], number of real ground truths).
    self._images: list[tuple[str, np.ndarray, np.ndarray, int]] = []
    self._seen = 0

  def add_image(self, det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                ignore_boxes: np.ndarray | None = None, *, image_hw: Sequence[float] | None = None,
                visible_ratio: np.ndarray | None = None, key: Any = None) -> None:
    """Evaluates one image given xyxy pixel boxes: detections ``[Q, 4]`` + ``[Q]`` scores,
    ground truths ``[G, 4]``, ignore regions ``[I, 4]``; ``visible_ratio [G]`` for caltech_heavy.
    ``key`` orders score ties between images (default: arrival order)."""
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    ign = (np.zeros((0, 4)) if ignore_boxes is None
           else np.asarray(ignore_boxes, np.float64).reshape(-1, 4))
    if self.protocol == "caltech_heavy":
      if visible_ratio is None:
        raise KeyError("detection protocol 'caltech_heavy' needs the per-box visible fraction "
                       "(batch['visible_ratio'] [B, G], visible area / box area); the detection "
                       "eval transform passes it when the prepared dataset has the field: "
                       "rebuild it with the current data/detection builder (data/build.py "
                       "--overwrite).")
      vis = np.asarray(visible_ratio, np.float64).reshape(-1)
      if vis.shape[0] != gt.shape[0]:
        raise ValueError(f"caltech_heavy: {vis.shape[0]} visible ratios for {gt.shape[0]} "
                         "ground-truth boxes; batch['visible_ratio'] must align with "
                         "batch['boxes'].")
      if np.isnan(vis).any():
        raise ValueError("caltech_heavy: some person boxes have no visible fraction (NaN): "
                         "their annotation lacks 'vis_bbox' / 'vis_ratio' (COCO json) or "
                         "'vbox' (.odgt). Add the visible boxes to the annotation file and "
                         "rebuild the dataset (data/build.py), or evaluate with "
                         "eval_protocol='crowdhuman'.")
      height = gt[:, 3] - gt[:, 1]
      inside = ((vis >= self.visible_range[0]) & (vis <= self.visible_range[1])
                & (height >= self.height_range[0]) & (height <= self.height_range[1]))
      gt, ign = gt[inside], np.concatenate([ign, gt[~inside]])
    scores = np.asarray(det_scores, np.float64).reshape(-1)
    keep = scores >= self.score_thr
    boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)[keep]
    scores = scores[keep]
    if self.clip and image_hw is not None:
      boxes = clip_boxes(boxes, image_hw)
    # Within an image, the toolkit's order: score descending, input order on ties.
    order = np.argsort(-scores, kind="stable")
    labels = match_image(boxes[order], scores[order], gt, ign, self.iou_thr)
    kept = labels >= 0
    key = f"#{self._seen:012d}" if key is None else str(key)
    self._seen += 1
    self._images.append((key, scores[order][kept], labels[kept], gt.shape[0]))

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    scores = np.asarray(predictions["scores"], np.float64)
    boxes = np.asarray(predictions["boxes"], np.float64)
    n = scores.shape[0]
    hw = np.asarray(batch["orig_hw"] if "orig_hw" in batch else batch["image_hw"], np.float64)
    scale = np.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=-1)[:, None, :]

    def to_pixels(b):
      b = np.asarray(b, np.float64)
      xyxy = np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)
      return xyxy * scale

    gt = to_pixels(batch["boxes"])
    gt_mask = np.asarray(batch["box_mask"]).astype(bool)
    if "ignore_boxes" in batch:
      ign, ign_mask = to_pixels(batch["ignore_boxes"]), np.asarray(batch["ignore_mask"], bool)
    else:
      ign, ign_mask = np.zeros((n, 0, 4)), np.zeros((n, 0), bool)
    vis = batch.get("visible_ratio")
    ids = batch.get("image_id")
    for i in np.flatnonzero(_real(batch, n)):
      key = None
      if ids is not None:
        key = ids[i].decode() if isinstance(ids[i], bytes) else np.asarray(ids[i]).item()
        if isinstance(key, (int, np.integer)):
          key = f"{int(key):020d}"                     # numeric ids sort numerically as text
      self.add_image(boxes[i], scores[i], gt[i][gt_mask[i]], ign[i][ign_mask[i]],
                     image_hw=hw[i], key=key,
                     visible_ratio=None if vis is None else np.asarray(vis[i])[gt_mask[i]])

  def merge(self, other: "Evaluator") -> "Evaluator":
    """Adds another (e.g. another host's) evaluator's images to this one; returns self."""
    self._images.extend(other._images)
    return self

  def result(self) -> dict[str, float]:
    if not self._images:
      raise ValueError("detection evaluation saw no image; call update() first.")
    keys = np.array([k for k, *_ in self._images])
    key_rank = np.unique(keys, return_inverse=True)[1]
    scores = np.concatenate([s for _, s, _, _ in self._images])
    labels = np.concatenate([lab for _, _, lab, _ in self._images])
    image_of = np.concatenate([np.full(s.size, r) for (_, s, _, _), r in zip(self._images,
                                                                             key_rank)])
    within = np.concatenate([np.arange(s.size) for _, s, _, _ in self._images])
    order = np.lexsort((within, image_of, -scores))
    num_gt = sum(g for *_, g in self._images)
    out = crowdhuman_metrics(labels[order], num_gt, len(self._images))
    out["num_images"] = float(len(self._images))
    out["num_gt"] = float(num_gt)
    return out
