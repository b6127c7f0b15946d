"""Writes ShanghaiTech-format dummy data (part_A) with ``.mat`` files in the real nested layout:
``image_info`` = 1x1 cell -> 1x1 struct {location: [N, 2] double, number: 1x1 double}.
Run from the repo root: ``python -m data.counting.dummy_data.make_dummy``."""
import os

import numpy as np
import scipy.io

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def write_gt(path, points):
  points = np.asarray(points, np.float64).reshape(-1, 2)
  struct = np.empty((1, 1), dtype=[("location", "O"), ("number", "O")])
  struct[0, 0]["location"] = points
  struct[0, 0]["number"] = np.array([[float(len(points))]])
  cell = np.empty((1, 1), dtype=object)
  cell[0, 0] = struct
  os.makedirs(os.path.dirname(path), exist_ok=True)
  scipy.io.savemat(path, {"image_info": cell})


def part_a():
  root = dummy.fresh(os.path.join(HERE, "shanghaitech_a"))
  data = {"train_data": {1: [[3.5, 4.25], [10.0, 20.0], [30.2, 1.0]],
                         2: [[5.0, 5.0]],
                         10: [[1.0, 2.0], [45.0, 3.0]]},   # (45, 3) is outside the 40x32 image.
          "test_data": {1: [[7.0, 8.0], [9.0, 10.0]], 3: []}}
  for split, recs in data.items():
    for n, pts in recs.items():
      base = os.path.join(root, "part_A", split)
      dummy.write_image(os.path.join(base, "images", f"IMG_{n}.jpg"), 1000 + n, 32, 40)
      write_gt(os.path.join(base, "ground-truth", f"GT_IMG_{n}.mat"), pts)


if __name__ == "__main__":
  part_a()
