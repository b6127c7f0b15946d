"""Evaluators of every task against independent brute-force / library computations."""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from path_jax.tasks.attributes import evaluator as attr_eval
from path_jax.tasks.counting import evaluator as count_eval
from path_jax.tasks.detection import evaluator as det_eval
from path_jax.tasks.parsing import evaluator as pars_eval
from path_jax.tasks.pose import evaluator as pose_eval
from path_jax.tasks.reid import evaluator as reid_eval


# ----------------------------------------------------------------------------------------- ReID

def _reid_brute_force(dist, q_pids, g_pids, q_cams, g_cams, ranks):
  """Per-query loops: rank the gallery (ties by column), drop same pid+cam and junk, score."""
  hits = {k: 0 for k in ranks}
  aps = []
  for i in range(len(q_pids)):
    ranked = sorted(range(len(g_pids)), key=lambda j: (dist[i][j], j))
    kept = [j for j in ranked
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
    rel = [g_pids[j] == q_pids[i] for j in kept]
    if q_pids[i] == -1 or not any(rel):
      continue
    first = rel.index(True)
    for k in ranks:
      hits[k] += first < k
    found, precisions = 0, []
    for r, is_rel in enumerate(rel):
      if is_rel:
        found += 1
        precisions.append(found / (r + 1))
    aps.append(sum(precisions) / len(precisions))
  n = len(aps)
  out = {f"rank{k}": hits[k] / n for k in ranks}
  out["mAP"] = sum(aps) / n
  out["num_valid_queries"] = n
  return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reid_metrics_match_brute_force_with_ties_and_same_camera(seed):
  rng = np.random.default_rng(seed)
  nq, ng = 23, 57
  # Integer distances in a small range make many ties; few cameras make same-camera matches.
  dist = rng.integers(0, 6, size=(nq, ng)).astype(np.float64)
  q_pids = rng.integers(1, 8, size=nq)
  q_pids[:2] = [-1, 0]                       # a junk query (skipped) and a distractor query
  g_pids = rng.integers(-1, 8, size=ng)      # includes junk (-1) and distractors (0)
  q_cams = rng.integers(1, 3, size=nq)
  g_cams = rng.integers(1, 3, size=ng)
  ranks = (1, 5, 10)
  got = reid_eval.market1501_metrics(dist, q_pids, g_pids, q_cams, g_cams, ranks)
  want = _reid_brute_force(dist.tolist(), q_pids.tolist(), g_pids.tolist(), q_cams.tolist(),
                           g_cams.tolist(), ranks)
  assert 0 < want["num_valid_queries"] < nq
  assert got["num_valid_queries"] == want["num_valid_queries"]
  for key in ("rank1", "rank5", "rank10", "mAP"):
    assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_reid_query_whose_only_match_is_same_camera_is_skipped():
  dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
  got = reid_eval.market1501_metrics(dist, q_pids=[5, 6], g_pids=[5, 6, 7], q_camids=[1, 1],
                                     g_camids=[1, 2, 1], ranks=(1, 2))
  # Query 0's only pid-5 image shares its camera: skipped. Query 1 finds pid 6 at rank 2
  # (gallery order by distance: 7, 6, 5), AP 1/2.
  assert got["num_valid_queries"] == 1
  assert got["rank1"] == 0.0 and got["rank2"] == 1.0
  assert got["mAP"] == pytest.approx(0.5)


def _reid_batches(rng, n, c, is_query, start):
  feats = rng.normal(size=(n, c)).astype(np.float32)
  feats[3] = feats[1]                                    # exact duplicate features: a tie
  return ({"feature": feats / np.linalg.norm(feats, axis=1, keepdims=True)},
          {"person_id": rng.integers(0, 5, size=n), "camera_id": rng.integers(0, 2, size=n),
           "is_query": np.full(n, is_query), "index": start + np.arange(n),
           "mask": np.arange(n) < n - 2})               # the last two rows are padding


def test_reid_evaluator_update_merge_and_order_independence():
  rng = np.random.default_rng(3)
  batches = [_reid_batches(rng, 8, 6, q, 8 * i) for i, q in enumerate([True, False, False,
                                                                       True, False])]
  one = reid_eval.Evaluator()
  for p, b in batches:
    one.update(p, b)
  # Two "hosts" seeing the batches in another order, then merged.
  a, b_ = reid_eval.Evaluator(), reid_eval.Evaluator()
  for p, b in batches[::-2]:
    a.update(p, b)
  for p, b in batches[-2::-2]:
    b_.update(p, b)
  merged = b_.merge(a).result()
  got = one.result()
  assert got == merged

  # Independent computation: real rows only, canonical order by index, numpy distances.
  rows = [(p["feature"][i], b["person_id"][i], b["camera_id"][i], b["is_query"][i],
           b["index"][i]) for p, b in batches for i in range(8) if b["mask"][i]]
  rows.sort(key=lambda r: r[4])
  q = [r for r in rows if r[3]]
  g = [r for r in rows if not r[3]]
  qf = np.stack([r[0] for r in q]).astype(np.float64)
  gf = np.stack([r[0] for r in g]).astype(np.float64)
  dist = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1)
  want = _reid_brute_force(dist.tolist(), [r[1] for r in q], [r[1] for r in g],
                           [r[2] for r in q], [r[2] for r in g], (1, 5, 10))
  for key in ("rank1", "rank5", "rank10", "mAP"):
    assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_reid_evaluator_role_strings_and_missing_side():
  ev = reid_eval.Evaluator(distance="cosine")
  ev.update({"feature": np.eye(2)}, {"person_id": [1, 1], "camera_id": [0, 1],
                                     "role": np.array([b"query", b"gallery"])})
  assert ev.result()["rank1"] == 1.0
  only_q = reid_eval.Evaluator()
  only_q.update({"feature": np.eye(2)}, {"person_id": [1, 1], "camera_id": [0, 1],
                                         "is_query": [True, True]})
  with pytest.raises(ValueError, match="no gallery"):
    only_q.result()


