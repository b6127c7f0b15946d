"""The detection builder's readers of publishers' own layouts on their dummy data.

Each config is built once from ``data/detection/dummy_data/<config>`` (written by
``python -m data.detection.dummy_data.make_dummy`` in the publisher's layout). Expected values
come from the dummy annotation files read here with the person / ignore mappings data/README.md
documents (CityPersons: only 'pedestrian' is a person; WiderPerson: classes 1-3 persons, 4-5
ignore; ECP: 'pedestrian' unless tagged occluded>80 or depiction), not from the builder's code.
"""
import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod
from data import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "detection", "dummy_data")
CONFIGS = ("citypersons_native", "widerperson_native", "ecp_native", "det_5set")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {c: build_mod.build(f"detection/{c}", os.path.join(DUMMY, c), data_dir)
             for c in CONFIGS}
  return data_dir, folders


def records(data_dir, config, split):
  src = tfds.data_source(f"detection/{config}", data_dir=data_dir)[split]
  return {r["image_id"].decode(): r for r in (src[i] for i in range(len(src)))}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def xyxy_clipped(x1, y1, x2, y2, width, height):
  return [min(max(x1, 0), width), min(max(y1, 0), height),
          min(max(x2, 0), width), min(max(y2, 0), height)]


# ---- CityPersons ---------------------------------------------------------------------------------
def test_citypersons_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "citypersons_native")
  for split in ("train", "val"):
    anns = glob.glob(os.path.join(root, "gtBboxCityPersons", split, "*", "*.json"))
    assert len(records(data_dir, "citypersons_native", split)) == len(anns)

  name = "aachen_000000_000019"
  ann = read_json(os.path.join(root, "gtBboxCityPersons", "train", "aachen",
                               f"{name}_gtBboxCityPersons.json"))
  w, h = ann["imgWidth"], ann["imgHeight"]
  kept = [o for o in ann["objects"] if o["bbox"][2] > 0 and o["bbox"][3] > 0]
  boxes = [xyxy_clipped(x, y, x + bw, y + bh, w, h) for x, y, bw, bh in (o["bbox"] for o in kept)]
  ratios = [(o["bboxVis"][2] * o["bboxVis"][3]) / (o["bbox"][2] * o["bbox"][3]) for o in kept]
  r = records(data_dir, "citypersons_native", "train")[name]
  np.testing.assert_allclose(r["boxes"], boxes)
  np.testing.assert_array_equal(r["is_ignore"], [o["label"] != "pedestrian" for o in kept])
  np.testing.assert_allclose(r["visible_ratio"], ratios)
  vx, vy, vw, vh = kept[0]["bboxVis"]
  np.testing.assert_allclose(r["visible_boxes"][0], [vx, vy, vx + vw, vy + vh])
  rel = f"leftImg8bit/train/aachen/{name}_leftImg8bit.png"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  assert build_report(folders["citypersons_native"])["dropped"] == {"degenerate_box": 1}
  meta = read_json(os.path.join(folders["citypersons_native"], "metadata.json"))
  assert meta["max_persons_per_image"] == 1 and meta["max_ignore_per_image"] == 3


def test_citypersons_unknown_label_is_bad_input(tmp_path):
  src = str(tmp_path / "cp")
  shutil.copytree(os.path.join(DUMMY, "citypersons_native"), src)
  path = glob.glob(os.path.join(src, "gtBboxCityPersons", "train", "aachen", "*.json"))[0]
  ann = read_json(path)
  ann["objects"][0]["label"] = "cyclist"
  with open(path, "w") as f:
    json.dump(ann, f)
  with pytest.raises(common.BadInputError, match="label_out_of_range"):
    build_mod.build("detection/citypersons_native", src, str(tmp_path / "d"), strict=True)


# ---- WiderPerson ---------------------------------------------------------------------------------
def test_widerperson_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "widerperson_native")
  for split in ("train", "val"):
    with open(os.path.join(root, f"{split}.txt")) as f:
      ids = f.read().split()
    assert sorted(records(data_dir, "widerperson_native", split)) == sorted(ids)

  with open(os.path.join(root, "Annotations", "000040.jpg.txt")) as f:
    lines = f.read().split("\n")
  rows = np.array([ln.split() for ln in lines[1:1 + int(lines[0])]], np.float32)
  r = records(data_dir, "widerperson_native", "train")["000040"]
  np.testing.assert_allclose(r["boxes"], rows[:, 1:])  # all inside the 40x32 image
  np.testing.assert_array_equal(r["is_ignore"], rows[:, 0] >= 4)
  assert np.isnan(r["visible_ratio"]).all() and np.isnan(r["visible_boxes"]).all()
  assert r["filename"].decode() == "Images/000040.jpg"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, "Images", "000040.jpg")))
  meta = read_json(os.path.join(folders["widerperson_native"], "metadata.json"))
  assert meta["max_persons_per_image"] == 3 and meta["max_ignore_per_image"] == 2


