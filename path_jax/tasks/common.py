"""Small helpers shared by the task packages' evaluators."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def real_mask(batch: Mapping[str, Any], n: int) -> np.ndarray:
  """``[n]`` bool: ``batch['mask']`` (real examples; padding is False) or all true."""
  if "mask" not in batch:
    return np.ones(n, bool)
  mask = np.asarray(batch["mask"]).astype(bool).reshape(-1)
  if mask.shape[0] != n:
    raise ValueError(f"batch['mask'] has {mask.shape[0]} entries but the batch has {n} examples.")
  return mask
