"""Writes the detection dummy data (CrowdHuman .odgt, COCO-format json, and the publishers' own
layouts of CityPersons, WiderPerson, EuroCity Persons, WIDER Pedestrian 2019 and the det_5set
sources side by side: det_5set with WIDER Pedestrian as a COCO json, det_5set_native with every
source native).
Run from the repo root: ``python -m data.detection.dummy_data.make_dummy``."""
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


def _obj(label, bbox, vis=None):
  return {"instanceId": 0, "label": label, "bbox": bbox, "bboxVis": vis or bbox}


def write_citypersons(root):
  """gtBboxCityPersons/<split>/<city>/<name>_gtBboxCityPersons.json + Cityscapes leftImg8bit."""
  frames = {
      ("train", "aachen", "aachen_000000_000019"): [
          _obj("pedestrian", [2, 3, 10, 20], [2, 3, 10, 10]),   # person, half visible
          _obj("rider", [20, 4, 8, 16]),                        # ignore region
          _obj("ignore", [30, 0, 15, 10]),                      # ignore; clipped to [30, 0, 40, 10]
          _obj("person group", [0, 20, 12, 10]),                # ignore region
          _obj("pedestrian", [5, 5, 0, 9])],                    # degenerate: dropped
      ("train", "bochum", "bochum_000000_000313"): [],          # no persons: kept
      ("val", "frankfurt", "frankfurt_000000_000294"): [_obj("pedestrian", [4, 4, 12, 20])],
  }
  for i, ((split, city, name), objects) in enumerate(sorted(frames.items())):
    dummy.write_json(os.path.join(root, "gtBboxCityPersons", split, city,
                                  f"{name}_gtBboxCityPersons.json"),
                     {"imgHeight": 32, "imgWidth": 40, "objects": objects})
    dummy.write_image(os.path.join(root, "leftImg8bit", split, city, f"{name}_leftImg8bit.png"),
                      700 + i, 32, 40)


def write_widerperson(root):
  """Annotations/<id>.jpg.txt (count, then 'class x1 y1 x2 y2'), train.txt/val.txt, Images/."""
  anns = {"000040": [(1, 2, 3, 12, 23), (2, 20, 0, 30, 20), (3, 25, 10, 35, 30),
                     (4, 0, 0, 6, 6), (5, 30, 20, 40, 32)],
          "000041": [(1, 1, 1, 9, 17)],
          "000050": [(1, 4, 4, 16, 24)]}
  dummy.write_text(os.path.join(root, "train.txt"), ["000040", "000041"])
  dummy.write_text(os.path.join(root, "val.txt"), ["000050"])
  for i, (image_id, rows) in enumerate(sorted(anns.items())):
    dummy.write_text(os.path.join(root, "Annotations", f"{image_id}.jpg.txt"),
                     [str(len(rows))] + [" ".join(map(str, r)) for r in rows])
    dummy.write_image(os.path.join(root, "Images", f"{image_id}.jpg"), 750 + i, 32, 40)


def _ecp(identity, x0, y0, x1, y1, tags=(), children=()):
  return {"identity": identity, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "orient": 0,
          "tags": list(tags), "children": list(children)}


def write_ecp(root):
  """day/labels/<split>/<city>/<city>_<n>.json frame trees + day/img/<split>/<city>/<..>.png."""
  frames = {
      ("train", "berlin", "berlin_00000"): [
          _ecp("pedestrian", 2, 3, 12, 23, ["occluded>10"]),    # person
          _ecp("pedestrian", 15, 2, 20, 20, ["occluded>80"]),   # ignore (occlusion > 80 %)
          _ecp("rider", 22, 4, 30, 24, [], [_ecp("bicycle", 21, 14, 31, 26)]),  # ignore
          _ecp("person-group-far-away", 30, 0, 38, 8),          # ignore
          _ecp("pedestrian", 33.5, 10, 39, 30, ["depiction"]),  # ignore (poster)
          _ecp("bicycle", 0, 20, 10, 30)],                      # not a box
      ("val", "budapest", "budapest_00001"): [_ecp("pedestrian", 4, 4, 16, 24)],
  }
  for i, ((split, city, name), children) in enumerate(sorted(frames.items())):
    dummy.write_json(os.path.join(root, "day", "labels", split, city, f"{name}.json"),
                     {"identity": "frame", "imagewidth": 40, "imageheight": 32,
                      "children": children, "tags": []})
    dummy.write_image(os.path.join(root, "day", "img", split, city, f"{name}.png"), 800 + i,
                      32, 40)


