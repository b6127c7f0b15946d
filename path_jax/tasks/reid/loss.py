"""ReID losses as pure functions: identity cross-entropy and batch-hard triplet (REFERENCE §3.4).

Both follow TransReID / PATH's ``Softmax_TripletLoss``: cross-entropy on the BNNeck logits,
batch-hard triplet on the feature *before* the BNNeck, total ``CE + w * triplet``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing (PyTorch semantics).

  Args:
    logits: [B, K] class scores (any float dtype; computed in float32).
    labels: [B] int class indices in [0, K).
    label_smoothing: epsilon; the target is (1 - eps) one-hot + eps / K uniform.

  Returns:
    [B] float32 losses. Nothing larger than the [B, K] logits is built: the one-hot term is a
    gather (``take_along_axis``) and the uniform term a mean, so a class axis of 151,595 sharded
    over the mesh only costs reductions over that axis.
  """
  logits = logits.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)                                         # [B]
  label_logit = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  nll = lse - label_logit
  if not label_smoothing:
    return nll
  uniform = lse - jnp.mean(logits, axis=-1)    # -mean_k log p_k
  return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def euclidean_distances(x: jax.Array) -> jax.Array:
  """[B, C] -> [B, B] pairwise euclidean distances, as the PyTorch code computes them.

  ``|a|^2 + |b|^2 - 2 a.b`` clamped at 1e-12 before the square root: the clamp keeps the
  gradient finite on the diagonal (and on duplicate features), where the distance is 0.
  """
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
  return jnp.sqrt(jnp.maximum(d2, 1e-12))


def batch_hard_triplet(features: jax.Array, labels: jax.Array,
                       margin: float | None = None) -> jax.Array:
  """Batch-hard triplet loss (Hermans et al. 2017) over the whole batch.

  For each anchor i: d_ap = max distance to a sample with the same label (the anchor itself
  included, as in the PyTorch code, so an identity seen once gives d_ap ~ 1e-6), d_an = min
  distance to a sample with another label.

  Args:
    features: [B, C] features (pre-BNNeck).
    labels: [B] int identity indices.
    margin: None -> soft margin, mean softplus(-(d_an - d_ap)) (PyTorch ``SoftMarginLoss``);
      a float m -> hard margin, mean relu(d_ap - d_an + m) (``MarginRankingLoss``).

  Returns:
    Scalar float32 loss, averaged over anchors that have at least one negative in the batch
    (the PyTorch code crashes when there are none; here such anchors are skipped, and a batch
    of a single identity gives 0).
  """
  dist = euclidean_distances(features)                               # [B, B]
  same = labels[:, None] == labels[None, :]
  d_ap = jnp.max(jnp.where(same, dist, -jnp.inf), axis=1)
  d_an = jnp.min(jnp.where(same, jnp.inf, dist), axis=1)
  has_neg = jnp.any(~same, axis=1)
  # Anchors without negatives get a finite dummy so neither the value nor its gradient is NaN.
  d_an = jnp.where(has_neg, d_an, d_ap)
  if margin is None:
    per_anchor = jax.nn.softplus(-(d_an - d_ap))
  else:
    per_anchor = jax.nn.relu(d_ap - d_an + margin)
  weight = has_neg.astype(jnp.float32)
  return jnp.sum(per_anchor * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy of [B, K] logits against [B] labels, a float32 scalar."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