# ------------------------------------------------------------------------------------ Counting

def test_counting_mae_and_root_mse_with_padding_and_merge():
  a, b = count_eval.Evaluator(), count_eval.Evaluator()
  a.update({"count": np.array([10.0, 4.0, 99.0])}, {"count": np.array([7, 4, 0]),
                                                    "mask": np.array([True, True, False])})
  b.update({"count": np.array([1.0])}, {"count": np.array([5])})
  got = a.merge(b).result()
  # Errors 3, 0, -4 (the padded row is ignored): MAE 7/3, MSE sqrt(25/3).
  assert got["num_images"] == 3
  assert got["mae"] == pytest.approx(7 / 3)
  assert got["mse"] == pytest.approx(math.sqrt(25 / 3))


# ---------------------------------------------------------------------------------- Attributes

def test_attributes_hand_built():
  labels = np.array([[1, 0, -1], [0, 1, 1], [1, -1, 0], [0, 0, 1], [1, 1, 1]])
  probs = np.array([[.9, .2, .8], [.6, .7, .1], [.3, .9, .4], [.1, .6, .9], [.2, .2, .2]])
  ev = attr_eval.Evaluator()
  ev.update({"probs": probs[:3]}, {"labels": labels[:3]})
  pad = np.concatenate([labels[3:], np.ones((1, 3), int)])
  ev.update({"probs": np.concatenate([probs[3:], np.zeros((1, 3))])},
            {"labels": pad, "mask": np.array([True, True, False])})
  got = ev.result()
  # By hand (pred = probs > .5): attribute 0 labels 1,0,1,0,1 preds 1,1,0,0,0 -> TPR 1/3,
  # TNR 1/2; attribute 1 (-1 skipped) labels 0,1,0,1 preds 0,1,1,0 -> TPR 1/2, TNR 1/2;
  # attribute 2 (-1 skipped) labels 1,0,1,1 preds 0,0,1,0 -> TPR 1/3, TNR 1.
  want_ma = np.mean([(1 / 3 + 1 / 2) / 2, (1 / 2 + 1 / 2) / 2, (1 / 3 + 1) / 2])
  assert got["mA"] == pytest.approx(want_ma)
  # Instances, -1 as 0: (gt set, pred set) = ({0}, {0, 2}), ({1, 2}, {0, 1}), ({0}, {1}),
  # ({2}, {1, 2}), ({0, 1, 2}, {}).
  inst = [((1, 2, 1), 2), ((1, 3, 2), 2), ((0, 2, 1), 1), ((1, 2, 1), 2), ((0, 3, 3), 0)]
  accs, precs, recs, f1s = [], [], [], []
  for (inter, union, n_gt), n_pred in inst:
    accs.append(inter / union)
    p = inter / n_pred if n_pred else 0.0
    r = inter / n_gt
    precs.append(p)
    recs.append(r)
    f1s.append(2 * p * r / (p + r) if p + r else 0.0)
  for key, vals in (("accuracy", accs), ("precision", precs), ("recall", recs), ("f1", f1s)):
    assert got[key] == pytest.approx(np.mean(vals)), key