def write_wider_pedestrian(root):
  """WIDER Pedestrian 2019: Annotations/<split>_{bbox,ignore,list}.txt ('<name> x y w h ...'),
  train images in sur_train/ and ad_train/ad_0k/, val images in val_data/."""
  train_bbox = [
      # person (a fifth under the [0, 0, 4, 32] region) and one inside the [18, 2, 14, 20]
      # region (ignored: covered more than half)
      ("sur00001.jpg", [(2, 3, 10, 20), (20, 4, 8, 16)]),
      ("ad00001.jpg", [(6, 2, 9, 18)]),
      ("ad00002.jpg", [(30, 20, 20, 20)]),       # clipped to the 40x32 image: [30, 20, 40, 32]
  ]
  train_ignore = [("sur00001.jpg", [(18, 2, 14, 20), (0, 0, 4, 32)]),
                  ("sur00002.jpg", [(0, 0, 8, 8)])]     # ignore regions only
  train_list = ["sur00001.jpg", "sur00002.jpg", "ad00001.jpg", "ad00002.jpg",
                "ad00003.jpg"]                          # ad00003: no boxes at all
  val_bbox = [("sur00100.jpg", [(4, 4, 12, 20)])]
  val_ignore = [("ad00100.jpg", [(1, 1, 5, 5)])]
  val_list = ["sur00100.jpg", "ad00100.jpg"]

  def line(name, boxes):
    return " ".join([name] + [str(v) for b in boxes for v in b])

  ann = os.path.join(root, "Annotations")
  dummy.write_text(os.path.join(ann, "train_bbox.txt"), [line(*e) for e in train_bbox])
  dummy.write_text(os.path.join(ann, "train_ignore.txt"), [line(*e) for e in train_ignore])
  dummy.write_text(os.path.join(ann, "train_list.txt"), train_list)
  dummy.write_text(os.path.join(ann, "val_bbox.txt"), [line(*e) for e in val_bbox])
  dummy.write_text(os.path.join(ann, "val_ignore.txt"), [line(*e) for e in val_ignore])
  dummy.write_text(os.path.join(ann, "val_list.txt"), val_list)
  dummy.write_text(os.path.join(ann, "test_list.txt"), ["sur00200.jpg"])   # not read
  folders = {"sur00001.jpg": "sur_train", "sur00002.jpg": "sur_train",
             "ad00001.jpg": "ad_train/ad_01", "ad00002.jpg": "ad_train/ad_02",
             "ad00003.jpg": "ad_train/ad_03", "sur00100.jpg": "val_data",
             "ad00100.jpg": "val_data"}
  for i, (name, folder) in enumerate(sorted(folders.items())):
    dummy.write_image(os.path.join(root, folder, name), 880 + i, 32, 40)


def wider_pedestrian_native():
  write_wider_pedestrian(dummy.fresh(os.path.join(HERE, "wider_pedestrian_native")))


def citypersons_native():
  write_citypersons(dummy.fresh(os.path.join(HERE, "citypersons_native")))


def widerperson_native():
  write_widerperson(dummy.fresh(os.path.join(HERE, "widerperson_native")))


def ecp_native():
  write_ecp(dummy.fresh(os.path.join(HERE, "ecp_native")))


def det_5set():
  """The five sources side by side, in their publishers' folder names; WIDER Pedestrian as a
  COCO-format json (the fallback layout)."""
  root = dummy.fresh(os.path.join(HERE, "det_5set"))
  write_det_5set_common(root)
  wp = os.path.join(root, "WIDER_Pedestrian")
  dummy.write_json(os.path.join(wp, "annotations", "train.json"), {
      "images": [{"id": 1, "file_name": "ad_00001.jpg", "height": 32, "width": 40}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [6, 2, 9, 18],
                       "iscrowd": 0}],
      "categories": [{"id": 1, "name": "person"}]})
  dummy.write_image(os.path.join(wp, "images", "ad_00001.jpg"), 870, 32, 40)


def det_5set_native():
  """The five sources side by side, every one in its publisher's own layout (WIDER Pedestrian
  2019 native)."""
  root = dummy.fresh(os.path.join(HERE, "det_5set_native"))
  write_det_5set_common(root)
  write_wider_pedestrian(os.path.join(root, "WIDER_Pedestrian"))


def write_det_5set_common(root):
  """WiderPerson, ECP, CityPersons and COCO persons under ``root``."""
  write_widerperson(os.path.join(root, "WiderPerson"))
  write_ecp(os.path.join(root, "ECP"))
  write_citypersons(os.path.join(root, "CityPersons"))
  coco = os.path.join(root, "coco")
  dummy.write_json(os.path.join(coco, "annotations", "person_keypoints_train2017.json"), {
      "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 32, "width": 40},
                 {"id": 285, "file_name": "000000000285.jpg", "height": 32, "width": 40}],
      "annotations": [
          {"id": 7, "image_id": 139, "category_id": 1, "bbox": [3, 4, 10, 20], "iscrowd": 0},
          {"id": 8, "image_id": 139, "category_id": 1, "bbox": [20, 2, 15, 25], "iscrowd": 1},
          # crowd only: no person box, so det_5set drops the image
          {"id": 9, "image_id": 285, "category_id": 1, "bbox": [1, 1, 20, 20], "iscrowd": 1}],
      "categories": [{"id": 1, "name": "person"}]})
  for i, name in enumerate(("000000000139.jpg", "000000000285.jpg")):
    dummy.write_image(os.path.join(coco, "train2017", name), 850 + i, 32, 40)


if __name__ == "__main__":
  crowdhuman()
  caltech()
  citypersons_native()
  widerperson_native()
  ecp_native()
  wider_pedestrian_native()
  det_5set()
  det_5set_native()
