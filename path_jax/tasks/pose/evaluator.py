"""2-D pose evaluation (REFERENCE.md §6.4): COCO/AIC keypoint AP, MPII PCKh, Human3.6M EPE.

:func:`Evaluator` builds one of three evaluators from ``metric``:

* ``'coco_ap'`` (:class:`CocoKeypointEvaluator`): top-down AP on person boxes (detections or
  ground-truth boxes). Every box's keypoints (image pixels) are collected with its box score;
  per image, each box is rescored as ``box score x mean of its keypoint scores above vis_thr``
  (0.2; 0 when none is), OKS-NMS with ``oks_thr`` 0.9 removes duplicates, and pycocotools'
  ``COCOeval`` (iouType 'keypoints', the dataset's OKS sigmas: COCO's, or AIC's 14) scores the
  result against the ground-truth annotation file (in the program: the ``coco_gt_<split>.json``
  that the pose builder writes into the prepared dataset, see
  :func:`path_jax.evaluate.make_evaluator`). As PATH's ``PoseEvaluator`` (after mmpose),
  the OKS of NMS uses all keypoints and the crop area ``box_size[0] * box_size[1]``.
* ``'pckh'`` (:class:`PCKhEvaluator`): MPII PCKh@0.5 — a visible joint is correct when its error
  is at most 0.5 x 0.6 x the diagonal of the person's head box (SC_BIAS 0.6); the mean excludes
  pelvis and thorax (joints 6, 7) and weights joints by their visible counts. Also PCKh@0.1 and
  the per-part values of the reference (mean of left and right joints).
* ``'epe'`` (:class:`EPEEvaluator`): mean end-point error — the euclidean distance between
  predicted and ground-truth keypoints averaged over all labelled joints, in the unit of the
  keypoints (pixels); lower is better.

AP/PCKh are fractions in [0, 1]. Every evaluator has ``update(predictions, batch)``,
``merge(other)`` and ``result()``; ``batch['mask'] [B]`` (optional) marks real examples.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from path_jax.tasks.common import real_mask

COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
AIC_SIGMAS = np.array([0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144,
                       0.03909642, 0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081,
                       0.01291456, 0.01236173])
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")

# MPII joint order (mmpose): 0 r_ankle, 1 r_knee, 2 r_hip, 3 l_hip, 4 l_knee, 5 l_ankle,
# 6 pelvis, 7 thorax, 8 upper_neck, 9 head_top, 10 r_wrist, 11 r_elbow, 12 r_shoulder,
# 13 l_shoulder, 14 l_elbow, 15 l_wrist.
MPII_PARTS = {"head": (9,), "shoulder": (12, 13), "elbow": (11, 14), "wrist": (10, 15),
              "hip": (2, 3), "knee": (1, 4), "ankle": (0, 5)}
MPII_EXCLUDED = (6, 7)       # pelvis and thorax are left out of the mean, as the reference
MPII_SC_BIAS = 0.6


_real = real_mask


def _image_keypoints(predictions: Mapping[str, Any]) -> np.ndarray:
  """``[B, K, 2]`` predicted keypoints in image pixels (``keypoints_image`` if decoded)."""
  key = "keypoints_image" if "keypoints_image" in predictions else "keypoints"
  return np.asarray(predictions[key], np.float64)[..., :2]


def _true_keypoints(batch: Mapping[str, Any]) -> np.ndarray:
  """``[B, K, 3]`` ground truth in image pixels: ``'keypoints_image'`` (the pose eval transform's
  field; its ``'keypoints'`` name is kept for crop-pixel uses) or else ``'keypoints'``."""
  key = "keypoints_image" if "keypoints_image" in batch else "keypoints"
  if key not in batch:
    raise KeyError("pose evaluation needs the ground truth as batch['keypoints_image'] (or "
                   "batch['keypoints']) [B, K, 3] in image pixels; the pose eval transform "
                   "(path_jax.tasks.pose.transforms.EvalTransform) writes it.")
  return np.asarray(batch[key], np.float64)


# ---------------------------------------------------------------------------- COCO keypoint AP

def rescore(box_scores: np.ndarray, keypoint_scores: np.ndarray, vis_thr: float = 0.2
            ) -> np.ndarray:
  """``[N]`` box score x mean of the keypoint scores ``[N, K]`` above ``vis_thr`` (0 if none)."""
  s = np.asarray(keypoint_scores, np.float64)
  above = s > vis_thr
  n = above.sum(1)
  mean = np.where(n > 0, np.where(above, s, 0.0).sum(1) / np.maximum(n, 1), 0.0)
  return np.asarray(box_scores, np.float64) * mean


def oks_one_to_many(kpt: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
                    sigmas: np.ndarray, vis_thr: float | None = None) -> np.ndarray:
  """``[M]`` OKS between one pose ``kpt [K, 3]`` (x, y, score) and ``others [M, K, 3]``.

  The scale is the mean of the two areas (mmpose's ``oks_iou``); with ``vis_thr`` only joints
  whose score exceeds it in both poses count (OKS 0 when none does).
  """
  var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
  d2 = np.sum((others[..., :2] - kpt[None, :, :2]) ** 2, axis=-1)          # [M, K]
  scale = (area + np.asarray(other_areas, np.float64))[:, None] / 2 + np.spacing(1)
  sim = np.exp(-d2 / var / scale / 2)
  if vis_thr is None:
    return sim.mean(1)
  both = (kpt[None, :, 2] > vis_thr) & (others[..., 2] > vis_thr)
  n = both.sum(1)
  return np.where(n > 0, np.where(both, sim, 0.0).sum(1) / np.maximum(n, 1), 0.0)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            oks_thr: float = 0.9, vis_thr: float | None = None) -> np.ndarray:
  """Greedy OKS non-maximum suppression; returns kept indices in descending score order.

  ``keypoints [N, K, 3]`` (x, y, score), ``scores [N]``, ``areas [N]``. The best remaining pose is
  kept and every pose with OKS > ``oks_thr`` to it removed, until none remain; equal scores keep
  input order.
  """
  keypoints = np.asarray(keypoints, np.float64)
  areas = np.asarray(areas, np.float64)
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(int(i))
    oks = oks_one_to_many(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas, vis_thr)
    order = rest[oks <= oks_thr]
  return np.asarray(keep, np.int64)


def _load_coco(gt: Any):
  from pycocotools.coco import COCO
  if isinstance(gt, COCO):
    return gt
  coco = COCO()
  if isinstance(gt, Mapping):
    coco.dataset = copy.deepcopy(dict(gt))
  else:
    with open(gt) as f:
      coco.dataset = json.load(f)
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco


def coco_keypoint_stats(coco_gt: Any, results: Sequence[Mapping[str, Any]],
                        sigmas: np.ndarray, image_ids: Sequence[int] | None = None
                        ) -> dict[str, float]:
  """pycocotools ``COCOeval`` (iouType 'keypoints') of result dicts ``{image_id, category_id,
  keypoints [3K], score}``; returns the ten summary stats named as :data:`COCO_STAT_NAMES`.
  ``image_ids``: score only these images (``COCOeval.params.imgIds``; default every image)."""
  from pycocotools.cocoeval import COCOeval
  coco_gt = _load_coco(coco_gt)
  if not results:
    return {name: 0.0 for name in COCO_STAT_NAMES}
  with contextlib.redirect_stdout(io.StringIO()):
    coco_dt = coco_gt.loadRes([dict(r) for r in results])
    ev = COCOeval(coco_gt, coco_dt, "keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    if image_ids is not None:
      ev.params.imgIds = list(image_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  # COCOeval reports -1 where a stat has no ground truth (e.g. no medium persons); keep it.
  return {name: float(v) for name, v in zip(COCO_STAT_NAMES, ev.stats)}


class CocoKeypointEvaluator:
  """Top-down keypoint AP (COCO / AIC) through pycocotools.

  Args:
    gt: ground truth: a COCO keypoint json path, its loaded dict, or a ``pycocotools`` COCO.
    sigmas: per-joint OKS sigmas; ``'coco'`` (17), ``'aic'`` (14) or an array.
    oks_thr, vis_thr: OKS-NMS threshold (0.9) and rescoring keypoint-score threshold (0.2).
    use_nms: apply OKS-NMS per image.
    category_id: the person category of the results.

  Batch fields: ``'image_id' [B]`` COCO image id; ``'score' [B]`` person-box score (1 for
  ground-truth boxes; all ones when absent); ``'box_size' [B, 2]`` crop (w, h) in pixels, whose
  product is the NMS area (else ``'area' [B]``). Predictions: ``'keypoints_image' [B, K, 2]``
  (or ``'keypoints'``) in image pixels and ``'scores' [B, K]``.
  """

  def __init__(self, gt: Any, *, sigmas: Any = "coco", oks_thr: float = 0.9,
               vis_thr: float = 0.2, use_nms: bool = True, category_id: int = 1):
    if isinstance(sigmas, str):
      table = {"coco": COCO_SIGMAS, "aic": AIC_SIGMAS}
      if sigmas not in table:
        raise ValueError(f"unknown OKS sigmas {sigmas!r}; use 'coco', 'aic' or an array.")
      sigmas = table[sigmas]
    self.sigmas = np.asarray(sigmas, np.float64)
    self.gt = _load_coco(gt)
    self.oks_thr, self.vis_thr = float(oks_thr), float(vis_thr)
    self.use_nms = use_nms
    self.category_id = int(category_id)
    self._parts: list[tuple[np.ndarray, ...]] = []   # (image ids, kpts [n, K, 3], scores, areas)

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    xy = _image_keypoints(predictions)
    s = np.asarray(predictions["scores"], np.float64)
    n, k = s.shape
    if k != self.sigmas.size:
      raise ValueError(f"pose predictions have {k} joints but the OKS sigmas have "
                       f"{self.sigmas.size}; pass the dataset's sigmas.")
    real = _real(batch, n)
    ids = np.asarray(batch["image_id"]).astype(np.int64).reshape(-1)
    box_score = (np.asarray(batch["score"], np.float64).reshape(-1) if "score" in batch
                 else np.ones(n))
    if "box_size" in batch:
      area = np.prod(np.asarray(batch["box_size"], np.float64), axis=-1).reshape(-1)
    elif "area" in batch:
      area = np.asarray(batch["area"], np.float64).reshape(-1)
    else:
      raise KeyError("COCO keypoint evaluation needs batch['box_size'] [B, 2] (crop w, h in "
                     "pixels) or batch['area'] [B] for OKS-NMS.")
    kpts = np.concatenate([xy, s[..., None]], axis=-1)
    self._parts.append((ids[real], kpts[real], box_score[real], area[real]))

  def merge(self, other: "CocoKeypointEvaluator") -> "CocoKeypointEvaluator":
    """Adds another (e.g. another host's) evaluator's boxes to this one; returns self."""
    self._parts.extend(other._parts)
    return self

  def final_results(self) -> list[dict[str, Any]]:
    """The rescored, NMS-filtered result dicts that go to COCOeval."""
    if not self._parts:
      return []
    ids, kpts, box_score, area = (np.concatenate(x) for x in zip(*self._parts))
    # Canonical order (image, then content) so ties do not depend on update/merge order.
    order = np.lexsort(tuple(kpts.reshape(len(ids), -1).T[::-1]) + (box_score, ids))
    ids, kpts, box_score, area = ids[order], kpts[order], box_score[order], area[order]
    score = rescore(box_score, kpts[..., 2], self.vis_thr)
    results = []
    for image_id in np.unique(ids):
      sel = np.flatnonzero(ids == image_id)
      if self.use_nms:
        sel = sel[oks_nms(kpts[sel], score[sel], area[sel], self.sigmas, self.oks_thr)]
      for i in sel:
        results.append({"image_id": int(image_id), "category_id": self.category_id,
                        "keypoints": kpts[i].reshape(-1).tolist(), "score": float(score[i])})
    return results

  seen_images_only = False   # score only the images that got predictions (a bounded subset)

  def result(self) -> dict[str, float]:
    """COCOeval's stats; with ``seen_images_only`` (set by path_jax.evaluate when the examples
    are capped, e.g. the metrics during pretraining) over the images evaluated, not every image
    of the ground truth (which would count the unseen images' persons as misses)."""
    image_ids = None
    if self.seen_images_only and self._parts:
      image_ids = sorted(int(i) for i in np.unique(np.concatenate([p[0] for p in self._parts])))
    return coco_keypoint_stats(self.gt, self.final_results(), self.sigmas, image_ids=image_ids)


# -------------------------------------------------------------------------------- MPII PCKh

def pckh_counts(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_boxes: np.ndarray,
                thresholds: Sequence[float] = (0.5, 0.1)) -> tuple[np.ndarray, np.ndarray]:
  """Per-joint visible counts ``[K]`` and correct counts ``[T, K]`` at each threshold.

  ``pred``, ``gt`` ``[N, K, 2]`` pixels; ``visible [N, K]`` bool; ``head_boxes [N, 4]``
  (x1, y1, x2, y2). Error normalised by ``SC_BIAS x`` the head-box diagonal.
  """
  head = np.asarray(head_boxes, np.float64)
  head_size = MPII_SC_BIAS * np.linalg.norm(head[:, 2:4] - head[:, 0:2], axis=-1)   # [N]
  err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
  scaled = err / head_size[:, None]
  visible = np.asarray(visible, bool)
  correct = np.stack([((scaled <= t) & visible).sum(0) for t in thresholds]).astype(np.int64)
  return visible.sum(0).astype(np.int64), correct


class PCKhEvaluator:
  """MPII PCKh@0.5 (and @0.1) from head boxes in the batch.

  Batch fields: ``'keypoints_image'`` (or ``'keypoints'``) ``[B, K, 3]`` ground truth (x, y
  pixels, visibility > 0 = labelled), ``'head_box' [B, 4]`` (x1, y1, x2, y2 pixels). Predictions: ``'keypoints_image' [B, K, 2]`` (or
  ``'keypoints'``) in the same pixels. ``result()`` gives ``'PCKh'``, ``'PCKh@0.1'`` and the
  per-part values ``'head'``, ``'shoulder'``, ... (NaN for a part with no visible joint).
  """

  def __init__(self, num_joints: int = 16):
    self.num_joints = int(num_joints)
    self.visible = np.zeros(self.num_joints, np.int64)
    self.correct = np.zeros((2, self.num_joints), np.int64)

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    pred = _image_keypoints(predictions)
    gt = _true_keypoints(batch)
    if pred.shape[:2] != gt.shape[:2] or pred.shape[1] != self.num_joints:
      raise ValueError(f"PCKh: predictions {pred.shape} and batch['keypoints'] {gt.shape} must "
                       f"both have {self.num_joints} joints.")
    if "head_box" not in batch:
      raise KeyError("PCKh needs batch['head_box'] [B, 4] (x1, y1, x2, y2), the MPII head boxes "
                     "(headboxes_src of mpii_gt_val.mat).")
    real = _real(batch, gt.shape[0])
    head_box = np.asarray(batch["head_box"], np.float64)[real]
    if not np.all(np.isfinite(head_box)):
      raise ValueError("PCKh: some examples have no head box (NaN); the MPII builder reads them "
                       "from annotations/mpii_gt_<split>.mat next to the json: add that file "
                       "(mmpose's mpii_gt_val.mat) and rebuild pose/mpii.")
    vis, corr = pckh_counts(pred[real], gt[real, :, :2], gt[real, :, 2] > 0, head_box)
    self.visible += vis
    self.correct += corr

  def merge(self, other: "PCKhEvaluator") -> "PCKhEvaluator":
    """Adds another (e.g. another host's) evaluator's counts to this one; returns self."""
    self.visible += other.visible
    self.correct += other.correct
    return self

  def result(self) -> dict[str, float]:
    used = np.ones(self.num_joints, bool)
    used[list(MPII_EXCLUDED)] = False
    total = self.visible[used].sum()
    out = {}
    for name, row in (("PCKh", 0), ("PCKh@0.1", 1)):
      out[name] = float(self.correct[row, used].sum() / total) if total else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
      per_joint = self.correct[0] / self.visible
    for part, joints in MPII_PARTS.items():
      out[part] = float(np.mean(per_joint[list(joints)]))
    return out


# ------------------------------------------------------------------------------------- EPE

class EPEEvaluator:
  """Mean end-point error over labelled joints (Human3.6M), in keypoint units; lower is better.

  Batch fields: ``'keypoints_image'`` (or ``'keypoints'``) ``[B, K, 3]`` ground truth
  (visibility > 0 = labelled).
  Predictions: ``'keypoints_image' [B, K, 2]`` (or ``'keypoints'``) in the same unit.
  """

  def __init__(self):
    self._errors: list[np.ndarray] = []

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    pred = _image_keypoints(predictions)
    gt = _true_keypoints(batch)
    if pred.shape[:2] != gt.shape[:2]:
      raise ValueError(f"EPE: predictions {pred.shape} and batch['keypoints'] {gt.shape} differ.")
    real = _real(batch, gt.shape[0])
    err = np.linalg.norm(pred[real] - gt[real, :, :2], axis=-1)
    self._errors.append(err[gt[real, :, 2] > 0])

  def merge(self, other: "EPEEvaluator") -> "EPEEvaluator":
    """Adds another (e.g. another host's) evaluator's errors to this one; returns self."""
    self._errors.extend(other._errors)
    return self

  def result(self) -> dict[str, float]:
    err = np.concatenate(self._errors) if self._errors else np.zeros(0)
    return {"EPE": math.fsum(err) / err.size if err.size else 0.0,
            "num_joints": float(err.size)}


_METRICS = {"coco_ap": CocoKeypointEvaluator, "pckh": PCKhEvaluator, "epe": EPEEvaluator}


def Evaluator(metric: str = "coco_ap", **kwargs: Any):  # noqa: N802 (constructor-like factory)
  """The pose evaluator for ``metric``: ``'coco_ap'`` (COCO, AIC; needs ``gt=``), ``'pckh'``
  (MPII) or ``'epe'`` (Human3.6M); ``kwargs`` go to that class."""
  if metric not in _METRICS:
    raise ValueError(f"unknown pose metric {metric!r}; use one of {sorted(_METRICS)}.")
  return _METRICS[metric](**kwargs)
