"""Detection losses: sigmoid focal + L1 + (1 - GIoU) on Hungarian-matched queries.

Per decoder layer and image (REFERENCE.md §3.5, ``DetSetCriterion``): the queries are matched to
the valid ground truths; the classification loss is the sigmoid focal loss of every query (target
1 for matched, 0 otherwise) except unmatched queries whose IoA (intersection / predicted area)
with some ignore region reaches ``ign_thr``; the box losses are the L1 distance (cxcywh) and
1 - GIoU of each matched pair. Each term is a sum over the global batch divided by ``num_boxes``,
the number of valid ground truths in the global batch (at least 1); with deep supervision every
decoder layer is matched on its own and its losses are added.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from path_jax.tasks.detection import boxes as box_ops
from path_jax.tasks.detection import budget, matcher

# Stand-in for padded ground-truth / ignore slots, so that no degenerate box ever reaches a
# division (NaN gradients leak through jnp.where otherwise).
DUMMY_BOX = (0.5, 0.5, 1.0, 1.0)


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, alpha: float = 0.25,
                       gamma: float = 2.0) -> jax.Array:
  """Element-wise sigmoid focal loss (RetinaNet), same shape as ``logits``; ``alpha < 0`` = none."""
  logits = logits.astype(jnp.float32)
  targets = targets.astype(jnp.float32)
  p = jax.nn.sigmoid(logits)
  # Stable BCE with logits: softplus(x) - x * t.
  ce = jax.nn.softplus(logits) - logits * targets
  p_t = p * targets + (1.0 - p) * (1.0 - targets)
  loss = ce * (1.0 - p_t) ** gamma
  if alpha >= 0:
    loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
  return loss


def _safe_boxes(b: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.where(mask[..., None], b.astype(jnp.float32), jnp.asarray(DUMMY_BOX, jnp.float32))


def image_loss_sums(logits: jax.Array, pred_boxes: jax.Array, gt_boxes: jax.Array,
                    gt_mask: jax.Array, ignore_boxes: jax.Array, ignore_mask: jax.Array,
                    cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Unnormalised loss sums of one image and one decoder layer.

  Args:
    logits: ``[Q]``; pred_boxes: ``[Q, 4]`` normalised cxcywh.
    gt_boxes: ``[G, 4]`` cxcywh, gt_mask: ``[G]`` bool (valid, non-ignore).
    ignore_boxes: ``[I, 4]`` cxcywh, ignore_mask: ``[I]`` bool.
    cfg: matcher costs plus ``focal_alpha``, ``focal_gamma``, ``ign_thr``.

  Returns:
    dict of scalars ``cls``, ``l1``, ``giou`` (sums) and ``iou`` (sum of matched IoUs).
  """
  gt_mask = gt_mask.astype(bool)
  gt = _safe_boxes(gt_boxes, gt_mask)
  gt_to_query, query_to_gt = matcher.match(logits, pred_boxes, gt, gt_mask, cfg)
  matched = query_to_gt >= 0

  keep = jnp.ones_like(matched)
  if ignore_boxes.shape[0]:
    ignore_mask = ignore_mask.astype(bool)
    ign = box_ops.cxcywh_to_xyxy(_safe_boxes(ignore_boxes, ignore_mask))
    pred_xyxy = lax.stop_gradient(box_ops.cxcywh_to_xyxy(pred_boxes.astype(jnp.float32)))
    ioa = jnp.where(ignore_mask[None, :], box_ops.pairwise_ioa(pred_xyxy, ign), 0.0)
    keep = matched | (jnp.max(ioa, axis=-1) < cfg["ign_thr"])
  focal = sigmoid_focal_loss(logits, matched, cfg["focal_alpha"], cfg["focal_gamma"])
  cls = jnp.sum(jnp.where(keep, focal, 0.0))

  # Box terms over ground truths (G <= Q gathers instead of Q).
  pred_m = pred_boxes.astype(jnp.float32)[jnp.maximum(gt_to_query, 0)]
  pred_m = _safe_boxes(pred_m, gt_mask)
  l1 = jnp.sum(jnp.where(gt_mask[:, None], jnp.abs(pred_m - gt), 0.0))
  pred_xyxy, gt_xyxy = box_ops.cxcywh_to_xyxy(pred_m), box_ops.cxcywh_to_xyxy(gt)
  giou = jnp.sum(jnp.where(gt_mask, 1.0 - box_ops.giou(pred_xyxy, gt_xyxy), 0.0))
  iou = jnp.sum(jnp.where(gt_mask, lax.stop_gradient(box_ops.iou(pred_xyxy, gt_xyxy)), 0.0))
  return {"cls": cls, "l1": l1, "giou": giou, "iou": iou}


