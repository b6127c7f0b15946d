"""Exact Hungarian matching in JAX, and the DETR matching cost.

:func:`hungarian` solves the rectangular assignment problem (every valid row gets a distinct
column, total cost minimal) with the shortest-augmenting-path algorithm with dual potentials
(Jonker-Volgenant / Crouse, as scipy's ``linear_sum_assignment``): one augmentation per valid
row, each a Dijkstra-like search over the columns done with whole-vector operations of length
``M``. It runs on device under ``jit`` with static shapes (no host callback) and vmaps over batch
and decoder layers: one flat ``while_loop`` runs until the problem with the most work is done;
finished problems keep their state.

Rows are ground truths (``N = G``, padded, with a validity mask) and columns are queries
(``M = Q``), so there are at most ``G`` searches, not ``Q``. A row reduction first gives every
valid row whose cheapest query no other row wants that query (Jonker-Volgenant's
initialisation), so only the contested rows are searched for. The loop runs on the *valid* rows
only: padding slots cost one O(N + M) vector element per trip, never a trip, so a large
``max_boxes`` budget is paid for in the cost matrix (``[Q, G]``), not in the loop. The cost is
O(G^2 Q) in the worst case and much less on DETR costs, where most augmenting paths are short.
Potentials are float32: integer costs give the exact optimum; float costs the optimum up to
float32 rounding of the sums.

Any input terminates (issue 15: a step from NaN weights hung here, the NaN costs sending the
augmentation round a cycle of columns for ever): non-finite costs are replaced by finite ones
(:func:`sanitize_costs`) and the loop has a static trip cap that finite input cannot reach (see
:func:`max_trips`); were it reached anyway, a valid matching is returned.
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
  trips: jax.Array      # loop trips so far


def max_trips(n: int) -> int:
  """Static bound on the loop trips of :func:`hungarian` with ``n`` rows and finite costs.

  Adding a row while ``k`` rows are already assigned (``k`` assigned columns and, as ``n <= M``,
  at least one free one) takes at most ``k + 1`` search trips: each search trip finalises one
  column not finalised before (with finite costs every unfinalised column has a finite path cost
  after the row's first trip, and finalised ones are masked to +inf, so the minimum is taken over
  unfinalised columns only), and the search stops at the first free column it finalises, which
  comes at the latest after all ``k`` assigned ones. Each search trip expands one row (the new row
  first, then the row of each assigned column finalised), and the flip trips walk the augmenting
  path back through expanded rows, one trip per row, each row at most once: at most ``k + 1`` flip
  trips. So that row costs at most ``2 (k + 1)`` trips. The row reduction assigns ``p`` rows
  without a trip; the other rows are added with ``k = p, p + 1, ...`` rows assigned, so all valid
  rows together take at most ``sum_{k<n} 2 (k + 1) = n (n + 1)``. The argument uses neither the
  values of the costs nor exact arithmetic, only that every path cost stays finite (no NaN, no
  overflow), which :func:`sanitize_costs` guarantees: so on finite input the cap never binds and
  the result is unchanged.
  """
  return n * (n + 1)


_F32_MAX = float(jnp.finfo(jnp.float32).max)


def sanitize_costs(cost: jax.Array, row_valid: jax.Array) -> jax.Array:
  """``cost`` (float32) with its valid rows made finite and small enough never to overflow.

  Finite costs are clipped to ``±L``, ``L = float32_max / (64 (n + 1)^2)`` (about ``5e32`` for
  100 ground truths; finite costs within it are unchanged). With ``lo``/``hi``/``span`` the
  minimum/maximum/range of the finite valid costs (0 when there are none), ``NaN`` and ``+inf``
  become ``BIG = hi + n span + 1`` and ``-inf`` becomes ``NEG = lo - n (BIG - lo) - 1``. One
  more ``BIG`` entry costs more than any rearrangement of the others can save, and one more
  ``NEG`` entry saves more, so the optimum takes as many ``-inf`` entries and as few
  ``NaN``/``+inf`` entries as possible and, among those matchings, is optimal on the finite
  costs (as scipy with +inf for forbidden pairs, when a matching avoiding them exists).

  Magnitudes: every sanitized cost is within ``K <= 3 (n + 1)^2 L``. Free columns keep
  ``v = 0`` (the free column a search ends at moves by ``lowest - spc = 0``) and ``v`` only
  decreases, so with ``u_i + v_j <= c_ij`` (equality on matched pairs): ``u_i <= c_if <= K`` for
  a free column ``f``, ``u_i = c_ij - v_j >= -K`` for a matched row (``u_i``, a row minimum,
  for a row not yet added) and ``v_j = c_ij - u_i >= -2K``. A search starts at the new row
  (``u`` = its row minimum, within ``±K``), which reaches a free column at reduced cost
  ``<= 2K``, so ``0 <= min_val <= 2K`` and every path cost ``min_val + c - u - v`` is within
  ``±6K``, under 30 % of float32's maximum: nothing overflows, nothing becomes NaN.
  """
  n = cost.shape[0]
  c = cost.astype(jnp.float32)
  lim = jnp.float32(_F32_MAX / (64.0 * (n + 1) ** 2))
  valid = row_valid.astype(bool)[:, None]
  finite = jnp.isfinite(c)
  use = valid & finite
  any_finite = jnp.any(use)
  clipped = jnp.clip(c, -lim, lim)
  lo = jnp.where(any_finite, jnp.min(jnp.where(use, clipped, lim)), 0.0)
  hi = jnp.where(any_finite, jnp.max(jnp.where(use, clipped, -lim)), 0.0)
  big = hi + n * (hi - lo) + 1.0
  neg = lo - n * (big - lo) - 1.0
  out = jnp.where(finite, clipped, jnp.where(c == -jnp.inf, neg, big))
  return jnp.where(valid, out, 0.0)


def hungarian(cost: jax.Array, row_valid: jax.Array,
              trip_cap: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Minimum-cost assignment of the valid rows of ``cost`` to distinct columns.

  Args:
    cost: ``[N, M]`` costs, ``N <= M`` (rows: ground truths, columns: queries). Non-finite
      entries are allowed (see :func:`sanitize_costs`: NaN/+inf avoided, -inf preferred).
    row_valid: ``[N]`` bool; invalid rows (padding, ignore regions) take no column and their
      costs are never read.
    trip_cap: loop trip limit; default :func:`max_trips` ``(N)``, which finite input never
      reaches. A smaller value is for tests: a problem cut short gets a valid, not optimal,
      matching (valid row ``k``, in order, takes column ``k``).

  Returns:
    ``row_to_col [N]`` int32 (the column of each valid row, -1 for invalid rows) and
    ``col_to_row [M]`` int32 (the row assigned to each column, -1 for free columns).

  One row is added at a time by a shortest augmenting path (Dijkstra on reduced costs, ties
  broken towards free columns), then the potentials are updated and the path is flipped. The
  search steps and the flip steps of all rows share one flat ``while_loop`` whose body does
  either step, so that under ``vmap`` every problem advances on every trip: the trip count is
  the largest total over the batch, not a sum of per-row maxima.
  """
  row_to_col, col_to_row, _ = _hungarian(cost, row_valid, trip_cap)
  return row_to_col, col_to_row


