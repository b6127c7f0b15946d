"""Counting loss and metrics as pure functions."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def density_mse(pred: jax.Array, target: jax.Array, density_scale: float) -> jax.Array:
  """Pixel MSE, mean over [B, h, w], of the scaled prediction against ``scale x target``.

  Args:
    pred: [B, h, w] head output (density x ``density_scale``).
    target: [B, h, w] float32 density map (sums to the count).
  """
  diff = pred.astype(jnp.float32) - density_scale * target.astype(jnp.float32)
  return jnp.mean(diff * diff)


def predicted_count(pred: jax.Array, density_scale: float) -> jax.Array:
  """[B, h, w] scaled density -> [B] float32 counts."""
  return jnp.sum(pred.astype(jnp.float32), axis=(1, 2)) / density_scale