def detection_loss(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
                   cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total detection loss over the (global) batch, and metrics.

  Args:
    outputs: ``logits [L, B, Q]``, ``boxes [L, B, Q, 4]`` (normalised cxcywh).
    batch: ``boxes [B, G, 4]``, ``box_mask [B, G]``, ``ignore_boxes [B, I, 4]``,
      ``ignore_mask [B, I]`` (see the package docstring).
    cfg: the dataset config (``default_config`` fields).

  Returns:
    ``(loss, metrics)``: ``loss`` = sum over the supervised layers of
    ``(weight_class * cls + weight_bbox * l1 + weight_giou * giou) / num_boxes``; metrics hold
    the last layer's unweighted terms, ``num_boxes`` and the mean IoU of its matched pairs.
  """
  logits, pred = outputs["logits"], outputs["boxes"]
  if logits.ndim != 3 or pred.shape != logits.shape + (4,):
    raise ValueError(f"detection outputs must be logits [L, B, Q] and boxes [L, B, Q, 4]; got "
                     f"{logits.shape} and {pred.shape}.")
  if not cfg["deep_supervision"]:
    logits, pred = logits[-1:], pred[-1:]
  gt, gt_mask = batch["boxes"], batch["box_mask"]
  ign, ign_mask = batch["ignore_boxes"], batch["ignore_mask"]
  max_boxes, max_ignore = budget.slots(cfg)
  if gt.shape[1] != max_boxes or ign.shape[1] != max_ignore:
    raise ValueError(f"detection batch has {gt.shape[1]} box slots and {ign.shape[1]} ignore "
                     f"slots but the dataset config says max_boxes={max_boxes} and "
                     f"max_ignore={max_ignore}; pad the batch to the configured sizes.")

  # cfg stays a closure constant: its numbers are static (Python floats), not traced.
  one = functools.partial(image_loss_sums, cfg=cfg)
  per_layer = jax.vmap(jax.vmap(one), in_axes=(0, 0, None, None, None, None))
  sums = per_layer(logits, pred, gt, gt_mask, ign, ign_mask)              # each [L, B]
  sums = {k: jnp.sum(v, axis=1) for k, v in sums.items()}                 # [L]

  num_gt = jnp.sum(gt_mask.astype(jnp.float32))
  num_boxes = jnp.maximum(num_gt, 1.0)
  per_layer_loss = (cfg["weight_class"] * sums["cls"] + cfg["weight_bbox"] * sums["l1"]
                    + cfg["weight_giou"] * sums["giou"]) / num_boxes
  loss = jnp.sum(per_layer_loss)
  metrics = {
      "loss": loss,
      # Unweighted terms of the last layer; named without "loss" so that nothing which sums
      # "loss*" keys (as the reference solver does) counts them twice.
      "focal": sums["cls"][-1] / num_boxes,
      "l1": sums["l1"][-1] / num_boxes,
      "giou": sums["giou"][-1] / num_boxes,
      "num_boxes": num_gt,
      "matched_iou": sums["iou"][-1] / num_boxes,
  }
  return loss, metrics
