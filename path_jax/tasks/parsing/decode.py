"""Parsing inference: optional flip-test averaging of logits, then the argmax label map."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def flip_permutation(num_classes: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
  """Class permutation ``[N]`` that swaps each left/right pair (identity elsewhere)."""
  perm = np.arange(num_classes)
  for a, b in flip_pairs:
    if not (0 <= a < num_classes and 0 <= b < num_classes):
      raise ValueError(f"flip pair ({a}, {b}) is out of range for {num_classes} classes; "
                       f"fix the dataset's `flip_pairs` or `num_classes`.")
    perm[a], perm[b] = b, a
  return perm


def flip_back_logits(logits_flipped: jax.Array, flip_pairs: Sequence[Sequence[int]]) -> jax.Array:
  """Maps logits ``[B, H, W, N]`` of a horizontally flipped image back to the original frame.

  Flips along width and swaps the channels of each left/right class pair.
  """
  perm = flip_permutation(logits_flipped.shape[-1], flip_pairs)
  return logits_flipped[:, :, ::-1, :][..., perm]


def decode_labels(logits: jax.Array, logits_flipped: jax.Array | None = None,
                  flip_pairs: Sequence[Sequence[int]] = ()) -> dict[str, jax.Array]:
  """``{'label': [B, H, W] int32, 'logits': [B, H, W, N]}``; with ``logits_flipped`` the logits
  are the average of both views (flip test)."""
  logits = logits.astype(jnp.float32)
  if logits_flipped is not None:
    logits = 0.5 * (logits + flip_back_logits(logits_flipped.astype(jnp.float32), flip_pairs))
  return {"label": jnp.argmax(logits, axis=-1).astype(jnp.int32), "logits": logits}