def test_attributes_random_against_loops_and_merge():
  rng = np.random.default_rng(0)
  labels = rng.integers(-1, 2, size=(40, 7))
  probs = rng.random((40, 7))
  one, a, b = attr_eval.Evaluator(), attr_eval.Evaluator(), attr_eval.Evaluator()
  one.update({"probs": probs}, {"labels": labels})
  a.update({"probs": probs[:25]}, {"labels": labels[:25]})
  b.update({"pred": probs[25:] > 0.5}, {"labels": labels[25:]})
  got = one.result()
  merged = a.merge(b).result()
  for key in got:
    assert merged[key] == pytest.approx(got[key], abs=1e-12), key
  pred = probs > 0.5
  ma = []
  for j in range(7):
    pos = [pred[i, j] for i in range(40) if labels[i, j] == 1]
    neg = [not pred[i, j] for i in range(40) if labels[i, j] == 0]
    ma.append((sum(pos) / len(pos) + sum(neg) / len(neg)) / 2)
  assert got["mA"] == pytest.approx(np.mean(ma))


# ------------------------------------------------------------------------------------- Parsing

def test_parsing_hand_built():
  gt = np.array([[[0, 0, 1], [1, 2, 255]]])
  pred = np.array([[[0, 1, 1], [1, 1, 0]]])
  ev = pars_eval.Evaluator({"num_classes": 4, "ignore_label": 255})
  ev.update({"label": pred}, {"label": gt[..., None]})
  got = ev.result()
  # Valid pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,1). IoU: class 0 1/2, class 1 2/4,
  # class 2 0/1, class 3 absent from both (left out).
  assert got["mIoU"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
  assert got["pixel_acc"] == pytest.approx(3 / 5)
  assert got["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
  assert math.isnan(got["iou/3"]) and got["iou/1"] == pytest.approx(0.5)


def test_parsing_random_against_loops_with_padding_and_merge():
  rng = np.random.default_rng(1)
  c = 5
  gt = rng.integers(0, c, size=(6, 7, 9))
  gt[rng.random(gt.shape) < 0.1] = 255
  gt[gt == 4] = 3                                     # class 4 only ever predicted
  pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt),
                  rng.integers(0, c, size=gt.shape))
  mask = np.array([True] * 5 + [False])
  a, b = pars_eval.Evaluator(num_classes=c), pars_eval.Evaluator(num_classes=c)
  a.update({"label": pred[:3]}, {"label": gt[:3], "mask": mask[:3]})
  b.update({"label": pred[3:]}, {"label": gt[3:], "mask": mask[3:]})
  got = a.merge(b).result()
  conf = np.zeros((c, c))
  for g, p in zip(gt[:5].reshape(-1), pred[:5].reshape(-1)):
    if g != 255:
      conf[g, p] += 1
  ious = [conf[k, k] / (conf[k].sum() + conf[:, k].sum() - conf[k, k]) for k in range(c)
          if conf[k].sum() + conf[:, k].sum() > 0]
  accs = [conf[k, k] / conf[k].sum() for k in range(c) if conf[k].sum() > 0]
  assert got["mIoU"] == pytest.approx(np.mean(ious))
  assert got["mean_acc"] == pytest.approx(np.mean(accs))
  assert got["pixel_acc"] == pytest.approx(np.trace(conf) / conf.sum())
  assert got["iou/4"] == 0.0


def test_parsing_rejects_out_of_range_and_size_mismatch():
  ev = pars_eval.Evaluator(num_classes=3)
  with pytest.raises(ValueError, match="outside"):
    ev.update({"label": np.full((1, 2, 2), 3)}, {"label": np.zeros((1, 2, 2))})
  with pytest.raises(ValueError, match="resize"):
    ev.update({"label": np.zeros((1, 2, 3))}, {"label": np.zeros((1, 2, 2))})


# ----------------------------------------------------------------------------------- Detection

def _box(x, y, w, h):
  return [x, y, x + w, y + h]


