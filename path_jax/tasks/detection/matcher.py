"""Exact Hungarian matching in JAX, and the DETR matching cost.

:func:`hungarian` solves the rectangular assignment problem (every valid row gets a distinct
column, total cost minimal) with the shortest-augmenting-path algorithm with dual potentials
(Kuhn-Munkres in the Jonker-Volgenant form): one augmentation per valid row, each a Dijkstra-like
search over the columns done with whole-vector operations of length ``M``. It runs on device under
``jit`` with static shapes (no host callback), and vmaps over batch and decoder layers: the
``while_loop`` trip counts become the batch maximum, and rows past an image's number of valid
ground truths are computed on a zeroed copy and discarded.

Rows are ground truths (``N = G``, padded, with a validity mask) and columns are queries
(``M = Q``), so the loops run ``G`` times, not ``Q`` times. The cost is O(G^2 Q) in the worst
case and much less on DETR costs, where most augmenting paths are short.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from path_jax.tasks.detection import boxes as box_ops


def hungarian(cost: jax.Array, row_valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Minimum-cost assignment of the valid rows of ``cost`` to distinct columns.

  Args:
    cost: ``[N, M]`` finite costs, ``N <= M`` (rows: ground truths, columns: queries).
    row_valid: ``[N]`` bool; invalid rows (padding, ignore regions) take no column and their
      costs are never read.

  Returns:
    ``row_to_col [N]`` int32 (the column of each valid row, -1 for invalid rows) and
    ``col_to_row [M]`` int32 (the row assigned to each column, -1 for free columns).
  """
  n, m = cost.shape
  if n > m:
    raise ValueError(f"hungarian: cost has more rows ({n} ground truths) than columns ({m} "
                     "queries); configure max_boxes <= num_queries.")
  if n == 0:
    return jnp.zeros((0,), jnp.int32), jnp.full((m,), -1, jnp.int32)
  row_valid = row_valid.astype(bool)
  # Valid rows first (stable), so the row loop runs over 1..num_valid only.
  order = jnp.argsort(~row_valid, stable=True).astype(jnp.int32)
  num_valid = jnp.sum(row_valid).astype(jnp.int32)
  a = jnp.where(row_valid[:, None], cost.astype(jnp.float32), 0.0)[order]
  # Index 0 is the algorithm's dummy row/column; real rows/columns are 1-based.
  a = jnp.pad(a, ((1, 0), (1, 0)))
  inf = jnp.array(jnp.inf, jnp.float32)

  def add_row(i, state):
    u, v, p, way = state
    p = p.at[0].set(i)

    def search_cond(s):
      p, j0 = s[2], s[-1]
      return p[j0] != 0

    def search_body(s):
      u, v, p, way, minv, used, j0 = s
      used = used.at[j0].set(True)
      i0 = p[j0]
      cur = a[i0] - u[i0] - v
      better = ~used & (cur < minv)
      minv = jnp.where(better, cur, minv)
      way = jnp.where(better, j0, way)
      masked = jnp.where(used, inf, minv)
      j1 = jnp.argmin(masked).astype(jnp.int32)
      delta = masked[j1]
      # Rows in the search tree are exactly p[used] (distinct), so a scatter-add is exact.
      u = u.at[p].add(jnp.where(used, delta, 0.0))
      v = jnp.where(used, v - delta, v)
      minv = jnp.where(used, minv, minv - delta)
      return u, v, p, way, minv, used, j1

    minv = jnp.full((m + 1,), inf)
    used = jnp.zeros((m + 1,), bool)
    u, v, p, way, _, _, j0 = lax.while_loop(
        search_cond, search_body, (u, v, p, way, minv, used, jnp.int32(0)))

    def aug_body(s):
      p, j0 = s
      j1 = way[j0]
      return p.at[j0].set(p[j1]), j1

    p, _ = lax.while_loop(lambda s: s[1] != 0, aug_body, (p, j0))
    return u, v, p, way

  def outer_cond(s):
    return s[0] <= num_valid

  def outer_body(s):
    i, state = s
    return i + 1, add_row(i, state)

  init = (jnp.zeros((n + 1,), jnp.float32), jnp.zeros((m + 1,), jnp.float32),
          jnp.zeros((m + 1,), jnp.int32), jnp.zeros((m + 1,), jnp.int32))
  _, (_, _, p, _) = lax.while_loop(outer_cond, outer_body, (jnp.int32(1), init))
  assigned = p[1:]
  col_to_row = jnp.where(assigned > 0, order[jnp.maximum(assigned - 1, 0)], -1).astype(jnp.int32)
  row_to_col = jnp.full((n,), -1, jnp.int32).at[jnp.where(col_to_row >= 0, col_to_row, n)].set(
      jnp.arange(m, dtype=jnp.int32), mode="drop")
  return row_to_col, col_to_row


def focal_class_cost(logits: jax.Array, alpha: float, gamma: float) -> jax.Array:
  """``[Q]`` focal-style cost of calling each query a person (lower = more confident)."""
  p = jax.nn.sigmoid(logits.astype(jnp.float32))
  neg = (1.0 - alpha) * p ** gamma * -jnp.log(1.0 - p + 1e-8)
  pos = alpha * (1.0 - p) ** gamma * -jnp.log(p + 1e-8)
  return pos - neg


def match_cost(logits: jax.Array, pred_boxes: jax.Array, gt_boxes: jax.Array,
               cfg: Mapping[str, Any]) -> jax.Array:
  """DETR matching cost ``[Q, G]`` of one image.

  Args:
    logits: ``[Q]`` person logits.
    pred_boxes: ``[Q, 4]`` normalised cxcywh.
    gt_boxes: ``[G, 4]`` normalised cxcywh (padding must be a non-degenerate dummy box).
    cfg: reads ``cost_class``, ``cost_bbox``, ``cost_giou``, ``focal_alpha``, ``focal_gamma``.
  """
  pred_boxes = pred_boxes.astype(jnp.float32)
  gt_boxes = gt_boxes.astype(jnp.float32)
  c_cls = focal_class_cost(logits, cfg["focal_alpha"], cfg["focal_gamma"])[:, None]
  c_l1 = jnp.sum(jnp.abs(pred_boxes[:, None, :] - gt_boxes[None, :, :]), axis=-1)
  c_giou = -box_ops.pairwise_giou(box_ops.cxcywh_to_xyxy(pred_boxes),
                                  box_ops.cxcywh_to_xyxy(gt_boxes))
  return cfg["cost_class"] * c_cls + cfg["cost_bbox"] * c_l1 + cfg["cost_giou"] * c_giou


def match(logits: jax.Array, pred_boxes: jax.Array, gt_boxes: jax.Array, gt_mask: jax.Array,
          cfg: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """Hungarian matching of one image's queries to its valid ground truths (no gradient).

  Returns ``gt_to_query [G]`` (-1 for invalid ground truths) and ``query_to_gt [Q]`` (-1 for
  unmatched queries).
  """
  cost = lax.stop_gradient(match_cost(logits, pred_boxes, gt_boxes, cfg))
  return hungarian(cost.T, gt_mask)
