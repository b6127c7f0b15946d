"""Writes the detection dummy data (CrowdHuman .odgt, COCO-format json). Run from the repo root:
``python -m data.detection.dummy_data.make_dummy``."""
import json
import os

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def gt(tag, fbox, ignore=0):
  return {"tag": tag, "fbox": fbox, "vbox": fbox, "hbox": fbox[:2] + [4, 4],
          "extra": {"box_id": 0, "occ": 0, "ignore": ignore}, "head_attr": {}}


def crowdhuman():
  root = dummy.fresh(os.path.join(HERE, "crowdhuman"))
  train = [
      {"ID": "273271,1a0d6000b9e1f5b7", "gtboxes": [
          gt("person", [2, 3, 10, 20]),          # kept
          gt("person", [20, -4, 20, 30]),        # clipped to 40x32 image: [20, 0, 40, 26]
          gt("mask", [0, 0, 5, 5]),              # ignore region
          gt("person", [30, 10, 6, 12], 1),      # extra.ignore -> ignore region
          gt("person", [50, 40, 10, 10]),        # outside the image: dropped with a warning
          gt("person", [5, 5, 0, 9])]},          # degenerate: dropped
      {"ID": "273275,7ea9b000a6b3a8c1", "gtboxes": [gt("person", [1, 1, 8, 16])]},
  ]
  val = [{"ID": "284193,faa9000f2678b5e", "gtboxes": [gt("person", [4, 4, 12, 20])]}]
  for name, recs in (("annotation_train.odgt", train), ("annotation_val.odgt", val)):
    with open(os.path.join(root, name), "w") as f:
      f.write("".join(json.dumps(r) + "\n" for r in recs))
    for i, r in enumerate(recs):
      dummy.write_image(os.path.join(root, "Images", r["ID"] + ".jpg"), 900 + len(r["gtboxes"]) + 10 * i,
                        32, 40)


def caltech():
  root = dummy.fresh(os.path.join(HERE, "caltech"))
  images = {"train": [{"id": 1, "file_name": "set00_V000_I00029.png", "height": 32, "width": 40},
                      {"id": 2, "file_name": "set00_V000_I00059.jpg", "height": 32, "width": 40}],
            "val": [{"id": 3, "file_name": "set06_V000_I00029.jpg", "height": 32, "width": 40}]}
  anns = {"train": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 4, 10, 20], "iscrowd": 0},
      {"id": 2, "image_id": 1, "category_id": 2, "bbox": [15, 4, 6, 10], "iscrowd": 0},
      {"id": 3, "image_id": 1, "category_id": 1, "bbox": [25, 2, 8, 20], "iscrowd": 1}],
      "val": [{"id": 4, "image_id": 3, "category_id": 1, "bbox": [30, 20, 20, 20], "iscrowd": 0}]}
  for split in ("train", "val"):
    for im in images[split]:
      # .png names are stored as .jpg files (as CrowdHuman-derived sets do).
      fname = im["file_name"].replace(".png", ".jpg")
      dummy.write_image(os.path.join(root, "images", fname), 950 + im["id"], 32, 40)
    dummy.write_json(os.path.join(root, "annotations", f"{split}.json"),
                     {"images": images[split], "annotations": anns[split],
                      "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "ignore"}]})


if __name__ == "__main__":
  crowdhuman()
  caltech()