def _det_eval(images, **kwargs):
  ev = det_eval.Evaluator(**kwargs)
  for i, img in enumerate(images):
    ev.add_image(img["det"], img["scores"], img["gt"], img.get("ign"),
                 visible_ratio=img.get("vis"), key=i)
  return ev.result()


def test_detection_perfect_detections():
  gts = [[_box(10, 10, 20, 50), _box(50, 10, 20, 50)], [_box(5, 5, 30, 60)],
         [_box(0, 0, 10, 30), _box(40, 40, 10, 30)]]
  images = [{"gt": g, "det": g, "scores": 0.9 - 0.1 * np.arange(len(g)) - 0.01 * i}
            for i, g in enumerate(gts)]
  got = _det_eval(images)
  # Toolkit trapezoids start at the first detection's recall 1/N with precision 1 throughout.
  assert got["AP"] == pytest.approx(1 - 1 / 5)
  assert got["MR"] == 0.0 and got["recall"] == 1.0


def test_detection_one_false_positive_per_image_above_the_true_one():
  images = []
  for i in range(4):
    gt = [_box(10 * i, 0, 20, 50)]
    fp = _box(200, 200, 20, 50)
    images.append({"gt": gt, "det": [fp, gt[0]], "scores": [0.9 - 0.01 * i, 0.8 - 0.01 * i]})
  got = _det_eval(images)
  # Score order: FP, FP, FP, FP, TP, TP, TP, TP. Recall 0 x4 then 1/4 .. 1; precision 0 x4
  # then 1/5, 2/6, 3/7, 4/8. Every FPPI reference is first reached at an FP (miss rate 1).
  p = [0, 1 / 5, 2 / 6, 3 / 7, 4 / 8]
  assert got["AP"] == pytest.approx(sum(0.25 * (a + b) / 2 for a, b in zip(p[:-1], p[1:])))
  assert got["MR"] == pytest.approx(1.0)
  assert got["recall"] == 1.0


def test_detection_all_missed_and_no_detection():
  gt = [_box(0, 0, 10, 30)]
  got = _det_eval([{"gt": gt, "det": [_box(100, 100, 10, 30)], "scores": [0.9]}])
  assert got["AP"] == 0.0 and got["MR"] == 1.0 and got["recall"] == 0.0
  got = _det_eval([{"gt": gt, "det": np.zeros((0, 4)), "scores": np.zeros(0)}])
  assert got["AP"] == 0.0 and got["MR"] == 1.0 and got["recall"] == 0.0


def test_detection_ignore_regions_duplicates_and_score_threshold():
  gt = [_box(0, 0, 10, 40)]
  ign = [_box(100, 0, 40, 40)]
  det = [_box(0, 0, 10, 40),        # TP
         _box(0, 0, 10, 40),        # duplicate of a matched box: FP
         _box(110, 10, 10, 10),     # inside the ignore region (IoA 1): dropped
         _box(130, 0, 20, 40),      # IoA exactly 0.5: not > 0.5, so FP
         _box(300, 0, 10, 40)]      # below the score threshold: discarded
  scores = [0.9, 0.8, 0.95, 0.7, 0.04]
  labels = det_eval.match_image(np.array(det[:4]), np.array(scores[:4]), np.array(gt),
                                np.array(ign))
  np.testing.assert_array_equal(labels, [1, 0, -1, 0])
  got = _det_eval([{"gt": gt, "det": det, "scores": scores, "ign": ign}])
  # Kept by score: TP (.9), FP (.8), FP (.7): recall 1, 1, 1; precision 1, 1/2, 1/3.
  assert got["AP"] == 0.0 and got["recall"] == 1.0
  assert got["MR"] == 0.0


def test_detection_caltech_heavy_subset_turns_other_boxes_into_ignore():
  gt = [_box(0, 0, 20, 100), _box(100, 0, 20, 100), _box(200, 0, 10, 40)]
  vis = [0.9, 0.5, 0.5]               # visible, heavy, heavy but 40 px (< 50) tall
  det = [_box(0, 0, 20, 100), _box(100, 0, 20, 100), _box(200, 0, 10, 40)]
  got = _det_eval([{"gt": gt, "det": det, "scores": [0.9, 0.8, 0.7], "vis": vis}],
                  protocol="caltech_heavy")
  # Only the heavy 100 px person counts; the other two detections fall on ignore regions.
  assert got["num_gt"] == 1 and got["recall"] == 1.0 and got["MR"] == 0.0
  with pytest.raises(KeyError, match="visible_ratio"):
    _det_eval([{"gt": gt, "det": det, "scores": [0.9, 0.8, 0.7]}], protocol="caltech_heavy")


