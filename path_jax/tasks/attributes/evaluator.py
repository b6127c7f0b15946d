"""Pedestrian-attribute evaluation (REFERENCE.md §6.4, PATH ``PedAttrEvaluator``).

A prediction is positive when its probability exceeds ``threshold`` (0.5). Metrics, all
fractions in [0, 1]:

* label-based ``'mA'``: mean over attributes of (TPR + TNR) / 2, where each attribute's TPR and
  TNR count only its annotated labels (-1 = not annotated is excluded per attribute). As the
  reference (eps 1e-20 in the denominators), an attribute with no positive (or no negative)
  label in the test set contributes a TPR (TNR) of 0. ``'pos_recall'`` / ``'neg_recall'``:
  the means of TPR and TNR.
* instance-based ``'accuracy'`` (|P & G| / |P | G|), ``'precision'`` (|P & G| / |P|),
  ``'recall'`` (|P & G| / |G|) and ``'f1'`` (per-instance 2PR / (P + R)), each averaged over
  images; here -1 labels count as 0, as the reference sets them.

Batch fields: ``'labels' [B, A]`` in {-1, 0, 1}; ``'mask' [B]`` bool (optional). Predictions:
``'probs' [B, A]`` (the task's ``decode``), or ``'pred' [B, A]`` bool when no probabilities.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from path_jax.tasks.common import real_mask

_EPS = 1e-20  # the reference's denominator guard


_real = real_mask


def label_counts(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``[4, A]`` int64 counts per attribute: positives, negatives, true positives, true negatives.

  ``pred [N, A]`` bool; ``labels [N, A]`` in {-1, 0, 1} (-1 counts nowhere).
  """
  pos, neg = labels == 1, labels == 0
  return np.stack([pos.sum(0), neg.sum(0), (pos & pred).sum(0), (neg & ~pred).sum(0)]
                  ).astype(np.int64)


def instance_scores(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``[N, 4]`` float64 per-image accuracy, precision, recall, F1 (-1 labels as 0)."""
  gt = labels == 1
  inter = (gt & pred).sum(1).astype(np.float64)
  union = (gt | pred).sum(1)
  prec = inter / (pred.sum(1) + _EPS)
  rec = inter / (gt.sum(1) + _EPS)
  f1 = 2 * prec * rec / (prec + rec + _EPS)
  return np.stack([inter / (union + _EPS), prec, rec, f1], axis=1)


class Evaluator:
  """Label-based mA and instance-based metrics of multi-label attribute predictions.

  State is attribute counts plus per-image scores, so merging hosts is exact.
  """

  def __init__(self, cfg: Mapping[str, Any] | None = None, *, threshold: float = 0.5):
    del cfg  # the number of attributes is taken from the first batch
    self.threshold = float(threshold)
    self._counts: np.ndarray | None = None
    self._instance: list[np.ndarray] = []

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    if "probs" in predictions:
      pred = np.asarray(predictions["probs"], np.float64) > self.threshold
    else:
      pred = np.asarray(predictions["pred"]).astype(bool)
    labels = np.asarray(batch["labels"]).astype(np.int64)
    if pred.shape != labels.shape or pred.ndim != 2:
      raise ValueError(f"attribute predictions {pred.shape} and batch['labels'] {labels.shape} "
                       f"must both be [B, A].")
    real = _real(batch, labels.shape[0])
    pred, labels = pred[real], labels[real]
    counts = label_counts(pred, labels)
    if self._counts is None:
      self._counts = counts
    elif self._counts.shape != counts.shape:
      raise ValueError(f"attribute count changed from {self._counts.shape[1]} to "
                       f"{counts.shape[1]} between batches.")
    else:
      self._counts = self._counts + counts
    self._instance.append(instance_scores(pred, labels))

  def merge(self, other: "Evaluator") -> "Evaluator":
    """Adds another (e.g. another host's) evaluator's images to this one; returns self."""
    if other._counts is not None:
      self._counts = other._counts.copy() if self._counts is None else self._counts + other._counts
    self._instance.extend(other._instance)
    return self

  def result(self) -> dict[str, float]:
    if self._counts is None:
      raise ValueError("attribute evaluation saw no batch; call update() first.")
    pos, neg, tp, tn = self._counts.astype(np.float64)
    tpr, tnr = tp / (pos + _EPS), tn / (neg + _EPS)
    inst = np.concatenate(self._instance)
    n = inst.shape[0]
    out = {"mA": float(np.mean((tpr + tnr) / 2)), "pos_recall": float(np.mean(tpr)),
           "neg_recall": float(np.mean(tnr))}
    for j, name in enumerate(("accuracy", "precision", "recall", "f1")):
      out[name] = math.fsum(inst[:, j]) / n if n else 0.0
    out["num_images"] = float(n)
    return out
