"""Pictures of ReID retrieval: each query next to its top-k gallery matches.

One row per query: the query framed grey (:data:`path_jax.visualize.NEUTRAL`), then its ``top_k``
nearest gallery images in rank order, each framed green (:data:`~path_jax.visualize.CORRECT`)
when it shows the query's identity and red (:data:`~path_jax.visualize.WRONG`) when not, with
its identity and its cosine similarity to the query (``cos``, of the L2-normalised features;
ranking by either distance of the evaluator is ranking by it) written below, with enough digits
to tell the matches apart (:func:`similarity_digits`). Ranking follows the evaluator
(:mod:`path_jax.tasks.reid.evaluator`): L2-normalised features, the same distance, ties in
gallery order, and, under the Market-1501 protocol, gallery images of the query's identity
*and* camera and junk images (identity -1) removed before ranking (when camera ids are given).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax import visualize as vis
from path_jax.tasks.reid.evaluator import distance_matrix, l2_normalize

FRAME = 3   # pixels of the coloured frame around each image


def rank_gallery(query: Mapping[str, Any], gallery: Mapping[str, Any], top_k: int,
                 metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
  """``(indices [Q, k], distances [Q, k])`` of each query's top ``k`` kept gallery images.

  Rows with fewer than ``k`` kept gallery images are padded with index -1 (distance inf).
  """
  qf, qp = vis.take(query, ["feature", "person_id"], "ReID query")
  gf, gp = vis.take(gallery, ["feature", "person_id"], "ReID gallery")
  dist = distance_matrix(l2_normalize(qf), l2_normalize(gf), metric)
  qp, gp = qp.reshape(-1), gp.reshape(-1)
  drop = np.broadcast_to(gp[None, :] == -1, dist.shape)
  if "camera_id" in query and "camera_id" in gallery:
    qc = np.asarray(query["camera_id"]).reshape(-1)
    gc = np.asarray(gallery["camera_id"]).reshape(-1)
    drop = drop | ((qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :]))
  dist = np.where(drop, np.inf, dist)
  order = np.argsort(dist, axis=1, kind="stable")[:, :top_k]
  best = np.take_along_axis(dist, order, axis=1)
  order = np.where(np.isfinite(best), order, -1)
  if order.shape[1] < top_k:
    pad = top_k - order.shape[1]
    order = np.pad(order, ((0, 0), (0, pad)), constant_values=-1)
    best = np.pad(best, ((0, 0), (0, pad)), constant_values=np.inf)
  return order, best


def similarity_digits(cos: np.ndarray, least: int = 3, most: int = 6) -> int:
  """Decimals that show ``1 - cos`` of the closest match with two significant digits.

  Features of a briefly trained model share a large common direction, so every similarity can
  be 0.99..: with 3 fixed decimals all would read 0.999 (and the squared distance of
  normalised features, ``2 - 2 cos``, 0.00). At least ``least``, at most ``most`` decimals.
  """
  gap = 1.0 - np.asarray(cos, np.float64)
  gap = gap[np.isfinite(gap) & (gap > 0)]
  if not gap.size:
    return least
  return int(np.clip(1 - np.floor(np.log10(gap.min())), least, most))


def draw(query: Mapping[str, Any], gallery: Mapping[str, Any], cfg: Mapping[str, Any] | None = None,
         max_examples: int = 8, *, top_k: int = 5, metric: str = "euclidean",
         max_side: int | None = 128) -> np.ndarray:
  """Rows of [query | top-k matches], matches framed green (right id) or red (wrong id).

  Args:
    query, gallery: dicts of numpy: ``'image' [N, H, W, 3]``, ``'feature' [N, C]`` (the task's
      ``decode``), ``'person_id' [N]``, optional ``'camera_id' [N]`` (same fields the evaluator
      reads). The first ``max_examples`` queries are drawn.
    cfg: the dataset config (unused; kept for the common signature).
    top_k: matches per query. metric: ``'euclidean'`` or ``'cosine'`` (as the evaluator; the
      captions show the cosine similarity either way).
    max_side: images are shrunk to this first.
  Returns ``[H', W', 3]`` uint8.
  """
  del cfg
  q_images, = vis.take(query, ["image"], "ReID query")
  g_images, = vis.take(gallery, ["image"], "ReID gallery")
  n = vis.num_examples(q_images.shape[0], max_examples)
  sub = {k: np.asarray(v)[:n] for k, v in query.items()}
  order, _ = rank_gallery(sub, gallery, top_k, metric)
  q_ids = np.asarray(query["person_id"]).reshape(-1)
  g_ids = np.asarray(gallery["person_id"]).reshape(-1)
  qf = l2_normalize(np.asarray(sub["feature"]).reshape(n, -1))
  gf = l2_normalize(np.asarray(gallery["feature"]).reshape(len(g_ids), -1))
  cos = np.einsum("qc,qkc->qk", qf, gf[np.maximum(order, 0)])
  digits = similarity_digits(cos[order >= 0])
  rows = []
  for i in range(n):
    image, _ = vis.fit(vis.as_image(q_images[i], "ReID query image"), max_side)
    tiles = [vis.caption(vis.frame(image, vis.NEUTRAL, FRAME), [f"query {q_ids[i]}"])]
    for r in range(top_k):
      g = int(order[i, r])
      if g < 0:
        break
      image, _ = vis.fit(vis.as_image(g_images[g], "ReID gallery image"), max_side)
      right = g_ids[g] == q_ids[i]
      colour = vis.CORRECT if right else vis.WRONG
      tiles.append(vis.caption(vis.frame(image, colour, FRAME),
                               [(f"{r + 1}: {g_ids[g]}", colour), f"cos {cos[i, r]:.{digits}f}"]))
    rows.append(vis.hstack(tiles))
  return vis.grid(rows, cols=1)