def _det_brute_force(images, thr=0.5, score_thr=0.05):
  """The toolkit's protocol with explicit loops (no ties in the random scores)."""
  def inter(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

  def area(a):
    return (a[2] - a[0]) * (a[3] - a[1])

  entries, num_gt = [], 0
  for img in images:
    gts = [list(g) for g in img["gt"]]
    num_gt += len(gts)
    dets = sorted([(s, list(d)) for s, d in zip(img["scores"], img["det"]) if s >= score_thr],
                  key=lambda t: -t[0])
    used = [False] * len(gts)
    for s, d in dets:
      best, best_j = thr, -1
      for j, g in enumerate(gts):
        if not used[j]:
          iou = inter(d, g) / (area(d) + area(g) - inter(d, g))
          if iou > best:
            best, best_j = iou, j
      if best_j >= 0:
        used[best_j] = True
        entries.append((s, 1))
      elif any(inter(d, g) / area(d) > thr for g in img["ign"]):
        continue
      else:
        entries.append((s, 0))
  entries.sort(key=lambda t: -t[0])
  tp = fp = 0
  rec, prec, fppi = [], [], []
  for _, lab in entries:
    tp += lab
    fp += 1 - lab
    rec.append(tp / num_gt)
    prec.append(tp / (tp + fp))
    fppi.append(fp / len(images))
  ap = sum((rec[i] - rec[i - 1]) * (prec[i] + prec[i - 1]) / 2 for i in range(1, len(rec)))
  mrs = []
  for ref in np.logspace(-2, 0, 9):
    idx = next((i for i, f in enumerate(fppi) if f >= round(ref, 4)), len(fppi) - 1)
    mrs.append(1 - rec[idx])
  mr = math.exp(sum(math.log(m) for m in mrs) / len(mrs)) if min(mrs) > 0 else 0.0
  return ap, mr, rec[-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_detection_random_against_brute_force(seed):
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(12):
    g = rng.integers(0, 6)
    xy = rng.uniform(0, 200, size=(g, 2))
    wh = rng.uniform(10, 60, size=(g, 2))
    gt = np.concatenate([xy, xy + wh], 1)
    # Detections: jittered copies of ground truths (some twice) and random boxes.
    src = gt[rng.integers(0, g, size=rng.integers(0, 2 * g + 1))] if g else np.zeros((0, 4))
    jit = src + rng.normal(0, 6, size=src.shape)
    xy = rng.uniform(0, 200, size=(3, 2))
    rand = np.concatenate([xy, xy + rng.uniform(10, 60, size=(3, 2))], 1)
    det = np.concatenate([jit, rand])
    det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
    ign_xy = rng.uniform(0, 200, size=(1, 2))
    ign = np.concatenate([ign_xy, ign_xy + 50], 1)
    images.append({"gt": gt, "det": det, "scores": rng.uniform(0, 1, size=len(det)),
                   "ign": ign})
  got = _det_eval(images, clip=False)
  ap, mr, rec = _det_brute_force(images)
  assert got["AP"] == pytest.approx(ap, abs=1e-12)
  assert got["MR"] == pytest.approx(mr, abs=1e-12)
  assert got["recall"] == pytest.approx(rec, abs=1e-12)


def test_detection_update_from_task_batch_format_and_merge_order():
  hw = np.array([[100.0, 200.0], [50.0, 80.0]])                  # (h, w)
  gt_px = np.array([[[20, 10, 60, 90], [0, 0, 0, 0]], [[10, 5, 30, 45], [0, 0, 0, 0]]], float)

  def to_norm(b, hw_):
    wh = np.stack([hw_[:, 1], hw_[:, 0]], -1)[:, None, :]
    cxcy, size = (b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]
    return np.concatenate([cxcy / wh, size / wh], -1)

  batch = {"boxes": to_norm(gt_px, hw), "box_mask": np.array([[True, False], [True, False]]),
           "ignore_boxes": np.zeros((2, 1, 4)), "ignore_mask": np.zeros((2, 1), bool),
           "image_hw": hw * 2, "orig_hw": hw, "image_id": np.array([b"b", b"a"])}
  preds = {"boxes": np.stack([gt_px[:, 0], gt_px[:, 0] + 40]).transpose(1, 0, 2),
           "scores": np.array([[0.9, 0.5], [0.5, 0.3]])}
  ev = det_eval.Evaluator()
  ev.update(preds, batch)
  got = ev.result()
  # Image b: TP .9, FP .5; image a: TP .5, FP .3. Tie at .5 broken by image id: a (TP) first.
  # Sequence TP, TP, FP, FP over 2 ground truths: recall 1/2, 1, 1, 1.
  assert got["num_gt"] == 2 and got["recall"] == 1.0
  assert got["AP"] == pytest.approx(0.5 * (1 + 1) / 2)
  # The same images added one per evaluator in the other order, then merged: same result.
  halves = []
  for i in (1, 0):
    e = det_eval.Evaluator()
    e.update({k: v[i:i + 1] for k, v in preds.items()}, {k: v[i:i + 1] for k, v in batch.items()})
    halves.append(e)
  assert halves[0].merge(halves[1]).result() == got
  masked = det_eval.Evaluator()
  masked.update(preds, dict(batch, mask=np.array([True, False])))
  assert masked.result()["num_images"] == 1


# ---------------------------------------------------------------------------------------- Pose

def _oks_loop(a, b, area_a, area_b, sigmas):
  total = 0.0
  for k in range(len(sigmas)):
    d2 = (a[k][0] - b[k][0]) ** 2 + (a[k][1] - b[k][1]) ** 2
    total += math.exp(-d2 / (2 * sigmas[k]) ** 2 / ((area_a + area_b) / 2 + np.spacing(1)) / 2)
  return total / len(sigmas)


def _nms_brute_force(kpts, scores, areas, sigmas, thr):
  """Keep a pose iff no higher-scored kept pose has OKS > thr with it."""
  kept = []
  for i in sorted(range(len(scores)), key=lambda j: -scores[j]):
    if all(_oks_loop(kpts[k], kpts[i], areas[k], areas[i], sigmas) <= thr for k in kept):
      kept.append(i)
  return kept


def _poses_with_duplicates(rng, n_people, k, dup_noise):
  centers = rng.uniform(50, 400, size=(n_people, 1, 2))
  base = centers + rng.normal(0, 20, size=(n_people, k, 2))
  kpts, areas = [], []
  for p in range(n_people):
    for _ in range(rng.integers(1, 4)):                       # 1-3 near-copies of each person
      xy = base[p] + rng.normal(0, dup_noise, size=(k, 2))
      kpts.append(np.concatenate([xy, rng.uniform(0, 1, size=(k, 1))], 1))
      areas.append(rng.uniform(3000, 9000))
  return np.stack(kpts), np.array(areas)


def test_oks_nms_matches_brute_force():
  rng = np.random.default_rng(0)
  sigmas = pose_eval.COCO_SIGMAS
  kpts, areas = _poses_with_duplicates(rng, 6, 17, dup_noise=1.5)
  scores = rng.uniform(0, 1, size=len(kpts))
  kept_counts = set()
  for thr in np.linspace(0.02, 0.98, 49):
    keep = pose_eval.oks_nms(kpts, scores, areas, sigmas, thr)
    kept_counts.add(len(keep))
    want = _nms_brute_force(kpts.tolist(), scores.tolist(), areas.tolist(), sigmas.tolist(), thr)
    assert keep.tolist() == want
  assert len(kept_counts) >= 3                       # the sweep crosses several OKS values
  assert 6 <= len(pose_eval.oks_nms(kpts, scores, areas, sigmas, 0.9)) < len(kpts)


def _coco_gt(rng, k, num_images=3):
  images, anns = [], []
  for img in range(1, num_images + 1):
    images.append({"id": img, "width": 640, "height": 480, "file_name": f"{img}.jpg"})
    for _ in range(rng.integers(1, 4)):
      x, y = rng.uniform(0, 400), rng.uniform(0, 250)
      w, h = rng.uniform(40, 200), rng.uniform(80, 220)
      xy = np.stack([rng.uniform(x, x + w, k), rng.uniform(y, y + h, k)], 1)
      vis = np.where(rng.random(k) < 0.85, 2, 0)
      kp = np.concatenate([np.where(vis[:, None] > 0, xy, 0), vis[:, None]], 1)
      anns.append({"id": len(anns) + 1, "image_id": img, "category_id": 1, "iscrowd": 0,
                   "bbox": [x, y, w, h], "area": 0.7 * w * h, "keypoints": kp.reshape(-1).tolist(),
                   "num_keypoints": int((vis > 0).sum())})
  cats = [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(k)], "skeleton": []}]
  return {"images": images, "annotations": anns, "categories": cats}


