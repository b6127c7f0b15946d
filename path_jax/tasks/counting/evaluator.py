"""Crowd-counting evaluation: MAE and MSE of per-image counts, as the counting literature reports.

``'mae'`` = mean |pred - gt|; ``'mse'`` = sqrt(mean (pred - gt)^2) — the "MSE" of counting papers
(ShanghaiTech, DR.VIC) is the root of the mean squared error, in heads. Per-image errors are
kept and summed with ``math.fsum``, so the result does not depend on update or merge order.

Batch fields: ``'count' [B]`` ground-truth heads, ``'mask' [B]`` bool (optional; false rows are
padding). Predictions: ``'count' [B]`` (the task's ``decode``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from path_jax.tasks.common import real_mask


_real = real_mask


def count_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
  """MAE and root-MSE of ``[N]`` predicted vs ground-truth counts (0 for N = 0)."""
  err = np.asarray(pred, np.float64).reshape(-1) - np.asarray(gt, np.float64).reshape(-1)
  n = err.size
  if n == 0:
    return {"mae": 0.0, "mse": 0.0, "num_images": 0.0}
  return {"mae": math.fsum(np.abs(err)) / n, "mse": math.sqrt(math.fsum(err * err) / n),
          "num_images": float(n)}


class Evaluator:
  """Collects per-image count errors; :meth:`result` gives ``mae``, ``mse`` (root), ``num_images``.
  """

  def __init__(self, cfg: Mapping[str, Any] | None = None):
    del cfg  # no dataset-dependent settings
    self._errors: list[np.ndarray] = []

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    pred = np.asarray(predictions["count"], np.float64).reshape(-1)
    gt = np.asarray(batch["count"], np.float64).reshape(-1)
    if pred.shape != gt.shape:
      raise ValueError(f"predicted counts {pred.shape} and batch['count'] {gt.shape} differ.")
    real = _real(batch, pred.size)
    self._errors.append(pred[real] - gt[real])

  def merge(self, other: "Evaluator") -> "Evaluator":
    """Adds another (e.g. another host's) evaluator's images to this one; returns self."""
    self._errors.extend(other._errors)
    return self

  def result(self) -> dict[str, float]:
    err = np.concatenate(self._errors) if self._errors else np.zeros(0)
    return count_errors(err, np.zeros_like(err))