def _hungarian(cost: jax.Array, row_valid: jax.Array, trip_cap: int | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """:func:`hungarian`, plus the number of loop trips (for tests of :func:`max_trips`)."""
  n, m = cost.shape
  if n > m:
    raise ValueError(f"hungarian: cost has more rows ({n} ground truths) than columns ({m} "
                     "queries); configure max_boxes <= num_queries.")
  if n == 0:
    return jnp.zeros((0,), jnp.int32), jnp.full((m,), -1, jnp.int32), jnp.int32(0)
  cap = max_trips(n) if trip_cap is None else int(trip_cap)
  row_valid = row_valid.astype(bool)
  rows = jnp.arange(n, dtype=jnp.int32)
  full = sanitize_costs(cost, row_valid)
  # Row reduction (Jonker-Volgenant's initialisation): u_i = min_j c_ij makes every reduced cost
  # c_ij - u_i - v_j >= 0 with v = 0, so each valid row may take its cheapest column outright
  # when no lower valid row wants the same one: the duals stay feasible and every assigned pair
  # is tight, which is all the augmenting searches below assume. On DETR costs most ground
  # truths have a query of their own, so only the contested rows cost searches.
  row_min = jnp.min(full, axis=1)
  best = jnp.argmin(full, axis=1).astype(jnp.int32)
  claim = jnp.where(row_valid, best, m)                 # m: a slot for rows that claim nothing
  first = jnp.full((m + 1,), n, jnp.int32).at[claim].min(rows)
  pre = row_valid & (first[best] == rows)
  # Compacted rows: the valid rows still to add first, then the pre-assigned ones, then padding
  # (stable), so rows 0..num_todo-1 are added in turn and rows < num_valid are the valid ones.
  order = jnp.argsort(jnp.where(row_valid, jnp.where(pre, 1, 0), 2), stable=True
                      ).astype(jnp.int32)
  num_valid = jnp.sum(row_valid).astype(jnp.int32)
  num_todo = num_valid - jnp.sum(pre).astype(jnp.int32)
  a = full[order]
  pre_c = pre[order]
  col4row0 = jnp.where(pre_c, best[order], -1)
  row4col0 = jnp.full((m + 1,), -1, jnp.int32).at[jnp.where(pre_c, col4row0, m)].set(rows)[:m]
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
      u=jnp.where(rows < num_valid, row_min[order], 0.0), v=jnp.zeros((m,), jnp.float32),
      col4row=col4row0, row4col=row4col0,
      path=jnp.full((m,), -1, jnp.int32), spc=jnp.full((m,), inf),
      sr=jnp.zeros((n,), bool), sc=jnp.zeros((m,), bool), min_val=jnp.float32(0.0),
      i=jnp.int32(0), cur=jnp.int32(0), jj=jnp.int32(0), augmenting=jnp.bool_(False),
      trips=jnp.int32(0))

  def step(s: _State) -> _State:
    s = lax.cond(s.augmenting, flip, search, s)
    return s._replace(trips=s.trips + 1)

  final = lax.while_loop(lambda s: (s.cur < num_todo) & (s.trips < cap), step, init)
  col4row, row4col = final.col4row, final.row4col
  # A finished, consistent matching of the valid rows (always so, unless the cap cut it short);
  # otherwise the identity matching of the compacted rows, so callers always get a valid one.
  assigned = rows < num_valid
  c_ok = (col4row >= 0) & (col4row < m) & (row4col[jnp.clip(col4row, 0, m - 1)] == rows)
  r_ok = (row4col < 0) | ((row4col < num_valid)
                          & (col4row[jnp.clip(row4col, 0, n - 1)] == jnp.arange(m)))
  ok = (final.cur >= num_todo) & jnp.all(c_ok | ~assigned) & jnp.all(r_ok)
  col4row = jnp.where(ok, col4row, rows)
  row4col = jnp.where(ok, row4col, jnp.where(jnp.arange(m) < num_valid, jnp.arange(m), -1))
  col_to_row = jnp.where(row4col >= 0, order[jnp.clip(row4col, 0, n - 1)], -1)
  col_to_row = col_to_row.astype(jnp.int32)
  row_to_col = jnp.full((n,), -1, jnp.int32).at[order].set(
      jnp.where(assigned, col4row, -1).astype(jnp.int32))
  return row_to_col, col_to_row, final.trips


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