@pytest.mark.parametrize("sigmas_name,k", [("coco", 17), ("aic", 14)])
def test_coco_keypoint_ap_equals_pycocotools_on_the_same_detections(sigmas_name, k):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  rng = np.random.default_rng(k)
  gt = _coco_gt(rng, k)
  sigmas = {"coco": pose_eval.COCO_SIGMAS, "aic": pose_eval.AIC_SIGMAS}[sigmas_name]
  # Person "detections": every ground truth with jittered keypoints, some twice (near
  # duplicates for OKS-NMS), and one spurious person per image.
  rows = []
  for ann in gt["annotations"]:
    xy = np.array(ann["keypoints"], float).reshape(k, 3)[:, :2]
    x, y, w, h = ann["bbox"]
    xy = np.where(xy > 0, xy, [x + w / 2, y + h / 2])
    xy = xy + rng.normal(0, 3, size=(k, 2))
    for _ in range(rng.integers(1, 3)):                        # copies 0.2 px apart: OKS > 0.9
      rows.append((ann["image_id"], xy + rng.normal(0, 0.2, size=(k, 2)), [1.25 * w, 1.25 * h]))
  for img in gt["images"]:
    rows.append((img["id"], rng.uniform(0, 480, size=(k, 2)), [150.0, 200.0]))
  ids = np.array([r[0] for r in rows])
  xy = np.stack([r[1] for r in rows])
  box_size = np.array([r[2] for r in rows])
  kscore = rng.uniform(0, 1, size=(len(rows), k))
  box_score = rng.uniform(0.3, 1, size=len(rows))

  ev, other = pose_eval.Evaluator("coco_ap", gt=gt, sigmas=sigmas_name), None
  half = len(rows) // 2
  for sl in (slice(half, None), slice(0, half)):               # out of order, over two "hosts"
    e = pose_eval.Evaluator("coco_ap", gt=gt, sigmas=sigmas_name)
    pad = np.ones(sl.indices(len(rows))[1] - sl.indices(len(rows))[0] + 1, bool)
    pad[-1] = False                                            # one padding row per batch
    e.update({"keypoints_image": np.concatenate([xy[sl], xy[:1]]),
              "scores": np.concatenate([kscore[sl], kscore[:1]])},
             {"image_id": np.concatenate([ids[sl], ids[:1]]),
              "score": np.concatenate([box_score[sl], box_score[:1]]),
              "box_size": np.concatenate([box_size[sl], box_size[:1]]), "mask": pad})
    other = e if other is None else other.merge(e)
  got = other.result()

  # Independent pipeline: rescoring with loops, brute-force NMS, pycocotools itself.
  results = []
  for img in sorted(set(ids.tolist())):
    idx = [i for i in range(len(rows)) if ids[i] == img]
    scores = []
    for i in idx:
      above = [s for s in kscore[i] if s > 0.2]
      scores.append(box_score[i] * (sum(above) / len(above) if above else 0.0))
    kpts = [np.concatenate([xy[i], kscore[i][:, None]], 1).tolist() for i in idx]
    areas = [box_size[i][0] * box_size[i][1] for i in idx]
    for j in _nms_brute_force(kpts, scores, areas, sigmas.tolist(), 0.9):
      results.append({"image_id": int(img), "category_id": 1, "score": float(scores[j]),
                      "keypoints": np.array(kpts[j]).reshape(-1).tolist()})
  assert len(results) < len(rows)                              # NMS removed duplicates
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ce = COCOeval(coco, coco.loadRes(results), "keypoints")
    ce.params.kpt_oks_sigmas = sigmas
    ce.evaluate()
    ce.accumulate()
    ce.summarize()
  assert 0.05 < got["AP"] < 1.0
  for name, value in zip(pose_eval.COCO_STAT_NAMES, ce.stats):
    assert got[name] == pytest.approx(value, abs=1e-12), name
  ev.update({"keypoints_image": xy, "scores": kscore}, {"image_id": ids, "score": box_score,
                                                       "box_size": box_size})
  assert ev.result() == got


