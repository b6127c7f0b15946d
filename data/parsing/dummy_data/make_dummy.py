"""Writes the parsing dummy data (LIP and H3.6M layouts). Run from the repo root:
``python -m data.parsing.dummy_data.make_dummy``."""
import os

import numpy as np

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def label_map(seed, values, h=32, w=24):
  """Blocks of the given class values (plus a strip of 255 ignore)."""
  rng = np.random.default_rng(seed)
  lab = rng.choice(np.asarray(values), size=(h // 8, w // 8))
  lab = np.kron(lab, np.ones((8, 8), int))
  lab[-2:, :] = 255
  return lab


def lip():
  root = dummy.fresh(os.path.join(HERE, "lip"))
  for split, ids in {"train": ["100_1", "100_2", "101_7"], "val": ["200_3"]}.items():
    dummy.write_text(os.path.join(root, "data", f"{split}_id.txt"), ids)
    for i, id_ in enumerate(ids):
      dummy.write_image(os.path.join(root, "data", f"{split}_images", f"{id_}.jpg"),
                        500 + i, 32, 24)
      lab = label_map(500 + i, [0, 2, 5, 14, 15, 19])
      if id_ == "101_7":
        lab[0, 0] = 23  # LIP has 20 classes: out of range -> skipped (error under strict).
      dummy.write_label(os.path.join(root, "TrainVal_parsing_annotations",
                                     f"{split}_segmentations", f"{id_}.png"), lab)


def h36m():
  root = dummy.fresh(os.path.join(HERE, "h36m_parsing"))
  lists = {"train": ["protocol_1/rgb/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg",
                     "protocol_1/rgb/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000051.jpg"],
           "eval": ["protocol_1/rgb/s_09_act_02_subact_01_ca_01/s_09_act_02_subact_01_ca_01_000001.jpg"]}
  for split, paths in lists.items():
    dummy.write_text(os.path.join(root, f"flist_2hz_{split}.txt"), paths)
    for i, p in enumerate(paths):
      dummy.write_image(os.path.join(root, p), 600 + i, 32, 24)
      # Source ids: 0, 1 (right hip -> 1), 4 (not listed -> 0), 46 (head -> 20), 58 (-> 24).
      lab = label_map(600 + i, [0, 1, 4, 46, 58])
      # Same file name: the authors' reader swaps only the first 'rgb' for 'seg'.
      dummy.write_label(os.path.join(root, p.replace("rgb", "seg", 1)), lab)


if __name__ == "__main__":
  lip()
  h36m()
