"""Learnability proxies for humanbench_mini, with no learning: colour histograms of the torso and
leg bands of pedestrian crops, nearest-neighbour ReID and nearest-centroid attributes.

    python -m data.humanbench_mini.learnability --sources=DIR

(DIR as written by ``generate``.) Prints ReID rank-1 against chance for the Market-layout sets
and the mA of every attribute of the Rethinking-PAR sets.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re

import numpy as np
from PIL import Image

MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


def band_histograms(img: np.ndarray, bins: int = 4) -> np.ndarray:
  """[H, W, 3] uint8 crop -> [2 * bins**3] normalised RGB histograms of the torso band (rows
  25-50 %) and the leg band (rows 50-80 %), central 40 % of the columns."""
  h, w = img.shape[:2]
  feats = []
  for r0, r1 in ((0.25, 0.5), (0.5, 0.8)):
    a = img[int(r0 * h):int(r1 * h), int(0.3 * w):int(0.7 * w)].astype(int) * bins // 256
    idx = (a[..., 0] * bins + a[..., 1]) * bins + a[..., 2]
    v = np.bincount(idx.ravel(), minlength=bins ** 3).astype(float)
    feats.append(v / v.sum())
  return np.concatenate(feats)


def _features(paths) -> np.ndarray:
  return np.stack([band_histograms(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


def reid_rank1(root: str) -> tuple[float, float]:
  """(rank-1, chance) of L1 nearest neighbour over a Market-1501 folder's query/gallery, with
  the Market protocol (same identity and camera ignored; junk and distractors excluded)."""
  def load(folder):
    names = [f for f in sorted(os.listdir(os.path.join(root, folder)))
             if int(MARKET_NAME.match(f).group(1)) > 0]
    meta = [(int(MARKET_NAME.match(f).group(1)), int(MARKET_NAME.match(f).group(2)))
            for f in names]
    return meta, _features([os.path.join(root, folder, f) for f in names])

  (q_meta, q_feat), (g_meta, g_feat) = load("query"), load("bounding_box_test")
  g_pid = np.array([m[0] for m in g_meta])
  g_cam = np.array([m[1] for m in g_meta])
  hits = 0
  for (pid, cam), feat in zip(q_meta, q_feat):
    dist = np.abs(g_feat - feat).sum(1)
    dist[(g_pid == pid) & (g_cam == cam)] = np.inf
    hits += g_pid[int(np.argmin(dist))] == pid
  return hits / len(q_meta), 1.0 / len(set(g_pid.tolist()))


def attribute_ma(root: str) -> dict[str, float]:
  """{attribute: mA} of a nearest-centroid classifier (trainval centroids of the positives and
  negatives, L1) on the test partition. mA = mean of the positive and negative recalls (0.5 for
  any constant guess). Attributes without both values in both partitions are left out."""
  with open(os.path.join(root, "dataset.pkl"), "rb") as f:
    d = pickle.load(f)
  x = _features([os.path.join(root, "data", n) for n in d["image_name"]])
  y = np.asarray(d["label"])
  tv, te = d["partition"]["trainval"], d["partition"]["test"]
  if isinstance(tv, list):
    tv, te = tv[0], te[0]
  out = {}
  for k, name in enumerate(d["attr_name"]):
    yk = y[:, k]
    if len(set(yk[tv])) < 2 or len(set(yk[te])) < 2:
      continue
    c1, c0 = x[tv][yk[tv] == 1].mean(0), x[tv][yk[tv] == 0].mean(0)
    pred = np.abs(x[te] - c1).sum(1) < np.abs(x[te] - c0).sum(1)
    out[name] = float(0.5 * (pred[yk[te] == 1].mean() + (~pred[yk[te] == 0]).mean()))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sources", required=True, help="folder written by generate")
  args = parser.parse_args(argv)
  for name in sorted(os.listdir(os.path.join(args.sources, "reid"))):
    r1, chance = reid_rank1(os.path.join(args.sources, "reid", name))
    print(f"{name}: rank-1 {r1:.3f} (chance {chance:.3f})")
  for name in sorted(os.listdir(os.path.join(args.sources, "attributes"))):
    ma = attribute_ma(os.path.join(args.sources, "attributes", name))
    colour = [v for k, v in ma.items() if k.startswith(("upper_", "lower_"))]
    shape = [v for k, v in ma.items() if not k.startswith(("upper_", "lower_"))]
    print(f"{name}: colour-attribute mA {np.mean(colour):.3f} (min {min(colour):.2f}), "
          f"other attributes mA {np.mean(shape):.3f}")


if __name__ == "__main__":
  main()