def test_pckh_hand_built():
  # Head box 6 x 8 -> diagonal 10 -> normaliser 0.6 * 10 = 6 px; PCKh@0.5 <= 3 px, @0.1 <= 0.6 px.
  gt = np.zeros((2, 16, 3))
  gt[..., 2] = 1
  gt[1, 8:, 2] = 0                                  # second person: joints 8..15 unlabelled
  err = np.zeros((2, 16))
  err[0] = [0.5, 2, 3, 4, 0.5, 2, 9, 9, 0.6, 3.5, 1, 1, 1, 1, 5, 5]
  err[1] = [4, 4, 0, 0, 0, 4, 0, 0] + [100] * 8
  pred = gt[..., :2] + np.stack([err * 0.6, err * 0.8], -1)    # |(0.6e, 0.8e)| = e
  ev = pose_eval.Evaluator("pckh")
  ev.update({"keypoints_image": pred}, {"keypoints": gt, "head_box": np.array([[0, 0, 6, 8]] * 2)})
  got = ev.result()
  # Joints other than 6 and 7: person 0 has 14 labelled, correct @0.5 unless error > 3
  # (4, 3.5, 5, 5 fail) -> 10; @0.1 (<= 0.6): 0.5, 0.5, 0.6 -> 3. Person 1 has joints 0-5
  # labelled (8-15 not): correct @0.5: 2, 3, 4 -> 3; @0.1 the same 3.
  assert got["PCKh"] == pytest.approx((10 + 3) / (14 + 6))
  assert got["PCKh@0.1"] == pytest.approx((3 + 3) / (14 + 6))
  assert got["head"] == pytest.approx(0.0)              # joint 9 (error 3.5) of person 0 only
  assert got["ankle"] == pytest.approx(0.5 * (1 / 2 + 1 / 2))  # joints 0 and 5
  assert got["hip"] == pytest.approx(0.5 * (2 / 2 + 1 / 2))    # joints 2 (3 px, 0) and 3 (4, 0)


