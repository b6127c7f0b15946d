"""Crowd counting builder: ShanghaiTech part A and part B.

Source layout: ``part_X/{train_data,test_data}/images/IMG_n.jpg`` with
``part_X/{...}/ground-truth/GT_IMG_n.mat``, whose ``image_info`` is a 1x1 cell holding a 1x1
struct with ``location`` ([N, 2] head positions (x, y) in pixels) and ``number``.

Records: ``image`` (encoded RGB), ``points`` [N, 2] float32 (x, y) pixels as annotated,
``count`` int32 (= N), ``filename`` text. A point outside the image is dropped with a warning
naming the file (counted), so ``count`` always equals the number of stored points.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from data import common

_IMG = re.compile(r"^IMG_(\d+)\.jpg$")


@dataclasses.dataclass
class CountingConfig(tfds.core.BuilderConfig):
  part: str = "part_A"


def read_points(path: str) -> tuple[np.ndarray, int]:
  """``GT_IMG_n.mat`` -> (locations [N, 2] float64, annotated number)."""
  info = scipy.io.loadmat(path)["image_info"]   # cell [1, 1]
  struct = info[0, 0]                            # struct array [1, 1]
  loc = np.asarray(struct["location"][0, 0], np.float64).reshape(-1, 2)
  number = int(np.asarray(struct["number"][0, 0]).reshape(-1)[0])
  return loc, number


class Counting(common.HumanBenchBuilder):
  """ShanghaiTech crowd counting."""
  BUILDER_CONFIGS = [
      CountingConfig(name="shanghaitech_a", part="part_A", description="ShanghaiTech part A."),
      CountingConfig(name="shanghaitech_b", part="part_B", description="ShanghaiTech part B."),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "points": tfds.features.Tensor(shape=(None, 2), dtype=np.float32, doc="(x, y) pixels"),
        "count": tfds.features.Scalar(np.int32),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    p = config.part
    return {f"{p}/train_data/images/IMG_<n>.jpg": "train images",
            f"{p}/train_data/ground-truth/GT_IMG_<n>.mat": "image_info{location [N,2], number}",
            f"{p}/test_data/images/IMG_<n>.jpg": "test images",
            f"{p}/test_data/ground-truth/GT_IMG_<n>.mat": "same format"}

  def _required(self, root):
    p = self.builder_config.part
    return [f"{p}/{s}/{d}" for s in ("train_data", "test_data")
            for d in ("images", "ground-truth")]

  def _splits(self, root):
    p = self.builder_config.part
    return {"train": self._examples(root, f"{p}/train_data"),
            "test": self._examples(root, f"{p}/test_data")}

  def _examples(self, root, rel):
    names = [n for n in os.listdir(os.path.join(root, rel, "images")) if _IMG.match(n)]
    for name in sorted(names, key=lambda n: int(_IMG.match(n).group(1))):
      img_rel = f"{rel}/images/{name}"
      img = common.load_image(os.path.join(root, img_rel), self.report)
      if img is None:
        continue
      gt_path = os.path.join(root, rel, "ground-truth", f"GT_{name[:-4]}.mat")
      try:
        loc, number = read_points(gt_path)
      except FileNotFoundError:
        self.report.bad("missing_annotation", gt_path)
        continue
      except (KeyError, IndexError, ValueError) as e:
        self.report.bad("unreadable_annotation", gt_path, f"expected image_info{{location, "
                        f"number}}: {e!r}")
        continue
      if number != len(loc):
        self.report.drop("number_differs_from_locations")
      inside = ((loc[:, 0] >= 0) & (loc[:, 0] < img.width)
                & (loc[:, 1] >= 0) & (loc[:, 1] < img.height))
      for j in np.flatnonzero(~inside):
        self.report.bad("point_outside_image", gt_path,
                        f"point {j} {loc[j].tolist()} in {img.width}x{img.height} image")
      pts = loc[inside].astype(np.float32)
      yield img_rel, {"image": img.data, "points": pts, "count": len(pts), "filename": img_rel}
