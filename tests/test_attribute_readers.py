"""The native pedestrian-attribute readers (``attributes/{pa100k,rapv2,peta}_native``) on their
committed dummy releases (.mat files in the publishers' structures, data/attributes/dummy_data).

Expected values are read from the dummy .mat files with plain ``scipy.io.loadmat`` (MATLAB
structs as record arrays, no ``simplify_cells``) and Rethinking-PAR's attribute orders written
out here, independently of the builder's parsing.
"""
import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402
from data.attributes import builder as attr_builder  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "attributes", "dummy_data")
CONFIGS = ("pa100k_native", "rapv2_native", "peta_native")

# Rethinking-PAR's group_order (format_pa100k.py / format_rap2.py / format_peta.py).
PA100K_ORDER = [7, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 9, 10, 11, 12, 1, 2, 3,
                0, 4, 5, 6]
RAPV2_ORDER = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
               31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 1, 2, 3, 4, 0, 5, 6, 7, 8, 9,
               45, 46, 47, 48, 49, 50, 51, 52, 53]
PETA_ORDER = [10, 18, 19, 30, 15, 7, 9, 11, 14, 21, 26, 29, 32, 33, 34, 6, 8, 12, 25, 27, 31, 13,
              23, 24, 28, 4, 5, 17, 20, 22, 0, 1, 2, 3, 16]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for c in CONFIGS:
    build_mod.build(f"attributes/{c}", os.path.join(DUMMY, c), data_dir)
  return data_dir


def records(data_dir, config, split):
  src = tfds.data_source(f"attributes/{config}", data_dir=data_dir)[split]
  return {r["filename"].decode(): r for r in (src[i] for i in range(len(src)))}


def meta(data_dir, config):
  with open(os.path.join(data_dir, "attributes", config, "1.0.0", "metadata.json")) as f:
    return json.load(f)


def _cellstr(cell):
  return [str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(cell, object).reshape(-1)]


def _check_record(rec, image_path, labels):
  assert set(rec) == {"image", "labels", "filename"}
  np.testing.assert_array_equal(rec["image"], np.asarray(Image.open(image_path).convert("RGB")))
  assert rec["image"].shape == (32, 16, 3) and rec["image"].dtype == np.uint8
  assert rec["labels"].dtype == np.int8
  np.testing.assert_array_equal(rec["labels"], labels)


def _ratio(labels):
  return (labels == 1).sum(0) / np.maximum((labels != -1).sum(0), 1)


# ---- PA-100K ---------------------------------------------------------------------------------
def _pa100k_expected(root):
  m = scipy.io.loadmat(os.path.join(root, "annotation.mat"))
  names = {s: _cellstr(m[f"{s}_images_name"]) for s in ("train", "val", "test")}
  labels = {s: m[f"{s}_label"].astype(np.int64)[:, PA100K_ORDER] for s in names}
  return m, names, labels


def test_pa100k_native(built):
  root = os.path.join(DUMMY, "pa100k_native")
  m, names, labels = _pa100k_expected(root)
  tv_names = names["train"] + names["val"]
  tv_labels = np.concatenate([labels["train"], labels["val"]])
  ok = [i for i in range(len(tv_names)) if set(tv_labels[i]) <= {0, 1}]
  assert len(ok) == len(tv_names) - 1  # the dummy's val row holds a 3
  train, test = records(built, "pa100k_native", "train"), records(built, "pa100k_native", "test")
  assert sorted(train) == sorted(tv_names[i] for i in ok) and len(train) == 3
  assert sorted(test) == sorted(names["test"]) and len(test) == 2
  _check_record(train[names["train"][1]], os.path.join(root, "data", names["train"][1]),
                labels["train"][1])
  md = meta(built, "pa100k_native")
  attrs = _cellstr(m["attributes"])
  assert md["attr_names"] == [attrs[i] for i in PA100K_ORDER]
  assert md["attr_names"][:3] == ["Hat", "Glasses", "ShortSleeve"]
  assert md["attr_names"][-7:] == ["AgeOver60", "Age18-60", "AgeLess18", "Female", "Front",
                                   "Side", "Back"]
  assert md["num_attributes"] == 26 and md["source_columns"] == PA100K_ORDER
  np.testing.assert_allclose(md["positive_ratio"], _ratio(tv_labels[ok]), atol=1e-6)
  assert md["build_report"]["skipped"] == {"label_out_of_range": 1}


def test_pa100k_native_release_data_folder_and_missing_key(tmp_path):
  # Images under release_data/release_data/ (the zip extracted as-is) are found.
  src = tmp_path / "PA-100K"
  shutil.copytree(os.path.join(DUMMY, "pa100k_native"), src)
  os.makedirs(src / "release_data")
  os.rename(src / "data", src / "release_data" / "release_data")
  data_dir = str(tmp_path / "tfds")
  build_mod.build("attributes/pa100k_native", str(src), data_dir)
  assert len(records(data_dir, "pa100k_native", "train")) == 3
  # Bad input: an annotation.mat without test_label is an error naming the key.
  m = scipy.io.loadmat(str(src / "annotation.mat"))
  del m["test_label"]
  scipy.io.savemat(str(src / "annotation.mat"),
                   {k: v for k, v in m.items() if not k.startswith("__")})
  with pytest.raises(common.BadInputError, match="'test_label' missing"):
    build_mod.build("attributes/pa100k_native", str(src), data_dir, overwrite=True)


