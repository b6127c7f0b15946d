"""Parsing loss and training metric: pixel-wise cross-entropy with an ignore label."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy_ignore(logits: jax.Array, labels: jax.Array,
                         ignore_label: int = 255) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy over the pixels whose label is not ``ignore_label``.

  Args:
    logits: ``[B, H, W, N]`` class scores.
    labels: ``[B, H, W]`` integer class ids in ``[0, N)`` or ``ignore_label``.
  Returns:
    ``(loss, num_valid)``: the mean over non-ignored pixels of the whole (global) batch, as
    PyTorch's ``CrossEntropyLoss(ignore_index=255)``; 0 with zero gradient when every pixel is
    ignored (PyTorch would return NaN there).
  """
  labels = labels.astype(jnp.int32)
  valid = labels != ignore_label
  # Ignored pixels gather class 0 and are then masked out; `where` keeps their gradient at 0.
  safe = jnp.where(valid, labels, 0)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  num_valid = jnp.sum(valid)
  loss = jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(num_valid, 1).astype(jnp.float32)
  return loss, num_valid


def pixel_accuracy(logits: jax.Array, labels: jax.Array, ignore_label: int = 255) -> jax.Array:
  """Fraction of non-ignored pixels whose argmax class equals the label (0 when none valid)."""
  labels = labels.astype(jnp.int32)
  valid = labels != ignore_label
  hit = (jnp.argmax(logits, axis=-1) == labels) & valid
  return jnp.sum(hit) / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