def test_widerperson_count_mismatch_is_bad_input(tmp_path):
  src = str(tmp_path / "wp")
  shutil.copytree(os.path.join(DUMMY, "widerperson_native"), src)
  victim = os.path.join(src, "Annotations", "000041.jpg.txt")
  with open(victim, "w") as f:
    f.write("2\n1 1 1 9 17\n")  # says two boxes, lists one
  build_mod.build("detection/widerperson_native", src, str(tmp_path / "d"))
  recs = records(str(tmp_path / "d"), "widerperson_native", "train")
  assert sorted(recs) == ["000040"]
  rep = build_report(os.path.join(str(tmp_path / "d"), "detection", "widerperson_native",
                                  "1.0.0"))
  assert rep["skipped"] == {"unparsable_annotation": 1} and victim in rep["messages"][0]


# ---- EuroCity Persons ----------------------------------------------------------------------------
def test_ecp_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "ecp_native")
  for split in ("train", "val"):
    anns = glob.glob(os.path.join(root, "day", "labels", split, "*", "*.json"))
    assert len(records(data_dir, "ecp_native", split)) == len(anns)

  frame = read_json(os.path.join(root, "day", "labels", "train", "berlin", "berlin_00000.json"))
  persons = ("pedestrian", "rider", "person-group-far-away", "rider+vehicle-group-far-away")
  kept = [c for c in frame["children"] if c["identity"] in persons]
  r = records(data_dir, "ecp_native", "train")["berlin_00000"]
  np.testing.assert_allclose(r["boxes"], [[c["x0"], c["y0"], c["x1"], c["y1"]] for c in kept])
  np.testing.assert_array_equal(
      r["is_ignore"], [c["identity"] != "pedestrian" or "occluded>80" in c["tags"]
                       or "depiction" in c["tags"] for c in kept])
  assert r["is_ignore"].tolist() == [False, True, True, True, True]
  assert r["filename"].decode() == "day/img/train/berlin/berlin_00000.png"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, r["filename"].decode())))
  rep = build_report(folders["ecp_native"])
  assert rep["dropped"] == {"non_person_object": len(frame["children"]) - len(kept)}


def test_ecp_unparsable_json_is_bad_input(tmp_path):
  src = str(tmp_path / "ecp")
  shutil.copytree(os.path.join(DUMMY, "ecp_native"), src)
  victim = os.path.join(src, "day", "labels", "val", "budapest", "budapest_00001.json")
  with open(victim, "w") as f:
    f.write("{not json")
  with pytest.raises(common.BadInputError, match="budapest_00001.json: unparsable_annotation"):
    build_mod.build("detection/ecp_native", src, str(tmp_path / "d"), strict=True)


# ---- det_5set: the five sources side by side ---------------------------------------------------
def test_det_5set_merges_sources_and_drops_person_less_images(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "det_5set")
  recs = records(data_dir, "det_5set", "train")
  # Per source, the train images with at least one person box (worked out from the dummy files:
  # CityPersons bochum has no objects, COCO 285 only a crowd region).
  assert sorted(recs) == ["citypersons/aachen_000000_000019", "coco/139", "ecp/berlin_00000",
                          "wider_pedestrian/1", "widerperson/000040", "widerperson/000041"]
  assert build_report(folders["det_5set"])["dropped"]["no_person_image"] == 2
  coco = read_json(os.path.join(root, "coco", "annotations", "person_keypoints_train2017.json"))
  anns = [a for a in coco["annotations"] if a["image_id"] == 139]
  r = recs["coco/139"]
  np.testing.assert_allclose(r["boxes"], [[x, y, x + w, y + h] for x, y, w, h in
                                          (a["bbox"] for a in anns)])
  np.testing.assert_array_equal(r["is_ignore"], [bool(a["iscrowd"]) for a in anns])
  assert r["filename"].decode() == "coco/train2017/000000000139.jpg"
  wp = recs["widerperson/000040"]
  assert wp["filename"].decode() == "WiderPerson/Images/000040.jpg"
  np.testing.assert_array_equal(wp["image"], pixels(os.path.join(root, "WiderPerson", "Images",
                                                                 "000040.jpg")))
  meta = read_json(os.path.join(folders["det_5set"], "metadata.json"))
  assert meta["box_counts"]["train"]["images"] == 6
  assert meta["max_persons_per_image"] == 3 and meta["max_ignore_per_image"] == 4


def test_det_5set_missing_source_names_it(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "det_5set"), src)
  shutil.rmtree(os.path.join(src, "ECP"))
  with pytest.raises(common.MissingInputError, match="ECP/day/labels/train"):
    build_mod.build("detection/det_5set", src, str(tmp_path / "d"))


def build_report(folder):
  return read_json(os.path.join(folder, "build_report.json"))