# ---- RAPv2 -----------------------------------------------------------------------------------
def _rap_struct(root):
  return scipy.io.loadmat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"))[
      "RAP_annotation"][0, 0]


def test_rapv2_native(built):
  root = os.path.join(DUMMY, "rapv2_native")
  r = _rap_struct(root)
  names = _cellstr(r["name"])
  sel = (r["selected_attribute"].reshape(-1) - 1).astype(int)
  cols = [int(sel[i]) for i in RAPV2_ORDER]
  raw = r["data"].astype(np.int64)[:, cols]
  labels = np.where(raw == 2, 0, raw)
  part = r["partition_attribute"][0, 0][0, 0]  # cell {1} -> its struct
  tv = np.concatenate([part["train_index"].reshape(-1), part["val_index"].reshape(-1)]) - 1
  tv, te = tv.astype(int), part["test_index"].reshape(-1).astype(int) - 1
  train, test = records(built, "rapv2_native", "train"), records(built, "rapv2_native", "test")
  assert sorted(train) == sorted(names[i] for i in tv) and len(train) == 4
  assert sorted(test) == sorted(names[i] for i in te) and len(test) == 2
  _check_record(train[names[0]], os.path.join(root, "RAP_dataset", names[0]), labels[0])
  # The dummy's 2 ("uncertain") in selected column 10 (record column 0) is read as 0.
  assert raw[0, 0] == 2 and train[names[0]]["labels"][0] == 0
  md = meta(built, "rapv2_native")
  attrs = _cellstr(r["attribute"])
  assert md["attr_names"] == [attrs[c] for c in cols] and md["num_attributes"] == 54
  assert md["source_columns"] == cols and md["partition"] == 0
  np.testing.assert_allclose(md["positive_ratio"], _ratio(labels[tv]), atol=1e-6)


def test_rapv2_native_index_out_of_range(tmp_path):
  src = tmp_path / "RAP2"
  shutil.copytree(os.path.join(DUMMY, "rapv2_native"), src)
  path = str(src / "RAP_annotation" / "RAP_annotation.mat")
  m = scipy.io.loadmat(path)
  m["RAP_annotation"][0, 0]["partition_attribute"][0, 0][0, 0]["test_index"][0, 0] = 7
  scipy.io.savemat(path, {"RAP_annotation": m["RAP_annotation"]})
  with pytest.raises(common.BadInputError, match=r"test_index: 1-based indices must lie in 1\.\.6"):
    build_mod.build("attributes/rapv2_native", str(src), str(tmp_path / "tfds"))


# ---- PETA ------------------------------------------------------------------------------------
def _peta(root):
  p = scipy.io.loadmat(os.path.join(root, "PETA.mat"))["peta"][0, 0]
  return p, p["data"][:, 4:].astype(np.int64)[:, PETA_ORDER]


def _peta_partition(p, k):
  part = p["partition_attribute"][0, k][0, 0]
  tv = np.concatenate([part["train_index"][:, 0], part["val_index"][:, 0]]) - 1
  return tv.astype(int), part["test_index"][:, 0].astype(int) - 1


def test_peta_native(built):
  root = os.path.join(DUMMY, "peta_native")
  p, labels = _peta(root)
  tv, te = _peta_partition(p, 0)
  train, test = records(built, "peta_native", "train"), records(built, "peta_native", "test")
  assert sorted(train) == [f"{i + 1:05d}.png" for i in sorted(tv)] and len(train) == 4
  assert sorted(test) == [f"{i + 1:05d}.png" for i in sorted(te)] and len(test) == 2
  _check_record(train["00002.png"], os.path.join(root, "images", "00002.png"), labels[1])
  md = meta(built, "peta_native")
  attrs = _cellstr(p["attribute"])
  assert len(attrs) == 105
  assert md["attr_names"] == [attrs[i] for i in PETA_ORDER] and md["num_attributes"] == 35
  assert md["attr_names"][:4] == ["accessoryHat", "accessoryMuffler", "accessoryNothing",
                                  "accessorySunglasses"]
  np.testing.assert_allclose(md["positive_ratio"], _ratio(labels[tv]), atol=1e-6)
  assert md["build_report"]["skipped"] == {}


def test_peta_native_partitions_order_and_bad_inputs(tmp_path):
  path = os.path.join(DUMMY, "peta_native", "PETA.mat")
  p, _ = _peta(os.path.dirname(path))
  tv, te = _peta_partition(p, 3)
  t = attr_builder.read_peta_mat(path, partition=3, rethinking_par_order=False)
  np.testing.assert_array_equal(t.trainval, tv)
  np.testing.assert_array_equal(t.test, te)
  assert t.source_columns == list(range(35)) and t.attr_names[0] == "personalLess30"
  with pytest.raises(common.BadInputError, match="partition 5 requested, the file has 5"):
    attr_builder.read_peta_mat(path, partition=5)
  bad = tmp_path / "PETA.mat"
  bad.write_bytes(b"not a mat file at all" * 10)
  with pytest.raises(common.BadInputError, match="PETA.mat"):
    attr_builder.read_peta_mat(str(bad))
