"""Pose loss and training metric: mmpose ``JointsMSELoss`` with target weights, heatmap PCK."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def joints_mse(heatmaps: jax.Array, target: jax.Array, target_weight: jax.Array) -> jax.Array:
  """Weighted heatmap MSE.

  For each joint j: ``mean_{b,y,x} (w_bj * (pred - gt))^2``, then summed over joints and divided by
  K, which equals one mean over ``B*H*W*K``. The ``(pred*w - gt*w)^2`` form of mmpose squares the
  weight too; with 0/1 visibility weights that is the same.

  Args:
    heatmaps, target: ``[B, H, W, K]``. target_weight: ``[B, K]`` (1 visible, 0 ignored).
  """
  w = target_weight.astype(jnp.float32)[:, None, None, :]
  diff = (heatmaps.astype(jnp.float32) - target.astype(jnp.float32)) * w
  return jnp.mean(jnp.square(diff))


def heatmap_argmax(heatmaps: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Integer peak ``(x, y)`` per joint ``[B, K, 2]`` (float32) and the peak value ``[B, K]``."""
  b, h, w, k = heatmaps.shape
  flat = jnp.moveaxis(heatmaps, -1, 1).reshape(b, k, h * w)
  idx = jnp.argmax(flat, axis=-1)
  maxval = jnp.max(flat, axis=-1)
  xy = jnp.stack([idx % w, idx // w], axis=-1).astype(jnp.float32)
  return xy, maxval


def pck_accuracy(heatmaps: jax.Array, target: jax.Array, target_weight: jax.Array,
                 thr: float = 0.05) -> jax.Array:
  """Training-time PCK of heatmap peaks (the ``top1`` of the authors' logs, mmpose definition).

  A joint counts when its target weight is > 0; it is correct when the distance between predicted
  and target argmax, with x divided by the heatmap height and y by the width (mmpose's
  normalisation, kept so numbers compare), is below ``thr``. Accuracy per joint over the batch,
  then the mean over joints with at least one counted instance (0 if none).
  """
  _, h, w, _ = heatmaps.shape
  pred, _ = heatmap_argmax(heatmaps)
  gt, _ = heatmap_argmax(target)
  norm = jnp.asarray([h, w], jnp.float32)
  dist = jnp.linalg.norm((pred - gt) / norm, axis=-1)                  # [B, K]
  valid = target_weight > 0
  num = jnp.sum(valid, axis=0)                                          # [K]
  hits = jnp.sum(valid & (dist < thr), axis=0)
  per_joint = hits / jnp.maximum(num, 1)
  has = num > 0
  return jnp.sum(jnp.where(has, per_joint, 0.0)) / jnp.maximum(jnp.sum(has), 1)
