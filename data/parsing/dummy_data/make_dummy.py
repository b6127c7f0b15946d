"""Writes the parsing dummy data (LIP and H3.6M layouts; DeepFashion2 and ModaNet as their
publishers distribute them). Run from the repo root:
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


def rect(x0, y0, x1, y1):
  """A flat polygon [x, y, ...]: the axis-aligned rectangle with corners (x0, y0), (x1, y1)."""
  return [x0, y0, x1, y0, x1, y1, x0, y1]


def deepfashion2_native():
  """train/image/NNNNNN.jpg + train/annos/NNNNNN.json, as DeepFashion2's train.zip."""
  root = dummy.fresh(os.path.join(HERE, "deepfashion2_native"))
  annos = {
      # item1 (short sleeve top, 12x12) overlaps item2 (trousers, two legs of 9x20): the
      # smaller item1 is on top although item2 comes later.
      "000001": {"source": "user", "pair_id": 1,
                 "item1": {"category_name": "short sleeve top", "category_id": 1, "style": 1,
                           "bounding_box": [6, 4, 18, 16], "segmentation": [rect(6, 4, 18, 16)]},
                 "item2": {"category_name": "trousers", "category_id": 8, "style": 1,
                           "bounding_box": [2, 10, 22, 30],
                           "segmentation": [rect(2, 10, 11, 30), rect(13, 10, 22, 30)]}},
      # item10 sorts after item2 numerically; a 2-point polygon covers nothing.
      "000002": {"source": "shop", "pair_id": 1,
                 "item2": {"category_id": 13, "segmentation": [rect(0, 0, 24, 20)]},
                 "item10": {"category_id": 9, "segmentation": [rect(8, 8, 16, 12), [1, 1, 3, 3]]}},
      # category_id 14 does not exist: skipped (an error under strict).
      "000003": {"source": "user", "pair_id": 2,
                 "item1": {"category_id": 14, "segmentation": [rect(0, 0, 4, 4)]}},
      # No items: dropped.
      "000004": {"source": "user", "pair_id": 2},
  }
  for i, (stem, anno) in enumerate(annos.items()):
    dummy.write_image(os.path.join(root, "train", "image", f"{stem}.jpg"), 700 + i, 32, 24)
    dummy.write_json(os.path.join(root, "train", "annos", f"{stem}.json"), anno)


def modanet_native():
  """annotations/modanet2018_instances_{train,val}.json (as the eBay/modanet repository) and
  images/<file_name> (the PaperDoll photos extracted from photos.lmdb)."""
  root = dummy.fresh(os.path.join(HERE, "modanet_native"))
  cats = ["bag", "belt", "boots", "footwear", "outer", "dress", "sunglasses", "pants", "top",
          "shorts", "skirt", "headwear", "scarf & tie"]
  categories = [{"supercategory": "fashion", "id": i + 1, "name": n} for i, n in enumerate(cats)]
  images = [{"id": i, "width": 24, "height": 32, "file_name": f"{i:07d}.jpg", "license": 1}
            for i in (100, 200, 300, 400)]

  def ann(id_, image_id, cat, segm):
    return {"id": id_, "image_id": image_id, "category_id": cat, "segmentation": segm,
            "area": 0, "bbox": [0, 0, 1, 1], "iscrowd": 0}

  anns = [
      # Image 100: belt (48 px) first, top (192 px), pants (240 px): painted pants, top, belt.
      ann(1, 100, 2, [rect(4, 14, 20, 17)]),
      ann(2, 100, 9, [rect(4, 4, 20, 16)]),
      ann(3, 100, 8, [rect(4, 15, 11, 30), rect(13, 15, 20, 30)]),
      # Image 200: a bag, a triangle.
      ann(4, 200, 1, [[2, 2, 12, 2, 2, 12]]),
      # Image 300 has no annotation: dropped. Image 400: category 14 is out of range.
      ann(5, 400, 14, [rect(0, 0, 4, 4)]),
  ]
  dummy.write_json(os.path.join(root, "annotations", "modanet2018_instances_train.json"),
                   {"info": {"version": "1.0", "description": "dummy"}, "year": 2018,
                    "type": "instances", "licenses": [{"id": 1, "name": "", "url": ""}],
                    "categories": categories, "images": images, "annotations": anns})
  # The published val json lists images only (no annotations); it is not read.
  dummy.write_json(os.path.join(root, "annotations", "modanet2018_instances_val.json"),
                   {"info": {}, "year": 2018, "type": "instances", "licenses": [],
                    "categories": categories,
                    "images": [{"id": 500, "width": 24, "height": 32, "file_name": "0000500.jpg",
                                "license": 1}], "annotations": []})
  for i, im in enumerate(images):
    dummy.write_image(os.path.join(root, "images", im["file_name"]), 800 + i, 32, 24)


if __name__ == "__main__":
  lip()
  h36m()
  deepfashion2_native()
  modanet_native()
