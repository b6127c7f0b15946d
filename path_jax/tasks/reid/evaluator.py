"""ReID evaluation: CMC rank-k and mAP under the Market-1501 protocol (REFERENCE.md §6.4).

Per query, the gallery is ranked by distance; gallery images of the same identity *and* the same
camera as the query are removed (they are trivially easy), as are junk images (pid -1);
distractors (pid 0) stay as negatives. Queries left without any true match are skipped, as the
standard ``eval_func`` of TransReID / PATH does. Rank-k = fraction of valid queries whose first
true match is among the first k kept gallery images; AP = mean over the true matches of the
precision at their rank; mAP = mean AP over valid queries.

Ties in distance are broken by the gallery's canonical order: ascending ``batch['index']`` when
the batch carries one (a unique example id, which makes results independent of update and merge
order), else the order in which gallery images arrived.

Batch fields read by :meth:`Evaluator.update` (``B`` = per-host batch):

* ``'mask'``       ``[B]`` bool, true for real examples (padding is ignored); optional.
* ``'person_id'``  ``[B]`` int, the source identity (-1 junk, 0 distractor).
* ``'camera_id'``  ``[B]`` int.
* ``'is_query'``   ``[B]`` bool, true for query images, false for gallery images (or ``'role'``
  ``[B]`` of b'query' / b'gallery' strings, as the TFDS records carry).
* ``'index'``      ``[B]`` int, optional unique example id used to order ties.

Predictions: ``'feature' [B, C]`` (the task's ``decode``; re-normalised here, which is a no-op on
already L2-normalised features).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from path_jax.tasks.common import real_mask


_real = real_mask


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
  """Rows of ``[N, C]`` scaled to unit L2 norm (``F.normalize``: norms below eps use eps)."""
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def distance_matrix(query: np.ndarray, gallery: np.ndarray, metric: str = "euclidean"
                    ) -> np.ndarray:
  """``[Q, G]`` float64 distances of ``[Q, C]`` query to ``[G, C]`` gallery features.

  ``'euclidean'``: squared euclidean ``|q|^2 + |g|^2 - 2 q.g`` (PATH's ``R1_mAP_eval``);
  ``'cosine'``: ``1 - q.g`` of L2-normalised rows.
  """
  q = np.asarray(query, np.float64)
  g = np.asarray(gallery, np.float64)
  if metric == "euclidean":
    return (np.sum(q * q, 1)[:, None] + np.sum(g * g, 1)[None, :]) - 2.0 * q @ g.T
  if metric == "cosine":
    return 1.0 - l2_normalize(q) @ l2_normalize(g).T
  raise ValueError(f"unknown ReID distance {metric!r}; use 'euclidean' or 'cosine'.")


def _score_queries(dist: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray,
                   g_pids: np.ndarray, g_camids: np.ndarray, ranks: tuple[int, ...]
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Per-rank hit counts ``[len(ranks)]`` and APs ``[valid queries]`` of a ``[q, G]`` block."""
  order = np.argsort(dist, axis=1, kind="stable")
  pid = g_pids[order]                                         # [q, G] gallery pids in rank order
  cam = g_camids[order]
  qp, qc = q_pids[:, None], q_camids[:, None]
  same_pid = pid == qp
  keep = ~(same_pid & (cam == qc)) & (pid != -1)
  hit = same_pid & keep & (qp != -1)
  pos = np.cumsum(keep, axis=1) - 1                           # rank among kept images, 0-based
  num_rel = hit.sum(1)
  valid = num_rel > 0
  hit, pos, num_rel = hit[valid], pos[valid], num_rel[valid]
  first = np.where(hit, pos, np.iinfo(np.int64).max).min(1, initial=np.iinfo(np.int64).max)
  hits_at = np.array([(first < k).sum() for k in ranks], np.int64)
  precision = np.cumsum(hit, axis=1) / np.maximum(pos + 1.0, 1.0)   # pos -1: nothing kept yet
  return hits_at, np.where(hit, precision, 0.0).sum(1) / num_rel


def _summarise(hits_at: np.ndarray, ap: np.ndarray, ranks: tuple[int, ...]) -> dict[str, float]:
  n = ap.size
  out = {f"rank{k}": (float(h) / n if n else 0.0) for k, h in zip(ranks, hits_at)}
  out["mAP"] = float(np.mean(ap)) if n else 0.0
  out["num_valid_queries"] = float(n)
  return out


def market1501_metrics(dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                       q_camids: np.ndarray, g_camids: np.ndarray,
                       ranks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """CMC and mAP of a ``[Q, G]`` distance matrix under the Market-1501 protocol.

  Gallery columns are assumed to be in canonical order: equal distances rank by column index.
  Returns ``'rank<k>'`` for each k in ``ranks`` and ``'mAP'`` (fractions in [0, 1]), plus
  ``'num_valid_queries'``. With no valid query every metric is 0.
  """
  dist = np.asarray(dist, np.float64)
  q_pids, g_pids = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
  q_camids, g_camids = np.asarray(q_camids).reshape(-1), np.asarray(g_camids).reshape(-1)
  if dist.shape != (q_pids.size, g_pids.size):
    raise ValueError(f"distance matrix {dist.shape} does not match {q_pids.size} queries x "
                     f"{g_pids.size} gallery ids.")
  ranks = tuple(int(k) for k in ranks)
  hits_at, ap = _score_queries(dist, q_pids, q_camids, g_pids, g_camids, ranks)
  return _summarise(hits_at, ap, ranks)


def _is_query(batch: Mapping[str, Any]) -> np.ndarray:
  if "is_query" in batch:
    return np.asarray(batch["is_query"]).astype(bool).reshape(-1)
  if "role" in batch:
    roles = [r.decode() if isinstance(r, bytes) else str(r)
             for r in np.asarray(batch["role"]).reshape(-1)]
    bad = sorted({r for r in roles if r not in ("query", "gallery")})
    if bad:
      raise ValueError(f"batch['role'] holds {bad}; ReID evaluation needs 'query' or 'gallery'.")
    return np.array([r == "query" for r in roles])
  raise KeyError("ReID evaluation needs batch['is_query'] ([B] bool) or batch['role'] "
                 "(b'query' / b'gallery'); add it in the evaluation pipeline.")


class Evaluator:
  """Accumulates query and gallery features; :meth:`result` ranks and scores them.

  Args:
    distance: ``'euclidean'`` (squared, the default, as PATH) or ``'cosine'``.
    ranks: CMC ranks to report.
    chunk: queries scored at a time (bounds memory to ``chunk x G`` distances).
  """

  def __init__(self, cfg: Mapping[str, Any] | None = None, *, distance: str = "euclidean",
               ranks: Sequence[int] = (1, 5, 10), chunk: int = 256):
    del cfg  # the protocol has no dataset-dependent settings
    distance_matrix(np.zeros((1, 1)), np.zeros((1, 1)), distance)  # validates the name
    self.distance = distance
    self.ranks = tuple(ranks)
    self.chunk = int(chunk)
    # Per side: lists of (features [n, C], pids [n], camids [n], order keys [n]).
    self._parts: dict[bool, list[tuple[np.ndarray, ...]]] = {True: [], False: []}
    self._seen = 0

  def update(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
    feats = np.asarray(predictions["feature"], np.float32)
    n = feats.shape[0]
    real = _real(batch, n)
    is_query = _is_query(batch)
    pids = np.asarray(batch["person_id"]).astype(np.int64).reshape(-1)
    cams = np.asarray(batch["camera_id"]).astype(np.int64).reshape(-1)
    if "index" in batch:
      keys = np.asarray(batch["index"]).astype(np.int64).reshape(-1)
    else:
      keys = self._seen + np.arange(n, dtype=np.int64)
    self._seen += n
    for side in (True, False):
      sel = real & (is_query == side)
      if sel.any():
        self._parts[side].append((feats[sel], pids[sel], cams[sel], keys[sel]))

  def merge(self, other: "Evaluator") -> "Evaluator":
    """Adds another (e.g. another host's) evaluator's examples to this one; returns self."""
    for side in (True, False):
      self._parts[side].extend(other._parts[side])
    self._seen += other._seen
    return self

  def _side(self, side: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = self._parts[side]
    if not parts:
      name = "query" if side else "gallery"
      raise ValueError(f"ReID evaluation has no {name} images; check batch['is_query'].")
    feats, pids, cams, keys = (np.concatenate(x) for x in zip(*parts))
    order = np.argsort(keys, kind="stable")
    return l2_normalize(feats[order]), pids[order], cams[order]

  def result(self) -> dict[str, float]:
    qf, qp, qc = self._side(True)
    gf, gp, gc = self._side(False)
    ranks = tuple(int(k) for k in self.ranks)
    hits_at = np.zeros(len(ranks), np.int64)
    aps = []
    # Query blocks keep the [q, G] distance and rank arrays small (Market: G = 15,913).
    for start in range(0, qf.shape[0], self.chunk):
      sl = slice(start, start + self.chunk)
      dist = distance_matrix(qf[sl], gf, self.distance)
      h, ap = _score_queries(dist, qp[sl], qc[sl], gp, gc, ranks)
      hits_at += h
      aps.append(ap)
    return _summarise(hits_at, np.concatenate(aps), ranks)
