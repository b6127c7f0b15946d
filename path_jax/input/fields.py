"""Config lookup and error types shared by the task transforms and the pipelines."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


class BadExampleError(ValueError):
  """A record that cannot become a training example (raised by a transform, counted and skipped)."""


def option(cfg: Mapping[str, Any], key: str, defaults: Mapping[str, Any], owner: str) -> Any:
  """``cfg[key]`` if the dataset config sets it (not None), else ``defaults[key]``.

  ``owner`` names the module whose ``DEFAULTS`` lists the field, for the error when a key is in
  neither (a typo in a transform, not a user error).
  """
  if key not in defaults:
    raise KeyError(f"{owner}: {key!r} is not a transform option; known: {sorted(defaults)}.")
  value = cfg.get(key, None) if cfg is not None else None
  return defaults[key] if value is None else value


def hw(value: Any, name: str) -> tuple[int, int]:
  """A (height, width) pair of positive ints, or an error naming the config field."""
  try:
    h, w = (int(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be (height, width) in pixels, got {value!r}.") from None
  if h <= 0 or w <= 0:
    raise ValueError(f"{name} must be positive, got {(h, w)}.")
  return h, w


def pairs(value: Any, n: int, name: str) -> tuple[tuple[int, int], ...]:
  """Validated left/right index pairs within ``[0, n)``."""
  out = tuple((int(a), int(b)) for a, b in (value or ()))
  for a, b in out:
    if not (0 <= a < n and 0 <= b < n) or a == b:
      raise ValueError(f"{name} has pair {(a, b)} outside [0, {n}) or self-paired; fix the "
                       f"dataset config's {name}.")
  return out


def swap_permutation(n: int, flip_pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
  """``[n]`` int permutation that swaps every pair (for joints or class ids)."""
  perm = np.arange(n)
  for a, b in flip_pairs:
    perm[a], perm[b] = b, a
  return perm
