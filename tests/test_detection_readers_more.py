"""The detection builder's WIDER Pedestrian 2019 reader (``detection/wider_pedestrian_native``) and
``detection/det_5set`` reading it natively (or its COCO-json fallback), on their dummy data.

Built from ``data/detection/dummy_data/wider_pedestrian_native`` and ``.../det_5set_native``
(written by ``python -m data.detection.dummy_data.make_dummy``). Expected values come from the
dummy annotation files read here with the mapping data/README.md documents for the 2019 release
(``Annotations/<split>_bbox.txt`` boxes -> persons, ``<split>_ignore.txt`` regions -> ignore, a
person box more than half covered by ignore regions -> ignore; ``<name> x y w h ...`` lines;
images of ``<split>_list.txt`` under ``sur_train/``, ``ad_train/ad_0k/`` or ``val_data/``), not
from the builder's code.
"""
import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "detection", "dummy_data")
WP = os.path.join(DUMMY, "wider_pedestrian_native")
IMAGE_DIRS = {"train": ("sur_train", "ad_train"), "val": ("val_data",)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  native = str(tmp_path_factory.mktemp("tfds_5set_native"))
  return {"wider_pedestrian_native": (data_dir, build_mod.build(
              "detection/wider_pedestrian_native", WP, data_dir)),
          "det_5set_native": (native, build_mod.build(
              "detection/det_5set", os.path.join(DUMMY, "det_5set_native"), native))}


def records(data_dir, config, split):
  src = tfds.data_source(f"detection/{config}", data_dir=data_dir)[split]
  return {r["image_id"].decode(): r for r in (src[i] for i in range(len(src)))}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


# ---- the 2019 release read independently -------------------------------------------------------
def box_file(path):
  """{image name: [[x, y, w, h], ...]} of a '<name> x y w h x y w h ...' file."""
  out = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        name, *nums = line.split()
        vals = [float(v) for v in nums]
        out.setdefault(name, []).extend(vals[i:i + 4] for i in range(0, len(vals), 4))
  return out


def covered(box, regions):
  x, y, w, h = box
  total = 0.0
  for rx, ry, rw, rh in regions:
    total += (max(0.0, min(x + w, rx + rw) - max(x, rx))
              * max(0.0, min(y + h, ry + rh) - max(y, ry)))
  return total / (w * h)


def expected_split(root, split):
  """{image id: (file relative to root, [xyxy clipped], [is_ignore])} of one split."""
  ann = os.path.join(root, "Annotations")
  boxes, ignores = box_file(f"{ann}/{split}_bbox.txt"), box_file(f"{ann}/{split}_ignore.txt")
  with open(f"{ann}/{split}_list.txt") as f:
    names = [ln.split()[0] for ln in f if ln.strip()]
  out = {}
  for name in names:
    found = [p for d in IMAGE_DIRS[split]
             for p in glob.glob(os.path.join(root, d, "**", name), recursive=True)]
    assert len(found) == 1, name
    rel = os.path.relpath(found[0], root)
    width, height = Image.open(found[0]).size
    regions = ignores.get(name, [])
    entries = ([(b, covered(b, regions) > 0.5) for b in boxes.get(name, [])]
               + [(r, True) for r in regions])
    xyxy = [[min(max(x, 0), width), min(max(y, 0), height),
             min(max(x + w, 0), width), min(max(y + h, 0), height)] for (x, y, w, h), _ in entries]
    out[os.path.splitext(name)[0]] = (rel, xyxy, [ign for _, ign in entries])
  return out


def check(rec, root, rel, xyxy, ignore):
  assert rec["filename"].decode() == rel
  np.testing.assert_allclose(rec["boxes"], np.asarray(xyxy, np.float32).reshape(-1, 4))
  np.testing.assert_array_equal(rec["is_ignore"], ignore)
  assert rec["visible_boxes"].shape == (len(xyxy), 4) and np.isnan(rec["visible_boxes"]).all()
  assert rec["visible_ratio"].shape == (len(xyxy),) and np.isnan(rec["visible_ratio"]).all()
  np.testing.assert_array_equal(rec["image"], pixels(os.path.join(root, rel)))


# ---- wider_pedestrian_native ---------------------------------------------------------------------
def test_wider_pedestrian_native(built):
  data_dir, folder = built["wider_pedestrian_native"]
  assert set(tfds.builder("detection/wider_pedestrian_native",
                          data_dir=data_dir).info.splits) == {"train", "val"}
  counts = {}
  for split in ("train", "val"):
    expected = expected_split(WP, split)
    got = records(data_dir, "wider_pedestrian_native", split)
    assert sorted(got) == sorted(expected), split   # every listed image, boxes or not
    for image_id, (rel, xyxy, ignore) in expected.items():
      check(got[image_id], WP, rel, xyxy, ignore)
      assert got[image_id]["image_id"].decode() == image_id
    counts[split] = {"images": len(expected),
                     "persons": sum(len(v[2]) - sum(v[2]) for v in expected.values()),
                     "ignore": sum(sum(v[2]) for v in expected.values())}
  # One record field by field: sur00001 holds a person a fifth under the [0, 0, 4, 32] region
  # (kept), a person inside the [18, 2, 14, 20] region (ignored), then the two regions.
  r = records(data_dir, "wider_pedestrian_native", "train")["sur00001"]
  assert r["image_id"].decode() == "sur00001"
  assert r["filename"].decode() == "sur_train/sur00001.jpg"
  np.testing.assert_allclose(r["boxes"], [[2, 3, 12, 23], [20, 4, 28, 20], [18, 2, 32, 22],
                                          [0, 0, 4, 32]])
  np.testing.assert_array_equal(r["is_ignore"], [False, True, True, True])
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(WP, "sur_train",
                                                                "sur00001.jpg")))
  meta = read_json(os.path.join(folder, "metadata.json"))
  for split, c in counts.items():
    assert {k: meta["box_counts"][split][k] for k in c} == c
  assert meta["build_report"]["dropped"] == {"person_in_ignore_region": 1}
  assert meta["max_persons_per_image"] == max(v["max_persons"]
                                              for v in meta["box_counts"].values())
  assert meta["max_ignore_per_image"] == 3    # sur00001: one covered person + two regions