def test_epe_hand_built_with_unlabelled_joints_and_padding():
  gt = np.zeros((3, 2, 3))
  gt[..., 2] = 1
  gt[1, 1, 2] = 0
  pred = np.zeros((3, 2, 2))
  pred[0, 0] = [3, 4]                               # 5
  pred[0, 1] = [6, 8]                               # 10
  pred[1, 0] = [0, 1]                               # 1
  pred[1, 1] = [500, 500]                           # unlabelled: ignored
  pred[2] = 1000                                    # padding row
  a, b = pose_eval.Evaluator("epe"), pose_eval.Evaluator("epe")
  a.update({"keypoints": pred[:1]}, {"keypoints": gt[:1]})
  b.update({"keypoints": pred[1:]}, {"keypoints": gt[1:], "mask": np.array([True, False])})
  got = a.merge(b).result()
  assert got["EPE"] == pytest.approx((5 + 10 + 1) / 3) and got["num_joints"] == 3


def test_coco_keypoint_ap_over_the_evaluated_images_only():
  """A capped evaluation (metrics during pretraining) scores the images it predicted, not the
  unseen images' persons as misses: exact keypoints for image 1 alone give AP 1 over the seen
  images and less over all of them."""
  rng = np.random.default_rng(5)
  gt = _coco_gt(rng, 17, num_images=3)
  anns = [a for a in gt["annotations"] if a["image_id"] == 1]
  xy = np.stack([np.array(a["keypoints"], float).reshape(17, 3)[:, :2] for a in anns])
  x, y, w, h = np.array([a["bbox"] for a in anns]).T
  xy = np.where(xy > 0, xy, np.stack([x + w / 2, y + h / 2], 1)[:, None])
  preds = {"keypoints_image": xy, "scores": np.ones((len(anns), 17))}
  batch = {"image_id": np.ones(len(anns), np.int64), "box_size": np.stack([w, h], 1)}
  full = pose_eval.Evaluator("coco_ap", gt=gt)
  full.update(preds, batch)
  seen = pose_eval.Evaluator("coco_ap", gt=gt)
  seen.seen_images_only = True
  seen.update(preds, batch)
  assert seen.result()["AP"] == pytest.approx(1.0)
  assert full.result()["AP"] < 0.9
