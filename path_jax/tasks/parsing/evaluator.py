"""Human-parsing evaluation: confusion matrix -> mIoU, pixel accuracy, mean class accuracy.

Follows PATH's ``HumParEvaluator`` (REFERENCE.md §6.4): pixels whose ground truth is the ignore
label (255) are dropped; the confusion matrix ``M[gt, pred]`` of the rest is summed over the
test set. With ``tp = diag(M)``, ``gt_c`` = row sums and ``pred_c`` = column sums:

* ``'mIoU'``: mean of ``tp / (gt_c + pred_c - tp)`` over classes present in ground truth or
  prediction (a class absent from both is left out, not counted as 0);
* ``'pixel_acc'``: ``sum(tp) / sum(M)``;
* ``'mean_acc'``: mean of ``tp / gt_c`` over classes present in ground truth (per-class
  recall, the usual definition). PATH's code divides by the *column* sums instead (its
  detectron2-derived formula indexes the matrix the other way round), which makes its "mACC" a
  mean per-class precision; we report the standard quantity.
* ``'iou/<c>'``: per-class IoU (NaN for a class absent from both).

All fractions in [0, 1]. Integer counts make the result independent of update/merge order.

Batch fields: ``'label' [B, H, W]`` (or ``[B, H, W, 1]``) ground-truth class ids, 255 ignore;
``'mask' [B]`` bool (optional). Predictions: ``'label' [B, H, W]`` class ids at the size of the
ground truth (the task's ``decode``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.tasks.common import real_mask


_real = real_mask


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_label: int = 255) -> np.ndarray:
  """``[C, C]`` int64 counts ``M[g, p]`` over pixels whose ground truth is not ``ignore_label``."""
  gt = np.asarray(gt).reshape(-1).astype(np.int64)
  pred = np.asarray(pred).reshape(-1).astype(np.int64)
  valid = gt != ignore_label
  gt, pred = gt[valid], pred[valid]
  for name, x in (("ground-truth", gt), ("predicted", pred)):
    if x.size and (x.min() < 0 or x.max() >= num_classes):
      raise ValueError(f"{name} class ids span [{x.min()}, {x.max()}], outside [0, {num_classes}) "
                       f"(ignore {ignore_label}); check num_classes of the parsing dataset.")
  return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes
                     ).reshape(num_classes, num_classes).astype(np.int64)


def segmentation_metrics(conf: np.ndarray) -> dict[str, float]:
  """mIoU, pixel accuracy, mean class accuracy and per-class IoU of a ``[C, C]`` matrix."""
  conf = np.asarray(conf, np.float64)
  tp = np.diag(conf)
  gt_c, pred_c = conf.sum(1), conf.sum(0)
  union = gt_c + pred_c - tp
  iou = np.full(conf.shape[0], np.nan)
  np.divide(tp, union, out=iou, where=union > 0)
  present = gt_c > 0
  total = conf.sum()
  out = {"mIoU": float(np.mean(iou[union > 0])) if (union > 0).any() else 0.0,
         "pixel_acc": float(tp.sum() / total) if total else 0.0,
         "mean_acc": float(np.mean(tp[present] / gt_c[present])) if present.any() else 0.0}
  out.update({f"iou/{c}": float(v) for c, v in enumerate(iou)})
  return out


class Evaluator:
  """Accumulates the confusion matrix of one parsing dataset.

  Args:
    cfg: the dataset config (reads ``num_classes`` and ``ignore_label``), or pass them directly.
  """

  def __init__(self, cfg: Mapping[str, Any] | None = None, *, num_classes: int | None = None,
               ignore_label: int | None = None):
    cfg = cfg or {}
    num_classes = num_classes if num_classes is not None else cfg.get("num_classes")
    if num_classes is None:
      raise ValueError("parsing Evaluator needs num_classes (argument or cfg.num_classes).")
    self.num_classes = int(num_classes)
    self.ignore_label = int(ignore_label if ignore_label is not None
                            else cfg.get("ignore_label", 255))
    self.conf = np.zeros((self.num_classes, self.num_classes), np.int64)

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    pred = np.asarray(predictions["label"])
    gt = np.asarray(batch["label"])
    if gt.ndim == 4 and gt.shape[-1] == 1:
      gt = gt[..., 0]
    if pred.shape != gt.shape:
      raise ValueError(f"parsing predictions {pred.shape} and batch['label'] {gt.shape} differ; "
                       f"resize the predicted labels to the ground-truth size before evaluating.")
    real = _real(batch, gt.shape[0])
    self.conf += confusion_matrix(gt[real], pred[real], self.num_classes, self.ignore_label)

  def merge(self, other: "Evaluator") -> "Evaluator":
    """Adds another (e.g. another host's) confusion matrix to this one; returns self."""
    if other.conf.shape != self.conf.shape:
      raise ValueError(f"cannot merge parsing evaluators of {other.num_classes} and "
                       f"{self.num_classes} classes.")
    self.conf += other.conf
    return self

  def result(self) -> dict[str, float]:
    return segmentation_metrics(self.conf)
