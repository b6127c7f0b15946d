"""Positive-ratio-weighted, masked binary cross-entropy (PATH ``CEL_Sigmoid``, REFERENCE §3.3)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def ratio_weights(labels: jax.Array, positive_ratios: jax.Array) -> jax.Array:
  """Per-label weights [B, A]: exp(1 - r_a) for positives, exp(r_a) for negatives, 0 for -1.

  Args:
    labels: [B, A] ints in {-1, 0, 1}; -1 = attribute not annotated (another dataset's column).
    positive_ratios: [A] positive fraction r_a of each attribute.
  """
  r = positive_ratios.astype(jnp.float32)[None, :]
  w = jnp.where(labels == 1, jnp.exp(1.0 - r), jnp.exp(r))
  return jnp.where(labels == -1, 0.0, w)


def weighted_bce(logits: jax.Array, labels: jax.Array, positive_ratios: jax.Array) -> jax.Array:
  """Scalar loss: sum over batch and attributes of w * BCE-with-logits, divided by B.

  Args:
    logits: [B, A] attribute logits.
    labels: [B, A] ints in {-1, 0, 1}; -1 entries contribute nothing (value or gradient).
    positive_ratios: [A] floats.

  The sum is divided by the batch size B, not the number of valid labels, as PATH does
  (``size_average``), so a sub-batch with many missing attributes yields a smaller loss.
  """
  logits = logits.astype(jnp.float32)
  target = (labels == 1).astype(jnp.float32)
  # Stable BCE-with-logits: max(x, 0) - x y + log(1 + exp(-|x|)).
  bce = jax.nn.relu(logits) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.sum(bce * ratio_weights(labels, positive_ratios)) / logits.shape[0]


def label_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of annotated (label != -1) entries whose ``logit > 0`` matches the label."""
  valid = (labels != -1).astype(jnp.float32)
  correct = ((logits > 0) == (labels == 1)).astype(jnp.float32)
  return jnp.sum(correct * valid) / jnp.maximum(jnp.sum(valid), 1.0)
