"""Counting predictions."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from path_jax.tasks.counting.loss import predicted_count


def predict(pred: jax.Array, density_scale: float) -> dict[str, jax.Array]:
  """[B, h, w] head output -> 'density' [B, h, w] (heads per output cell), 'count' [B]."""
  return {"density": pred.astype(jnp.float32) / density_scale,
          "count": predicted_count(pred, density_scale)}
