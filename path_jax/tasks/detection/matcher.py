"""Exact Hungarian matching in JAX, and the DETR matching cost.

:func:`hungarian` solves the rectangular assignment problem (every valid row gets a distinct
column, total cost minimal) with the shortest-augmenting-path algorithm with dual potentials
(Jonker-Volgenant / Crouse, as scipy's ``linear_sum_assignment``): one augmentation per valid
row, each a Dijkstra-like search over the columns done with whole-vector operations of length
``M``. It runs on device under ``jit`` with static shapes (no host callback) and vmaps over batch
and decoder layers: one flat ``while_loop`` runs until the problem with the most work is done;
finished problems keep their state.

Rows are ground truths (``N = G``, padded, with a validity mask) and columns are queries
(``M = Q``), so there are ``G`` searches, not ``Q``. The cost is O(G^2 Q) in the worst case and
much less on DETR costs, where most augmenting paths are short. Potentials are float32: integer
costs give the exact optimum; float costs the optimum up to float32 rounding of the sums.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from path_jax.tasks.detection import boxes as box_ops


class _State(NamedTuple):
  u: jax.Array          # [N] row potentials
  v: jax.Array          # [M] column potentials
  col4row: jax.Array    # [N] column of each (compacted) row, -1 while unassigned
  row4col: jax.Array    # [M] row of each column, -1 while free
  path: jax.Array       # [M] predecessor row of each column in the current search
  spc: jax.Array        # [M] shortest reduced path cost to each column in the current search
  sr: jax.Array         # [N] rows reached by the current search
  sc: jax.Array         # [M] columns finalised by the current search
  min_val: jax.Array    # length of the current shortest path
  i: jax.Array          # row being expanded
  cur: jax.Array        # row being added (rows < cur are assigned)
  jj: jax.Array         # column the augmentation is at
  augmenting: jax.Array


def hungarian(cost: jax.Array, row_valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Minimum-cost assignment of the valid rows of ``cost`` to distinct columns.

  Args:
    cost: ``[N, M]`` finite costs, ``N <= M`` (rows: ground truths, columns: queries).
    row_valid: ``[N]`` bool; invalid rows (padding, ignore regions) take no column and their
      costs are never read.

  Returns:
    ``row_to_col [N]`` int32 (the column of each valid row, -1 for invalid rows) and
    ``col_to_row [M]`` int32 (the row assigned to each column, -1 for free columns).

  One row is added at a time by a shortest augmenting path (Dijkstra on reduced costs, ties
  broken towards free columns), then the potentials are updated and the path is flipped. The
  search steps and the flip steps of all rows share one flat ``while_loop`` whose body does
  either step, so that under ``vmap`` every problem advances on every trip: the trip count is
  the largest total over the batch, not a sum of per-row maxima.
  """
  n, m = cost.shape
  if n > m:
    raise ValueError(f"hungarian: cost has more rows ({n} ground truths) than columns ({m} "
                     "queries); configure max_boxes <= num_queries.")
  if n == 0:
    return jnp.zeros((0,), jnp.int32), jnp.full((m,), -1, jnp.int32)
  row_valid = row_valid.astype(bool)
  # Valid rows first (stable), so rows 0..num_valid-1 are the ones to assign.
  order = jnp.argsort(~row_valid, stable=True).astype(jnp.int32)
  num_valid = jnp.sum(row_valid).astype(jnp.int32)
  a = jnp.where(row_valid[:, None], cost.astype(jnp.float32), 0.0)[order]
  rows = jnp.arange(n, dtype=jnp.int32)
  inf = jnp.float32(jnp.inf)

  def search(s: _State) -> _State:
    r = s.min_val + a[s.i] - s.u[s.i] - s.v
    better = ~s.sc & (r < s.spc)
    path = jnp.where(better, s.i, s.path)
    spc = jnp.where(better, r, s.spc)
    sr = s.sr.at[s.i].set(True)
    masked = jnp.where(s.sc, inf, spc)
    lowest = jnp.min(masked)
    tied = masked == lowest
    free_tied = tied & (s.row4col < 0)
    j = jnp.where(jnp.any(free_tied), jnp.argmax(free_tied), jnp.argmax(tied)).astype(jnp.int32)
    sc = s.sc.at[j].set(True)
    found = s.row4col[j] < 0
    # Potentials move once per added row, when the search reaches a free column.
    du = jnp.where(rows == s.cur, lowest,
                   jnp.where(sr, lowest - spc[jnp.maximum(s.col4row, 0)], 0.0))
    u = jnp.where(found, s.u + du, s.u)
    v = jnp.where(found & sc, s.v - (lowest - spc), s.v)
    return s._replace(u=u, v=v, path=path, spc=spc, sr=sr, sc=sc, min_val=lowest,
                      i=jnp.where(found, s.i, s.row4col[j]), jj=j, augmenting=found)

  def flip(s: _State) -> _State:
    i = s.path[s.jj]
    row4col = s.row4col.at[s.jj].set(i)
    col4row = s.col4row.at[i].set(s.jj)
    done = i == s.cur
    nxt = s.cur + 1
    return s._replace(
        row4col=row4col, col4row=col4row, jj=s.col4row[i],
        cur=jnp.where(done, nxt, s.cur), i=jnp.where(done, nxt, s.i), augmenting=~done,
        spc=jnp.where(done, inf, s.spc), sr=s.sr & ~done, sc=s.sc & ~done,
        min_val=jnp.where(done, 0.0, s.min_val))

  init = _State(
      u=jnp.zeros((n,), jnp.float32), v=jnp.zeros((m,), jnp.float32),
      col4row=jnp.full((n,), -1, jnp.int32), row4col=jnp.full((m,), -1, jnp.int32),
      path=jnp.full((m,), -1, jnp.int32), spc=jnp.full((m,), inf),
      sr=jnp.zeros((n,), bool), sc=jnp.zeros((m,), bool), min_val=jnp.float32(0.0),
      i=jnp.int32(0), cur=jnp.int32(0), jj=jnp.int32(0), augmenting=jnp.bool_(False))
  final = lax.while_loop(lambda s: s.cur < num_valid,
                         lambda s: lax.cond(s.augmenting, flip, search, s), init)
  col_to_row = jnp.where(final.row4col >= 0, order[jnp.maximum(final.row4col, 0)], -1)
  col_to_row = col_to_row.astype(jnp.int32)
  row_to_col = jnp.full((n,), -1, jnp.int32).at[order].set(
      jnp.where(rows < num_valid, final.col4row, -1))
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
  with jax.named_scope("matcher"):   # a name for profiles and path_jax.cost_model's parts
    cost = lax.stop_gradient(match_cost(logits, pred_boxes, gt_boxes, cfg))
    return hungarian(cost.T, gt_mask)