def test_wider_pedestrian_missing_files_named(tmp_path):
  src = str(tmp_path / "wp")
  shutil.copytree(WP, src)
  os.remove(os.path.join(src, "Annotations", "train_ignore.txt"))
  shutil.rmtree(os.path.join(src, "ad_train"))
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d"))
  msg = str(e.value)
  assert "Annotations/train_ignore.txt" in msg and "  ad_train" in msg
  assert "Annotations/train_bbox.txt" in msg     # the expected layout is listed too


def test_wider_pedestrian_val_optional_and_bad_line(tmp_path):
  src = str(tmp_path / "wp")
  shutil.copytree(WP, src)
  for name in ("val_bbox.txt", "val_ignore.txt", "val_list.txt"):
    os.remove(os.path.join(src, "Annotations", name))
  folder = build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d"))
  assert set(read_json(os.path.join(folder, "metadata.json"))["box_counts"]) == {"train"}
  # A line whose numbers are not groups of four (the 2018 'label x y w h' format) is bad input.
  with open(os.path.join(src, "Annotations", "train_bbox.txt"), "a") as f:
    f.write("ad00003.jpg 1 5 5 10 10\n")
  with pytest.raises(common.BadInputError, match="train_bbox.txt: unparsable_line"):
    build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d2"),
                    strict=True)
  folder = build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d3"))
  assert read_json(os.path.join(folder, "metadata.json"))["build_report"]["skipped"] == {
      "unparsable_line": 1}


def test_wider_pedestrian_listed_image_missing_is_reported(tmp_path):
  src = str(tmp_path / "wp")
  shutil.copytree(WP, src)
  os.remove(os.path.join(src, "ad_train", "ad_02", "ad00002.jpg"))
  with pytest.raises(common.BadInputError, match="ad00002.jpg: missing_image"):
    build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d"), strict=True)
  build_mod.build("detection/wider_pedestrian_native", src, str(tmp_path / "d2"))
  assert "ad00002" not in records(str(tmp_path / "d2"), "wider_pedestrian_native", "train")


# ---- det_5set with WIDER Pedestrian native ------------------------------------------------------
def test_det_5set_reads_wider_pedestrian_natively(built):
  data_dir, folder = built["det_5set_native"]
  root = os.path.join(DUMMY, "det_5set_native")
  wp_root = os.path.join(root, "WIDER_Pedestrian")
  recs = records(data_dir, "det_5set", "train")
  expected = {f"wider_pedestrian/{k}": v for k, v in expected_split(wp_root, "train").items()
              if not all(v[2])}      # images with at least one person box
  assert sorted(k for k in recs if k.startswith("wider_pedestrian/")) == sorted(expected)
  for image_id, (rel, xyxy, ignore) in expected.items():
    check(recs[image_id], root, f"WIDER_Pedestrian/{rel}", xyxy, ignore)
  # The other four sources as in the det_5set dummy (tests/test_detection_readers.py).
  assert sorted(k for k in recs if not k.startswith("wider_pedestrian/")) == [
      "citypersons/aachen_000000_000019", "coco/139", "ecp/berlin_00000", "widerperson/000040",
      "widerperson/000041"]
  n_wp = len(expected_split(wp_root, "train"))
  report = read_json(os.path.join(folder, "build_report.json"))
  assert report["dropped"]["no_person_image"] == 2 + (n_wp - len(expected))
  meta = read_json(os.path.join(folder, "metadata.json"))
  assert meta["box_counts"]["train"]["images"] == len(recs) == 5 + len(expected)
  sources = {s["name"]: s for s in meta["sources"]}
  assert [s["name"] for s in meta["sources"]] == ["widerperson", "coco", "ecp", "citypersons",
                                                  "wider_pedestrian"]
  assert sources["wider_pedestrian"] == {
      "name": "wider_pedestrian", "folder": "WIDER_Pedestrian", "layout": "wider_pedestrian",
      "annotation": "Annotations/train_bbox.txt"}


def test_det_5set_falls_back_to_wider_pedestrian_coco_json(tmp_path):
  data_dir = str(tmp_path / "d")
  folder = build_mod.build("detection/det_5set", os.path.join(DUMMY, "det_5set"), data_dir)
  sources = {s["name"]: s for s in read_json(os.path.join(folder, "metadata.json"))["sources"]}
  assert sources["wider_pedestrian"]["layout"] == "coco"
  assert sources["wider_pedestrian"]["annotation"] == "annotations/train.json"
  assert "wider_pedestrian/1" in records(data_dir, "det_5set", "train")


def test_det_5set_missing_wider_pedestrian_names_native_files(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "det_5set_native"), src)
  shutil.rmtree(os.path.join(src, "WIDER_Pedestrian"))
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("detection/det_5set", src, str(tmp_path / "d"))
  msg = str(e.value)
  assert "WIDER_Pedestrian/Annotations/train_bbox.txt" in msg
  assert "WIDER_Pedestrian/sur_train" in msg and "WIDER_Pedestrian/ad_train" in msg
  assert "fallback" in msg and "WIDER_Pedestrian/annotations/train.json" in msg
