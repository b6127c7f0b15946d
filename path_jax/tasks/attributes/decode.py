"""Attribute predictions (REFERENCE §6.4: sigmoid > 0.5)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def predict(logits: jax.Array) -> dict[str, jax.Array]:
  """[B, A] logits -> 'probs' [B, A] float32 sigmoid, 'pred' [B, A] bool (prob > 0.5)."""
  probs = jax.nn.sigmoid(logits.astype(jnp.float32))
  return {"probs": probs, "pred": probs > 0.5}
