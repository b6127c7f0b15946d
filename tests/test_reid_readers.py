"""The ReID builder's readers of publishers' own layouts (``reid/last``, ``reid/prcc``,
``reid/dg_market``) on their dummy data.

Each config is built once from ``data/reid/dummy_data/<config>`` (written by
``python -m data.reid.dummy_data.make_dummy`` in the publisher's layout). Expected values come
from the dummy folders and file names, read here with the conventions data/README.md documents
(LaST: PID = first '_' field, evaluation images one camera each; PRCC: PID = folder, camera letter
A/B/C -> 0/1/2; DG-Market: PID = the Market-1501 PID after 'gan'), not from the builder's code.
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
DUMMY = os.path.join(REPO, "data", "reid", "dummy_data")
CONFIGS = ("last", "prcc", "dg_market")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {name: build_mod.build(f"reid/{name}", os.path.join(DUMMY, name), data_dir)
             for name in CONFIGS}
  return data_dir, folders


def records(data_dir, name, split):
  src = tfds.data_source(f"reid/{name}", data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["filename"])


def rel_images(root, pattern):
  return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def metadata(folder):
  with open(os.path.join(folder, "metadata.json")) as f:
    return json.load(f)


def check_record(r, root, rel, pid, cam, role):
  assert r["filename"].decode() == rel
  assert int(r["person_id"]) == pid
  assert int(r["camera_id"]) == cam
  assert r["role"].decode() == role
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))


# ---- LaST ---------------------------------------------------------------------------------------
def test_last(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "last")
  expected = {"train": rel_images(root, "train/*/*.jpg"),
              "query": rel_images(root, "test/query/*.jpg"),
              "gallery": rel_images(root, "test/gallery/*/*.jpg"),
              "val_query": rel_images(root, "val/query/*.jpg"),
              "val_gallery": rel_images(root, "val/gallery/*/*.jpg")}
  got = {s: records(data_dir, "last", s) for s in expected}
  for split, rels in expected.items():
    assert [r["filename"].decode() for r in got[split]] == rels, split

  def pid(rel):
    return int(os.path.basename(rel).split("_")[0])

  # Train ids re-packed over the sorted source ids (15, 120, 4999 -> 0, 1, 2).
  train_ids = sorted({pid(rel) for rel in expected["train"]})
  assert metadata(folders["last"])["num_train_ids"] == len(train_ids) == 3
  r = got["train"][1]
  rel = expected["train"][1]
  check_record(r, root, rel, train_ids.index(pid(rel)), -1, "train")
  # Evaluation: source ids; query i -> camera i, gallery j -> n_query + j (sorted paths).
  nq = len(expected["query"])
  for i, (r, rel) in enumerate(zip(got["query"], expected["query"])):
    check_record(r, root, rel, pid(rel), i, "query")
  for j, (r, rel) in enumerate(zip(got["gallery"], expected["gallery"])):
    check_record(r, root, rel, pid(rel), nq + j, "gallery")
  assert [int(r["camera_id"]) for r in got["val_gallery"]] == [1, 2]


def test_last_unparsable_name_skipped_or_strict_error(tmp_path):
  src = str(tmp_path / "last")
  shutil.copytree(os.path.join(DUMMY, "last"), src)
  bad = os.path.join(src, "train", "000120", "frame_0001.jpg")
  shutil.copy(os.path.join(src, "train", "000120", "000120_0_tt0001_000101.jpg"), bad)
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(common.BadInputError, match="frame_0001.jpg: unparsable_name"):
    build_mod.build("reid/last", src, data_dir, strict=True)
  folder = build_mod.build("reid/last", src, data_dir)
  assert metadata(folder)["build_report"]["skipped"] == {"unparsable_name": 1}
  assert len(records(data_dir, "last", "train")) == 4


# ---- PRCC ---------------------------------------------------------------------------------------
def test_prcc(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "prcc")
  letters = {"A": 0, "B": 1, "C": 2}
  expected = {"train": rel_images(root, "rgb/train/*/*.jpg"),
              "query": rel_images(root, "rgb/test/C/*/*.jpg"),
              "gallery": rel_images(root, "rgb/test/A/*/*.jpg"),
              "query_same_clothes": rel_images(root, "rgb/test/B/*/*.jpg")}
  assert set(tfds.builder("reid/prcc", data_dir=data_dir).info.splits) == set(expected)
  got = {s: records(data_dir, "prcc", s) for s in expected}
  for split, rels in expected.items():
    assert [r["filename"].decode() for r in got[split]] == rels, split
  assert not any("rgb/val" in r["filename"].decode() for r in got["train"])

  def folder_pid(rel):
    return int(rel.split("/")[-2])

  train_ids = sorted({folder_pid(rel) for rel in expected["train"]})   # 1, 3, 10
  assert metadata(folders["prcc"])["num_train_ids"] == len(train_ids) == 3
  rel = "rgb/train/003/B_cropped_rgb002.jpg"
  r = got["train"][expected["train"].index(rel)]
  check_record(r, root, rel, train_ids.index(3), letters["B"], "train")
  # Cross-clothes protocol: query from camera C, gallery from camera A, source ids.
  for r, rel in zip(got["query"], expected["query"]):
    check_record(r, root, rel, folder_pid(rel), letters["C"], "query")
  for r, rel in zip(got["gallery"], expected["gallery"]):
    check_record(r, root, rel, folder_pid(rel), letters["A"], "gallery")
  assert [int(r["camera_id"]) for r in got["query_same_clothes"]] == [letters["B"]]


def test_prcc_missing_test_folder_names_it(tmp_path):
  src = str(tmp_path / "prcc")
  shutil.copytree(os.path.join(DUMMY, "prcc"), src)
  shutil.rmtree(os.path.join(src, "rgb", "test", "C"))
  with pytest.raises(common.MissingInputError, match="rgb/test/C") as e:
    build_mod.build("reid/prcc", src, str(tmp_path / "tfds"))
  assert "rgb/train/<pid>/<A|B|C>_*.jpg" in str(e.value)


def test_prcc_unknown_camera_letter_is_reported(tmp_path):
  src = str(tmp_path / "prcc")
  shutil.copytree(os.path.join(DUMMY, "prcc"), src)
  bad = os.path.join(src, "rgb", "train", "001", "D_cropped_rgb999.jpg")
  shutil.copy(os.path.join(src, "rgb", "train", "001", "A_cropped_rgb001.jpg"), bad)
  with pytest.raises(common.BadInputError, match="D_cropped_rgb999.jpg: unparsable_name"):
    build_mod.build("reid/prcc", src, str(tmp_path / "tfds"), strict=True)


# ---- DG-Market ----------------------------------------------------------------------------------
def test_dg_market(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "dg_market")
  rels = rel_images(root, "*.jpg")
  assert set(tfds.builder("reid/dg_market", data_dir=data_dir).info.splits) == {"train"}
  got = records(data_dir, "dg_market", "train")
  assert [r["filename"].decode() for r in got] == rels

  def market_pid(rel):     # '<structure>_<appearance>_gan<PID>_c<cam>...'
    return int(os.path.basename(rel).split("_gan")[1].split("_")[0])

  source_ids = sorted({market_pid(rel) for rel in rels})   # 2, 7, 1500
  assert metadata(folders["dg_market"])["num_train_ids"] == len(source_ids) == 3
  rel = "750_002_gan1500_c6s3_086542_02.jpg"
  check_record(got[rels.index(rel)], root, rel, source_ids.index(1500), -1, "train")
  # The appearance label (second field) orders identities the same way as the Market PID.
  assert [int(r["person_id"]) for r in got] == [int(os.path.basename(x).split("_")[1])
                                                for x in rels]


def test_dg_market_empty_folder_and_bad_name(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(common.MissingInputError, match="no image found"):
    build_mod.build("reid/dg_market", str(empty), str(tmp_path / "tfds"))
  src = str(tmp_path / "dg")
  shutil.copytree(os.path.join(DUMMY, "dg_market"), src)
  shutil.copy(os.path.join(src, "000_000_gan0002_c1s1_000451_01.jpg"),
              os.path.join(src, "preview.jpg"))
  folder = build_mod.build("reid/dg_market", src, str(tmp_path / "tfds"))
  assert metadata(folder)["build_report"]["skipped"] == {"unparsable_name": 1}
  assert len(records(str(tmp_path / "tfds"), "dg_market", "train")) == 5
