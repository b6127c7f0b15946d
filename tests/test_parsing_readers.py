"""The parsing builder's readers of publishers' own layouts (``parsing/*_native``) on dummy data.

Each config is built once from ``data/parsing/dummy_data/<config>`` (written by
``python -m data.parsing.dummy_data.make_dummy`` in the publisher's layout). Expected class maps
are computed here from the dummy annotation files with NumPy slicing, using only the rules the
builder documents: value = category_id, pixel (r, c) covers [c, c+1) x [r, r+1) (so the
axis-aligned rectangle with integer corners (x0, y0), (x1, y1) covers rows y0..y1-1 and columns
x0..x1-1), and where items overlap the one covering fewer pixels wins.
"""
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
DUMMY = os.path.join(REPO, "data", "parsing", "dummy_data")
CONFIGS = ("deepfashion2_native", "modanet_native")
MODANET_TRAIN = "annotations/modanet2018_instances_train.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {name: build_mod.build(f"parsing/{name}", os.path.join(DUMMY, name), data_dir)
             for name in CONFIGS}
  return data_dir, folders


def records(data_dir, name, split="train"):
  src = tfds.data_source(f"parsing/{name}", data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["filename"])


def build_report(folder):
  with open(os.path.join(folder, "build_report.json")) as f:
    return json.load(f)


def rect_bounds(poly):
  """(x0, y0, x1, y1) of a dummy polygon that is an axis-aligned rectangle."""
  xs, ys = poly[0::2], poly[1::2]
  assert len(poly) == 8 and len(set(xs)) == 2 and len(set(ys)) == 2
  return min(xs), min(ys), max(xs), max(ys)


def expected_map(items, height, width):
  """Class map from [(category_id, [rectangle polygons])]: smaller items on top."""
  masks = []
  for cat, polys in items:
    m = np.zeros((height, width), bool)
    for p in polys:
      x0, y0, x1, y1 = rect_bounds(p)
      m[y0:y1, x0:x1] = True
    masks.append((int(m.sum()), cat, m))
  out = np.zeros((height, width), np.uint8)
  for _, cat, m in sorted(masks, key=lambda t: -t[0]):  # Sizes differ in the dummy data.
    out[m] = cat
  return out


def check_record(r, root, image_rel, filename, want_label):
  assert r["filename"].decode() == filename
  want_img = np.asarray(Image.open(os.path.join(root, image_rel)).convert("RGB"))
  np.testing.assert_array_equal(r["image"], want_img)  # Stored byte for byte: same decode.
  assert r["label"].dtype == np.uint8 and r["label"].shape == want_label.shape + (1,)
  np.testing.assert_array_equal(r["label"][..., 0], want_label)


# ---- DeepFashion2 --------------------------------------------------------------------------------
def test_deepfashion2_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "deepfashion2_native")
  recs = records(data_dir, "deepfashion2_native")
  # 000003 has category_id 14 (skipped), 000004 no items (dropped).
  assert [r["filename"].decode() for r in recs] == ["000001", "000002"]
  rep = build_report(folders["deepfashion2_native"])
  assert rep["skipped"] == {"label_out_of_range": 1} and "000003" in rep["messages"][0]
  assert rep["dropped"] == {"no_items": 1}

  with open(os.path.join(root, "train", "annos", "000001.json")) as f:
    anno = json.load(f)
  items = [(anno[k]["category_id"], anno[k]["segmentation"]) for k in ("item1", "item2")]
  want = expected_map(items, 32, 24)
  # The overlap (rows 10..15, columns 6..10 and 13..17) belongs to the smaller top (1).
  assert want[12, 8] == 1 and want[20, 8] == 8 and want[20, 12] == 0
  check_record(recs[0], root, "train/image/000001.jpg", "000001", want)

  # 000002: the 2-point polygon of item10 covers nothing; its rectangle lies over item2.
  lab = recs[1]["label"][..., 0]
  assert set(np.unique(lab).tolist()) == {0, 9, 13}
  assert (lab == 9).sum() == 8 * 4 and lab[9, 10] == 9 and lab[1, 1] == 13 and lab[25, 5] == 0

  meta = tfds.builder("parsing/deepfashion2_native", data_dir=data_dir).info.metadata
  assert meta["num_classes"] == 14 and meta["flip_pairs"] == []


def test_deepfashion2_native_strict_names_bad_file(tmp_path):
  with pytest.raises(common.BadInputError, match=r"000003\.json: label_out_of_range"):
    build_mod.build("parsing/deepfashion2_native", os.path.join(DUMMY, "deepfashion2_native"),
                    str(tmp_path / "d"), strict=True)
  assert not os.path.exists(tmp_path / "d" / "parsing" / "deepfashion2_native")


# ---- ModaNet -------------------------------------------------------------------------------------
def test_modanet_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "modanet_native")
  with open(os.path.join(root, MODANET_TRAIN)) as f:
    coco = json.load(f)
  recs = records(data_dir, "modanet_native")
  # Image 300 has no annotation (dropped), image 400 category 14 (skipped).
  assert [r["filename"].decode() for r in recs] == ["0000100", "0000200"]
  rep = build_report(folders["modanet_native"])
  assert rep["skipped"] == {"label_out_of_range": 1} and "0000400" in rep["messages"][0]
  assert rep["dropped"] == {"no_annotations": 1}

  im = next(i for i in coco["images"] if i["id"] == 100)
  items = [(a["category_id"], a["segmentation"]) for a in coco["annotations"]
           if a["image_id"] == 100]
  want = expected_map(items, im["height"], im["width"])
  # Belt (2) over top (9) over pants (8), whatever their order in the json.
  assert want[15, 5] == 2 and want[10, 5] == 9 and want[20, 5] == 8 and want[20, 12] == 0
  check_record(recs[0], root, f"images/{im['file_name']}", "0000100", want)

  # The triangle (2, 2), (12, 2), (2, 12) of image 200: bag (1) inside, background outside.
  lab = recs[1]["label"][..., 0]
  assert set(np.unique(lab).tolist()) == {0, 1}
  assert lab[3, 3] == 1 and lab[10, 10] == 0 and lab[0, 0] == 0


def test_modanet_native_lfs_pointer_is_an_error(tmp_path):
  """A clone without git-lfs leaves pointer files: the error names the file and the fix."""
  root = tmp_path / "modanet"
  shutil.copytree(os.path.join(DUMMY, "modanet_native"), root)
  (root / MODANET_TRAIN).write_text(
      "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 101000000\n")
  with pytest.raises(common.BadInputError, match="git lfs pull") as e:
    build_mod.build("parsing/modanet_native", str(root), str(tmp_path / "d"))
  assert "modanet2018_instances_train.json" in str(e.value)
  assert not os.path.exists(tmp_path / "d" / "parsing" / "modanet_native")
